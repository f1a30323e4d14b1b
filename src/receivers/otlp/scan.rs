//! A validating scan of OTLP protobuf requests that builds nothing: it checks the wire format
//! exactly as the decoder would (field wire types, lengths, varints, UTF-8 strings, nesting
//! depth), counts the items (spans, metric data points, log records) and checks id lengths,
//! without allocating. A request that passes is guaranteed to decode later, so the receiver can
//! keep the bytes as they arrived and decode only if a processor needs the fields.
//!
//! The schema below follows the `opentelemetry-proto` messages field by field; a test compares
//! the scan with the real decoder on many thousands of mutated requests.

use crate::signal::Signal;

/// What the scan learned about a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub items: usize,
    /// False when some span, link or log record has an id of the wrong length.
    pub ids_ok: bool,
    /// Spans and log records the receiver will reject for their ids (a span with a bad link
    /// counts once).
    pub invalid_items: usize,
    /// An upper bound of the bytes a full decode allocates: every element of a repeated
    /// message field twice (its vector may have doubled past its length; singular messages live
    /// inside their parent's struct), every string and bytes value, every packed number.
    pub decoded_bytes: usize,
}

/// Scans an `Export{Trace,Metrics,Logs}ServiceRequest`.
pub fn scan(signal: Signal, bytes: &[u8]) -> Result<Scan, String> {
    let root = match signal {
        Signal::Traces => M::TraceRequest,
        Signal::Metrics => M::MetricsRequest,
        Signal::Logs => M::LogsRequest,
    };
    let mut state = State { ids_ok: true, invalid_items: 0, bad_link: false, heap: size_of_message(root) };
    let items = walk(root, bytes, MAX_DEPTH, &mut state)?;
    Ok(Scan { items, ids_ok: state.ids_ok, invalid_items: state.invalid_items, decoded_bytes: state.heap })
}

/// Nesting of messages taken: an `AnyValue` array nested 96 levels deep still decodes (the Go
/// collector takes deep values; prost's own limit of 100 is lifted, see `Cargo.toml`, so this
/// scan is what keeps the decoder's recursion, and its stack, bounded).
pub const MAX_DEPTH: u32 = 200;

struct State {
    ids_ok: bool,
    invalid_items: usize,
    /// Set when a link of the span being walked has a bad id.
    bad_link: bool,
    heap: usize,
}

/// Whether `inner` is an element of a repeated field of `m` (a vector slot of its own, which
/// may have doubled past its length) rather than a singular field held inside `m`'s struct.
fn repeated(m: M, inner: M) -> bool {
    match inner {
        M::Resource | M::Scope | M::Status | M::Points(_) | M::Buckets | M::ArrayValue | M::KeyValueList => false,
        M::AnyValue => m == M::ArrayValue,
        _ => true,
    }
}

