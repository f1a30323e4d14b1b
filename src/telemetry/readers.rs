//! `service.telemetry.metrics.readers`: where the self-metrics go, in the OpenTelemetry
//! Collector's form (the declarative-configuration schema v0.3.0 it reads). A `pull` reader serves
//! the Prometheus text at `http://host:port/metrics`; a `periodic` reader pushes the same metrics
//! as OTLP every `interval` milliseconds (see `otlp_push`). The older `metrics.address` is one more
//! pull reader, as in the collector.

use super::otlp_push::{self, Pusher};
use crate::net;
use crate::secret::Secret;
use crate::telemetry::settings::{MetricsLevel, MetricsTelemetry};
use http::{Method, StatusCode};
use prometheus::proto::MetricFamily;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where the readers take the metrics from: every metric family, current when called.
pub type MetricsSource = Arc<dyn Fn() -> Vec<MetricFamily> + Send + Sync>;

/// Where Prometheus scrapes when neither `readers` nor `address` is given.
pub const DEFAULT_PULL_ADDRESS: &str = "127.0.0.1:8888";

/// One entry of `readers`: exactly one of `pull` and `periodic`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    #[serde(default)]
    pub pull: Option<PullReaderConfig>,
    #[serde(default)]
    pub periodic: Option<PeriodicReaderConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReaderConfig {
    pub exporter: PullExporterConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporterConfig {
    /// `prometheus/development` is the name newer schemas (and collectors) use.
    #[serde(default, alias = "prometheus/development")]
    pub prometheus: Option<PrometheusPullConfig>,
}

/// A Prometheus endpoint. The exposition is switchyard's own (collector names, `_total` on
/// counters, no scope or resource labels); the other keys are accepted so collector
/// configurations load, and have no effect.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusPullConfig {
    /// Host or IP address to listen on; empty means every interface.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub without_scope_info: Option<bool>,
    #[serde(default)]
    pub without_units: Option<bool>,
    #[serde(default)]
    pub without_type_suffix: Option<bool>,
    #[serde(default)]
    pub with_resource_constant_labels: Option<IncludeExclude>,
    #[serde(default)]
    pub translation_strategy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncludeExclude {
    #[serde(default)]
    pub included: Vec<String>,
    #[serde(default)]
    pub excluded: Vec<String>,
}

/// Pushes every `interval` ms, each push given at most `timeout` ms.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReaderConfig {
    #[serde(default = "default_interval")]
    pub interval: u64,
    #[serde(default = "default_reader_timeout")]
    pub timeout: u64,
    pub exporter: PushExporterConfig,
}

/// The collector's (and the OpenTelemetry SDKs') defaults: a push a minute, 30 s for each.
fn default_interval() -> u64 {
    60_000
}

fn default_reader_timeout() -> u64 {
    30_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushExporterConfig {
    #[serde(default)]
    pub otlp: Option<OtlpPushConfig>,
}

/// `exporter.otlp` of a periodic reader (`OTLPMetric` in the schema).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpPushConfig {
    pub protocol: OtlpProtocol,
    /// `http/protobuf`: the URL to POST to (`/v1/metrics` when it has no path); `grpc`: the
    /// server, any path ignored. Without `http://` or `https://`, `https://` is meant unless
    /// `insecure` is true.
    pub endpoint: String,
    /// Sent with every push; never printed.
    #[serde(default)]
    pub headers: Vec<NameValue>,
    /// More headers as `name=value,name2=value2` (values percent-encoded); `headers` win.
    #[serde(default)]
    pub headers_list: Option<Secret>,
    #[serde(default)]
    pub compression: Option<PushCompression>,
    /// Milliseconds one push may take.
    #[serde(default = "default_export_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub insecure: Option<bool>,
    /// PEM file of the certificate authorities to trust instead of the system's.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default)]
    pub temporality_preference: Option<String>,
    #[serde(default)]
    pub default_histogram_aggregation: Option<String>,
}

/// The OTLP exporters' default time for one export.
fn default_export_timeout() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushCompression {
    Gzip,
    None,
}

