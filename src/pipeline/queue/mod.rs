//! The exporter queue: the sending queue in front of each exporter and the consumers that drain
//! it. Its size is enforced at admission (see `pipeline::admission`): receivers claim room
//! before data enters a pipeline, so a batch handed here always fits, and the claim is released
//! once the exporter is done with the batch. The queue is in memory, or on disk (`persistent`)
//! when the exporter names a storage extension; either way its consumers may batch what they
//! send (`gather`).

pub mod config;
mod gather;
pub mod health;
pub mod persistent;

use super::retry::{Backoff, RetryConfig};
use crate::pipeline::{Batch, Capacity, ExportError, Exporter, Sizer};
use crate::secret::Scrubber;
use crate::telemetry::metrics::Metrics;
pub use config::{QueueBatchConfig, SendingQueueConfig};
use persistent::Persistent;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How much the queue holds, how many batches are exported at once, how failed exports are
/// retried, whether it is kept on disk and how it batches.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub queue_size: usize,
    pub num_consumers: usize,
    pub sizer: Sizer,
    /// Whether `queue_size`/`sizer` were set (they bound a persistent queue only then).
    pub count_bound_set: bool,
    pub block_on_overflow: bool,
    pub retry: RetryConfig,
    /// Takes the exporter's secrets out of the failure reasons it logs.
    pub scrubber: crate::secret::Scrubber,
    /// The storage extension that keeps the queue on disk, if any.
    pub storage: Option<String>,
    /// Bytes a persistent queue may hold on disk.
    pub storage_limit: u64,
    /// Batching behind the queue (`sending_queue.batch`).
    pub batch: Option<QueueBatchConfig>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            queue_size: config::DEFAULT_QUEUE_BYTES,
            num_consumers: 10,
            sizer: Sizer::Bytes,
            count_bound_set: false,
            block_on_overflow: true,
            retry: RetryConfig::default(),
            scrubber: Default::default(),
            storage: None,
            storage_limit: config::DEFAULT_STORAGE_LIMIT_MIB << 20,
            batch: None,
        }
    }
}

enum Sink {
    Memory(mpsc::UnboundedSender<Batch>),
    Disk(Arc<Persistent>),
}

/// The sending side of one exporter's queue; shared by every pipeline that names the exporter.
pub struct ExporterQueue {
    name: String,
    sink: Sink,
    /// The room receivers claim before sending data this way.
    capacities: Vec<Arc<Capacity>>,
    telemetry: Arc<Metrics>,
    /// Its exporter's delivery state (shared with the consumers).
    health: Arc<health::ExporterHealth>,
    /// What `switchyard tap` sees of this exporter: what entered its queue.
    tap: Arc<crate::pipeline::tap::TapPoint>,
    /// Tells a persistent queue's consumers that no more data will come.
    _closed: DropGuard,
}

