//! Delivery notices: a receiver that must know when its data is done with (a file offset to
//! checkpoint, a message offset to commit) attaches a `Delivery` to the batch it submits. The
//! notice travels with the data through batching, merging and splitting, like the queue claims
//! of `admission`, and runs once every copy and part of it is gone: exported, or given up on
//! after the retries (counted as failed). Data still queued when the shutdown deadline passes
//! is lost and is *not* reported as done, so a checkpoint never moves past it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ABANDONED: AtomicBool = AtomicBool::new(false);

/// Called when the shutdown deadline cut the drain short: notices dropped from now on are
/// for lost data and do not run.
pub fn abandon() {
    ABANDONED.store(true, Ordering::SeqCst);
}

type Notice = Box<dyn FnOnce() + Send>;

/// Runs its notice when the last reference to it is dropped (see the module comment).
pub struct Delivery {
    notice: Mutex<Option<Notice>>,
}

impl Delivery {
    pub fn new(notice: impl FnOnce() + Send + 'static) -> Delivery {
        Delivery { notice: Mutex::new(Some(Box::new(notice))) }
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
        if ABANDONED.load(Ordering::SeqCst) {
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
        let batch = Batch::from_request(Request::Traces(traces(10))).on_delivered(Delivery::new(move || {
            d.fetch_add(1, Ordering::SeqCst);
        }));
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
}
