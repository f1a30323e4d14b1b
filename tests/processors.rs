//! Processors as a user configures them, with the real Python SDK as the client: the `filter`
//! drops what its conditions match (and only that), and a bad condition stops the start with
//! the file, line, key and column of the mistake.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_filter_drops_exactly_the_matching_spans_from_a_real_sdk() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  filter/noise:
    traces:
      span:
        - kind == SPAN_KIND_CLIENT and IsMatch(name, "-1$")
        - resource.attributes["service.name"] == "someone-else"
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
      processors: [filter/noise]
      exporters: [file]
"#,
    );
    let summary = gw.path("sent.json");
    let sent = python_sends(&python, gw.grpc, "traces", 3, &summary);
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || !span_names(&path).is_empty()), "{}", gw.log());
    let mut sent: Vec<String> =
        sent["spans"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    sent.sort();
    assert!(sent.contains(&"child-1".to_string()), "{sent:?}");
    let want: Vec<String> = sent.iter().filter(|n| *n != "child-1").cloned().collect();
    assert_eq!(span_names(&path), want);
    assert_eq!(gw.metric("switchyard_processor_dropped_spans_total", &[("processor", "filter/noise")]), 1.0);
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp")]), sent.len() as f64);
}

#[test]
fn a_bad_condition_names_file_line_key_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  filter:\n    logs:\n      log_record:\n        - severity_number < SEVERITY_NUMBER_WARM\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      processors: [filter]\n      exporters: [debug]\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["validate", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "DIR");
    assert_eq!(
        err.trim(),
        "switchyard: invalid configuration: DIR/bad.yaml:9:9: processors.filter.logs.log_record.0: \"severity_number < SEVERITY_NUMBER_WARM\": column 19: unknown enum SEVERITY_NUMBER_WARM"
    );
}

#[test]
fn attributes_and_resource_actions_change_what_a_real_sdk_sent() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  resource:
    attributes:
      - key: deployment.environment
        value: staging
        action: upsert
      - key: test.run
        action: delete
  attributes/clients:
    include:
      match_type: strict
      span_kinds: [SPAN_KIND_CLIENT]
    actions:
      - key: s
        action: hash
      - key: i
        action: convert
        converted_type: string
      - key: copied
        from_attribute: f
        action: insert
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
      processors: [resource, attributes/clients]
      exporters: [file]
"#,
    );
    python_sends(&python, gw.grpc, "traces", 2, &gw.path("sent.json"));
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&path).len() == 2), "{}", gw.log());
    let line = &json_lines(&path)[0];
    let rs = &line["resourceSpans"][0];
    let res = rs["resource"]["attributes"].as_array().unwrap();
    let get = |list: &[serde_json::Value], k: &str| list.iter().find(|a| a["key"] == k).map(|a| a["value"].clone());
    assert_eq!(get(res, "deployment.environment"), Some(serde_json::json!({"stringValue": "staging"})));
    assert!(get(res, "test.run").is_none());
    let spans = rs["scopeSpans"][0]["spans"].as_array().unwrap();
    let span = |name: &str| spans.iter().find(|s| s["name"] == name).unwrap()["attributes"].as_array().unwrap().clone();
    let child = span("child-0");
    // SHA-256 of "child-0".
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(b"child-0").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(get(&child, "s"), Some(serde_json::json!({"stringValue": want})));
    assert_eq!(get(&child, "i"), Some(serde_json::json!({"stringValue": "42"})));
    assert_eq!(get(&child, "copied"), Some(serde_json::json!({"doubleValue": 1.5})));
    let root = span("root");
    assert_eq!(get(&root, "s"), Some(serde_json::json!({"stringValue": "root"})), "the server span is not included");
}