impl ExporterQueue {
    /// Starts the consumers, reading from `persistent` when the queue is kept on disk; the
    /// returned task ends once every `ExporterQueue` clone is dropped and the queue has drained
    /// (a persistent queue leaves on disk what it could not deliver), after calling the
    /// exporter's `shutdown`.
    pub fn start(
        name: String,
        exporter: Arc<dyn Exporter>,
        settings: QueueSettings,
        telemetry: Arc<Metrics>,
        persistent: Option<Arc<Persistent>>,
    ) -> (Arc<ExporterQueue>, JoinHandle<()>) {
        let consumers = settings.num_consumers.max(1);
        let closed = CancellationToken::new();
        let counted = || {
            let size = telemetry.exporter_queue_size.with_label_values(&[&name]);
            telemetry.exporter_queue_capacity.with_label_values(&[&name]).set(settings.queue_size as i64);
            Capacity::build(name.clone(), settings.queue_size, settings.sizer, settings.block_on_overflow, Some(size))
        };
        let policy = Arc::new(Policy {
            retry: settings.retry.clone(),
            scrubber: settings.scrubber.clone(),
            health: Arc::new(health::ExporterHealth::new(Arc::from(name.as_str()), settings.sizer, telemetry.clone())),
            name: Arc::from(name.as_str()),
        });
        let policy_health = policy.health.clone();
        let (sink, capacities, task) = match persistent {
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(consume(exporter, rx, consumers, policy, settings.batch.clone()));
                (Sink::Memory(tx), vec![counted()], task)
            }
            Some(store) => {
                let mut capacities = vec![store.capacity()];
                if settings.count_bound_set && settings.sizer != Sizer::Bytes {
                    let bound = Capacity::build(
                        name.clone(),
                        settings.queue_size,
                        settings.sizer,
                        settings.block_on_overflow,
                        None,
                    );
                    capacities.push(bound);
                }
                let cfg = settings.batch.clone().unwrap_or_default();
                // This consumer stops when the queue closes or when a successor takes the log
                // over (a reload that changed the exporter), whichever comes first.
                let (generation, turn) = store.take_over();
                let (queue_closed, stop) = (closed.clone(), turn.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = queue_closed.cancelled() => stop.cancel(),
                        _ = stop.cancelled() => {}
                    }
                });
                let task =
                    tokio::spawn(consume_persistent(store.clone(), generation, exporter, consumers, policy, cfg, turn));
                (Sink::Disk(store), capacities, task)
            }
        };
        let health = policy_health;
        let tap = telemetry.taps.point(crate::pipeline::tap::Kind::Exporter, &name);
        (Arc::new(ExporterQueue { name, sink, capacities, telemetry, health, tap, _closed: closed.drop_guard() }), task)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its exporter's delivery state.
    pub fn health(&self) -> &Arc<health::ExporterHealth> {
        &self.health
    }

    /// The room receivers claim before sending data this way.
    pub fn capacities(&self) -> Vec<Arc<Capacity>> {
        self.capacities.clone()
    }

    /// The persistent queue behind this one, if it is kept on disk.
    pub fn persistent(&self) -> Option<&Arc<Persistent>> {
        match &self.sink {
            Sink::Disk(store) => Some(store),
            Sink::Memory(_) => None,
        }
    }

    /// Queues a batch whose room was claimed at admission. Only the claims on this queue stay
    /// with it, so the other exporters' room is not held by this one.
    pub fn enqueue(&self, mut batch: Batch) {
        self.tap.observe(None, &batch);
        batch.keep_claims_for(&self.capacities);
        let (signal, items) = (batch.signal(), batch.items());
        let sent = match &self.sink {
            Sink::Memory(tx) => {
                // As far toward a disk as this copy goes: a client waiting for its data to be
                // persisted elsewhere does not wait for this exporter.
                batch.release_until_persisted();
                tx.send(batch).is_ok()
            }
            Sink::Disk(store) => store.append(batch),
        };
        if !sent {
            // Only possible once the consumers are gone, after shutdown has drained the queue.
            self.telemetry.exporter_enqueue_failed[signal.index()]
                .with_label_values(&[&self.name])
                .inc_by(items as u64);
            tracing::error!(exporter = %self.name, %signal, items, "exporter already stopped; data dropped");
        }
    }
}

/// How a queue's consumers export: its retries, what they scrub from what they log, where they
/// count.
struct Policy {
    name: Arc<str>,
    retry: RetryConfig,
    scrubber: Scrubber,
    /// Where attempts are counted and outages logged, once per state change.
    health: Arc<health::ExporterHealth>,
}

/// The consumers of an in-memory queue.
async fn consume(
    exporter: Arc<dyn Exporter>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    consumers: usize,
    policy: Arc<Policy>,
    batching: Option<QueueBatchConfig>,
) {
    let permits = Arc::new(Semaphore::new(consumers));
    let mut carried: Option<Batch> = None;
    loop {
        let first = match carried.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(b) => b,
                None => break,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let exports = match &batching {
            None => vec![first],
            Some(cfg) => {
                let mut g = gather::Gathering::new(cfg);
                g.push(first);
                let deadline = tokio::time::Instant::now() + cfg.flush_timeout;
                while !g.is_full() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(b)) if g.fits(&b) => g.push(b),
                        Ok(Some(b)) => {
                            carried = Some(b);
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                g.finish()
            }
        };
        let (exporter, policy) = (exporter.clone(), policy.clone());
        tokio::spawn(async move {
            for batch in exports {
                export_one(exporter.as_ref(), &batch, &policy, None).await;
            }
            drop(permit);
        });
    }
    exporter.closing();
    let _ = permits.acquire_many(consumers as u32).await;
    exporter.shutdown().await;
    tracing::debug!(exporter = %policy.name, "exporter drained");
}

/// The consumers of a persistent queue: they read records in order, gather them into exports,
/// and acknowledge them once delivered (or dropped for good). Retryable failures are retried
/// until delivered: the disk budget, not a retry deadline, bounds what an outage holds. When
/// the queue closes (shutdown), exports under way finish their attempt and the rest stays on
/// disk for the next start; when a successor takes the queue over (a reload changed the
/// exporter), these consumers stop reading and finish what they hold.
/// What the consumers of a persistent queue hold in memory at once, in bytes of records read
/// and not yet acknowledged (an export merges them, so about twice this is in use): it keeps
/// memory flat when the backend is slower than intake and the log grows instead.
const READ_AHEAD_BYTES: usize = 8 << 20;

