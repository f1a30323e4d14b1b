//! The `prometheusremotewrite` exporter: OTLP metrics as Prometheus Remote Write 1.0 (a snappy
//! block-compressed `WriteRequest`, PROTOCOLS.md §4.4) to any Prometheus-compatible store, or as
//! Remote Write 2.0 (`protobuf_message: io.prometheus.write.v2.Request`, §4.5: a symbols table,
//! metadata and start timestamps with every series).
//! Series are sharded over `remote_write_queue.num_consumers` parallel senders by a hash of their
//! labels, and batches are exported one after another, so the samples of one series always
//! arrive in order. 5xx and 429 answers are retried; other 4xx drop the batch.

use super::prometheus::series::{FamilyKind, Series, Settings, to_series};
use crate::config::deserialize_duration;
use crate::pipeline::queue::QueueSettings;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request, Signal};
use crate::proto::prometheus as pb;
use crate::proto::prometheus_v2 as v2;
use crate::secret::{Secret, SecretUrl};
use crate::tls::client::{Protocol, TlsClientConfig};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const V1_MESSAGE: &str = "prometheus.WriteRequest";
const V2_MESSAGE: &str = "io.prometheus.write.v2.Request";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusRemoteWriteConfig {
    /// The remote-write URL, e.g. `http://victoria:8428/api/v1/write`; user info is sent as
    /// basic auth unless `headers` hold an Authorization.
    pub endpoint: SecretUrl,
    pub headers: BTreeMap<String, Secret>,
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    /// Prefix of every metric name.
    pub namespace: String,
    /// Added to every series that does not have the label.
    pub external_labels: BTreeMap<String, String>,
    pub resource_to_telemetry_conversion: Enabled<false>,
    pub add_metric_suffixes: bool,
    pub target_info: Enabled<true>,
    /// Largest request before compression; a batch's series are split to fit.
    pub max_batch_size_bytes: usize,
    pub remote_write_queue: RemoteWriteQueue,
    pub retry_on_failure: RetryConfig,
    /// An authenticator extension that sets each request's credentials (see `auth::client`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthSettings>,
    pub protobuf_message: String,
}

impl Default for PrometheusRemoteWriteConfig {
    fn default() -> Self {
        PrometheusRemoteWriteConfig {
            endpoint: SecretUrl::default(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            tls: TlsClientConfig::default(),
            namespace: String::new(),
            external_labels: BTreeMap::new(),
            resource_to_telemetry_conversion: Enabled { enabled: false },
            add_metric_suffixes: true,
            target_info: Enabled { enabled: true },
            max_batch_size_bytes: 3_000_000,
            remote_write_queue: RemoteWriteQueue::default(),
            retry_on_failure: RetryConfig { initial_interval: Duration::from_millis(50), ..RetryConfig::default() },
            auth: None,
            protobuf_message: V1_MESSAGE.into(),
        }
    }
}

/// `{enabled: bool}` sections, with their default.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enabled<const DEFAULT: bool> {
    #[serde(default = "default_bool::<DEFAULT>")]
    pub enabled: bool,
}

fn default_bool<const B: bool>() -> bool {
    B
}

