//! The `filelog` receiver: tails files matched by globs (PROTOCOLS.md §5, the collector's
//! `filelog`), plain or in Kubernetes container log formats, following rotation by rename and
//! by copy-truncate, with read offsets kept in a `file_storage` directory and moved only once
//! the data is delivered (see `checkpoint`); each entry then goes through the configured
//! operators (parsers, transformers, recombine, router: see `operators`).

mod checkpoint;
pub mod config;
mod container;
pub mod operators;
mod reader;

use crate::attributes::{kv, string};
use crate::pipeline::{Batch, Intake, Request};
use crate::receivers::bad_input::BadInput;
use checkpoint::Checkpoints;
pub use config::FileLogConfig;
use config::{Encoding, StartAt};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use operators::{Failure, Output, Pipeline, Record};
use reader::{Entry, Problem, Reader, Rules};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a file that left the globs is kept open after it last grew.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Entries per submitted batch, and bytes read from one file before a batch is sent.
const BATCH_ENTRIES: usize = 1000;
const READ_CHUNK: usize = 256 * 1024;
/// Batches read ahead of delivery. The files are the buffer: reading further ahead than the
/// exporters go would only fill memory (the queues would take up to `queue_size` batches).
const MAX_IN_FLIGHT: usize = 16;

/// Starts tailing; `storage` is the directory of the `file_storage` extension named by
/// `storage`, if any, and whether it syncs its files.
pub async fn start(
    cfg: FileLogConfig,
    storage: Option<(PathBuf, bool)>,
    intake: Arc<Intake>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    let fsync = storage.as_ref().is_some_and(|s| s.1);
    let file = storage.map(|(dir, _)| dir.join(format!("receiver_filelog_{}.json", sanitize(intake.receiver()))));
    let mut checkpoints = Checkpoints::load(file)?;
    checkpoints.fsync = fsync;
    let multiline = cfg.multiline.clone().unwrap_or_default();
    let regex = |p: &Option<String>| p.as_deref().map(regex::bytes::Regex::new).transpose().map_err(|e| e.to_string());
    let rules = Rules {
        max_log_size: cfg.max_log_size as usize,
        container: cfg.container().map(|c| c.0),
        line_start: regex(&multiline.line_start_pattern)?,
        line_end: regex(&multiline.line_end_pattern)?,
        force_flush_period: cfg.force_flush_period,
    };
    let pipeline = Pipeline::build(&cfg.operators).map_err(|(k, e)| format!("{k}: {e}"))?.map(Arc::new);
    let first_start = checkpoints.is_empty();
    let tailer = Tailer {
        bad: BadInput::new(intake.clone(), "file"),
        cfg,
        rules,
        pipeline,
        checkpoints: Arc::new(Mutex::new(checkpoints)),
        readers: BTreeMap::new(),
        next_id: 0,
        first_poll: first_start,
        intake,
        runtime: tokio::runtime::Handle::current(),
        stop,
    };
    tracing::info!(receiver = tailer.intake.receiver(), include = ?tailer.cfg.include, "filelog tailing");
    Ok(vec![tokio::task::spawn_blocking(move || tailer.run())])
}

fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

struct Tailer {
    cfg: FileLogConfig,
    rules: Rules,
    /// The operators after `container`, if any.
    pipeline: Option<Arc<Pipeline>>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    readers: BTreeMap<u64, Reader>,
    next_id: u64,
    /// Files found by the first poll of a first start are read from `start_at`.
    first_poll: bool,
    intake: Arc<Intake>,
    bad: BadInput,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
}

/// `stored` (a fingerprint saved earlier, possibly shorter) is the start of `fingerprint`.
fn same_file(stored: &[u8], fingerprint: &[u8]) -> bool {
    !stored.is_empty() && fingerprint.starts_with(stored)
}

impl Tailer {
    fn checkpoints(&self) -> std::sync::MutexGuard<'_, Checkpoints> {
        self.checkpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(mut self) {
        while !self.stop.is_cancelled() {
            let began = Instant::now();
            self.poll();
            let wait = self.cfg.poll_interval.saturating_sub(began.elapsed());
            let until = Instant::now() + wait;
            while Instant::now() < until && !self.stop.is_cancelled() {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
            }
        }
    }

