//! Zipkin v2 protobuf (`zipkin.proto3.ListOfSpans`) into the span model. Trace ids of 8 or 16
//! bytes are taken; any other id length fails the whole request, naming the span.

use super::model::{Annotation, Endpoint, Kind, Span, trace_id};
use crate::proto::zipkin as pb;
use prost::Message;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub fn decode(body: &[u8]) -> Result<Vec<Span>, String> {
    crate::protowire::check(body).map_err(|e| format!("not a Zipkin ListOfSpans: {e}"))?;
    let list = pb::ListOfSpans::decode(body).map_err(|e| format!("not a Zipkin ListOfSpans: {e}"))?;
    list.spans.into_iter().enumerate().map(|(i, s)| span(s).map_err(|e| format!("span {i}: {e}"))).collect()
}

fn span(s: pb::Span) -> Result<Span, String> {
    let trace_id =
        trace_id(&s.trace_id).ok_or_else(|| format!("trace_id must be 8 or 16 bytes, got {}", s.trace_id.len()))?;
    let id: [u8; 8] = s.id.as_slice().try_into().map_err(|_| format!("id must be 8 bytes, got {}", s.id.len()))?;
    let parent_id = match s.parent_id.len() {
        0 => None,
        8 => s.parent_id.as_slice().try_into().ok(),
        n => return Err(format!("parent_id must be 8 bytes, got {n}")),
    };
    let kind = match pb::span::Kind::try_from(s.kind).unwrap_or(pb::span::Kind::SpanKindUnspecified) {
        pb::span::Kind::SpanKindUnspecified => None,
        pb::span::Kind::Client => Some(Kind::Client),
        pb::span::Kind::Server => Some(Kind::Server),
        pb::span::Kind::Producer => Some(Kind::Producer),
        pb::span::Kind::Consumer => Some(Kind::Consumer),
    };
    let mut tags: Vec<(String, String)> = s.tags.into_iter().collect();
    // Protobuf maps have no order; sort so that the output does not vary run to run.
    tags.sort();
    Ok(Span {
        trace_id,
        id,
        parent_id,
        kind,
        name: s.name,
        timestamp_us: Some(s.timestamp).filter(|t| *t > 0),
        duration_us: Some(s.duration).filter(|d| *d > 0),
        local_endpoint: s.local_endpoint.map(endpoint).transpose()?,
        remote_endpoint: s.remote_endpoint.map(endpoint).transpose()?,
        annotations: s
            .annotations
            .into_iter()
            .map(|a| Annotation { timestamp_us: a.timestamp, value: a.value })
            .collect(),
        tags,
    })
}

fn endpoint(e: pb::Endpoint) -> Result<Endpoint, String> {
    let ipv4 = match e.ipv4.len() {
        0 => None,
        4 => <[u8; 4]>::try_from(e.ipv4.as_slice()).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        n => return Err(format!("endpoint ipv4 must be 4 bytes, got {n}")),
    };
    let ipv6 = match e.ipv6.len() {
        0 => None,
        16 => <[u8; 16]>::try_from(e.ipv6.as_slice()).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        n => return Err(format!("endpoint ipv6 must be 16 bytes, got {n}")),
    };
    Ok(Endpoint {
        service_name: Some(e.service_name).filter(|s| !s.is_empty()),
        ipv4,
        ipv6,
        port: u16::try_from(e.port).ok().filter(|p| *p > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(trace_id: Vec<u8>, id: Vec<u8>) -> Vec<u8> {
        pb::ListOfSpans {
            spans: vec![pb::Span {
                trace_id,
                id,
                kind: pb::span::Kind::Producer as i32,
                name: "send".into(),
                timestamp: 1_502_787_600_000_000,
                duration: 10,
                local_endpoint: Some(pb::Endpoint {
                    service_name: "svc".into(),
                    ipv4: vec![10, 0, 0, 1],
                    ipv6: vec![],
                    port: 80,
                }),
                tags: [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())].into(),
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_span_decodes_with_sorted_tags() {
        let s = &decode(&list(vec![1; 8], vec![2; 8])).unwrap()[0];
        assert_eq!(s.trace_id, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(s.kind, Some(Kind::Producer));
        assert_eq!(s.local_endpoint.as_ref().unwrap().ipv4, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(s.tags, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
    }

    #[test]
    fn ids_of_the_wrong_length_fail_the_request() {
        assert_eq!(decode(&list(vec![1; 5], vec![2; 8])).unwrap_err(), "span 0: trace_id must be 8 or 16 bytes, got 5");
        assert_eq!(decode(&list(vec![1; 16], vec![])).unwrap_err(), "span 0: id must be 8 bytes, got 0");
        assert!(decode(b"\x0a\xff").is_err());
    }
}
