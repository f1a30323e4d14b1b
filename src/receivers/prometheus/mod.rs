//! The `prometheus` receiver: scrapes Prometheus targets as Prometheus does (its own
//! `scrape_configs` syntax under `config:`) and turns the samples into OTLP metrics.

pub mod config;
pub mod kubernetes_sd;
pub mod parse;
pub mod relabel;
mod scrape;
pub mod targets;
pub mod translate;

pub use config::PrometheusReceiverConfig;

use crate::pipeline::Intake;
use crate::receivers::bad_input::BadInput;
use crate::secret::Secret;
use base64::Engine;
use config::{GlobalConfig, ScrapeConfig};
use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use relabel::Rule;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use targets::{FileGroups, Target};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often `file_sd_configs` files are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(1);
/// How long after a Kubernetes change the targets are worked out again (changes that come
/// together are taken together).
const DISCOVERY_SETTLE: Duration = Duration::from_millis(200);

fn read_secret(inline: &Option<Secret>, file: &Option<std::path::PathBuf>, what: &str) -> Result<String, String> {
    match (inline, file) {
        (Some(s), _) => Ok(s.expose().to_string()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read {what} {}: {e}", f.display())),
        (None, None) => Ok(String::new()),
    }
}

/// The `Authorization` header a scrape configuration asks for.
fn authorization(cfg: &ScrapeConfig) -> Result<Option<HeaderValue>, String> {
    let value = if let Some(b) = &cfg.basic_auth {
        let password = read_secret(&b.password, &b.password_file, "basic_auth.password_file")?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", b.username.expose()));
        format!("Basic {token}")
    } else if let Some(a) = &cfg.authorization {
        format!("{} {}", a.kind, read_secret(&a.credentials, &a.credentials_file, "authorization.credentials_file")?)
    } else if cfg.bearer_token.is_some() || cfg.bearer_token_file.is_some() {
        format!("Bearer {}", read_secret(&cfg.bearer_token, &cfg.bearer_token_file, "bearer_token_file")?)
    } else {
        return Ok(None);
    };
    let mut v = HeaderValue::try_from(value)
        .map_err(|_| "credentials contain characters not allowed in a header".to_string())?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// Starts a task per scrape configuration (each runs a task per target).
pub async fn start(
    cfg: PrometheusReceiverConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    let global = cfg.config.global.clone();
    let mut tasks = Vec::new();
    for sc in cfg.config.scrape_configs {
        let at = |m: String| format!("scrape config {}: {m}", sc.job_name);
        let rules = |list: &[relabel::RelabelConfig]| -> Result<Vec<Rule>, String> {
            list.iter().map(|r| Rule::new(r.clone()).map_err(|(k, m)| at(format!("{k}: {m}")))).collect()
        };
        let target_rules = rules(&sc.relabel_configs)?;
        let connector =
            sc.tls_config.client().connector(crate::tls::client::Protocol::Http1, sc.timeout(&global)).map_err(at)?;
        let job = Arc::new(scrape::Job {
            name: sc.job_name.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            authorization: authorization(&sc).map_err(at)?,
            honor_labels: sc.honor_labels,
            honor_timestamps: sc.honor_timestamps,
            metric_rules: rules(&sc.metric_relabel_configs)?,
            sample_limit: usize::try_from(sc.sample_limit).unwrap_or(usize::MAX),
            body_limit: scrape::Job::body_limit(sc.body_size_limit),
            intake: intake.clone(),
            bad: BadInput::new(intake.clone(), "http"),
            shutdown: shutdown.clone(),
        });
        tracing::info!(receiver = intake.receiver(), job = %sc.job_name, interval = %humantime::format_duration(sc.interval(&global)), "Prometheus scrape job started");
        let discovery = if sc.kubernetes_sd_configs.is_empty() {
            None
        } else {
            Some(kubernetes_sd::Discovery::start(&sc.kubernetes_sd_configs).map_err(at)?)
        };
        tasks.push(tokio::spawn(run_job(job, sc, global.clone(), target_rules, discovery, shutdown.clone())));
    }
    Ok(tasks)
}

/// Keeps one scrape task per current target of a job; targets that appear are started, targets
/// that go are stopped (their series end).
async fn run_job(
    job: Arc<scrape::Job>,
    cfg: ScrapeConfig,
    global: GlobalConfig,
    rules: Vec<Rule>,
    discovery: Option<kubernetes_sd::Discovery>,
    stop: CancellationToken,
) {
    let mut files = FileGroups::new(&cfg);
    files.refresh();
    let mut running: HashMap<Target, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let mut groups: Vec<config::StaticConfig> = cfg.static_configs.iter().chain(files.groups()).cloned().collect();
        if let Some(d) = &discovery {
            groups.extend(d.groups());
        }
        let wanted = targets::resolve(&cfg, &global, &rules, &groups);
        running.retain(|t, (token, _)| {
            let keep = wanted.contains(t);
            if !keep {
                tracing::info!(job = %job.name, url = %t.url, "target gone; its series end");
                token.cancel();
            }
            keep
        });
        for t in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(t) {
                let t = slot.key().clone();
                tracing::debug!(job = %job.name, url = %t.url, "scraping target");
                let token = stop.child_token();
                let handle = tokio::spawn(scrape::run(job.clone(), t, token.clone()));
                slot.insert((token, handle));
            }
        }
        // Wait for a change of the target files, or the end.
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    for (_, (_, handle)) in running.drain() {
                        let _ = handle.await;
                    }
                    return;
                }
                _ = tokio::time::sleep(FILE_CHECK), if !files.is_empty() => {
                    if files.refresh() {
                        break;
                    }
                }
                _ = async { discovery.as_ref().expect("guarded").changed().await }, if discovery.is_some() => {
                    // A burst of watch events (a list, a rollout) makes one new set of targets.
                    tokio::time::sleep(DISCOVERY_SETTLE).await;
                    break;
                }
            }
        }
    }
}

/// The `prometheus` receiver's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::receiver::<PrometheusReceiverConfig>(
        "prometheus",
        &[crate::signal::Signal::Metrics],
        "scrapes Prometheus targets (Prometheus scrape_configs)",
    );

impl crate::pipeline::component::ReceiverSettings for PrometheusReceiverConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        PrometheusReceiverConfig::validate(self).map_err(Into::into)
    }

    fn overlaps(&self) -> bool {
        false
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop))
    }
}
