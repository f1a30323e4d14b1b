//! OTLP/JSON as real SDKs send it: lowerCamelCase or snake_case keys, 64-bit integers as strings
//! or numbers, hex ids in any case, enums as integers. Keys are normalised to lowerCamelCase on a
//! JSON tree first, then the request is read by the OTLP types' serde mapping.

use crate::pipeline::{Request, Signal};
use serde_json::Value;

pub fn parse(signal: Signal, body: &[u8]) -> Result<Request, String> {
    let mut tree: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !tree.is_object() {
        return Err("expected a JSON object".to_string());
    }
    let mut bad_id = None;
    normalise(&mut tree, &mut bad_id);
    if let Some(why) = bad_id {
        return Err(why);
    }
    let r = match signal {
        Signal::Traces => Request::Traces(serde_json::from_value(tree).map_err(|e| e.to_string())?),
        Signal::Metrics => Request::Metrics(serde_json::from_value(tree).map_err(|e| e.to_string())?),
        Signal::Logs => Request::Logs(serde_json::from_value(tree).map_err(|e| e.to_string())?),
    };
    Ok(r)
}

/// Renames snake_case object keys to lowerCamelCase, and lowercases hex ids, everywhere.
/// OTLP/JSON has no object with user-chosen keys (attributes are `{key, value}` lists), so every
/// object key is a field name.
/// The first id that is not hex is described in `bad_id` (named, with its value).
fn normalise(v: &mut Value, bad_id: &mut Option<String>) {
    match v {
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('_')) {
                let entries = std::mem::take(map);
                for (k, val) in entries {
                    map.insert(camel(&k), val);
                }
            }
            for (k, val) in map.iter_mut() {
                if matches!(k.as_str(), "traceId" | "spanId" | "parentSpanId")
                    && let Value::String(s) = val
                {
                    s.make_ascii_lowercase();
                    if bad_id.is_none() && (s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit())) {
                        let shown: String = s.chars().take(40).collect();
                        *bad_id =
                            Some(format!("{k} \"{shown}\" is not hex: expected an even number of 0-9, a-f digits"));
                    }
                } else if let Value::String(name) = val
                    && let Some(n) = enum_number(k, name)
                {
                    *val = Value::from(n);
                } else {
                    normalise(val, bad_id);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| normalise(i, bad_id)),
        _ => {}
    }
}

/// The number of an enum written by name (`"kind": "SPAN_KIND_SERVER"`), which the spec does
/// not allow but some clients send and the collector accepts.
fn enum_number(key: &str, name: &str) -> Option<i64> {
    let table: &[(&str, i64)] = match key {
        "kind" => &[
            ("SPAN_KIND_UNSPECIFIED", 0),
            ("SPAN_KIND_INTERNAL", 1),
            ("SPAN_KIND_SERVER", 2),
            ("SPAN_KIND_CLIENT", 3),
            ("SPAN_KIND_PRODUCER", 4),
            ("SPAN_KIND_CONSUMER", 5),
        ],
        "code" => &[("STATUS_CODE_UNSET", 0), ("STATUS_CODE_OK", 1), ("STATUS_CODE_ERROR", 2)],
        "aggregationTemporality" => &[
            ("AGGREGATION_TEMPORALITY_UNSPECIFIED", 0),
            ("AGGREGATION_TEMPORALITY_DELTA", 1),
            ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
        ],
        "severityNumber" => {
            let level = name.strip_prefix("SEVERITY_NUMBER_")?;
            if level == "UNSPECIFIED" {
                return Some(0);
            }
            let base = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
            let (word, step) = match level.char_indices().find(|(_, c)| c.is_ascii_digit()) {
                Some((i, _)) => (&level[..i], level[i..].parse::<i64>().ok()?),
                None => (level, 1),
            };
            let pos = base.iter().position(|b| *b == word)? as i64;
            return (1..=4).contains(&step).then_some(pos * 4 + step);
        }
        _ => return None,
    };
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn camel(key: &str) -> String {
    if !key.contains('_') {
        return key.to_string();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::fixture;

    #[test]
    fn node_sdk_fixtures_parse() {
        let Request::Traces(t) = parse(Signal::Traces, &fixture("node-sdk-traces.json")).unwrap() else { panic!() };
        let span = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "node-json-span");
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.start_time_unix_nano, 1795682504577000000);
        assert_eq!(span.flags, 257);
        assert_eq!(span.attributes.len(), 4);
        // The metrics capture holds a counter and a histogram, one data point each.
        for (name, signal, items) in
            [("node-sdk-metrics.json", Signal::Metrics, 2), ("node-sdk-logs.json", Signal::Logs, 1)]
        {
            let r = parse(signal, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.item_count(), items, "{name}");
        }
    }

    #[test]
    fn snake_case_and_upper_hex_are_accepted() {
        let body = br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0AD717C898562D2B5609458955F82137",
            "span_id":"E9978E6A07256A1D","name":"x","start_time_unix_nano":5,"kind":2}]}]}]}"#;
        let Request::Traces(t) = parse(Signal::Traces, body).unwrap() else { panic!() };
        let span = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x0a);
        assert_eq!(span.start_time_unix_nano, 5);
        assert_eq!(span.kind, 2);
    }

    #[test]
    fn enums_by_name_are_accepted() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0ad717c898562d2b5609458955f82137",
            "spanId":"e9978e6a07256a1d","name":"x","kind":"SPAN_KIND_CONSUMER","status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#;
        let Request::Traces(t) = parse(Signal::Traces, body).unwrap() else { panic!() };
        let span = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.kind, span.status.as_ref().unwrap().code), (5, 2));
        assert_eq!(enum_number("severityNumber", "SEVERITY_NUMBER_INFO"), Some(9));
        assert_eq!(enum_number("severityNumber", "SEVERITY_NUMBER_WARN2"), Some(14));
        assert_eq!(enum_number("severityNumber", "SEVERITY_NUMBER_FATAL4"), Some(24));
        assert_eq!(enum_number("severityNumber", "SEVERITY_NUMBER_LOUD"), None);
        assert_eq!(enum_number("name", "SPAN_KIND_SERVER"), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(Signal::Traces, b"{not json").is_err());
        assert!(parse(Signal::Traces, b"[1,2]").is_err());
        assert!(
            parse(Signal::Traces, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#).is_err()
        );
        let odd = parse(Signal::Traces, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abc"}]}]}]}"#);
        assert_eq!(odd.unwrap_err(), "traceId \"abc\" is not hex: expected an even number of 0-9, a-f digits");
    }

    #[test]
    fn camel_case_conversion() {
        assert_eq!(camel("resource_spans"), "resourceSpans");
        assert_eq!(camel("time_unix_nano"), "timeUnixNano");
        assert_eq!(camel("name"), "name");
    }
}
