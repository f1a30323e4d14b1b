//! Tap points: where `switchyard tap` looks at the items passing a component. Every receiver
//! (what it admitted), processor (what it let out) and exporter (what entered its queue) has a
//! point, found by kind and id in the service's `Taps`. With nobody tapping, a point costs one
//! atomic load per batch. A subscriber takes at most its `limit` items per second from each
//! component it watches (so that a busy one does not hide the others); a sampled
//! batch goes to it as a copy that shares the data but holds no queue room and no delivery
//! notice, so tapping never delays an acknowledgement nor counts against a budget. What does
//! not fit (over the limit, or while the subscriber is behind) is skipped and counted.

use super::batch::Batch;
use super::runner::Processor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// The kind of component a tap point belongs to (receiver `otlp` and exporter `otlp` are two
/// components).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Receiver, Kind::Processor, Kind::Exporter];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A sampled batch, as one subscriber gets it.
pub struct Sample {
    pub component: Arc<str>,
    pub kind: Kind,
    /// The pipeline it passed in (processors are built once per pipeline); none for receivers
    /// and exporters, which serve every pipeline that lists them.
    pub pipeline: Option<Arc<str>>,
    /// The batch's data (see `Batch::detached`).
    pub batch: Batch,
    /// How many of its items the subscriber may show (within its limit).
    pub take: usize,
}

/// Items per second, refilled continuously, at most one second's worth in store.
struct Bucket {
    limit: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, wanted: usize) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.limit).min(self.limit);
        self.at = now;
        let take = (wanted as f64).min(self.tokens.floor()).max(0.0);
        self.tokens -= take;
        take as usize
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
}

impl Subscriber {
    fn watches(&self, kind: Kind, component: &str) -> bool {
        self.component == component && self.kind.is_none_or(|k| k == kind)
    }
}

/// Where one component's items can be looked at.
pub struct TapPoint {
    component: Arc<str>,
    kind: Kind,
    active: AtomicUsize,
    /// Who watches, each with its budget at this point.
    subscribers: RwLock<Vec<(Arc<Subscriber>, Mutex<Bucket>)>>,
}

impl TapPoint {
    /// A point nobody can subscribe to (for components built outside a service).
    pub fn detached(kind: Kind, component: &str) -> Arc<TapPoint> {
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
        if !self.is_active() || batch.items() == 0 {
            return;
        }
        let subscribers = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        for (s, bucket) in subscribers.iter() {
            let items = batch.items();
            let take = bucket.lock().unwrap_or_else(|p| p.into_inner()).take(items);
            let mut skipped = items - take;
            if take > 0 {
                let sample = Sample {
                    component: self.component.clone(),
                    kind: self.kind,
                    pipeline: pipeline.cloned(),
                    batch: batch.detached(),
                    take,
                };
                if s.tx.try_send(sample).is_err() {
                    skipped = items;
                }
            }
            if skipped > 0 {
                s.skipped.fetch_add(skipped as u64, Ordering::Relaxed);
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
        let point = TapPoint::detached(kind, id);
        for s in registry.subscribers.iter().filter(|s| s.watches(kind, id)) {
            point.attach(s);
        }
        registry.points.insert((kind, id.to_string()), point.clone());
        point
    }

    /// Starts watching `component` (of `kind`, or of every kind with that id), at most `limit`
    /// items per second from each; samples wait in a channel of `backlog` batches. Watching stops when the
    /// subscription is dropped.
    pub fn subscribe(&self, component: &str, kind: Option<Kind>, limit: u32, backlog: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(backlog.max(1));
        let limit = f64::from(limit.max(1));
        let mut registry = self.registry();
        registry.next_id += 1;
        let subscriber = Arc::new(Subscriber {
            id: registry.next_id,
            component: component.to_string(),
            kind,
            tx,
            limit,
            skipped: AtomicU64::new(0),
        });
        for ((k, id), point) in &registry.points {
            if subscriber.watches(*k, id) {
                point.attach(&subscriber);
            }
        }
        registry.subscribers.push(subscriber.clone());
        Subscription { taps: self.clone(), subscriber, rx }
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
    /// The next sample (never `None` while the service runs).
    pub async fn next(&mut self) -> Option<Sample> {
        self.rx.recv().await
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

    #[tokio::test]
    async fn a_subscriber_sees_what_passes_its_component_within_its_limit() {
        let taps = Taps::default();
        let receiver = taps.point(Kind::Receiver, "otlp");
        let exporter = taps.point(Kind::Exporter, "otlp");
        assert!(!receiver.is_active());
        receiver.observe(None, &spans(3));
        let mut sub = taps.subscribe("otlp", Some(Kind::Exporter), 5, 8);
        assert!(exporter.is_active() && !receiver.is_active());
        receiver.observe(None, &spans(3));
        exporter.observe(None, &spans(3));
        exporter.observe(None, &spans(3));
        let first = sub.next().await.unwrap();
        assert_eq!((first.kind, first.take, &*first.component), (Kind::Exporter, 3, "otlp"));
        // Five a second: two of the second batch's three, one skipped.
        assert_eq!(sub.next().await.unwrap().take, 2);
        assert_eq!(sub.take_skipped(), 1);
        // A point made later (a component added at a reload) is watched too.
        let later = taps.point(Kind::Receiver, "zipkin");
        assert!(!later.is_active());
        let all = taps.subscribe("zipkin", None, 100, 8);
        assert!(later.is_active());
        drop(all);
        assert!(!later.is_active());
        drop(sub);
        assert!(!exporter.is_active());
    }

    #[tokio::test]
    async fn a_subscriber_behind_skips_and_the_copy_holds_no_delivery() {
        let taps = Taps::default();
        let point = taps.point(Kind::Processor, "batch");
        let sub = taps.subscribe("batch", None, 1000, 1);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let batch = spans(4).on_delivered(crate::pipeline::Delivery::new(Default::default(), move || {
            let _ = tx.send(());
        }));
        point.observe(None, &batch);
        point.observe(None, &batch);
        assert_eq!(sub.take_skipped(), 4, "the second batch found the channel full");
        drop(batch);
        // The tapped copy is still in the channel, and the data counts as delivered anyway.
        assert!(rx.try_recv().is_ok());
    }
}
