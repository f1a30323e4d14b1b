//! A write-ahead log on disk: records appended in order to segment files, read back in the same
//! order, and acknowledged (delivered or given up on) in any order. A segment file is deleted
//! once every record in it is acknowledged; what was not acknowledged when the process ended is
//! read again after the next `open`. The persistent sending queue keeps its data here.
//!
//! Files in the log's directory: `LOCK` (held while open, so two processes never share a log),
//! `<first sequence number>.seg` segments (see `frame` for a record's layout), and `acks`, the
//! acknowledgements: everything below a watermark plus the acknowledged records above it.
//! Damaged bytes found at `open` (a torn write at the tail, flipped bytes anywhere) cost only the
//! records they hit: the scan resumes at the next good record, and a damaged tail is cut off.

mod acks;
pub mod frame;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a log writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Flush every append (group) and every acknowledgement to the disk itself before it
    /// counts as written, so that it survives a power loss and not only a crash.
    pub fsync: bool,
    /// A new segment file is started once the current one holds this many bytes.
    pub segment_bytes: u64,
    /// How long `open` waits for another holder of the directory to let go of it.
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { fsync: false, segment_bytes: 8 << 20, lock_timeout: Duration::from_secs(1) }
    }
}

/// What `open` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Records written before and not acknowledged: they will be read again.
    pub pending_records: u64,
    /// Their payload bytes.
    pub pending_bytes: u64,
    /// What the caller's weight function makes of them (items, say).
    pub pending_weight: u64,
    /// Damaged byte ranges skipped (each may have held one record or more).
    pub damaged_ranges: u64,
    /// Bytes in those ranges.
    pub damaged_bytes: u64,
    /// Damaged or torn tails cut off their segment files.
    pub tails_cut: u64,
}

struct Segment {
    first: u64,
    path: PathBuf,
    /// The highest sequence number in it, if it holds any record.
    last: Option<u64>,
    /// Bytes of it that hold records (or skipped damage).
    len: u64,
    damaged: Vec<(u64, u64)>,
}

struct State {
    segments: VecDeque<Segment>,
    /// The segment appends go to (the last of `segments`), once one is started.
    writer: Option<File>,
    next_seq: u64,
    /// Records with a lower sequence number are written (and synced, with `fsync`).
    readable: u64,
    /// Where the next read starts: a segment (by its first sequence number) and an offset.
    read_at: (u64, u64),
    /// Every record below this has been read.
    cursor: u64,
    /// Records read and not acknowledged, with where they are (segment, offset).
    in_flight: BTreeMap<u64, (u64, u64)>,
    /// Records given back unsent (`give_back`), read again before anything new.
    returned: BTreeMap<u64, (u64, u64)>,
    /// Acknowledged records at or above the watermark.
    done: BTreeSet<u64>,
    /// Records acknowledged before the last `open`, to skip when read.
    skip_below: u64,
    skip: BTreeSet<u64>,
    acks_changed: bool,
    /// The last write failed (a full disk): the segment being written may be deleted too once
    /// delivered, so that its space comes back.
    write_failed: bool,
    /// Records found damaged while reading (after `open`).
    damaged_on_read: u64,
}

impl State {
    fn watermark(&self) -> u64 {
        let first = |m: &BTreeMap<u64, (u64, u64)>| m.keys().next().copied().unwrap_or(u64::MAX);
        first(&self.in_flight).min(first(&self.returned)).min(self.cursor)
    }
}