    /// The regular files matched now: (path, device and inode, size).
    fn list(&self) -> Vec<(String, (u64, u64), u64)> {
        let excluded: Vec<glob::Pattern> = self.cfg.exclude.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
        let mut found = Vec::new();
        for pattern in &self.cfg.include {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                if excluded.iter().any(|e| e.matches_path(&path)) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                let text = path.to_string_lossy().into_owned();
                if !found.iter().any(|(p, _, _): &(String, _, _)| *p == text) {
                    found.push((text, (meta.dev(), meta.ino()), meta.len()));
                }
            }
        }
        found
    }

    fn fingerprint(&self, path: &str) -> Vec<u8> {
        let mut fp = Vec::new();
        if let Ok(f) = std::fs::File::open(path) {
            let _ = f.take(self.cfg.fingerprint_size).read_to_end(&mut fp);
        }
        fp
    }

    fn poll(&mut self) {
        let files = self.list();
        for r in self.readers.values_mut() {
            r.seen = false;
        }
        // Files already open: renamed ones keep their reader; a file shorter than what was read
        // was truncated (copy-truncate): its reader ends, its content is a new file.
        let mut new_files = Vec::new();
        for (path, key, size) in files {
            let Some(id) = self.readers.values().find(|r| r.key == key).map(|r| r.id) else {
                new_files.push((path, key, size));
                continue;
            };
            // Shorter than what was read, or other first bytes: truncated (and perhaps written again).
            let truncated = self.readers.get(&id).is_some_and(|r| {
                let fp = self.fingerprint(&path);
                let n = fp.len().min(r.fingerprint.len());
                size < r.read_offset || fp[..n] != r.fingerprint[..n]
            });
            if truncated {
                let mut r = self.readers.remove(&id).expect("reader");
                tracing::info!(receiver = self.intake.receiver(), path = %r.path, "file was truncated; reading it from the start");
                if r.ops.holds() {
                    // What recombine gathered of the old content goes now.
                    self.send(&mut r, Vec::new(), true);
                }
                // Its copy (if the glob finds one) continues where this reader's delivered lines end.
                let mut cp = self.checkpoints();
                cp.restored.push(checkpoint::Known {
                    path: r.path.clone(),
                    fingerprint: r.fingerprint.clone(),
                    offset: r.done_offset,
                    ..Default::default()
                });
                cp.close(id);
                drop(cp);
                new_files.push((path, key, size));
                continue;
            }
            if let Some(r) = self.readers.get_mut(&id) {
                r.seen = true;
                if r.path != path {
                    r.path = path;
                }
            }
        }
        let mut every_file_looked_at = true;
        for (path, key, size) in new_files {
            if self.readers.len() >= self.cfg.max_concurrent_files {
                self.bad.warn("max_concurrent_files", "more files match than max_concurrent_files; the rest wait");
                every_file_looked_at = false;
                break;
            }
            let fingerprint = self.fingerprint(&path);
            if fingerprint.is_empty() {
                continue; // nothing to recognise it by yet
            }
            let checkpoints = self.checkpoints.clone();
            let mut cp = checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            let offset = if let Some(i) =
                cp.restored.iter().position(|k| same_file(&k.fingerprint, &fingerprint) && k.offset <= size)
            {
                cp.restored.remove(i).offset
            } else if let Some(r) =
                self.readers.values().find(|r| same_file(&r.fingerprint, &fingerprint) && size >= r.done_offset)
            {
                r.done_offset // a copy of a file being read: only what it has beyond
            } else if self.first_poll && self.cfg.start_at == StartAt::End {
                size
            } else {
                0
            };
            let id = self.next_id;
            self.next_id += 1;
            match Reader::open(id, &path, key, fingerprint.clone(), offset) {
                Ok(r) => {
                    cp.open(id, &path, &fingerprint, offset);
                    self.readers.insert(id, r);
                }
                Err(e) => self.bad.warn("unreadable", &format!("cannot open {path}: {e}")),
            }
        }
        self.first_poll = false;
        if every_file_looked_at {
            self.checkpoints().age_restored(3);
        }
        let ids: Vec<u64> = self.readers.keys().copied().collect();
        for id in ids {
            if self.stop.is_cancelled() {
                return;
            }
            self.read_file(id);
        }
    }

    /// Reads one file to its end, sending batches on the way.
    fn read_file(&mut self, id: u64) {
        let Some(mut r) = self.readers.remove(&id) else { return };
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        let mut ended = false;
        loop {
            match r.read(&self.rules, READ_CHUNK, &mut entries, &mut problems) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.bad.warn("unreadable", &format!("cannot read {}: {e}", r.path));
                    ended = true;
                    break;
                }
            }
            self.report(&r, &mut problems);
            if entries.len() >= BATCH_ENTRIES && !self.send(&mut r, std::mem::take(&mut entries), false) {
                // Stopping: what was read is not delivered, so its offset was not saved.
                self.readers.insert(id, r);
                return;
            }
        }
        // A file no longer under the globs (deleted, or renamed away by rotation) is read to its
        // end at every poll while its writer may still be writing to it (it may not have
        // reopened the path yet), and closed once nothing new has come for `LINGER` (and two
        // polls), so a writer that pauses briefly right after the rotation loses nothing.
        let linger = LINGER.max(self.cfg.poll_interval * 2);
        let gone = ended || (!r.seen && r.unchanged_for() >= linger);
        r.flush_stale(&self.rules, gone, &mut entries, &mut problems);
        self.report(&r, &mut problems);
        if (!entries.is_empty() || r.ops.holds()) && !self.send(&mut r, entries, gone) {
            self.readers.insert(id, r);
            return;
        }
        // Keep the fingerprint growing up to its size, so that files with a common start are told apart.
        if (r.fingerprint.len() as u64) < self.cfg.fingerprint_size && r.read_offset > r.fingerprint.len() as u64 {
            let fp = self.fingerprint(&r.path);
            if fp.starts_with(&r.fingerprint) {
                r.fingerprint = fp;
                self.checkpoints().describe(r.id, &r.path, &r.fingerprint);
            }
        }
        if gone {
            self.checkpoints().close(r.id);
        } else {
            self.readers.insert(id, r);
        }
    }

    fn report(&self, r: &Reader, problems: &mut Vec<Problem>) {
        for p in problems.drain(..) {
            match p {
                Problem::TooLong => self.bad.report(
                    "too_large",
                    &format!(
                        "a line in {} is longer than max_log_size ({} bytes); it was cut into pieces",
                        r.path, self.cfg.max_log_size
                    ),
                ),
                Problem::NotContainerFormat(e) => {
                    self.bad.report("malformed", &format!("{}: {e}; taken as it is", r.path))
                }
            }
        }
    }

    fn record(&self, r: &Reader, e: Entry, observed: u64) -> LogRecord {
        let body = match self.cfg.encoding {
            Encoding::Nop => any_value::Value::BytesValue(e.body),
            Encoding::Utf8 | Encoding::Utf8Raw | Encoding::Ascii => match String::from_utf8(e.body) {
                Ok(s) => any_value::Value::StringValue(s),
                Err(bad) => {
                    self.bad.report(
                        "invalid_utf8",
                        &format!("a line in {} is not valid UTF-8; invalid bytes replaced by U+FFFD", r.path),
                    );
                    any_value::Value::StringValue(String::from_utf8_lossy(bad.as_bytes()).into_owned())
                }
            },
        };
        let mut attributes = Vec::new();
        if self.cfg.include_file_name {
            let name = r.path.rsplit('/').next().unwrap_or(&r.path);
            attributes.push(kv("log.file.name", string(name)));
        }
        if self.cfg.include_file_path {
            attributes.push(kv("log.file.path", string(&r.path)));
        }
        if let Some(stream) = e.stream {
            attributes.push(kv("log.iostream", string(&stream)));
        }
        LogRecord {
            time_unix_nano: e.time,
            observed_time_unix_nano: observed,
            body: Some(AnyValue { value: Some(body) }),
            attributes,
            ..Default::default()
        }
    }

    /// Counts and logs (at most once a second) what the operators failed on.
    fn failed(&self, r: &Reader, failures: Vec<Failure>) {
        for f in failures {
            if f.quiet {
                self.intake.invalid_request("file", "operator_error");
                tracing::debug!(receiver = self.intake.receiver(), operator = %f.operator, path = %r.path, "{}", f.message);
            } else {
                self.bad.report("operator_error", &format!("{}: operator {}: {}", r.path, f.operator, f.message));
            }
        }
    }

    /// Submits `entries` read from `r` (everything up to `r.done_offset`, less what the
    /// operators still hold), after the operators, waiting while the pipelines refuse for lack
    /// of room. `flush_all`: the operators let go of everything they hold. False when stopping
    /// cut it short.
    fn send(&self, r: &mut Reader, entries: Vec<Entry>, flush_all: bool) -> bool {
        let observed = now_ns();
        let resource: Arc<Vec<KeyValue>> = Arc::new(match self.cfg.container() {
            Some((_, true)) => container::path_metadata(&r.path),
            _ => Vec::new(),
        });
        let resource_logs = match &self.pipeline {
            None => {
                let records: Vec<LogRecord> = entries.into_iter().map(|e| self.record(r, e, observed)).collect();
                if records.is_empty() {
                    return true;
                }
                vec![ResourceLogs {
                    resource: Some(Resource { attributes: (*resource).clone(), ..Default::default() }),
                    scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                    ..Default::default()
                }]
            }
            Some(pipeline) => {
                let mut out = Output::default();
                for e in entries {
                    let start = e.start;
                    let log = self.record(r, e, observed);
                    pipeline.run(&mut r.ops, Record { log, resource: resource.clone(), start }, &mut out);
                }
                pipeline.flush(&mut r.ops, Instant::now(), flush_all, &mut out);
                self.failed(r, std::mem::take(&mut out.failures));
                by_resource(out.records)
            }
        };
        // Entries the operators hold are read again after a restart: the offset stops before them.
        let end = r.ops.held_from().map_or(r.done_offset, |h| h.min(r.done_offset));
        if resource_logs.is_empty() {
            // Nothing to deliver (dropped, or held): the offset moves on at once.
            if end > r.sent_offset {
                let mut cp = self.checkpoints();
                let seq = cp.sent(r.id, end);
                cp.delivered(r.id, seq);
                r.sent_offset = end;
            }
            return true;
        }
        let request = ExportLogsServiceRequest { resource_logs };
        let base = Batch::from_request(Request::Logs(request));
        while self.checkpoints().in_flight() >= MAX_IN_FLIGHT {
            if self.stop.is_cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let (id, seq) = (r.id, self.checkpoints().sent(r.id, end));
        r.sent_offset = end;
        loop {
            let checkpoints = self.checkpoints.clone();
            let batch = base.clone().on_delivered(
                self.intake.delivery(move || checkpoints.lock().unwrap_or_else(|p| p.into_inner()).delivered(id, seq)),
            );
            match self.runtime.block_on(self.intake.submit("file", batch)) {
                Ok(()) => return true,
                Err(refusal) if refusal.retryable && !self.stop.is_cancelled() => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(refusal) => {
                    self.bad.warn("refused", &format!("{}: not read further for now: {}", r.path, refusal.message));
                    return false;
                }
            }
        }
    }
}

