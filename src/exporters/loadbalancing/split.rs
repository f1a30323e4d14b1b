//! Splitting an encoded OTLP traces request by backend without decoding it: the bytes of each
//! span are copied to the request of the backend its trace id picks, under copies of their
//! resource's and scope's own fields. Only the fields needed to walk down to a span's trace id
//! are read; everything else is copied as it came.

/// A protobuf field: its number, and its bytes whole (key, length and value).
struct Field<'a> {
    number: u64,
    whole: &'a [u8],
    /// The value of a length-delimited field.
    payload: &'a [u8],
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of a message; `None` for bytes that are not one.
fn fields(buf: &[u8]) -> impl Iterator<Item = Option<Field<'_>>> {
    let mut at = 0;
    let mut broken = false;
    std::iter::from_fn(move || {
        if broken || at >= buf.len() {
            return None;
        }
        let start = at;
        let field = (|| {
            let key = varint(buf, &mut at)?;
            let (number, payload) = match key & 7 {
                0 => {
                    varint(buf, &mut at)?;
                    (key >> 3, &buf[at..at])
                }
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    let end = at.checked_add(n).filter(|e| *e <= buf.len())?;
                    at = end;
                    (key >> 3, &buf[at..at])
                }
                2 => {
                    let len = usize::try_from(varint(buf, &mut at)?).ok()?;
                    let end = at.checked_add(len).filter(|e| *e <= buf.len())?;
                    let payload = &buf[at..end];
                    at = end;
                    (key >> 3, payload)
                }
                _ => return None,
            };
            Some(Field { number, whole: &buf[start..at], payload })
        })();
        broken = field.is_none();
        Some(field)
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes field `number` (length-delimited) made of `parts`.
fn put_message(out: &mut Vec<u8>, number: u64, parts: &[&[u8]]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, parts.iter().map(|p| p.len()).sum::<usize>() as u64);
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// A span's trace id (field 1; empty when it has none).
fn trace_id(span: &[u8]) -> Result<&[u8], String> {
    for f in fields(span) {
        let f = f.ok_or("a span is not valid protobuf")?;
        if f.number == 1 {
            return Ok(f.payload);
        }
    }
    Ok(&[])
}

/// What one backend gets: its request's bytes and how many spans they hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Part {
    pub request: Vec<u8>,
    pub spans: usize,
}

