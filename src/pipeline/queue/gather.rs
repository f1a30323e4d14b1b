//! Batching behind the queue (`sending_queue.batch`): a consumer gathers what the queue holds
//! into one export of at least `min_size` (waiting at most `flush_timeout` for it) and at most
//! `max_size`, in the batch's `sizer` units.

use super::config::QueueBatchConfig;
use crate::pipeline::{Batch, Sizer};

/// The most encoded data one export gathers, unless `max_size` counts bytes: gRPC servers
/// (the collector's and Jaeger's included) refuse messages over 4 MiB by default, and a refusal
/// for size is permanent (64 KiB are kept to spare). Gathering never makes an export larger than
/// this; a single batch that is larger on its own still goes alone.
pub const MAX_GATHERED_BYTES: usize = (4 << 20) - (64 << 10);

/// Batches on their way to becoming one export.
pub struct Gathering<'a> {
    cfg: &'a QueueBatchConfig,
    parts: Vec<Batch>,
    size: usize,
    bytes: usize,
}

impl<'a> Gathering<'a> {
    pub fn new(cfg: &'a QueueBatchConfig) -> Gathering<'a> {
        Gathering { cfg, parts: Vec::new(), size: 0, bytes: 0 }
    }

    /// The byte bound of one export (see `MAX_GATHERED_BYTES`).
    fn byte_cap(&self) -> usize {
        match self.cfg.sizer {
            Sizer::Bytes if self.cfg.max_size > 0 => usize::MAX,
            _ => MAX_GATHERED_BYTES,
        }
    }

    fn weight(&self, batch: &Batch) -> usize {
        match self.cfg.sizer {
            Sizer::Bytes => batch.wire_size(),
            Sizer::Items | Sizer::Requests => batch.items(),
        }
    }

    /// Whether `batch` (of the gathered signal, and the same request context: data of two
    /// tenants never goes out in one request) joins without going over `max_size` or the byte
    /// bound; the first always does.
    pub fn fits(&self, batch: &Batch) -> bool {
        self.parts.is_empty()
            || (self.parts[0].signal() == batch.signal()
                && self.parts[0].context() == batch.context()
                && (self.cfg.max_size == 0 || self.size + self.weight(batch) <= self.cfg.max_size)
                && self.bytes + batch.wire_size() <= self.byte_cap())
    }

    pub fn push(&mut self, batch: Batch) {
        self.size += self.weight(&batch);
        self.bytes += batch.wire_size();
        self.parts.push(batch);
    }

    /// Whether the batch is big enough to go (or as large as an export may be).
    pub fn is_full(&self) -> bool {
        self.size >= self.cfg.min_size || self.bytes >= self.byte_cap()
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

    #[test]
    fn an_export_gathers_at_most_4_mib_unless_max_size_counts_bytes() {
        let cfg = QueueBatchConfig::default();
        let batch = |n| Batch::from_request(Request::Traces(traces(n)));
        let one = batch(100);
        let per = one.wire_size();
        let fit = MAX_GATHERED_BYTES / per;
        let mut g = Gathering::new(&cfg);
        for _ in 0..fit {
            assert!(g.fits(&one));
            g.push(one.clone());
        }
        assert!(!g.fits(&one), "{fit} batches of {per} bytes fill 4 MiB");
        assert!(g.is_full(), "and it goes, short of min_size");
        let bytes = QueueBatchConfig { sizer: Sizer::Bytes, min_size: 1, max_size: 64 << 20, ..Default::default() };
        let mut g = Gathering::new(&bytes);
        g.push(one.clone());
        assert!(g.fits(&batch(100_000)), "max_size in bytes governs");
    }
}
