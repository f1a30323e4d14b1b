//! The `health_check` extension: an HTTP endpoint answering 200 while every pipeline is running
//! and 503 while switchyard is starting or shutting down.

use crate::net;
use crate::pipeline::{Status, StatusCell};
use http::StatusCode;
use serde::Deserialize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Where the endpoint listens.
    pub endpoint: String,
    /// The URL path that answers.
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig { endpoint: "localhost:13133".to_string(), path: "/".to_string() }
    }
}

impl HealthCheckConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        net::check_endpoint(&self.endpoint).map_err(|m| ("endpoint".to_string(), m))
    }
}

pub async fn serve(cfg: HealthCheckConfig, listener: TcpListener, status: StatusCell, shutdown: CancellationToken) {
    let path: std::sync::Arc<str> = cfg.path.into();
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let status = status.clone();
        let path = path.clone();
        async move {
            if req.uri().path() != &*path {
                return net::response(StatusCode::NOT_FOUND, "text/plain", "not found\n");
            }
            let now = status.get();
            let (code, word) = match now {
                Status::Running => (StatusCode::OK, "Server available"),
                Status::Starting => (StatusCode::SERVICE_UNAVAILABLE, "Server starting"),
                Status::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "Server shutting down"),
                Status::Failed => (StatusCode::SERVICE_UNAVAILABLE, "Server not available: a pipeline stopped"),
            };
            let body = serde_json::json!({"status": word, "upSince": status.up_since()}).to_string();
            net::response(code, "application/json", body)
        }
    };
    net::serve(listener, handler, shutdown, Duration::from_secs(1)).await;
}

/// The `health_check` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<HealthCheckConfig>(
    "health_check",
    "HTTP health endpoint (200 running, 503 otherwise)",
);

impl crate::pipeline::component::ExtensionSettings for HealthCheckConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        HealthCheckConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ExtensionContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(async move {
            let listener = ctx.listeners.tcp(&self.endpoint).await?;
            let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(extension = %ctx.name, endpoint = %local, "health check listening");
            Ok(vec![tokio::spawn(serve(self.clone(), listener, ctx.status, ctx.stop))])
        })
    }
}