/// Splits `request` (an `ExportTraceServiceRequest`, possibly several concatenated) into one
/// request per backend: `route` gives the backend (below `backends`) of a trace id. A backend
/// given no span gets an empty part.
pub fn split_traces(
    request: &[u8],
    backends: usize,
    mut route: impl FnMut(&[u8]) -> usize,
) -> Result<Vec<Part>, String> {
    let mut out = vec![Part::default(); backends];
    // Per backend, the scope_spans built for the resource being walked, and the spans of the
    // scope being walked; reused across resources and scopes.
    let mut scopes: Vec<Vec<u8>> = vec![Vec::new(); backends];
    let mut spans: Vec<Vec<u8>> = vec![Vec::new(); backends];
    let mut counts = vec![0usize; backends];
    for rs in fields(request) {
        let rs = rs.ok_or("not an ExportTraceServiceRequest")?;
        if rs.number != 1 {
            continue;
        }
        // The resource's own fields (resource, schema_url), copied into every part.
        let mut own: Vec<&[u8]> = Vec::new();
        for f in fields(rs.payload) {
            let f = f.ok_or("a ResourceSpans is not valid protobuf")?;
            if f.number != 2 {
                own.push(f.whole);
                continue;
            }
            let mut scope_own: Vec<&[u8]> = Vec::new();
            for s in fields(f.payload) {
                let s = s.ok_or("a ScopeSpans is not valid protobuf")?;
                if s.number != 2 {
                    scope_own.push(s.whole);
                    continue;
                }
                let b = route(trace_id(s.payload)?);
                spans[b].extend_from_slice(s.whole);
                counts[b] += 1;
            }
            for b in 0..backends {
                if !spans[b].is_empty() {
                    let mut parts = scope_own.clone();
                    parts.push(&spans[b]);
                    put_message(&mut scopes[b], 2, &parts);
                    spans[b].clear();
                }
            }
        }
        for b in 0..backends {
            if !scopes[b].is_empty() {
                let mut parts = own.clone();
                parts.push(&scopes[b]);
                put_message(&mut out[b].request, 1, &parts);
                scopes[b].clear();
            }
        }
    }
    for (part, n) in out.iter_mut().zip(counts) {
        part.spans = n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn request() -> ExportTraceServiceRequest {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        };
        let span = |trace: u8, n: u8| Span {
            trace_id: vec![trace; 16],
            span_id: vec![n; 8],
            name: format!("span-{trace}-{n}"),
            attributes: vec![kv("http.route", "/a")],
            ..Default::default()
        };
        let resource = |svc: &str, traces: &[u8]| ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", svc)], ..Default::default() }),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(InstrumentationScope { name: "lib-a".into(), ..Default::default() }),
                    spans: traces.iter().flat_map(|t| [span(*t, 1), span(*t, 2)]).collect(),
                    schema_url: "https://s/1".into(),
                },
                ScopeSpans {
                    scope: Some(InstrumentationScope { name: "lib-b".into(), ..Default::default() }),
                    spans: traces.iter().map(|t| span(*t, 3)).collect(),
                    ..Default::default()
                },
            ],
            schema_url: "https://r/1".into(),
        };
        ExportTraceServiceRequest { resource_spans: vec![resource("checkout", &[1, 2, 3]), resource("cart", &[2, 4])] }
    }

    /// The same request split from its decoded form: what the bytes must decode to.
    fn expected(
        req: &ExportTraceServiceRequest,
        backends: usize,
        route: impl Fn(&[u8]) -> usize,
    ) -> Vec<ExportTraceServiceRequest> {
        let mut out = vec![ExportTraceServiceRequest::default(); backends];
        for rs in &req.resource_spans {
            let mut per: Vec<ResourceSpans> = vec![ResourceSpans { scope_spans: vec![], ..rs.clone() }; backends];
            for ss in &rs.scope_spans {
                let mut scoped: Vec<ScopeSpans> = vec![ScopeSpans { spans: vec![], ..ss.clone() }; backends];
                for s in &ss.spans {
                    scoped[route(&s.trace_id)].spans.push(s.clone());
                }
                for (b, s) in scoped.into_iter().enumerate() {
                    if !s.spans.is_empty() {
                        per[b].scope_spans.push(s);
                    }
                }
            }
            for (b, r) in per.into_iter().enumerate() {
                if !r.scope_spans.is_empty() {
                    out[b].resource_spans.push(r);
                }
            }
        }
        out
    }

    #[test]
    fn each_backend_gets_its_traces_under_their_resources_and_scopes() {
        let req = request();
        let bytes = req.encode_to_vec();
        let route = |id: &[u8]| usize::from(id[0] % 3);
        let parts = split_traces(&bytes, 3, route).unwrap();
        let want = expected(&req, 3, route);
        for (b, part) in parts.iter().enumerate() {
            let got = ExportTraceServiceRequest::decode(&part.request[..]).unwrap();
            assert_eq!(got, want[b], "backend {b}");
            assert_eq!(
                part.spans,
                want[b].resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>()
            );
        }
        assert_eq!(parts.iter().map(|p| p.spans).sum::<usize>(), 15, "every span once");
        // Two requests concatenated (as batches merge) split as one.
        let twice = [bytes.clone(), bytes].concat();
        let parts = split_traces(&twice, 3, route).unwrap();
        assert_eq!(parts.iter().map(|p| p.spans).sum::<usize>(), 30);
    }

    #[test]
    fn spans_without_a_trace_id_and_broken_bytes() {
        let mut req = request();
        req.resource_spans[0].scope_spans[0].spans[0].trace_id.clear();
        let parts = split_traces(&req.encode_to_vec(), 2, |id| usize::from(!id.is_empty())).unwrap();
        assert_eq!(parts[0].spans, 1, "routed by the empty id");
        let bytes = request().encode_to_vec();
        assert!(split_traces(&bytes[..bytes.len() - 3], 2, |_| 0).is_err());
        assert!(split_traces(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], 2, |_| 0).is_err());
        assert_eq!(split_traces(&[], 2, |_| 0).unwrap(), vec![Part::default(); 2]);
    }
}
