//! Delivery notices: a receiver that must know when its data is done with (a file offset to
//! checkpoint, a message offset to commit) attaches a `Delivery` to the batch it submits. The
//! notice travels with the data through batching, merging and splitting, like the queue claims
//! of `admission`, and runs once every copy and part of it is gone: exported, or given up on
//! after the retries (counted as failed). Data still queued when its service's shutdown
//! deadline passes is lost and is *not* reported as done, so a checkpoint never moves past it.
//!
//! A receiver whose data goes to a persistent queue waits for a notice of the second kind,
//! `Delivery::until_persisted`: it runs once every copy is written to its persistent queue (or
//! exported, or dropped on purpose); copies handed to in-memory queues let go of it at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Whether one service gave up on what it still held (its shutdown deadline passed). Each
/// service has its own, so another service in the process (a test, say) is not affected.
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    /// Called when the shutdown deadline cut the drain short: notices dropped from now on are
    /// for lost data and do not run.
    pub fn abandon(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

type Notice = Box<dyn FnOnce() + Send>;

/// Runs its notice when the last reference to it is dropped (see the module comment).
pub struct Delivery {
    notice: Mutex<Option<Notice>>,
    abandoned: Abandoned,
    /// Only until the data is written to the persistent queues it goes to (see the module comment).
    until_persisted: bool,
}

impl Delivery {
    /// A notice for data of the service whose state `abandoned` is (see `Intake::delivery`).
    pub fn new(abandoned: Abandoned, notice: impl FnOnce() + Send + 'static) -> Delivery {
        Delivery { notice: Mutex::new(Some(Box::new(notice))), abandoned, until_persisted: false }
    }

    /// A notice that runs once the data is in every persistent queue it goes to: in-memory
    /// queues let go of it when they take their copy.
    pub fn until_persisted(abandoned: Abandoned, notice: impl FnOnce() + Send + 'static) -> Delivery {
        let mut delivery = Delivery::new(abandoned, notice);
        delivery.until_persisted = true;
        delivery
    }

    pub fn is_until_persisted(&self) -> bool {
        self.until_persisted
    }
}

impl Delivery {
    /// The data was refused, not delivered: the notice will not run.
    pub fn cancel(&self) {
        self.notice.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.abandoned.is_set() {
            return;
        }
        let notice = self.notice.get_mut().map(Option::take).unwrap_or_else(|p| p.into_inner().take());
        if let Some(notice) = notice {
            notice();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Batch, Request, tests_support::traces};
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_notice_runs_when_every_copy_and_part_is_gone() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let batch = Batch::from_request(Request::Traces(traces(10))).on_delivered(Delivery::new(
            Abandoned::default(),
            move || {
                d.fetch_add(1, Ordering::SeqCst);
            },
        ));
        let other = Batch::from_request(Request::Traces(traces(2)));
        let copy = batch.clone();
        let merged = Batch::merge(vec![batch, other]).unwrap();
        let mut parts = merged.split(4);
        assert_eq!(parts.len(), 3);
        drop(copy);
        parts.pop();
        parts.pop();
        assert_eq!(done.load(Ordering::SeqCst), 0, "one part is still in flight");
        drop(parts);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_abandoned_service_runs_no_notices_and_another_is_not_affected() {
        let (one, other) = (Abandoned::default(), Abandoned::default());
        let done = Arc::new(AtomicUsize::new(0));
        let (a, b) = (done.clone(), done.clone());
        let lost = Delivery::new(one.clone(), move || {
            a.fetch_add(1, Ordering::SeqCst);
        });
        let delivered = Delivery::new(other, move || {
            b.fetch_add(10, Ordering::SeqCst);
        });
        one.abandon();
        drop(lost);
        drop(delivered);
        assert_eq!(done.load(Ordering::SeqCst), 10);
    }
}
