//! Scraping one target, as Prometheus does: at a fixed offset within every interval (spread by a
//! hash of the target, so a job's targets are not all scraped at once), with Prometheus's Accept
//! header (OpenMetrics first), gzip, the timeout header, authentication, `body_size_limit`,
//! target labels (`honor_labels`), `metric_relabel_configs` and `sample_limit`, then the
//! per-target series `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling` and `scrape_series_added`.

use super::parse::{self, Family, Format};
use super::relabel::{self, Rule};
use super::targets::Target;
use super::translate::{self, SeriesState};
use crate::body::{BodyError, decompress, read_body};
use crate::pipeline::{Batch, Intake, Request};
use crate::receivers::bad_input::BadInput;
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The Accept header of Prometheus 2.x.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The body limit when `body_size_limit` is 0, so that no target can exhaust memory.
const DEFAULT_BODY_LIMIT: usize = 256 << 20;

/// What a job's targets share.
pub struct Job {
    pub name: String,
    pub client: HttpClient,
    /// `Authorization` header value, if any.
    pub authorization: Option<HeaderValue>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_rules: Vec<Rule>,
    pub sample_limit: usize,
    pub body_limit: usize,
    pub intake: Arc<Intake>,
    pub bad: BadInput,
    /// Cancelled when switchyard stops (rather than when one target goes).
    pub shutdown: CancellationToken,
}