impl<const D: bool> Default for Enabled<D> {
    fn default() -> Self {
        Enabled { enabled: D }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueue {
    pub enabled: bool,
    /// Batches waiting to be written; unset, the queue is bounded in bytes instead.
    pub queue_size: Option<usize>,
    /// Parallel senders; each series always goes through the same one.
    pub num_consumers: usize,
    /// A `file_storage` extension keeping the queue on disk (switchyard's key, as
    /// `sending_queue.storage` on the other exporters).
    pub storage: Option<String>,
    /// What the queue may hold on disk, in MiB.
    pub storage_limit_mib: u64,
}

impl Default for RemoteWriteQueue {
    fn default() -> Self {
        RemoteWriteQueue {
            enabled: true,
            queue_size: None,
            num_consumers: 5,
            storage: None,
            storage_limit_mib: crate::pipeline::queue::config::DEFAULT_STORAGE_LIMIT_MIB,
        }
    }
}

impl PrometheusRemoteWriteConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.endpoint.is_empty() {
            return Err((
                "endpoint".into(),
                "is required: the remote-write URL, such as http://host:9090/api/v1/write".into(),
            ));
        }
        let uri: Uri = self
            .endpoint
            .expose()
            .parse()
            .map_err(|_| ("endpoint".to_string(), format!("\"{}\" is not a URL", self.endpoint)))?;
        crate::secret::basic_auth_from_userinfo(&uri).map_err(|m| ("endpoint".to_string(), m))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(("endpoint".into(), format!("\"{}\" must be an http:// or https:// URL", self.endpoint)));
        }
        crate::secret::check_headers(&self.headers)?;
        for (k, v) in &self.external_labels {
            if k.is_empty() || v.is_empty() {
                return Err(("external_labels".into(), "label names and values must not be empty".into()));
            }
        }
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be greater than 0".into()));
        }
        if self.max_batch_size_bytes < 1024 {
            return Err(("max_batch_size_bytes".into(), "must be at least 1024".into()));
        }
        let q = &self.remote_write_queue;
        if q.queue_size == Some(0) || q.storage_limit_mib == 0 || !(1..=256).contains(&q.num_consumers) {
            return Err((
                "remote_write_queue".into(),
                "queue_size and storage_limit_mib must be at least 1 and num_consumers between 1 and 256".into(),
            ));
        }
        if self.protobuf_message != V1_MESSAGE && self.protobuf_message != V2_MESSAGE {
            return Err((
                "protobuf_message".into(),
                format!(
                    "\"{}\" is not supported: use {V1_MESSAGE} (Remote Write 1.0) or {V2_MESSAGE} (2.0)",
                    self.protobuf_message
                ),
            ));
        }
        self.tls.validate()?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }

    /// The exporter queue: batches in order (one consumer), sharding happens inside.
    pub fn queue_settings(&self) -> QueueSettings {
        let q = &self.remote_write_queue;
        let by_count = q.queue_size.map(|n| QueueSettings {
            queue_size: n,
            sizer: crate::pipeline::Sizer::Requests,
            count_bound_set: true,
            ..QueueSettings::default()
        });
        QueueSettings {
            num_consumers: 1,
            retry: self.retry_on_failure.clone(),
            storage: q.storage.clone(),
            storage_limit: q.storage_limit_mib.saturating_mul(1 << 20),
            // Series must stay in order: on disk, each record is sent by itself.
            batch: q
                .storage
                .as_ref()
                .map(|_| crate::pipeline::queue::QueueBatchConfig { min_size: 0, ..Default::default() }),
            ..by_count.unwrap_or_default()
        }
    }
}

struct Inner {
    name: String,
    /// Remote Write 2.0 rather than 1.0.
    v2: bool,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    auth: Option<crate::auth::client::ClientAuth>,
}

pub struct PrometheusRemoteWriteExporter {
    inner: Arc<Inner>,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    settings: Settings,
    shards: usize,
    max_bytes: usize,
}

