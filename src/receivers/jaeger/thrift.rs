//! Decoding `jaeger.thrift` batches: agent datagrams (`Agent.emitBatch`, Thrift compact or binary)
//! and collector HTTP bodies (a bare Thrift-binary `Batch`). Field ids per PROTOCOLS.md §2.3.
//!
//! The `thrift` crate reads the protocol; the structs are read here by hand, because no Thrift
//! compiler is at hand. As in the code Thrift generates, unknown fields (and known ids with a
//! different type) are skipped and a missing required field is an error. Lengths are bounded by
//! the input's size, so a forged length cannot make us allocate more than was received.

use super::model::{Batch, Log, Process, RefType, Span, SpanRef, Tag, Value, micros_to_nanos, trace_id};
use thrift::TConfiguration;
use thrift::protocol::{
    TBinaryInputProtocol, TCompactInputProtocol, TInputProtocol, TListIdentifier, TMessageType, TType,
};

/// The Thrift protocol a datagram or body is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Compact,
    Binary,
}

type Result<T> = std::result::Result<T, String>;

fn err(e: thrift::Error) -> String {
    match e {
        thrift::Error::Transport(t) if t.kind == thrift::TransportErrorKind::EndOfFile => {
            "truncated: ended in the middle of a value".to_string()
        }
        thrift::Error::Transport(t) => t.message,
        thrift::Error::Protocol(p) => p.message,
        thrift::Error::Application(a) => a.message,
        thrift::Error::User(u) => u.to_string(),
    }
}

fn config(len: usize) -> TConfiguration {
    TConfiguration::builder()
        .max_message_size(Some(len.max(1)))
        .max_string_size(Some(len))
        .max_container_size(Some(len))
        .max_recursion_depth(Some(64))
        .build()
        .unwrap_or_default()
}

fn with_protocol<T>(
    protocol: Protocol,
    bytes: &[u8],
    read: impl FnOnce(&mut dyn TInputProtocol) -> Result<T>,
) -> Result<T> {
    match protocol {
        Protocol::Compact => read(&mut TCompactInputProtocol::with_config(bytes, config(bytes.len()))),
        // Not strict: old clients write the message header without the version word.
        Protocol::Binary => read(&mut TBinaryInputProtocol::with_config(bytes, false, config(bytes.len()))),
    }
}

/// Decodes one agent datagram: an `emitBatch` call carrying one `Batch`.
pub fn decode_agent_message(protocol: Protocol, datagram: &[u8]) -> Result<Batch> {
    with_protocol(protocol, datagram, |p| {
        let message = p.read_message_begin().map_err(err)?;
        if !matches!(message.message_type, TMessageType::OneWay | TMessageType::Call) {
            return Err(format!("unexpected Thrift message type {:?}", message.message_type));
        }
        if message.name != "emitBatch" {
            return Err(format!("unsupported agent method \"{}\": only emitBatch is served", message.name));
        }
        let mut batch = None;
        read_struct(p, |p, id, ty| match (id, ty) {
            (1, TType::Struct) => {
                batch = Some(read_batch(p)?);
                Ok(true)
            }
            _ => Ok(false),
        })?;
        p.read_message_end().map_err(err)?;
        batch.ok_or_else(|| "emitBatch carries no batch".to_string())
    })
}

/// Decodes a collector HTTP body: one bare Thrift-binary `Batch`.
pub fn decode_batch(body: &[u8]) -> Result<Batch> {
    with_protocol(Protocol::Binary, body, read_batch)
}

/// Reads a struct, handing each field to `field` (which returns whether it read it; fields it
/// does not read are skipped).
fn read_struct(
    p: &mut dyn TInputProtocol,
    mut field: impl FnMut(&mut dyn TInputProtocol, i16, TType) -> Result<bool>,
) -> Result<()> {
    p.read_struct_begin().map_err(err)?;
    loop {
        let ident = p.read_field_begin().map_err(err)?;
        if ident.field_type == TType::Stop {
            break;
        }
        let id = ident.id.unwrap_or(0);
        if !field(p, id, ident.field_type)? {
            p.skip(ident.field_type).map_err(err)?;
        }
        p.read_field_end().map_err(err)?;
    }
    p.read_struct_end().map_err(err)
}

