//! The `prometheus` exporter: serves the metrics it is given on `endpoint` for Prometheus to
//! scrape (`/metrics`, text 0.0.4 or OpenMetrics 1.0 by the scraper's Accept header), converted
//! per PROTOCOLS.md §4.7. Its OTLP → Prometheus pieces (`naming`, `series`) are shared with
//! `prometheusremotewrite`.

pub mod naming;
mod registry;
pub mod series;

use crate::config::deserialize_duration;
use crate::net::{self, BoxBody};
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use http::{Method, StatusCode, header};
use registry::Registry;
use serde::Deserialize;
use series::{Settings, walk};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusExporterConfig {
    /// Where `/metrics` is served, e.g. `0.0.0.0:8889`.
    pub endpoint: String,
    pub namespace: String,
    /// Added to every series that does not have the label.
    pub const_labels: BTreeMap<String, String>,
    /// Write each sample's timestamp (off: Prometheus stamps samples with the scrape time).
    pub send_timestamps: bool,
    /// A series not updated for this long is no longer served.
    #[serde(deserialize_with = "deserialize_duration")]
    pub metric_expiration: Duration,
    pub resource_to_telemetry_conversion: crate::exporters::prometheusremotewrite::Enabled<false>,
    pub add_metric_suffixes: bool,
    pub enable_open_metrics: bool,
}

impl Default for PrometheusExporterConfig {
    fn default() -> Self {
        PrometheusExporterConfig {
            endpoint: String::new(),
            namespace: String::new(),
            const_labels: BTreeMap::new(),
            send_timestamps: false,
            metric_expiration: Duration::from_secs(300),
            resource_to_telemetry_conversion: Default::default(),
            add_metric_suffixes: true,
            enable_open_metrics: true,
        }
    }
}

impl PrometheusExporterConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.endpoint.is_empty() {
            return Err(("endpoint".into(), "is required: where to serve /metrics, such as 0.0.0.0:8889".into()));
        }
        net::check_endpoint(&self.endpoint).map_err(|m| ("endpoint".into(), m))?;
        if self.metric_expiration.is_zero() {
            return Err(("metric_expiration".into(), "must be greater than 0".into()));
        }
        for k in self.const_labels.keys() {
            if !crate::receivers::prometheus::relabel::valid_label_name(k) {
                return Err((format!("const_labels.{k}"), "is not a valid Prometheus label name".into()));
            }
        }
        Ok(())
    }
}

pub struct PrometheusExporter {
    registry: Arc<Registry>,
    settings: Settings,
    stop: CancellationToken,
}

impl PrometheusExporter {
    /// Binds `endpoint` through `listeners` (so that a port in use fails the start, and a
    /// replaced exporter's successor takes over its socket) and starts serving.
    pub async fn start(
        name: String,
        cfg: &PrometheusExporterConfig,
        listeners: &net::Listeners,
    ) -> Result<PrometheusExporter, String> {
        let listener = listeners.tcp(&cfg.endpoint).await?;
        tracing::info!(exporter = %name, endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "Prometheus exporter serving /metrics");
        let registry = Arc::new(Registry::new(cfg.metric_expiration));
        let stop = CancellationToken::new();
        let served = registry.clone();
        let (const_labels, timestamps, open_metrics) =
            (Arc::new(cfg.const_labels.clone()), cfg.send_timestamps, cfg.enable_open_metrics);
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let (registry, const_labels) = (served.clone(), const_labels.clone());
            async move { serve(&req, &registry, &const_labels, timestamps, open_metrics) }
        };
        tokio::spawn(net::serve(listener, handler, stop.clone(), Duration::from_secs(1)));
        Ok(PrometheusExporter {
            registry,
            settings: Settings {
                namespace: cfg.namespace.clone(),
                add_metric_suffixes: cfg.add_metric_suffixes,
                resource_to_telemetry: cfg.resource_to_telemetry_conversion.enabled,
                target_info: true,
                external_labels: BTreeMap::new(),
            },
            stop,
        })
    }
}

fn serve(
    req: &http::Request<hyper::body::Incoming>,
    registry: &Registry,
    const_labels: &BTreeMap<String, String>,
    timestamps: bool,
    open_metrics_enabled: bool,
) -> http::Response<BoxBody> {
    if req.uri().path() != "/metrics" {
        return net::text(StatusCode::NOT_FOUND, "not found: metrics are at /metrics");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return net::text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let open_metrics = open_metrics_enabled && accept.contains("application/openmetrics-text");
    let body = registry.render(open_metrics, const_labels, timestamps);
    let content_type = if open_metrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    net::response(StatusCode::OK, content_type, body)
}

impl Exporter for PrometheusExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let request = batch.request().map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
            let Request::Metrics(metrics) = request else {
                return Err(ExportError::Permanent { reason: "the prometheus exporter takes metrics only".into() });
            };
            let dropped = walk(metrics, &self.settings, |p| self.registry.update(p));
            if dropped > 0 {
                tracing::debug!(dropped, "exponential histograms cannot be served as Prometheus classic metrics");
            }
            Ok(())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.stop.cancel() })
    }
}

/// The `prometheus` exporter's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::exporter::<PrometheusExporterConfig>(
        "prometheus",
        &[crate::signal::Signal::Metrics],
        "serves metrics on /metrics for Prometheus to scrape",
    );

impl crate::pipeline::component::ExporterSettings for PrometheusExporterConfig {
    fn destination(&self) -> String {
        format!("served for scraping at http://{}/metrics", self.endpoint)
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        PrometheusExporterConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            Ok(std::sync::Arc::new(PrometheusExporter::start(ctx.name.clone(), self, &ctx.listeners).await?) as _)
        })
    }
}
