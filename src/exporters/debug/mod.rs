//! The `debug` exporter: writes what arrives to switchyard's log (stderr), as counts (`basic`),
//! one line per item (`normal`), or every field as OTLP/JSON (`detailed`).

use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    Basic,
    Normal,
    Detailed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig { verbosity: Verbosity::Basic }
    }
}

pub struct DebugExporter {
    name: String,
    verbosity: Verbosity,
}

impl DebugExporter {
    pub fn new(name: String, cfg: DebugConfig) -> DebugExporter {
        DebugExporter { name, verbosity: cfg.verbosity }
    }

    fn write(&self, batch: &Batch) -> Result<(), ExportError> {
        let signal = batch.signal();
        if self.verbosity == Verbosity::Basic {
            tracing::info!(exporter = %self.name, %signal, items = batch.items(), "{}", signal_title(batch));
            return Ok(());
        }
        let request = batch.request().map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        match self.verbosity {
            Verbosity::Detailed => {
                let text = detailed(request).map_err(|e| ExportError::Permanent { reason: e })?;
                tracing::info!(exporter = %self.name, %signal, items = batch.items(), "{}\n{text}", signal_title(batch));
            }
            _ => {
                tracing::info!(exporter = %self.name, %signal, items = batch.items(), "{}", signal_title(batch));
                for line in normal_lines(request) {
                    tracing::info!(exporter = %self.name, "{line}");
                }
            }
        }
        Ok(())
    }
}

fn signal_title(batch: &Batch) -> &'static str {
    match batch.signal() {
        crate::pipeline::Signal::Traces => "Traces",
        crate::pipeline::Signal::Metrics => "Metrics",
        crate::pipeline::Signal::Logs => "Logs",
    }
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// One short line per span, data point group or log record.
pub fn normal_lines(request: &Request) -> Vec<String> {
    let mut lines = Vec::new();
    match request {
        Request::Traces(t) => {
            for s in t.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                lines.push(format!(
                    "{} {} {} kind={} duration={}ns",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    s.kind,
                    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)
                ));
            }
        }
        Request::Metrics(m) => {
            for metric in m.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
                let points = crate::pipeline::metric_points(metric.data.as_ref());
                lines.push(format!("{} unit={} points={points}", metric.name, metric.unit));
            }
        }
        Request::Logs(l) => {
            for r in l.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
                let body = r.body.as_ref().and_then(|b| serde_json::to_string(b).ok()).unwrap_or_default();
                lines.push(format!("{} {} {body}", r.time_unix_nano, r.severity_text));
            }
        }
    }
    lines
}

/// The whole request as indented OTLP/JSON.
pub fn detailed(request: &Request) -> Result<String, String> {
    let r = match request {
        Request::Traces(t) => serde_json::to_string_pretty(t),
        Request::Metrics(m) => serde_json::to_string_pretty(m),
        Request::Logs(l) => serde_json::to_string_pretty(l),
    };
    r.map_err(|e| e.to_string())
}

impl Exporter for DebugExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { self.write(batch) })
    }
}