impl PrometheusRemoteWriteExporter {
    pub fn new(
        name: String,
        cfg: &PrometheusRemoteWriteConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Result<Self, String> {
        let uri: Uri = cfg.endpoint.expose().parse().map_err(|e| format!("endpoint: {e}"))?;
        let (uri, userinfo_auth) = crate::secret::basic_auth_from_userinfo(&uri)?;
        let mut headers = crate::secret::headers(&cfg.headers)?;
        if let Some(auth) = userinfo_auth
            && !crate::secret::has_authorization(&headers)
        {
            headers.push((header::AUTHORIZATION, auth));
        }
        let connector = cfg.tls.connector(Protocol::Http1, cfg.timeout)?;
        Ok(PrometheusRemoteWriteExporter {
            telemetry,
            inner: Arc::new(Inner {
                name,
                v2: cfg.protobuf_message == V2_MESSAGE,
                uri,
                headers,
                timeout: cfg.timeout,
                client: Client::builder(TokioExecutor::new()).build(connector),
                auth: None,
            }),
            settings: Settings {
                namespace: cfg.namespace.clone(),
                add_metric_suffixes: cfg.add_metric_suffixes,
                resource_to_telemetry: cfg.resource_to_telemetry_conversion.enabled,
                target_info: cfg.target_info.enabled,
                external_labels: cfg.external_labels.clone(),
            },
            shards: cfg.remote_write_queue.num_consumers.max(1),
            max_bytes: cfg.max_batch_size_bytes,
        })
    }

    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let request = batch.request().map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        let Request::Metrics(metrics) = request else {
            return Err(ExportError::Permanent { reason: format!("{} takes metrics only", self.inner.name) });
        };
        let converted = to_series(metrics, &self.settings);
        if converted.dropped_points > 0 {
            super::partial::report(
                &self.telemetry,
                &self.inner.name,
                Signal::Metrics,
                Some((
                    converted.dropped_points as i64,
                    "delta temporality and exponential histograms cannot be written to Prometheus; dropped".into(),
                )),
            );
        }
        let mut shards: Vec<Vec<Series>> = vec![Vec::new(); self.shards];
        for s in converted.series {
            let shard = (hash(&s) % self.shards as u64) as usize;
            shards[shard].push(s);
        }
        let mut senders = tokio::task::JoinSet::new();
        let context: Option<Arc<[(String, String)]>> = batch.context().map(Arc::from);
        for series in shards.into_iter().filter(|s| !s.is_empty()) {
            let (inner, max, context) = (self.inner.clone(), self.max_bytes, context.clone());
            senders.spawn(async move {
                let requests = if inner.v2 {
                    split_v2(series, max).iter().map(Message::encode_to_vec).collect::<Vec<_>>()
                } else {
                    split(series.into_iter().map(to_proto).collect(), max).iter().map(Message::encode_to_vec).collect()
                };
                for raw in requests {
                    inner.post(raw, context.as_deref()).await?;
                }
                Ok::<(), ExportError>(())
            });
        }
        // Every shard runs to its end; the batch fails (retryable first) if any shard did.
        let mut failure: Option<ExportError> = None;
        while let Some(joined) = senders.join_next().await {
            let result =
                joined.unwrap_or_else(|e| Err(ExportError::Permanent { reason: format!("sender failed: {e}") }));
            if let Err(e) = result {
                let replace = matches!(
                    (&failure, &e),
                    (None, _) | (Some(ExportError::Permanent { .. }), ExportError::Retryable { .. })
                );
                if replace {
                    failure = Some(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

impl Inner {
    async fn post(&self, raw: Vec<u8>, context: Option<&[(String, String)]>) -> Result<(), ExportError> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .map_err(|e| ExportError::Permanent { reason: format!("snappy: {e}") })?;
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_ENCODING, "snappy")
            .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        req = if self.v2 {
            req.header(header::CONTENT_TYPE, format!("application/x-protobuf;proto={V2_MESSAGE}"))
                .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        } else {
            req.header(header::CONTENT_TYPE, "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        };
        for (k, v) in crate::auth::client::with_auth(self.auth.as_ref(), &self.headers, context).await?.iter() {
            if !matches!(k.as_str(), "content-encoding" | "content-type" | "x-prometheus-remote-write-version") {
                req = req.header(k, v);
            }
        }
        let req =
            req.body(Full::new(Bytes::from(body))).map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        let uri = &self.uri;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| ExportError::Retryable {
                after: None,
                reason: format!("{uri}: {}", crate::cause::chain(&e)),
            })?;
            let (parts, body) = resp.into_parts();
            let body =
                http_body_util::Limited::new(body, 4096).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok::<_, ExportError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            ExportError::Retryable { after: None, reason: format!("{uri}: no answer within {:?}", self.timeout) }
        })??;
        classify(parts.status, &parts.headers, &body)?;
        // A 2xx without the written counts comes from a 1.x receiver that ignored the 2.0 body.
        if self.v2 && !parts.headers.contains_key("x-prometheus-remote-write-samples-written") {
            return Err(ExportError::Permanent {
                reason: format!(
                    "{uri} answered {} without X-Prometheus-Remote-Write-Samples-Written: it does not take Remote Write 2.0 (use protobuf_message: {V1_MESSAGE})",
                    parts.status
                ),
            });
        }
        Ok(())
    }
}

/// The remote-write spec's rules: 2xx written; 5xx and 429 retried; other 4xx never.
fn classify(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Result<(), ExportError> {
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    let reason = format!("HTTP {status}: {}", text.trim());
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(ExportError::Retryable { after: super::otlphttp::retry_after(headers), reason })
    } else {
        Err(ExportError::Permanent { reason })
    }
}

/// FNV-1a over a series' labels: its shard.
fn hash(s: &Series) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for (n, v) in &s.labels {
        for b in n.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn to_proto(s: Series) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: s.labels.into_iter().map(|(name, value)| pb::Label { name, value }).collect(),
        samples: s.samples.into_iter().map(|(value, timestamp)| pb::Sample { value, timestamp }).collect(),
    }
}

/// Requests of at most `max` bytes (before compression); a series is never split.
fn split(series: Vec<pb::TimeSeries>, max: usize) -> Vec<pb::WriteRequest> {
    let mut out = Vec::new();
    let mut current = pb::WriteRequest::default();
    let mut size = 0;
    for s in series {
        let len = s.encoded_len() + 5;
        if size + len > max && !current.timeseries.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.timeseries.push(s);
    }
    if !current.timeseries.is_empty() {
        out.push(current);
    }
    out
}

/// Remote Write 2.0 requests of at most `max` bytes, each with its own symbols table.
fn split_v2(series: Vec<Series>, max: usize) -> Vec<v2::Request> {
    struct Building {
        request: v2::Request,
        index: std::collections::HashMap<String, u32>,
        size: usize,
    }
    impl Building {
        fn new() -> Building {
            let mut index = std::collections::HashMap::new();
            index.insert(String::new(), 0);
            Building { request: v2::Request { symbols: vec![String::new()], timeseries: Vec::new() }, index, size: 0 }
        }
        fn symbol(&mut self, s: &str) -> u32 {
            if let Some(i) = self.index.get(s) {
                return *i;
            }
            let i = self.request.symbols.len() as u32;
            self.request.symbols.push(s.to_string());
            self.index.insert(s.to_string(), i);
            self.size += s.len() + 2;
            i
        }
    }
    let mut out = Vec::new();
    let mut b = Building::new();
    for s in series {
        let estimate = s.labels.iter().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>() + s.samples.len() * 20 + 16;
        if b.size + estimate > max && !b.request.timeseries.is_empty() {
            out.push(std::mem::replace(&mut b, Building::new()).request);
        }
        let labels_refs = s.labels.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]).collect::<Vec<_>>();
        let labels_refs: Vec<u32> = labels_refs.into_iter().map(|x| b.symbol(x)).collect();
        let name = s.labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.as_str()).unwrap_or("");
        use v2::metadata::MetricType as T;
        let kind = match s.kind {
            FamilyKind::Counter => T::Counter,
            FamilyKind::Gauge if name.ends_with("target_info") => T::Info,
            FamilyKind::Gauge => T::Gauge,
            FamilyKind::Histogram => T::Histogram,
            FamilyKind::Summary => T::Summary,
        };
        let help_ref = b.symbol(&s.help);
        let start = s.start_ms;
        b.size += estimate;
        b.request.timeseries.push(v2::TimeSeries {
            labels_refs,
            samples: s
                .samples
                .into_iter()
                .map(|(value, timestamp)| v2::Sample { value, timestamp, start_timestamp: start })
                .collect(),
            metadata: Some(v2::Metadata { r#type: kind as i32, help_ref, unit_ref: 0 }),
        });
    }
    if !b.request.timeseries.is_empty() {
        out.push(b.request);
    }
    out
}

impl Exporter for PrometheusRemoteWriteExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { crate::auth::client::scrubbed(self.inner.auth.as_ref(), self.send(batch).await) })
    }
}

