//! The `loki` exporter: log records to Grafana Loki's push API (PROTOCOLS.md §5.1), protobuf +
//! snappy (default) or JSON. Each distinct label set is a stream: labels come from the configured
//! resource and record attributes (and the `loki.resource.labels` / `loki.attribute.labels` hints
//! the collector reads), plus `exporter`, `job`, `instance` and `level` unless turned off.
//! Everything else travels as structured metadata, so nothing is lost and label cardinality
//! stays low. Entries of a stream are sent in time order. 429 and 5xx are retried, other 4xx drop
//! the batch.

use super::http_post::HttpPoster;
use super::values::text;
use crate::config::deserialize_duration;
use crate::hexfmt::hex;
use crate::pipeline::queue::SendingQueueConfig;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use crate::proto::loki as pb;
use crate::secret::{Secret, SecretUrl};
use crate::tls::client::TlsClientConfig;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri, header};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Protobuf,
    Json,
}

/// What an entry's line is.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The body; everything that is not a label travels as structured metadata.
    #[default]
    Body,
    /// One JSON object (`body`, `traceid`, `spanid`, `severity`, `attributes`, `resources`), as
    /// the collector's `loki.format: json` wrote it, for Loki versions without structured
    /// metadata; nothing else is sent.
    Json,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Labels {
    /// Resource attribute → label name.
    pub resource: BTreeMap<String, String>,
    /// Log record attribute → label name.
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultLabels {
    pub exporter: bool,
    pub job: bool,
    pub instance: bool,
    pub level: bool,
}

impl Default for DefaultLabels {
    fn default() -> Self {
        DefaultLabels { exporter: true, job: true, instance: true, level: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LokiConfig {
    /// The push URL, e.g. `http://loki:3100/loki/api/v1/push`; user info is sent as basic auth.
    pub endpoint: SecretUrl,
    pub encoding: Encoding,
    /// Sent as `X-Scope-OrgID` (multi-tenant Loki).
    pub tenant_id: String,
    pub headers: BTreeMap<String, Secret>,
    pub labels: Labels,
    pub default_labels_enabled: DefaultLabels,
    /// `body` or `json`; a resource's `loki.format` attribute (`json` or `raw`) overrides it.
    pub line_format: LineFormat,
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
    /// An authenticator extension that sets each request's credentials (see `auth::client`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthSettings>,
}

impl Default for LokiConfig {
    fn default() -> Self {
        LokiConfig {
            endpoint: SecretUrl::default(),
            encoding: Encoding::Protobuf,
            tenant_id: String::new(),
            headers: BTreeMap::new(),
            labels: Labels::default(),
            default_labels_enabled: DefaultLabels::default(),
            line_format: LineFormat::Body,
            timeout: Duration::from_secs(30),
            tls: TlsClientConfig::default(),
            sending_queue: SendingQueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            auth: None,
        }
    }
}

/// A Loki label name: `[a-zA-Z_][a-zA-Z0-9_]*`, other characters as `_`.
fn label_name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

impl LokiConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let uri: Uri = self
            .endpoint
            .expose()
            .parse()
            .map_err(|_| ("endpoint".to_string(), format!("\"{}\" is not a URL", self.endpoint)))?;
        crate::secret::basic_auth_from_userinfo(&uri).map_err(|m| ("endpoint".to_string(), m))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err((
                "endpoint".into(),
                "is required: the push URL, such as http://loki:3100/loki/api/v1/push".into(),
            ));
        }
        crate::secret::check_headers(&self.headers)?;
        HeaderValue::try_from(self.tenant_id.as_str())
            .map_err(|_| ("tenant_id".to_string(), "invalid header value".to_string()))?;
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be greater than 0".into()));
        }
        self.tls.validate()?;
        self.sending_queue.validate().map_err(|(k, m)| (format!("sending_queue.{k}"), m))?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref())
}

/// A value in a JSON line: scalars as JSON scalars, the rest as `text` gives them.
fn json_value(v: Option<&AnyValue>) -> serde_json::Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| d.to_string().into(), Into::into)
        }
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        _ => text(v).into(),
    }
}

