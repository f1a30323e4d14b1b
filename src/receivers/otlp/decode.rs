//! Turning OTLP request bodies (protobuf or JSON) into batches, and checking what a decoder lets
//! through but the data model forbids: trace ids of other than 16 bytes, span ids of other than
//! 8. Items with such ids are rejected one by one and reported as a partial success; a request
//! whose every item is invalid is refused as a whole.

use crate::pipeline::{Batch, Request, Signal};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// A request that decoded; `rejected` items were dropped for the reason in `message`.
pub struct Decoded {
    pub batch: Batch,
    pub rejected: usize,
    pub message: Option<String>,
}

/// Why a request body cannot be taken at all (HTTP 400, gRPC INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// A protobuf request that passed the scan and is not decoded yet.
pub struct Scanned {
    signal: Signal,
    bytes: Bytes,
    scan: super::scan::Scan,
}

/// Requests up to this size whose every item is invalid are decoded anyway, to tell the client
/// exactly which id is wrong; larger ones are refused from the scan alone.
const EXPLAIN_BYTES: usize = 64 * 1024;

/// Scans a protobuf request without building it: refuses bad wire format, and a request whose
/// every item would be rejected for its ids (when it is large, without decoding it).
pub fn scan_protobuf(signal: Signal, bytes: Bytes) -> Result<Scanned, Invalid> {
    let invalid = |reason: String| Invalid(format!("cannot decode OTLP/protobuf {signal} request: {reason}"));
    let scan = super::scan::scan(signal, &bytes).map_err(invalid)?;
    if scan.items > 0 && scan.invalid_items == scan.items && bytes.len() > EXPLAIN_BYTES {
        return Err(Invalid(format!(
            "every one of the {} {} in the request has an invalid trace or span id",
            scan.items,
            signal.item_name()
        )));
    }
    Ok(Scanned { signal, bytes, scan })
}

impl Scanned {
    /// An upper bound of what decoding the request allocates.
    pub fn decoded_bytes(&self) -> usize {
        self.scan.decoded_bytes
    }

    /// The batch: still encoded when every id is valid; else decoded, without the invalid items.
    pub fn decode(self) -> Result<Decoded, Invalid> {
        let Scanned { signal, bytes, scan: scanned } = self;
        let invalid = |reason: String| Invalid(format!("cannot decode OTLP/protobuf {signal} request: {reason}"));
        if scanned.ids_ok {
            // The common case: keep the wire form, decode only if a processor needs the fields;
            // exporters that speak OTLP send these bytes as they are.
            return Ok(Decoded {
                batch: Batch::from_encoded(signal, bytes, scanned.items),
                rejected: 0,
                message: None,
            });
        }
        // Some ids are malformed: decode, drop those items, and carry the rest decoded.
        let mut request = Request::decode(signal, &bytes).map_err(|e| invalid(e.reason))?;
        let (rejected, message) = drop_invalid(&mut request)?;
        Ok(Decoded { batch: Batch::from_request(request), rejected, message })
    }
}

/// Scans and decodes a protobuf request (`scan_protobuf`, then `Scanned::decode`).
pub fn decode_protobuf(signal: Signal, bytes: Bytes) -> Result<Decoded, Invalid> {
    scan_protobuf(signal, bytes)?.decode()
}

/// An estimate of what decoding an OTLP/JSON request allocates. The decoder builds a JSON tree
/// first (`json::parse`): every object with a key is a B-tree node of about 640 bytes (11 slots
/// of a `String` key and a `Value`), and then becomes at most one struct of the request, which
/// the tree's nodes outweigh. So an attribute (`{"key":…,"value":{…}}`, two objects) costs about
/// 1.3 KB however short its text.
pub fn json_decoded_bytes(body: &[u8]) -> usize {
    const PER_OBJECT: usize = 11 * (std::mem::size_of::<String>() + std::mem::size_of::<serde_json::Value>()) + 16;
    crate::receivers::budget::json_estimate(body, PER_OBJECT)
}

pub fn decode_json(signal: Signal, body: &[u8]) -> Result<Decoded, Invalid> {
    let mut request = super::json::parse(signal, body)
        .map_err(|e| Invalid(format!("cannot decode OTLP/JSON {signal} request: {e}")))?;
    let (rejected, message) = drop_invalid(&mut request)?;
    Ok(Decoded { batch: Batch::from_request(request), rejected, message })
}

