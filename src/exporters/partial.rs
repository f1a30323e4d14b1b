//! Reading the `partial_success` of an OTLP export response, which backends use to say that
//! part of a batch was rejected (counted and logged, never retried).

use crate::pipeline::Signal;
use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
use prost::Message;

/// `(rejected items, error message)` from a protobuf `Export*ServiceResponse`, if it has one.
pub fn from_protobuf(signal: Signal, body: &[u8]) -> Option<(i64, String)> {
    match signal {
        Signal::Traces => trace::v1::ExportTraceServiceResponse::decode(body)
            .ok()?
            .partial_success
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => metrics::v1::ExportMetricsServiceResponse::decode(body)
            .ok()?
            .partial_success
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Logs => logs::v1::ExportLogsServiceResponse::decode(body)
            .ok()?
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message)),
    }
}

/// Logs a partial success; nothing to do for a full one.
pub fn report(exporter: &str, signal: Signal, partial: Option<(i64, String)>) {
    if let Some((rejected, message)) = partial
        && (rejected > 0 || !message.is_empty())
    {
        tracing::warn!(exporter, %signal, rejected, %message, "backend accepted the batch only in part");
    }
}