/// Hint attributes (`loki.resource.labels: "a, b"`) as a list of names.
fn hint(attrs: &[KeyValue], key: &str) -> Vec<String> {
    get(attrs, key)
        .map(|v| text(Some(v)).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// One entry: (ns timestamp, line, structured metadata).
type Entry = (u64, String, Vec<(String, String)>);

/// Log records grouped into streams by their label sets (a sorted map renders the selector).
pub fn streams(
    request: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    cfg: &LokiConfig,
) -> BTreeMap<BTreeMap<String, String>, Vec<Entry>> {
    let mut out: BTreeMap<BTreeMap<String, String>, Vec<Entry>> = BTreeMap::new();
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let resource_hint = hint(resource, "loki.resource.labels");
        let format = match get(resource, "loki.format").map(|v| text(Some(v))).as_deref() {
            Some("json") => LineFormat::Json,
            Some("raw") => LineFormat::Body,
            _ => cfg.line_format,
        };
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let mut labels = BTreeMap::new();
                let d = &cfg.default_labels_enabled;
                if d.exporter {
                    labels.insert("exporter".to_string(), "OTLP".to_string());
                }
                let service = get(resource, "service.name").map(|v| text(Some(v)));
                if d.job
                    && let Some(name) = &service
                {
                    let job = match get(resource, "service.namespace") {
                        Some(ns) => format!("{}/{name}", text(Some(ns))),
                        None => name.clone(),
                    };
                    labels.insert("job".into(), job);
                }
                if d.instance
                    && let Some(i) = get(resource, "service.instance.id")
                {
                    labels.insert("instance".into(), text(Some(i)));
                }
                if d.level && !r.severity_text.is_empty() {
                    labels.insert("level".into(), r.severity_text.to_lowercase());
                }
                let mut used_resource: Vec<&str> = Vec::new();
                for (attr, name) in &cfg.labels.resource {
                    if let Some(v) = get(resource, attr) {
                        labels.insert(label_name(name), text(Some(v)));
                        used_resource.push(attr);
                    }
                }
                for attr in &resource_hint {
                    if let Some(v) = get(resource, attr) {
                        labels.insert(label_name(attr), text(Some(v)));
                        used_resource.push(attr);
                    }
                }
                let mut used_record: Vec<&str> = Vec::new();
                for (attr, name) in &cfg.labels.attributes {
                    if let Some(v) = get(&r.attributes, attr) {
                        labels.insert(label_name(name), text(Some(v)));
                        used_record.push(attr);
                    }
                }
                let record_hint = hint(&r.attributes, "loki.attribute.labels");
                for attr in &record_hint {
                    if let Some(v) = get(&r.attributes, attr) {
                        labels.insert(label_name(attr), text(Some(v)));
                        used_record.push(attr);
                    }
                }
                let record_rest = r
                    .attributes
                    .iter()
                    .filter(|a| !used_record.contains(&a.key.as_str()) && a.key != "loki.attribute.labels");
                let resource_rest = resource.iter().filter(|a| {
                    !used_resource.contains(&a.key.as_str())
                        && !matches!(a.key.as_str(), "loki.resource.labels" | "loki.format")
                });
                let (line, metadata) = if format == LineFormat::Json {
                    // Everything else in the line.
                    let mut obj = serde_json::Map::new();
                    obj.insert("body".into(), text(r.body.as_ref()).into());
                    if !r.trace_id.is_empty() {
                        obj.insert("traceid".into(), hex(&r.trace_id).into());
                    }
                    if !r.span_id.is_empty() {
                        obj.insert("spanid".into(), hex(&r.span_id).into());
                    }
                    if !r.severity_text.is_empty() {
                        obj.insert("severity".into(), r.severity_text.clone().into());
                    }
                    let typed =
                        |rest: &mut dyn Iterator<Item = &KeyValue>| -> serde_json::Map<String, serde_json::Value> {
                            rest.map(|a| (a.key.clone(), json_value(a.value.as_ref()))).collect()
                        };
                    let attributes = typed(&mut record_rest.into_iter());
                    if !attributes.is_empty() {
                        obj.insert("attributes".into(), attributes.into());
                    }
                    let resources = typed(&mut resource_rest.into_iter());
                    if !resources.is_empty() {
                        obj.insert("resources".into(), resources.into());
                    }
                    (serde_json::Value::Object(obj).to_string(), Vec::new())
                } else {
                    // Everything else as structured metadata.
                    let mut metadata: Vec<(String, String)> =
                        record_rest.map(|a| (a.key.clone(), text(a.value.as_ref()))).collect();
                    metadata.extend(resource_rest.map(|a| (format!("resource.{}", a.key), text(a.value.as_ref()))));
                    if !r.trace_id.is_empty() {
                        metadata.push(("trace_id".into(), hex(&r.trace_id)));
                    }
                    if !r.span_id.is_empty() {
                        metadata.push(("span_id".into(), hex(&r.span_id)));
                    }
                    if r.severity_number != 0 {
                        metadata.push(("severity_number".into(), r.severity_number.to_string()));
                    }
                    (text(r.body.as_ref()), metadata)
                };
                let time = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
                out.entry(labels).or_default().push((time, line, metadata));
            }
        }
    }
    for entries in out.values_mut() {
        entries.sort_by_key(|(t, _, _)| *t);
    }
    out
}

