//! The persistent sending queue (`sending_queue.storage`): one write-ahead log per exporter and
//! signal in the storage extension's directory. Batches are appended by a committer thread in
//! groups (everything that arrived while the previous group was written and synced is written
//! next, so no append waits on a timer); once a batch is written its notices run, which is
//! when the receiver answers its client. Consumers read the records back in order, batch them,
//! export them, and acknowledge them; what is not acknowledged when the process ends is read
//! again at the next start.

use super::config::QueueBatchConfig;
use super::gather::Gathering;
use crate::pipeline::component::StorageLocation;
use crate::pipeline::{Batch, Capacity, Claim, Signal};
use crate::telemetry::metrics::Metrics;
use crate::wal::{self, Wal};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A record read back: one batch as it was appended, with what acknowledging it needs.
pub struct Record {
    pub seq: u64,
    pub bytes: usize,
    pub batch: Batch,
}

/// A batch on its way to the log. Dropped before it is written (the writer thread died), its
/// clients are told to retry rather than that it was taken.
struct Unwritten(Option<Batch>);

impl Unwritten {
    fn batch(&self) -> &Batch {
        self.0.as_ref().expect("a batch not yet taken")
    }

    /// Written: the batch goes on its way (its notices run when it is dropped).
    fn written(mut self) -> Batch {
        self.0.take().expect("a batch not yet taken")
    }
}

impl Drop for Unwritten {
    fn drop(&mut self) {
        if let Some(batch) = self.0.as_mut() {
            batch.cancel_deliveries();
        }
    }
}

