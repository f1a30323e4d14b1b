//! The intake: where a receiver hands a batch to every pipeline that lists it. It first claims
//! room in the sending queue of every exporter the data will reach (see `admission`); only when
//! all of it is there does the data go in, and the receiver may answer success. It counts
//! accepted and refused items per receiver and transport.

use super::admission::{BLOCK_LIMIT, Capacity, Claim};
use super::batch::Batch;
use super::delivery::{Abandoned, Delivery};
use crate::signal::Signal;
use crate::telemetry::metrics::Metrics;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// Why data was not taken: the answer a receiver turns into its protocol's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The client may send the same data again later (gRPC UNAVAILABLE, HTTP 503).
    pub retryable: bool,
    pub message: String,
}

impl Refusal {
    pub fn retryable(message: impl Into<String>) -> Refusal {
        Refusal { retryable: true, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> Refusal {
        Refusal { retryable: false, message: message.into() }
    }
}

/// Why a request was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeRefusal {
    /// Decoding it would take more than one request may: never retried.
    TooLarge { bytes: usize, bound: usize },
    /// The memory budget is full right now: the client should retry.
    Busy(Refusal),
}

impl DecodeRefusal {
    /// The message for the client and the log.
    pub fn message(&self) -> String {
        match self {
            DecodeRefusal::TooLarge { bytes, bound } => format!(
                "request too large: decoding it would take about {} MiB, more than the {} MiB one request may use",
                bytes.div_ceil(1 << 20),
                bound / (1 << 20)
            ),
            DecodeRefusal::Busy(r) => r.message.clone(),
        }
    }
}

/// What one request may take of a memory budget of `limit` bytes: half, but at least 64 MiB
/// (so that a small budget still takes a full-size request of realistic data: a 20 MiB OTLP
/// body decodes to about 100 MiB), and never more than the budget.
pub fn per_request_bound(limit: usize) -> usize {
    (limit / 2).max(64 << 20).min(limit)
}

/// The longest a client waits for its data to be written to a persistent queue before it is
/// told to retry (a disk that stalls for this long is in trouble).
pub const PERSIST_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One pipeline as seen from a receiver: its input, and the queues of its exporters.
#[derive(Clone)]
pub struct Route {
    pub input: mpsc::UnboundedSender<Batch>,
    pub queues: Vec<Arc<Capacity>>,
}

/// A receiver's routes, per signal.
pub type Routes = [Vec<Route>; 3];

/// One receiver's routes into pipelines, per signal, and what its service hands it: the
/// self-telemetry its counts go to, and the state its delivery notices depend on. A reload
/// swaps the routes at once; a request already submitting keeps the routes it started with.
pub struct Intake {
    receiver: String,
    routes: RwLock<Arc<Routes>>,
    telemetry: Arc<Metrics>,
    abandoned: Abandoned,
    /// What `switchyard tap` sees of this receiver: what it admitted.
    tap: Arc<super::tap::TapPoint>,
}

impl Intake {
    pub fn new(receiver: String, routes: Routes, telemetry: Arc<Metrics>, abandoned: Abandoned) -> Intake {
        let tap = telemetry.taps.point(super::tap::Kind::Receiver, &receiver);
        Intake { receiver, routes: RwLock::new(Arc::new(routes)), telemetry, abandoned, tap }
    }

    /// An intake of its own, for tests and benchmarks: fresh metrics.
    pub fn standalone(receiver: String, routes: Routes) -> Intake {
        Intake::new(receiver, routes, Arc::new(Metrics::new()), Abandoned::default())
    }

    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The self-telemetry of this receiver's service.
    pub fn telemetry(&self) -> &Arc<Metrics> {
        &self.telemetry
    }

    /// A delivery notice for data this receiver submits (see `Delivery`).
    pub fn delivery(&self, notice: impl FnOnce() + Send + 'static) -> Delivery {
        Delivery::new(self.abandoned.clone(), notice)
    }

    /// The routes as they are now.
    fn routes(&self) -> Arc<Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The routes as they are now, leaving none (for handing them to another intake).
    pub fn take_routes(&self) -> Routes {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        Arc::try_unwrap(std::mem::take(&mut *routes)).unwrap_or_else(|shared| (*shared).clone())
    }

    /// From now on, data goes this way (a reload re-wired the pipelines).
    pub fn set_routes(&self, routes: Routes) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }

    /// Counts items the receiver dropped as invalid before submitting the rest.
    pub fn rejected(&self, transport: &str, signal: Signal, items: usize) {
        if items > 0 {
            self.telemetry.receiver_refused[signal.index()]
                .with_label_values(&[self.receiver.as_str(), transport])
                .inc_by(items as u64);
        }
    }

    /// Counts a request answered with a client error.
    pub fn invalid_request(&self, transport: &str, code: &str) {
        self.telemetry.receiver_invalid_requests.with_label_values(&[self.receiver.as_str(), transport, code]).inc();
    }

