//! The `elasticsearch` exporter (also for OpenSearch): log records as `_bulk` NDJSON
//! (PROTOCOLS.md §5.2). Every per-item result is read: items refused with 429 are sent again
//! (up to `retry.max_retries` times, with backoff), other refused items are dropped and counted
//! with their reason; a request refused whole (429, 5xx, no answer) is retried: the whole batch
//! while nothing of it is stored, only the documents without an outcome afterwards.

use super::http_post::HttpPoster;
use super::values::{json, object as map};
use crate::config::deserialize_duration;
use crate::hexfmt::hex;
use crate::pipeline::queue::SendingQueueConfig;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request, Signal};
use crate::secret::{Secret, SecretUrl};
use crate::timefmt::rfc3339;
use crate::tls::client::TlsClientConfig;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri, header};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MappingMode {
    /// The record as OTel's logs data model names it (`@timestamp`, `body`, `attributes`, `resource`).
    None,
    /// Elastic Common Schema field names.
    Ecs,
    /// OTel-native: the same as `none`, with `scope` (the collector's default).
    #[default]
    Otel,
    /// Attributes at the top level.
    Raw,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    pub mode: MappingMode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentRetry {
    pub enabled: bool,
    pub max_retries: u32,
    #[serde(deserialize_with = "deserialize_duration")]
    pub initial_interval: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_interval: Duration,
}

impl Default for DocumentRetry {
    fn default() -> Self {
        DocumentRetry {
            enabled: true,
            max_retries: 3,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flush {
    /// Largest `_bulk` body; a batch that encodes larger is sent as several requests, and
    /// batches gathered for `interval` are sent as soon as they reach it.
    pub bytes: usize,
    /// When set, batches arriving within this time of the first are sent together.
    #[serde(deserialize_with = "crate::config::deserialize_opt_duration")]
    pub interval: Option<Duration>,
}

impl Default for Flush {
    fn default() -> Self {
        Flush { bytes: 5_000_000, interval: None }
    }
}

/// `logs_dynamic_id`: document ids from the records.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicId {
    /// Take a record's `elasticsearch.document_id` attribute as its `_id` (and leave the
    /// attribute out of the document).
    pub enabled: bool,
}

/// Only what is read of a `_bulk` answer (Elasticsearch and OpenSearch both filter): about 25
/// bytes an item instead of about 180, so large rounds stay far below the answer size limit.
const BULK_FILTER: &str = "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";

/// The attribute `logs_dynamic_id` takes the document id from.
const DOCUMENT_ID: &str = "elasticsearch.document_id";

/// One document for `_bulk`.
#[derive(Debug, Clone)]
pub struct Document {
    pub index: String,
    /// The `_id`, when the record gives one (`logs_dynamic_id`).
    pub id: Option<String>,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// User info in an endpoint is sent as basic auth unless `api_key` or `user` is set.
    pub endpoints: Vec<SecretUrl>,
    /// Index name; `%{attr}` takes a resource or record attribute, `%Y`, `%m`, `%d` the record's date.
    pub logs_index: String,
    pub mapping: Mapping,
    pub user: Secret,
    pub password: Secret,
    pub api_key: Secret,
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    pub flush: Flush,
    pub logs_dynamic_id: DynamicId,
    pub retry: DocumentRetry,
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
    /// An authenticator extension that sets each request's credentials (see `auth::client`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthSettings>,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        ElasticsearchConfig {
            endpoints: Vec::new(),
            logs_index: "logs-generic-default".into(),
            mapping: Mapping::default(),
            user: Secret::default(),
            password: Secret::default(),
            api_key: Secret::default(),
            timeout: Duration::from_secs(90),
            tls: TlsClientConfig::default(),
            flush: Flush::default(),
            logs_dynamic_id: DynamicId::default(),
            retry: DocumentRetry::default(),
            sending_queue: SendingQueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            auth: None,
        }
    }
}

impl ElasticsearchConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.endpoints.is_empty() {
            return Err(("endpoints".into(), "list at least one, such as http://elasticsearch:9200".into()));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let uri: Uri =
                e.expose().parse().map_err(|_| (format!("endpoints.{i}"), format!("\"{e}\" is not a URL")))?;
            crate::secret::basic_auth_from_userinfo(&uri).map_err(|m| (format!("endpoints.{i}"), m))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                return Err((format!("endpoints.{i}"), format!("\"{e}\" must be http:// or https://")));
            }
        }
        if self.logs_index.is_empty() {
            return Err(("logs_index".into(), "must not be empty".into()));
        }
        if self.flush.interval.is_some_and(|d| d.is_zero()) {
            return Err((
                "flush.interval".into(),
                "must be more than 0 (leave it out to send each batch at once)".into(),
            ));
        }
        if self.flush.bytes < 1024 {
            return Err(("flush.bytes".into(), "must be at least 1024".into()));
        }
        if !self.api_key.is_empty() && !self.user.is_empty() {
            return Err(("api_key".into(), "use api_key or user/password, not both".into()));
        }
        self.tls.validate()?;
        self.sending_queue.validate().map_err(|(k, m)| (format!("sending_queue.{k}"), m))?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }
}

