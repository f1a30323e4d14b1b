//! Batching behind the queue (`sending_queue.batch`): a consumer gathers what the queue holds
//! into one export of at least `min_size` (waiting at most `flush_timeout` for it) and at most
//! `max_size`, in the batch's `sizer` units.

use super::config::QueueBatchConfig;
use crate::pipeline::{Batch, Sizer};

/// Batches on their way to becoming one export.
pub struct Gathering<'a> {
    cfg: &'a QueueBatchConfig,
    parts: Vec<Batch>,
    size: usize,
}

impl<'a> Gathering<'a> {
    pub fn new(cfg: &'a QueueBatchConfig) -> Gathering<'a> {
        Gathering { cfg, parts: Vec::new(), size: 0 }
    }

    fn weight(&self, batch: &Batch) -> usize {
        match self.cfg.sizer {
            Sizer::Bytes => batch.wire_size(),
            Sizer::Items | Sizer::Requests => batch.items(),
        }
    }

    /// Whether `batch` (of the gathered signal) joins without going over `max_size`; the first
    /// always does.
    pub fn fits(&self, batch: &Batch) -> bool {
        self.parts.is_empty()
            || (self.parts[0].signal() == batch.signal()
                && (self.cfg.max_size == 0 || self.size + self.weight(batch) <= self.cfg.max_size))
    }

    pub fn push(&mut self, batch: Batch) {
        self.size += self.weight(&batch);
        self.parts.push(batch);
    }

    /// Whether the batch is big enough to go.
    pub fn is_full(&self) -> bool {
        self.size >= self.cfg.min_size
    }

    /// The export(s): the parts merged, then split at `max_size` items when the sizer counts
    /// items (a single part can be larger than the bound).
    pub fn finish(self) -> Vec<Batch> {
        let Some(merged) = Batch::merge(self.parts) else { return Vec::new() };
        match self.cfg.sizer {
            Sizer::Items if self.cfg.max_size > 0 && merged.items() > self.cfg.max_size => {
                merged.split(self.cfg.max_size)
            }
            _ => vec![merged],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Request, tests_support::traces};

    #[test]
    fn gathers_up_to_min_size_and_never_past_max_size() {
        let cfg = QueueBatchConfig { min_size: 10, max_size: 12, ..Default::default() };
        let mut g = Gathering::new(&cfg);
        let batch = |n| Batch::from_request(Request::Traces(traces(n)));
        g.push(batch(4));
        assert!(!g.is_full());
        assert!(g.fits(&batch(8)));
        g.push(batch(7));
        assert!(g.is_full());
        assert!(!g.fits(&batch(2)), "11 + 2 > 12");
        let out = g.finish();
        assert_eq!(out.iter().map(Batch::items).collect::<Vec<_>>(), vec![11]);

        let mut g = Gathering::new(&cfg);
        g.push(batch(30));
        assert_eq!(
            g.finish().iter().map(Batch::items).collect::<Vec<_>>(),
            vec![12, 12, 6],
            "an oversized part is split"
        );
    }
}