/// One header, as the schema writes them: `- name: x-key` / `value: …`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    #[serde(default)]
    pub value: Option<Secret>,
}

impl PrometheusPullConfig {
    /// `host:port` for `net::bind` (an IPv6 host in brackets, an empty host as `:port`).
    pub fn address(&self) -> String {
        let host = self.host.as_deref().unwrap_or_default();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = self.port.unwrap_or_default();
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
    }

    fn from_address(address: &str) -> PrometheusPullConfig {
        let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
        PrometheusPullConfig { host: Some(host.to_string()), port: port.parse().ok(), ..Default::default() }
    }
}

impl ReaderConfig {
    /// A pull reader on `address` (`host:port`), as `metrics.address` stands for.
    pub fn pull_at(address: &str) -> ReaderConfig {
        ReaderConfig {
            pull: Some(PullReaderConfig {
                exporter: PullExporterConfig { prometheus: Some(PrometheusPullConfig::from_address(address)) },
            }),
            periodic: None,
        }
    }
}

/// The readers that run for `metrics`: none at `level: none`; else `readers`, plus a pull reader
/// on `address` when it is given (as the collector appends it); with neither, the default pull
/// reader on 127.0.0.1:8888.
pub fn effective(metrics: &MetricsTelemetry) -> Vec<ReaderConfig> {
    if metrics.level == MetricsLevel::None {
        return Vec::new();
    }
    let mut out = metrics.readers.clone().unwrap_or_default();
    match &metrics.address {
        Some(address) => out.push(ReaderConfig::pull_at(address)),
        None if metrics.readers.is_none() => out.push(ReaderConfig::pull_at(DEFAULT_PULL_ADDRESS)),
        None => {}
    }
    out
}

/// Checks `metrics.readers`; an error names the key under `service.telemetry.metrics` (such as
/// `readers[1].periodic.interval`) and what is wrong.
pub fn check(metrics: &MetricsTelemetry) -> Result<(), (String, String)> {
    if metrics.level == MetricsLevel::None {
        return Ok(());
    }
    let Some(readers) = &metrics.readers else { return Ok(()) };
    if readers.is_empty() && metrics.address.is_none() {
        return Err((
            "readers".into(),
            "at least one reader is needed while metrics.level is not none (set level: none to turn self-metrics off)"
                .into(),
        ));
    }
    for (i, r) in readers.iter().enumerate() {
        let at = |key: &str, message: String| {
            let key = if key.is_empty() { format!("readers[{i}]") } else { format!("readers[{i}].{key}") };
            (key, message)
        };
        match (&r.pull, &r.periodic) {
            (None, None) => return Err(at("", "a reader needs \"pull\" or \"periodic\"".into())),
            (Some(_), Some(_)) => return Err(at("", "a reader is either \"pull\" or \"periodic\", not both".into())),
            (Some(pull), None) => {
                let Some(prom) = &pull.exporter.prometheus else {
                    return Err(at("pull.exporter", "a pull reader needs the \"prometheus\" exporter".into()));
                };
                if prom.host.is_none() {
                    return Err(at("pull.exporter.prometheus", "missing required key \"host\"".into()));
                }
                if prom.port.is_none() {
                    return Err(at("pull.exporter.prometheus", "missing required key \"port\"".into()));
                }
                net::check_endpoint(&prom.address()).map_err(|m| at("pull.exporter.prometheus.host", m))?;
            }
            (None, Some(periodic)) => {
                check_periodic(periodic).map_err(|(k, m)| at(&format!("periodic.{k}"), m))?;
            }
        }
    }
    Ok(())
}