/// The documents of a request: (index, source JSON).
pub fn documents(
    request: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    cfg: &ElasticsearchConfig,
) -> Vec<Document> {
    let mut out = Vec::new();
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let id = cfg
                    .logs_dynamic_id
                    .enabled
                    .then(|| r.attributes.iter().find(|a| a.key == DOCUMENT_ID))
                    .flatten()
                    .map(|a| match json(a.value.as_ref()) {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .filter(|id| !id.is_empty());
                let kept: Vec<KeyValue>;
                let attributes: &[KeyValue] = if id.is_some() {
                    kept = r.attributes.iter().filter(|a| a.key != DOCUMENT_ID).cloned().collect();
                    &kept
                } else {
                    &r.attributes
                };
                let t = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
                let ts = rfc3339(t);
                let mut doc = serde_json::Map::new();
                doc.insert("@timestamp".into(), serde_json::Value::String(ts.clone()));
                let trace = (!r.trace_id.is_empty()).then(|| hex(&r.trace_id));
                let span = (!r.span_id.is_empty()).then(|| hex(&r.span_id));
                match cfg.mapping.mode {
                    MappingMode::Ecs => {
                        doc.insert("message".into(), json(r.body.as_ref()));
                        doc.insert("log.level".into(), serde_json::Value::String(r.severity_text.clone()));
                        // Resource attributes under their ECS names where those differ, the
                        // others as they are (record attributes win a clash).
                        for a in resource {
                            doc.insert(ecs_name(&a.key).to_string(), json(a.value.as_ref()));
                        }
                        if let Some(t) = &trace {
                            doc.insert("trace.id".into(), t.clone().into());
                        }
                        if let Some(s) = &span {
                            doc.insert("span.id".into(), s.clone().into());
                        }
                        for a in attributes {
                            doc.insert(a.key.clone(), json(a.value.as_ref()));
                        }
                    }
                    MappingMode::Raw => {
                        doc.insert("body".into(), json(r.body.as_ref()));
                        for a in resource.iter().chain(attributes) {
                            doc.insert(a.key.clone(), json(a.value.as_ref()));
                        }
                    }
                    MappingMode::None | MappingMode::Otel => {
                        doc.insert("observed_timestamp".into(), rfc3339(r.observed_time_unix_nano).into());
                        doc.insert("severity_text".into(), r.severity_text.clone().into());
                        doc.insert("severity_number".into(), r.severity_number.into());
                        doc.insert("body".into(), json(r.body.as_ref()));
                        doc.insert("attributes".into(), map(attributes));
                        doc.insert("resource".into(), serde_json::json!({"attributes": map(resource)}));
                        if cfg.mapping.mode == MappingMode::Otel
                            && let Some(s) = &sl.scope
                        {
                            doc.insert("scope".into(), serde_json::json!({"name": s.name, "version": s.version}));
                        }
                        if let Some(t) = trace {
                            doc.insert("trace_id".into(), t.into());
                        }
                        if let Some(s) = span {
                            doc.insert("span_id".into(), s.into());
                        }
                    }
                }
                let index = index_name(&cfg.logs_index, resource, &r.attributes, &ts);
                out.push(Document { index, id, source: serde_json::Value::Object(doc).to_string() });
            }
        }
    }
    out
}