async fn consume_persistent(
    store: Arc<Persistent>,
    generation: u64,
    exporter: Arc<dyn Exporter>,
    consumers: usize,
    policy: Arc<Policy>,
    cfg: QueueBatchConfig,
    closed: CancellationToken,
) {
    let cfg = Arc::new(cfg);
    let permits = Arc::new(Semaphore::new(consumers));
    let read_ahead = Arc::new(Semaphore::new(READ_AHEAD_BYTES));
    let mut carried: Option<persistent::Record> = None;
    let mut turn = 0usize;
    'reading: while store.is_current(generation) && !closed.is_cancelled() {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = closed.cancelled() => break,
        };
        let first = match carried.take() {
            Some(r) => r,
            None => loop {
                let appended = store.appended();
                match store.read_any(&mut turn).await {
                    Ok(Some(r)) => break r,
                    Ok(None) => {}
                    Err(e) => tracing::error!(exporter = %policy.name, error = %e, "persistent queue: cannot read"),
                }
                tokio::select! {
                    _ = appended => {}
                    _ = closed.cancelled() => break 'reading,
                    // A successor may have taken over; look again now and then.
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                        if !store.is_current(generation) {
                            break 'reading;
                        }
                    }
                }
            },
        };
        let (records, next) = persistent::gather(&store, first, &cfg).await;
        carried = next;
        // What the consumers hold in memory is bounded however far the backend is behind.
        let bytes: usize = records.iter().map(|r| r.bytes).sum();
        let held = tokio::select! {
            p = read_ahead.clone().acquire_many_owned(bytes.clamp(1, READ_AHEAD_BYTES) as u32) => p.ok(),
            _ = closed.cancelled() => None,
        };
        let Some(held) = held else {
            store.give_back(records[0].batch.signal(), &records.iter().map(|r| r.seq).collect::<Vec<u64>>());
            break;
        };
        let (exporter, policy, store, closed, cfg) =
            (exporter.clone(), policy.clone(), store.clone(), closed.clone(), cfg.clone());
        tokio::spawn(async move {
            let _held = held;
            let signal = records[0].batch.signal();
            let exports = persistent::exports(&records, &cfg);
            let mut done = true;
            for batch in &exports {
                done &= export_one(exporter.as_ref(), batch, &policy, Some(&closed)).await;
            }
            if done {
                let acked: Vec<(u64, usize, usize)> =
                    records.iter().map(|r| (r.seq, r.bytes, r.batch.items())).collect();
                store.ack(signal, &acked);
            } else {
                // Stopped before delivering: the records stay in the log, read again by a
                // successor now or by the next start.
                store.give_back(signal, &records.iter().map(|r| r.seq).collect::<Vec<u64>>());
            }
            drop(permit);
        });
    }
    // A record read ahead for the next export goes back to the log too.
    if let Some(r) = carried.take() {
        store.give_back(r.batch.signal(), &[r.seq]);
    }
    exporter.closing();
    let _ = permits.acquire_many(consumers as u32).await;
    if store.is_current(generation) {
        store.flush().await;
        let left = store.pending_items();
        if left > 0 {
            tracing::warn!(exporter = %policy.name, items = left, directory = %store.directory().display(),
                "persistent queue: undelivered data left on disk; it is sent at the next start");
        }
    }
    exporter.shutdown().await;
    tracing::debug!(exporter = %policy.name, "exporter stopped");
}

