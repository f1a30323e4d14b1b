//! The `otlphttp` exporter (alias `otlp_http`): OTLP over HTTP to a backend — a vendor, or a
//! Jaeger of 1.35 or later on port 4318. Batches that nothing changed are sent as the bytes they
//! arrived in. Answers are classified as OTLP says: 429/502/503/504 and network failures are
//! retried (honouring `Retry-After`), other errors drop the batch, and a partial success is
//! logged, not retried. User info in an endpoint URL is sent as basic auth unless `headers`
//! hold an Authorization (see `crate::secret`).

use crate::compression::{Compression, CompressionParams, Compressor};
use crate::config::deserialize_duration;
use crate::pipeline::queue::SendingQueueConfig;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Signal};
use crate::secret::{Secret, SecretUrl, redact_url};
use crate::tls::client::{Protocol, TlsClientConfig};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL; `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended.
    #[serde(default)]
    pub endpoint: Option<SecretUrl>,
    /// Full URLs per signal, overriding `endpoint`.
    #[serde(default)]
    pub traces_endpoint: Option<SecretUrl>,
    #[serde(default)]
    pub metrics_endpoint: Option<SecretUrl>,
    #[serde(default)]
    pub logs_endpoint: Option<SecretUrl>,
    /// Sent with every request (how vendors take API keys); never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub compression_params: CompressionParams,
    #[serde(default)]
    pub encoding: Encoding,
    /// Longest time one request may take.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// TLS for `https` endpoints.
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// An authenticator extension that sets each request's credentials (see `auth::client`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthSettings>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

impl OtlpHttpConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.endpoint.is_none()
            && self.traces_endpoint.is_none()
            && self.metrics_endpoint.is_none()
            && self.logs_endpoint.is_none()
        {
            return Err((
                "endpoint".into(),
                "set endpoint (or traces_endpoint, metrics_endpoint, logs_endpoint)".into(),
            ));
        }
        for signal in Signal::ALL {
            if let Some((key, url)) = self.url_source(signal) {
                parse_url(&url).map_err(|m| (key.to_string(), m))?;
            }
        }
        crate::secret::check_headers(&self.headers)?;
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be greater than 0".into()));
        }
        self.tls.validate()?;
        Compressor::validate(self.compression, &self.compression_params)?;
        if self.tls.has_settings()
            && Signal::ALL.iter().filter_map(|s| self.url_source(*s)).all(|(_, u)| u.starts_with("http://"))
        {
            return Err((
                "tls".into(),
                "TLS settings are given but every endpoint is http://; use https:// or remove them".into(),
            ));
        }
        self.sending_queue.validate().map_err(|(k, m)| (format!("sending_queue.{k}"), m))?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }

    /// The URL for `signal` and the key it came from.
    fn url_source(&self, signal: Signal) -> Option<(&'static str, String)> {
        let own = match signal {
            Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
            Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
            Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
        };
        if let (key, Some(url)) = own {
            return Some((key, url.expose().to_string()));
        }
        let base = self.endpoint.as_ref()?.expose();
        Some(("endpoint", format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str())))
    }
}

fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|_| format!("invalid URL \"{}\"", redact_url(url)))?;
    crate::secret::basic_auth_from_userinfo(&uri)?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(format!("invalid URL \"{}\": expected http(s)://host:port/path", redact_url(url))),
    }
}

pub struct OtlpHttpExporter {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    /// Per signal: the URL without user info, and the basic auth its user info stands for
    /// (`None` when there is none, or when `headers` hold an Authorization).
    urls: [Option<(Uri, Option<HeaderValue>)>; 3],
    headers: Vec<(HeaderName, HeaderValue)>,
    compression: Compressor,
    encoding: Encoding,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    auth: Option<crate::auth::client::ClientAuth>,
}

impl OtlpHttpExporter {
    pub fn new(
        name: String,
        cfg: &OtlpHttpConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Result<OtlpHttpExporter, String> {
        let headers = crate::secret::headers(&cfg.headers)?;
        let explicit = crate::secret::has_authorization(&headers);
        let mut urls: [Option<(Uri, Option<HeaderValue>)>; 3] = Default::default();
        for signal in Signal::ALL {
            if let Some((_, url)) = cfg.url_source(signal) {
                let (uri, auth) = crate::secret::basic_auth_from_userinfo(&parse_url(&url)?)?;
                urls[signal.index()] = Some((uri, auth.filter(|_| !explicit)));
            }
        }
        let connector = cfg.tls.connector(Protocol::Http1, cfg.timeout)?;
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(OtlpHttpExporter {
            telemetry,
            name,
            urls,
            headers,
            compression: Compressor::new(cfg.compression, &cfg.compression_params),
            encoding: cfg.encoding,
            timeout: cfg.timeout,
            client,
            auth: None,
        })
    }

    fn body(&self, batch: &Batch) -> Result<Bytes, ExportError> {
        let permanent = |reason: String| ExportError::Permanent { reason };
        let raw = match self.encoding {
            Encoding::Proto => batch.to_encoded(),
            Encoding::Json => {
                let request = batch.request().map_err(|e| permanent(e.to_string()))?;
                Bytes::from(super::file::to_json_line(request).map_err(permanent)?)
            }
        };
        Ok(match self.compression.compress(&raw).map_err(permanent)? {
            Some(compressed) => Bytes::from(compressed),
            None => raw,
        })
    }

    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let signal = batch.signal();
        let Some((uri, auth)) = self.urls[signal.index()].clone() else {
            return Err(ExportError::Permanent { reason: format!("no endpoint configured for {signal}") });
        };
        let body = self.body(batch)?;
        let mut req = Request::builder().method(Method::POST).uri(uri.clone());
        let content_type = match self.encoding {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        req = req
            .header(header::CONTENT_TYPE, content_type)
            .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        if let Some(encoding) = self.compression.encoding() {
            req = req.header(header::CONTENT_ENCODING, encoding);
        }
        // URL user info goes in as a header the authenticator may replace (never both).
        let mut base = std::borrow::Cow::Borrowed(&self.headers[..]);
        if let Some(auth) = auth {
            base.to_mut().push((header::AUTHORIZATION, auth));
        }
        for (k, v) in crate::auth::client::with_auth(self.auth.as_ref(), &base, batch.context()).await?.iter() {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        let exchange = async {
            let resp =
                self.client.request(req).await.map_err(|e| retryable(format!("{uri}: {}", crate::cause::chain(&e))))?;
            let (parts, body) = resp.into_parts();
            let body =
                http_body_util::Limited::new(body, 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok::<_, ExportError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| retryable(format!("{uri}: no answer within {:?}", self.timeout)))??;
        classify(&self.telemetry, &self.name, signal, parts.status, &parts.headers, &body)
    }
}

fn retryable(reason: String) -> ExportError {
    ExportError::Retryable { after: None, reason }
}

/// Turns the backend's answer into the outcome PROTOCOLS.md §1.4–1.6 describes.
fn classify(
    telemetry: &crate::telemetry::metrics::Metrics,
    exporter: &str,
    signal: Signal,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), ExportError> {
    if status.is_success() {
        super::partial::report(telemetry, exporter, signal, partial_success(signal, headers, body));
        return Ok(());
    }
    let reason = format!("HTTP {status}: {}", error_message(headers, body));
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(ExportError::Retryable { after: retry_after(headers), reason }),
        _ => Err(ExportError::Permanent { reason }),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"))
}

/// The `message` of a `google.rpc.Status` body, or the start of the body as text.
fn error_message(headers: &http::HeaderMap, body: &[u8]) -> String {
    use prost::Message;
    if is_json(headers) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(m) = v["message"].as_str()
        {
            return m.to_string();
        }
    } else if crate::protowire::check(body).is_ok()
        && let Ok(s) = crate::rpc_status::RpcStatus::decode(body)
        && !s.message.is_empty()
    {
        return s.message;
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// `(rejected, error_message)` of a partial success in a 2xx answer.
fn partial_success(signal: Signal, headers: &http::HeaderMap, body: &[u8]) -> Option<(i64, String)> {
    if body.is_empty() {
        return None;
    }
    if is_json(headers) {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let p = v.get("partialSuccess")?;
        let field = ["rejectedSpans", "rejectedDataPoints", "rejectedLogRecords"][signal.index()];
        let rejected = match &p[field] {
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            other => other.as_i64().unwrap_or(0),
        };
        return Some((rejected, p["errorMessage"].as_str().unwrap_or_default().to_string()));
    }
    super::partial::from_protobuf(signal, body)
}

impl Exporter for OtlpHttpExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { crate::auth::client::scrubbed(self.auth.as_ref(), self.send(batch).await) })
    }
}

/// The `otlphttp` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<OtlpHttpConfig>(
    "otlphttp",
    crate::registry::ALL_SIGNALS,
    "OTLP over HTTP to a vendor or Jaeger (alias otlp_http)",
)
.aliases(&["otlp_http"]);

impl crate::pipeline::component::ExporterSettings for OtlpHttpConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        OtlpHttpConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            let mut exporter = OtlpHttpExporter::new(ctx.name.clone(), self, ctx.telemetry.clone())?;
            exporter.auth = crate::auth::client::ClientAuth::new(self.auth.as_ref(), &ctx.auth);
            Ok(std::sync::Arc::new(exporter) as _)
        })
    }

    fn queue(&self) -> crate::pipeline::queue::QueueSettings {
        self.sending_queue.settings(self.retry_on_failure.clone())
    }

    fn scrubber(&self) -> crate::secret::Scrubber {
        crate::secret::Scrubber::new(
            self.headers.values(),
            [&self.endpoint, &self.traces_endpoint, &self.metrics_endpoint, &self.logs_endpoint].into_iter().flatten(),
        )
    }

    fn authenticator(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authenticator.as_str())
    }

    fn destination(&self) -> String {
        let urls: Vec<String> = crate::signal::Signal::ALL
            .iter()
            .filter_map(|s| self.url_source(*s).map(|(_, u)| crate::secret::redact_url(&u).into_owned()))
            .collect();
        format!("{} (OTLP/HTTP)", urls.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_otlp_says() {
        let h = http::HeaderMap::new();
        assert!(classify(&Default::default(), "x", Signal::Traces, StatusCode::OK, &h, b"").is_ok());
        for code in [429, 502, 503, 504] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    classify(&Default::default(), "x", Signal::Traces, s, &h, b""),
                    Err(ExportError::Retryable { .. })
                ),
                "{code}"
            );
        }
        for code in [400, 401, 404, 413, 500] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    classify(&Default::default(), "x", Signal::Traces, s, &h, b""),
                    Err(ExportError::Permanent { .. })
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = http::HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
    }

    #[test]
    fn json_encoding_sends_otlp_json_and_gzip_compresses() {
        use crate::pipeline::{Request, tests_support::traces};
        let json: OtlpHttpConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://vendor:4318", "encoding": "json", "compression": "none"
        }))
        .unwrap();
        let batch = Batch::from_request(Request::Traces(traces(2)));
        let body = OtlpHttpExporter::new("x".into(), &json, Default::default()).unwrap().body(&batch).ok().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["name"], "s1");
        let gz: OtlpHttpConfig = serde_json::from_value(serde_json::json!({"endpoint": "http://vendor:4318"})).unwrap();
        let body = OtlpHttpExporter::new("x".into(), &gz, Default::default()).unwrap().body(&batch).ok().unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw).unwrap();
        assert_eq!(raw, batch.to_encoded().to_vec(), "proto is the received bytes, gzipped");
    }

    #[test]
    fn urls_come_from_the_base_or_the_signal_keys() {
        let cfg: OtlpHttpConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://vendor:4318/",
            "logs_endpoint": "http://logs:9000/ingest"
        }))
        .unwrap();
        assert_eq!(cfg.url_source(Signal::Traces).unwrap().1, "http://vendor:4318/v1/traces");
        assert_eq!(cfg.url_source(Signal::Logs).unwrap().1, "http://logs:9000/ingest");
        let ftp: OtlpHttpConfig = serde_json::from_value(serde_json::json!({"endpoint": "ftp://vendor"})).unwrap();
        assert!(ftp.validate().unwrap_err().1.contains("expected http(s)://"));
    }
}