/// The `prometheusremotewrite` exporter's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::exporter::<PrometheusRemoteWriteConfig>(
        "prometheusremotewrite",
        &[crate::signal::Signal::Metrics],
        "Prometheus Remote Write 1.0 to Prometheus, VictoriaMetrics, Mimir and others",
    );

impl crate::pipeline::component::ExporterSettings for PrometheusRemoteWriteConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        PrometheusRemoteWriteConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            let mut exporter = PrometheusRemoteWriteExporter::new(ctx.name.clone(), self, ctx.telemetry.clone())?;
            if let Some(inner) = Arc::get_mut(&mut exporter.inner) {
                inner.auth = crate::auth::client::ClientAuth::new(self.auth.as_ref(), &ctx.auth);
            }
            Ok(std::sync::Arc::new(exporter) as _)
        })
    }

    fn queue(&self) -> crate::pipeline::queue::QueueSettings {
        self.queue_settings()
    }

    fn scrubber(&self) -> crate::secret::Scrubber {
        crate::secret::Scrubber::new(self.headers.values(), [&self.endpoint])
    }
    fn authenticator(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authenticator.as_str())
    }

    fn destination(&self) -> String {
        format!("{} (Prometheus remote write)", self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_remote_write_spec() {
        let h = http::HeaderMap::new();
        assert!(classify(StatusCode::NO_CONTENT, &h, b"").is_ok());
        for code in [500, 502, 503, 429] {
            let r = classify(StatusCode::from_u16(code).unwrap(), &h, b"busy");
            assert!(matches!(r, Err(ExportError::Retryable { .. })), "{code}");
        }
        for code in [400, 401, 404, 413] {
            let r = classify(StatusCode::from_u16(code).unwrap(), &h, b"out of order sample");
            assert!(matches!(&r, Err(ExportError::Permanent { reason }) if reason.contains("out of order")), "{code}");
        }
    }

    #[test]
    fn requests_stay_under_the_size_limit_without_splitting_a_series() {
        let series: Vec<pb::TimeSeries> = (0..100)
            .map(|i| pb::TimeSeries {
                labels: vec![pb::Label { name: "__name__".into(), value: format!("m{i}") }],
                samples: vec![pb::Sample { value: 1.0, timestamp: 1 }; 20],
            })
            .collect();
        let requests = split(series, 2048);
        assert!(requests.len() > 1);
        assert!(requests.iter().all(|r| r.encoded_len() <= 2048 || r.timeseries.len() == 1));
        assert_eq!(requests.iter().map(|r| r.timeseries.len()).sum::<usize>(), 100);
    }
}
