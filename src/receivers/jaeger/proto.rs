//! Jaeger api_v2 protobuf (`CollectorService/PostSpans`) into the common span model. Note the
//! value-type enum order differs from Thrift's (PROTOCOLS.md §2.3).

use super::model::{Batch, Log, Process, RefType, Span, SpanRef, Tag, Value};
use crate::proto::jaeger as pb;
use prost::Message;

/// Decodes a `PostSpansRequest`. A span whose ids have the wrong length fails the whole request,
/// naming it, so that a client never hears success for spans that were dropped.
pub fn decode_post_spans(body: &[u8]) -> Result<Batch, String> {
    crate::protowire::check(body).map_err(|e| format!("not a PostSpansRequest: {e}"))?;
    let request = pb::PostSpansRequest::decode(body).map_err(|e| format!("not a PostSpansRequest: {e}"))?;
    let batch = request.batch.unwrap_or_default();
    let spans = batch.spans.into_iter().enumerate().map(|(i, s)| span(s).map_err(|e| format!("span {i}: {e}")));
    Ok(Batch { process: batch.process.map(process), spans: spans.collect::<Result<_, _>>()? })
}

fn span(s: pb::Span) -> Result<Span, String> {
    let references = s
        .references
        .into_iter()
        .map(|r| {
            Ok(SpanRef {
                ref_type: if r.ref_type == pb::SpanRefType::FollowsFrom as i32 {
                    RefType::FollowsFrom
                } else {
                    RefType::ChildOf
                },
                trace_id: fixed(&r.trace_id, "reference trace_id")?,
                span_id: fixed(&r.span_id, "reference span_id")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Span {
        trace_id: fixed(&s.trace_id, "trace_id")?,
        span_id: fixed(&s.span_id, "span_id")?,
        parent_span_id: [0; 8],
        operation_name: s.operation_name,
        references,
        flags: s.flags,
        start_unix_nano: s.start_time.map(|t| nanos(t.seconds, t.nanos)).unwrap_or(0),
        duration_nano: s.duration.map(|d| nanos(d.seconds, d.nanos)).unwrap_or(0),
        tags: s.tags.into_iter().map(tag).collect(),
        logs: s
            .logs
            .into_iter()
            .map(|l| Log {
                time_unix_nano: l.timestamp.map(|t| nanos(t.seconds, t.nanos)).unwrap_or(0),
                fields: l.fields.into_iter().map(tag).collect(),
            })
            .collect(),
        process: s.process.map(process),
    })
}

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("{what} must be {N} bytes, got {}", bytes.len()))
}

fn nanos(seconds: i64, nanos: i32) -> u64 {
    u64::try_from(seconds).unwrap_or(0).saturating_mul(1_000_000_000).saturating_add(u64::try_from(nanos).unwrap_or(0))
}

fn process(p: pb::Process) -> Process {
    Process { service_name: p.service_name, tags: p.tags.into_iter().map(tag).collect() }
}

fn tag(kv: pb::KeyValue) -> Tag {
    let Ok(v_type) = pb::ValueType::try_from(kv.v_type) else {
        // As the collector does: keep the tag, saying what was wrong with it.
        return Tag { key: kv.key, value: Value::Str(format!("<Unknown Jaeger TagType \"{}\">", kv.v_type)) };
    };
    let value = match v_type {
        pb::ValueType::String => Value::Str(kv.v_str),
        pb::ValueType::Bool => Value::Bool(kv.v_bool),
        pb::ValueType::Int64 => Value::Long(kv.v_int64),
        pb::ValueType::Float64 => Value::Double(kv.v_float64),
        pb::ValueType::Binary => Value::Binary(kv.v_binary),
    };
    Tag { key: kv.key, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(trace_id: Vec<u8>) -> Vec<u8> {
        let kv = |key: &str, v_type: pb::ValueType| pb::KeyValue {
            key: key.into(),
            v_type: v_type as i32,
            v_str: "s".into(),
            v_bool: true,
            v_int64: 5,
            v_float64: 2.5,
            v_binary: vec![1],
        };
        pb::PostSpansRequest {
            batch: Some(pb::Batch {
                process: Some(pb::Process { service_name: "svc".into(), tags: vec![kv("h", pb::ValueType::String)] }),
                spans: vec![pb::Span {
                    trace_id,
                    span_id: vec![0, 0, 0, 0, 0, 0, 0, 2],
                    operation_name: "op".into(),
                    references: vec![pb::SpanRef {
                        trace_id: vec![1; 16],
                        span_id: vec![3; 8],
                        ref_type: pb::SpanRefType::FollowsFrom as i32,
                    }],
                    flags: 1,
                    start_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123 }),
                    duration: Some(prost_types::Duration { seconds: 0, nanos: 5_000 }),
                    tags: vec![
                        kv("b", pb::ValueType::Bool),
                        kv("i", pb::ValueType::Int64),
                        kv("f", pb::ValueType::Float64),
                        kv("x", pb::ValueType::Binary),
                    ],
                    logs: vec![],
                    process: None,
                }],
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn value_types_follow_the_protobuf_enum_order_and_times_keep_nanoseconds() {
        let b = decode_post_spans(&request(vec![1; 16])).unwrap();
        let s = &b.spans[0];
        let values: Vec<&Value> = s.tags.iter().map(|t| &t.value).collect();
        assert_eq!(values, vec![&Value::Bool(true), &Value::Long(5), &Value::Double(2.5), &Value::Binary(vec![1])]);
        assert_eq!(s.start_unix_nano, 1_700_000_000_000_000_123);
        assert_eq!(s.duration_nano, 5_000);
        assert_eq!(s.references[0].ref_type, RefType::FollowsFrom);
        assert_eq!(b.process.unwrap().service_name, "svc");
    }

    #[test]
    fn a_trace_id_of_the_wrong_length_fails_the_request() {
        let e = decode_post_spans(&request(vec![1; 8])).unwrap_err();
        assert_eq!(e, "span 0: trace_id must be 16 bytes, got 8");
        assert!(decode_post_spans(b"\xff\xff").is_err());
    }
}