/// Delivers one batch, retrying retryable failures as the policy says, and counts the outcome;
/// failure reasons are logged through its scrubber. With `keep` (a persistent queue, whose
/// closing it is), retryable failures are retried until delivered or until `keep` fires.
/// Returns whether the batch is done with: delivered or dropped (false: left for later).
async fn export_one(exporter: &dyn Exporter, batch: &Batch, policy: &Policy, keep: Option<&CancellationToken>) -> bool {
    let Policy { retry, scrubber, health, .. } = policy;
    let (signal, items) = (batch.signal(), batch.items() as u64);
    let mut backoff = Backoff::new(retry);
    loop {
        // Exporters print URLs redacted; this also catches a URL or a credential quoted by a
        // library or a backend.
        let redacted = |reason: String| scrubber.scrub(&reason).into_owned();
        let reason = match exporter.export(batch).await.map_err(|e| match e {
            ExportError::Permanent { reason } => ExportError::Permanent { reason: redacted(reason) },
            ExportError::Retryable { after, reason } => ExportError::Retryable { after, reason: redacted(reason) },
        }) {
            Ok(()) => {
                health.delivered(signal, items);
                return true;
            }
            Err(ExportError::Permanent { reason }) => format!("permanent error: {reason}"),
            Err(ExportError::Retryable { after, reason }) => {
                let delay = match (backoff.next_delay(after), keep) {
                    (Some(delay), _) => Some(delay),
                    // On disk, a retryable failure is never a reason to drop.
                    (None, Some(_)) if retry.enabled => Some(after.unwrap_or_default().max(retry.max_interval)),
                    (None, _) => None,
                };
                match delay {
                    Some(delay) => {
                        health.failed(signal, items, &reason);
                        match keep {
                            Some(closed) => tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = closed.cancelled() => return false,
                            },
                            None => tokio::time::sleep(delay).await,
                        }
                        continue;
                    }
                    None if retry.enabled => {
                        format!("{reason}; gave up after retrying for {:?}", retry.max_elapsed_time)
                    }
                    None => format!("{reason}; retry_on_failure is disabled"),
                }
            }
        };
        health.dropped(signal, items, &reason);
        return true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{BoxFuture, Request, tests_support::traces};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An exporter that holds every export until released.
    struct Gated {
        gate: Arc<tokio::sync::Semaphore>,
        done: Arc<AtomicUsize>,
    }

    impl Exporter for Gated {
        fn export<'a>(&'a self, _batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                if let Ok(p) = self.gate.acquire().await {
                    p.forget();
                }
                self.done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn room_is_held_until_the_export_finishes_and_the_queue_drains_on_close() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let exporter = Arc::new(Gated { gate: gate.clone(), done: done.clone() });
        let (queue, task) = ExporterQueue::start(
            "gated".into(),
            exporter,
            QueueSettings {
                queue_size: 2,
                sizer: Sizer::Requests,
                block_on_overflow: false,
                num_consumers: 1,
                ..Default::default()
            },
            Arc::new(Metrics::new()),
            None,
        );
        let capacity = queue.capacities()[0].clone();
        for _ in 0..2 {
            let mut b = Batch::from_request(Request::Traces(traces(1)));
            b.hold(capacity.try_claim(1).expect("room"));
            queue.enqueue(b);
        }
        assert!(capacity.try_claim(1).is_none(), "two requests fill a queue of two");
        gate.add_permits(1);
        let freed = async {
            while capacity.held() > 1 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), freed).await.expect("room freed after one export");
        drop(queue);
        gate.add_permits(10);
        task.await.unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 2, "everything queued was exported before the task ended");
        assert_eq!(capacity.held(), 0);
    }

    /// Fails as scripted, then succeeds.
    struct Flaky {
        script: std::sync::Mutex<Vec<ExportError>>,
        attempts: AtomicUsize,
    }

    impl Exporter for Flaky {
        fn export<'a>(&'a self, _batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                self.attempts.fetch_add(1, Ordering::SeqCst);
                match self.script.lock().unwrap().pop() {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            })
        }
    }

    fn fast_retry() -> RetryConfig {
        RetryConfig {
            initial_interval: std::time::Duration::from_millis(10),
            max_interval: std::time::Duration::from_millis(20),
            max_elapsed_time: std::time::Duration::from_secs(2),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_and_permanent_ones_dropped() {
        let retryable =
            || ExportError::Retryable { after: Some(std::time::Duration::from_millis(30)), reason: "503".into() };
        let flaky =
            Flaky { script: std::sync::Mutex::new(vec![retryable(), retryable()]), attempts: AtomicUsize::new(0) };
        let batch = Batch::from_request(Request::Traces(traces(3)));
        let started = std::time::Instant::now();
        let metrics = Arc::new(Metrics::new());
        let policy = |name: &str| Policy {
            name: Arc::from(name),
            retry: fast_retry(),
            scrubber: Scrubber::default(),
            health: Arc::new(health::ExporterHealth::new(Arc::from(name), Sizer::Items, metrics.clone())),
        };
        export_one(&flaky, &batch, &policy("flaky-q"), None).await;
        assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= std::time::Duration::from_millis(60), "Retry-After is honoured");
        assert_eq!(metrics.exporter_sent[0].with_label_values(&["flaky-q"]).get(), 3);

        let broken = Flaky {
            script: std::sync::Mutex::new(vec![ExportError::Permanent { reason: "400".into() }]),
            attempts: AtomicUsize::new(0),
        };
        export_one(&broken, &batch, &policy("broken-q"), None).await;
        assert_eq!(broken.attempts.load(Ordering::SeqCst), 1, "permanent errors are not retried");
        assert_eq!(metrics.exporter_send_failed[0].with_label_values(&["broken-q"]).get(), 3);
        assert_eq!(metrics.exporter_dropped[0].with_label_values(&["broken-q"]).get(), 3);
        assert_eq!(metrics.exporter_send_failed[0].with_label_values(&["flaky-q"]).get(), 0, "delivered in the end");
        assert_eq!(metrics.exporter_sent[0].with_label_values(&["broken-q"]).get(), 0);
    }
}
