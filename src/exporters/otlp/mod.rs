//! The `otlp` exporter (alias `otlp_grpc`): OTLP over gRPC to a backend — a vendor, or a Jaeger
//! of 1.35 or later on port 4317. Batches that nothing changed are sent as the bytes they arrived
//! in. gRPC statuses are retried as OTLP says (UNAVAILABLE and the other transient codes, and
//! RESOURCE_EXHAUSTED with RetryInfo, waiting at least the delay it asks); others drop the batch.
//! User info in the endpoint is sent as basic auth metadata unless `headers` hold an
//! Authorization, and never in `:authority` (see `crate::secret`).

use crate::compression::{Compression, CompressionParams, Compressor};
use crate::config::deserialize_duration;
use crate::grpc::client::{self as call, H2Client};
use crate::grpc::{export_path, retry_verdict};
use crate::pipeline::queue::SendingQueueConfig;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter};
use crate::secret::{Secret, SecretUrl, redact_url};
use crate::tls::client::{Protocol, TlsClientConfig};
use http::{HeaderName, HeaderValue, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// `host:port` or `http://host:port`.
    pub endpoint: SecretUrl,
    #[serde(default)]
    pub tls: TlsClientConfig,
    /// Sent as gRPC metadata with every request (how vendors take API keys); never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Longest time one export may take.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Accepted for compatibility with collector configurations and ignored (with a warning).
    #[serde(default)]
    pub balancer_name: Option<String>,
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// An authenticator extension that sets each request's credentials (see `auth::client`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthSettings>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl OtlpGrpcConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let uri = self.uri().map_err(|m| ("endpoint".to_string(), m))?;
        self.tls.validate()?;
        if uri.starts_with("http://") && self.tls.has_settings() {
            return Err((
                "tls".into(),
                format!(
                    "TLS settings are given but \"{}\" is dialled in plaintext; remove them, or use TLS (https:// or a bare host:port without tls.insecure)",
                    self.endpoint
                ),
            ));
        }
        crate::secret::check_headers(&self.headers)?;
        Compressor::validate(self.compression, &self.compression_params)?;
        if self.timeout.is_zero() {
            return Err(("timeout".into(), "must be greater than 0".into()));
        }
        self.sending_queue.validate().map_err(|(k, m)| (format!("sending_queue.{k}"), m))?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }

    /// The URI to dial: as in the collector, `https://` and a bare `host:port` use TLS, unless
    /// `tls.insecure` is set; `http://` is plaintext.
    fn uri(&self) -> Result<String, String> {
        let e = self.endpoint.expose().trim();
        let bare = !(e.starts_with("http://") || e.starts_with("https://"));
        let uri = if !bare {
            e.to_string()
        } else if self.tls.insecure {
            format!("http://{e}")
        } else {
            format!("https://{e}")
        };
        let bad = || format!("invalid endpoint \"{}\": expected host:port", redact_url(e));
        let parsed: http::Uri = uri.parse().map_err(|_| bad())?;
        if parsed.host().is_none() {
            return Err(bad());
        }
        if bare && parsed.port_u16().is_none() {
            return Err(bad());
        }
        crate::secret::basic_auth_from_userinfo(&parsed)?;
        Ok(uri)
    }
}

pub struct OtlpGrpcExporter {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    /// `scheme://authority` of the backend.
    base: String,
    client: H2Client,
    metadata: Vec<(HeaderName, HeaderValue)>,
    compression: Compressor,
    timeout: Duration,
    auth: Option<crate::auth::client::ClientAuth>,
}

impl OtlpGrpcExporter {
    /// Prepares a client that connects on first use: a backend that is down at start is
    /// retried, not fatal.
    pub fn new(
        name: String,
        cfg: &OtlpGrpcConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Result<OtlpGrpcExporter, String> {
        if let Some(b) = &cfg.balancer_name {
            tracing::warn!(exporter = %name, balancer_name = %b, "balancer_name is ignored: switchyard keeps one connection pool per exporter");
        }
        let uri: Uri = cfg.uri()?.parse().map_err(|_| format!("invalid endpoint \"{}\"", cfg.endpoint))?;
        let (uri, userinfo_auth) = crate::secret::basic_auth_from_userinfo(&uri)?;
        let base = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let connector = cfg.tls.connector(Protocol::Http2, cfg.timeout)?;
        // Keepalive pings notice a connection whose peer vanished, instead of timing out on it
        // until TCP gives up.
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .build(connector);
        let mut metadata = crate::secret::headers(&cfg.headers)?;
        if let Some(auth) = userinfo_auth
            && !crate::secret::has_authorization(&metadata)
        {
            metadata.push((http::header::AUTHORIZATION, auth));
        }
        let compression = Compressor::new(cfg.compression, &cfg.compression_params);
        Ok(OtlpGrpcExporter { name, telemetry, base, client, metadata, compression, timeout: cfg.timeout, auth: None })
    }

    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let signal = batch.signal();
        let uri: Uri = format!("{}{}", self.base, export_path(signal))
            .parse()
            .map_err(|_| ExportError::Permanent { reason: format!("invalid URI {}", self.base) })?;
        let framed =
            call::frame(&batch.to_encoded(), &self.compression).map_err(|reason| ExportError::Permanent { reason })?;
        let metadata = crate::auth::client::with_auth(self.auth.as_ref(), &self.metadata, batch.context()).await?;
        let answer = call::unary(&self.client, uri, framed, &self.compression, &metadata, self.timeout);
        let response = match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => {
                return Err(ExportError::Retryable {
                    after: None,
                    reason: format!("no answer within {:?}", self.timeout),
                });
            }
            Ok(Ok(response)) => response,
            Ok(Err(status)) => {
                let (retryable, after) = retry_verdict(&status);
                let reason = format!("{}: gRPC {:?}: {}", self.base, status.code(), status.message());
                return Err(if retryable {
                    ExportError::Retryable { after, reason }
                } else {
                    ExportError::Permanent { reason }
                });
            }
        };
        super::partial::report(&self.telemetry, &self.name, signal, super::partial::from_protobuf(signal, &response));
        Ok(())
    }
}

