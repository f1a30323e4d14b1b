//! Writing `jaeger.thrift` batches as Jaeger clients do (agent datagrams, collector HTTP bodies),
//! with the `thrift` crate's reference protocols. switchyard never sends Jaeger; this is for the
//! tests and benchmarks, so that decoding is checked against an independent encoder.

use super::model::{Batch, Log, Process, RefType, Span, SpanRef, Tag, Value};
use super::thrift::Protocol;
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TFieldIdentifier, TListIdentifier, TMessageIdentifier, TMessageType,
    TOutputProtocol, TStructIdentifier, TType,
};

type R = thrift::Result<()>;

/// Writes field `id` of type `ty` with `value` inside.
fn field(p: &mut dyn TOutputProtocol, id: i16, ty: TType, value: impl FnOnce(&mut dyn TOutputProtocol) -> R) -> R {
    p.write_field_begin(&TFieldIdentifier::new("f", ty, id))?;
    value(p)?;
    p.write_field_end()
}

fn strukt(p: &mut dyn TOutputProtocol, name: &str, fields: impl FnOnce(&mut dyn TOutputProtocol) -> R) -> R {
    p.write_struct_begin(&TStructIdentifier::new(name))?;
    fields(p)?;
    p.write_field_stop()?;
    p.write_struct_end()
}

fn list<T>(p: &mut dyn TOutputProtocol, id: i16, items: &[T], item: fn(&mut dyn TOutputProtocol, &T) -> R) -> R {
    field(p, id, TType::List, |p| {
        p.write_list_begin(&TListIdentifier::new(TType::Struct, items.len() as i32))?;
        for i in items {
            item(p, i)?;
        }
        p.write_list_end()
    })
}

fn i64_field(p: &mut dyn TOutputProtocol, id: i16, v: i64) -> R {
    field(p, id, TType::I64, |p| p.write_i64(v))
}

fn tag(p: &mut dyn TOutputProtocol, t: &Tag) -> R {
    strukt(p, "Tag", |p| {
        field(p, 1, TType::String, |p| p.write_string(&t.key))?;
        let v_type = match &t.value {
            Value::Str(_) => 0,
            Value::Double(_) => 1,
            Value::Bool(_) => 2,
            Value::Long(_) => 3,
            Value::Binary(_) => 4,
        };
        field(p, 2, TType::I32, |p| p.write_i32(v_type))?;
        match &t.value {
            Value::Str(s) => field(p, 3, TType::String, |p| p.write_string(s)),
            Value::Double(d) => field(p, 4, TType::Double, |p| p.write_double(*d)),
            Value::Bool(b) => field(p, 5, TType::Bool, |p| p.write_bool(*b)),
            Value::Long(l) => i64_field(p, 6, *l),
            Value::Binary(b) => field(p, 7, TType::String, |p| p.write_bytes(b)),
        }
    })
}

fn halves(id: &[u8; 16]) -> (i64, i64) {
    let (high, low) = id.split_at(8);
    let half = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    (half(high), half(low))
}

fn span_ref(p: &mut dyn TOutputProtocol, r: &SpanRef) -> R {
    strukt(p, "SpanRef", |p| {
        field(p, 1, TType::I32, |p| p.write_i32(if r.ref_type == RefType::ChildOf { 0 } else { 1 }))?;
        let (high, low) = halves(&r.trace_id);
        i64_field(p, 2, low)?;
        i64_field(p, 3, high)?;
        i64_field(p, 4, i64::from_be_bytes(r.span_id))
    })
}

fn log(p: &mut dyn TOutputProtocol, l: &Log) -> R {
    strukt(p, "Log", |p| {
        i64_field(p, 1, (l.time_unix_nano / 1000) as i64)?;
        list(p, 2, &l.fields, tag)
    })
}

fn span(p: &mut dyn TOutputProtocol, s: &Span) -> R {
    strukt(p, "Span", |p| {
        let (high, low) = halves(&s.trace_id);
        i64_field(p, 1, low)?;
        i64_field(p, 2, high)?;
        i64_field(p, 3, i64::from_be_bytes(s.span_id))?;
        i64_field(p, 4, i64::from_be_bytes(s.parent_span_id))?;
        field(p, 5, TType::String, |p| p.write_string(&s.operation_name))?;
        list(p, 6, &s.references, span_ref)?;
        field(p, 7, TType::I32, |p| p.write_i32(s.flags as i32))?;
        i64_field(p, 8, (s.start_unix_nano / 1000) as i64)?;
        i64_field(p, 9, (s.duration_nano / 1000) as i64)?;
        list(p, 10, &s.tags, tag)?;
        list(p, 11, &s.logs, log)
    })
}

fn process(p: &mut dyn TOutputProtocol, process: &Process) -> R {
    strukt(p, "Process", |p| {
        field(p, 1, TType::String, |p| p.write_string(&process.service_name))?;
        list(p, 2, &process.tags, tag)
    })
}

fn batch(p: &mut dyn TOutputProtocol, b: &Batch) -> R {
    strukt(p, "Batch", |p| {
        let process_ = b.process.clone().unwrap_or_default();
        field(p, 1, TType::Struct, |p| process(p, &process_))?;
        list(p, 2, &b.spans, span)
    })
}

fn emit_batch(p: &mut dyn TOutputProtocol, b: &Batch) -> R {
    p.write_message_begin(&TMessageIdentifier::new("emitBatch", TMessageType::OneWay, 1))?;
    strukt(p, "emitBatch_args", |p| field(p, 1, TType::Struct, |p| batch(p, b)))?;
    p.write_message_end()?;
    p.flush()
}

/// An agent datagram carrying `b` (`Agent.emitBatch`), as a Jaeger client sends it.
pub fn agent_datagram(protocol: Protocol, b: &Batch) -> thrift::Result<Vec<u8>> {
    let mut out = Vec::new();
    match protocol {
        Protocol::Compact => emit_batch(&mut TCompactOutputProtocol::new(&mut out), b)?,
        Protocol::Binary => emit_batch(&mut TBinaryOutputProtocol::new(&mut out, true), b)?,
    }
    Ok(out)
}

/// A collector HTTP body carrying `b`: a bare Thrift-binary `Batch`.
pub fn binary_batch(b: &Batch) -> thrift::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = TBinaryOutputProtocol::new(&mut out, true);
    batch(&mut p, b)?;
    p.flush()?;
    Ok(out)
}
