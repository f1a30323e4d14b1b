//! The `zipkin` receiver: Zipkin v2 spans POSTed to /api/v2/spans (9411) as JSON or protobuf,
//! translated to OTLP.

mod http;
pub mod json;
pub mod model;
pub mod proto;
pub mod translate;

use crate::pipeline::Intake;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZipkinReceiverConfig {
    pub endpoint: String,
    /// Turn tag values that look like integers, decimals or booleans into typed attributes.
    pub parse_string_tags: bool,
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

impl Default for ZipkinReceiverConfig {
    fn default() -> Self {
        ZipkinReceiverConfig {
            endpoint: "localhost:9411".to_string(),
            parse_string_tags: false,
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

const MAX_BODY: u64 = 1 << 30;

impl ZipkinReceiverConfig {
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

    /// Checks what serde cannot: returns the offending key (relative) and the message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::net::check_endpoint(&self.endpoint).map_err(|m| ("endpoint".into(), m))?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if let Some(cors) = &self.cors {
            cors.validate()?;
        }
        if !(1..=MAX_BODY).contains(&self.max_request_body_size) {
            return Err(("max_request_body_size".into(), format!("must be between 1 and {MAX_BODY} (1 GiB)")));
        }
        Ok(())
    }
}

/// Binds the listener (so that a port in use fails the start) and serves it.
pub async fn start(
    cfg: ZipkinReceiverConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
    listeners: crate::net::Listeners,
    auth: crate::auth::Authenticators,
) -> Result<Vec<JoinHandle<()>>, String> {
    let limits = cfg.limits().with_tls(cfg.tls.as_ref())?.with_auth(cfg.auth.as_ref(), &auth, &intake)?;
    let listener = listeners.tcp(&cfg.endpoint).await?;
    tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "Zipkin listening");
    Ok(vec![tokio::spawn(http::serve(cfg, listener, limits, intake, shutdown, grace))])
}

/// The `zipkin` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<ZipkinReceiverConfig>(
    "zipkin",
    &[crate::signal::Signal::Traces],
    "Zipkin v2 spans over HTTP (JSON and protobuf)",
);

impl crate::pipeline::component::ReceiverSettings for ZipkinReceiverConfig {
    fn authenticators(&self) -> Vec<(String, &str)> {
        self.auth.iter().map(|a| ("auth".to_string(), a.authenticator.as_str())).collect()
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        ZipkinReceiverConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop, ctx.grace, ctx.listeners, ctx.auth))
    }
}