/// The ECS field of a resource attribute whose OpenTelemetry name differs (the rest keep theirs).
fn ecs_name(key: &str) -> &str {
    match key {
        "service.instance.id" => "service.node.name",
        "deployment.environment" | "deployment.environment.name" => "service.environment",
        "host.name" => "host.hostname",
        "host.arch" => "host.architecture",
        "os.type" => "os.platform",
        "os.description" => "os.full",
        "process.executable.path" => "process.executable",
        "k8s.pod.name" => "kubernetes.pod.name",
        "k8s.pod.uid" => "kubernetes.pod.uid",
        "k8s.namespace.name" => "kubernetes.namespace",
        "k8s.node.name" => "kubernetes.node.name",
        other => other,
    }
}

/// `%{attr}` from the record or resource (empty when absent), `%Y`/`%m`/`%d` from the date.
fn index_name(pattern: &str, resource: &[KeyValue], attrs: &[KeyValue], ts: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let key = &inner[..end];
            let v = attrs.iter().chain(resource).find(|a| a.key == key).map(|a| json(a.value.as_ref()));
            if let Some(serde_json::Value::String(s)) = v {
                out.push_str(&s.to_lowercase());
            }
            rest = &inner[end + 1..];
            continue;
        }
        match after.chars().next() {
            Some('Y') => out.push_str(&ts[0..4]),
            Some('m') => out.push_str(&ts[5..7]),
            Some('d') => out.push_str(&ts[8..10]),
            Some(c) => {
                out.push('%');
                out.push(c);
            }
            None => out.push('%'),
        }
        rest = after.get(1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

pub struct ElasticsearchExporter {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    cfg: ElasticsearchConfig,
    /// `<endpoint>/_bulk?filter_path=…` for every endpoint; requests go to `current`, the next on a connection failure.
    uris: Vec<Uri>,
    current: std::sync::atomic::AtomicUsize,
    headers: Vec<(HeaderName, HeaderValue)>,
    poster: HttpPoster,
    /// Batches waiting to be sent together (only with `flush.interval`).
    gathered: std::sync::Mutex<Gathered>,
    /// Set when the queue closes: nothing gathered waits any longer.
    closing: std::sync::atomic::AtomicBool,
    flush_now: tokio::sync::Notify,
}

/// Documents of several batches gathered for one `_bulk` round, with each batch's waiter.
#[derive(Default)]
struct Gathered {
    docs: Vec<Document>,
    bytes: usize,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), ExportError>>>,
    /// When they are sent: `flush.interval` after the first arrived, or at once when full.
    due: Option<tokio::time::Instant>,
}

