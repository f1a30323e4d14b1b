//! Tap points: where `switchyard tap` looks at the items passing a component. Every receiver
//! (what it admitted), processor (what it let out) and exporter (what entered its queue) has a
//! point, found by kind and id in the service's `Taps`. With nobody tapping, a point costs one
//! atomic load per batch. A subscriber takes at most its `limit` items per second from each
//! component it watches (so that a busy one does not hide the others). What it takes never
//! shares the pipeline's copy of the data: the picked items of a decoded batch are copied out
//! (at most `limit` a second), an encoded one lends its received bytes, which nothing changes.
//! So tapping holds no queue room, delays no acknowledgement and makes no processor copy a
//! batch. What does not fit (over the limit, or while the subscriber is behind by more than
//! `MAX_PENDING` bytes) is skipped and counted; at most `MAX_TAPS` subscribers run at once.

use super::batch::{Batch, Request, metric_points, retain_points};
use super::runner::Processor;
use crate::signal::Signal;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// Taps running at once, at most.
pub const MAX_TAPS: usize = 8;
/// Bytes of samples one subscriber may have waiting; beyond, batches are skipped.
pub const MAX_PENDING: usize = 16 << 20;

/// The kind of component a tap point belongs to (receiver `otlp` and exporter `otlp` are two
/// components).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Connector,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Receiver, Kind::Processor, Kind::Exporter, Kind::Connector];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Connector => "connector",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The items of a sample.
pub enum SampleData {
    /// The batch as received: `take` of its items are to be picked once decoded (off the
    /// pipeline's task).
    Encoded { signal: Signal, bytes: Bytes, take: usize },
    /// The picked items alone.
    Picked(Request),
}

/// A sampled batch, as one subscriber gets it.
pub struct Sample {
    pub component: Arc<str>,
    pub kind: Kind,
    /// The pipeline it passed in (processors are built once per pipeline); none for receivers
    /// and exporters, which serve every pipeline that lists them.
    pub pipeline: Option<Arc<str>>,
    pub data: SampleData,
    /// Bytes it holds (counted against `MAX_PENDING` until taken).
    size: usize,
}

impl Sample {
    /// The picked items (decoding the received bytes if need be).
    pub fn items(&self) -> Result<Request, super::batch::DecodeError> {
        match &self.data {
            SampleData::Picked(r) => Ok(r.clone()),
            SampleData::Encoded { signal, bytes, take } => Ok(pick(&Request::decode(*signal, bytes)?, *take)),
        }
    }
}

/// The indices of `take` items spread evenly over `items`.
pub fn picks(items: usize, take: usize) -> Vec<usize> {
    let take = take.min(items);
    (0..take).map(|k| k * items / take).collect()
}