fn id_ok(id: &[u8], len: usize) -> bool {
    id.is_empty() || id.len() == len
}

/// Removes items with malformed ids; errors when nothing valid is left of a non-empty request.
fn drop_invalid(request: &mut Request) -> Result<(usize, Option<String>), Invalid> {
    let total = request.item_count();
    let mut first: Option<String> = None;
    let mut note = |what: &str, len: usize, want: usize| {
        if first.is_none() {
            first = Some(format!("invalid {what} length: {len} bytes, expected {want}"));
        }
    };
    match request {
        Request::Traces(ExportTraceServiceRequest { resource_spans }) => {
            for ss in resource_spans.iter_mut().flat_map(|rs| rs.scope_spans.iter_mut()) {
                ss.spans.retain(|s| {
                    let checks = [
                        (s.trace_id.len(), 16, "trace id", s.trace_id.len() == 16),
                        (s.span_id.len(), 8, "span id", s.span_id.len() == 8),
                        (s.parent_span_id.len(), 8, "parent span id", id_ok(&s.parent_span_id, 8)),
                    ];
                    for (len, want, what, ok) in checks {
                        if !ok {
                            note(what, len, want);
                            return false;
                        }
                    }
                    for l in &s.links {
                        if l.trace_id.len() != 16 {
                            note("link trace id", l.trace_id.len(), 16);
                            return false;
                        }
                        if l.span_id.len() != 8 {
                            note("link span id", l.span_id.len(), 8);
                            return false;
                        }
                    }
                    true
                });
            }
        }
        Request::Logs(ExportLogsServiceRequest { resource_logs }) => {
            for sl in resource_logs.iter_mut().flat_map(|rl| rl.scope_logs.iter_mut()) {
                sl.log_records.retain(|r| {
                    if !id_ok(&r.trace_id, 16) {
                        note("trace id", r.trace_id.len(), 16);
                        false
                    } else if !id_ok(&r.span_id, 8) {
                        note("span id", r.span_id.len(), 8);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        Request::Metrics(ExportMetricsServiceRequest { .. }) => {}
    }
    let left = request.item_count();
    let rejected = total - left;
    if rejected > 0 && left == 0 {
        return Err(Invalid(first.unwrap_or_default()));
    }
    Ok((rejected, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::fixture;
    use prost::Message;

    #[test]
    fn python_sdk_protobuf_fixtures_decode() {
        for (name, signal, items) in [
            ("python-sdk-traces.pb", Signal::Traces, 1),
            ("python-sdk-metrics.pb", Signal::Metrics, 1),
            ("python-sdk-logs.pb", Signal::Logs, 1),
        ] {
            let d = decode_protobuf(signal, fixture(name).into()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(d.batch.items(), items, "{name}");
            assert!(d.batch.is_encoded(), "valid protobuf stays encoded");
            assert_eq!(d.rejected, 0);
        }
    }

    #[test]
    fn truncated_protobuf_is_invalid() {
        let mut bytes = fixture("python-sdk-traces.pb");
        bytes.truncate(bytes.len() - 7);
        let e = decode_protobuf(Signal::Traces, bytes.into()).err().unwrap();
        assert!(e.0.starts_with("cannot decode OTLP/protobuf traces request"), "{}", e.0);
    }

    #[test]
    fn bad_ids_are_rejected_one_by_one() {
        let Request::Traces(mut t) = Request::decode(Signal::Traces, &fixture("python-sdk-traces.pb")).unwrap() else {
            panic!()
        };
        let mut bad = t.resource_spans[0].scope_spans[0].spans[0].clone();
        bad.trace_id = vec![1; 15];
        t.resource_spans[0].scope_spans[0].spans.push(bad);
        let d = decode_protobuf(Signal::Traces, t.encode_to_vec().into()).ok().unwrap();
        assert_eq!((d.batch.items(), d.rejected), (1, 1));
        assert_eq!(d.message.as_deref(), Some("invalid trace id length: 15 bytes, expected 16"));

        t.resource_spans[0].scope_spans[0].spans.remove(0);
        let e = decode_protobuf(Signal::Traces, t.encode_to_vec().into()).err().unwrap();
        assert_eq!(e.0, "invalid trace id length: 15 bytes, expected 16");
    }
}
