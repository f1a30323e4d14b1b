//! Read offsets that survive restarts: for every file, its fingerprint (first bytes) and the
//! offset up to which everything read has been delivered. Kept as one JSON file in the
//! `file_storage` directory, replaced atomically (write, then rename) each time an offset
//! moves. An offset moves only when the batches up to it are done with (`pipeline::Delivery`),
//! in order, so after a restart — clean or `kill -9` — reading resumes after the last delivered
//! line: nothing is lost, and only batches that were still in flight are read again.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

/// A file remembered from an earlier run, waiting to be recognised by its fingerprint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Known {
    pub path: String,
    #[serde(with = "hex")]
    pub fingerprint: Vec<u8>,
    pub offset: u64,
    /// Complete polls since it was remembered without its file turning up.
    #[serde(skip)]
    pub unmatched_polls: u32,
}

mod hex {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::hexfmt::hex(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        (0..t.len() / 2)
            .map(|i| u8::from_str_radix(t.get(2 * i..2 * i + 2).unwrap_or(""), 16))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    files: Vec<Known>,
}

/// One file being read: its delivered offset and the batches in flight, oldest first.
struct Track {
    path: String,
    fingerprint: Vec<u8>,
    committed: u64,
    /// (sequence, end offset, delivered)
    in_flight: VecDeque<(u64, u64, bool)>,
    next_seq: u64,
    closed: bool,
}

pub struct Checkpoints {
    file: Option<PathBuf>,
    /// Sync each new file (and its directory) to disk before and after the rename.
    pub fsync: bool,
    tracks: BTreeMap<u64, Track>,
    /// Files from the last run not seen yet.
    pub restored: Vec<Known>,
}

impl Checkpoints {
    /// Reads the saved offsets (none when there is no storage or no file yet).
    pub fn load(file: Option<PathBuf>) -> Result<Checkpoints, String> {
        let mut restored = Vec::new();
        if let Some(f) = &file {
            match std::fs::read(f) {
                Ok(bytes) => {
                    let saved: Saved = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("checkpoint file {} is unreadable: {e}", f.display()))?;
                    restored = saved.files;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read checkpoint file {}: {e}", f.display())),
            }
        }
        Ok(Checkpoints { file, fsync: false, tracks: BTreeMap::new(), restored })
    }

    pub fn is_empty(&self) -> bool {
        self.restored.is_empty() && self.tracks.is_empty()
    }

    /// A file starts being read at `offset`.
    pub fn open(&mut self, id: u64, path: &str, fingerprint: &[u8], offset: u64) {
        let track = Track {
            path: path.to_string(),
            fingerprint: fingerprint.to_vec(),
            committed: offset,
            in_flight: VecDeque::new(),
            next_seq: 0,
            closed: false,
        };
        self.tracks.insert(id, track);
        self.save();
    }

    /// The file grew into a longer fingerprint, or was renamed.
    pub fn describe(&mut self, id: u64, path: &str, fingerprint: &[u8]) {
        if let Some(t) = self.tracks.get_mut(&id) {
            t.path = path.to_string();
            t.fingerprint = fingerprint.to_vec();
        }
    }

    /// A batch ending at `end` is being submitted; returns its sequence number.
    pub fn sent(&mut self, id: u64, end: u64) -> u64 {
        let Some(t) = self.tracks.get_mut(&id) else { return 0 };
        let seq = t.next_seq;
        t.next_seq += 1;
        t.in_flight.push_back((seq, end, false));
        seq
    }

    /// The batch `seq` of file `id` is done with: the offset moves past every delivered batch
    /// that has no undelivered one before it.
    pub fn delivered(&mut self, id: u64, seq: u64) {
        let Some(t) = self.tracks.get_mut(&id) else { return };
        if let Some(entry) = t.in_flight.iter_mut().find(|e| e.0 == seq) {
            entry.2 = true;
        }
        let mut moved = false;
        while let Some(&(_, end, true)) = t.in_flight.front() {
            t.committed = t.committed.max(end);
            t.in_flight.pop_front();
            moved = true;
        }
        if t.closed && t.in_flight.is_empty() {
            self.tracks.remove(&id);
        }
        if moved {
            self.save();
        }
    }