impl ElasticsearchExporter {
    pub fn new(
        name: String,
        cfg: &ElasticsearchConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Result<Self, String> {
        let uris = cfg
            .endpoints
            .iter()
            .map(|e| {
                format!("{}/_bulk?{BULK_FILTER}", e.expose().trim_end_matches('/'))
                    .parse::<Uri>()
                    .map_err(|e| format!("endpoints: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let auth = if !cfg.api_key.is_empty() {
            Some(format!("ApiKey {}", cfg.api_key.expose()))
        } else if !cfg.user.is_empty() {
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    cfg.user.expose(),
                    cfg.password.expose()
                ))
            ))
        } else {
            None
        };
        let mut headers = vec![(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))];
        if let Some(a) = auth {
            let value =
                crate::secret::header_value(&a).map_err(|_| "credentials are not a valid header".to_string())?;
            headers.push((header::AUTHORIZATION, value));
        }
        let poster = HttpPoster::new(&cfg.tls, cfg.timeout)?;
        Ok(ElasticsearchExporter {
            name,
            telemetry,
            cfg: cfg.clone(),
            uris,
            current: Default::default(),
            headers,
            poster,
            gathered: Default::default(),
            closing: Default::default(),
            flush_now: tokio::sync::Notify::new(),
        })
    }

    /// The documents as `_bulk` bodies of at most `flush.bytes` each (a single larger document
    /// goes alone): (body, how many documents).
    pub fn bodies(&self, docs: &[Document]) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        let mut body = String::new();
        let mut n = 0;
        for Document { index, id, source } in docs {
            let action = match id {
                Some(id) => serde_json::json!({"create": {"_index": index, "_id": id}}),
                None => serde_json::json!({"create": {"_index": index}}),
            }
            .to_string();
            if n > 0 && body.len() + action.len() + source.len() + 2 > self.cfg.flush.bytes {
                out.push((std::mem::take(&mut body), n));
                n = 0;
            }
            body.push_str(&action);
            body.push('\n');
            body.push_str(source);
            body.push('\n');
            n += 1;
        }
        if n > 0 {
            out.push((body, n));
        }
        out
    }

    /// One `_bulk` request of `n` documents: (status, error type, error text) per item.
    async fn bulk_one(&self, body: String, n: usize) -> Result<Vec<(u16, String, String)>, ExportError> {
        use std::sync::atomic::Ordering;
        let at = self.current.load(Ordering::Relaxed) % self.uris.len();
        let uri = &self.uris[at];
        let (parts, body) =
            self.poster.post(uri, &self.headers, Bytes::from(body), 64 << 20, None).await.inspect_err(|_| {
                // Connection trouble: the next attempt goes to the next endpoint.
                self.current.store(at + 1, Ordering::Relaxed);
            })?;
        if !parts.status.is_success() {
            return Err(super::http_post::status_error(&parts, &body, |s| matches!(s, 429 | 502..=504)));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ExportError::Retryable { after: None, reason: format!("unreadable _bulk answer: {e}") })?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() != n {
            return Err(ExportError::Retryable {
                after: None,
                reason: format!("_bulk answered {} items for {n}", items.len()),
            });
        }
        Ok(items
            .iter()
            .map(|i| {
                let r = i.as_object().and_then(|o| o.values().next()).cloned().unwrap_or_default();
                let status = r["status"].as_u64().unwrap_or(0) as u16;
                let kind = r["error"]["type"].as_str().unwrap_or("unknown").to_string();
                (status, kind, r["error"]["reason"].as_str().unwrap_or("").to_string())
            })
            .collect())
    }

    /// Gathers a batch's documents with those of other batches arriving within `interval` of
    /// the first (sent sooner when they reach `flush.bytes`, when every queue consumer is
    /// waiting, or when the queue closes); every batch of a round gets the round's outcome.
    async fn gather(&self, docs: Vec<Document>, interval: Duration) -> Result<(), ExportError> {
        use std::sync::atomic::Ordering;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let mut due = {
            let mut g = self.gathered.lock().unwrap_or_else(|e| e.into_inner());
            g.bytes += docs.iter().map(|d| d.index.len() + d.source.len() + 32).sum::<usize>();
            g.docs.extend(docs);
            g.waiters.push(tx);
            let now = tokio::time::Instant::now();
            let full = g.bytes >= self.cfg.flush.bytes || g.waiters.len() >= self.cfg.sending_queue.num_consumers;
            if full || self.closing.load(Ordering::Relaxed) {
                g.due = Some(now);
            }
            *g.due.get_or_insert(now + interval)
        };
        loop {
            tokio::select! {
                r = &mut rx => {
                    return r.unwrap_or_else(|_| Err(ExportError::Retryable {
                        after: None,
                        reason: "the _bulk round carrying this batch was abandoned".into(),
                    }));
                }
                _ = tokio::time::sleep_until(due) => {}
                _ = self.flush_now.notified() => {}
            }
            let round = {
                let mut g = self.gathered.lock().unwrap_or_else(|e| e.into_inner());
                let ready = g.due.is_some_and(|d| d <= tokio::time::Instant::now());
                if ready || self.closing.load(Ordering::Relaxed) {
                    std::mem::take(&mut *g)
                } else {
                    Gathered::default()
                }
            };
            if round.waiters.is_empty() {
                // Another batch's task took this round (and will answer), or a newer round
                // has started without this batch: wait for the answer.
                due = tokio::time::Instant::now() + Duration::from_secs(3600);
                continue;
            }
            let result = self.send(round.docs).await;
            for w in round.waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// Sends documents, as `flush.bytes` bodies. Until some document has an outcome
    /// (stored or refused), a failed request fails the batch and the queue retries it whole;
    /// after that, only the documents without an outcome are sent again — items refused with
    /// 429 up to `retry.max_retries` times, the documents of a failed request for as long as
    /// `retry_on_failure` allows — so no document is stored twice.
    async fn send(&self, mut pending: Vec<Document>) -> Result<(), ExportError> {
        let mut wait = self.cfg.retry.initial_interval;
        let retries = if self.cfg.retry.enabled { self.cfg.retry.max_retries } else { 0 };
        let mut backoff = crate::pipeline::retry::Backoff::new(&self.cfg.retry_on_failure);
        let (mut settled_any, mut dropped, mut first_reason) = (false, 0usize, String::new());
        let mut refuse = |status: String, kind: &str, text: &str, n: usize| {
            self.telemetry.exporter_items_refused.with_label_values(&[&self.name, &status, kind]).inc_by(n as u64);
            if dropped == 0 {
                first_reason = format!("{status} {kind}: {text}");
            }
            dropped += n;
        };
        for attempt in 0.. {
            let bodies = self.bodies(&pending);
            let mut docs = pending.into_iter();
            let mut again = Vec::new();
            let mut failed: Option<(Option<Duration>, String)> = None;
            for (body, n) in bodies {
                let these: Vec<Document> = docs.by_ref().take(n).collect();
                match self.bulk_one(body, n).await {
                    Ok(results) => {
                        for (doc, (status, kind, text)) in these.into_iter().zip(results) {
                            match status {
                                200..=299 | 409 => {} // 409 on `create`: the document is already there
                                429 if attempt < retries => again.push(doc),
                                _ => refuse(status.to_string(), &kind, &text, 1),
                            }
                            settled_any |= status != 429 || attempt >= retries;
                        }
                    }
                    Err(e) if !settled_any => return Err(e),
                    Err(ExportError::Retryable { after, reason }) => {
                        again.extend(these);
                        failed = Some((after, reason));
                    }
                    Err(ExportError::Permanent { reason }) => refuse("request".into(), "refused", &reason, n),
                }
            }
            if again.is_empty() {
                break;
            }
            let delay = match failed {
                Some((after, reason)) => match backoff.next_delay(after) {
                    Some(d) => {
                        tracing::warn!(exporter = %self.name, documents = again.len(), %reason, delay = ?d,
                            "part of the batch is stored; sending the rest again");
                        d
                    }
                    None => {
                        refuse("request".into(), "unavailable", &reason, again.len());
                        break;
                    }
                },
                None => {
                    let d = wait;
                    wait = (wait * 2).min(self.cfg.retry.max_interval);
                    d
                }
            };
            tokio::time::sleep(delay).await;
            pending = again;
        }
        if dropped > 0 {
            super::partial::report(
                &self.telemetry,
                &self.name,
                Signal::Logs,
                Some((dropped as i64, format!("Elasticsearch refused {dropped} documents, first: {first_reason}"))),
            );
        }
        Ok(())
    }
}

impl Exporter for ElasticsearchExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let Ok(Request::Logs(logs)) = batch.request() else {
                return Err(ExportError::Permanent { reason: "the elasticsearch exporter takes logs only".into() });
            };
            let docs = documents(logs, &self.cfg);
            let sent = match self.cfg.flush.interval {
                Some(interval) => self.gather(docs, interval).await,
                None => self.send(docs).await,
            };
            crate::auth::client::scrubbed(self.poster.auth(), sent)
        })
    }

    fn closing(&self) {
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        self.flush_now.notify_waiters();
    }
}

