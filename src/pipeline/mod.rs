//! The pipeline engine: the batch that flows, the processor and exporter contracts, the intake
//! that receivers hand data to, the task that runs a pipeline's processors, and the service that
//! builds the whole graph from configuration and runs its lifecycle.

mod admission;
mod batch;
mod delivery;
mod intake;
mod runner;
mod service;
mod signal;
mod split;

pub use admission::{BLOCK_LIMIT, Capacity, Claim, ClaimSet, Sizer};
#[cfg(test)]
pub use batch::tests_support;
pub use batch::{Batch, Context, DecodeError, Request, context_from_headers, metric_points};
pub use delivery::{Delivery, abandon};
pub use intake::{DecodeRefusal, Intake, Refusal, Route, per_request_bound};
pub use runner::{BoxFuture, ExportError, Exporter, Processor};
pub use service::{RunningService, ServiceError, Status, StatusCell};
pub use signal::Signal;
