//! The intake: where a receiver hands a batch to every pipeline that lists it, and waits for the
//! answer to give its client. It counts accepted and refused items per receiver and transport.

use super::ack::{Ack, Refusal};
use super::batch::Batch;
use super::signal::Signal;
use crate::telemetry::metrics::METRICS;
use tokio::sync::mpsc;

/// One receiver's routes into pipelines, per signal.
pub struct Intake {
    receiver: String,
    routes: [Vec<mpsc::Sender<Batch>>; 3],
}

impl Intake {
    pub fn new(receiver: String, routes: [Vec<mpsc::Sender<Batch>>; 3]) -> Intake {
        Intake { receiver, routes }
    }

    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// Counts items the receiver dropped as invalid before submitting the rest.
    pub fn rejected(&self, transport: &str, signal: Signal, items: usize) {
        if items > 0 {
            METRICS.receiver_refused[signal.index()]
                .with_label_values(&[self.receiver.as_str(), transport])
                .inc_by(items as u64);
        }
    }

    /// Counts a request answered with a client error.
    pub fn invalid_request(&self, transport: &str, code: &str) {
        METRICS
            .receiver_invalid_requests
            .with_label_values(&[self.receiver.as_str(), transport, code])
            .inc();
    }

    /// Whether any pipeline takes this signal from this receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        !self.routes[signal.index()].is_empty()
    }

    /// Hands `batch` to every pipeline and resolves once each has taken it (queued for every
    /// exporter), or with the reason it was refused.
    pub async fn submit(&self, transport: &str, mut batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let items = batch.items() as u64;
        let routes = &self.routes[signal.index()];
        let result = if routes.is_empty() {
            Err(Refusal::permanent(format!(
                "no {signal} pipeline takes data from receiver {}",
                self.receiver
            )))
        } else if items == 0 {
            Ok(())
        } else {
            let (ack, wait) = Ack::new();
            batch.attach(ack.clone());
            let send = |route: &mpsc::Sender<Batch>, copy: Batch| {
                if let Err(e) = route.try_send(copy) {
                    let mut rejected = e.into_inner();
                    let reason = if route.is_closed() {
                        "the pipeline is shutting down"
                    } else {
                        "the pipeline is full"
                    };
                    rejected.fail(Refusal::retryable(reason));
                }
            };
            if let Some((last, rest)) = routes.split_last() {
                for route in rest {
                    send(route, batch.clone());
                }
                send(last, batch);
            }
            drop(ack);
            wait.wait().await
        };
        let labels = [self.receiver.as_str(), transport];
        match &result {
            Ok(()) => METRICS.receiver_accepted[signal.index()]
                .with_label_values(&labels)
                .inc_by(items),
            Err(_) => METRICS.receiver_refused[signal.index()]
                .with_label_values(&labels)
                .inc_by(items),
        }
        result
    }
}