fn check_periodic(p: &PeriodicReaderConfig) -> Result<(), (String, String)> {
    if p.interval == 0 {
        return Err(("interval".into(), "must be greater than 0 (milliseconds)".into()));
    }
    if p.timeout == 0 {
        return Err(("timeout".into(), "must be greater than 0 (milliseconds)".into()));
    }
    let Some(otlp) = &p.exporter.otlp else {
        return Err(("exporter".into(), "a periodic reader needs the \"otlp\" exporter".into()));
    };
    let at = |k: &str, m: String| (format!("exporter.otlp.{k}"), m);
    otlp_push::target(otlp).map_err(|m| at("endpoint", m))?;
    otlp_push::headers(otlp).map_err(|(k, m)| at(&k, m))?;
    if otlp.timeout == 0 {
        return Err(at("timeout", "must be greater than 0 (milliseconds)".into()));
    }
    if let Some(t) = otlp.temporality_preference.as_deref()
        && t != "cumulative"
    {
        return Err(at(
            "temporality_preference",
            format!("\"{t}\" is not supported: switchyard pushes its self-metrics as cumulative only"),
        ));
    }
    if let Some(a) = otlp.default_histogram_aggregation.as_deref()
        && a != "explicit_bucket_histogram"
    {
        return Err(at(
            "default_histogram_aggregation",
            format!("\"{a}\" is not supported: switchyard's histograms have explicit buckets"),
        ));
    }
    otlp_push::tls(otlp).validate().map_err(|(k, m)| {
        let key = match k.as_str() {
            "tls.ca_file" => "certificate",
            "tls.key_file" => "client_key",
            _ => "client_certificate",
        };
        at(key, m.replace("cert_file and key_file", "client_certificate and client_key"))
    })?;
    Ok(())
}

/// Starts every reader: binds each pull reader's listener and prepares each periodic reader's
/// client first, so that nothing runs when one of them cannot start. The tasks stop when `stop`
/// fires; a periodic reader pushes once more then (within at most 2 s).
/// Pull readers listen through `listeners`, so that readers started in place of others take
/// over their sockets.
pub async fn start(
    readers: &[ReaderConfig],
    source: MetricsSource,
    status: super::status_page::StatusSource,
    tap: super::tap::TapSource,
    stop: CancellationToken,
    sockets: &net::Listeners,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut listeners = Vec::new();
    let mut pushers = Vec::new();
    for (i, r) in readers.iter().enumerate() {
        if let Some(prom) = r.pull.as_ref().and_then(|p| p.exporter.prometheus.as_ref()) {
            let listener = sockets.tcp(&prom.address()).await.map_err(|m| format!("readers[{i}].pull: {m}"))?;
            listeners.push(listener);
        }
        if let Some(periodic) = &r.periodic {
            pushers.push(Pusher::new(periodic).map_err(|m| format!("readers[{i}].periodic: {m}"))?);
        }
    }
    let identity = Arc::new(otlp_push::Identity::of_process());
    let mut tasks = Vec::new();
    for listener in listeners {
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(endpoint = %local, "self-metrics at http://{local}/metrics");
        tasks.push(tokio::spawn(serve_pull(listener, source.clone(), status.clone(), tap.clone(), stop.clone())));
    }
    for pusher in pushers {
        tracing::info!(endpoint = %pusher.endpoint(), interval = ?pusher.interval(), "self-metrics pushed as OTLP");
        tasks.push(tokio::spawn(pusher.run(source.clone(), identity.clone(), stop.clone())));
    }
    Ok(tasks)
}

/// The metrics of a service's registry, its process figures refreshed first.
pub fn source_of(metrics: Arc<super::metrics::Metrics>) -> MetricsSource {
    Arc::new(move || {
        let _ = metrics.render();
        metrics.registry.gather()
    })
}

/// The Prometheus text format of `families`.
pub fn render(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(families, &mut out) {
        tracing::error!(error = %e, "cannot render self-metrics");
    }
    out
}

