//! The `debug` exporter: writes what arrives to switchyard's log (stderr, sampled as the
//! collector samples it) or to stdout, as counts (`basic`), one line per item (`normal`), or
//! every field as OTLP/JSON (`detailed`).

use crate::hexfmt::hex;
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
    /// Batches written per second before sampling starts.
    pub sampling_initial: u64,
    /// After that, one batch in this many is written (1 writes all).
    pub sampling_thereafter: u64,
    /// Write through switchyard's log (true, sampled) or straight to stdout (false, unsampled).
    pub use_internal_logger: bool,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            verbosity: Verbosity::Basic,
            sampling_initial: 2,
            sampling_thereafter: 1,
            use_internal_logger: true,
        }
    }
}

pub struct DebugExporter {
    name: String,
    cfg: DebugConfig,
    /// (second since start, batches seen in it), for sampling.
    window: std::sync::Mutex<(u64, u64)>,
    started: std::time::Instant,
}

impl DebugExporter {
    pub fn new(name: String, cfg: DebugConfig) -> DebugExporter {
        DebugExporter { name, cfg, window: std::sync::Mutex::new((0, 0)), started: std::time::Instant::now() }
    }

    /// The collector's log sampling: the first `sampling_initial` batches of each second, then
    /// every `sampling_thereafter`-th.
    fn sampled_in(&self) -> bool {
        if !self.cfg.use_internal_logger {
            return true;
        }
        let second = self.started.elapsed().as_secs();
        let Ok(mut w) = self.window.lock() else { return true };
        if w.0 != second {
            *w = (second, 0);
        }
        w.1 += 1;
        let n = w.1;
        n <= self.cfg.sampling_initial
            || (n - self.cfg.sampling_initial).is_multiple_of(self.cfg.sampling_thereafter.max(1))
    }

    fn emit(&self, signal: crate::signal::Signal, text: &str) {
        if self.cfg.use_internal_logger {
            // The text says how many items (`Traces items=3`): not a field as well.
            tracing::info!(exporter = %self.name, %signal, "{text}");
        } else {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }

    fn write(&self, batch: &Batch) -> Result<(), ExportError> {
        if !self.sampled_in() {
            return Ok(());
        }
        let signal = batch.signal();
        let title = format!("{} items={}", signal_title(batch), batch.items());
        if self.cfg.verbosity == Verbosity::Basic {
            self.emit(signal, &title);
            return Ok(());
        }
        let request = batch.request().map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        let body = match self.cfg.verbosity {
            Verbosity::Detailed => detailed(request).map_err(|e| ExportError::Permanent { reason: e })?,
            _ => normal_lines(request).join("\n"),
        };
        self.emit(signal, &format!("{title}\n{body}"));
        Ok(())
    }
}

fn signal_title(batch: &Batch) -> &'static str {
    match batch.signal() {
        crate::signal::Signal::Traces => "Traces",
        crate::signal::Signal::Metrics => "Metrics",
        crate::signal::Signal::Logs => "Logs",
    }
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

/// The `debug` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<DebugConfig>(
    "debug",
    crate::registry::ALL_SIGNALS,
    "writes data to switchyard's log",
);

impl crate::pipeline::component::ExporterSettings for DebugConfig {
    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move { Ok(std::sync::Arc::new(DebugExporter::new(ctx.name.clone(), self.clone())) as _) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_writes_the_first_then_every_nth() {
        let cfg = DebugConfig { sampling_initial: 2, sampling_thereafter: 3, ..Default::default() };
        let d = DebugExporter::new("debug".into(), cfg);
        let written: Vec<bool> = (0..8).map(|_| d.sampled_in()).collect();
        assert_eq!(written, vec![true, true, false, false, true, false, false, true]);
    }
}
