//! One file being tailed: reads what was appended since the last poll through the file's own
//! descriptor (so a renamed or deleted file is still read to its end), cuts it into lines,
//! and assembles log entries from them — container partial lines joined, multiline entries
//! gathered — keeping, for every entry, the file offset just after it.

use super::config::ContainerFormat;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// How one file's lines become entries (the receiver's settings, shared by every reader).
pub struct Rules {
    pub max_log_size: usize,
    pub container: Option<ContainerFormat>,
    pub line_start: Option<regex::bytes::Regex>,
    pub line_end: Option<regex::bytes::Regex>,
    pub force_flush_period: Duration,
}

/// A finished log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub body: Vec<u8>,
    /// Nanoseconds since the epoch, from a container log line (0 when the line has none).
    pub time: u64,
    pub stream: Option<String>,
    /// The file offset where the entry began.
    pub start: u64,
}

/// What went wrong with a line, for the receiver's bad-input counters.
#[derive(Debug, PartialEq)]
pub enum Problem {
    /// A line longer than `max_log_size`, cut into pieces.
    TooLong,
    /// A line that is not in the container log format; taken whole as the body.
    NotContainerFormat(String),
}

/// An entry being assembled from several lines.
struct Pending {
    entry: Entry,
    /// The offset just after its last line.
    end: u64,
}

pub struct Reader {
    pub id: u64,
    pub path: String,
    /// Device and inode: the file's identity while it is open.
    pub key: (u64, u64),
    pub fingerprint: Vec<u8>,
    file: File,
    /// Bytes taken from the file so far.
    pub read_offset: u64,
    /// Bytes of an unfinished line, starting at `read_offset - buf.len()`.
    buf: Vec<u8>,
    grew_at: Instant,
    pending: Option<Pending>,
    /// Everything before this offset has been handed out as entries (or was empty lines).
    pub done_offset: u64,
    /// Whether the last poll found the file under the include globs.
    pub seen: bool,
    /// The end of the last batch submitted (the checkpoint moves up to it once delivered).
    pub sent_offset: u64,
    /// What the operators hold of this file (recombine's entries being gathered).
    pub ops: super::operators::State,
}