enum Message {
    Append(Unwritten),
    /// Write the acknowledgements and delete delivered segments.
    Checkpoint,
    /// Answer once everything sent before is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The room claimed by each record not acknowledged yet, by signal index and sequence number.
type HeldClaims = HashMap<(usize, u64), Vec<Arc<Claim>>>;

/// What the committer thread and the consumers share.
struct Shared {
    name: String,
    dir: PathBuf,
    logs: [Wal; 3],
    held: Mutex<HeldClaims>,
    /// The room of what was on disk at start, given back record by record as it is delivered.
    recovered: Mutex<Option<Claim>>,
    appended: Notify,
    pending_items: AtomicI64,
    telemetry: Arc<Metrics>,
}

/// See the module comment. Shared by an exporter's queue and, across a reload that changes the
/// exporter but not its storage, by its successor's.
pub struct Persistent {
    shared: Arc<Shared>,
    capacity: Arc<Capacity>,
    commits: Mutex<std::sync::mpsc::Sender<Message>>,
    /// Raised when a successor takes the queue over: older consumers stop reading.
    generation: AtomicU64,
    /// Fired when the current consumer's turn ends (a successor took over).
    turn_over: Mutex<CancellationToken>,
}

/// A record's payload: the item count, then the OTLP export request.
fn encode(batch: &Batch) -> Vec<u8> {
    let body = batch.to_encoded();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(batch.items() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn items_of(payload: &[u8]) -> u64 {
    payload.get(..4).and_then(|b| b.try_into().ok()).map_or(0, |b| u32::from_le_bytes(b) as u64)
}

/// The directory of `exporter`'s queue under the storage directory (`/` in ids becomes `_`).
pub fn directory(location: &StorageLocation, exporter: &str) -> PathBuf {
    let safe: String =
        exporter.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    location.directory.join(format!("exporter_{safe}"))
}

impl Persistent {
    /// Opens (or creates) the queue of exporter `name` in `location`, bounded by `limit` bytes
    /// on disk; what an earlier run left there is counted and will be sent first.
    pub fn open(
        name: &str,
        location: &StorageLocation,
        limit: usize,
        block: bool,
        telemetry: Arc<Metrics>,
    ) -> Result<Arc<Persistent>, String> {
        let dir = directory(location, name);
        let options = wal::Options { fsync: location.fsync, lock_timeout: location.timeout, ..wal::Options::default() };
        let mut logs = Vec::new();
        let mut pending_bytes = 0u64;
        let mut pending_items = 0u64;
        for signal in Signal::ALL {
            let sdir = dir.join(signal.to_string());
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&sdir)
                .map_err(|e| format!("cannot create {}: {e}", sdir.display()))?;
            let (log, recovery) = Wal::open(&sdir, options.clone(), items_of)?;
            if recovery.damaged_ranges > 0 {
                telemetry.exporter_queue_damaged.with_label_values(&[name]).inc_by(recovery.damaged_ranges);
                tracing::warn!(exporter = name, %signal, damaged_ranges = recovery.damaged_ranges,
                    damaged_bytes = recovery.damaged_bytes, tails_cut = recovery.tails_cut,
                    "persistent queue: damaged records were skipped; the rest will be sent");
            }
            if recovery.pending_records > 0 {
                tracing::info!(exporter = name, %signal, items = recovery.pending_weight, records = recovery.pending_records,
                    directory = %sdir.display(), "persistent queue: sending what an earlier run left on disk");
            }
            pending_bytes += recovery.pending_bytes;
            pending_items += recovery.pending_weight;
            logs.push(log);
        }
        let Ok(logs) = <[Wal; 3]>::try_from(logs) else { unreachable!("three signals") };
        let gauge = telemetry.exporter_queue_size.with_label_values(&[name]);
        let capacity = Capacity::disk(name.to_string(), limit, block, Some(gauge));
        telemetry.exporter_queue_capacity.with_label_values(&[name]).set(limit as i64);
        let recovered = (pending_bytes > 0).then(|| capacity.force_claim(pending_bytes as usize));
        let shared = Arc::new(Shared {
            name: name.to_string(),
            dir,
            logs,
            held: Mutex::new(HashMap::new()),
            recovered: Mutex::new(recovered),
            appended: Notify::new(),
            pending_items: AtomicI64::new(pending_items as i64),
            telemetry,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let committer = shared.clone();
        std::thread::Builder::new()
            .name(format!("queue-{name}"))
            .spawn(move || commit(committer, rx))
            .map_err(|e| format!("cannot start the persistent queue's writer: {e}"))?;
        Ok(Arc::new(Persistent {
            shared,
            capacity,
            commits: Mutex::new(tx),
            generation: AtomicU64::new(0),
            turn_over: Mutex::new(CancellationToken::new()),
        }))
    }

    /// The disk budget receivers claim before data goes this way.
    pub fn capacity(&self) -> Arc<Capacity> {
        self.capacity.clone()
    }

    fn send(&self, message: Message) -> bool {
        self.commits.lock().unwrap_or_else(|p| p.into_inner()).send(message).is_ok()
    }

    /// Appends `batch` (its claims kept until it is delivered); its notices run once it is
    /// written. `false` if the writer is gone.
    pub fn append(&self, batch: Batch) -> bool {
        self.send(Message::Append(Unwritten(Some(batch))))
    }

    /// Waits until everything appended so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.send(Message::Flush(tx)) {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }

    /// Items written and not yet delivered.
    pub fn pending_items(&self) -> i64 {
        self.shared.pending_items.load(Ordering::Acquire)
    }

    pub fn directory(&self) -> &std::path::Path {
        &self.shared.dir
    }

    /// A consumer's turn: from now on, consumers of earlier turns stop reading, and their
    /// token (returned when they took over) fires, so that what they are sending is given back.
    pub fn take_over(&self) -> (u64, CancellationToken) {
        let mut turn = self.turn_over.lock().unwrap_or_else(|p| p.into_inner());
        turn.cancel();
        *turn = CancellationToken::new();
        (self.generation.fetch_add(1, Ordering::AcqRel) + 1, turn.clone())
    }

    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// A future that completes after the next append (or at once if one happened since the
    /// last call).
    pub async fn appended(&self) {
        self.shared.appended.notified().await
    }

    /// The next record of `signal` not read yet.
    pub async fn read(&self, signal: Signal) -> Result<Option<Record>, String> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.read(signal)).await.map_err(|e| e.to_string())?
    }

    /// The next record of any signal, taking the signals in turn from `turn`.
    pub async fn read_any(&self, turn: &mut usize) -> Result<Option<Record>, String> {
        for _ in 0..3 {
            let signal = Signal::ALL[*turn % 3];
            *turn = (*turn + 1) % 3;
            if let Some(r) = self.read(signal).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// `seqs` of `signal` were read but not sent (their consumer stopped): they are read again
    /// first, by whichever consumer reads next.
    pub fn give_back(&self, signal: Signal, seqs: &[u64]) {
        for &seq in seqs {
            self.shared.logs[signal.index()].give_back(seq);
        }
        self.shared.appended.notify_one();
    }

    /// `records` are done with (delivered, or dropped for good): their room is given back and
    /// the log may forget them.
    pub fn ack(&self, signal: Signal, records: &[(u64, usize, usize)]) {
        let i = signal.index();
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
            let mut recovered = self.shared.recovered.lock().unwrap_or_else(|p| p.into_inner());
            for &(seq, bytes, items) in records {
                self.shared.logs[i].ack(seq);
                if held.remove(&(i, seq)).is_none()
                    && let Some(claim) = recovered.as_mut()
                {
                    claim.release(bytes);
                }
                self.shared.pending_items.fetch_sub(items as i64, Ordering::AcqRel);
            }
            if recovered.as_ref().is_some_and(|c| c.units() == 0) {
                *recovered = None;
            }
        }
        self.send(Message::Checkpoint);
    }
}

impl Shared {
    fn read(&self, signal: Signal) -> Result<Option<Record>, String> {
        let log = &self.logs[signal.index()];
        let before = log.damaged_on_read();
        let next = log.read();
        let damaged = log.damaged_on_read() - before;
        if damaged > 0 {
            self.telemetry.exporter_queue_damaged.with_label_values(&[&self.name]).inc_by(damaged);
        }
        let Some((seq, payload)) = next? else { return Ok(None) };
        let items = items_of(&payload) as usize;
        let bytes = payload.len();
        let body = Bytes::from(payload).slice(4.min(bytes)..);
        Ok(Some(Record { seq, bytes, batch: Batch::from_encoded(signal, body, items) }))
    }
}

/// The committer thread: writes what arrives in groups, then lets the batches go (their
/// notices run: the clients are answered); checkpoints acknowledgements.
fn commit(shared: Arc<Shared>, rx: std::sync::mpsc::Receiver<Message>) {
    // Failed writes are logged at most once a second, with how many were not.
    let (mut last_logged, mut suppressed) = (None::<std::time::Instant>, 0u64);
    while let Ok(first) = rx.recv() {
        let mut groups: [Vec<Unwritten>; 3] = Default::default();
        let mut checkpoint = false;
        let mut flushed = Vec::new();
        for message in std::iter::once(first).chain(rx.try_iter()) {
            match message {
                Message::Append(b) => groups[b.batch().signal().index()].push(b),
                Message::Checkpoint => checkpoint = true,
                Message::Flush(done) => flushed.push(done),
            }
        }
        for (i, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let payloads: Vec<Vec<u8>> = group.iter().map(|u| encode(u.batch())).collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            match shared.logs[i].write(&refs) {
                Ok(first) => {
                    // The room moves to the records before anyone can read (and acknowledge)
                    // them; then they are published, and the clients answered.
                    let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
                    let mut written = Vec::with_capacity(group.len());
                    for (k, unwritten) in group.into_iter().enumerate() {
                        let mut batch = unwritten.written();
                        shared.pending_items.fetch_add(batch.items() as i64, Ordering::AcqRel);
                        held.insert((i, first + k as u64), batch.take_claims());
                        written.push(batch);
                    }
                    drop(held);
                    shared.logs[i].publish(first + written.len() as u64);
                    // Written: the notices waiting for it run as the batches go.
                    drop(written);
                    shared.appended.notify_one();
                }
                Err(e) => {
                    let items: usize = group.iter().map(|u| u.batch().items()).sum();
                    shared.telemetry.exporter_enqueue_failed[i].with_label_values(&[&shared.name]).inc_by(items as u64);
                    if last_logged.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                        tracing::error!(exporter = %shared.name, signal = %Signal::ALL[i], items, error = %e,
                            suppressed_since_last_error = suppressed,
                            "persistent queue: cannot write; the clients are told to retry");
                        (last_logged, suppressed) = (Some(std::time::Instant::now()), 0);
                    } else {
                        suppressed += 1;
                    }
                    // What was delivered may already free the space the write needs.
                    if let Err(e) = shared.logs[i].checkpoint() {
                        tracing::error!(exporter = %shared.name, error = %e, "persistent queue: cannot record deliveries");
                    }
                    // Dropped unwritten: the clients are told to retry.
                    drop(group);
                }
            }
        }
        if checkpoint {
            for log in &shared.logs {
                if let Err(e) = log.checkpoint() {
                    tracing::error!(exporter = %shared.name, error = %e, "persistent queue: cannot record deliveries");
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
    for log in &shared.logs {
        let _ = log.checkpoint();
    }
}

/// Gathers records of one signal into one export, starting with `first`, as `cfg` says; a
/// record that does not fit is handed back for the next export.
pub async fn gather(store: &Persistent, first: Record, cfg: &QueueBatchConfig) -> (Vec<Record>, Option<Record>) {
    let signal = first.batch.signal();
    let deadline = tokio::time::Instant::now() + cfg.flush_timeout;
    let mut sizes = Gathering::new(cfg);
    sizes.push(first.batch.clone());
    let mut records = vec![first];
    while !sizes.is_full() {
        let appended = store.appended();
        let next = match store.read(signal).await {
            Ok(next) => next,
            Err(e) => {
                // Send what is gathered; the record that failed is read again later.
                tracing::error!(exporter = %store.shared.name, error = %e, "persistent queue: cannot read");
                break;
            }
        };
        match next {
            Some(r) if sizes.fits(&r.batch) => {
                sizes.push(r.batch.clone());
                records.push(r);
            }
            Some(r) => return (records, Some(r)),
            None => {
                if tokio::time::timeout_at(deadline, appended).await.is_err() {
                    break;
                }
            }
        }
    }
    (records, None)
}

/// What was gathered, as the batches to export (split at `max_size` items where needed).
pub fn exports(records: &[Record], cfg: &QueueBatchConfig) -> Vec<Batch> {
    let mut g = Gathering::new(cfg);
    for r in records {
        g.push(r.batch.clone());
    }
    g.finish()
}
