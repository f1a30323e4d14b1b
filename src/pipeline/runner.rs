//! The contracts of processors and exporters, and the task that runs one pipeline: batches from
//! its receivers go through the processors in order, on one task, then are handed to every
//! exporter's queue (fan-out).

use super::batch::Batch;
use crate::pipeline::queue::ExporterQueue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A synchronous transform, called in sequence on the pipeline's task.
pub trait Processor: Send {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>);
    /// For processors that hold data over time: when they next want `on_deadline`.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<Batch>) {}
    /// Releases everything held, at shutdown.
    fn flush(&mut self, _out: &mut Vec<Batch>) {}
    /// Releases what it holds only to make bigger batches (the batch processor), in a pipeline
    /// that feeds a persistent queue: its clients are answered once their data is on disk, and
    /// must not wait for a batch to fill. The queue batches behind it instead.
    fn release_batches(&mut self, _out: &mut Vec<Batch>) {}
}

/// Why one delivery attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    #[error("{reason} (retryable)")]
    Retryable { after: Option<Duration>, reason: String },
    #[error("{reason}")]
    Permanent { reason: String },
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One attempt at delivery; the shared queue drives it.
pub trait Exporter: Send + Sync + 'static {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>>;
    /// No more batches will come (the queue is closing); exports still running should not wait
    /// for more data to join them.
    fn closing(&self) {}
    /// Flushes and closes, once the queue has drained.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Where a pipeline hands what its processors let out: an exporter's queue, or a connector
/// leading to other pipelines.
#[derive(Clone)]
pub enum Output {
    Queue(Arc<ExporterQueue>),
    Connector(Arc<super::connector::Hop>),
}

impl Output {
    fn send(&self, batch: Batch) {
        match self {
            Output::Queue(q) => q.enqueue(batch),
            Output::Connector(hop) => hop.send(batch),
        }
    }

    /// Whether data sent here reaches a queue kept on disk.
    fn feeds_disk(&self) -> bool {
        match self {
            Output::Queue(q) => q.persistent().is_some(),
            Output::Connector(hop) => hop.feeds_disk(),
        }
    }

    /// Whether both are the same running queue or connector.
    pub fn same(&self, other: &Output) -> bool {
        match (self, other) {
            (Output::Queue(a), Output::Queue(b)) => Arc::ptr_eq(a, b),
            (Output::Connector(a), Output::Connector(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One pipeline's processors and outputs.
pub struct PipelineRunner {
    pub name: String,
    pub processors: Vec<Box<dyn Processor>>,
    pub exporters: Vec<Output>,
}

/// One place in a pipeline's new chain of processors, at a reload.
pub enum Slot {
    /// The processor at this index of the running chain, kept with everything it holds.
    Keep(usize),
    /// A processor new to the pipeline (or one whose settings changed).
    New(Box<dyn Processor>),
}

/// A new shape for a running pipeline: its processors and exporters from now on.
pub struct Rewire {
    pub processors: Vec<Slot>,
    pub exporters: Vec<Output>,
}

impl PipelineRunner {
    /// Runs until every sender of `input` is gone or `close` fires. Once `drain` fires, nothing
    /// is held any more: processors are flushed after every batch, so what arrives while the
    /// receivers wind down goes straight to the exporters. On `close` the input is closed (late senders
    /// are refused), what is still in the channel is processed, and the processors are flushed.
    pub async fn run(
        mut self,
        mut input: mpsc::UnboundedReceiver<Batch>,
        mut rewires: mpsc::UnboundedReceiver<Rewire>,
        drain: CancellationToken,
        close: CancellationToken,
    ) {
        let mut draining = false;
        loop {
            let deadline = if draining { None } else { self.processors.iter().filter_map(|p| p.next_deadline()).min() };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => {
                        self.push(0, vec![batch]);
                        if draining {
                            self.flush();
                        } else if self.feeds_disk() {
                            self.release_batches();
                        }
                    }
                    None => break,
                },
                _ = sleep => self.deadline(Instant::now()),
                Some(rewire) = rewires.recv() => self.rewire(rewire),
                _ = drain.cancelled(), if !draining => {
                    draining = true;
                    self.flush();
                }
                _ = close.cancelled() => break,
            }
        }
        // A new shape sent just before the close still applies: what is flushed goes where
        // the configuration in force says, not to outputs already retired.
        while let Ok(rewire) = rewires.try_recv() {
            self.rewire(rewire);
        }
        input.close();
        while let Some(batch) = input.recv().await {
            self.push(0, vec![batch]);
        }
        self.flush();
        tracing::debug!(pipeline = %self.name, "pipeline drained");
    }

    /// Takes a new shape at a reload. Processors leaving the chain (removed, or replaced because
    /// their settings changed) first release what they hold, which goes on through the old chain
    /// to the old exporters; kept processors move to their new places with their state.
    fn rewire(&mut self, rewire: Rewire) {
        let mut kept: Vec<bool> = vec![false; self.processors.len()];
        for slot in &rewire.processors {
            if let Slot::Keep(i) = slot
                && let Some(k) = kept.get_mut(*i)
            {
                *k = true;
            }
        }
        for (i, kept) in kept.iter().enumerate() {
            if !kept {
                let mut out = Vec::new();
                self.processors[i].flush(&mut out);
                self.push(i + 1, out);
            }
        }
        let mut old: Vec<Option<Box<dyn Processor>>> =
            std::mem::take(&mut self.processors).into_iter().map(Some).collect();
        self.processors = rewire
            .processors
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Keep(i) => old.get_mut(i).and_then(Option::take),
                Slot::New(p) => Some(p),
            })
            .collect();
        self.exporters = rewire.exporters;
        tracing::debug!(pipeline = %self.name, processors = self.processors.len(), exporters = self.exporters.len(), "pipeline rewired");
    }

    /// Whether an exporter of this pipeline keeps its queue on disk.
    fn feeds_disk(&self) -> bool {
        self.exporters.iter().any(Output::feeds_disk)
    }

    /// Makes the processors that hold data only to batch it let go of it, in order.
    fn release_batches(&mut self) {
        for i in 0..self.processors.len() {
            let mut out = Vec::new();
            self.processors[i].release_batches(&mut out);
            self.push(i + 1, out);
        }
    }

    /// Makes every processor release what it holds, in order.
    fn flush(&mut self) {
        for i in 0..self.processors.len() {
            let mut out = Vec::new();
            self.processors[i].flush(&mut out);
            self.push(i + 1, out);
        }
    }

    fn deadline(&mut self, now: Instant) {
        for i in 0..self.processors.len() {
            if self.processors[i].next_deadline().is_some_and(|d| d <= now) {
                let mut out = Vec::new();
                self.processors[i].on_deadline(now, &mut out);
                self.push(i + 1, out);
            }
        }
    }

    /// Runs `batches` through processors `from..` and hands what comes out to the exporters.
    fn push(&mut self, from: usize, mut batches: Vec<Batch>) {
        for p in self.processors.iter_mut().skip(from) {
            if batches.is_empty() {
                return;
            }
            let mut out = Vec::with_capacity(batches.len());
            for b in batches {
                p.process(b, &mut out);
            }
            batches = out;
        }
        for batch in batches {
            self.fan_out(batch);
        }
    }

    fn fan_out(&self, batch: Batch) {
        if batch.items() == 0 {
            return;
        }
        if let Some((last, rest)) = self.exporters.split_last() {
            for q in rest {
                q.send(batch.clone());
            }
            last.send(batch);
        }
    }
}