impl Reader {
    pub fn open(id: u64, path: &str, key: (u64, u64), fingerprint: Vec<u8>, offset: u64) -> std::io::Result<Reader> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Reader {
            id,
            path: path.to_string(),
            key,
            fingerprint,
            file,
            read_offset: offset,
            buf: Vec::new(),
            grew_at: Instant::now(),
            pending: None,
            done_offset: offset,
            seen: true,
            sent_offset: offset,
            ops: Default::default(),
        })
    }

    /// How long since the file last grew.
    pub fn unchanged_for(&self) -> std::time::Duration {
        self.grew_at.elapsed()
    }

    /// Reads up to `max` new bytes; finished entries go to `out`, problems to `problems`.
    /// Returns how many bytes were read (0 at the end of the file).
    pub fn read(
        &mut self,
        rules: &Rules,
        max: usize,
        out: &mut Vec<Entry>,
        problems: &mut Vec<Problem>,
    ) -> std::io::Result<usize> {
        let start = self.buf.len();
        self.buf.resize(start + max, 0);
        let n = match self.file.read(&mut self.buf[start..]) {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e);
            }
        };
        self.buf.truncate(start + n);
        if n == 0 {
            return Ok(0);
        }
        self.read_offset += n as u64;
        self.grew_at = Instant::now();
        let buf_start = self.read_offset - self.buf.len() as u64;
        let mut consumed = 0;
        let buf = std::mem::take(&mut self.buf);
        // Complete lines, and pieces of over-long ones.
        loop {
            let rest = &buf[consumed..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= rules.max_log_size => {
                    let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]);
                    let end = buf_start + (consumed + i + 1) as u64;
                    self.line(line, end, rules, out, problems);
                    consumed += i + 1;
                }
                _ if rest.len() > rules.max_log_size => {
                    problems.push(Problem::TooLong);
                    let end = buf_start + (consumed + rules.max_log_size) as u64;
                    self.line(&rest[..rules.max_log_size], end, rules, out, problems);
                    consumed += rules.max_log_size;
                }
                _ => break,
            }
        }
        self.buf = buf;
        self.buf.drain(..consumed);
        Ok(n)
    }

    /// Hands out what has waited longer than `force_flush_period` without the file growing:
    /// an unterminated last line, and an entry still being assembled. `now` ends the file
    /// (it was deleted or rotated away): everything goes.
    pub fn flush_stale(&mut self, rules: &Rules, now: bool, out: &mut Vec<Entry>, problems: &mut Vec<Problem>) {
        if !now && self.grew_at.elapsed() < rules.force_flush_period {
            return;
        }
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            let line = line.strip_suffix(b"\r").unwrap_or(&line).to_vec();
            self.line(&line, self.read_offset, rules, out, problems);
        }
        self.emit_pending(out);
    }

    fn line(&mut self, line: &[u8], end: u64, rules: &Rules, out: &mut Vec<Entry>, problems: &mut Vec<Problem>) {
        let mut entry = Entry { body: line.to_vec(), time: 0, stream: None, start: 0 };
        let mut complete = true;
        if let Some(format) = rules.container {
            let text = String::from_utf8_lossy(line);
            match super::container::parse(&text, format) {
                Ok(l) => {
                    complete = l.complete;
                    entry = Entry { body: l.text.into_bytes(), time: l.time, stream: Some(l.stream), start: 0 };
                }
                Err(e) => problems.push(Problem::NotContainerFormat(e)),
            }
            // A partial line continues the pending one; a line ends it.
            match self.pending.as_mut() {
                Some(p) => {
                    p.entry.body.extend_from_slice(&entry.body);
                    p.end = end;
                }
                None => self.pending = Some(Pending { entry, end }),
            }
            if complete || self.pending.as_ref().is_some_and(|p| p.entry.body.len() >= rules.max_log_size) {
                self.emit_pending(out);
                self.done_offset = end;
            }
            return;
        }
        if let Some(start) = &rules.line_start {
            if start.is_match(line) {
                self.emit_pending(out);
                self.pending = Some(Pending { entry, end });
            } else {
                match self.pending.as_mut() {
                    Some(p) if p.entry.body.len() + line.len() < rules.max_log_size => {
                        p.entry.body.push(b'\n');
                        p.entry.body.extend_from_slice(line);
                        p.end = end;
                    }
                    Some(_) => {
                        self.emit_pending(out);
                        self.pending = Some(Pending { entry, end });
                    }
                    None => self.pending = Some(Pending { entry, end }),
                }
            }
            if self.pending.is_none() {
                self.done_offset = end;
            }
            return;
        }
        if let Some(stop) = &rules.line_end {
            match self.pending.as_mut() {
                Some(p) => {
                    p.entry.body.push(b'\n');
                    p.entry.body.extend_from_slice(line);
                    p.end = end;
                }
                None => self.pending = Some(Pending { entry, end }),
            }
            if stop.is_match(line) || self.pending.as_ref().is_some_and(|p| p.entry.body.len() >= rules.max_log_size) {
                self.emit_pending(out);
                self.done_offset = end;
            }
            return;
        }
        if !line.is_empty() {
            entry.start = self.done_offset;
            out.push(entry);
        }
        self.done_offset = end;
    }

    /// Hands out the entry being assembled: it began where everything before was done.
    fn emit_pending(&mut self, out: &mut Vec<Entry>) {
        if let Some(mut p) = self.pending.take() {
            p.entry.start = self.done_offset;
            self.done_offset = p.end;
            out.push(p.entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rules() -> Rules {
        Rules {
            max_log_size: 64,
            container: None,
            line_start: None,
            line_end: None,
            force_flush_period: Duration::from_millis(500),
        }
    }

    fn bodies(e: &[Entry]) -> Vec<String> {
        e.iter().map(|e| String::from_utf8_lossy(&e.body).into_owned()).collect()
    }

    fn read_all(r: &mut Reader, rules: &Rules) -> (Vec<Entry>, Vec<Problem>) {
        let (mut out, mut problems) = (Vec::new(), Vec::new());
        while r.read(rules, 7, &mut out, &mut problems).unwrap() > 0 {}
        (out, problems)
    }

    #[test]
    fn lines_offsets_and_an_unfinished_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "one\r\ntwo\n\nthr").unwrap();
        let mut r = Reader::open(1, p.to_str().unwrap(), (0, 0), Vec::new(), 0).unwrap();
        let (out, _) = read_all(&mut r, &rules());
        assert_eq!(bodies(&out), ["one", "two"]);
        assert_eq!(r.done_offset, 10, "after the empty line, before the unfinished one");
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"ee\n").unwrap();
        let (out, _) = read_all(&mut r, &rules());
        assert_eq!(bodies(&out), ["three"]);
        assert_eq!(r.done_offset, 16);
    }

    #[test]
    fn an_over_long_line_is_cut_into_pieces_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, format!("{}\nshort\n", "x".repeat(150))).unwrap();
        let mut r = Reader::open(1, p.to_str().unwrap(), (0, 0), Vec::new(), 0).unwrap();
        let (out, problems) = read_all(&mut r, &rules());
        assert_eq!(out.iter().map(|e| e.body.len()).collect::<Vec<_>>(), [64, 64, 22, 5]);
        assert_eq!(problems, [Problem::TooLong, Problem::TooLong]);
    }

    #[test]
    fn multiline_by_start_pattern_and_the_forced_flush() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "2024 start\n  at a\n  at b\n2024 next\n").unwrap();
        let rules =
            Rules { line_start: Some(regex::bytes::Regex::new(r"^\d{4} ").unwrap()), max_log_size: 1000, ..rules() };
        let mut r = Reader::open(1, p.to_str().unwrap(), (0, 0), Vec::new(), 0).unwrap();
        let (mut out, mut problems) = read_all(&mut r, &rules);
        assert_eq!(bodies(&out), ["2024 start\n  at a\n  at b"]);
        assert_eq!(r.done_offset, 25, "the entry still being gathered is not done");
        r.flush_stale(&rules, true, &mut out, &mut problems);
        assert_eq!(bodies(&out)[1], "2024 next");
        assert_eq!(r.done_offset, 35);
    }

    #[test]
    fn cri_partial_lines_are_joined() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2024-03-01T10:00:00Z stdout P hello \n2024-03-01T10:00:00Z stdout F world\n2024-03-01T10:00:01Z stderr F bye\n",
        )
        .unwrap();
        let rules = Rules { container: Some(ContainerFormat::Auto), max_log_size: 1000, ..rules() };
        let mut r = Reader::open(1, p.to_str().unwrap(), (0, 0), Vec::new(), 0).unwrap();
        let (out, problems) = read_all(&mut r, &rules);
        assert!(problems.is_empty());
        assert_eq!(bodies(&out), ["hello world", "bye"]);
        assert_eq!(out[1].stream.as_deref(), Some("stderr"));
        assert_eq!(out[0].time, 1_709_287_200_000_000_000);
    }
}
