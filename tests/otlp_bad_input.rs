//! Bad input over OTLP/HTTP gets the exact status and message a client can act on, and the
//! gateway keeps serving: truncated protobuf, invalid JSON, a wrong content type, GET, a gzip
//! bomb, a body over the limit, and ids of the wrong length (whole and partial rejection).

mod common;

use common::*;
use prost::Message;
use std::io::Write;
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        max_request_body_size: 1000000
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#;

const PB: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A valid request still goes through after each bad one.
fn still_serving(gw: &Gateway, name: &str) {
    let r = http_request("POST", gw.http, "/v1/traces", &[PB], &traces_body(vec![span(name, vec![1; 16])])).unwrap();
    assert_eq!(r.status, 200, "valid request after bad input: {}", r.text());
}

#[test]
fn bad_requests_get_clear_errors_and_the_gateway_keeps_serving() {
    let mut gw = Gateway::start(CONFIG);
    let port = gw.http;

    // Truncated protobuf.
    let mut body = traces_body(vec![span("t", vec![1; 16])]);
    body.truncate(body.len() - 5);
    let r = http_request("POST", port, "/v1/traces", &[PB], &body).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert!(r.text().contains("cannot decode OTLP/protobuf traces request"), "{}", r.text());
    still_serving(&gw, "after-truncated");

    // Invalid JSON: the error comes back as JSON.
    let r = http_request("POST", port, "/v1/traces", &[JSON], b"{\"resourceSpans\": [").unwrap();
    assert_eq!(r.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], 3);
    assert_eq!(v["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest", "{v}");
    assert_eq!(v["details"][0]["fieldViolations"][0]["description"], v["message"]);
    assert!(
        v["message"].as_str().unwrap().starts_with("cannot decode OTLP/JSON traces request: EOF while parsing"),
        "{v}"
    );
    still_serving(&gw, "after-json");

    // Wrong content type.
    let r = http_request("POST", port, "/v1/traces", &[("Content-Type", "text/plain")], b"hello").unwrap();
    assert_eq!(r.status, 415);
    assert!(r.text().contains("unsupported content type \\\"text/plain\\\""), "{}", r.text());

    // GET.
    let r = http_request("GET", port, "/v1/traces", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    // Unknown path.
    let r = http_request("POST", port, "/v1/spans", &[PB], b"").unwrap();
    assert_eq!(r.status, 404);
    still_serving(&gw, "after-method");

    // A gzip bomb: 64 MiB of zeros in ~64 KiB, against a 1 MB limit.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let r = http_request("POST", port, "/v1/traces", &[PB, ("Content-Encoding", "gzip")], &bomb).unwrap();
    assert_eq!(r.status, 413);
    assert!(
        r.text().contains("request body too large: over the max_request_body_size of 1000000 bytes"),
        "{}",
        r.text()
    );

    // A plain body over the limit.
    let huge = vec![0u8; 1_200_000];
    let r = http_request("POST", port, "/v1/traces", &[PB], &huge).unwrap();
    assert_eq!(r.status, 413);
    still_serving(&gw, "after-limits");

    // A trace id of the wrong length: the whole request when every span is bad...
    let r = http_request("POST", port, "/v1/traces", &[PB], &traces_body(vec![span("bad", vec![1; 15])])).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("invalid trace id length: 15 bytes, expected 16"), "{}", r.text());
    // ... the same in JSON ...
    let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102","spanId":"0707070707070707","name":"bad-json"}]}]}]}"#;
    let r = http_request("POST", port, "/v1/traces", &[JSON], json).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["message"],
        "invalid trace id length: 2 bytes, expected 16"
    );
    // ... and only the bad span when others are fine: a partial success the client must not retry.
    let body = traces_body(vec![span("good-1", vec![1; 16]), span("bad-2", vec![1; 3]), span("good-3", vec![2; 16])]);
    let r = http_request("POST", port, "/v1/traces", &[JSON], &[]).unwrap();
    assert_eq!(r.status, 400, "an empty JSON body is not an object");
    let json_partial = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0707070707070707","name":"good-json"},
        {"traceId":"0102","spanId":"0707070707070707","name":"bad-json"}]}]}]}"#;
    let r = http_request("POST", port, "/v1/traces", &[JSON], json_partial).unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    assert_eq!(v["partialSuccess"]["errorMessage"], "invalid trace id length: 2 bytes, expected 16");
    let r = http_request("POST", port, "/v1/traces", &[PB], &body).unwrap();
    assert_eq!(r.status, 200);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(&r.body[..]).unwrap();
    let partial = resp.partial_success.expect("partial_success set");
    assert_eq!(partial.rejected_spans, 1);

    // What arrived is exactly the valid spans, once each.
    let expected = ["after-truncated", "after-json", "after-method", "after-limits", "good-json", "good-1", "good-3"];
    assert!(
        eventually(Duration::from_secs(10), || span_names(&gw.path("out.jsonl")).len() >= expected.len()),
        "spans did not arrive: {:?}",
        span_names(&gw.path("out.jsonl"))
    );
    let got = span_names(&gw.path("out.jsonl"));
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp"), ("transport", "http")]), 7.0);
    // Every bad request and every rejected item is counted.
    let invalid =
        |code: &str| gw.metric("switchyard_receiver_invalid_requests_total", &[("transport", "http"), ("code", code)]);
    assert_eq!(invalid("400"), 5.0, "truncated, invalid JSON, empty JSON, and two all-bad-id requests");
    assert_eq!((invalid("404"), invalid("405"), invalid("413"), invalid("415")), (1.0, 1.0, 2.0, 1.0));
    assert_eq!(gw.metric("otelcol_receiver_refused_spans_total", &[("transport", "http")]), 2.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn large_and_compressed_bodies_are_taken_whole() {
    let mut gw = Gateway::start(CONFIG);
    // ~150 KiB of JSON: decoded off the async threads.
    let spans: Vec<String> = (0..600)
        .map(|i| format!(r#"{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"{i:016x}","name":"large-{i}","attributes":[{{"key":"k","value":{{"stringValue":"{}"}}}}]}}"#, "v".repeat(150)))
        .collect();
    let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#, spans.join(","));
    assert!(json.len() > 64 * 1024);
    let r = http_request("POST", gw.http, "/v1/traces", &[JSON], json.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The same protobuf spans, zstd-compressed and deflate-compressed.
    let body = traces_body((0..300).map(|i| span(&format!("zstd-{i}"), vec![1; 16])).collect());
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[PB, ("Content-Encoding", "zstd")],
        &zstd::encode_all(&body[..], 3).unwrap(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&traces_body(vec![span("deflate-0", vec![1; 16])])).unwrap();
    let r = http_request("POST", gw.http, "/v1/traces", &[PB, ("Content-Encoding", "deflate")], &z.finish().unwrap())
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let out = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&out).len() == 901), "{}", span_names(&out).len());
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
