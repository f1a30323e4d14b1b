//! The exporter queue: a bounded queue in front of each exporter and the consumers that drain
//! it. Enqueueing is where a batch counts as taken (the receiver's acknowledgement); a full
//! queue refuses, so the receiver answers with a retryable error instead of dropping silently.

use crate::pipeline::{Batch, ExportError, Exporter, Refusal};
use crate::telemetry::metrics::METRICS;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// How big the queue is and how many batches are exported at once.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub queue_size: usize,
    pub num_consumers: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            queue_size: 1000,
            num_consumers: 10,
        }
    }
}

/// The sending side of one exporter's queue; shared by every pipeline that names the exporter.
pub struct ExporterQueue {
    name: String,
    tx: mpsc::Sender<Batch>,
}

impl ExporterQueue {
    /// Starts the consumers; the returned task ends once every `ExporterQueue` clone is dropped
    /// and the queue has drained, after calling the exporter's `shutdown`.
    pub fn start(
        name: String,
        exporter: Arc<dyn Exporter>,
        settings: QueueSettings,
    ) -> (Arc<ExporterQueue>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(settings.queue_size.max(1));
        METRICS
            .exporter_queue_capacity
            .with_label_values(&[&name])
            .set(settings.queue_size as i64);
        METRICS
            .exporter_queue_size
            .with_label_values(&[&name])
            .set(0);
        let task = tokio::spawn(consume(
            name.clone(),
            exporter,
            rx,
            settings.num_consumers.max(1),
        ));
        (Arc::new(ExporterQueue { name, tx }), task)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues the batch and releases its acknowledgements; on a full queue, fails them.
    pub fn enqueue(&self, mut batch: Batch) {
        let acks = batch.take_acks();
        let (signal, items) = (batch.signal(), batch.items() as u64);
        match self.tx.try_send(batch) {
            Ok(()) => {
                METRICS
                    .exporter_queue_size
                    .with_label_values(&[&self.name])
                    .inc();
                drop(acks);
            }
            Err(_) => {
                METRICS.exporter_enqueue_failed[signal.index()]
                    .with_label_values(&[&self.name])
                    .inc_by(items);
                tracing::warn!(exporter = %self.name, %signal, items, "sending queue is full; refusing data");
                for ack in acks {
                    ack.fail(Refusal::retryable(format!(
                        "sending queue of exporter {} is full",
                        self.name
                    )));
                }
            }
        }
    }
}

async fn consume(
    name: String,
    exporter: Arc<dyn Exporter>,
    mut rx: mpsc::Receiver<Batch>,
    consumers: usize,
) {
    let permits = Arc::new(Semaphore::new(consumers));
    let name: Arc<str> = Arc::from(name);
    while let Some(batch) = rx.recv().await {
        METRICS
            .exporter_queue_size
            .with_label_values(&[&name])
            .dec();
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let exporter = exporter.clone();
        let name = name.clone();
        tokio::spawn(async move {
            export_one(&name, exporter.as_ref(), &batch).await;
            drop(permit);
        });
    }
    let _ = permits.acquire_many(consumers as u32).await;
    exporter.shutdown().await;
    tracing::debug!(exporter = %name, "exporter drained");
}

/// One delivery with its counters. Retrying is the job of exporters that talk to a network.
async fn export_one(name: &str, exporter: &dyn Exporter, batch: &Batch) {
    let (signal, items) = (batch.signal(), batch.items() as u64);
    match exporter.export(batch).await {
        Ok(()) => METRICS.exporter_sent[signal.index()]
            .with_label_values(&[name])
            .inc_by(items),
        Err(e) => {
            METRICS.exporter_send_failed[signal.index()]
                .with_label_values(&[name])
                .inc_by(items);
            match e {
                ExportError::Permanent { reason } | ExportError::Retryable { reason, .. } => {
                    tracing::error!(exporter = %name, %signal, items, %reason, "export failed; data dropped")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Ack, BoxFuture, Request, Signal};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An exporter that holds every export until released.
    struct Stuck {
        gate: Arc<tokio::sync::Notify>,
        done: Arc<AtomicUsize>,
    }

    impl Exporter for Stuck {
        fn export<'a>(&'a self, _batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async move {
                self.gate.notified().await;
                self.done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    fn batch_with_ack() -> (Batch, crate::pipeline::AckWait) {
        let mut b = Batch::from_request(Request::Traces(crate::pipeline::tests_support::traces(1)));
        let (ack, wait) = Ack::new();
        b.attach(ack);
        (b, wait)
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_a_retryable_answer_and_drains_on_close() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let done = Arc::new(AtomicUsize::new(0));
        let exporter = Arc::new(Stuck {
            gate: gate.clone(),
            done: done.clone(),
        });
        let settings = QueueSettings {
            queue_size: 1,
            num_consumers: 1,
        };
        let (queue, task) = ExporterQueue::start("stuck".into(), exporter, settings);
        let (first, w1) = batch_with_ack();
        queue.enqueue(first);
        assert_eq!(w1.wait().await, Ok(()), "queued is acknowledged");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // consumer takes it and blocks
        let (second, w2) = batch_with_ack();
        queue.enqueue(second);
        assert_eq!(w2.wait().await, Ok(()));
        // The consumer task holds one batch waiting for a permit; the channel holds at most one.
        let mut refused = None;
        for _ in 0..3 {
            let (b, w) = batch_with_ack();
            queue.enqueue(b);
            if let Err(r) = w.wait().await {
                refused = Some(r);
                break;
            }
        }
        let refused = refused.expect("a full queue refuses");
        assert!(refused.retryable);
        assert_eq!(refused.message, "sending queue of exporter stuck is full");
        assert!(
            METRICS.exporter_enqueue_failed[Signal::Traces.index()]
                .with_label_values(&["stuck"])
                .get()
                >= 1
        );
        drop(queue);
        for _ in 0..10 {
            gate.notify_waiters();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        task.await.unwrap();
        assert!(
            done.load(Ordering::SeqCst) >= 2,
            "everything queued was exported before the task ended"
        );
    }
}