#[test]
fn two_gateways_with_one_hash_seed_keep_the_same_100000_traces() {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let config = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  probabilistic_sampler:
    sampling_percentage: 10
    hash_seed: 22
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
      processors: [probabilistic_sampler]
      exporters: [file]
"#;
    let (a, b) = (Gateway::start(config), Gateway::start(config));
    let mut x = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let total = 100_000;
    for chunk in 0..10 {
        let spans: Vec<Span> = (0..total / 10)
            .map(|i| {
                let mut s = span(&format!("s{chunk}-{i}"), [next().to_be_bytes(), next().to_be_bytes()].concat());
                s.span_id = next().to_be_bytes().to_vec();
                s
            })
            .collect();
        let body = traces_body(spans);
        for gw in [&a, &b] {
            let r = http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body)
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let dropped =
        |gw: &Gateway| gw.metric("switchyard_processor_dropped_spans_total", &[("processor", "probabilistic_sampler")]);
    let settled = eventually(Duration::from_secs(20), || {
        let kept = |gw: &Gateway| span_names(&gw.path("out.jsonl")).len() as f64;
        kept(&a) + dropped(&a) == total as f64 && kept(&b) + dropped(&b) == total as f64
    });
    assert!(settled, "{} / {}", dropped(&a), dropped(&b));
    let (ka, kb) = (span_names(&a.path("out.jsonl")), span_names(&b.path("out.jsonl")));
    assert_eq!(ka, kb, "the same traces kept on both");
    // Binomial(100000, 0.1): sd ≈ 95; allow 5 sd.
    assert!((ka.len() as f64 - 10_000.0).abs() < 475.0, "{} kept of {total}", ka.len());
}

#[test]
fn transform_statements_rewrite_a_real_sdks_spans() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  transform:
    trace_statements:
      - context: span
        statements:
          - set(attributes["service"], resource.attributes["service.name"])
          - delete_key(attributes, "arr")
          - set(name, "failed-call") where status.code == STATUS_CODE_ERROR
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
      processors: [transform]
      exporters: [file]
"#,
    );
    python_sends(&python, gw.grpc, "traces", 3, &gw.path("sent.json"));
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&path).len() == 3), "{}", gw.log());
    // The last child fails in the SDK script: it is renamed.
    assert_eq!(span_names(&path), ["child-0", "failed-call", "root"]);
    let line = &json_lines(&path)[0];
    for span in line["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap() {
        let attrs = span["attributes"].as_array().unwrap();
        assert!(attrs.iter().all(|a| a["key"] != "arr"), "{attrs:?}");
        let service = attrs.iter().find(|a| a["key"] == "service").expect("service copied");
        assert_eq!(service["value"]["stringValue"], "py-sender");
    }
}

#[test]
fn tail_sampling_keeps_error_and_slow_traces_a_share_of_the_rest_and_late_spans_follow() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  tail_sampling:
    decision_wait: 1s
    policies:
      - name: errors
        type: status_code
        status_code: {status_codes: [ERROR]}
      - name: slow
        type: latency
        latency: {threshold_ms: 500}
      - name: some-of-the-rest
        type: probabilistic
        probabilistic: {sampling_percentage: 10}
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
      processors: [tail_sampling]
      exporters: [file]
"#,
    );
    // A real SDK trace whose last child fails: kept whole.
    let summary = gw.path("sent.json");
    let sent = python_sends(&python, gw.grpc, "traces", 3, &summary);
    let sdk_trace = sent["spans"][0]["trace_id"].as_str().unwrap().to_string();
    // 2,000 fast traces (one span each) and 20 slow ones.
    let trace = |i: u32, tag: u8| [vec![tag; 12], i.to_be_bytes().to_vec()].concat();
    let fast: Vec<_> = (0..2000).map(|i| span(&format!("fast-{i}"), trace(i, 1))).collect();
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let mut s = span(&format!("slow-{i}"), trace(i, 2));
            s.end_time_unix_nano = s.start_time_unix_nano + 900_000_000;
            s
        })
        .collect();
    for body in [traces_body(fast), traces_body(slow)] {
        let r =
            http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap();
        assert_eq!(r.status, 200);
    }
    let path = gw.path("out.jsonl");
    let decided = eventually(Duration::from_secs(10), || {
        let n = span_names(&path);
        n.iter().any(|s| s == "root") && n.iter().filter(|s| s.starts_with("slow-")).count() == 20
    });
    assert!(decided, "{:?}\n{}", span_names(&path), gw.log());
    std::thread::sleep(Duration::from_millis(300));
    let names = span_names(&path);
    for name in ["root", "child-0", "child-1"] {
        assert!(names.contains(&name.to_string()), "the failing SDK trace is kept whole: {name}");
    }
    let fast_kept = names.iter().filter(|s| s.starts_with("fast-")).count();
    // Binomial(2000, 0.1): sd ≈ 13.4; allow 5 sd.
    assert!((fast_kept as f64 - 200.0).abs() < 67.0, "{fast_kept} of 2000 fast traces kept");
    // A late span of the kept SDK trace follows it out at once.
    let mut late = span(
        "late-of-sdk-trace",
        (0..16).map(|i| u8::from_str_radix(&sdk_trace[i * 2..i * 2 + 2], 16).unwrap()).collect(),
    );
    late.span_id = vec![5; 8];
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(vec![late]),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        eventually(Duration::from_secs(5), || span_names(&path).contains(&"late-of-sdk-trace".to_string())),
        "{}",
        gw.log()
    );
    let dropped = gw.metric("switchyard_processor_dropped_spans_total", &[("processor", "tail_sampling")]);
    assert_eq!(dropped as usize, 2000 - fast_kept, "every fast trace not kept is counted");
}

#[test]
fn from_context_takes_a_header_the_client_sent() {
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        include_metadata: true
processors:
  attributes:
    actions:
      - key: tenant
        from_context: metadata.x-tenant
        action: insert
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
      processors: [attributes]
      exporters: [file]
"#,
    );
    let body = traces_body(spans("t", 2));
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf"), ("X-Tenant", "acme")],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&path).len() == 2), "{}", gw.log());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(r#"{"key":"tenant","value":{"stringValue":"acme"}}"#).count(), 2, "{text}");
}