impl Job {
    pub fn body_limit(limit: u64) -> usize {
        if limit == 0 { DEFAULT_BODY_LIMIT } else { usize::try_from(limit).unwrap_or(usize::MAX) }
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// FNV-1a, for the scrape offset.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// How long to wait before the first scrape of `target`: its offset within the interval.
pub fn offset(target: &Target, now_ns: u64) -> Duration {
    let interval = target.interval.as_nanos().max(1) as u64;
    let labels: Vec<String> = target.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut parts: Vec<&str> = labels.iter().map(String::as_str).collect();
    parts.push(&target.url);
    let wanted = fnv1a(&parts) % interval;
    let into = now_ns % interval;
    Duration::from_nanos((wanted + interval - into) % interval)
}

/// Scrapes `target` every interval until `stop`; then ends its series.
pub async fn run(job: Arc<Job>, target: Target, stop: CancellationToken) {
    let mut state = SeriesState::default();
    let mut previous_ids: HashSet<String> = HashSet::new();
    let start = tokio::time::Instant::now() + offset(&target, now_ns());
    let mut ticks = tokio::time::interval_at(start, target.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => break,
        }
        let scrape_ns = now_ns();
        let began = Instant::now();
        let fetched = tokio::select! {
            r = tokio::time::timeout(target.timeout, fetch(&job, &target)) => {
                r.unwrap_or_else(|_| Err(format!("scrape timed out after {}", humantime::format_duration(target.timeout))))
            }
            _ = stop.cancelled() => break,
        };
        let outcome = fetched.and_then(|(body, format)| {
            let families = parse::parse(&body, format).map_err(|e| format!("cannot parse the exposition: {e}"))?;
            label_samples(families, &target, &job)
        });
        let duration = began.elapsed().as_secs_f64();
        let (families, scraped, kept, up) = match outcome {
            Ok((families, scraped, kept)) => (families, scraped, kept, 1.0),
            Err(e) => {
                job.bad.warn("scrape_failed", &format!("scrape of {} (job {}) failed: {e}", target.url, job.name));
                (Vec::new(), 0, 0, 0.0)
            }
        };
        let ids: HashSet<String> =
            families.iter().flat_map(|f| &f.samples).map(|s| format!("{}{:?}", s.name, s.labels)).collect();
        let added = ids.difference(&previous_ids).count();
        previous_ids = ids;
        let extra = [
            ("up", "", up),
            ("scrape_duration_seconds", "s", duration),
            ("scrape_samples_scraped", "", scraped as f64),
            ("scrape_samples_post_metric_relabeling", "", kept as f64),
            ("scrape_series_added", "", added as f64),
        ];
        let who = translate::Target { labels: &target.labels, scheme: &target.scheme };
        let request = translate::to_otlp(&families, &who, scrape_ns, job.honor_timestamps, &mut state, &extra);
        submit(&job, request).await;
    }
    // The target is gone: its series end (one point each that says so). Not when switchyard
    // itself stops: the series go on after a restart (Prometheus does the same).
    if job.shutdown.is_cancelled() {
        return;
    }
    let who = translate::Target { labels: &target.labels, scheme: &target.scheme };
    let request = translate::to_otlp(&[], &who, now_ns(), job.honor_timestamps, &mut state, &[]);
    submit(&job, request).await;
}

async fn submit(job: &Job, request: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest) {
    let batch = Batch::from_request(Request::Metrics(request));
    if batch.items() == 0 {
        return;
    }
    if let Err(refusal) = job.intake.submit("http", batch).await {
        // Counted in otelcol_receiver_refused_metric_points_total by the intake.
        job.bad.warn("refused", &format!("scraped data of job {} dropped: {}", job.name, refusal.message));
    }
}

/// GETs the target; returns the (decompressed) body and its format.
async fn fetch(job: &Job, target: &Target) -> Result<(Bytes, Format), String> {
    let mut req = http::Request::get(&target.url)
        .header(header::ACCEPT, ACCEPT)
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .header("X-Prometheus-Scrape-Timeout-Seconds", target.timeout.as_secs_f64().to_string())
        .body(Empty::new())
        .map_err(|e| format!("invalid scrape URL {}: {e}", target.url))?;
    if let Some(auth) = &job.authorization {
        req.headers_mut().insert(header::AUTHORIZATION, auth.clone());
    }
    let resp = job
        .client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach {}: {}", target.url, crate::cause::chain(&e)))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("{} answered {}", target.url, resp.status()));
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let encoding = crate::body::content_encoding(resp.headers());
    let too_large = || format!("body over body_size_limit ({} bytes)", job.body_limit);
    let raw = read_body(resp.into_body(), job.body_limit, None).await.map_err(|e| match e {
        BodyError::TooLarge => too_large(),
        BodyError::Timeout => "the body did not arrive in time".to_string(),
        BodyError::Io(e) => format!("cannot read the body: {e}"),
    })?;
    let body = decompress(&encoding, raw, job.body_limit).map_err(|e| match e {
        BodyError::TooLarge => too_large(),
        BodyError::Timeout => "the body did not arrive in time".to_string(),
        BodyError::Io(e) => e,
    })?;
    let format = if content_type.to_ascii_lowercase().starts_with("application/openmetrics-text") {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    Ok((body, format))
}

/// Puts the target's labels on every sample (`honor_labels`), applies `metric_relabel_configs`
/// and `sample_limit`. Returns the families and the sample counts before and after relabeling.
pub fn label_samples(families: Vec<Family>, target: &Target, job: &Job) -> Result<(Vec<Family>, usize, usize), String> {
    let mut scraped = 0;
    let mut kept = 0;
    let mut out = Vec::with_capacity(families.len());
    for mut family in families {
        scraped += family.samples.len();
        let samples = std::mem::take(&mut family.samples);
        for mut sample in samples {
            let mut labels = std::mem::take(&mut sample.labels);
            for (name, value) in &target.labels {
                match labels.iter().position(|(n, _)| n == name) {
                    Some(_) if job.honor_labels => {}
                    Some(i) => {
                        // The scraped label makes way: renamed exported_<name> (until free).
                        let mut new_name = format!("exported_{name}");
                        while labels.iter().any(|(n, _)| *n == new_name)
                            || target.labels.iter().any(|(n, _)| *n == new_name)
                        {
                            new_name = format!("exported_{new_name}");
                        }
                        if labels[i].1.is_empty() {
                            labels.remove(i);
                        } else {
                            labels[i].0 = new_name;
                        }
                        labels.push((name.clone(), value.clone()));
                    }
                    None => labels.push((name.clone(), value.clone())),
                }
            }
            if !job.metric_rules.is_empty() {
                labels.push(("__name__".to_string(), sample.name.clone()));
                labels.sort();
                if !relabel::apply(&job.metric_rules, &mut labels) {
                    continue;
                }
                match labels.iter().position(|(n, _)| n == "__name__") {
                    Some(i) => sample.name = labels.remove(i).1,
                    None => continue,
                }
            }
            sample.labels = labels;
            family.samples.push(sample);
            kept += 1;
        }
        if !family.samples.is_empty() {
            out.push(family);
        }
    }
    if job.sample_limit > 0 && kept > job.sample_limit {
        return Err(format!("{kept} samples after relabeling, over sample_limit {}", job.sample_limit));
    }
    Ok((out, scraped, kept))
}