/// The in-memory size of message `m`'s struct once decoded.
fn size_of_message(m: M) -> usize {
    use opentelemetry_proto::tonic::collector::{logs::v1 as cl, metrics::v1 as cm, trace::v1 as ct};
    use opentelemetry_proto::tonic::trace::v1 as t;
    use opentelemetry_proto::tonic::{common::v1 as c, logs::v1 as l, metrics::v1 as me, resource::v1 as r};
    use std::mem::size_of;
    match m {
        M::TraceRequest => size_of::<ct::ExportTraceServiceRequest>(),
        M::ResourceSpans => size_of::<t::ResourceSpans>(),
        M::ScopeSpans => size_of::<t::ScopeSpans>(),
        M::Span => size_of::<t::Span>(),
        M::Event => size_of::<t::span::Event>(),
        M::Link => size_of::<t::span::Link>(),
        M::Status => size_of::<t::Status>(),
        M::MetricsRequest => size_of::<cm::ExportMetricsServiceRequest>(),
        M::ResourceMetrics => size_of::<me::ResourceMetrics>(),
        M::ScopeMetrics => size_of::<me::ScopeMetrics>(),
        M::Metric => size_of::<me::Metric>(),
        M::Points(_) => size_of::<me::ExponentialHistogram>().max(size_of::<me::Sum>()),
        M::NumberPoint => size_of::<me::NumberDataPoint>(),
        M::HistogramPoint => size_of::<me::HistogramDataPoint>(),
        M::ExpHistogramPoint => size_of::<me::ExponentialHistogramDataPoint>(),
        M::Buckets => size_of::<me::exponential_histogram_data_point::Buckets>(),
        M::SummaryPoint => size_of::<me::SummaryDataPoint>(),
        M::ValueAtQuantile => size_of::<me::summary_data_point::ValueAtQuantile>(),
        M::Exemplar => size_of::<me::Exemplar>(),
        M::LogsRequest => size_of::<cl::ExportLogsServiceRequest>(),
        M::ResourceLogs => size_of::<l::ResourceLogs>(),
        M::ScopeLogs => size_of::<l::ScopeLogs>(),
        M::LogRecord => size_of::<l::LogRecord>(),
        M::Resource => size_of::<r::Resource>(),
        M::Scope => size_of::<c::InstrumentationScope>(),
        M::EntityRef => size_of::<c::EntityRef>(),
        M::KeyValue => size_of::<c::KeyValue>(),
        M::AnyValue => size_of::<c::AnyValue>(),
        M::ArrayValue => size_of::<c::ArrayValue>(),
        M::KeyValueList => size_of::<c::KeyValueList>(),
    }
}

/// The message types of the three requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    TraceRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// Gauge, Sum, Histogram, ExponentialHistogram and Summary: points at field 1.
    Points(P),
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    ValueAtQuantile,
    Exemplar,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// The point type a metric data message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
}

/// How a field is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Varint,
    Fixed64,
    Fixed32,
    Str,
    Bytes,
    Msg(M),
    /// `repeated fixed64` / `repeated double`: packed or one at a time.
    RepeatedFixed64,
    /// `repeated uint64`: packed or one at a time.
    RepeatedVarint,
}