    /// Before a request is read: room for `bytes` more in every memory budget this receiver's
    /// data meets, held until the data is admitted (or refused). Refused when a budget is full
    /// or the process is over its limit, so that large bodies are not read only to be dropped.
    pub fn reserve_memory(&self, bytes: usize) -> Result<Vec<Claim>, Refusal> {
        let mut claims = Vec::new();
        let mut seen: Vec<&Arc<Capacity>> = Vec::new();
        let routes = self.routes();
        for q in routes.iter().flatten().flat_map(|r| &r.queues).filter(|q| q.is_memory()) {
            if seen.iter().any(|s| Arc::ptr_eq(s, q)) {
                continue;
            }
            seen.push(q);
            match q.try_claim(bytes.max(1)) {
                Some(c) => claims.push(c),
                None => return Err(Refusal::retryable(format!("memory limit of {} reached; retry later", q.name()))),
            }
        }
        Ok(claims)
    }

    /// Before a request is decoded: room for `bytes`, what decoding it will allocate (see each
    /// receiver's estimate), in every memory budget this receiver's data meets. A request over
    /// what one request may take of a budget is refused for good (`TooLarge`: the protocol's
    /// non-retryable "too large" answer); a budget merely busy is a retryable refusal. The claims
    /// are held until the data is admitted (or refused).
    pub fn claim_decode(&self, bytes: usize) -> Result<Vec<Claim>, DecodeRefusal> {
        let mut claims = Vec::new();
        let mut seen: Vec<&Arc<Capacity>> = Vec::new();
        let routes = self.routes();
        for q in routes.iter().flatten().flat_map(|r| &r.queues).filter(|q| q.is_memory()) {
            if seen.iter().any(|s| Arc::ptr_eq(s, q)) {
                continue;
            }
            seen.push(q);
            let bound = per_request_bound(q.limit());
            if bytes > bound {
                return Err(DecodeRefusal::TooLarge { bytes, bound });
            }
            match q.try_claim(bytes.max(1)) {
                Some(c) => claims.push(c),
                None => {
                    return Err(DecodeRefusal::Busy(Refusal::retryable(format!(
                        "memory limit of {} reached; retry later",
                        q.name()
                    ))));
                }
            }
        }
        Ok(claims)
    }

    /// The most one request may take of the memory budgets this receiver's data meets.
    pub fn decode_bound(&self) -> usize {
        self.routes()
            .iter()
            .flatten()
            .flat_map(|r| &r.queues)
            .filter(|q| q.is_memory())
            .map(|q| per_request_bound(q.limit()))
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Whether this receiver's data meets a memory budget that refuses everything right now.
    pub fn memory_paused(&self) -> bool {
        self.routes().iter().flatten().flat_map(|r| &r.queues).any(|q| q.is_memory() && q.is_paused())
    }

    /// Whether any pipeline takes this signal from this receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        !self.routes()[signal.index()].is_empty()
    }

    /// Hands `batch` to every pipeline of its signal, or refuses it whole: data is taken only
    /// when every exporter it reaches has room for it (waiting for room, within a bound, where
    /// a queue blocks on overflow).
    pub async fn submit(&self, transport: &str, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let items = batch.items() as u64;
        let deliveries = batch.deliveries();
        let tapped = self.tap.prepare(None, &batch);
        let result = self.admit(batch).await;
        if result.is_ok() {
            self.tap.deliver(tapped);
        }
        if result.is_err() {
            // Refused data was not delivered: its receiver will offer it again.
            deliveries.iter().for_each(|d| d.cancel());
        }
        let labels = [self.receiver.as_str(), transport];
        match &result {
            Ok(()) => self.telemetry.receiver_accepted[signal.index()].with_label_values(&labels).inc_by(items),
            Err(_) => self.telemetry.receiver_refused[signal.index()].with_label_values(&labels).inc_by(items),
        }
        result
    }

