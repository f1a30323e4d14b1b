//! The `groupbytrace` processor: holds spans until their trace is (likely) whole, as the
//! collector's processor does: the spans of a trace are gathered from every batch they arrive
//! in, and `wait_duration` after its first span the trace is released as one piece. At most
//! `num_traces` traces wait; beyond, the oldest is released early (the collector drops it).
//! Held spans keep the queue room and delivery notices of the batches they came in, so nothing
//! acknowledged is lost and a client is held back when what waits fills the queues.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, Processor, Request};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupByTraceConfig {
    /// How long a trace waits for more spans after its first.
    #[serde(deserialize_with = "deserialize_duration")]
    pub wait_duration: Duration,
    /// Traces waiting at most.
    pub num_traces: usize,
    /// Accepted for compatibility: each pipeline's processor runs on its own task.
    pub num_workers: usize,
    /// Accepted for compatibility (not implemented in the collector either).
    pub discard_orphans: bool,
    /// Refused when true: spans wait in memory.
    pub store_on_disk: bool,
}

impl Default for GroupByTraceConfig {
    fn default() -> Self {
        GroupByTraceConfig {
            wait_duration: Duration::from_secs(1),
            num_traces: 1_000_000,
            num_workers: 1,
            discard_orphans: false,
            store_on_disk: false,
        }
    }
}

/// One waiting trace: its spans, as parts of the batches they came in.
struct Waiting {
    parts: Vec<Batch>,
    spans: usize,
}

/// Spans from which a release is cut into another batch (at a trace's end).
const RELEASE_BATCH_SPANS: usize = 8192;

pub struct GroupByTrace {
    name: String,
    wait: Duration,
    num_traces: usize,
    waiting: HashMap<Vec<u8>, Waiting>,
    /// Waiting traces in the order of their first span.
    order: VecDeque<(Instant, Vec<u8>)>,
    released: prometheus::IntCounter,
    spans_released: prometheus::IntCounter,
    evicted: prometheus::IntCounter,
    in_memory: prometheus::IntGauge,
}

/// The spans of `request` by trace id, in the order the traces first appear, each trace with
/// the resources and scopes of its spans.
fn by_trace(request: ExportTraceServiceRequest) -> Vec<(Vec<u8>, (ExportTraceServiceRequest, usize))> {
    let mut traces: Vec<(Vec<u8>, (ExportTraceServiceRequest, usize))> = Vec::new();
    let mut at: HashMap<Vec<u8>, usize> = HashMap::new();
    for rs in request.resource_spans {
        for ss in rs.scope_spans {
            // This scope's spans per trace, in order of appearance.
            let mut spans_of: Vec<(usize, Vec<Span>)> = Vec::new();
            let mut in_scope: HashMap<usize, usize> = HashMap::new();
            for span in ss.spans {
                let t = *at.entry(span.trace_id.clone()).or_insert_with(|| {
                    traces.push((span.trace_id.clone(), Default::default()));
                    traces.len() - 1
                });
                let k = *in_scope.entry(t).or_insert_with(|| {
                    spans_of.push((t, Vec::new()));
                    spans_of.len() - 1
                });
                spans_of[k].1.push(span);
            }
            for (t, spans) in spans_of {
                let (trace, count) = &mut traces[t].1;
                *count += spans.len();
                let scope = ScopeSpans { scope: ss.scope.clone(), spans, schema_url: ss.schema_url.clone() };
                // Spans of one resource stay under one resource entry of the trace.
                match trace.resource_spans.last_mut() {
                    Some(last) if last.resource == rs.resource && last.schema_url == rs.schema_url => {
                        last.scope_spans.push(scope)
                    }
                    _ => trace.resource_spans.push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: vec![scope],
                        schema_url: rs.schema_url.clone(),
                    }),
                }
            }
        }
    }
    traces
}

impl GroupByTrace {
    /// Releases the trace `id` (if still waiting) into `traces`.
    fn release(&mut self, id: &[u8], traces: &mut Vec<Waiting>) {
        if let Some(w) = self.waiting.remove(id) {
            self.released.inc();
            self.spans_released.inc_by(w.spans as u64);
            traces.push(w);
        }
    }

    /// What was released at once goes on in batches of whole traces, one request context per
    /// batch (a tenant's header stays with its spans), of about `RELEASE_BATCH_SPANS` spans (a
    /// stop releasing everything must not make one request a backend refuses for its size).
    fn emit(&self, traces: Vec<Waiting>, out: &mut Vec<Batch>) {
        self.in_memory.set(self.waiting.len() as i64);
        type Group = (Option<Vec<(String, String)>>, Vec<Batch>, usize);
        let mut groups: Vec<Group> = Vec::new();
        for trace in traces {
            for part in trace.parts {
                let context = part.context().map(<[_]>::to_vec);
                let at = match groups.iter().position(|g| g.0 == context) {
                    Some(at) => at,
                    None => {
                        groups.push((context, Vec::new(), 0));
                        groups.len() - 1
                    }
                };
                groups[at].2 += part.items();
                groups[at].1.push(part);
            }
            for group in groups.iter_mut().filter(|g| g.2 >= RELEASE_BATCH_SPANS) {
                out.extend(Batch::merge(std::mem::take(&mut group.1)));
                group.2 = 0;
            }
        }
        for (_, parts, _) in groups {
            out.extend(Batch::merge(parts));
        }
    }
}