impl Exporter for OtlpGrpcExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { crate::auth::client::scrubbed(self.auth.as_ref(), self.send(batch).await) })
    }
}

/// The `otlp` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<OtlpGrpcConfig>(
    "otlp",
    crate::registry::ALL_SIGNALS,
    "OTLP over gRPC to a vendor or Jaeger (alias otlp_grpc)",
)
.aliases(&["otlp_grpc"]);

impl crate::pipeline::component::ExporterSettings for OtlpGrpcConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        OtlpGrpcConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            let mut exporter = OtlpGrpcExporter::new(ctx.name.clone(), self, ctx.telemetry.clone())?;
            exporter.auth = crate::auth::client::ClientAuth::new(self.auth.as_ref(), &ctx.auth);
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
        let uri = self.uri().unwrap_or_else(|e| e);
        format!(
            "{} (OTLP/gRPC{})",
            crate::secret::redact_url(&uri),
            if uri.starts_with("https") { ", TLS" } else { ", plaintext" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str, insecure: bool) -> OtlpGrpcConfig {
        serde_json::from_value(serde_json::json!({"endpoint": endpoint, "tls": {"insecure": insecure}})).unwrap()
    }

    #[test]
    fn endpoints_follow_the_collector() {
        assert_eq!(cfg("jaeger:4317", true).uri().unwrap(), "http://jaeger:4317");
        assert_eq!(cfg("jaeger:4317", false).uri().unwrap(), "https://jaeger:4317");
        assert_eq!(cfg("http://jaeger:4317", false).uri().unwrap(), "http://jaeger:4317");
        assert_eq!(cfg("https://vendor.example", false).uri().unwrap(), "https://vendor.example");
        assert!(cfg("jaeger", true).uri().is_err());
    }

    #[test]
    fn userinfo_becomes_authorization_metadata_unless_one_is_configured() {
        let from_url =
            OtlpGrpcExporter::new("x".into(), &cfg("http://me:p%40ss@vendor:4317", false), Default::default()).unwrap();
        assert_eq!(from_url.base, "http://vendor:4317", "no user info in :authority");
        let auth: Vec<_> = from_url.metadata.iter().filter(|(k, _)| k == http::header::AUTHORIZATION).collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].1.to_str().unwrap(), "Basic bWU6cEBzcw==", "base64 of me:p@ss");
        let explicit: OtlpGrpcConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://me:pw@vendor:4317", "headers": {"authorization": "Bearer t"}
        }))
        .unwrap();
        let explicit = OtlpGrpcExporter::new("x".into(), &explicit, Default::default()).unwrap();
        let auth: Vec<_> = explicit.metadata.iter().filter(|(k, _)| k == http::header::AUTHORIZATION).collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].1.to_str().unwrap(), "Bearer t");
        assert!(!format!("{:?}", explicit.metadata).contains("Bearer"), "header values are sensitive");
        let e = cfg("http://me:pw@vendor:4317", false).validate();
        assert!(e.is_ok(), "{e:?}");
        assert_eq!(
            cfg("me:pw@vendor", true).uri().unwrap_err(),
            "invalid endpoint \"xxxxx@vendor\": expected host:port"
        );
    }

    #[test]
    fn grpc_codes_are_retried_as_otlp_says() {
        use tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(retry_verdict(&Status::new(code, "x")).0, "{code:?}");
        }
        for code in
            [Code::InvalidArgument, Code::Unauthenticated, Code::PermissionDenied, Code::Internal, Code::Unimplemented]
        {
            assert!(!retry_verdict(&Status::new(code, "x")).0, "{code:?}");
        }
        assert!(!retry_verdict(&Status::resource_exhausted("x")).0, "RESOURCE_EXHAUSTED alone is permanent");
        let details = crate::rpc_status::status_with_retry_info(8, "slow down", Duration::from_secs(3));
        let throttled = Status::with_details(Code::ResourceExhausted, "slow down", details.into());
        assert_eq!(retry_verdict(&throttled), (true, Some(Duration::from_secs(3))));
    }
}
