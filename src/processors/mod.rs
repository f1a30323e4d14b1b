//! Processors: one module per processor type, named as in configuration.

pub mod attributes;
pub mod batch;
pub mod cumulativetodelta;
pub mod deltatocumulative;
pub mod filter;
pub mod groupbytrace;
pub mod k8sattributes;
pub mod memory_limiter;
pub mod metric_stream;
pub mod ottl;
pub mod probabilistic_sampler;
pub mod redaction;
pub mod resource;
pub mod resourcedetection;
pub mod tail_sampling;
pub mod transform;

use crate::pipeline::Batch;

/// The end of every processor that drops items (filter, samplers, temporality converters): runs
/// `drop` on the decoded
/// request (it returns how many items went), counts them under the processor's name, and passes
/// the batch on unless nothing is left in it (its queue room is then released at once). A batch
/// that cannot be decoded is passed on whole, with a warning.
pub(crate) fn drop_items(
    telemetry: &crate::telemetry::metrics::Metrics,
    name: &str,
    mut batch: Batch,
    out: &mut Vec<Batch>,
    drop: impl FnOnce(&mut crate::pipeline::Request) -> usize,
) {
    let signal = batch.signal();
    let dropped = match batch.request_mut() {
        Ok(request) => drop(request),
        Err(e) => {
            tracing::warn!(processor = name, error = %e, "cannot decode a batch to look into it; passed on whole");
            out.push(batch);
            return;
        }
    };
    if dropped > 0 {
        telemetry.processor_dropped[signal.index()].with_label_values(&[name]).inc_by(dropped as u64);
    }
    // Also when points were held back rather than dropped (cumulativetodelta's first points).
    batch.recount();
    if batch.items() > 0 {
        out.push(batch);
    }
}
