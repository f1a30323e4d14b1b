//! Reading the `partial_success` of an OTLP export response, which backends use to say that
//! part of a batch was rejected (counted and logged, never retried).

use crate::signal::Signal;
use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
use prost::Message;

/// `(rejected items, error message)` from a protobuf `Export*ServiceResponse`, if it has one.
pub fn from_protobuf(signal: Signal, body: &[u8]) -> Option<(i64, String)> {
    crate::protowire::check(body).ok()?;
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

/// Counts and logs a partial success; nothing to do for a full one. Never retried: the backend
/// has decided about those items.
pub fn report(
    telemetry: &crate::telemetry::metrics::Metrics,
    exporter: &str,
    signal: Signal,
    partial: Option<(i64, String)>,
) {
    if let Some((rejected, message)) = partial
        && (rejected > 0 || !message.is_empty())
    {
        if rejected > 0 {
            telemetry.exporter_rejected[signal.index()].with_label_values(&[exporter]).inc_by(rejected as u64);
        }
        tracing::warn!(exporter, %signal, rejected, %message, "backend accepted the batch only in part");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};

    #[test]
    fn partial_success_is_read_and_counted() {
        let body = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess { rejected_spans: 3, error_message: "too old".into() }),
        }
        .encode_to_vec();
        let partial = from_protobuf(Signal::Traces, &body);
        assert_eq!(partial, Some((3, "too old".to_string())));
        let metrics = Metrics::new();
        report(&metrics, "partial-test", Signal::Traces, partial);
        assert_eq!(metrics.exporter_rejected[0].with_label_values(&["partial-test"]).get(), 3);
        assert_eq!(from_protobuf(Signal::Traces, &[]), None, "an empty answer is a full success");
    }
}