    async fn admit(&self, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let all = self.routes();
        let routes = &all[signal.index()];
        if routes.is_empty() {
            return Err(Refusal::permanent(format!("no {signal} pipeline takes data from receiver {}", self.receiver)));
        }
        if batch.items() == 0 {
            return Ok(());
        }
        if routes.iter().any(|r| r.input.is_closed()) {
            return Err(Refusal::retryable("switchyard is shutting down"));
        }
        // Claim everything first, so that a refusal leaves no pipeline with a partial copy. An
        // exporter shared by several pipelines gets one copy from each: claim its room once, for
        // all of them, and within one deadline however many queues must wait.
        let mut needs: Vec<(Arc<Capacity>, usize)> = Vec::new();
        for queue in routes.iter().flat_map(|r| &r.queues) {
            let weight = queue.weight(&batch);
            match needs.iter_mut().find(|(q, _)| Arc::ptr_eq(q, queue)) {
                Some((_, n)) => *n += weight,
                None => needs.push((queue.clone(), weight)),
            }
        }
        let deadline = tokio::time::Instant::now() + BLOCK_LIMIT;
        let mut claims: Vec<(Arc<Capacity>, Arc<Claim>)> = Vec::with_capacity(needs.len());
        for (queue, n) in needs {
            match queue.claim_until(n, deadline).await {
                Some(c) => claims.push((queue, Arc::new(c))),
                None if queue.is_memory() => {
                    tracing::debug!(processor = queue.name(), %signal, items = batch.items(), "memory limit reached; refusing data");
                    return Err(Refusal::retryable(format!("memory limit of {} reached; retry later", queue.name())));
                }
                None => {
                    self.telemetry.exporter_enqueue_failed[signal.index()]
                        .with_label_values(&[queue.name()])
                        .inc_by(batch.items() as u64);
                    if let Some(held_back) = queue.full_warning() {
                        tracing::warn!(exporter = queue.name(), %signal, items = batch.items(),
                            suppressed_since_last_warning = held_back, "sending queue is full; refusing data");
                    }
                    return Err(Refusal::retryable(format!("sending queue of exporter {} is full", queue.name())));
                }
            }
        }
        // With a persistent queue on the way, the client is answered once its data is written
        // there (and at once when it goes only to queues in memory).
        let mut batch = batch;
        let mut persisted = None;
        if claims.iter().any(|(q, _)| q.is_durable()) {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            batch = batch.on_delivered(Delivery::until_persisted(self.abandoned.clone(), move || {
                let _ = tx.send(());
            }));
            persisted = Some(rx);
        }
        let send = |route: &Route, mut copy: Batch| {
            let held: Vec<Arc<Claim>> = claims
                .iter()
                .filter(|(q, _)| route.queues.iter().any(|rq| Arc::ptr_eq(rq, q)))
                .map(|(_, c)| c.clone())
                .collect();
            copy.hold_shared(&held);
            route.input.send(copy).map_err(|_| Refusal::retryable("switchyard is shutting down"))
        };
        if let Some((last, rest)) = routes.split_last() {
            for route in rest {
                send(route, batch.clone())?;
            }
            send(last, batch)?;
        }
        drop(claims);
        match persisted {
            None => Ok(()),
            Some(written) => match tokio::time::timeout(PERSIST_LIMIT, written).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Refusal::retryable("the data could not be written to the persistent queue; retry")),
                Err(_) => Err(Refusal::retryable("the persistent queue did not write the data in time; retry")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Request, tests_support::traces};

    #[tokio::test]
    async fn an_exporter_shared_by_two_pipelines_is_claimed_once_for_both_copies() {
        let queue = Capacity::new("shared".into(), 1);
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let routes =
            vec![Route { input: tx1, queues: vec![queue.clone()] }, Route { input: tx2, queues: vec![queue.clone()] }];
        let intake = Intake::standalone("otlp".into(), [routes, Vec::new(), Vec::new()]);
        let batch = Batch::from_request(Request::Traces(traces(2)));
        // One claim covers both copies (two requests' worth); an empty queue takes it whole.
        assert_eq!(intake.submit("test", batch).await, Ok(()), "not refused for its own first copy");
        let (a, b) = (rx1.recv().await.unwrap(), rx2.recv().await.unwrap());
        assert_eq!(queue.held(), 2);
        drop(a);
        assert_eq!(queue.held(), 2, "the room is held until both copies are done");
        drop(b);
        assert_eq!(queue.held(), 0);
        let refused = intake.submit("test", Batch::from_request(Request::Traces(traces(1)))).await;
        assert!(refused.is_ok(), "room came back");
    }

    #[test]
    fn decode_claims_refuse_too_large_for_good_and_busy_for_now() {
        let budget = Capacity::memory_budget("budget".into(), 512 << 20);
        let (tx, _rx) = mpsc::unbounded_channel();
        let route = Route { input: tx, queues: vec![budget.clone()] };
        let intake = Intake::standalone("otlp".into(), [vec![route], Vec::new(), Vec::new()]);
        assert_eq!(per_request_bound(512 << 20), 256 << 20);
        assert!(matches!(intake.claim_decode(257 << 20), Err(DecodeRefusal::TooLarge { .. })));
        let held = intake.claim_decode(256 << 20).unwrap();
        let _more = intake.claim_decode(256 << 20).unwrap();
        assert_eq!(budget.held(), 512 << 20);
        assert!(matches!(intake.claim_decode(1 << 20), Err(DecodeRefusal::Busy(r)) if r.retryable));
        drop(held);
        assert!(intake.claim_decode(1 << 20).is_ok(), "room again once a decode is done");
        assert_eq!(per_request_bound(100 << 20), 64 << 20, "a small budget still takes 64 MiB requests");
        assert_eq!(per_request_bound(40 << 20), 40 << 20, "never more than the budget");
    }
}