/// Reads a list of structs with `item`; a list of anything else is skipped and yields nothing.
fn read_list<T>(
    p: &mut dyn TInputProtocol,
    mut item: impl FnMut(&mut dyn TInputProtocol) -> Result<T>,
) -> Result<Vec<T>> {
    let TListIdentifier { element_type, size } = p.read_list_begin().map_err(err)?;
    let size = usize::try_from(size).unwrap_or(0);
    let mut out = Vec::new();
    for _ in 0..size {
        if element_type == TType::Struct {
            out.push(item(p)?);
        } else {
            p.skip(element_type).map_err(err)?;
        }
    }
    p.read_list_end().map_err(err)?;
    Ok(out)
}

fn missing(what: &str, field: &str) -> String {
    format!("{what} without its required field {field}")
}

fn read_batch(p: &mut dyn TInputProtocol) -> Result<Batch> {
    let (mut process, mut spans) = (None, None);
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::Struct) => process = Some(read_process(p)?),
            (2, TType::List) => spans = Some(read_list(p, read_span)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let process = process.ok_or_else(|| missing("Batch", "process (1)"))?;
    let spans = spans.ok_or_else(|| missing("Batch", "spans (2)"))?;
    Ok(Batch { process: Some(process), spans })
}

fn read_process(p: &mut dyn TInputProtocol) -> Result<Process> {
    let (mut service_name, mut tags) = (None, Vec::new());
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => service_name = Some(p.read_string().map_err(err)?),
            (2, TType::List) => tags = read_list(p, read_tag)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Process { service_name: service_name.ok_or_else(|| missing("Process", "serviceName (1)"))?, tags })
}

fn read_tag(p: &mut dyn TInputProtocol) -> Result<Tag> {
    let (mut key, mut v_type) = (None, None);
    let (mut v_str, mut v_double, mut v_bool, mut v_long, mut v_binary) = (None, None, None, None, None);
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => key = Some(p.read_string().map_err(err)?),
            (2, TType::I32) => v_type = Some(p.read_i32().map_err(err)?),
            (3, TType::String) => v_str = Some(p.read_string().map_err(err)?),
            (4, TType::Double) => v_double = Some(p.read_double().map_err(err)?),
            (5, TType::Bool) => v_bool = Some(p.read_bool().map_err(err)?),
            (6, TType::I64) => v_long = Some(p.read_i64().map_err(err)?),
            (7, TType::String) => v_binary = Some(p.read_bytes().map_err(err)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let key = key.ok_or_else(|| missing("Tag", "key (1)"))?;
    let v_type = v_type.ok_or_else(|| missing("Tag", "vType (2)"))?;
    // A value of the announced type that is absent reads as that type's zero, as in Jaeger.
    let value = match v_type {
        0 => Value::Str(v_str.unwrap_or_default()),
        1 => Value::Double(v_double.unwrap_or_default()),
        2 => Value::Bool(v_bool.unwrap_or_default()),
        3 => Value::Long(v_long.unwrap_or_default()),
        4 => Value::Binary(v_binary.unwrap_or_default()),
        // As the collector does: keep the tag, saying what was wrong with it.
        other => Value::Str(format!("<Unknown Jaeger TagType \"{other}\">")),
    };
    Ok(Tag { key, value })
}

fn read_log(p: &mut dyn TInputProtocol) -> Result<Log> {
    let (mut timestamp, mut fields) = (None, None);
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::I64) => timestamp = Some(p.read_i64().map_err(err)?),
            (2, TType::List) => fields = Some(read_list(p, read_tag)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Log {
        time_unix_nano: micros_to_nanos(timestamp.ok_or_else(|| missing("Log", "timestamp (1)"))?),
        fields: fields.ok_or_else(|| missing("Log", "fields (2)"))?,
    })
}