async fn serve_pull(
    listener: tokio::net::TcpListener,
    source: MetricsSource,
    status: super::status_page::StatusSource,
    tap: super::tap::TapSource,
    stop: CancellationToken,
) {
    let streams_stop = stop.clone();
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let (source, status, tap, stop) = (source.clone(), status.clone(), tap.clone(), streams_stop.clone());
        async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => {
                    net::response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", render(&source()))
                }
                (&Method::GET, "/" | "/status") => {
                    net::response(StatusCode::OK, "text/html; charset=utf-8", super::status_page::PAGE)
                }
                (&Method::GET, "/status.json") => {
                    net::response(StatusCode::OK, "application/json", status().to_string())
                }
                (&Method::GET, "/tap") => super::tap::serve(&req, &tap, &stop),
                (&Method::GET, _) => net::response(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "not found; metrics are at /metrics, the status page at /, samples of the data at /tap\n",
                ),
                _ => net::response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n"),
            }
        }
    };
    net::serve(listener, handler, stop, Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(yaml: &str) -> MetricsTelemetry {
        crate::config::parse_yaml("t.yaml", yaml).unwrap()
    }

    fn pull_addresses(m: &MetricsTelemetry) -> Vec<String> {
        effective(m)
            .iter()
            .filter_map(|r| r.pull.as_ref()?.exporter.prometheus.as_ref().map(PrometheusPullConfig::address))
            .collect()
    }

    #[test]
    fn address_and_readers_combine_as_in_the_collector() {
        assert_eq!(pull_addresses(&metrics("level: normal\n")), ["127.0.0.1:8888"]);
        assert_eq!(pull_addresses(&metrics("address: 0.0.0.0:9999\n")), ["0.0.0.0:9999"]);
        let both = metrics(
            "address: '[::1]:9999'\nreaders:\n  - pull:\n      exporter:\n        prometheus:\n          host: localhost\n          port: 7777\n",
        );
        assert_eq!(pull_addresses(&both), ["localhost:7777", "[::1]:9999"]);
        assert!(effective(&metrics("level: none\naddress: 0.0.0.0:1\n")).is_empty());
        let push_only = metrics(
            "readers:\n  - periodic:\n      exporter:\n        otlp:\n          protocol: grpc\n          endpoint: http://c:4317\n",
        );
        assert!(pull_addresses(&push_only).is_empty());
        assert_eq!(effective(&push_only).len(), 1);
        let p = effective(&push_only)[0].periodic.clone().unwrap();
        assert_eq!((p.interval, p.timeout, p.exporter.otlp.unwrap().timeout), (60_000, 30_000, 10_000));
    }

    #[test]
    fn checks_name_the_key() {
        let err = |yaml: &str| check(&metrics(yaml)).unwrap_err();
        assert_eq!(err("readers: []\n").0, "readers");
        assert!(check(&metrics("readers: []\nlevel: none\n")).is_ok());
        assert_eq!(err("readers:\n  - {}\n").0, "readers[0]");
        assert_eq!(
            err("readers:\n  - pull:\n      exporter:\n        prometheus:\n          port: 1\n").0,
            "readers[0].pull.exporter.prometheus"
        );
        let periodic = |body: &str| format!("readers:\n  - periodic:\n{body}");
        let otlp = "      exporter:\n        otlp:\n          protocol: grpc\n          endpoint: http://c:4317\n";
        assert_eq!(err(&periodic(&format!("      interval: 0\n{otlp}"))).0, "readers[0].periodic.interval");
        let (key, message) = err(&periodic(
            "      exporter:\n        otlp:\n          protocol: http/protobuf\n          endpoint: ftp://c:1\n",
        ));
        assert_eq!(key, "readers[0].periodic.exporter.otlp.endpoint");
        assert!(message.contains("ftp"), "{message}");
        assert_eq!(
            err(&periodic(&format!("{otlp}          temporality_preference: delta\n"))).0,
            "readers[0].periodic.exporter.otlp.temporality_preference"
        );
        assert_eq!(
            err(&periodic(&format!(
                "{otlp}          headers:\n            - name: 'bad name'\n              value: x\n"
            )))
            .0,
            "readers[0].periodic.exporter.otlp.headers[0].name"
        );
        assert_eq!(
            err(&periodic(&format!("{otlp}          client_certificate: /nonexistent.pem\n"))).0,
            "readers[0].periodic.exporter.otlp.client_certificate"
        );
    }
}
