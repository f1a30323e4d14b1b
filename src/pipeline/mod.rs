//! The pipeline engine: the batch that flows, the processor and exporter contracts, the intake
//! that receivers hand data to, admission into the exporters' sending queues, the task that runs
//! a pipeline's processors, the queues and their retries, and delivery notices. It knows no
//! concrete component: the service (`crate::service`) builds the graph from the registry.

mod admission;
mod batch;
pub mod board;
pub mod component;
pub mod connector;
mod delivery;
mod intake;
pub mod queue;
pub mod retry;
mod runner;
mod split;
mod status;
pub mod tap;

pub use crate::signal::Signal;
pub use admission::{BLOCK_LIMIT, Capacity, Claim, ClaimSet, Sizer};
#[cfg(test)]
pub use batch::tests_support;
pub use batch::{
    Batch, Context, DecodeError, Kin, Origin, Request, RequestContext, metric_points, origin_of, request_context,
    retain_points,
};
pub use delivery::{Abandoned, Delivery};
pub use intake::{DecodeRefusal, Intake, Refusal, Route, per_request_bound};
pub use runner::{BoxFuture, ExportError, Exporter, Output, PipelineRunner, Processor, Rewire, Slot};
pub use status::{Status, StatusCell, guarded, panics_of};