/// A request with only `take` of `request`'s items, spread evenly, each under its resource and
/// scope (a metric keeps only its picked data points).
pub fn pick(request: &Request, take: usize) -> Request {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    };
    use opentelemetry_proto::tonic::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    let mut wanted = picks(request.item_count(), take).into_iter().peekable();
    let mut n = 0usize;
    let mut due = move || {
        let d = wanted.next_if_eq(&n).is_some();
        n += 1;
        d
    };
    match request {
        Request::Traces(r) => Request::Traces(ExportTraceServiceRequest {
            resource_spans: r
                .resource_spans
                .iter()
                .filter_map(|rs| {
                    let scope_spans: Vec<t::ScopeSpans> = rs
                        .scope_spans
                        .iter()
                        .filter_map(|ss| {
                            let spans: Vec<t::Span> = ss.spans.iter().filter(|_| due()).cloned().collect();
                            let scope = ss.scope.clone();
                            (!spans.is_empty()).then(|| t::ScopeSpans {
                                scope,
                                spans,
                                schema_url: ss.schema_url.clone(),
                            })
                        })
                        .collect();
                    let resource = rs.resource.clone();
                    (!scope_spans.is_empty()).then(|| t::ResourceSpans {
                        resource,
                        scope_spans,
                        schema_url: rs.schema_url.clone(),
                    })
                })
                .collect(),
        }),
        Request::Logs(r) => Request::Logs(ExportLogsServiceRequest {
            resource_logs: r
                .resource_logs
                .iter()
                .filter_map(|rl| {
                    let scope_logs: Vec<l::ScopeLogs> = rl
                        .scope_logs
                        .iter()
                        .filter_map(|sl| {
                            let log_records: Vec<l::LogRecord> =
                                sl.log_records.iter().filter(|_| due()).cloned().collect();
                            let scope = sl.scope.clone();
                            (!log_records.is_empty()).then(|| l::ScopeLogs {
                                scope,
                                log_records,
                                schema_url: sl.schema_url.clone(),
                            })
                        })
                        .collect();
                    let resource = rl.resource.clone();
                    (!scope_logs.is_empty()).then(|| l::ResourceLogs {
                        resource,
                        scope_logs,
                        schema_url: rl.schema_url.clone(),
                    })
                })
                .collect(),
        }),
        Request::Metrics(r) => Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: r
                .resource_metrics
                .iter()
                .filter_map(|rm| {
                    let scope_metrics: Vec<m::ScopeMetrics> = rm
                        .scope_metrics
                        .iter()
                        .filter_map(|sm| {
                            let metrics: Vec<m::Metric> = sm
                                .metrics
                                .iter()
                                .filter_map(|metric| {
                                    let keep: Vec<bool> =
                                        (0..metric_points(metric.data.as_ref())).map(|_| due()).collect();
                                    keep.contains(&true).then(|| {
                                        let mut copy = metric.clone();
                                        retain_points(&mut copy, |i| keep[i]);
                                        copy
                                    })
                                })
                                .collect();
                            let scope = sm.scope.clone();
                            (!metrics.is_empty()).then(|| m::ScopeMetrics {
                                scope,
                                metrics,
                                schema_url: sm.schema_url.clone(),
                            })
                        })
                        .collect();
                    let resource = rm.resource.clone();
                    (!scope_metrics.is_empty()).then(|| m::ResourceMetrics {
                        resource,
                        scope_metrics,
                        schema_url: rm.schema_url.clone(),
                    })
                })
                .collect(),
        }),
    }
}

/// Items per second, refilled continuously, at most one second's worth in store.
struct Bucket {
    limit: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// How many of a batch's `items` to show: all of them, or a full second's worth of a
    /// bigger batch, once that much has built up; none before. Taking a few items of every
    /// batch instead would decode every batch that arrives encoded, the whole flow.
    fn take(&mut self, items: usize) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.limit).min(self.limit);
        self.at = now;
        let whole = (items as f64).min(self.limit);
        if self.tokens < whole {
            return 0;
        }
        self.tokens -= whole;
        whole as usize
    }
}

/// One `switchyard tap`: which components it watches and where their samples go.
struct Subscriber {
    id: u64,
    component: String,
    kind: Option<Kind>,
    tx: mpsc::Sender<Sample>,
    limit: f64,
    /// Items that passed but were not sent (over the limit, or the subscriber was behind).
    skipped: AtomicU64,
    /// Bytes of samples sent and not yet taken.
    pending: AtomicUsize,
}

impl Subscriber {
    fn watches(&self, kind: Kind, component: &str) -> bool {
        self.component == component && self.kind.is_none_or(|k| k == kind)
    }

    fn skip(&self, items: usize) {
        if items > 0 {
            self.skipped.fetch_add(items as u64, Ordering::Relaxed);
        }
    }
}

/// Samples taken from a batch, to be handed to their subscribers (see `TapPoint::prepare`).
#[derive(Default)]
pub struct Prepared(Vec<(Arc<Subscriber>, Sample)>);

/// Where one component's items can be looked at.
pub struct TapPoint {
    component: Arc<str>,
    kind: Kind,
    active: AtomicUsize,
    /// Who watches, each with its budget at this point.
    subscribers: RwLock<Vec<(Arc<Subscriber>, Mutex<Bucket>)>>,
}

impl TapPoint {
    /// A point with nobody watching yet; `Taps::point` registers one per component (one made
    /// here alone is for components built outside a service).
    pub fn new(kind: Kind, component: &str) -> Arc<TapPoint> {
        Arc::new(TapPoint {
            component: Arc::from(component),
            kind,
            active: AtomicUsize::new(0),
            subscribers: RwLock::new(Vec::new()),
        })
    }