impl Processor for GroupByTrace {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        if batch.signal() != crate::signal::Signal::Traces {
            out.push(batch);
            return;
        }
        if let Err(e) = batch.request() {
            tracing::warn!(processor = %self.name, error = %e, "cannot decode a batch to group its spans by trace; passed on whole");
            out.push(batch);
            return;
        }
        let Ok((Request::Traces(request), kin)) = batch.into_pieces() else { return };
        let now = Instant::now();
        for (id, (trace, spans)) in by_trace(request) {
            let part = kin.part(Request::Traces(trace));
            match self.waiting.get_mut(&id) {
                Some(w) => {
                    w.parts.push(part);
                    w.spans += spans;
                }
                None => {
                    self.order.push_back((now, id.clone()));
                    self.waiting.insert(id, Waiting { parts: vec![part], spans });
                }
            }
        }
        // Bounded: past num_traces, the oldest go on before their wait is over.
        let mut early = Vec::new();
        while self.waiting.len() > self.num_traces {
            let Some((_, id)) = self.order.pop_front() else { break };
            if self.waiting.contains_key(&id) {
                self.evicted.inc();
                self.release(&id, &mut early);
            }
        }
        self.emit(early, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(first, _)| *first + self.wait)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        let mut traces = Vec::new();
        while let Some((first, _)) = self.order.front() {
            if *first + self.wait > now {
                break;
            }
            let Some((_, id)) = self.order.pop_front() else { break };
            self.release(&id, &mut traces);
        }
        self.emit(traces, out);
    }

    /// At shutdown every waiting trace goes on.
    fn flush(&mut self, out: &mut Vec<Batch>) {
        let mut traces = Vec::new();
        while let Some((_, id)) = self.order.pop_front() {
            self.release(&id, &mut traces);
        }
        self.emit(traces, out);
    }
}

/// The `groupbytrace` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<GroupByTraceConfig>(
    "groupbytrace",
    &[crate::signal::Signal::Traces],
    "holds spans until their trace is whole (wait_duration after its first span), then releases it in one piece",
);

