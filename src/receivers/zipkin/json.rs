//! Zipkin v2 JSON (`[{"traceId": …}, …]`) into the span model. Ids are hex (16 or 32 digits for
//! trace ids, 16 for span ids); a malformed id fails the whole request with a message naming
//! the span, so a client never hears 202 for spans that were dropped.

use super::model::{Annotation, Endpoint, Kind, Span, trace_id};
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<JsonEndpoint>,
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: Option<u64>,
    value: Option<String>,
}

/// Decodes a JSON array of Zipkin v2 spans.
pub fn decode(body: &[u8]) -> Result<Vec<Span>, String> {
    let spans: Vec<JsonSpan> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON array of Zipkin v2 spans: {e}"))?;
    spans.into_iter().enumerate().map(|(i, s)| span(s).map_err(|e| format!("span {i}: {e}"))).collect()
}

fn hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    let bad = || format!("{what} \"{s}\" is not {} hex digits", N * 2);
    if s.len() != N * 2 {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn span(s: JsonSpan) -> Result<Span, String> {
    let tid = s.trace_id.as_deref().filter(|t| !t.is_empty()).ok_or("traceId is required")?;
    let trace_id = match tid.len() {
        32 => hex::<16>(tid, "traceId")?,
        16 => trace_id(&hex::<8>(tid, "traceId")?).unwrap_or_default(),
        _ => return Err(format!("traceId \"{tid}\" is not 16 or 32 hex digits")),
    };
    let id = hex::<8>(s.id.as_deref().ok_or("id is required")?, "id")?;
    let parent_id = match s.parent_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(hex::<8>(p, "parentId")?),
    };
    let kind = match s.kind.as_deref() {
        None | Some("") => None,
        Some("CLIENT") => Some(Kind::Client),
        Some("SERVER") => Some(Kind::Server),
        Some("PRODUCER") => Some(Kind::Producer),
        Some("CONSUMER") => Some(Kind::Consumer),
        Some(other) => return Err(format!("kind \"{other}\" is not CLIENT, SERVER, PRODUCER or CONSUMER")),
    };
    let tags = s
        .tags
        .into_iter()
        .map(|(k, v)| {
            // Zipkin tag values are strings; numbers and booleans are taken as their text.
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    Ok(Span {
        trace_id,
        id,
        parent_id,
        kind,
        name: s.name.unwrap_or_default(),
        timestamp_us: s.timestamp.filter(|t| *t > 0),
        duration_us: s.duration,
        local_endpoint: s.local_endpoint.map(endpoint).transpose()?,
        remote_endpoint: s.remote_endpoint.map(endpoint).transpose()?,
        annotations: s
            .annotations
            .into_iter()
            .map(|a| Annotation { timestamp_us: a.timestamp.unwrap_or(0), value: a.value.unwrap_or_default() })
            .collect(),
        tags,
    })
}

fn endpoint(e: JsonEndpoint) -> Result<Endpoint, String> {
    let ip = |s: Option<String>, what: &str| -> Result<Option<IpAddr>, String> {
        match s.as_deref() {
            None | Some("") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|_| format!("endpoint {what} \"{a}\" is not an IP address")),
        }
    };
    Ok(Endpoint {
        service_name: e.service_name.filter(|s| !s.is_empty()),
        ipv4: ip(e.ipv4, "ipv4")?,
        ipv6: ip(e.ipv6, "ipv6")?,
        port: e.port.filter(|p| *p > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_span_decodes() {
        let body =
            br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","parentId":"00f067aa0ba902b7",
            "kind":"SERVER","name":"get","timestamp":1502787600000000,"duration":150000,"debug":true,"shared":false,
            "localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1","port":8080},
            "remoteEndpoint":{"serviceName":"db","ipv6":"::1"},
            "annotations":[{"timestamp":1502787600000100,"value":"ws"}],
            "tags":{"http.path":"/api","retries":3,"cached":true}}]"#;
        let s = &decode(body).unwrap()[0];
        assert_eq!(s.trace_id[0], 0x0a);
        assert_eq!(s.id, [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]);
        assert_eq!(s.kind, Some(Kind::Server));
        assert_eq!(s.local_endpoint.as_ref().unwrap().port, Some(8080));
        assert_eq!(s.remote_endpoint.as_ref().unwrap().ipv6, Some("::1".parse().unwrap()));
        assert!(s.tags.contains(&("retries".to_string(), "3".to_string())), "numbers are taken as text");
        assert!(s.tags.contains(&("cached".to_string(), "true".to_string())));
        assert_eq!(s.annotations[0].value, "ws");
    }

    #[test]
    fn a_64_bit_trace_id_is_padded_on_the_left() {
        let s = &decode(br#"[{"traceId":"8448eb211c80319c","id":"b7ad6b7169203331"}]"#).unwrap()[0];
        assert_eq!(s.trace_id, [0, 0, 0, 0, 0, 0, 0, 0, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c]);
    }

    #[test]
    fn malformed_ids_fail_the_request_naming_the_span() {
        let ok = r#"{"traceId":"8448eb211c80319c","id":"b7ad6b7169203331"}"#;
        for (bad, want) in [
            (r#"{"traceId":"xyz","id":"b7ad6b7169203331"}"#, "span 1: traceId \"xyz\" is not 16 or 32 hex digits"),
            (
                r#"{"traceId":"8448eb211c80319c","id":"b7ad6b71692033"}"#,
                "span 1: id \"b7ad6b71692033\" is not 16 hex digits",
            ),
            (
                r#"{"traceId":"8448eb211c80319c","id":"zzad6b7169203331"}"#,
                "span 1: id \"zzad6b7169203331\" is not 16 hex digits",
            ),
            (r#"{"id":"b7ad6b7169203331"}"#, "span 1: traceId is required"),
        ] {
            assert_eq!(decode(format!("[{ok},{bad}]").as_bytes()).unwrap_err(), want);
        }
        assert!(decode(b"{}").unwrap_err().starts_with("not a JSON array"));
        assert!(
            decode(r#"[{"traceId":"8448eb211c80319c","id":"b7ad6b7169203331","parentId":"é"}]"#.as_bytes()).is_err()
        );
    }
}