    /// Whether anybody is looking (one atomic load).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// `batch` passed this component (in `pipeline`, for a processor).
    pub fn observe(&self, pipeline: Option<&Arc<str>>, batch: &Batch) {
        if self.is_active() {
            self.deliver(self.prepare(pipeline, batch));
        }
    }

    /// Takes the samples each subscriber may have of `batch` now (none while nobody looks),
    /// for `deliver` once the batch has gone where it goes (a receiver's: once admitted).
    pub fn prepare(&self, pipeline: Option<&Arc<str>>, batch: &Batch) -> Prepared {
        if !self.is_active() || batch.items() == 0 {
            return Prepared::default();
        }
        let items = batch.items();
        let subscribers = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        let mut prepared = Vec::new();
        for (s, bucket) in subscribers.iter() {
            let size = match (batch.decoded(), batch.encoded()) {
                (None, Some(bytes)) => bytes.len(),
                _ => 0,
            };
            if s.pending.load(Ordering::Relaxed) + size > MAX_PENDING {
                s.skip(items);
                continue;
            }
            let take = bucket.lock().unwrap_or_else(|p| p.into_inner()).take(items);
            s.skip(items - take);
            if take == 0 {
                continue;
            }
            let data = match (batch.decoded(), batch.encoded()) {
                (Some(request), _) => SampleData::Picked(pick(request, take)),
                (None, Some(bytes)) => SampleData::Encoded { signal: batch.signal(), bytes: bytes.clone(), take },
                (None, None) => continue,
            };
            let size = match &data {
                SampleData::Picked(r) => r.encoded_len(),
                SampleData::Encoded { bytes, .. } => bytes.len(),
            };
            let sample =
                Sample { component: self.component.clone(), kind: self.kind, pipeline: pipeline.cloned(), data, size };
            prepared.push((s.clone(), sample));
        }
        Prepared(prepared)
    }

    /// Hands prepared samples to their subscribers; one that is behind skips its sample.
    pub fn deliver(&self, prepared: Prepared) {
        for (s, sample) in prepared.0 {
            let (size, items) = (sample.size, sample.item_hint());
            s.pending.fetch_add(size, Ordering::Relaxed);
            if s.tx.try_send(sample).is_err() {
                s.pending.fetch_sub(size, Ordering::Relaxed);
                s.skip(items);
            }
        }
    }

    fn attach(&self, s: &Arc<Subscriber>) {
        let mut subscribers = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
        let bucket = Bucket { limit: s.limit, tokens: s.limit, at: Instant::now() };
        subscribers.push((s.clone(), Mutex::new(bucket)));
        self.active.store(subscribers.len(), Ordering::Relaxed);
    }

    fn detach(&self, id: u64) {
        let mut subscribers = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|(s, _)| s.id != id);
        self.active.store(subscribers.len(), Ordering::Relaxed);
    }
}

impl Sample {
    /// Items it shows.
    fn item_hint(&self) -> usize {
        match &self.data {
            SampleData::Picked(r) => r.item_count(),
            SampleData::Encoded { take, .. } => *take,
        }
    }
}

#[derive(Default)]
struct Registry {
    points: HashMap<(Kind, String), Arc<TapPoint>>,
    subscribers: Vec<Arc<Subscriber>>,
    next_id: u64,
}

/// Every tap point of a service, kept across reloads: a component rebuilt with the same id gets
/// the same point, so a tap keeps running through a reload.
#[derive(Clone, Default)]
pub struct Taps {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Taps")
    }
}