impl crate::pipeline::component::ProcessorSettings for GroupByTraceConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        if self.wait_duration.is_zero() {
            return Err(crate::config::Invalid::new("wait_duration", "must be greater than 0, such as 1s"));
        }
        if self.num_traces == 0 {
            return Err(crate::config::Invalid::new("num_traces", "must be greater than 0, such as 1000000"));
        }
        if self.store_on_disk {
            return Err(crate::config::Invalid::new(
                "store_on_disk",
                "not supported: spans wait in memory (a persistent sending queue keeps them on disk after)",
            ));
        }
        Ok(())
    }

    fn build(&self, ctx: &crate::pipeline::component::ProcessorContext) -> Result<Box<dyn Processor>, String> {
        let t = &ctx.telemetry;
        let label = [ctx.name.as_str()];
        Ok(Box::new(GroupByTrace {
            name: ctx.name.clone(),
            wait: self.wait_duration,
            num_traces: self.num_traces,
            waiting: HashMap::new(),
            order: VecDeque::new(),
            released: t.groupbytrace_traces_released.with_label_values(&label),
            spans_released: t.groupbytrace_spans_released.with_label_values(&label),
            evicted: t.groupbytrace_traces_evicted.with_label_values(&label),
            in_memory: t.groupbytrace_traces_in_memory.with_label_values(&label),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::component::{ProcessorContext, ProcessorSettings};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn processor(yaml: &str) -> Box<dyn Processor> {
        let cfg: GroupByTraceConfig = crate::config::parse_yaml("g.yaml", yaml).unwrap();
        cfg.validate().unwrap();
        let ctx = ProcessorContext { name: "g".into(), telemetry: Default::default(), stop: Default::default() };
        cfg.build(&ctx).unwrap()
    }

    /// Spans (trace, name) of service `service`.
    fn batch(service: &str, spans: &[(u8, &str)]) -> Batch {
        Batch::from_request(Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![crate::attributes::kv("service.name", crate::attributes::string(service))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: spans
                        .iter()
                        .map(|(t, n)| Span { trace_id: vec![*t; 16], name: n.to_string(), ..Default::default() })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }))
    }

    /// Per batch: the traces it holds, each as "service:name" of its spans, sorted.
    fn traces(out: &[Batch]) -> Vec<Vec<(u8, Vec<String>)>> {
        out.iter()
            .map(|b| {
                let Some(Request::Traces(r)) = b.decoded() else { panic!("traces") };
                let mut by: HashMap<u8, Vec<String>> = HashMap::new();
                for rs in &r.resource_spans {
                    let service = crate::exporters::values::text(
                        rs.resource.as_ref().map(|r| &r.attributes[0]).and_then(|a| a.value.as_ref()),
                    );
                    for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                        by.entry(s.trace_id[0]).or_default().push(format!("{service}:{}", s.name));
                    }
                }
                let mut v: Vec<_> = by
                    .into_iter()
                    .map(|(t, mut n)| {
                        n.sort();
                        (t, n)
                    })
                    .collect();
                v.sort();
                v
            })
            .collect()
    }

    #[test]
    fn spans_of_a_trace_from_many_batches_go_on_together_after_the_wait() {
        let mut g = processor("wait_duration: 1h\n");
        let mut out = Vec::new();
        g.process(batch("web", &[(1, "a"), (2, "b")]), &mut out);
        g.process(batch("api", &[(1, "c"), (3, "d")]), &mut out);
        g.process(batch("db", &[(1, "e")]), &mut out);
        assert!(out.is_empty(), "nothing before the wait is over");
        let first = g.next_deadline().unwrap();
        g.on_deadline(first, &mut out);
        // All three traces started in the same instant or nearly: those due are out, whole.
        let got = traces(&out);
        assert!(got[0].iter().any(|(t, spans)| *t == 1 && spans == &["api:c", "db:e", "web:a"]), "{got:?}");
        let mut rest = Vec::new();
        g.flush(&mut rest);
        let all: Vec<u8> = traces(&out).into_iter().chain(traces(&rest)).flatten().map(|(t, _)| t).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, [1, 2, 3], "every trace once");
    }

    #[test]
    fn late_spans_start_a_new_group_and_the_oldest_go_early_past_num_traces() {
        let mut g = processor("wait_duration: 1h\nnum_traces: 2\n");
        let mut out = Vec::new();
        g.process(batch("web", &[(1, "a"), (2, "b")]), &mut out);
        assert!(out.is_empty());
        g.process(batch("web", &[(3, "c"), (1, "a2")]), &mut out);
        // Three traces waiting, two allowed: trace 1 (the oldest) goes on, whole, at once.
        assert_eq!(traces(&out), vec![vec![(1, vec!["web:a".to_string(), "web:a2".to_string()])]]);
        out.clear();
        g.process(batch("web", &[(1, "late")]), &mut out);
        assert_eq!(
            traces(&out),
            vec![vec![(2, vec!["web:b".to_string()])]],
            "trace 1 waits again; 2 is now the oldest"
        );
    }

    #[test]
    fn held_spans_keep_their_batch_acknowledgement_pending() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let delivered = std::sync::Arc::new(AtomicUsize::new(0));
        let d = delivered.clone();
        let b = batch("web", &[(1, "a"), (2, "b")]).on_delivered(crate::pipeline::Delivery::new(
            Default::default(),
            move || {
                d.fetch_add(1, Ordering::SeqCst);
            },
        ));
        let mut g = processor("wait_duration: 1h\n");
        let mut out = Vec::new();
        g.process(b, &mut out);
        assert_eq!(delivered.load(Ordering::SeqCst), 0, "held");
        g.flush(&mut out);
        assert_eq!(delivered.load(Ordering::SeqCst), 0, "released, not yet exported");
        drop(out);
        assert_eq!(delivered.load(Ordering::SeqCst), 1, "done once every part is");
    }

    #[test]
    fn settings_are_checked() {
        let err = |yaml: &str| {
            let cfg: GroupByTraceConfig = crate::config::parse_yaml("g.yaml", yaml).unwrap();
            cfg.validate().unwrap_err().to_string()
        };
        assert!(err("wait_duration: 0s\n").contains("wait_duration"));
        assert!(err("num_traces: 0\n").contains("num_traces"));
        assert!(err("store_on_disk: true\n").contains("not supported"));
    }

    #[test]
    fn a_large_release_goes_in_batches_of_whole_traces_one_context_each() {
        let mut g = processor("wait_duration: 1h\n");
        let mut out = Vec::new();
        // 3 traces of 5,000 spans each, then a small trace from another tenant.
        for t in 1..=3u8 {
            let spans: Vec<(u8, &str)> = (0..5000).map(|_| (t, "s")).collect();
            g.process(batch("web", &spans), &mut out);
        }
        let tenant = vec![("x-tenant".to_string(), "b".to_string())];
        g.process(batch("web", &[(9, "other")]).with_context(std::sync::Arc::new(tenant.clone())), &mut out);
        g.flush(&mut out);
        let sizes: Vec<(usize, bool)> = out.iter().map(|b| (b.items(), b.context() == Some(&tenant[..]))).collect();
        assert_eq!(sizes, [(10_000, false), (5_000, false), (1, true)], "cut at trace ends past 8,192 spans");
    }

    #[test]
    fn an_undecodable_batch_goes_on_whole() {
        let mut g = processor("");
        let mut out = Vec::new();
        g.process(
            Batch::from_encoded(crate::signal::Signal::Traces, bytes::Bytes::from_static(b"\xff\xff"), 1),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }
}