/// A label set in LogQL selector form: `{a="x", b="y\"z"}`.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

pub struct LokiExporter {
    cfg: LokiConfig,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    poster: HttpPoster,
}

impl LokiExporter {
    pub fn new(cfg: &LokiConfig) -> Result<LokiExporter, String> {
        let uri: Uri = cfg.endpoint.expose().parse().map_err(|e| format!("endpoint: {e}"))?;
        let mut headers = crate::secret::headers(&cfg.headers)?;
        if !cfg.tenant_id.is_empty() {
            headers.push((
                HeaderName::from_static("x-scope-orgid"),
                HeaderValue::try_from(cfg.tenant_id.as_str()).map_err(|e| e.to_string())?,
            ));
        }
        Ok(LokiExporter { cfg: cfg.clone(), uri, headers, poster: HttpPoster::new(&cfg.tls, cfg.timeout)? })
    }

    pub fn body(
        &self,
        request: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    ) -> Result<(Bytes, &'static str), ExportError> {
        let streams = streams(request, &self.cfg);
        match self.cfg.encoding {
            Encoding::Protobuf => {
                let push = pb::PushRequest {
                    streams: streams
                        .iter()
                        .map(|(labels, entries)| pb::StreamAdapter {
                            labels: selector(labels),
                            entries: entries
                                .iter()
                                .map(|(t, line, md)| pb::EntryAdapter {
                                    timestamp: Some(prost_types::Timestamp {
                                        seconds: (t / 1_000_000_000) as i64,
                                        nanos: (t % 1_000_000_000) as i32,
                                    }),
                                    line: line.clone(),
                                    structured_metadata: md
                                        .iter()
                                        .map(|(name, value)| pb::LabelPairAdapter {
                                            name: name.clone(),
                                            value: value.clone(),
                                        })
                                        .collect(),
                                })
                                .collect(),
                        })
                        .collect(),
                };
                let body = snap::raw::Encoder::new()
                    .compress_vec(&push.encode_to_vec())
                    .map_err(|e| ExportError::Permanent { reason: format!("snappy: {e}") })?;
                Ok((Bytes::from(body), "application/x-protobuf"))
            }
            Encoding::Json => {
                let streams: Vec<serde_json::Value> = streams
                    .iter()
                    .map(|(labels, entries)| {
                        serde_json::json!({
                            "stream": labels,
                            "values": entries.iter().map(|(t, line, md)| {
                                let md: serde_json::Map<String, serde_json::Value> = md.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
                                serde_json::json!([t.to_string(), line, md])
                            }).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                Ok((Bytes::from(serde_json::json!({"streams": streams}).to_string()), "application/json"))
            }
        }
    }

    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let Ok(Request::Logs(logs)) = batch.request() else {
            return Err(ExportError::Permanent { reason: "the loki exporter takes logs only".into() });
        };
        let (body, content_type) = self.body(logs)?;
        let mut headers = self.headers.clone();
        headers.push((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
        let (parts, answer) = self.poster.post(&self.uri, &headers, body, 4096, batch.context()).await?;
        if parts.status.is_success() {
            return Ok(());
        }
        Err(super::http_post::status_error(&parts, &answer, |s| s == 429 || s >= 500))
    }
}

impl Exporter for LokiExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { crate::auth::client::scrubbed(self.poster.auth(), self.send(batch).await) })
    }
}

/// The `loki` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<LokiConfig>(
    "loki",
    &[crate::signal::Signal::Logs],
    "Grafana Loki push API (protobuf+snappy or JSON)",
);

impl crate::pipeline::component::ExporterSettings for LokiConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        LokiConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            let mut exporter = LokiExporter::new(self)?;
            exporter.poster =
                exporter.poster.authenticated(crate::auth::client::ClientAuth::new(self.auth.as_ref(), &ctx.auth));
            Ok(std::sync::Arc::new(exporter) as _)
        })
    }

    fn queue(&self) -> crate::pipeline::queue::QueueSettings {
        self.sending_queue.settings(self.retry_on_failure.clone())
    }

    fn scrubber(&self) -> crate::secret::Scrubber {
        crate::secret::Scrubber::new(self.headers.values(), [&self.endpoint])
    }
    fn authenticator(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authenticator.as_str())
    }

    fn destination(&self) -> String {
        format!("{} (Loki push)", self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    #[test]
    fn a_json_line_carries_what_is_not_a_label_and_loki_format_chooses_per_resource() {
        let resource = |attrs: Vec<KeyValue>| ResourceLogs {
            resource: Some(Resource { attributes: attrs, ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 5,
                    severity_text: "WARN".into(),
                    body: Some(string("disk almost full")),
                    attributes: vec![kv("free", crate::attributes::int(3))],
                    span_id: vec![0xcd; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![
                resource(vec![kv("service.name", string("a")), kv("host.name", string("n1"))]),
                resource(vec![kv("service.name", string("b")), kv("loki.format", string("raw"))]),
            ],
        };
        let cfg = LokiConfig { endpoint: "http://l".into(), line_format: LineFormat::Json, ..Default::default() };
        let s = streams(&req, &cfg);
        let (_, a) = s.iter().find(|(l, _)| l["job"] == "a").unwrap();
        let line: serde_json::Value = serde_json::from_str(&a[0].1).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"body": "disk almost full", "spanid": "cd".repeat(8), "severity": "WARN",
                "attributes": {"free": 3}, "resources": {"service.name": "a", "host.name": "n1"}})
        );
        assert!(a[0].2.is_empty(), "no structured metadata with JSON lines");
        let (_, b) = s.iter().find(|(l, _)| l["job"] == "b").unwrap();
        assert_eq!(b[0].1, "disk almost full", "loki.format: raw keeps the body as the line");
        assert!(b[0].2.iter().all(|(k, _)| k != "resource.loki.format"), "{:?}", b[0].2);
    }

    #[test]
    fn labels_streams_metadata_and_order() {
        let rec = |t: u64, body: &str, level: &str, attrs: Vec<KeyValue>| LogRecord {
            time_unix_nano: t,
            severity_text: level.into(),
            body: Some(string(body)),
            attributes: attrs,
            trace_id: vec![0xab; 16],
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", string("checkout")),
                        kv("k8s.namespace.name", string("shop")),
                        kv("host.name", string("node-1")),
                        kv("loki.resource.labels", string("k8s.namespace.name")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        rec(20, "second", "INFO", vec![kv("user", string("u1"))]),
                        rec(10, "first", "INFO", vec![kv("user", string("u2"))]),
                        rec(15, "oops", "ERROR", vec![kv("code", string("E1"))]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let s = streams(&req, &LokiConfig { endpoint: "http://l".into(), ..Default::default() });
        assert_eq!(s.len(), 2, "info and error are two streams");
        let (labels, entries) = s.iter().find(|(l, _)| l["level"] == "info").unwrap();
        assert_eq!(selector(labels), r#"{exporter="OTLP", job="checkout", k8s_namespace_name="shop", level="info"}"#);
        assert_eq!(entries.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), vec!["first", "second"], "time order");
        let md = &entries[0].2;
        assert!(md.contains(&("user".into(), "u2".into())));
        assert!(md.contains(&("resource.host.name".into(), "node-1".into())));
        assert!(md.contains(&("trace_id".into(), "ab".repeat(16))));
        assert!(!md.iter().any(|(k, _)| k == "resource.k8s.namespace.name"), "a label is not repeated as metadata");
        assert_eq!(selector(&[("a".to_string(), "q\"x\\".to_string())].into()), r#"{a="q\"x\\"}"#);
    }
}
