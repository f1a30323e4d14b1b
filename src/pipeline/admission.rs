//! Admission: before data enters a pipeline, the receiver claims room for it in the sending
//! queue of every exporter it will reach. A claim travels with the data (through batching,
//! merging and splitting) and is released once that exporter is done with it. Because the room
//! is claimed up front, a batch leaving the processors always finds its queues open, so the
//! receiver can answer its client at once without the data ever being dropped downstream; when
//! the room is not there, the client gets a retryable refusal instead.

use super::batch::Batch;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// What a queue's size counts (`sending_queue.sizer`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Client requests; requests the batch processor merges count once.
    #[default]
    Requests,
    /// Spans, data points or log records.
    Items,
    /// Bytes of the protobuf encoding.
    Bytes,
}

/// Room in one exporter's sending queue, in the units of its `Sizer`.
#[derive(Debug)]
pub struct Capacity {
    name: String,
    held: AtomicUsize,
    limit: usize,
    sizer: Sizer,
    /// Wait for room (up to a bound) instead of refusing at once.
    block: bool,
    freed: Notify,
    /// Mirrors `held`, for the queue-size self-metric.
    gauge: Option<prometheus::IntGauge>,
    /// A memory budget (`memory_limiter`) rather than an exporter's queue.
    memory: bool,
    /// Set while the process is over its memory limit: nothing is admitted, however little.
    paused: std::sync::atomic::AtomicBool,
    /// The room of a persistent queue: a client is answered once its data is on disk.
    durable: bool,
    /// "Full" warnings, at most one a second: a receiver retrying every 200 ms would otherwise
    /// write five a second for as long as the queue stays full.
    full_warnings: crate::telemetry::log_limit::LogLimit,
}

/// How much more memory than its wire size a decoded batch takes (structs, strings, vectors),
/// for a memory budget's accounting.
const DECODED_FACTOR: usize = 4;

/// The longest a receiver waits for room when the queue blocks on overflow; after that the
/// client is told to retry, before its own export timeout makes it give up and send again.
pub const BLOCK_LIMIT: Duration = Duration::from_secs(5);

impl Capacity {
    /// Room for `limit` requests that refuses at once when full.
    pub fn new(name: String, limit: usize) -> Arc<Capacity> {
        Capacity::build(name, limit, Sizer::Requests, false, None)
    }

    /// The full form, keeping `gauge` equal to the room held.
    pub fn build(
        name: String,
        limit: usize,
        sizer: Sizer,
        block: bool,
        gauge: Option<prometheus::IntGauge>,
    ) -> Arc<Capacity> {
        Arc::new(Capacity {
            name,
            held: AtomicUsize::new(0),
            limit: limit.max(1),
            sizer,
            block,
            freed: Notify::new(),
            gauge,
            memory: false,
            paused: std::sync::atomic::AtomicBool::new(false),
            durable: false,
            full_warnings: Default::default(),
        })
    }

    /// The disk budget of a persistent queue: `limit` bytes of encoded data (see `durable`).
    pub fn disk(name: String, limit: usize, block: bool, gauge: Option<prometheus::IntGauge>) -> Arc<Capacity> {
        let mut capacity = Capacity::build(name, limit, Sizer::Bytes, block, gauge);
        if let Some(c) = Arc::get_mut(&mut capacity) {
            c.durable = true;
        }
        capacity
    }

    /// Whether this is a persistent queue's room: data admitted into it is answered once written.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Claims `n` units whether or not they fit: data already on disk (read again at start)
    /// takes its room before anything new is admitted.
    pub fn force_claim(self: &Arc<Self>, n: usize) -> Claim {
        self.held.fetch_add(n, Ordering::AcqRel);
        if let Some(g) = &self.gauge {
            g.add(n as i64);
        }
        Claim { capacity: self.clone(), n }
    }

    /// A memory budget of `limit` bytes: what receivers hold in flight (until exported), by
    /// wire size (decoded batches count `DECODED_FACTOR` times), refused at once when full.
    pub fn memory_budget(name: String, limit: usize) -> Arc<Capacity> {
        Arc::new(Capacity {
            name,
            held: AtomicUsize::new(0),
            limit: limit.max(1),
            sizer: Sizer::Bytes,
            block: false,
            freed: Notify::new(),
            gauge: None,
            memory: true,
            paused: std::sync::atomic::AtomicBool::new(false),
            durable: false,
            full_warnings: Default::default(),
        })
    }

    /// Whether a "full" warning may be written now, and how many were held back before it.
    pub fn full_warning(&self) -> Option<u64> {
        self.full_warnings.allow()
    }

    /// Whether this is a memory budget rather than an exporter's queue.
    pub fn is_memory(&self) -> bool {
        self.memory
    }

