//! The `jaeger` receiver: legacy Jaeger clients and agents. Agent UDP (`thrift_compact` on 6831,
//! `thrift_binary` on 6832), collector HTTP (`thrift_http`, POST /api/traces on 14268) and
//! collector gRPC (`grpc`, api_v2 PostSpans on 14250); every span is translated to OTLP.

mod grpc;
mod http;
pub mod model;
pub mod proto;
pub mod thrift;
pub mod thrift_encode;
pub mod translate;
mod udp;

use crate::pipeline::{Batch, Intake, Request};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JaegerReceiverConfig {
    pub protocols: Protocols,
}

/// A protocol is on when its key is present, even with no settings (`thrift_compact:`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "crate::config::present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub thrift_http: Option<ThriftHttpConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub thrift_binary: Option<UdpConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub thrift_compact: Option<UdpConfig>,
}

pub type GrpcConfig = crate::grpc::GrpcServerConfig<JaegerGrpcPort>;

#[derive(Debug, Clone)]
pub struct JaegerGrpcPort;

impl crate::grpc::DefaultEndpoint for JaegerGrpcPort {
    const ENDPOINT: &'static str = "localhost:14250";
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThriftHttpConfig {
    pub endpoint: String,
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
}

impl ThriftHttpConfig {
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
}

impl Default for ThriftHttpConfig {
    fn default() -> Self {
        ThriftHttpConfig {
            endpoint: "localhost:14268".to_string(),
            max_request_body_size: 20 * 1024 * 1024,
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

/// An agent UDP protocol. The endpoint's default depends on the protocol (6831 compact, 6832
/// binary), so it is optional here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    pub endpoint: Option<String>,
    /// Datagrams received but not yet decoded; when full, new datagrams are dropped (and counted).
    pub queue_size: usize,
    /// The largest datagram taken; a larger one is dropped (and counted).
    pub max_packet_size: usize,
    /// Tasks decoding datagrams in parallel.
    pub workers: usize,
    /// The socket's receive buffer (SO_RCVBUF) in bytes; 0 keeps the system default.
    pub socket_buffer_size: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig { endpoint: None, queue_size: 1000, max_packet_size: 65_000, workers: 10, socket_buffer_size: 0 }
    }
}

/// The largest body or message size accepted in configuration.
const MAX_SIZE: u64 = 1 << 30;

impl JaegerReceiverConfig {
    /// Checks what serde cannot: returns the offending key (relative) and the message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let p = &self.protocols;
        if p.grpc.is_none() && p.thrift_http.is_none() && p.thrift_binary.is_none() && p.thrift_compact.is_none() {
            return Err((
                "protocols".into(),
                "enable at least one protocol: grpc, thrift_http, thrift_binary or thrift_compact".into(),
            ));
        }
        if let Some(g) = &p.grpc {
            g.validate("protocols.grpc")?;
        }
        if let Some(h) = &p.thrift_http {
            crate::net::check_endpoint(&h.endpoint).map_err(|m| ("protocols.thrift_http.endpoint".into(), m))?;
            if let Some(tls) = &h.tls {
                tls.validate().map_err(|(k, m)| (format!("protocols.thrift_http.{k}"), m))?;
            }
            if !(1..=MAX_SIZE).contains(&h.max_request_body_size) {
                return Err((
                    "protocols.thrift_http.max_request_body_size".into(),
                    format!("must be between 1 and {MAX_SIZE} (1 GiB)"),
                ));
            }
        }
        for (name, u) in [("thrift_binary", &p.thrift_binary), ("thrift_compact", &p.thrift_compact)] {
            let Some(u) = u else { continue };
            let key = |k: &str| format!("protocols.{name}.{k}");
            if let Some(e) = &u.endpoint {
                crate::net::check_endpoint(e).map_err(|m| (key("endpoint"), m))?;
            }
            if !(1..=65_535).contains(&u.max_packet_size) {
                return Err((key("max_packet_size"), "must be between 1 and 65535 (the largest UDP datagram)".into()));
            }
            if !(1..=1_000_000).contains(&u.queue_size) {
                return Err((key("queue_size"), "must be between 1 and 1000000".into()));
            }
            if !(1..=1024).contains(&u.workers) {
                return Err((key("workers"), "must be between 1 and 1024".into()));
            }
        }
        Ok(())
    }
}

/// Jaeger spans as a batch for the pipelines.
fn to_batch(jaeger: model::Batch) -> Batch {
    Batch::from_request(Request::Traces(translate::batch_to_otlp(jaeger)))
}

/// Binds every configured listener (so that a port in use fails the start) and serves them.
pub async fn start(
    cfg: JaegerReceiverConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
    listeners: crate::net::Listeners,
    auth: crate::auth::Authenticators,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    let p = cfg.protocols;
    for (udp, protocol, default) in [
        (p.thrift_compact, thrift::Protocol::Compact, "localhost:6831"),
        (p.thrift_binary, thrift::Protocol::Binary, "localhost:6832"),
    ] {
        if let Some(u) = udp {
            let endpoint = u.endpoint.clone().unwrap_or_else(|| default.to_string());
            let socket = listeners.udp(&endpoint).await?;
            if u.socket_buffer_size > 0 {
                let s = socket2::SockRef::from(&socket);
                s.set_recv_buffer_size(u.socket_buffer_size)
                    .map_err(|e| format!("cannot set socket_buffer_size on {endpoint}: {e}"))?;
                // The kernel may grant less (Linux caps it at net.core.rmem_max): say what it gave.
                let granted = s.recv_buffer_size().unwrap_or(0);
                tracing::info!(endpoint, requested = u.socket_buffer_size, granted, "UDP receive buffer set");
            }
            tracing::info!(receiver = intake.receiver(), endpoint = %socket.local_addr().map(|a| a.to_string()).unwrap_or_default(), ?protocol, "Jaeger agent UDP listening");
            tasks.push(tokio::spawn(udp::serve(u, protocol, socket, intake.clone(), shutdown.clone())));
        }
    }
    if let Some(h) = p.thrift_http {
        let limits = h.limits().with_tls(h.tls.as_ref())?.with_auth(h.auth.as_ref(), &auth, &intake)?;
        let listener = listeners.tcp(&h.endpoint).await?;
        tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "Jaeger Thrift HTTP listening");
        tasks.push(tokio::spawn(http::serve(h, listener, limits, intake.clone(), shutdown.clone(), grace)));
    }
    if let Some(g) = p.grpc {
        let limits = g.limits().with_tls(g.tls.as_ref())?.with_auth(g.auth.as_ref(), &auth, &intake)?;
        let listener = listeners.tcp(&g.endpoint).await?;
        tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "Jaeger gRPC listening");
        tasks.push(tokio::spawn(grpc::serve(g, listener, limits, intake, shutdown, grace)));
    }
    Ok(tasks)
}

/// The `jaeger` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<JaegerReceiverConfig>(
    "jaeger",
    &[crate::signal::Signal::Traces],
    "legacy Jaeger clients: agent UDP (Thrift compact/binary), collector Thrift HTTP and gRPC",
);

impl crate::pipeline::component::ReceiverSettings for JaegerReceiverConfig {
    fn authenticators(&self) -> Vec<(String, &str)> {
        let p = &self.protocols;
        let grpc = p.grpc.as_ref().and_then(|g| g.auth.as_ref()).map(|a| ("protocols.grpc.auth".to_string(), a));
        let http =
            p.thrift_http.as_ref().and_then(|h| h.auth.as_ref()).map(|a| ("protocols.thrift_http.auth".to_string(), a));
        grpc.into_iter().chain(http).map(|(k, a)| (k, a.authenticator.as_str())).collect()
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        JaegerReceiverConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop, ctx.grace, ctx.listeners, ctx.auth))
    }
}
