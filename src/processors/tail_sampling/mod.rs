//! The `tail_sampling` processor (PROTOCOLS.md §6.2): holds each trace's spans for
//! `decision_wait` after its first span, then decides with its policies (see `policy`). Sampled
//! traces leave at once; late spans follow their trace's decision while it is remembered (the
//! last `num_traces` decisions, and the optional decision caches). At most `num_traces` traces
//! wait: past that the oldest is dropped undecided, and counted. Each waiting trace keeps the
//! exporter-queue room its spans were admitted with, and gives it back when it is decided.

mod policy;

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, Claim, Processor, Request};
use crate::telemetry::metrics::Metrics;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use policy::{Policy, PolicyConfig, Trace, combine};
use serde::Deserialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCache {
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    #[serde(deserialize_with = "deserialize_duration")]
    pub decision_wait: Duration,
    pub num_traces: usize,
    /// A sizing hint in the collector; accepted.
    pub expected_new_traces_per_sec: u64,
    pub decision_cache: DecisionCache,
    pub policies: Vec<PolicyConfig>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: Duration::from_secs(30),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCache::default(),
            policies: Vec::new(),
        }
    }
}

impl TailSamplingConfig {
    fn policies(&self) -> Result<Vec<Policy>, (String, String)> {
        if self.policies.is_empty() {
            return Err(("policies".into(), "list at least one policy".into()));
        }
        self.policies
            .iter()
            .enumerate()
            .map(|(i, p)| Policy::new(p).map_err(|(k, m)| (format!("policies.{i}.{k}"), m)))
            .collect()
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.decision_wait.is_zero() {
            return Err(("decision_wait".into(), "must be greater than 0".into()));
        }
        if self.num_traces == 0 {
            return Err(("num_traces".into(), "must be at least 1".into()));
        }
        self.policies().map(|_| ())
    }
}

/// A remembered set of trace ids, forgetting the oldest past its size.
#[derive(Default)]
struct Remembered {
    size: usize,
    order: VecDeque<Vec<u8>>,
    set: HashSet<Vec<u8>>,
}

impl Remembered {
    fn new(size: usize) -> Remembered {
        Remembered { size, ..Default::default() }
    }

    fn insert(&mut self, id: Vec<u8>) {
        if self.size == 0 || self.set.contains(&id) {
            return;
        }
        if self.order.len() >= self.size
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
    }

    fn contains(&self, id: &[u8]) -> bool {
        self.set.contains(id)
    }
}

/// A span with the resource and scope it came under.
struct Held {
    resource: Option<Resource>,
    scope: Option<InstrumentationScope>,
    span: Span,
}

struct Pending {
    spans: Vec<Held>,
    /// The queue room of the batches the spans came in (shared with other traces from them).
    claims: Vec<Arc<Claim>>,
}

pub struct TailSamplingProcessor {
    name: String,
    telemetry: std::sync::Arc<Metrics>,
    wait: Duration,
    num_traces: usize,
    policies: Vec<Policy>,
    pending: HashMap<Vec<u8>, Pending>,
    /// Waiting traces in order of their first span.
    order: VecDeque<(Instant, Vec<u8>)>,
    /// The last `num_traces` decisions, for late spans; then the decision caches.
    recent_sampled: Remembered,
    recent_dropped: Remembered,
    cache_sampled: Remembered,
    cache_dropped: Remembered,
}

impl TailSamplingProcessor {
    pub fn new(
        name: String,
        cfg: &TailSamplingConfig,
        telemetry: std::sync::Arc<Metrics>,
    ) -> Result<TailSamplingProcessor, String> {
        let policies = cfg.policies().map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(TailSamplingProcessor {
            name,
            telemetry,
            wait: cfg.decision_wait,
            num_traces: cfg.num_traces,
            policies,
            pending: HashMap::new(),
            order: VecDeque::new(),
            recent_sampled: Remembered::new(cfg.num_traces),
            recent_dropped: Remembered::new(cfg.num_traces),
            cache_sampled: Remembered::new(cfg.decision_cache.sampled_cache_size),
            cache_dropped: Remembered::new(cfg.decision_cache.non_sampled_cache_size),
        })
    }

    fn dropped(&self, spans: usize) {
        if spans > 0 {
            self.telemetry.processor_dropped[0].with_label_values(&[self.name.as_str()]).inc_by(spans as u64);
        }
    }

