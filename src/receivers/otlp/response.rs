//! The OTLP export responses: empty on full success, `partial_success` when items were rejected;
//! in protobuf or in JSON, matching the request.

use crate::signal::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;

pub fn protobuf(signal: Signal, rejected: usize, message: Option<&str>) -> Vec<u8> {
    let partial = rejected > 0 || message.is_some();
    let rejected = rejected as i64;
    let error_message = message.unwrap_or_default().to_string();
    match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: partial
                .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial
                .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message }),
        }
        .encode_to_vec(),
    }
}

pub fn json(signal: Signal, rejected: usize, message: Option<&str>) -> String {
    if rejected == 0 && message.is_none() {
        return "{}".to_string();
    }
    let field = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    serde_json::json!({"partialSuccess": {field: rejected.to_string(), "errorMessage": message.unwrap_or_default()}})
        .to_string()
}
