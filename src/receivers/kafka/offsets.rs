//! Which offsets of each partition may be committed: everything before the oldest message still
//! in flight (submitted, not yet delivered), or before the next one to read when none is.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct Offsets {
    /// Per partition: (next offset to read, offsets in flight).
    partitions: BTreeMap<i32, (i64, BTreeSet<i64>)>,
}

impl Offsets {
    pub fn start(&mut self, p: i32, offset: i64) {
        self.partitions.insert(p, (offset, BTreeSet::new()));
    }

    pub fn sent(&mut self, p: i32, offset: i64) {
        let e = self.partitions.entry(p).or_default();
        e.1.insert(offset);
        e.0 = e.0.max(offset + 1);
    }

    pub fn delivered(&mut self, p: i32, offset: i64) {
        if let Some(e) = self.partitions.get_mut(&p) {
            e.1.remove(&offset);
        }
    }

    /// A message sent but not taken after all: reading starts again at it.
    pub fn withdraw(&mut self, p: i32, offset: i64) {
        if let Some(e) = self.partitions.get_mut(&p) {
            e.1.remove(&offset);
            e.0 = e.0.min(offset);
        }
    }

    /// Reading moved to `next` (out of range: backwards too); what is in flight still holds
    /// the commit point back until delivered.
    pub fn restart(&mut self, p: i32, next: i64) {
        self.partitions.entry(p).or_default().0 = next;
    }

    /// Nothing to wait for up to `next` (a message skipped, or a jump).
    pub fn skip(&mut self, p: i32, next: i64) {
        let e = self.partitions.entry(p).or_default();
        e.0 = e.0.max(next);
    }

    /// Partition → offset to commit (the next message to read after a restart).
    pub fn commit_points(&self) -> BTreeMap<i32, i64> {
        self.partitions.iter().map(|(p, (next, flying))| (*p, flying.first().copied().unwrap_or(*next))).collect()
    }

    /// Nothing in flight.
    pub fn idle(&self) -> bool {
        self.partitions.values().all(|(_, f)| f.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_oldest_message_in_flight() {
        let mut o = Offsets::default();
        o.start(0, 10);
        o.sent(0, 10);
        o.sent(0, 11);
        o.skip(0, 13); // 12 was malformed
        assert_eq!(o.commit_points()[&0], 10);
        o.delivered(0, 11);
        assert_eq!(o.commit_points()[&0], 10, "10 is still in flight");
        o.delivered(0, 10);
        assert_eq!(o.commit_points()[&0], 13);
        assert!(o.idle());
        o.sent(0, 13);
        o.withdraw(0, 13);
        assert_eq!(o.commit_points()[&0], 13, "a withdrawn message is read again");
        assert!(o.idle());
        // Out of range past the end (the topic was recreated): back to 0, and the commit too.
        o.restart(0, 0);
        assert_eq!(o.commit_points()[&0], 0);
    }
}