    /// Decides a trace now; returns its spans and claims if sampled.
    fn decide(&mut self, id: Vec<u8>) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        let resources: Vec<Vec<KeyValue>> = pending
            .spans
            .iter()
            .map(|h| h.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default())
            .collect();
        let trace =
            Trace { spans: pending.spans.iter().zip(&resources).map(|(h, r)| (r.as_slice(), &h.span)).collect() };
        let decisions: Vec<_> = self.policies.iter().map(|p| p.evaluate(&trace, &id)).collect();
        let sampled = combine(&decisions);
        drop(trace);
        if sampled {
            self.recent_sampled.insert(id.clone());
            self.cache_sampled.insert(id);
            Some(pending)
        } else {
            self.recent_dropped.insert(id.clone());
            self.cache_dropped.insert(id);
            self.dropped(pending.spans.len());
            None
        }
    }

    fn emit(held: Vec<Held>, claims: Vec<Arc<Claim>>, out: &mut Vec<Batch>) {
        if held.is_empty() {
            return;
        }
        let mut request = ExportTraceServiceRequest::default();
        for h in held {
            let rs = match request.resource_spans.iter_mut().position(|rs| rs.resource == h.resource) {
                Some(i) => &mut request.resource_spans[i],
                None => {
                    request.resource_spans.push(ResourceSpans { resource: h.resource, ..Default::default() });
                    request.resource_spans.last_mut().expect("just pushed")
                }
            };
            match rs.scope_spans.iter_mut().find(|ss| ss.scope == h.scope) {
                Some(ss) => ss.spans.push(h.span),
                None => rs.scope_spans.push(ScopeSpans { scope: h.scope, spans: vec![h.span], ..Default::default() }),
            }
        }
        let mut batch = Batch::from_request(Request::Traces(request));
        batch.hold_shared(&claims);
        out.push(batch);
    }
}

fn merge_claims(into: &mut Vec<Arc<Claim>>, from: &[Arc<Claim>]) {
    for c in from {
        if !into.iter().any(|h| Arc::ptr_eq(h, c)) {
            into.push(c.clone());
        }
    }
}

impl Processor for TailSamplingProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        let claims = batch.take_claims();
        let Ok(Request::Traces(request)) = batch.into_request() else {
            tracing::warn!(processor = %self.name, "cannot decode a batch to sample it; dropped");
            return;
        };
        let now = Instant::now();
        let (mut late, mut late_claims) = (Vec::new(), Vec::new());
        let mut late_dropped = 0;
        for rs in request.resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let id = span.trace_id.clone();
                    let held = Held { resource: rs.resource.clone(), scope: ss.scope.clone(), span };
                    if self.recent_sampled.contains(&id) || self.cache_sampled.contains(&id) {
                        late.push(held);
                        merge_claims(&mut late_claims, &claims);
                        continue;
                    }
                    if self.recent_dropped.contains(&id) || self.cache_dropped.contains(&id) {
                        late_dropped += 1;
                        continue;
                    }
                    match self.pending.get_mut(&id) {
                        Some(p) => {
                            p.spans.push(held);
                            merge_claims(&mut p.claims, &claims);
                        }
                        None => {
                            self.order.push_back((now, id.clone()));
                            self.pending.insert(id, Pending { spans: vec![held], claims: claims.clone() });
                        }
                    }
                }
            }
        }
        self.dropped(late_dropped);
        Self::emit(late, late_claims, out);
        // Bounded memory: past num_traces, the oldest waiting traces go undecided.
        while self.pending.len() > self.num_traces {
            let Some((_, id)) = self.order.pop_front() else { break };
            if let Some(p) = self.pending.remove(&id) {
                tracing::debug!(processor = %self.name, "too many traces waiting; the oldest is dropped before its decision");
                self.dropped(p.spans.len());
                self.recent_dropped.insert(id);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(first, _)| *first + self.wait)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        let (mut spans, mut claims) = (Vec::new(), Vec::new());
        while let Some((first, _)) = self.order.front() {
            if *first + self.wait > now {
                break;
            }
            let Some((_, id)) = self.order.pop_front() else { break };
            if let Some(p) = self.decide(id) {
                spans.extend(p.spans);
                merge_claims(&mut claims, &p.claims);
            }
        }
        Self::emit(spans, claims, out);
    }

    /// At shutdown every waiting trace is decided now.
    fn flush(&mut self, out: &mut Vec<Batch>) {
        let (mut spans, mut claims) = (Vec::new(), Vec::new());
        while let Some((_, id)) = self.order.pop_front() {
            if let Some(p) = self.decide(id) {
                spans.extend(p.spans);
                merge_claims(&mut claims, &p.claims);
            }
        }
        Self::emit(spans, claims, out);
    }
}

/// The `tail_sampling` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<TailSamplingConfig>(
    "tail_sampling",
    &[crate::signal::Signal::Traces],
    "decides per whole trace after decision_wait, by policies",
);

