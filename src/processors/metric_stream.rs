//! What tells one metric stream from another (a resource, scope, metric and set of point
//! attributes), as bytes: the key of the per-stream state of `deltatocumulative` and
//! `cumulativetodelta`.

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// Attributes in key order, each length-prefixed, then their number: the same set gives the
/// same bytes whatever order it was sent in, and two sets never run into each other.
pub fn append_attributes(key: &mut Vec<u8>, attributes: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in &sorted {
        let bytes = kv.encode_to_vec();
        key.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        key.extend_from_slice(&bytes);
    }
    key.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
}

/// The part of a stream's identity its resource gives.
pub fn resource_prefix(resource: Option<&Resource>) -> Vec<u8> {
    let mut key = Vec::new();
    append_attributes(&mut key, resource.map(|r| r.attributes.as_slice()).unwrap_or_default());
    key
}

/// The part of a stream's identity its resource (`resource_prefix`) and scope give.
pub fn scope_prefix(resource: &[u8], scope: Option<&InstrumentationScope>) -> Vec<u8> {
    let mut key = resource.to_vec();
    for part in [scope.map_or("", |s| s.name.as_str()), scope.map_or("", |s| s.version.as_str())] {
        key.extend_from_slice(&(part.len() as u32).to_le_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    append_attributes(&mut key, scope.map(|s| s.attributes.as_slice()).unwrap_or_default());
    key
}

/// A stream's identity: its resource's and scope's (`scope_prefix`), the metric's name, unit,
/// type (`kind`) and monotonicity, and its point's attributes (sorted, encoded).
pub fn identity(prefix: &[u8], metric: (&str, &str), kind: u8, monotonic: bool, attributes: &[KeyValue]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + metric.0.len() + 64);
    key.extend_from_slice(prefix);
    for part in [metric.0.as_bytes(), metric.1.as_bytes()] {
        key.extend_from_slice(&(part.len() as u32).to_le_bytes());
        key.extend_from_slice(part);
    }
    key.push(kind);
    key.push(u8::from(monotonic));
    append_attributes(&mut key, attributes);
    key
}