    /// The file is no longer read (deleted, rotated away, truncated); forgotten once its
    /// batches in flight are done.
    pub fn close(&mut self, id: u64) {
        if let Some(t) = self.tracks.get_mut(&id) {
            t.closed = true;
            if t.in_flight.is_empty() {
                self.tracks.remove(&id);
                self.save();
            }
        }
    }

    /// After a poll that looked at every matching file: remembered files that have not turned
    /// up for `polls` such polls are gone (deleted while switchyard was down, or a truncated
    /// file's copy that never appeared) and are forgotten, so the checkpoint does not grow with
    /// every file a node ever had.
    pub fn age_restored(&mut self, polls: u32) {
        let before = self.restored.len();
        self.restored.retain_mut(|k| {
            k.unmatched_polls += 1;
            if k.unmatched_polls < polls {
                return true;
            }
            tracing::info!(path = %k.path, offset = k.offset, "filelog: forgetting the checkpoint of a file that is gone");
            false
        });
        if self.restored.len() != before {
            self.save();
        }
    }

    /// Batches submitted and not yet done with, over all files.
    pub fn in_flight(&self) -> usize {
        self.tracks.values().map(|t| t.in_flight.len()).sum()
    }

    /// The offset of `id` that is safe to resume from.
    #[cfg(test)]
    pub fn committed(&self, id: u64) -> Option<u64> {
        self.tracks.get(&id).map(|t| t.committed)
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let files: Vec<Known> = self
            .tracks
            .values()
            .filter(|t| !t.fingerprint.is_empty())
            .map(|t| Known {
                path: t.path.clone(),
                fingerprint: t.fingerprint.clone(),
                offset: t.committed,
                ..Default::default()
            })
            .chain(self.restored.iter().cloned())
            .collect();
        let text = serde_json::to_vec(&Saved { version: 1, files }).unwrap_or_default();
        let tmp = file.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &text)?;
            if self.fsync {
                f.sync_all()?;
            }
            std::fs::rename(&tmp, file)?;
            if self.fsync
                && let Some(dir) = file.parent()
            {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        let result = write();
        if let Err(e) = result {
            tracing::error!(file = %file.display(), error = %e, "cannot write the filelog checkpoint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_only_past_batches_delivered_in_order_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.json");
        let mut cp = Checkpoints::load(Some(file.clone())).unwrap();
        cp.open(7, "/logs/a.log", b"first line", 0);
        let a = cp.sent(7, 100);
        let b = cp.sent(7, 250);
        cp.delivered(7, b);
        assert_eq!(cp.committed(7), Some(0), "the earlier batch is still in flight");
        cp.delivered(7, a);
        assert_eq!(cp.committed(7), Some(250));
        let again = Checkpoints::load(Some(file)).unwrap();
        assert_eq!(
            again.restored,
            vec![Known {
                path: "/logs/a.log".into(),
                fingerprint: b"first line".to_vec(),
                offset: 250,
                ..Default::default()
            }]
        );
    }

    #[test]
    fn remembered_files_that_never_turn_up_are_forgotten_after_three_polls() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.json");
        let mut cp = Checkpoints::load(Some(file.clone())).unwrap();
        cp.open(1, "/logs/gone.log", b"gone", 0);
        cp.close(1);
        cp.open(2, "/logs/here.log", b"here", 5);
        let mut again = Checkpoints::load(Some(file.clone())).unwrap();
        assert_eq!(again.restored.len(), 1, "only the open file was saved");
        again.restored.push(Known {
            path: "/logs/gone.log".into(),
            fingerprint: b"gone".to_vec(),
            ..Default::default()
        });
        again.age_restored(3);
        again.age_restored(3);
        assert_eq!(again.restored.len(), 2, "two polls: still remembered");
        again.restored.retain(|k| k.path != "/logs/here.log"); // matched by its file, as poll does
        again.age_restored(3);
        assert!(again.restored.is_empty(), "the third poll forgets it");
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(saved["files"].as_array().unwrap().len(), 0, "{saved}");
    }

    #[test]
    fn a_closed_file_is_forgotten_once_its_batches_are_done() {
        let mut cp = Checkpoints::load(None).unwrap();
        cp.open(1, "a", b"x", 0);
        let s = cp.sent(1, 10);
        cp.close(1);
        assert_eq!(cp.committed(1), Some(0));
        cp.delivered(1, s);
        assert_eq!(cp.committed(1), None);
        assert!(cp.is_empty());
    }
}
