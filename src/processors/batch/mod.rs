//! The `batch` processor: gathers batches until `send_batch_size` items or `timeout`, and splits
//! anything larger than `send_batch_max_size`. The exporter-queue room that receivers claimed
//! travels inside the batches, so whatever this processor holds is sure to fit downstream.
//!
//! With `metadata_keys`, data is gathered separately for each combination of those keys' values
//! in its request context (a tenant header kept by a receiver's `include_metadata`): a sent
//! batch never mixes two tenants, and carries exactly those keys for the exporters
//! (`headers_setter`). At most `metadata_cardinality_limit` combinations gather at once.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, ClaimSet, Processor};
use crate::telemetry::metrics::Metrics;
use serde::Deserialize;
use std::collections::HashMap;
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
    /// Request-context keys (client metadata, case-insensitive) to batch by.
    pub metadata_keys: Vec<String>,
    /// Combinations of `metadata_keys` values gathered at once.
    pub metadata_cardinality_limit: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
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
        let mut seen = std::collections::HashSet::new();
        for (i, k) in self.metadata_keys.iter().enumerate() {
            if k.is_empty() || !seen.insert(k.to_ascii_lowercase()) {
                return Err((format!("metadata_keys.{i}"), format!("\"{k}\" is empty or listed twice")));
            }
        }
        if !self.metadata_keys.is_empty() && self.metadata_cardinality_limit == 0 {
            return Err(("metadata_cardinality_limit".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// What one combination of metadata values has gathered.
#[derive(Default)]
struct Gathering {
    pending: Vec<Batch>,
    items: usize,
    /// The exporter-queue room of the pending batches, one claim per queue.
    claims: ClaimSet,
    deadline: Option<Instant>,
}

pub struct BatchProcessor {
    cfg: BatchConfig,
    name: String,
    telemetry: Arc<Metrics>,
    /// `metadata_keys`, lower-cased (context keys are).
    keys: Vec<String>,
    /// By the values of `keys` (all empty without `metadata_keys`).
    groups: HashMap<Vec<String>, Gathering>,
    over_limit: crate::telemetry::log_limit::LogLimit,
}

impl BatchProcessor {
    pub fn new(name: String, cfg: BatchConfig, telemetry: Arc<Metrics>) -> BatchProcessor {
        let keys = cfg.metadata_keys.iter().map(|k| k.to_ascii_lowercase()).collect();
        BatchProcessor { cfg, name, telemetry, keys, groups: HashMap::new(), over_limit: Default::default() }
    }

    /// The values of `metadata_keys` in `batch`'s context (several values joined by `,`).
    fn group_of(&self, batch: &Batch) -> Vec<String> {
        let context = batch.context().unwrap_or_default();
        self.keys
            .iter()
            .map(|k| context.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(","))
            .collect()
    }

    /// Sends what `group` gathered, with only its metadata as context.
    fn send(&mut self, group: &[String], out: &mut Vec<Batch>) {
        let Some(g) = self.groups.remove(group) else { return };
        let Some(mut merged) = Batch::merge(g.pending) else { return };
        if !self.keys.is_empty() {
            let pairs = self.keys.iter().cloned().zip(group.iter().cloned()).filter(|(_, v)| !v.is_empty()).collect();
            merged = merged.with_context(Arc::new(pairs));
        }
        let claims = { g.claims }.take();
        for mut part in merged.split(self.cfg.send_batch_max_size) {
            part.hold_shared(&claims);
            self.telemetry.batch_send_size.with_label_values(&[&self.name]).observe(part.items() as f64);
            out.push(part);
        }
    }

    fn send_all(&mut self, out: &mut Vec<Batch>) {
        let groups: Vec<Vec<String>> = self.groups.keys().cloned().collect();
        for g in groups {
            self.send(&g, out);
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        if batch.items() == 0 {
            return;
        }
        let group = self.group_of(&batch);
        if !self.groups.contains_key(&group) && self.groups.len() >= self.cfg.metadata_cardinality_limit.max(1) {
            // Better than refusing it (the collector's answer): it goes on alone, unmerged, so
            // tenants still never mix.
            if let Some(held_back) = self.over_limit.allow() {
                tracing::warn!(processor = %self.name, limit = self.cfg.metadata_cardinality_limit,
                    suppressed_since_last_warning = held_back,
                    "more metadata combinations than metadata_cardinality_limit: sending a batch without waiting for others");
            }
            self.groups.insert(group.clone(), Gathering::default());
            let g = self.groups.get_mut(&group).expect("just inserted");
            g.claims.absorb(batch.take_claims());
            g.items = batch.items();
            g.pending.push(batch);
            self.telemetry.batch_size_trigger_send.with_label_values(&[&self.name]).inc();
            self.send(&group, out);
            return;
        }
        let g = self.groups.entry(group.clone()).or_default();
        g.claims.absorb(batch.take_claims());
        g.items += batch.items();
        g.pending.push(batch);
        if g.items >= self.cfg.send_batch_size || self.cfg.timeout.is_zero() {
            self.telemetry.batch_size_trigger_send.with_label_values(&[&self.name]).inc();
            self.send(&group, out);
        } else if g.deadline.is_none() {
            g.deadline = Some(Instant::now() + self.cfg.timeout);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.groups.values().filter_map(|g| g.deadline).min()
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        let due: Vec<Vec<String>> =
            self.groups.iter().filter(|(_, g)| g.deadline.is_some_and(|d| d <= now)).map(|(k, _)| k.clone()).collect();
        for g in due {
            self.telemetry.batch_timeout_trigger_send.with_label_values(&[&self.name]).inc();
            self.send(&g, out);
        }
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        self.send_all(out);
    }

    fn release_batches(&mut self, out: &mut Vec<Batch>) {
        self.send_all(out);
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
        BatchConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: Duration::from_secs(60),
            ..Default::default()
        }
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

    fn tenant(spans: usize, tenant: &str) -> Batch {
        let context = vec![("x-tenant".to_string(), tenant.to_string()), ("user-agent".to_string(), "sdk".to_string())];
        batch(spans).with_context(Arc::new(context))
    }

    #[test]
    fn metadata_keys_keep_tenants_apart_and_carry_only_those_keys() {
        let cfg = BatchConfig { metadata_keys: vec!["X-Tenant".into()], metadata_cardinality_limit: 2, ..cfg(10, 0) };
        cfg.validate().unwrap();
        let mut p = BatchProcessor::new("batch".into(), cfg, Default::default());
        let mut out = Vec::new();
        p.process(tenant(6, "a"), &mut out);
        p.process(tenant(6, "b"), &mut out);
        assert!(out.is_empty(), "6 + 6 would reach 10, but they are different tenants");
        p.process(tenant(6, "a"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].items(), 12);
        assert_eq!(out[0].context().unwrap(), [("x-tenant".to_string(), "a".to_string())]);
        // b and c gather; d, over the limit of two at once, goes on alone at once.
        p.process(tenant(1, "c"), &mut out);
        p.process(tenant(1, "d"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].context().unwrap(), [("x-tenant".to_string(), "d".to_string())]);
        p.flush(&mut out);
        p.process(batch(2), &mut out);
        p.flush(&mut out);
        let mut rest: Vec<(usize, String)> = out[2..]
            .iter()
            .map(|b| (b.items(), b.context().unwrap().iter().map(|(_, v)| v.clone()).collect::<String>()))
            .collect();
        rest.sort();
        assert_eq!(rest, vec![(1, "c".to_string()), (2, String::new()), (6, "b".to_string())]);
    }
}