impl Taps {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The point of component `id` of `kind` (made on first use, with the taps already
    /// watching it attached).
    pub fn point(&self, kind: Kind, id: &str) -> Arc<TapPoint> {
        let mut registry = self.registry();
        if let Some(p) = registry.points.get(&(kind, id.to_string())) {
            return p.clone();
        }
        let point = TapPoint::new(kind, id);
        for s in registry.subscribers.iter().filter(|s| s.watches(kind, id)) {
            point.attach(s);
        }
        registry.points.insert((kind, id.to_string()), point.clone());
        point
    }

    /// Starts watching `component` (of `kind`, or of every kind with that id), at most `limit`
    /// items per second from each; samples wait in a channel of `backlog` batches. Watching
    /// stops when the subscription is dropped. Refused when `MAX_TAPS` run already.
    pub fn subscribe(
        &self,
        component: &str,
        kind: Option<Kind>,
        limit: u32,
        backlog: usize,
    ) -> Result<Subscription, String> {
        let (tx, rx) = mpsc::channel(backlog.max(1));
        let limit = f64::from(limit.max(1));
        let mut registry = self.registry();
        if registry.subscribers.len() >= MAX_TAPS {
            return Err(format!("{MAX_TAPS} taps are running already; stop one first"));
        }
        registry.next_id += 1;
        let subscriber = Arc::new(Subscriber {
            id: registry.next_id,
            component: component.to_string(),
            kind,
            tx,
            limit,
            skipped: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
        });
        for ((k, id), point) in &registry.points {
            if subscriber.watches(*k, id) {
                point.attach(&subscriber);
            }
        }
        registry.subscribers.push(subscriber.clone());
        Ok(Subscription { taps: self.clone(), subscriber, rx })
    }

    fn unsubscribe(&self, id: u64) {
        let mut registry = self.registry();
        registry.subscribers.retain(|s| s.id != id);
        for point in registry.points.values() {
            point.detach(id);
        }
    }
}

/// A running tap: its samples, and what it skipped.
pub struct Subscription {
    taps: Taps,
    subscriber: Arc<Subscriber>,
    rx: mpsc::Receiver<Sample>,
}

impl Subscription {
    /// The next sample. (The subscription holds its own sender: this waits for as long as
    /// nothing passes.)
    pub async fn next(&mut self) -> Sample {
        match self.rx.recv().await {
            Some(sample) => {
                self.subscriber.pending.fetch_sub(sample.size, Ordering::Relaxed);
                sample
            }
            None => std::future::pending().await,
        }
    }

    /// Items skipped since the last call.
    pub fn take_skipped(&self) -> u64 {
        self.subscriber.skipped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.taps.unsubscribe(self.subscriber.id);
    }
}

/// A processor with its tap point on what it lets out.
pub struct Tapped {
    inner: Box<dyn Processor>,
    point: Arc<TapPoint>,
    pipeline: Arc<str>,
}

impl Tapped {
    pub fn wrap(inner: Box<dyn Processor>, point: Arc<TapPoint>, pipeline: &str) -> Box<dyn Processor> {
        Box::new(Tapped { inner, point, pipeline: Arc::from(pipeline) })
    }

    fn observe(&self, out: &[Batch]) {
        if self.point.is_active() {
            out.iter().for_each(|b| self.point.observe(Some(&self.pipeline), b));
        }
    }
}

impl Processor for Tapped {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let from = out.len();
        self.inner.process(batch, out);
        self.observe(&out[from..]);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.inner.next_deadline()
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        let from = out.len();
        self.inner.on_deadline(now, out);
        self.observe(&out[from..]);
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        let from = out.len();
        self.inner.flush(out);
        self.observe(&out[from..]);
    }

