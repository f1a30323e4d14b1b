//! The exporter queue: the sending queue in front of each exporter and the consumers that drain
//! it. Its size is enforced at admission (see `pipeline::admission`): receivers claim room
//! before data enters a pipeline, so a batch handed here always fits, and the claim is released
//! once the exporter is done with the batch.

use crate::pipeline::{Batch, Capacity, ExportError, Exporter};
use crate::telemetry::metrics::METRICS;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// How many client requests the queue holds and how many batches are exported at once.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub queue_size: usize,
    pub num_consumers: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { queue_size: 1000, num_consumers: 10 }
    }
}

/// The sending side of one exporter's queue; shared by every pipeline that names the exporter.
pub struct ExporterQueue {
    name: String,
    tx: mpsc::UnboundedSender<Batch>,
    capacity: Arc<Capacity>,
}

impl ExporterQueue {
    /// Starts the consumers; the returned task ends once every `ExporterQueue` clone is dropped
    /// and the queue has drained, after calling the exporter's `shutdown`.
    pub fn start(
        name: String,
        exporter: Arc<dyn Exporter>,
        settings: QueueSettings,
    ) -> (Arc<ExporterQueue>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let size = METRICS.exporter_queue_size.with_label_values(&[&name]);
        let capacity = Capacity::with_gauge(name.clone(), settings.queue_size, size);
        METRICS.exporter_queue_capacity.with_label_values(&[&name]).set(capacity.limit() as i64);
        let task = tokio::spawn(consume(name.clone(), exporter, rx, settings.num_consumers.max(1)));
        (Arc::new(ExporterQueue { name, tx, capacity }), task)
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
            METRICS.exporter_enqueue_failed[signal.index()].with_label_values(&[&self.name]).inc_by(items as u64);
            tracing::error!(exporter = %self.name, %signal, items, "exporter already stopped; data dropped");
        }
    }
}

async fn consume(name: String, exporter: Arc<dyn Exporter>, mut rx: mpsc::UnboundedReceiver<Batch>, consumers: usize) {
    let permits = Arc::new(Semaphore::new(consumers));
    let name: Arc<str> = Arc::from(name);
    while let Some(batch) = rx.recv().await {
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
        Ok(()) => METRICS.exporter_sent[signal.index()].with_label_values(&[name]).inc_by(items),
        Err(e) => {
            METRICS.exporter_send_failed[signal.index()].with_label_values(&[name]).inc_by(items);
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
        let (queue, task) =
            ExporterQueue::start("gated".into(), exporter, QueueSettings { queue_size: 2, num_consumers: 1 });
        let capacity = queue.capacity();
        for _ in 0..2 {
            let mut b = Batch::from_request(Request::Traces(traces(1)));
            b.hold(capacity.try_claim().expect("room"));
            queue.enqueue(b);
        }
        assert!(capacity.try_claim().is_none(), "two requests fill a queue of two");
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
}
