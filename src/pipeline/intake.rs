//! The intake: where a receiver hands a batch to every pipeline that lists it. It first claims
//! room in the sending queue of every exporter the data will reach (see `admission`); only when
//! all of it is there does the data go in, and the receiver may answer success. It counts
//! accepted and refused items per receiver and transport.

use super::admission::{Capacity, Claim};
use super::batch::Batch;
use super::signal::Signal;
use crate::telemetry::metrics::METRICS;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why data was not taken: the answer a receiver turns into its protocol's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The client may send the same data again later (gRPC UNAVAILABLE, HTTP 503).
    pub retryable: bool,
    pub message: String,
}

impl Refusal {
    pub fn retryable(message: impl Into<String>) -> Refusal {
        Refusal { retryable: true, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> Refusal {
        Refusal { retryable: false, message: message.into() }
    }
}

/// One pipeline as seen from a receiver: its input, and the queues of its exporters.
#[derive(Clone)]
pub struct Route {
    pub input: mpsc::UnboundedSender<Batch>,
    pub queues: Vec<Arc<Capacity>>,
}

/// One receiver's routes into pipelines, per signal.
pub struct Intake {
    receiver: String,
    routes: [Vec<Route>; 3],
}

impl Intake {
    pub fn new(receiver: String, routes: [Vec<Route>; 3]) -> Intake {
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
        METRICS.receiver_invalid_requests.with_label_values(&[self.receiver.as_str(), transport, code]).inc();
    }

    /// Whether any pipeline takes this signal from this receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        !self.routes[signal.index()].is_empty()
    }

    /// Hands `batch` to every pipeline of its signal, or refuses it whole: data is taken only
    /// when every exporter it reaches has room for it (waiting for room, within a bound, where
    /// a queue blocks on overflow).
    pub async fn submit(&self, transport: &str, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let items = batch.items() as u64;
        let result = self.admit(batch).await;
        let labels = [self.receiver.as_str(), transport];
        match &result {
            Ok(()) => METRICS.receiver_accepted[signal.index()].with_label_values(&labels).inc_by(items),
            Err(_) => METRICS.receiver_refused[signal.index()].with_label_values(&labels).inc_by(items),
        }
        result
    }

    async fn admit(&self, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let routes = &self.routes[signal.index()];
        if routes.is_empty() {
            return Err(Refusal::permanent(format!("no {signal} pipeline takes data from receiver {}", self.receiver)));
        }
        if batch.items() == 0 {
            return Ok(());
        }
        if routes.iter().any(|r| r.input.is_closed()) {
            return Err(Refusal::retryable("switchyard is shutting down"));
        }
        // Claim everything first, so that a refusal leaves no pipeline with a partial copy.
        let mut claims: Vec<Vec<Claim>> = Vec::with_capacity(routes.len());
        for route in routes {
            let mut held = Vec::with_capacity(route.queues.len());
            for queue in &route.queues {
                match queue.claim(queue.weight(&batch)).await {
                    Some(c) => held.push(c),
                    None => {
                        METRICS.exporter_enqueue_failed[signal.index()]
                            .with_label_values(&[queue.name()])
                            .inc_by(batch.items() as u64);
                        tracing::warn!(exporter = queue.name(), %signal, items = batch.items(), "sending queue is full; refusing data");
                        return Err(Refusal::retryable(format!("sending queue of exporter {} is full", queue.name())));
                    }
                }
            }
            claims.push(held);
        }
        let send = |route: &Route, mut copy: Batch, held: Vec<Claim>| {
            for claim in held {
                copy.hold(claim);
            }
            route.input.send(copy).map_err(|_| Refusal::retryable("switchyard is shutting down"))
        };
        let mut claims = claims.into_iter();
        if let Some((last, rest)) = routes.split_last() {
            for route in rest {
                send(route, batch.clone(), claims.next().unwrap_or_default())?;
            }
            send(last, batch, claims.next().unwrap_or_default())?;
        }
        Ok(())
    }
}
