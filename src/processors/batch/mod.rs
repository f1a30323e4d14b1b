//! The `batch` processor: gathers batches until `send_batch_size` items or `timeout`, and splits
//! anything larger than `send_batch_max_size`. The exporter-queue room that receivers claimed
//! travels inside the batches, so whatever this processor holds is sure to fit downstream.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, ClaimSet, Processor};
use crate::telemetry::metrics::Metrics;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that trigger a send.
    pub send_batch_size: usize,
    /// Upper bound of a sent batch; 0 means no bound.
    pub send_batch_max_size: usize,
    /// Longest time data waits for a full batch; 0 sends every batch at once.
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { send_batch_size: 8192, send_batch_max_size: 0, timeout: Duration::from_millis(200) }
    }
}

impl BatchConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err((
                "send_batch_max_size".into(),
                format!("must be 0 or at least send_batch_size ({})", self.send_batch_size),
            ));
        }
        Ok(())
    }
}

pub struct BatchProcessor {
    cfg: BatchConfig,
    name: String,
    telemetry: Arc<Metrics>,
    pending: Vec<Batch>,
    pending_items: usize,
    /// The exporter-queue room of the pending batches, one claim per queue.
    claims: ClaimSet,
    deadline: Option<Instant>,
}

impl BatchProcessor {
    pub fn new(name: String, cfg: BatchConfig, telemetry: Arc<Metrics>) -> BatchProcessor {
        BatchProcessor {
            cfg,
            name,
            telemetry,
            pending: Vec::new(),
            pending_items: 0,
            claims: ClaimSet::default(),
            deadline: None,
        }
    }

    fn send(&mut self, out: &mut Vec<Batch>) {
        let Some(merged) = Batch::merge(std::mem::take(&mut self.pending)) else {
            return;
        };
        self.pending_items = 0;
        self.deadline = None;
        let claims = self.claims.take();
        for mut part in merged.split(self.cfg.send_batch_max_size) {
            part.hold_shared(&claims);
            self.telemetry.batch_send_size.with_label_values(&[&self.name]).observe(part.items() as f64);
            out.push(part);
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        if batch.items() == 0 {
            return;
        }
        self.claims.absorb(batch.take_claims());
        self.pending_items += batch.items();
        self.pending.push(batch);
        if self.pending_items >= self.cfg.send_batch_size || self.cfg.timeout.is_zero() {
            self.telemetry.batch_size_trigger_send.with_label_values(&[&self.name]).inc();
            self.send(out);
        } else if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.cfg.timeout);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Batch>) {
        self.telemetry.batch_timeout_trigger_send.with_label_values(&[&self.name]).inc();
        self.send(out);
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        self.send(out);
    }

    fn release_batches(&mut self, out: &mut Vec<Batch>) {
        self.send(out);
    }
}

/// The `batch` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<BatchConfig>(
    "batch",
    crate::registry::ALL_SIGNALS,
    "groups data into batches by size and time",
);

impl crate::pipeline::component::ProcessorSettings for BatchConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        BatchConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(BatchProcessor::new(ctx.name.clone(), self.clone(), ctx.telemetry.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Request, Signal};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn batch(spans: usize) -> Batch {
        let span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span; spans], ..Default::default() }],
                ..Default::default()
            }],
        };
        Batch::from_encoded(Signal::Traces, req.encode_to_vec().into(), spans)
    }

    fn cfg(size: usize, max: usize) -> BatchConfig {
        BatchConfig { send_batch_size: size, send_batch_max_size: max, timeout: Duration::from_secs(60) }
    }

    #[test]
    fn sends_when_size_is_reached() {
        let mut p = BatchProcessor::new("batch".into(), cfg(10, 0), Default::default());
        let mut out = Vec::new();
        p.process(batch(4), &mut out);
        p.process(batch(4), &mut out);
        assert!(out.is_empty());
        assert!(p.next_deadline().is_some());
        p.process(batch(4), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items(), 12);
        assert!(out[0].is_encoded(), "encoded batches merge without decoding");
        assert!(p.next_deadline().is_none());
    }

    #[test]
    fn splits_above_the_max() {
        let mut p = BatchProcessor::new("batch".into(), cfg(10, 10), Default::default());
        let mut out = Vec::new();
        p.process(batch(25), &mut out);
        assert_eq!(out.iter().map(Batch::items).collect::<Vec<_>>(), vec![10, 10, 5]);
        let total: usize = out.iter().map(|b| b.request().map(Request::item_count).unwrap_or(0)).sum();
        assert_eq!(total, 25);
    }

    #[test]
    fn timeout_and_flush_release_partial_batches() {
        let mut p = BatchProcessor::new("batch".into(), cfg(100, 0), Default::default());
        let mut out = Vec::new();
        p.process(batch(3), &mut out);
        let d = p.next_deadline().unwrap();
        p.on_deadline(d, &mut out);
        assert_eq!(out.len(), 1);
        p.process(batch(2), &mut out);
        p.flush(&mut out);
        assert_eq!(out.iter().map(Batch::items).collect::<Vec<_>>(), vec![3, 2]);
    }
}
