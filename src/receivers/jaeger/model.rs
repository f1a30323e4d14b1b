//! Jaeger's span model, as both of its wire forms (Thrift and api_v2 protobuf) carry it: the
//! decoders fill it, and `translate` turns it into OTLP. Times are kept in nanoseconds so the
//! protobuf form loses nothing.

/// A tag's value, by Jaeger's five value types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Double(f64),
    Bool(bool),
    Long(i64),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: Value,
}

impl Tag {
    pub fn new(key: &str, value: Value) -> Tag {
        Tag { key: key.to_string(), value }
    }
}

/// The service that produced spans: `service.name` and the resource attributes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    ChildOf,
    FollowsFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRef {
    pub ref_type: RefType,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub time_unix_nano: u64,
    pub fields: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero when the span names no parent directly (Thrift's `parentSpanId` = 0).
    pub parent_span_id: [u8; 8],
    pub operation_name: String,
    pub references: Vec<SpanRef>,
    pub flags: u32,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
    /// The protobuf form lets a span name its own process, overriding the batch's.
    pub process: Option<Process>,
}

/// Spans from one process (as one agent datagram or one collector request carries them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub process: Option<Process>,
    pub spans: Vec<Span>,
}

/// Thrift's trace id halves (signed 64-bit integers) as the 16 big-endian bytes of OTLP.
pub fn trace_id(high: i64, low: i64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&high.to_be_bytes());
    id[8..].copy_from_slice(&low.to_be_bytes());
    id
}

/// Microseconds since the epoch (Thrift's unit) as nanoseconds; negative counts as zero.
pub fn micros_to_nanos(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_high_then_low_big_endian_and_unsigned() {
        let id = trace_id(0x0102030405060708, -1);
        assert_eq!(id, [1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn micros_become_nanos_without_wrapping() {
        assert_eq!(micros_to_nanos(1_700_000_000_000_000), 1_700_000_000_000_000_000);
        assert_eq!(micros_to_nanos(-5), 0);
        assert_eq!(micros_to_nanos(i64::MAX), u64::MAX);
    }
}
