//! The `prometheusremotewrite` receiver: Prometheus Remote Write 1.0 and 2.0 (PROTOCOLS.md
//! §4.4–4.5) on POST /api/v1/write, translated to OTLP metrics as the scraper translates them.

pub(crate) mod decode;
pub(crate) mod http;

use crate::pipeline::Intake;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const V1: &str = "prometheus.WriteRequest";
pub const V2: &str = "io.prometheus.write.v2.Request";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusRemoteWriteReceiverConfig {
    pub endpoint: String,
    /// The remote-write messages taken; others are answered 415 (senders then fall back).
    pub accepted_protobuf_messages: Vec<String>,
    /// Largest request accepted, after snappy decompression, in bytes.
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
}

impl Default for PrometheusRemoteWriteReceiverConfig {
    fn default() -> Self {
        PrometheusRemoteWriteReceiverConfig {
            endpoint: "localhost:9090".into(),
            accepted_protobuf_messages: vec![V1.into(), V2.into()],
            max_request_body_size: 32 * 1024 * 1024,
            read_timeout: crate::net::ConnLimits::default().read_timeout,
            read_header_timeout: crate::net::ConnLimits::default().read_header_timeout,
            write_timeout: crate::net::ConnLimits::default().write_timeout,
            idle_timeout: crate::net::ConnLimits::default().idle_timeout,
            max_connections: crate::net::ConnLimits::default().max_connections,
            tls: None,
            auth: None,
            include_metadata: false,
        }
    }
}

impl PrometheusRemoteWriteReceiverConfig {
    /// The connection limits of the listener.
    pub fn limits(&self) -> crate::net::ConnLimits {
        crate::net::ConnLimits {
            read_timeout: self.read_timeout,
            read_header_timeout: self.read_header_timeout,
            write_timeout: self.write_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            include_metadata: self.include_metadata,
            ..crate::net::ConnLimits::default()
        }
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::net::check_endpoint(&self.endpoint).map_err(|m| ("endpoint".into(), m))?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if self.accepted_protobuf_messages.is_empty() {
            return Err(("accepted_protobuf_messages".into(), format!("list at least one of {V1} and {V2}")));
        }
        for m in &self.accepted_protobuf_messages {
            if m != V1 && m != V2 {
                return Err(("accepted_protobuf_messages".into(), format!("\"{m}\" is not {V1} or {V2}")));
            }
        }
        if !(1..=(1u64 << 30)).contains(&self.max_request_body_size) {
            return Err(("max_request_body_size".into(), "must be between 1 and 1073741824 (1 GiB)".into()));
        }
        Ok(())
    }
}

/// Binds the listener (so that a port in use fails the start) and serves it.
pub async fn start(
    cfg: PrometheusRemoteWriteReceiverConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
    listeners: crate::net::Listeners,
    auth: crate::auth::Authenticators,
) -> Result<Vec<JoinHandle<()>>, String> {
    let limits = cfg.limits().with_tls(cfg.tls.as_ref())?.with_auth(cfg.auth.as_ref(), &auth, &intake)?;
    let listener = listeners.tcp(&cfg.endpoint).await?;
    tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "Prometheus remote write listening");
    Ok(vec![tokio::spawn(http::serve(cfg, listener, limits, intake, shutdown, grace))])
}

/// The `prometheusremotewrite` receiver's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::receiver::<PrometheusRemoteWriteReceiverConfig>(
        "prometheusremotewrite",
        &[crate::signal::Signal::Metrics],
        "Prometheus Remote Write 1.0 and 2.0 on /api/v1/write",
    );

impl crate::pipeline::component::ReceiverSettings for PrometheusRemoteWriteReceiverConfig {
    fn authenticators(&self) -> Vec<(String, &str)> {
        self.auth.iter().map(|a| ("auth".to_string(), a.authenticator.as_str())).collect()
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        PrometheusRemoteWriteReceiverConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop, ctx.grace, ctx.listeners, ctx.auth))
    }
}