fn read_span_ref(p: &mut dyn TInputProtocol) -> Result<SpanRef> {
    let (mut ref_type, mut low, mut high, mut span_id) = (None, None, None, None);
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::I32) => ref_type = Some(p.read_i32().map_err(err)?),
            (2, TType::I64) => low = Some(p.read_i64().map_err(err)?),
            (3, TType::I64) => high = Some(p.read_i64().map_err(err)?),
            (4, TType::I64) => span_id = Some(p.read_i64().map_err(err)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // An unknown reference type counts as CHILD_OF, as in the protobuf form (its enum default).
    let ref_type = match ref_type.ok_or_else(|| missing("SpanRef", "refType (1)"))? {
        1 => RefType::FollowsFrom,
        _ => RefType::ChildOf,
    };
    Ok(SpanRef {
        ref_type,
        trace_id: trace_id(
            high.ok_or_else(|| missing("SpanRef", "traceIdHigh (3)"))?,
            low.ok_or_else(|| missing("SpanRef", "traceIdLow (2)"))?,
        ),
        span_id: span_id.ok_or_else(|| missing("SpanRef", "spanId (4)"))?.to_be_bytes(),
    })
}

fn read_span(p: &mut dyn TInputProtocol) -> Result<Span> {
    let (mut low, mut high, mut span_id, mut parent, mut name) = (None, None, None, None, None);
    let (mut flags, mut start, mut duration) = (None, None, None);
    let mut span = Span::default();
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::I64) => low = Some(p.read_i64().map_err(err)?),
            (2, TType::I64) => high = Some(p.read_i64().map_err(err)?),
            (3, TType::I64) => span_id = Some(p.read_i64().map_err(err)?),
            (4, TType::I64) => parent = Some(p.read_i64().map_err(err)?),
            (5, TType::String) => name = Some(p.read_string().map_err(err)?),
            (6, TType::List) => span.references = read_list(p, read_span_ref)?,
            (7, TType::I32) => flags = Some(p.read_i32().map_err(err)?),
            (8, TType::I64) => start = Some(p.read_i64().map_err(err)?),
            (9, TType::I64) => duration = Some(p.read_i64().map_err(err)?),
            (10, TType::List) => span.tags = read_list(p, read_tag)?,
            (11, TType::List) => span.logs = read_list(p, read_log)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let need = |v: Option<i64>, field: &str| v.ok_or_else(|| missing("Span", field));
    span.trace_id = trace_id(need(high, "traceIdHigh (2)")?, need(low, "traceIdLow (1)")?);
    span.span_id = need(span_id, "spanId (3)")?.to_be_bytes();
    span.parent_span_id = need(parent, "parentSpanId (4)")?.to_be_bytes();
    span.operation_name = name.ok_or_else(|| missing("Span", "operationName (5)"))?;
    span.flags = flags.ok_or_else(|| missing("Span", "flags (7)"))? as u32;
    let start = need(start, "startTime (8)")?;
    span.start_unix_nano = micros_to_nanos(start);
    span.duration_nano = micros_to_nanos(need(duration, "duration (9)")?);
    Ok(span)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::receivers::jaeger::thrift_encode::{agent_datagram, binary_batch};
    use thrift::protocol::{
        TBinaryOutputProtocol, TCompactOutputProtocol, TFieldIdentifier, TMessageIdentifier, TOutputProtocol,
        TStructIdentifier,
    };

    /// A batch using every field and value type.
    pub fn sample() -> Batch {
        let tid = trace_id(0x1122334455667788, -0x1122334455667788);
        Batch {
            process: Some(Process {
                service_name: "shop".into(),
                tags: vec![Tag::new("hostname", Value::Str("box-1".into())), Tag::new("pid", Value::Long(42))],
            }),
            spans: vec![Span {
                trace_id: tid,
                span_id: 7i64.to_be_bytes(),
                parent_span_id: 3i64.to_be_bytes(),
                operation_name: "GET /checkout".into(),
                references: vec![SpanRef {
                    ref_type: RefType::FollowsFrom,
                    trace_id: tid,
                    span_id: 9i64.to_be_bytes(),
                }],
                flags: 1,
                start_unix_nano: 1_700_000_000_123_456_000,
                duration_nano: 2_500_000,
                tags: vec![
                    Tag::new("s", Value::Str("x".into())),
                    Tag::new("d", Value::Double(12.5)),
                    Tag::new("b", Value::Bool(true)),
                    Tag::new("l", Value::Long(-3)),
                    Tag::new("bin", Value::Binary(vec![0, 1, 255])),
                ],
                logs: vec![Log {
                    time_unix_nano: 1_700_000_000_124_000_000,
                    fields: vec![Tag::new("event", Value::Str("retry".into()))],
                }],
                process: None,
            }],
        }
    }

    #[test]
    fn both_protocols_decode_what_the_reference_encoder_wrote() {
        let b = sample();
        for protocol in [Protocol::Compact, Protocol::Binary] {
            assert_eq!(
                decode_agent_message(protocol, &agent_datagram(protocol, &b).unwrap()),
                Ok(b.clone()),
                "{protocol:?}"
            );
        }
        assert_eq!(decode_batch(&binary_batch(&b).unwrap()), Ok(b));
    }

    #[test]
    fn the_compact_header_is_what_clients_send() {
        let d = agent_datagram(Protocol::Compact, &sample()).unwrap();
        assert_eq!(&d[..2], &[0x82, 0x81], "protocol id, then version 1 with type ONEWAY");
        let d = agent_datagram(Protocol::Binary, &sample()).unwrap();
        assert_eq!(&d[..4], &[0x80, 0x01, 0x00, 0x04], "strict binary header, ONEWAY");
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        for protocol in [Protocol::Compact, Protocol::Binary] {
            let d = agent_datagram(protocol, &sample()).unwrap();
            for cut in 0..d.len() {
                assert!(decode_agent_message(protocol, &d[..cut]).is_err(), "{protocol:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn random_bytes_and_flipped_bytes_never_panic() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for protocol in [Protocol::Compact, Protocol::Binary] {
            let good = agent_datagram(protocol, &sample()).unwrap();
            for _ in 0..20_000 {
                let mut d = good.clone();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() as usize) % d.len();
                    d[i] = next() as u8;
                }
                let _ = decode_agent_message(protocol, &d);
                let noise: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
                let _ = decode_agent_message(protocol, &noise);
            }
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_without_allocating_it() {
        // Strict binary header for "emitBatch", then field 1 (struct) → Batch field 1 (struct)
        // → Process field 1 (string) with a declared length of 2 GiB - 1.
        let mut d = vec![0x80, 0x01, 0x00, 0x04, 0, 0, 0, 9];
        d.extend_from_slice(b"emitBatch");
        d.extend_from_slice(&[0, 0, 0, 1, 12, 0, 1, 12, 0, 1, 11, 0, 1, 0x7f, 0xff, 0xff, 0xff]);
        let e = decode_agent_message(Protocol::Binary, &d).unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
    }

    #[test]
    fn wrong_types_for_required_fields_are_errors() {
        // The Batch's process (field 1) written as an i32: skipped, so the batch lacks it.
        let mut out = Vec::new();
        let mut p = TBinaryOutputProtocol::new(&mut out, true);
        p.write_struct_begin(&TStructIdentifier::new("Batch")).unwrap();
        p.write_field_begin(&TFieldIdentifier::new("process", TType::I32, 1)).unwrap();
        p.write_i32(5).unwrap();
        p.write_field_end().unwrap();
        p.write_field_stop().unwrap();
        p.write_struct_end().unwrap();
        assert_eq!(decode_batch(&out), Err("Batch without its required field process (1)".into()));
    }

    #[test]
    fn other_agent_methods_are_named_in_the_error() {
        let mut out = Vec::new();
        let mut p = TCompactOutputProtocol::new(&mut out);
        p.write_message_begin(&TMessageIdentifier::new("emitZipkinBatch", TMessageType::OneWay, 1)).unwrap();
        p.flush().unwrap();
        drop(p);
        let e = decode_agent_message(Protocol::Compact, &out).unwrap_err();
        assert!(e.contains("emitZipkinBatch"), "{e}");
    }
}
