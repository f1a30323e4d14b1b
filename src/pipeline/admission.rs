//! Admission: before data enters a pipeline, the receiver claims room for it in the sending
//! queue of every exporter it will reach. A claim travels with the data (through batching,
//! merging and splitting) and is released once that exporter is done with it. Because the room
//! is claimed up front, a batch leaving the processors always finds its queues open, so the
//! receiver can answer its client at once without the data ever being dropped downstream; when
//! the room is not there, the client gets a retryable refusal instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Room in one exporter's sending queue, counted in requests: each admitted client request
/// holds one until it is merged into a batch (which holds one) or exported.
#[derive(Debug)]
pub struct Capacity {
    name: String,
    held: AtomicUsize,
    limit: usize,
    /// Mirrors `held`, for the queue-size self-metric.
    gauge: Option<prometheus::IntGauge>,
}

impl Capacity {
    pub fn new(name: String, limit: usize) -> Arc<Capacity> {
        Arc::new(Capacity { name, held: AtomicUsize::new(0), limit: limit.max(1), gauge: None })
    }

    /// Like `new`, keeping `gauge` equal to the room held.
    pub fn with_gauge(name: String, limit: usize, gauge: prometheus::IntGauge) -> Arc<Capacity> {
        gauge.set(0);
        Arc::new(Capacity { name, held: AtomicUsize::new(0), limit: limit.max(1), gauge: Some(gauge) })
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

    /// Claims room for one request, or `None` when the queue is full.
    pub fn try_claim(self: &Arc<Self>) -> Option<Claim> {
        self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| (h < self.limit).then_some(h + 1)).ok().map(
            |_| {
                if let Some(g) = &self.gauge {
                    g.inc();
                }
                Claim { capacity: self.clone() }
            },
        )
    }
}

/// Room held for one request in one queue; released when dropped.
#[derive(Debug)]
pub struct Claim {
    capacity: Arc<Capacity>,
}

impl Claim {
    pub fn is_for(&self, capacity: &Arc<Capacity>) -> bool {
        Arc::ptr_eq(&self.capacity, capacity)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.capacity.held.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = &self.capacity.gauge {
            g.dec();
        }
    }
}

/// The claims of batches a processor is gathering into one: one claim per queue is enough for
/// the single batch that will leave, so the others are released as batches arrive, and the
/// queues' room is not tied up by data waiting to be merged.
#[derive(Debug, Default)]
pub struct ClaimSet {
    held: Vec<Arc<Claim>>,
}

impl ClaimSet {
    /// Keeps the first claim on each queue; later ones on the same queue are dropped.
    pub fn absorb(&mut self, claims: Vec<Arc<Claim>>) {
        for c in claims {
            if !self.held.iter().any(|h| Arc::ptr_eq(&h.capacity, &c.capacity)) {
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
        let a = c.try_claim().unwrap();
        let b = c.try_claim().unwrap();
        assert!(c.try_claim().is_none());
        assert_eq!(c.held(), 2);
        drop(a);
        assert!(c.try_claim().is_some(), "a claim dropped at once frees its room again");
        assert!(b.is_for(&c));
        assert!(!b.is_for(&Capacity::new("other".into(), 1)));
    }

    #[test]
    fn a_claim_set_keeps_one_claim_per_queue() {
        let (q1, q2) = (Capacity::new("a".into(), 10), Capacity::new("b".into(), 10));
        let mut set = ClaimSet::default();
        for _ in 0..5 {
            set.absorb(vec![Arc::new(q1.try_claim().unwrap()), Arc::new(q2.try_claim().unwrap())]);
        }
        assert_eq!((q1.held(), q2.held()), (1, 1), "merged requests give their room back");
        let out = set.take();
        assert_eq!(out.len(), 2);
        drop(out);
        assert_eq!((q1.held(), q2.held()), (0, 0));
    }
}