/// The `elasticsearch` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<ElasticsearchConfig>(
    "elasticsearch",
    &[crate::signal::Signal::Logs],
    "Elasticsearch / OpenSearch _bulk API",
);

impl crate::pipeline::component::ExporterSettings for ElasticsearchConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        ElasticsearchConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            let mut exporter = ElasticsearchExporter::new(ctx.name.clone(), self, ctx.telemetry.clone())?;
            exporter.poster =
                exporter.poster.authenticated(crate::auth::client::ClientAuth::new(self.auth.as_ref(), &ctx.auth));
            Ok(std::sync::Arc::new(exporter) as _)
        })
    }

    fn queue(&self) -> crate::pipeline::queue::QueueSettings {
        self.sending_queue.settings(self.retry_on_failure.clone())
    }

    fn scrubber(&self) -> crate::secret::Scrubber {
        let credentials = format!("{}:{}", self.user.expose(), self.password.expose());
        let basic =
            crate::secret::Secret::new(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials));
        let basic = (!self.user.is_empty()).then_some(&basic);
        crate::secret::Scrubber::new(
            [&self.user, &self.password, &self.api_key].into_iter().chain(basic),
            &self.endpoints,
        )
    }
    fn authenticator(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authenticator.as_str())
    }

    fn destination(&self) -> String {
        let all: Vec<String> = self.endpoints.iter().map(|e| e.to_string()).collect();
        format!("{} (Elasticsearch _bulk)", all.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{int, kv, string};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    /// The one document of a record with resource and record attributes, in `mode`.
    fn document(mode: MappingMode) -> serde_json::Value {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", string("shop")),
                        kv("k8s.pod.name", string("shop-7d9")),
                        kv("team", string("payments")),
                        kv("clash", string("from resource")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_text: "WARN".into(),
                        body: Some(string("disk almost full")),
                        attributes: vec![kv("free", int(3)), kv("clash", string("from record"))],
                        trace_id: vec![1; 16],
                        ..Default::default()
                    }],
                    scope: Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: "app".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut cfg = ElasticsearchConfig::default();
        cfg.mapping.mode = mode;
        let docs = documents(&request, &cfg);
        assert_eq!(docs.len(), 1);
        serde_json::from_str(&docs[0].source).unwrap()
    }

    #[test]
    fn each_mapping_mode_places_the_fields_where_it_says() {
        let ecs = document(MappingMode::Ecs);
        assert_eq!(ecs["message"], "disk almost full");
        assert_eq!(ecs["log.level"], "WARN");
        assert_eq!(ecs["service.name"], "shop");
        assert_eq!(ecs["kubernetes.pod.name"], "shop-7d9", "renamed to its ECS field");
        assert_eq!(ecs["team"], "payments", "other resource attributes keep their names");
        assert_eq!(ecs["clash"], "from record", "record attributes win");
        assert_eq!(ecs["free"], 3);
        assert_eq!(ecs["trace.id"], "01".repeat(16));

        let raw = document(MappingMode::Raw);
        assert_eq!(raw["body"], "disk almost full");
        assert_eq!(raw["k8s.pod.name"], "shop-7d9");
        assert_eq!(raw["clash"], "from record");
        assert!(raw.get("severity_text").is_none() && raw.get("resource").is_none(), "{raw}");

        let otel = document(MappingMode::Otel);
        assert_eq!(otel["attributes"]["clash"], "from record");
        assert_eq!(otel["resource"]["attributes"]["clash"], "from resource");
        assert_eq!(otel["severity_text"], "WARN");
        assert_eq!(otel["trace_id"], "01".repeat(16));
        assert_eq!(otel["scope"]["name"], "app");

        let none = document(MappingMode::None);
        assert_eq!(none["resource"]["attributes"]["team"], "payments");
        assert!(none.get("scope").is_none(), "none is otel without the scope");
        assert_eq!(none["@timestamp"], otel["@timestamp"]);
    }

    #[test]
    fn dates_and_index_names() {
        let attrs = vec![KeyValue { key: "service.name".into(), value: Some(string("Shop")), ..Default::default() }];
        assert_eq!(
            index_name("logs-%{service.name}-%Y.%m.%d", &attrs, &[], "2023-11-14T22:13:20Z"),
            "logs-shop-2023.11.14"
        );
    }
}