/// The real Python SDK's `SimpleSpanProcessor` exports every span in its own request: a call
/// between two services arrives as two requests. `groupbytrace` hands each trace on whole.
#[test]
fn groupbytrace_hands_on_the_spans_of_each_trace_together() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  groupbytrace:
    wait_duration: 1s
exporters:
  file:
    path: {dir}/out.jsonl
  file/raw:
    path: {dir}/raw.jsonl
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [groupbytrace]
      exporters: [file]
    traces/raw:
      receivers: [otlp]
      exporters: [file/raw]
"#,
    );
    let out = Command::new(&python)
        .arg(repo().join("tests/peers/python/otel_calls.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.http), "--client", "web", "--server", "api"])
        .args(["--calls", "12"])
        .output()
        .expect("run otel_calls.py");
    assert!(out.status.success(), "otel_calls.py: {}", String::from_utf8_lossy(&out.stderr));
    // Per written line (one batch): how many spans of each trace it holds.
    let lines = |file: &str| -> Vec<std::collections::HashMap<String, usize>> {
        std::fs::read_to_string(gw.path(file))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let mut per = std::collections::HashMap::new();
                for rs in v["resourceSpans"].as_array().unwrap() {
                    for ss in rs["scopeSpans"].as_array().unwrap() {
                        for s in ss["spans"].as_array().unwrap() {
                            *per.entry(s["traceId"].as_str().unwrap().to_string()).or_insert(0) += 1;
                        }
                    }
                }
                per
            })
            .collect()
    };
    let spans = |l: &[std::collections::HashMap<String, usize>]| l.iter().flat_map(|m| m.values()).sum::<usize>();
    assert!(eventually(Duration::from_secs(20), || spans(&lines("out.jsonl")) == 24), "{}", gw.log());
    let grouped = lines("out.jsonl");
    let mut traces = std::collections::HashSet::new();
    for line in &grouped {
        for (trace, n) in line {
            assert_eq!(*n, 2, "trace {trace} whole in one batch: {grouped:?}");
            assert!(traces.insert(trace.clone()), "trace {trace} in one batch only");
        }
    }
    assert_eq!(traces.len(), 12);
    // Without the processor the same spans arrive one per request.
    let raw = lines("raw.jsonl");
    assert!(raw.iter().all(|l| l.values().sum::<usize>() == 1) && spans(&raw) == 24, "{raw:?}");
}

/// A stand-in for the EC2 instance metadata service (no cloud is reachable from a test): it
/// answers IMDSv2 as AWS documents it, on loopback. Returns its endpoint.
fn stand_in_ec2_metadata() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut token = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                token |= h.to_ascii_lowercase().starts_with("x-aws-ec2-metadata-token: t0k");
            }
            let body = match first.split_whitespace().nth(1).unwrap_or("") {
                "/latest/api/token" if first.starts_with("PUT") => "t0k",
                "/latest/dynamic/instance-identity/document" if token => {
                    r#"{"accountId":"210987654321","availabilityZone":"us-east-1a","region":"us-east-1","instanceId":"i-0123456789","imageId":"ami-1","instanceType":"c6g.xlarge"}"#
                }
                "/latest/meta-data/hostname" if token => "ip-172-31-0-9.ec2.internal",
                _ => "",
            };
            let status = if body.is_empty() { "404 Not Found" } else { "200 OK" };
            let mut stream = stream;
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    endpoint
}

#[test]
fn resourcedetection_adds_the_environment_and_the_ec2_instance_to_real_sdk_spans() {
    let Some(python) = python_peer() else { return };
    let endpoint = stand_in_ec2_metadata();
    let gw = Gateway::start_with_env(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  resourcedetection:
    detectors: [env, ec2, system]
    override: false
    timeout: 2s
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resourcedetection]
      exporters: [file]
"#,
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.name=from-env"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
        ],
    );
    python_sends(&python, gw.grpc, "traces", 3, &gw.dir.path().join("sent.json"));
    let out = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&out).len() == 3), "{}", gw.log());
    let line = &json_lines(&out)[0];
    let attrs: std::collections::HashMap<String, String> = line["resourceSpans"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"]["stringValue"].as_str().unwrap_or("").to_string()))
        .collect();
    let get = |k: &str| attrs.get(k).map(String::as_str);
    assert_eq!(get("deployment.environment"), Some("staging"), "{attrs:?}");
    assert_eq!(get("service.name"), Some("py-sender"), "override: false keeps what the SDK sent");
    assert_eq!((get("cloud.provider"), get("cloud.platform")), (Some("aws"), Some("aws_ec2")));
    assert_eq!((get("cloud.region"), get("cloud.availability_zone")), (Some("us-east-1"), Some("us-east-1a")));
    assert_eq!((get("host.id"), get("host.type")), (Some("i-0123456789"), Some("c6g.xlarge")));
    assert_eq!(get("host.name"), Some("ip-172-31-0-9.ec2.internal"), "ec2 comes before system: its host name wins");
    assert_eq!(get("os.type"), Some("linux"));
}