/// See the module comment.
pub struct Wal {
    dir: PathBuf,
    options: Options,
    state: Mutex<State>,
    _lock: File,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

impl Wal {
    /// Opens (or creates) the log in `dir`, which must exist. `weigh` tells what a pending
    /// record's payload counts for `Recovery::pending_weight`.
    pub fn open(dir: &Path, options: Options, weigh: impl Fn(&[u8]) -> u64) -> Result<(Wal, Recovery), String> {
        let lock = lock(dir, options.lock_timeout)?;
        let acks = acks::read(&dir.join(acks::FILE));
        let mut recovery = Recovery::default();
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| io_error("cannot read", dir, e))?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let first = path.file_name()?.to_str()?.strip_suffix(".seg")?.parse::<u64>().ok()?;
                Some((first, path))
            })
            .collect();
        names.sort();
        let skipped = |seq: u64| seq < acks.watermark || acks.done.contains(&seq);
        let mut segments = VecDeque::new();
        let mut max_seq: Option<u64> = None;
        for (first, path) in names {
            let bytes = std::fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
            let mut scan = frame::scan(&bytes);
            if let Some(&(start, end)) = scan.damaged.last()
                && end == bytes.len() as u64
            {
                // A torn write or damage at the end: cut it off, so that the segment ends with
                // its last good record.
                tracing::warn!(segment = %path.display(), offset = start, bytes = end - start,
                    "persistent queue: damaged or torn tail cut off at the last good record");
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_error("cannot open", &path, e))?;
                file.set_len(start).map_err(|e| io_error("cannot truncate", &path, e))?;
                recovery.tails_cut += 1;
            }
            for &(start, end) in &scan.damaged {
                recovery.damaged_ranges += 1;
                recovery.damaged_bytes += end - start;
                if end != bytes.len() as u64 {
                    tracing::warn!(segment = %path.display(), offset = start, bytes = end - start,
                        "persistent queue: damaged records skipped");
                }
            }
            scan.damaged.retain(|&(_, end)| end != bytes.len() as u64);
            let mut last = None;
            for &(seq, offset, len) in &scan.records {
                last = Some(last.map_or(seq, |l: u64| l.max(seq)));
                if !skipped(seq) {
                    recovery.pending_records += 1;
                    recovery.pending_bytes += len as u64;
                    let start = offset as usize + frame::HEADER;
                    recovery.pending_weight += weigh(&bytes[start..start + len]);
                }
            }
            max_seq = max_seq.max(last);
            let all_done = scan.records.iter().all(|&(seq, _, _)| skipped(seq));
            if all_done {
                // Everything in it was delivered before: nothing to read again.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            segments.push_back(Segment { first, path, last, len: scan.good_end, damaged: scan.damaged });
        }
        // Never a number used before: not one still in a segment, nor one the acknowledgements
        // name (a record cut off with a torn tail, or in a segment deleted since).
        let acked_max = acks.done.last().map_or(0, |d| d + 1);
        let next_seq = max_seq.map_or(0, |m| m + 1).max(acks.watermark).max(acked_max);
        let read_at = segments.front().map_or((next_seq, 0), |s| (s.first, 0));
        let state = State {
            segments,
            writer: None,
            next_seq,
            readable: next_seq,
            read_at,
            cursor: acks.watermark,
            in_flight: BTreeMap::new(),
            returned: BTreeMap::new(),
            // Kept, so that the next acknowledgements file still names them.
            done: acks.done.clone(),
            skip_below: acks.watermark,
            skip: acks.done,
            acks_changed: false,
            write_failed: false,
            damaged_on_read: 0,
        };
        let wal = Wal { dir: dir.to_path_buf(), options, state: Mutex::new(state), _lock: lock };
        Ok((wal, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `payloads` in order and makes them readable: `write` then `publish`.
    pub fn append(&self, payloads: &[&[u8]]) -> Result<u64, String> {
        let first = self.write(payloads)?;
        self.publish(first + payloads.len() as u64);
        Ok(first)
    }

    /// Writes `payloads` in order, as one write (and one sync, with `fsync`); returns the
    /// sequence number of the first. Readers see them only once `publish`ed, so that what must
    /// be recorded about them first (the room they hold) is in place before anyone sends them.
    /// On failure nothing of them stays in the log. One writer at a time.
    pub fn write(&self, payloads: &[&[u8]]) -> Result<u64, String> {
        if payloads.is_empty() {
            return Ok(self.state().next_seq);
        }
        if let Some(p) = payloads.iter().find(|p| p.len() > frame::MAX_PAYLOAD) {
            return Err(format!("a record of {} bytes is larger than a persistent queue takes", p.len()));
        }
        let (first, end, before, file) = {
            let mut state = self.state();
            let first = state.next_seq;
            let full = state.segments.back().is_none_or(|s| s.len >= self.options.segment_bytes);
            if state.writer.is_none() || full {
                self.start_segment(&mut state, first)?;
            }
            let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + frame::HEADER).sum());
            for (i, p) in payloads.iter().enumerate() {
                frame::encode(first + i as u64, p, &mut buf);
            }
            let before = state.segments.back().map(|s| (s.path.clone(), s.len, s.last)).unwrap_or_default();
            let writer = state.writer.as_mut().ok_or("no segment open")?;
            if let Err(e) = writer.write_all(&buf) {
                self.undo(&mut state, first, &before);
                return Err(io_error("cannot write", &before.0, e));
            }
            let end = first + payloads.len() as u64;
            state.next_seq = end;
            state.write_failed = false;
            if let Some(s) = state.segments.back_mut() {
                s.len += buf.len() as u64;
                s.last = Some(end - 1);
            }
            let file = match self.options.fsync {
                true => Some(state.writer.as_ref().map(File::try_clone).transpose().map_err(|e| e.to_string())?),
                false => None,
            };
            (first, end, before, file)
        };
        if let Some(Some(file)) = file
            && let Err(e) = file.sync_data()
        {
            // Synced outside the lock (readers and acknowledgements go on meanwhile, and what
            // arrives during the sync forms the next group). Not known to be on disk: undone,
            // and its clients are told to retry.
            let mut state = self.state();
            if state.next_seq == end {
                self.undo(&mut state, first, &before);
            }
            return Err(format!("cannot sync the persistent queue in {}: {e}", self.dir.display()));
        }
        Ok(first)
    }

    /// Takes back a write that failed: the segment is cut back to `before` (its path, length
    /// and last record), so that the next record starts where the readers expect it.
    fn undo(&self, state: &mut State, first: u64, before: &(PathBuf, u64, Option<u64>)) {
        let (segment, len, last) = before;
        state.next_seq = first;
        state.write_failed = true;
        state.acks_changed = true;
        if let Some(s) = state.segments.back_mut() {
            (s.len, s.last) = (*len, *last);
        }
        if let Some(writer) = state.writer.as_mut()
            && let Err(e) = writer.set_len(*len)
        {
            tracing::error!(segment = %segment.display(), error = %e,
                "persistent queue: cannot cut off a failed write; the next start skips it");
            state.writer = None;
        }
    }

    /// Makes every record written below `end` readable.
    pub fn publish(&self, end: u64) {
        let mut state = self.state();
        state.readable = state.readable.max(end);
    }

    fn start_segment(&self, state: &mut State, first: u64) -> Result<(), String> {
        if let Some(old) = state.writer.take()
            && self.options.fsync
        {
            old.sync_data().map_err(|e| format!("cannot sync a segment in {}: {e}", self.dir.display()))?;
        }
        let path = self.dir.join(segment_name(first));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("cannot create", &path, e))?;
        // The segment given up on after a failed write, with no record in it: start it afresh.
        if state.segments.back().is_some_and(|s| s.first == first) {
            state.segments.pop_back();
            file.set_len(0).map_err(|e| io_error("cannot truncate", &path, e))?;
        }
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if self.options.fsync {
            sync_dir(&self.dir)?;
        }
        state.segments.push_back(Segment { first, path, last: None, len, damaged: Vec::new() });
        state.writer = Some(file);
        Ok(())
    }

    /// The next record not read yet, in order: its sequence number and payload; `None` when
    /// everything written has been read. A record read stays in the log until acknowledged.
    pub fn read(&self) -> Result<Option<(u64, Vec<u8>)>, String> {
        let mut state = self.state();
        while let Some((seq, (seg_first, offset))) = state.returned.pop_first() {
            let Some(segment) = state.segments.iter().find(|s| s.first == seg_first) else { continue };
            let path = segment.path.clone();
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    // Still owed: read again next time.
                    state.returned.insert(seq, (seg_first, offset));
                    return Err(io_error("cannot open", &path, e));
                }
            };
            let payload = header_at(&file, offset).filter(|h| h.seq == seq).and_then(|h| payload_at(&file, offset, &h));
            match payload {
                Some(payload) => {
                    state.in_flight.insert(seq, (seg_first, offset));
                    return Ok(Some((seq, payload)));
                }
                None => {
                    tracing::error!(segment = %path.display(), offset, seq, "persistent queue: damaged record skipped");
                    state.damaged_on_read += 1;
                }
            }
        }
        loop {
            let (seg_first, offset) = state.read_at;
            let Some(index) = state.segments.iter().position(|s| s.first == seg_first) else {
                // The segment read from is gone (or none was started): continue with the next.
                match state.segments.iter().find(|s| s.first > seg_first) {
                    Some(s) => {
                        state.read_at = (s.first, 0);
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            let segment = &state.segments[index];
            if offset >= segment.len {
                match state.segments.get(index + 1) {
                    Some(next) => {
                        state.read_at = (next.first, 0);
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            if let Some(&(_, end)) = segment.damaged.iter().find(|(start, _)| *start == offset) {
                state.read_at.1 = end;
                continue;
            }
            let path = segment.path.clone();
            let file = File::open(&path).map_err(|e| io_error("cannot open", &path, e))?;
            let Some(header) = header_at(&file, offset) else {
                // Damaged since it was written or scanned: go on at the next good record.
                let end = state.segments[index].len;
                let next = resync(&file, offset + 1, end);
                tracing::error!(segment = %path.display(), offset, bytes = next - offset,
                    "persistent queue: damaged record skipped");
                state.damaged_on_read += 1;
                state.read_at.1 = next;
                continue;
            };
            if header.seq >= state.readable {
                return Ok(None);
            }
            let payload = payload_at(&file, offset, &header);
            state.read_at.1 = offset + (frame::HEADER + header.len) as u64;
            let Some(payload) = payload else {
                tracing::error!(segment = %path.display(), offset, seq = header.seq, "persistent queue: damaged record skipped");
                state.damaged_on_read += 1;
                continue;
            };
            let seq = header.seq;
            state.cursor = state.cursor.max(seq + 1);
            if seq < state.skip_below || state.skip.remove(&seq) {
                continue;
            }
            state.in_flight.insert(seq, (seg_first, offset));
            return Ok(Some((seq, payload)));
        }
    }

    /// Records found damaged by `read` so far.
    pub fn damaged_on_read(&self) -> u64 {
        self.state().damaged_on_read
    }

    /// Record `seq` (returned by `read`) is done with: delivered, or given up on.
    pub fn ack(&self, seq: u64) {
        let mut state = self.state();
        if state.in_flight.remove(&seq).is_some() {
            state.done.insert(seq);
            let watermark = state.watermark();
            state.done.retain(|s| *s >= watermark);
            state.acks_changed = true;
        }
    }

    /// Record `seq` (returned by `read`) was not sent after all (its consumer stopped): it is
    /// read again, before anything not read yet.
    pub fn give_back(&self, seq: u64) {
        let mut state = self.state();
        if let Some(at) = state.in_flight.remove(&seq) {
            state.returned.insert(seq, at);
        }
    }

    /// Writes the acknowledgements to disk (if they changed) and deletes the segment files
    /// whose records are all acknowledged. Returns the bytes of records freed.
    pub fn checkpoint(&self) -> Result<u64, String> {
        let (watermark, done, removable) = {
            let mut state = self.state();
            if !state.acks_changed {
                return Ok(0);
            }
            state.acks_changed = false;
            let watermark = state.watermark();
            let (read_first, read_offset) = state.read_at;
            // After a failed write, the segment being written goes too once it is delivered:
            // the next append starts a new one in the space that frees.
            let writing = match state.write_failed {
                true => None,
                false => state.writer.as_ref().and(state.segments.back().map(|s| s.first)),
            };
            let mut removable = Vec::new();
            // Never the segment being written, nor one not read to its end.
            while let Some(front) = state.segments.front()
                && Some(front.first) != writing
                && front.last.is_none_or(|l| l < watermark)
                && (front.first < read_first || (front.first == read_first && read_offset >= front.len))
            {
                removable.extend(state.segments.pop_front());
            }
            if state.segments.is_empty() {
                state.writer = None;
            }
            (watermark, state.done.iter().copied().collect::<Vec<u64>>(), removable)
        };
        acks::write(&self.dir, watermark, &done, self.options.fsync)?;
        let mut freed = 0;
        for segment in removable {
            freed += segment.len;
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::warn!(segment = %segment.path.display(), error = %e, "persistent queue: cannot delete a delivered segment");
            }
        }
        Ok(freed)
    }

    /// Records read but not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.state().in_flight.len()
    }

    /// Segment files on disk now.
    pub fn segments(&self) -> usize {
        self.state().segments.len()
    }
}

/// Where the next good record after `from` starts in a segment file (`end` if none does).
fn resync(file: &File, from: u64, end: u64) -> u64 {
    let mut rest = vec![0u8; end.saturating_sub(from) as usize];
    if file.read_exact_at(&mut rest, from).is_err() {
        return end;
    }
    frame::scan(&rest).records.first().map_or(end, |&(_, at, _)| from + at)
}

/// The header of the record at `offset` of a segment file, if one is there.
fn header_at(file: &File, offset: u64) -> Option<frame::Header> {
    let mut head = [0u8; frame::HEADER];
    file.read_exact_at(&mut head, offset).ok().and_then(|()| frame::Header::parse(&head))
}

/// The payload of the record at `offset` with `header`, if it matches its checksum.
fn payload_at(file: &File, offset: u64, header: &frame::Header) -> Option<Vec<u8>> {
    let mut payload = vec![0u8; header.len];
    let good = file.read_exact_at(&mut payload, offset + frame::HEADER as u64).is_ok() && header.matches(&payload);
    good.then_some(payload)
}

/// Takes `dir/LOCK`, waiting up to `timeout` for another holder to let go.
fn lock(dir: &Path, timeout: Duration) -> Result<File, String> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("cannot open", &path, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(format!(
                    "{} is in use by another process (or another queue) and was not released within {timeout:?}: {e}",
                    dir.display()
                ));
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("cannot sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (Wal, Recovery) {
        let options = Options { segment_bytes: 200, ..Default::default() };
        Wal::open(dir, options, |p| p.len() as u64).expect("open")
    }

    /// The first segment file in `dir`.
    fn first_segment(dir: &Path) -> PathBuf {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segments.sort();
        segments.remove(0)
    }

    fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
        std::iter::from_fn(|| wal.read().unwrap()).collect()
    }

    #[test]
    fn what_is_not_acknowledged_is_read_again_in_order_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, recovery) = open(dir.path());
            assert_eq!(recovery, Recovery::default());
            let payloads: Vec<Vec<u8>> =
                (0..20).map(|i| format!("record {i:02} {}", "x".repeat(30)).into_bytes()).collect();
            for p in &payloads {
                wal.append(&[p]).unwrap();
            }
            assert!(wal.segments() > 3, "small segments rotate");
            let read = read_all(&wal);
            assert_eq!(read.len(), 20);
            // Delivered: the first 10 and record 12; 10, 11 and 13.. are not.
            for (seq, _) in &read[..10] {
                wal.ack(*seq);
            }
            wal.ack(read[12].0);
            wal.checkpoint().unwrap();
        }
        let (wal, recovery) = open(dir.path());
        assert_eq!(recovery.pending_records, 9);
        let again: Vec<u64> = read_all(&wal).iter().map(|r| r.0).collect();
        let mut expected: Vec<u64> = (10..20).collect();
        expected.retain(|s| *s != 12);
        assert_eq!(again, expected);
        let next = wal.append(&[b"new"]).unwrap();
        assert_eq!(next, 20, "sequence numbers go on from where they were");
    }

    #[test]
    fn delivered_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        for i in 0..50u32 {
            wal.append(&[&[i as u8; 40]]).unwrap();
        }
        let files = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
                .count()
        };
        let before = files();
        for (seq, _) in read_all(&wal) {
            wal.ack(seq);
        }
        let freed = wal.checkpoint().unwrap();
        assert!(freed > 0);
        assert_eq!(files(), 1, "only the segment being written stays (was {before})");
        drop(wal);
        let (_, recovery) = open(dir.path());
        assert_eq!(recovery.pending_records, 0);
        assert_eq!(files(), 0, "a segment with nothing pending is deleted at open");
    }

    #[test]
    fn records_given_back_are_read_again_first_and_keep_their_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        for i in 0..20u32 {
            wal.append(&[&[i as u8; 40]]).unwrap();
        }
        let first: Vec<u64> = (0..3).map(|_| wal.read().unwrap().unwrap().0).collect();
        assert_eq!(first, [0, 1, 2]);
        // 0 is delivered; 1 and 2 come back unsent; later records are acknowledged meanwhile.
        wal.ack(0);
        wal.give_back(2);
        wal.give_back(1);
        let (seq, payload) = wal.read().unwrap().unwrap();
        assert_eq!((seq, payload), (1, vec![1u8; 40]));
        assert_eq!(wal.read().unwrap().unwrap().0, 2);
        assert_eq!(wal.read().unwrap().unwrap().0, 3);
        wal.give_back(1);
        for seq in 2..4 {
            wal.ack(seq);
        }
        // Record 1 is still owed: its segment is kept, and a restart reads it again.
        wal.checkpoint().unwrap();
        drop(wal);
        let (wal, recovery) = open(dir.path());
        assert_eq!(recovery.pending_records, 17, "1 and 4..20");
        assert_eq!(read_all(&wal).first().map(|r| r.0), Some(1));
    }

    #[test]
    fn sequence_numbers_are_never_reused_after_segments_the_acks_name_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = open(dir.path());
            for i in 0..10u32 {
                wal.append(&[&[i as u8; 40]]).unwrap();
            }
            for (seq, _) in read_all(&wal) {
                if seq != 1 {
                    wal.ack(seq);
                }
            }
            wal.checkpoint().unwrap();
        }
        // A run that deletes the delivered segments at open and acknowledges nothing.
        drop(open(dir.path()));
        let (wal, recovery) = open(dir.path());
        assert_eq!(recovery.pending_records, 1);
        let new = wal.append(&[b"new"]).unwrap();
        assert!(new >= 10, "a fresh number, not one the acknowledgements name: {new}");
        let read: Vec<u64> = read_all(&wal).into_iter().map(|r| r.0).collect();
        assert_eq!(read, vec![1, new]);
    }

    #[test]
    fn damage_found_while_reading_skips_only_to_the_next_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default();
        let (wal, _) = Wal::open(dir.path(), options, |p| p.len() as u64).unwrap();
        for i in 0..5u8 {
            wal.append(&[&[i; 40]]).unwrap();
        }
        // The third record's header is damaged after it was written.
        let segment = first_segment(dir.path());
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[2 * (frame::HEADER + 40)] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();
        let read: Vec<u64> = read_all(&wal).into_iter().map(|r| r.0).collect();
        assert_eq!(read, vec![0, 1, 3, 4]);
        assert_eq!(wal.damaged_on_read(), 1);
    }

    #[test]
    fn segments_left_by_an_earlier_run_are_deleted_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = open(dir.path());
            for i in 0..10u8 {
                wal.append(&[&[i; 40]]).unwrap();
            }
        }
        let (wal, recovery) = open(dir.path());
        assert_eq!(recovery.pending_records, 10);
        for (seq, _) in read_all(&wal) {
            wal.ack(seq);
        }
        wal.checkpoint().unwrap();
        assert_eq!(wal.segments(), 0, "nothing is being written: every delivered segment goes");
        assert_eq!(wal.append(&[b"more"]).unwrap(), 10);
        assert_eq!(read_all(&wal).len(), 1);
    }

    #[test]
    fn a_torn_tail_and_flipped_bytes_cost_only_the_records_they_hit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let options = Options { segment_bytes: 1 << 20, ..Default::default() };
            let (wal, _) = Wal::open(dir.path(), options, |_| 1).unwrap();
            for i in 0..10u8 {
                wal.append(&[&[i; 100]]).unwrap();
            }
        }
        let segment = first_segment(dir.path());
        let mut bytes = std::fs::read(&segment).unwrap();
        let record = frame::HEADER + 100;
        bytes[3 * record + frame::HEADER + 50] ^= 0xff; // record 3's payload
        bytes.truncate(bytes.len() - 30); // record 9 torn
        std::fs::write(&segment, &bytes).unwrap();
        let (wal, recovery) = Wal::open(dir.path(), Options::default(), |_| 1).unwrap();
        assert_eq!(recovery.pending_records, 8);
        assert_eq!(recovery.damaged_ranges, 2);
        assert_eq!(recovery.tails_cut, 1);
        let seqs: Vec<u64> = read_all(&wal).iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![0, 1, 2, 4, 5, 6, 7, 8]);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), 9 * record as u64, "the torn tail is cut");
        assert_eq!(wal.append(&[b"after"]).unwrap(), 9, "the torn record's number is used again");
    }

    #[test]
    fn a_second_opener_of_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path());
        let options = Options { lock_timeout: Duration::from_millis(50), ..Default::default() };
        let second = Wal::open(dir.path(), options, |_| 0);
        assert!(second.err().is_some_and(|e| e.contains("in use")));
    }
}
