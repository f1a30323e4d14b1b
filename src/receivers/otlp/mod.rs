//! The `otlp` receiver: OTLP over gRPC (4317) and HTTP (4318) for traces, metrics and logs.

mod decode;
mod grpc;
mod http;
mod json;
mod response;
pub(crate) mod scan;

pub use decode::{Decoded, Invalid, Scanned, decode_json, decode_protobuf, json_decoded_bytes, scan_protobuf};

use crate::pipeline::Intake;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    pub protocols: Protocols,
}

/// A protocol is on when its key is present, even with no settings (`grpc:`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "crate::config::present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub http: Option<HttpConfig>,
}

pub type GrpcConfig = crate::grpc::GrpcServerConfig<OtlpGrpcPort>;

#[derive(Debug, Clone)]
pub struct OtlpGrpcPort;

impl crate::grpc::DefaultEndpoint for OtlpGrpcPort {
    const ENDPOINT: &'static str = "localhost:4317";
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub endpoint: String,
    pub traces_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    /// Largest request body accepted, after decompression, in bytes.
    pub max_request_body_size: u64,
    /// How long a client may take to send a whole request (a stalled body is answered 408),
    /// its headers, and to take the answer; an idle connection is closed after idle_timeout.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub read_timeout: std::time::Duration,
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub read_header_timeout: std::time::Duration,
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub write_timeout: std::time::Duration,
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub idle_timeout: std::time::Duration,
    /// Connections served at once (switchyard's key); more are closed at once and counted.
    pub max_connections: usize,
    /// Serve HTTPS (see `tls::server`).
    pub tls: Option<crate::tls::server::TlsServerConfig>,
    /// Authenticate every request with this authenticator extension (see `auth`).
    pub auth: Option<crate::auth::AuthSettings>,
    /// Keep each request's headers as its data's context (see `net::ConnLimits`).
    pub include_metadata: bool,
    /// Answer browsers' CORS preflights and mark answers for allowed origins (see `cors`).
    pub cors: Option<crate::cors::CorsConfig>,
}

impl HttpConfig {
    /// The connection limits of the listener.
    pub fn limits(&self) -> crate::net::ConnLimits {
        crate::net::ConnLimits {
            read_timeout: self.read_timeout,
            read_header_timeout: self.read_header_timeout,
            write_timeout: self.write_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            include_metadata: self.include_metadata,
            cors: self.cors.clone().map(std::sync::Arc::new),
            ..crate::net::ConnLimits::default()
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".to_string(),
            traces_url_path: "/v1/traces".to_string(),
            metrics_url_path: "/v1/metrics".to_string(),
            logs_url_path: "/v1/logs".to_string(),
            max_request_body_size: 20 * 1024 * 1024,
            read_timeout: crate::net::ConnLimits::default().read_timeout,
            read_header_timeout: crate::net::ConnLimits::default().read_header_timeout,
            write_timeout: crate::net::ConnLimits::default().write_timeout,
            idle_timeout: crate::net::ConnLimits::default().idle_timeout,
            max_connections: crate::net::ConnLimits::default().max_connections,
            tls: None,
            auth: None,
            include_metadata: false,
            cors: None,
        }
    }
}

/// The largest `max_request_body_size` accepted.
const MAX_BODY: u64 = 1 << 30;

impl OtlpReceiverConfig {
    /// Checks what serde cannot: returns the offending key (relative) and the message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            return Err(("protocols".into(), "enable at least one protocol: grpc or http".into()));
        }
        if let Some(g) = &self.protocols.grpc {
            g.validate("protocols.grpc")?;
        }
        if let Some(h) = &self.protocols.http {
            crate::net::check_endpoint(&h.endpoint).map_err(|m| ("protocols.http.endpoint".into(), m))?;
            for (key, p) in [
                ("traces_url_path", &h.traces_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ] {
                if !p.starts_with('/') {
                    return Err((format!("protocols.http.{key}"), format!("\"{p}\" must start with /")));
                }
            }
            if let Some(tls) = &h.tls {
                tls.validate().map_err(|(k, m)| (format!("protocols.http.{k}"), m))?;
            }
            if let Some(cors) = &h.cors {
                cors.validate().map_err(|(k, m)| (format!("protocols.http.{k}"), m))?;
            }
            if !(1..=MAX_BODY).contains(&h.max_request_body_size) {
                return Err((
                    "protocols.http.max_request_body_size".into(),
                    format!("must be between 1 and {MAX_BODY} (1 GiB)"),
                ));
            }
        }
        Ok(())
    }
}

/// Binds the configured listeners (so that a port in use fails the start) and serves them.
pub async fn start(
    cfg: OtlpReceiverConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
    listeners: crate::net::Listeners,
    auth: crate::auth::Authenticators,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    if let Some(g) = cfg.protocols.grpc {
        let limits = g.limits().with_tls(g.tls.as_ref())?.with_auth(g.auth.as_ref(), &auth, &intake)?;
        let listener = listeners.tcp(&g.endpoint).await?;
        tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "OTLP/gRPC listening");
        tasks.push(tokio::spawn(grpc::serve(g, listener, limits, intake.clone(), shutdown.clone(), grace)));
    }
    if let Some(h) = cfg.protocols.http {
        let limits = h.limits().with_tls(h.tls.as_ref())?.with_auth(h.auth.as_ref(), &auth, &intake)?;
        let listener = listeners.tcp(&h.endpoint).await?;
        tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "OTLP/HTTP listening");
        tasks.push(tokio::spawn(http::serve(h, listener, limits, intake, shutdown, grace)));
    }
    Ok(tasks)
}

/// The `otlp` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<OtlpReceiverConfig>(
    "otlp",
    crate::registry::ALL_SIGNALS,
    "OTLP over gRPC and HTTP (protobuf and JSON)",
);

impl crate::pipeline::component::ReceiverSettings for OtlpReceiverConfig {
    fn authenticators(&self) -> Vec<(String, &str)> {
        let p = &self.protocols;
        let grpc = p.grpc.as_ref().and_then(|g| g.auth.as_ref()).map(|a| ("protocols.grpc.auth".to_string(), a));
        let http = p.http.as_ref().and_then(|h| h.auth.as_ref()).map(|a| ("protocols.http.auth".to_string(), a));
        grpc.into_iter().chain(http).map(|(k, a)| (k, a.authenticator.as_str())).collect()
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        OtlpReceiverConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop, ctx.grace, ctx.listeners, ctx.auth))
    }
}
