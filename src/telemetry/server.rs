//! The Prometheus endpoint for the self-metrics (`service.telemetry.metrics.address`).

use super::metrics::Metrics;
use crate::net;
use http::{Method, StatusCode};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<Metrics>, shutdown: CancellationToken) {
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let metrics = metrics.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => {
                    net::response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
                }
                (&Method::GET, _) => {
                    net::response(StatusCode::NOT_FOUND, "text/plain", "not found; metrics are at /metrics\n")
                }
                _ => net::response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n"),
            }
        }
    };
    net::serve(listener, handler, shutdown, Duration::from_secs(1)).await;
}
