//! The exporter queue: the sending queue in front of each exporter and the consumers that drain
//! it. Its size is enforced at admission (see `pipeline::admission`): receivers claim room
//! before data enters a pipeline, so a batch handed here always fits, and the claim is released
//! once the exporter is done with the batch.

use super::retry::{Backoff, RetryConfig};
use crate::pipeline::{Batch, Capacity, ExportError, Exporter, Sizer};
use crate::secret::Scrubber;
use crate::telemetry::metrics::Metrics;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// How many requests the queue holds, how many batches are exported at once, and how failed
/// exports are retried.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub queue_size: usize,
    pub num_consumers: usize,
    pub sizer: Sizer,
    pub block_on_overflow: bool,
    pub retry: RetryConfig,
    /// Takes the exporter's secrets out of the failure reasons it logs.
    pub scrubber: crate::secret::Scrubber,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            queue_size: 1000,
            num_consumers: 10,
            sizer: Sizer::Requests,
            block_on_overflow: false,
            retry: RetryConfig::default(),
            scrubber: Default::default(),
        }
    }
}

/// `sending_queue` in an exporter's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueueConfig {
    pub enabled: bool,
    pub num_consumers: usize,
    /// What the queue holds, in `sizer` units (see `pipeline::admission`).
    pub queue_size: usize,
    pub sizer: Sizer,
    /// When full, make receivers wait for room (up to a bound) instead of refusing at once.
    pub block_on_overflow: bool,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            block_on_overflow: false,
        }
    }
}

impl SendingQueueConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !self.enabled {
            return Err((
                "enabled".into(),
                "switchyard always queues (room is claimed when data is admitted); remove enabled: false".into(),
            ));
        }
        if self.num_consumers == 0 || self.queue_size == 0 {
            return Err(("queue_size".into(), "queue_size and num_consumers must be at least 1".into()));
        }
        Ok(())
    }

    pub fn settings(&self, retry: RetryConfig) -> QueueSettings {
        QueueSettings {
            queue_size: self.queue_size,
            num_consumers: self.num_consumers,
            sizer: self.sizer,
            block_on_overflow: self.block_on_overflow,
            retry,
            scrubber: Default::default(),
        }
    }
}

/// The sending side of one exporter's queue; shared by every pipeline that names the exporter.
pub struct ExporterQueue {
    name: String,
    tx: mpsc::UnboundedSender<Batch>,
    capacity: Arc<Capacity>,
    telemetry: Arc<Metrics>,
}

impl ExporterQueue {
    /// Starts the consumers; the returned task ends once every `ExporterQueue` clone is dropped
    /// and the queue has drained, after calling the exporter's `shutdown`.
    pub fn start(
        name: String,
        exporter: Arc<dyn Exporter>,
        settings: QueueSettings,
        telemetry: Arc<Metrics>,
    ) -> (Arc<ExporterQueue>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let size = telemetry.exporter_queue_size.with_label_values(&[&name]);
        let capacity =
            Capacity::build(name.clone(), settings.queue_size, settings.sizer, settings.block_on_overflow, Some(size));
        telemetry.exporter_queue_capacity.with_label_values(&[&name]).set(capacity.limit() as i64);
        let consumers = settings.num_consumers.max(1);
        let policy = Arc::new((settings.retry, settings.scrubber, telemetry.clone()));
        let task = tokio::spawn(consume(name.clone(), exporter, rx, consumers, policy));
        (Arc::new(ExporterQueue { name, tx, capacity, telemetry }), task)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room receivers claim before sending data this way.
    pub fn capacity(&self) -> Arc<Capacity> {
        self.capacity.clone()
    }

    /// Queues a batch whose room was claimed at admission. Only the claims on this queue stay
    /// with it, so the other exporters' room is not held by this one.
    pub fn enqueue(&self, mut batch: Batch) {
        batch.keep_claims_for(&self.capacity);
        let (signal, items) = (batch.signal(), batch.items());
        if self.tx.send(batch).is_err() {
            // Only possible once the consumers are gone, after shutdown has drained the queue.
            self.telemetry.exporter_enqueue_failed[signal.index()]
                .with_label_values(&[&self.name])
                .inc_by(items as u64);
            tracing::error!(exporter = %self.name, %signal, items, "exporter already stopped; data dropped");
        }
    }
}

async fn consume(
    name: String,
    exporter: Arc<dyn Exporter>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    consumers: usize,
    policy: Arc<(RetryConfig, Scrubber, Arc<Metrics>)>,
) {
    let permits = Arc::new(Semaphore::new(consumers));
    let name: Arc<str> = Arc::from(name);
    while let Some(batch) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (exporter, name, policy) = (exporter.clone(), name.clone(), policy.clone());
        tokio::spawn(async move {
            let (retry, scrubber, telemetry) = &*policy;
            export_one(&name, exporter.as_ref(), &batch, retry, scrubber, telemetry).await;
            drop(permit);
        });
    }
    exporter.closing();
    let _ = permits.acquire_many(consumers as u32).await;
    exporter.shutdown().await;
    tracing::debug!(exporter = %name, "exporter drained");
}

/// Delivers one batch, retrying retryable failures as `retry` says, and counts the outcome;
/// failure reasons are logged through `scrubber`.
async fn export_one(
    name: &str,
    exporter: &dyn Exporter,
    batch: &Batch,
    retry: &RetryConfig,
    scrubber: &Scrubber,
    telemetry: &Metrics,
) {
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
                telemetry.exporter_sent[signal.index()].with_label_values(&[name]).inc_by(items);
                return;
            }
            Err(ExportError::Permanent { reason }) => format!("permanent error: {reason}"),
            Err(ExportError::Retryable { after, reason }) => match backoff.next_delay(after) {
                Some(delay) => {
                    tracing::warn!(exporter = %name, %signal, items, %reason, delay = ?delay, "export failed; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                None if retry.enabled => format!("{reason}; gave up after retrying for {:?}", retry.max_elapsed_time),
                None => format!("{reason}; retry_on_failure is disabled"),
            },
        };
        telemetry.exporter_send_failed[signal.index()].with_label_values(&[name]).inc_by(items);
        tracing::error!(exporter = %name, %signal, items, %reason, "export failed; data dropped");
        return;
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
            QueueSettings { queue_size: 2, num_consumers: 1, ..Default::default() },
            Arc::new(Metrics::new()),
        );
        let capacity = queue.capacity();
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
        let metrics = Metrics::new();
        export_one("flaky-q", &flaky, &batch, &fast_retry(), &Scrubber::default(), &metrics).await;
        assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= std::time::Duration::from_millis(60), "Retry-After is honoured");
        assert_eq!(metrics.exporter_sent[0].with_label_values(&["flaky-q"]).get(), 3);

        let broken = Flaky {
            script: std::sync::Mutex::new(vec![ExportError::Permanent { reason: "400".into() }]),
            attempts: AtomicUsize::new(0),
        };
        export_one("broken-q", &broken, &batch, &fast_retry(), &Scrubber::default(), &metrics).await;
        assert_eq!(broken.attempts.load(Ordering::SeqCst), 1, "permanent errors are not retried");
        assert_eq!(metrics.exporter_send_failed[0].with_label_values(&["broken-q"]).get(), 3);
        assert_eq!(metrics.exporter_sent[0].with_label_values(&["broken-q"]).get(), 0);
    }
}
