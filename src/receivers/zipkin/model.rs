//! Zipkin v2's span model, as both of its encodings (JSON and protobuf `ListOfSpans`) carry it:
//! the decoders fill it and check its ids, and `translate` turns it into OTLP.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Endpoint {
    pub service_name: Option<String>,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub timestamp_us: u64,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    /// 64-bit trace ids are zero-padded on the left.
    pub trace_id: [u8; 16],
    pub id: [u8; 8],
    pub parent_id: Option<[u8; 8]>,
    pub kind: Option<Kind>,
    pub name: String,
    pub timestamp_us: Option<u64>,
    pub duration_us: Option<u64>,
    pub local_endpoint: Option<Endpoint>,
    pub remote_endpoint: Option<Endpoint>,
    pub annotations: Vec<Annotation>,
    /// Sorted by key (neither encoding gives them an order).
    pub tags: Vec<(String, String)>,
}

/// A trace id of 8 or 16 bytes as OTLP's 16.
pub fn trace_id(bytes: &[u8]) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    match bytes.len() {
        16 => id.copy_from_slice(bytes),
        8 => id[8..].copy_from_slice(bytes),
        _ => return None,
    }
    Some(id)
}