/// Records in order, one `ResourceLogs` per run of records with the same resource.
fn by_resource(records: Vec<Record>) -> Vec<ResourceLogs> {
    let mut out: Vec<ResourceLogs> = Vec::new();
    let mut last: Option<Arc<Vec<KeyValue>>> = None;
    for r in records {
        let same = last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &r.resource) || **l == *r.resource);
        if !same {
            out.push(ResourceLogs {
                resource: Some(Resource { attributes: (*r.resource).clone(), ..Default::default() }),
                scope_logs: vec![ScopeLogs::default()],
                ..Default::default()
            });
            last = Some(r.resource.clone());
        }
        if let Some(group) = out.last_mut() {
            group.scope_logs[0].log_records.push(r.log);
        }
    }
    out
}

/// The `filelog` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<FileLogConfig>(
    "filelog",
    &[crate::signal::Signal::Logs],
    "tails files: plain lines, multiline, Kubernetes container logs; offsets kept",
);

impl crate::pipeline::component::ReceiverSettings for FileLogConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        FileLogConfig::validate(self).map_err(Into::into)
    }

    fn storage(&self) -> Option<&str> {
        self.storage.as_deref()
    }

    fn overlaps(&self) -> bool {
        false
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.storage, ctx.intake, ctx.stop))
    }
}