    /// Refuses everything while `paused` (the process is over its memory limit).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The exporter this room belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn sizer(&self) -> Sizer {
        self.sizer
    }

    /// The room `batch` takes in this queue.
    pub fn weight(&self, batch: &Batch) -> usize {
        match self.sizer {
            Sizer::Requests => 1,
            Sizer::Items => batch.items().max(1),
            Sizer::Bytes if self.memory && !batch.is_encoded() => batch.wire_size().max(1) * DECODED_FACTOR,
            Sizer::Bytes => batch.wire_size().max(1),
        }
    }

    /// Claims `n` units, or `None` when they do not fit. Anything fits an empty queue, so a
    /// batch larger than the whole queue is not refused forever.
    pub fn try_claim(self: &Arc<Self>, n: usize) -> Option<Claim> {
        if self.is_paused() {
            return None;
        }
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| (h == 0 || h + n <= self.limit).then_some(h + n))
            .ok()
            .map(|_| {
                if let Some(g) = &self.gauge {
                    g.add(n as i64);
                }
                Claim { capacity: self.clone(), n }
            })
    }

    /// Claims `n` units; when the queue blocks on overflow, waits for room until `deadline`.
    pub async fn claim_until(self: &Arc<Self>, n: usize, deadline: tokio::time::Instant) -> Option<Claim> {
        if !self.block {
            return self.try_claim(n);
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(c) = self.try_claim(n) {
                return Some(c);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_claim(n);
            }
        }
    }
}

/// Room held for some data in one queue; released when dropped.
#[derive(Debug)]
pub struct Claim {
    capacity: Arc<Capacity>,
    n: usize,
}

impl Claim {
    pub fn is_for(&self, capacity: &Arc<Capacity>) -> bool {
        Arc::ptr_eq(&self.capacity, capacity)
    }

    /// Gives back up to `n` of the claimed units now, keeping the rest.
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.n);
        self.n -= n;
        self.capacity.held.fetch_sub(n, Ordering::AcqRel);
        if let Some(g) = &self.capacity.gauge {
            g.sub(n as i64);
        }
        self.capacity.freed.notify_waiters();
    }

    pub fn units(&self) -> usize {
        self.n
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.capacity.held.fetch_sub(self.n, Ordering::AcqRel);
        if let Some(g) = &self.capacity.gauge {
            g.sub(self.n as i64);
        }
        self.capacity.freed.notify_waiters();
    }
}

/// The claims of batches a processor is gathering into one: for queues counted in requests, one
/// claim is enough for the single batch that will leave, so the others are released as batches
/// arrive and the queues' room is not tied up by data waiting to be merged.
#[derive(Debug, Default)]
pub struct ClaimSet {
    held: Vec<Arc<Claim>>,
}

impl ClaimSet {
    /// Keeps the first claim on each queue counted in requests (the merged batch is one
    /// request); claims counted in items or bytes are all kept, since the merged batch weighs
    /// their sum.
    pub fn absorb(&mut self, claims: Vec<Arc<Claim>>) {
        for c in claims {
            let by_request = c.capacity.sizer == Sizer::Requests;
            if !by_request || !self.held.iter().any(|h| Arc::ptr_eq(&h.capacity, &c.capacity)) {
                self.held.push(c);
            }
        }
    }

    /// Hands the claims over to the batch (or batches) leaving.
    pub fn take(&mut self) -> Vec<Arc<Claim>> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stop_at_the_limit_and_return_on_drop() {
        let c = Capacity::new("q".into(), 2);
        let a = c.try_claim(1).unwrap();
        let b = c.try_claim(1).unwrap();
        assert!(c.try_claim(1).is_none());
        assert_eq!(c.held(), 2);
        drop(a);
        assert!(c.try_claim(1).is_some(), "a claim dropped at once frees its room again");
        assert!(b.is_for(&c));
        assert!(!b.is_for(&Capacity::new("other".into(), 1)));
    }

    #[test]
    fn weighted_claims_and_an_oversized_batch_in_an_empty_queue() {
        let c = Capacity::build("items".into(), 100, Sizer::Items, false, None);
        let big = c.try_claim(250).expect("an empty queue takes anything");
        assert!(c.try_claim(1).is_none());
        drop(big);
        let a = c.try_claim(60).unwrap();
        assert!(c.try_claim(50).is_none(), "60 + 50 > 100");
        let _b = c.try_claim(40).unwrap();
        drop(a);
        assert_eq!(c.held(), 40);
    }

    #[tokio::test]
    async fn blocking_queues_wait_for_room() {
        let c = Capacity::build("blocking".into(), 1, Sizer::Requests, true, None);
        let first = c.try_claim(1).unwrap();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.claim_until(1, tokio::time::Instant::now() + BLOCK_LIMIT).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits while the queue is full");
        drop(first);
        assert!(waiter.await.unwrap(), "gets the room once it is freed");
    }

    #[test]
    fn a_claim_set_keeps_one_claim_per_queue() {
        let (q1, q2) = (Capacity::new("a".into(), 10), Capacity::new("b".into(), 10));
        let mut set = ClaimSet::default();
        for _ in 0..5 {
            set.absorb(vec![Arc::new(q1.try_claim(1).unwrap()), Arc::new(q2.try_claim(1).unwrap())]);
        }
        assert_eq!((q1.held(), q2.held()), (1, 1), "merged requests give their room back");
        let out = set.take();
        assert_eq!(out.len(), 2);
        drop(out);
        assert_eq!((q1.held(), q2.held()), (0, 0));
    }
}
