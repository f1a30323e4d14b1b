//! Admission: before data enters a pipeline, the receiver claims room for it in the sending
//! queue of every exporter it will reach. A claim travels with the data (through batching,
//! merging and splitting) and is released once that exporter is done with it. Because the room
//! is claimed up front, a batch leaving the processors always finds its queues open, so the
//! receiver can answer its client at once without the data ever being dropped downstream; when
//! the room is not there, the client gets a retryable refusal instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Room in one exporter's sending queue, counted in admitted client requests.
#[derive(Debug)]
pub struct Capacity {
    name: String,
    held: AtomicUsize,
    limit: usize,
}

impl Capacity {
    pub fn new(name: String, limit: usize) -> Arc<Capacity> {
        Arc::new(Capacity { name, held: AtomicUsize::new(0), limit: limit.max(1) })
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
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| (h < self.limit).then_some(h + 1))
            .ok()
            .map(|_| Claim { capacity: self.clone() })
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
}
