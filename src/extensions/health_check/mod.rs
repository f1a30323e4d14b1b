//! The `health_check` extension: an HTTP endpoint answering 200 while every pipeline is running
//! and 503 while switchyard is starting or shutting down, and the collector's v2 component
//! status at `/health/status`: each pipeline with its receivers, processors and exporters, an
//! exporter failing (`StatusRecoverableError`, since when and why) or having given data up
//! (`StatusPermanentError`). `component_health` says when those make the process unhealthy
//! (503 on both paths).

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
    /// Component status (the collector's healthcheckv2 shape).
    pub status: StatusPath,
    /// When failing exporters make the whole process unhealthy.
    pub component_health: ComponentHealth,
}

/// `status`: where component status is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPath {
    pub enabled: bool,
    pub path: String,
}

impl Default for StatusPath {
    fn default() -> Self {
        StatusPath { enabled: true, path: "/health/status".into() }
    }
}

/// `component_health`, as the collector's healthcheckv2 has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentHealth {
    /// An exporter that gave data up within `recovery_duration` makes the process unhealthy.
    pub include_permanent_errors: bool,
    /// An exporter failing for longer than `recovery_duration` makes the process unhealthy.
    pub include_recoverable_errors: bool,
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub recovery_duration: Duration,
}

impl Default for ComponentHealth {
    fn default() -> Self {
        ComponentHealth {
            include_permanent_errors: false,
            include_recoverable_errors: false,
            recovery_duration: Duration::from_secs(300),
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "localhost:13133".to_string(),
            path: "/".to_string(),
            status: StatusPath::default(),
            component_health: ComponentHealth::default(),
        }
    }
}

impl HealthCheckConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        net::check_endpoint(&self.endpoint).map_err(|m| ("endpoint".to_string(), m))?;
        if self.status.enabled && (!self.status.path.starts_with('/') || self.status.path == self.path) {
            return Err(("status.path".into(), "must start with / and differ from path".into()));
        }
        Ok(())
    }
}

/// RFC 3339 of a wall-clock time.
fn rfc3339(t: std::time::SystemTime) -> String {
    crate::timefmt::rfc3339(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0))
}

/// The v2 status of one exporter: (healthy, JSON).
fn exporter_status(
    health: &crate::pipeline::queue::health::ExporterHealth,
    rule: &ComponentHealth,
    up_since: &serde_json::Value,
) -> (bool, serde_json::Value) {
    use crate::pipeline::queue::health::Condition;
    match health.condition(rule.recovery_duration) {
        Condition::Ok => (true, serde_json::json!({"healthy": true, "status": "StatusOK", "status_time": up_since})),
        Condition::Recoverable { since_wall, lasted, reason } => {
            let healthy = !(rule.include_recoverable_errors && lasted > rule.recovery_duration);
            let v = serde_json::json!({"healthy": healthy, "status": "StatusRecoverableError",
                "status_time": rfc3339(since_wall), "error": reason});
            (healthy, v)
        }
        Condition::Permanent { since_wall, reason } => {
            let healthy = !rule.include_permanent_errors;
            let v = serde_json::json!({"healthy": healthy, "status": "StatusPermanentError",
                "status_time": rfc3339(since_wall), "error": reason});
            (healthy, v)
        }
    }
}

/// The whole component status (`pipeline`: only that pipeline's), and whether it is healthy.
fn component_status(
    status: &StatusCell,
    board: &crate::pipeline::board::Board,
    rule: &ComponentHealth,
    pipeline: Option<&str>,
) -> (bool, serde_json::Value) {
    let up_since = serde_json::json!(status.up_since());
    let running = status.get() == Status::Running;
    let process_status = match status.get() {
        Status::Running => "StatusOK",
        Status::Starting => "StatusStarting",
        Status::Stopping => "StatusStopping",
        Status::Failed => "StatusFatalError",
    };
    let mut all_healthy = running;
    let mut pipelines = serde_json::Map::new();
    for p in board.get() {
        if pipeline.is_some_and(|want| want != p.id) {
            continue;
        }
        let mut components = serde_json::Map::new();
        let ok = serde_json::json!({"healthy": running, "status": process_status, "status_time": up_since});
        for r in &p.receivers {
            components.insert(format!("receiver:{r}"), ok.clone());
        }
        for r in &p.processors {
            components.insert(format!("processor:{r}"), ok.clone());
        }
        let mut healthy = running;
        let mut worst = process_status;
        for (name, health) in &p.exporters {
            let (h, v) = exporter_status(health, rule, &up_since);
            if v["status"] != "StatusOK" && worst == "StatusOK" {
                worst = if v["status"] == "StatusPermanentError" {
                    "StatusPermanentError"
                } else {
                    "StatusRecoverableError"
                };
            }
            healthy &= h;
            components.insert(format!("exporter:{name}"), v);
        }
        all_healthy &= healthy;
        pipelines.insert(
            format!("pipeline:{}", p.id),
            serde_json::json!({"healthy": healthy, "status": worst, "status_time": up_since, "components": components}),
        );
    }
    let body = match pipeline {
        Some(want) => pipelines.remove(&format!("pipeline:{want}")).unwrap_or(serde_json::Value::Null),
        None => serde_json::json!({"start_time": up_since, "healthy": all_healthy, "status": process_status,
            "status_time": up_since, "components": pipelines}),
    };
    (all_healthy, body)
}

pub async fn serve(
    cfg: HealthCheckConfig,
    listener: TcpListener,
    status: StatusCell,
    board: crate::pipeline::board::Board,
    shutdown: CancellationToken,
) {
    let cfg = std::sync::Arc::new(cfg);
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let (status, board, cfg) = (status.clone(), board.clone(), cfg.clone());
        async move {
            let rule = &cfg.component_health;
            if cfg.status.enabled && req.uri().path() == cfg.status.path {
                let pairs = crate::percent::query_pairs(req.uri().query().unwrap_or(""));
                let pipeline = match &pairs {
                    Ok(pairs) => pairs.iter().find(|(k, _)| k == "pipeline").map(|(_, v)| v.clone()),
                    Err(m) => return net::text(StatusCode::BAD_REQUEST, m),
                };
                let (healthy, body) = component_status(&status, &board, rule, pipeline.as_deref());
                if body.is_null() {
                    return net::response(StatusCode::NOT_FOUND, "text/plain", "no such pipeline\n");
                }
                let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                return net::response(code, "application/json", body.to_string());
            }
            if req.uri().path() != cfg.path {
                return net::response(StatusCode::NOT_FOUND, "text/plain", "not found\n");
            }
            let now = status.get();
            // With a component_health rule, failing exporters make the process unavailable too.
            let ruled = rule.include_permanent_errors || rule.include_recoverable_errors;
            if ruled && now == Status::Running && !component_status(&status, &board, rule, None).0 {
                let body =
                    serde_json::json!({"status": "Server not available: an exporter is failing (see the status path)",
                    "upSince": status.up_since()})
                    .to_string();
                return net::response(StatusCode::SERVICE_UNAVAILABLE, "application/json", body);
            }
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
            Ok(vec![tokio::spawn(serve(self.clone(), listener, ctx.status, ctx.board, ctx.stop))])
        })
    }
}