/// The schema: the encoding of field `n` of message `m`, or `None` for an unknown field.
fn field(m: M, n: u32) -> Option<F> {
    use F::*;
    let kv = Msg(M::KeyValue);
    Some(match (m, n) {
        (M::TraceRequest, 1) => Msg(M::ResourceSpans),
        (M::ResourceSpans, 1) | (M::ResourceMetrics, 1) | (M::ResourceLogs, 1) => Msg(M::Resource),
        (M::ResourceSpans, 2) => Msg(M::ScopeSpans),
        (M::ResourceSpans | M::ResourceMetrics | M::ResourceLogs, 3) => Str,
        (M::ScopeSpans | M::ScopeMetrics | M::ScopeLogs, 1) => Msg(M::Scope),
        (M::ScopeSpans, 2) => Msg(M::Span),
        (M::ScopeSpans | M::ScopeMetrics | M::ScopeLogs, 3) => Str,
        (M::Span, 1 | 2 | 4) => Bytes,
        (M::Span, 3 | 5) => Str,
        (M::Span, 16) => Fixed32,
        (M::Span, 6 | 10 | 12 | 14) => Varint,
        (M::Span, 7 | 8) => Fixed64,
        (M::Span, 9) => kv,
        (M::Span, 11) => Msg(M::Event),
        (M::Span, 13) => Msg(M::Link),
        (M::Span, 15) => Msg(M::Status),
        (M::Event, 1) => Fixed64,
        (M::Event, 2) => Str,
        (M::Event, 3) => kv,
        (M::Event, 4) => Varint,
        (M::Link, 1 | 2) => Bytes,
        (M::Link, 3) => Str,
        (M::Link, 4) => kv,
        (M::Link, 5) => Varint,
        (M::Link, 6) => Fixed32,
        (M::Status, 2) => Str,
        (M::Status, 3) => Varint,
        (M::MetricsRequest, 1) => Msg(M::ResourceMetrics),
        (M::ResourceMetrics, 2) => Msg(M::ScopeMetrics),
        (M::ScopeMetrics, 2) => Msg(M::Metric),
        (M::Metric, 1..=3) => Str,
        (M::Metric, 5) => Msg(M::Points(P::Gauge)),
        (M::Metric, 7) => Msg(M::Points(P::Sum)),
        (M::Metric, 9) => Msg(M::Points(P::Histogram)),
        (M::Metric, 10) => Msg(M::Points(P::ExpHistogram)),
        (M::Metric, 11) => Msg(M::Points(P::Summary)),
        (M::Metric, 12) => kv,
        (M::Points(p), 1) => Msg(match p {
            P::Gauge | P::Sum => M::NumberPoint,
            P::Histogram => M::HistogramPoint,
            P::ExpHistogram => M::ExpHistogramPoint,
            P::Summary => M::SummaryPoint,
        }),
        // Sum: temporality and monotonic; Histogram/ExponentialHistogram: temporality.
        (M::Points(P::Sum | P::Histogram | P::ExpHistogram), 2) | (M::Points(P::Sum), 3) => Varint,
        (M::NumberPoint, 7) => kv,
        (M::NumberPoint, 2 | 3 | 4 | 6) => Fixed64,
        (M::NumberPoint, 5) => Msg(M::Exemplar),
        (M::NumberPoint, 8) => Varint,
        (M::HistogramPoint, 9) => kv,
        (M::HistogramPoint, 2..=5 | 11 | 12) => Fixed64,
        (M::HistogramPoint, 6 | 7) => RepeatedFixed64,
        (M::HistogramPoint, 8) => Msg(M::Exemplar),
        (M::HistogramPoint, 10) => Varint,
        (M::ExpHistogramPoint, 1) => kv,
        (M::ExpHistogramPoint, 2..=5 | 7 | 12..=14) => Fixed64,
        (M::ExpHistogramPoint, 6 | 10) => Varint,
        (M::ExpHistogramPoint, 8 | 9) => Msg(M::Buckets),
        (M::ExpHistogramPoint, 11) => Msg(M::Exemplar),
        (M::Buckets, 1) => Varint,
        (M::Buckets, 2) => RepeatedVarint,
        (M::SummaryPoint, 7) => kv,
        (M::SummaryPoint, 2..=5) => Fixed64,
        (M::SummaryPoint, 6) => Msg(M::ValueAtQuantile),
        (M::SummaryPoint, 8) => Varint,
        (M::ValueAtQuantile, 1 | 2) => Fixed64,
        (M::Exemplar, 7) => kv,
        (M::Exemplar, 2 | 3 | 6) => Fixed64,
        (M::Exemplar, 4 | 5) => Bytes,
        (M::LogsRequest, 1) => Msg(M::ResourceLogs),
        (M::ResourceLogs, 2) => Msg(M::ScopeLogs),
        (M::ScopeLogs, 2) => Msg(M::LogRecord),
        (M::LogRecord, 1 | 11) => Fixed64,
        (M::LogRecord, 2 | 7) => Varint,
        (M::LogRecord, 3 | 12) => Str,
        (M::LogRecord, 5) => Msg(M::AnyValue),
        (M::LogRecord, 6) => kv,
        (M::LogRecord, 8) => Fixed32,
        (M::LogRecord, 9 | 10) => Bytes,
        (M::Resource, 1) => kv,
        (M::Resource, 2) => Varint,
        (M::Resource, 3) => Msg(M::EntityRef),
        (M::Scope, 1 | 2) => Str,
        (M::Scope, 3) => kv,
        (M::Scope, 4) => Varint,
        (M::EntityRef, 1..=4) => Str,
        (M::KeyValue, 1) => Str,
        (M::KeyValue, 2) => Msg(M::AnyValue),
        (M::KeyValue, 3) => Varint,
        (M::AnyValue, 1) => Str,
        (M::AnyValue, 2 | 3 | 8) => Varint,
        (M::AnyValue, 4) => Fixed64,
        (M::AnyValue, 5) => Msg(M::ArrayValue),
        (M::AnyValue, 6) => Msg(M::KeyValueList),
        (M::AnyValue, 7) => Bytes,
        (M::ArrayValue, 1) => Msg(M::AnyValue),
        (M::KeyValueList, 1) => kv,
        _ => return None,
    })
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or("buffer underflow")?;
        *pos += 1;
        if i == 9 && b > 1 {
            return Err("invalid varint".into());
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("invalid varint".into())
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: u64) -> Result<&'a [u8], String> {
    let len = usize::try_from(len).map_err(|_| "buffer underflow")?;
    let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or("buffer underflow")?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

/// Reads a field key: (field number, wire type).
fn key(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), String> {
    let k = varint(buf, pos)?;
    if k > u64::from(u32::MAX) {
        return Err(format!("invalid key value: {k}"));
    }
    let wire = (k & 7) as u8;
    let number = (k >> 3) as u32;
    if wire > 5 {
        return Err(format!("invalid wire type value: {wire}"));
    }
    if number == 0 {
        return Err("invalid tag value: 0".into());
    }
    Ok((number, wire))
}

/// Skips one field of an unknown number.
fn skip(buf: &[u8], pos: &mut usize, number: u32, wire: u8, depth: u32) -> Result<(), String> {
    match wire {
        VARINT => varint(buf, pos).map(drop),
        FIXED64 => take(buf, pos, 8).map(drop),
        FIXED32 => take(buf, pos, 4).map(drop),
        LEN => {
            let len = varint(buf, pos)?;
            take(buf, pos, len).map(drop)
        }
        START_GROUP => {
            if depth == 0 {
                return Err("recursion limit reached".into());
            }
            loop {
                if *pos >= buf.len() {
                    return Err("buffer underflow".into());
                }
                let (n, w) = key(buf, pos)?;
                if w == END_GROUP {
                    if n != number {
                        return Err("unexpected end group tag".into());
                    }
                    return Ok(());
                }
                skip(buf, pos, n, w, depth - 1)?;
            }
        }
        _ => Err("unexpected end group tag".into()),
    }
}

/// Walks one message; returns the items counted beneath it.
fn walk(m: M, buf: &[u8], depth: u32, st: &mut State) -> Result<usize, String> {
    let mut pos = 0;
    let mut items = 0usize;
    // Ids are checked on their last occurrence, as the decoder keeps the last one.
    let mut id_lens = [None::<usize>; 3];
    // Metric data is a oneof: the last kind wins; repeats of the same kind merge.
    let mut metric_data: Option<(u32, usize)> = None;
    if m == M::Span {
        st.bad_link = false;
    }
    while pos < buf.len() {
        let (number, wire) = key(buf, &mut pos)?;
        let Some(f) = field(m, number) else {
            skip(buf, &mut pos, number, wire, depth)?;
            continue;
        };
        let expect = |w: u8| if wire == w { Ok(()) } else { Err(format!("invalid wire type: {wire} (expected {w})")) };
        match f {
            F::Varint => {
                expect(VARINT)?;
                varint(buf, &mut pos)?;
            }
            F::Fixed64 => {
                expect(FIXED64)?;
                take(buf, &mut pos, 8)?;
            }
            F::Fixed32 => {
                expect(FIXED32)?;
                take(buf, &mut pos, 4)?;
            }
            F::Str | F::Bytes => {
                expect(LEN)?;
                let len = varint(buf, &mut pos)?;
                let value = take(buf, &mut pos, len)?;
                st.heap = st.heap.saturating_add(value.len());
                if f == F::Str {
                    std::str::from_utf8(value).map_err(|_| "invalid string value: data is not UTF-8 encoded")?;
                } else if let Some(slot) = id_slot(m, number) {
                    id_lens[slot] = Some(value.len());
                }
            }
            F::RepeatedFixed64 => {
                if wire == LEN {
                    let len = varint(buf, &mut pos)?;
                    let packed = take(buf, &mut pos, len)?;
                    if packed.len() % 8 != 0 {
                        return Err("buffer underflow".into());
                    }
                    st.heap = st.heap.saturating_add(packed.len() * 2);
                } else {
                    expect(FIXED64)?;
                    take(buf, &mut pos, 8)?;
                    st.heap = st.heap.saturating_add(16);
                }
            }
            F::RepeatedVarint => {
                if wire == LEN {
                    let len = varint(buf, &mut pos)?;
                    let packed = take(buf, &mut pos, len)?;
                    let mut p = 0;
                    while p < packed.len() {
                        varint(packed, &mut p)?;
                        st.heap = st.heap.saturating_add(16);
                    }
                } else {
                    expect(VARINT)?;
                    varint(buf, &mut pos)?;
                    st.heap = st.heap.saturating_add(16);
                }
            }
            F::Msg(inner) => {
                expect(LEN)?;
                let len = varint(buf, &mut pos)?;
                let body = take(buf, &mut pos, len)?;
                if depth == 0 {
                    return Err("recursion limit reached".into());
                }
                if repeated(m, inner) {
                    st.heap = st.heap.saturating_add(2 * size_of_message(inner));
                }
                let below = walk(inner, body, depth - 1, st)?;
                match (m, inner) {
                    (M::ScopeSpans, M::Span) | (M::ScopeLogs, M::LogRecord) => items += 1,
                    (M::Points(_), _) => items += 1,
                    (M::Metric, M::Points(_)) => {
                        metric_data = match metric_data {
                            Some((n, count)) if n == number => Some((n, count + below)),
                            _ => Some((number, below)),
                        }
                    }
                    _ => items += below,
                }
            }
        }
    }
    if let Some((_, count)) = metric_data {
        items += count;
    }
    let valid = ids_valid(m, &id_lens);
    if !valid {
        st.ids_ok = false;
    }
    match m {
        M::Link if !valid => st.bad_link = true,
        M::Span if !valid || st.bad_link => st.invalid_items += 1,
        M::LogRecord if !valid => st.invalid_items += 1,
        _ => {}
    }
    Ok(items)
}

/// Which id slot a bytes field fills: 0 trace id, 1 span id, 2 parent span id.
fn id_slot(m: M, number: u32) -> Option<usize> {
    match (m, number) {
        (M::Span | M::Link, 1) | (M::LogRecord, 9) => Some(0),
        (M::Span | M::Link, 2) | (M::LogRecord, 10) => Some(1),
        (M::Span, 4) => Some(2),
        _ => None,
    }
}

/// The same rules as the receiver's per-item check: spans and links need both ids; log
/// records and parent span ids may leave them empty.
fn ids_valid(m: M, lens: &[Option<usize>; 3]) -> bool {
    let len = |i: usize| lens[i].unwrap_or(0);
    match m {
        M::Span => len(0) == 16 && len(1) == 8 && matches!(len(2), 0 | 8),
        M::Link => len(0) == 16 && len(1) == 8,
        M::LogRecord => matches!(len(0), 0 | 16) && matches!(len(1), 0 | 8),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Request;
    use crate::pipeline::tests_support::{fixture, traces};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
    use prost::Message;

    /// A small deterministic generator (xorshift) for mutations.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
        let mut b = input.to_vec();
        for _ in 0..=rng.below(3) {
            match rng.below(5) {
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                1 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                2 => b.truncate(rng.below(b.len() + 1)),
                3 => {
                    let i = rng.below(b.len() + 1);
                    b.insert(i, rng.next() as u8);
                }
                _ if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b.remove(i);
                }
                _ => {}
            }
        }
        b
    }

    /// What the full decoder says: Ok((items, every id valid)) or an error.
    fn decoder(signal: Signal, bytes: &[u8]) -> Result<(usize, bool), ()> {
        let mut r = Request::decode(signal, bytes).map_err(|_| ())?;
        let items = r.item_count();
        let ids_ok = match &mut r {
            Request::Traces(t) => {
                t.resource_spans.iter().flat_map(|x| &x.scope_spans).flat_map(|x| &x.spans).all(|s| {
                    s.trace_id.len() == 16
                        && s.span_id.len() == 8
                        && matches!(s.parent_span_id.len(), 0 | 8)
                        && s.links.iter().all(|l| l.trace_id.len() == 16 && l.span_id.len() == 8)
                })
            }
            Request::Logs(l) => l
                .resource_logs
                .iter()
                .flat_map(|x| &x.scope_logs)
                .flat_map(|x| &x.log_records)
                .all(|r| matches!(r.trace_id.len(), 0 | 16) && matches!(r.span_id.len(), 0 | 8)),
            Request::Metrics(_) => true,
        };
        Ok((items, ids_ok))
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    /// Requests that use every message type of the schema.
    fn rich() -> Vec<(Signal, Vec<u8>)> {
        use any_value::Value as V;
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1 as lv1;
        use opentelemetry_proto::tonic::metrics::v1 as mv1;
        use opentelemetry_proto::tonic::trace::v1 as tv1;
        let attrs = vec![
            kv("s", V::StringValue("x".into())),
            kv("i", V::IntValue(-3)),
            kv("d", V::DoubleValue(1.5)),
            kv("b", V::BoolValue(true)),
            kv("y", V::BytesValue(vec![1, 2])),
            kv("a", V::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(V::IntValue(1)) }] })),
            kv("k", V::KvlistValue(KeyValueList { values: vec![kv("n", V::StringValue("v".into()))] })),
        ];
        let resource = Some(opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: attrs.clone(),
            dropped_attributes_count: 1,
            ..Default::default()
        });
        let scope = Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
            name: "n".into(),
            version: "v".into(),
            attributes: attrs.clone(),
            dropped_attributes_count: 2,
        });
        let mut t = traces(2);
        t.resource_spans[0].resource = resource.clone();
        t.resource_spans[0].scope_spans[0].scope = scope.clone();
        let span = &mut t.resource_spans[0].scope_spans[0].spans[0];
        span.attributes = attrs.clone();
        span.flags = 257;
        span.events = vec![tv1::span::Event {
            time_unix_nano: 5,
            name: "e".into(),
            attributes: attrs.clone(),
            dropped_attributes_count: 1,
        }];
        span.links = vec![tv1::span::Link {
            trace_id: vec![3; 16],
            span_id: vec![4; 8],
            trace_state: "t".into(),
            attributes: attrs.clone(),
            dropped_attributes_count: 1,
            flags: 1,
        }];
        span.status = Some(tv1::Status { message: "m".into(), code: 2 });
        let exemplar = mv1::Exemplar {
            filtered_attributes: attrs.clone(),
            time_unix_nano: 1,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(mv1::exemplar::Value::AsInt(4)),
        };
        let number = mv1::NumberDataPoint {
            attributes: attrs.clone(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: vec![exemplar.clone()],
            flags: 1,
            value: Some(mv1::number_data_point::Value::AsDouble(2.5)),
        };
        let metric = |data| mv1::Metric {
            name: "m".into(),
            description: "d".into(),
            unit: "1".into(),
            metadata: attrs.clone(),
            data: Some(data),
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![mv1::ResourceMetrics {
                resource: resource.clone(),
                scope_metrics: vec![mv1::ScopeMetrics {
                    scope: scope.clone(),
                    metrics: vec![
                        metric(mv1::metric::Data::Gauge(mv1::Gauge { data_points: vec![number.clone(); 2] })),
                        metric(mv1::metric::Data::Sum(mv1::Sum {
                            data_points: vec![number],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        metric(mv1::metric::Data::Histogram(mv1::Histogram {
                            data_points: vec![mv1::HistogramDataPoint {
                                attributes: attrs.clone(),
                                count: 3,
                                sum: Some(1.0),
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![0.5],
                                exemplars: vec![exemplar.clone()],
                                min: Some(0.1),
                                max: Some(0.9),
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        metric(mv1::metric::Data::ExponentialHistogram(mv1::ExponentialHistogram {
                            data_points: vec![mv1::ExponentialHistogramDataPoint {
                                attributes: attrs.clone(),
                                count: 4,
                                scale: -2,
                                zero_count: 1,
                                positive: Some(mv1::exponential_histogram_data_point::Buckets {
                                    offset: -1,
                                    bucket_counts: vec![1, 300],
                                }),
                                negative: Some(Default::default()),
                                exemplars: vec![exemplar],
                                zero_threshold: 0.01,
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        metric(mv1::metric::Data::Summary(mv1::Summary {
                            data_points: vec![mv1::SummaryDataPoint {
                                attributes: attrs.clone(),
                                count: 2,
                                sum: 3.0,
                                quantile_values: vec![mv1::summary_data_point::ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 1.0,
                                }],
                                ..Default::default()
                            }],
                        })),
                    ],
                    schema_url: "s".into(),
                }],
                schema_url: "r".into(),
            }],
        };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![lv1::ResourceLogs {
                resource,
                scope_logs: vec![lv1::ScopeLogs {
                    scope,
                    log_records: vec![
                        lv1::LogRecord {
                            time_unix_nano: 1,
                            observed_time_unix_nano: 2,
                            severity_number: 9,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue { value: Some(V::StringValue("b".into())) }),
                            attributes: attrs,
                            flags: 1,
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            event_name: "ev".into(),
                            ..Default::default()
                        };
                        2
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        vec![
            (Signal::Traces, t.encode_to_vec()),
            (Signal::Metrics, metrics.encode_to_vec()),
            (Signal::Logs, logs.encode_to_vec()),
        ]
    }

    fn seeds() -> Vec<(Signal, Vec<u8>)> {
        let mut v = vec![
            (Signal::Traces, fixture("python-sdk-traces.pb")),
            (Signal::Metrics, fixture("python-sdk-metrics.pb")),
            (Signal::Logs, fixture("python-sdk-logs.pb")),
            (Signal::Traces, traces(5).encode_to_vec()),
        ];
        v.extend(rich());
        v
    }

    #[test]
    fn nesting_limit_matches_the_decoder() {
        use any_value::Value as V;
        // prost's own limit is lifted (Cargo.toml): the scan's MAX_DEPTH is the bound, and an
        // AnyValue array nested 64 levels deep (the Go collector takes it) is well inside it.
        for depth in [48usize, 64, 90, 96] {
            let mut value = AnyValue { value: Some(V::IntValue(1)) };
            for _ in 0..depth {
                value = AnyValue { value: Some(V::ArrayValue(ArrayValue { values: vec![value] })) };
            }
            let mut t = traces(1);
            t.resource_spans[0].scope_spans[0].spans[0].attributes =
                vec![KeyValue { key: "deep".into(), value: Some(value), ..Default::default() }];
            let bytes = t.encode_to_vec();
            assert_eq!(
                scan(Signal::Traces, &bytes).map(|s| s.items).map_err(|_| ()),
                decoder(Signal::Traces, &bytes).map(|x| x.0),
                "depth {depth}"
            );
        }
    }

    #[test]
    fn valid_requests_scan_like_they_decode() {
        for (signal, bytes) in seeds() {
            let (items, ids_ok) = decoder(signal, &bytes).unwrap();
            let s = scan(signal, &bytes).unwrap();
            assert_eq!((s.items, s.ids_ok, s.invalid_items), (items, ids_ok, 0));
            assert!(s.decoded_bytes > bytes.len(), "decoded structs take more than the wire");
        }
        let empty = scan(Signal::Traces, &[]).unwrap();
        assert_eq!((empty.items, empty.ids_ok), (0, true));
    }

    #[test]
    fn the_decoded_size_bounds_what_decoding_allocates() {
        // One span with 100,000 empty attributes: two bytes each on the wire, a whole KeyValue
        // (and its vector slot) in memory.
        let mut t = traces(1);
        t.resource_spans[0].scope_spans[0].spans[0].attributes = vec![KeyValue::default(); 100_000];
        let bytes = t.encode_to_vec();
        let s = scan(Signal::Traces, &bytes).unwrap();
        assert!(s.decoded_bytes >= 100_000 * std::mem::size_of::<KeyValue>(), "{}", s.decoded_bytes);
        assert!(s.decoded_bytes > 20 * bytes.len());
    }

    #[test]
    fn spans_with_bad_ids_are_counted_without_decoding() {
        let mut t = traces(3);
        t.resource_spans[0].scope_spans[0].spans[0].trace_id.clear();
        t.resource_spans[0].scope_spans[0].spans[1].links =
            vec![opentelemetry_proto::tonic::trace::v1::span::Link::default()];
        let s = scan(Signal::Traces, &t.encode_to_vec()).unwrap();
        assert_eq!((s.items, s.invalid_items, s.ids_ok), (3, 2, false));
    }

    #[test]
    fn the_scan_agrees_with_the_decoder_on_mutated_requests() {
        let mut rng = Rng(0x5eed_1234_abcd_9876);
        let mut accepted = 0;
        for (signal, seed) in seeds() {
            for _ in 0..20_000 {
                let m = mutate(&mut rng, &seed);
                let expected = decoder(signal, &m);
                let got = scan(signal, &m).map(|s| (s.items, s.ids_ok)).map_err(|_| ());
                assert_eq!(got, expected, "{signal} input {m:02x?}");
                accepted += usize::from(got.is_ok());
            }
        }
        assert!(accepted > 1000, "the mutations should leave many requests valid ({accepted})");
    }

    #[test]
    fn gauge_and_sum_have_their_own_fields() {
        // A Gauge with an unknown field 2 (length-delimited) is valid; in a Sum, field 2 is the
        // temporality varint, so the same bytes are invalid.
        let data = [0x12, 0x01, 0x00];
        for (tag, ok) in [(5u8, true), (7u8, false)] {
            let metric = [vec![(tag << 3) | 2, data.len() as u8], data.to_vec()].concat();
            let scope = [vec![0x12, metric.len() as u8], metric].concat();
            let resource = [vec![0x12, scope.len() as u8], scope].concat();
            let request = [vec![0x0a, resource.len() as u8], resource].concat();
            assert_eq!(decoder(Signal::Metrics, &request).is_ok(), ok);
            assert_eq!(scan(Signal::Metrics, &request).is_ok(), ok, "tag {tag}");
        }
    }

    #[test]
    fn metric_oneof_counts_like_the_decoder() {
        use opentelemetry_proto::tonic::metrics::v1 as mv1;
        let gauge = |n: usize| mv1::Gauge { data_points: vec![mv1::NumberDataPoint::default(); n] }.encode_to_vec();
        let sum =
            mv1::Sum { data_points: vec![mv1::NumberDataPoint::default(); 4], ..Default::default() }.encode_to_vec();
        // Metric{gauge(2), gauge(3)} merges to 5 points; Metric{gauge(2), sum(4)} keeps the sum.
        let field = |n: u8, body: &[u8]| [vec![(n << 3) | 2, body.len() as u8], body.to_vec()].concat();
        for (metric, want) in [
            ([field(5, &gauge(2)), field(5, &gauge(3))].concat(), 5),
            ([field(5, &gauge(2)), field(7, &sum)].concat(), 4),
        ] {
            let scope = field(2, &metric);
            let resource = field(2, &scope);
            let request = field(1, &resource);
            assert_eq!(decoder(Signal::Metrics, &request).map(|x| x.0), Ok(want));
            assert_eq!(scan(Signal::Metrics, &request).map(|s| s.items), Ok(want));
        }
    }
}