impl crate::pipeline::component::ProcessorSettings for TailSamplingConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        TailSamplingConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(TailSamplingProcessor::new(ctx.name.clone(), self, ctx.telemetry.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn span(trace: u8, name: &str, ms: u64, error: bool) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![trace; 8],
            name: name.into(),
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
            status: error.then(|| Status { code: 2, message: "boom".into() }),
            ..Default::default()
        }
    }

    fn batch(spans: Vec<Span>) -> Batch {
        Batch::from_request(Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }))
    }

    fn names(out: &[Batch]) -> Vec<String> {
        let mut v: Vec<String> = out
            .iter()
            .flat_map(|b| match b.request() {
                Ok(Request::Traces(t)) => t
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| s.name.clone())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        v.sort();
        v
    }

    fn processor(j: serde_json::Value) -> TailSamplingProcessor {
        let cfg: TailSamplingConfig = serde_json::from_value(j).unwrap();
        cfg.validate().unwrap();
        TailSamplingProcessor::new("tail".into(), &cfg, Default::default()).unwrap()
    }

    #[test]
    fn errors_and_slow_traces_are_kept_after_the_wait_and_late_spans_follow() {
        let mut p = processor(serde_json::json!({
            "decision_wait": "1s",
            "policies": [
                {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            ]
        }));
        let mut out = Vec::new();
        p.process(
            batch(vec![span(1, "error", 10, true), span(2, "slow", 900, false), span(3, "fast", 10, false)]),
            &mut out,
        );
        assert!(out.is_empty(), "nothing leaves before the decision wait");
        let deadline = p.next_deadline().unwrap();
        p.on_deadline(deadline, &mut out);
        assert_eq!(names(&out), ["error", "slow"]);
        out.clear();
        p.process(batch(vec![span(1, "late-of-error", 1, false), span(3, "late-of-fast", 1, false)]), &mut out);
        assert_eq!(names(&out), ["late-of-error"], "late spans follow their trace's decision at once");
    }

    #[test]
    fn combination_rules_and_invert() {
        use policy::Decision::*;
        assert!(!combine(&[Sampled, Dropped]));
        assert!(combine(&[NotSampled, Sampled]));
        assert!(combine(&[InvertSampled, NotSampled]));
        assert!(!combine(&[InvertSampled, InvertNotSampled]));
        assert!(!combine(&[NotSampled]));
        let mut p = processor(serde_json::json!({
            "decision_wait": "1s",
            "policies": [
                {"name": "not-health", "type": "string_attribute", "string_attribute": {"key": "route", "values": ["/health"], "invert_match": true}},
                {"name": "drop-debug", "type": "drop", "drop": {"drop_sub_policy": [
                    {"name": "debug", "type": "boolean_attribute", "boolean_attribute": {"key": "debug", "value": true}}
                ]}},
            ]
        }));
        let attr = |k: &str, v: opentelemetry_proto::tonic::common::v1::any_value::Value| KeyValue {
            key: k.into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }),
            ..Default::default()
        };
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        let mut health = span(1, "health", 1, false);
        health.attributes.push(attr("route", V::StringValue("/health".into())));
        let mut debug = span(2, "debug", 1, false);
        debug.attributes.push(attr("debug", V::BoolValue(true)));
        let plain = span(3, "plain", 1, false);
        let mut out = Vec::new();
        p.process(batch(vec![health, debug, plain]), &mut out);
        p.on_deadline(p.next_deadline().unwrap(), &mut out);
        assert_eq!(names(&out), ["plain"]);
    }

    #[test]
    fn memory_is_bounded_by_num_traces() {
        let mut p = processor(serde_json::json!({
            "decision_wait": "1h", "num_traces": 100,
            "policies": [{"name": "all", "type": "always_sample"}]
        }));
        let mut out = Vec::new();
        for i in 0..250u32 {
            let mut s = span(0, &format!("t{i}"), 1, false);
            s.trace_id = [i.to_be_bytes().to_vec(), vec![9; 12]].concat();
            p.process(batch(vec![s]), &mut out);
        }
        assert_eq!(p.pending.len(), 100, "only num_traces wait");
        p.flush(&mut out);
        assert_eq!(names(&out).len(), 100, "the newest 100 are decided at shutdown");
        assert!(names(&out).contains(&"t249".to_string()));
    }

    #[test]
    fn bad_policies_name_their_place() {
        let cfg: TailSamplingConfig = serde_json::from_value(serde_json::json!({
            "policies": [{"name": "a", "type": "always_sample"}, {"name": "b", "type": "and", "and": {"and_sub_policy": [{"name": "c", "type": "latensy"}]}}]
        }))
        .unwrap();
        let (k, m) = cfg.validate().unwrap_err();
        assert_eq!(k, "policies.1.and.and_sub_policy.0.type");
        assert!(m.contains("unknown policy type \"latensy\""), "{m}");
    }
}