    fn release_batches(&mut self, out: &mut Vec<Batch>) {
        let from = out.len();
        self.inner.release_batches(out);
        self.observe(&out[from..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Request;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn spans(n: usize) -> Batch {
        let spans = (0..n).map(|i| Span { name: format!("s{i}"), ..Default::default() }).collect();
        Batch::from_request(Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }))
    }

    #[test]
    fn picks_spread_over_the_batch() {
        assert_eq!(picks(10, 3), [0, 3, 6]);
        assert_eq!(picks(2, 5), [0, 1]);
        assert!(picks(5, 0).is_empty());
    }

    fn names(sample: &Sample) -> Vec<String> {
        match sample.items().unwrap() {
            Request::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| s.name.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_subscriber_sees_what_passes_its_component_within_its_limit() {
        let taps = Taps::default();
        let receiver = taps.point(Kind::Receiver, "otlp");
        let exporter = taps.point(Kind::Exporter, "otlp");
        assert!(!receiver.is_active());
        receiver.observe(None, &spans(3));
        let mut sub = taps.subscribe("otlp", Some(Kind::Exporter), 5, 8).unwrap();
        assert!(exporter.is_active() && !receiver.is_active());
        receiver.observe(None, &spans(3));
        exporter.observe(None, &spans(3));
        exporter.observe(None, &spans(3));
        let first = sub.next().await;
        assert_eq!((first.kind, &*first.component), (Kind::Exporter, "otlp"));
        assert_eq!(names(&first), ["s0", "s1", "s2"]);
        // Five a second: the second batch of three waits for the bucket to refill; the next
        // batch of eight, once it has, shows five of its items spread over it.
        assert_eq!(sub.take_skipped(), 3);
        exporter.observe(None, &spans(8));
        assert_eq!(sub.take_skipped(), 8);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        exporter.observe(None, &spans(8));
        assert_eq!(names(&sub.next().await), ["s0", "s1", "s3", "s4", "s6"]);
        assert_eq!(sub.take_skipped(), 3);
        // A point made later (a component added at a reload) is watched too.
        let later = taps.point(Kind::Receiver, "zipkin");
        assert!(!later.is_active());
        let all = taps.subscribe("zipkin", None, 100, 8).unwrap();
        assert!(later.is_active());
        drop(all);
        assert!(!later.is_active());
        drop(sub);
        assert!(!exporter.is_active());
    }

    #[tokio::test]
    async fn a_sample_shares_nothing_with_the_pipeline_and_holds_no_delivery() {
        let taps = Taps::default();
        let point = taps.point(Kind::Processor, "batch");
        let mut sub = taps.subscribe("batch", None, 2, 1).unwrap();
        // (A bucket of two: a second's worth of a batch of four.)
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let mut batch = spans(4).on_delivered(crate::pipeline::Delivery::new(Default::default(), move || {
            let _ = tx.send(());
        }));
        point.observe(None, &batch);
        point.observe(None, &spans(1));
        assert_eq!(sub.take_skipped(), 3, "two of the first taken, the second batch found the tap behind");
        // A processor changing the batch changes it alone: the sample keeps what it saw.
        if let Ok(Request::Traces(r)) = batch.request_mut() {
            r.resource_spans[0].scope_spans[0].spans[0].name = "changed".into();
        }
        drop(batch);
        assert!(rx.try_recv().is_ok(), "the data counts as delivered while the sample waits");
        assert_eq!(names(&sub.next().await), ["s0", "s2"]);
    }

    #[test]
    fn taps_are_limited_in_number() {
        let taps = Taps::default();
        let running: Vec<Subscription> = (0..MAX_TAPS).map(|_| taps.subscribe("otlp", None, 1, 1).unwrap()).collect();
        assert!(taps.subscribe("otlp", None, 1, 1).err().is_some_and(|e| e.contains("running already")));
        drop(running);
        assert!(taps.subscribe("otlp", None, 1, 1).is_ok());
    }

    #[tokio::test]
    async fn a_metric_sample_keeps_the_picked_points_only() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point::Value as V,
        };
        let point = |v| NumberDataPoint { value: Some(V::AsInt(v)), ..Default::default() };
        let gauge = |name: &str, n: i64| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge { data_points: (0..n).map(point).collect() })),
            ..Default::default()
        };
        let request = Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![gauge("a", 3), gauge("b", 3)], ..Default::default() }],
                ..Default::default()
            }],
        });
        let Request::Metrics(picked) = pick(&request, 2) else { unreachable!() };
        let kept: Vec<(String, Vec<Option<V>>)> = picked.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| match &m.data {
                Some(Data::Gauge(g)) => (m.name.clone(), g.data_points.iter().map(|p| p.value).collect()),
                _ => (m.name.clone(), Vec::new()),
            })
            .collect();
        assert_eq!(kept, [("a".to_string(), vec![Some(V::AsInt(0))]), ("b".to_string(), vec![Some(V::AsInt(0))])]);
    }
}
