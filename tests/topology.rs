//! Pipeline topology as configured: fan-in from two receivers, one receiver feeding two
//! pipelines, one exporter serving two pipelines, and fan-out to two exporters — each exporter
//! gets exactly the copies its pipelines route to it.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  otlp/second:
    protocols:
      http:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 20ms
exporters:
  file/all:
    path: {dir}/all.jsonl
  file/one:
    path: {dir}/one.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces/one:
      receivers: [otlp, otlp/second]
      processors: [batch]
      exporters: [file/all, file/one]
    traces/two:
      receivers: [otlp]
      exporters: [file/all]
"#;

fn send(port: u16, name: &str) {
    let r = http_request(
        "POST",
        port,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(vec![span(name, vec![5; 16])]),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn fan_in_fan_out_and_shared_components() {
    let mut gw = Gateway::start(CONFIG);
    send(gw.http, "via-first");
    send(gw.grpc, "via-second");
    let (all, one) = (gw.path("all.jsonl"), gw.path("one.jsonl"));
    assert!(eventually(Duration::from_secs(10), || span_names(&all).len() == 3 && span_names(&one).len() == 2));
    assert_eq!(span_names(&gw.path("one.jsonl")), vec!["via-first", "via-second"]);
    // traces/one brings both; traces/two brings the first receiver's span once more.
    assert_eq!(span_names(&gw.path("all.jsonl")), vec!["via-first", "via-first", "via-second"]);
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp")]), 1.0);
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp/second")]), 1.0);
    assert_eq!(gw.metric("otelcol_exporter_sent_spans_total", &[("exporter", "file/all")]), 3.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

/// Spans in file `name` of the gateway's directory whose resource has `service.name`.
fn spans_in(gw: &Gateway, name: &str) -> usize {
    span_names(&gw.path(name)).len()
}

#[test]
fn a_routing_connector_splits_by_request_header_and_resource_attribute_and_forward_copies_all() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        include_metadata: true
connectors:
  forward:
  routing:
    default_pipelines: [traces/rest]
    table:
      - condition: request["X-Tenant"] == "acme"
        context: request
        pipelines: [traces/acme]
      - statement: route() where attributes["tenant"] == "globex"
        pipelines: [traces/globex]
exporters:
  file/acme: {path: "{dir}/acme.jsonl"}
  file/globex: {path: "{dir}/globex.jsonl"}
  file/rest: {path: "{dir}/rest.jsonl"}
  file/all: {path: "{dir}/all.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces/in: {receivers: [otlp], exporters: [routing, forward]}
    traces/acme: {receivers: [routing], exporters: [file/acme]}
    traces/globex: {receivers: [routing], exporters: [file/globex]}
    traces/rest: {receivers: [routing], exporters: [file/rest]}
    traces/all: {receivers: [forward], exporters: [file/all]}
"#,
    );
    let endpoint = format!("http://127.0.0.1:{}", gw.grpc);
    let send = |extra: &[&str]| {
        let out = gw.dir.path().join("sent.json");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (ok, err) = python_try_send(&python, "grpc", &endpoint, &extra, &out);
        assert!(ok, "{err}");
    };
    send(&["--header", "X-Tenant=acme", "--count", "5"]);
    send(&["--resource", "tenant=globex", "--count", "7"]);
    // The request's tenant decides before the resource: the first route matches.
    send(&["--header", "X-Tenant=acme", "--resource", "tenant=globex", "--count", "2"]);
    send(&["--header", "X-Tenant=initech", "--count", "3"]);
    let expected = [("acme.jsonl", 7), ("globex.jsonl", 7), ("rest.jsonl", 3), ("all.jsonl", 17)];
    let counts = || expected.map(|(f, _)| spans_in(&gw, f));
    assert!(
        eventually(Duration::from_secs(10), || counts() == expected.map(|(_, n)| n)),
        "spans per file {:?}, expected {expected:?}\n{}",
        counts(),
        gw.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counts(), expected.map(|(_, n)| n), "exact counts: nothing twice");
    let accepted = gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp")]);
    assert_eq!(accepted, 17.0);
}

#[test]
fn a_full_queue_behind_a_connector_holds_the_client_instead_of_losing_its_data() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
connectors:
  forward:
exporters:
  otlp:
    endpoint: 127.0.0.1:{port:sink}
    tls:
      insecure: true
    sending_queue:
      queue_size: 1
      num_consumers: 1
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 100ms
      max_elapsed_time: 0
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces/in: {receivers: [otlp], exporters: [forward]}
    traces/out: {receivers: [forward], exporters: [otlp]}
"#,
    );
    let post = |http: u16, prefix: &str| {
        let body = traces_body(spans(prefix, 3));
        http_request("POST", http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap()
    };
    // The first request fills the queue of the exporter behind the connector (its destination
    // is down); the second waits for room there, claimed when it was admitted.
    assert_eq!(post(gw.http, "first-").status, 200);
    let http = gw.http;
    let second = std::thread::spawn(move || post(http, "second-"));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!second.is_finished(), "the second request waits for room behind the connector");
    let sink = common::sink::Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    let answer = second.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(eventually(Duration::from_secs(20), || sink.spans().len() == 6), "{:?}", sink.spans());
}

const TENANTS: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 30s
connectors:
  routing:
    default_pipelines: [traces/rest]
    table:
      - condition: attributes["tenant"] == "acme"
        pipelines: [traces/acme]
exporters:
  file/acme: {path: "{dir}/acme.jsonl"}
  file/rest: {path: "{dir}/rest.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces/in: {receivers: [otlp], processors: [batch], exporters: [routing]}
    traces/acme: {receivers: [routing], exporters: [file/acme]}
    traces/rest: {receivers: [routing], exporters: [file/rest]}
"#;

/// POSTs `spans` under a resource whose attribute `key` is `value`.
fn post_under(gw: &Gateway, key: &str, value: &str, spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    use prost::Message;
    let attribute = KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    };
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![attribute], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let r = http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// POSTs `n` spans whose resource has `tenant`.
fn post_tenant(gw: &Gateway, tenant: &str, n: usize) {
    post_under(gw, "tenant", tenant, spans(&format!("{tenant}-"), n));
}

#[test]
fn a_tenant_route_added_by_a_reload_takes_effect_and_a_stop_flushes_through_the_connector() {
    let mut gw = Gateway::start(TENANTS);
    post_tenant(&gw, "acme", 2);
    post_tenant(&gw, "globex", 3);
    // A second tenant gets its own pipeline, by a configuration edit.
    let with_globex = TENANTS
        .replace(
            "        pipelines: [traces/acme]\n",
            "        pipelines: [traces/acme]\n      - condition: attributes[\"tenant\"] == \"globex\"\n        pipelines: [traces/globex]\n",
        )
        .replace("  file/rest:", "  file/globex: {path: \"{dir}/globex.jsonl\"}\n  file/rest:")
        .replace(
            "    traces/rest: {",
            "    traces/globex: {receivers: [routing], exporters: [file/globex]}\n    traces/rest: {",
        );
    gw.rewrite(&with_globex);
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    post_tenant(&gw, "globex", 4);
    post_tenant(&gw, "acme", 1);
    post_tenant(&gw, "initech", 2);
    // Everything still waits in the batch processor (30 s): what it held before the reload
    // takes the new route too when it leaves. Stopping flushes it through the connector into
    // pipelines that are still open.
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("changed: connector routing"), "{log}");
    let count = |f: &str| span_names(&gw.path(f)).len();
    assert_eq!((count("acme.jsonl"), count("globex.jsonl"), count("rest.jsonl")), (3, 7, 2), "{log}");
    assert!(!log.contains("data lost"), "{log}");
}

#[test]
fn connectors_in_series_and_a_diamond_onto_one_exporter_deliver_every_copy() {
    let mut gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 30s
connectors:
  forward/first:
  forward/second:
  forward/split:
exporters:
  file/end: {path: "{dir}/end.jsonl"}
  file/shared: {path: "{dir}/shared.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces/in: {receivers: [otlp], exporters: [forward/first, forward/split]}
    traces/middle: {receivers: [forward/first], processors: [batch], exporters: [forward/second]}
    traces/end: {receivers: [forward/second], processors: [batch], exporters: [file/end]}
    traces/left: {receivers: [forward/split], exporters: [file/shared]}
    traces/right: {receivers: [forward/split], processors: [batch], exporters: [file/shared]}
"#,
    );
    post_spans(&gw, "chain-", 4);
    // Two batch processors in series hold the chain's copy: the stop flushes both, in order.
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let count = |f: &str| span_names(&gw.path(f)).len();
    assert_eq!((count("end.jsonl"), count("shared.jsonl")), (4, 8), "one copy per path:\n{log}");
}

/// The sum of the data points of metric `name` in a file of OTLP/JSON metrics, by the value
/// of attribute `key` (empty when absent).
fn sums(path: &std::path::Path, name: &str, key: &str) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    for line in json_lines(path) {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten().filter(|m| m["name"] == name) {
                    for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                        let value = p["asInt"].as_str().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                        let attr = p["attributes"].as_array().into_iter().flatten().find(|a| a["key"] == key);
                        let label = attr.and_then(|a| a["value"]["stringValue"].as_str()).unwrap_or("").to_string();
                        *out.entry(label).or_default() += value;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn a_count_connector_turns_the_sdk_spans_into_counts_by_service_and_failures() {
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
connectors:
  count:
    spans:
      app.spans:
        description: spans by service
        attributes: [{key: service.name}, {key: deployment.environment, default_value: unknown}]
      app.errors:
        description: failed spans by service
        conditions: [status.code == STATUS_CODE_ERROR]
        attributes: [{key: service.name}]
exporters:
  file/traces: {path: "{dir}/traces.jsonl"}
  file/counts: {path: "{dir}/counts.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file/traces, count]}
    metrics/counts: {receivers: [count], exporters: [file/counts]}
"#,
    );
    let endpoint = format!("http://127.0.0.1:{}", gw.grpc);
    for n in ["4", "3"] {
        let out = gw.dir.path().join("sent.json");
        let (ok, err) = python_try_send(&python, "grpc", &endpoint, &["--count".into(), n.into()], &out);
        assert!(ok, "{err}");
    }
    // Calls between two services, 2 of 6 failing on the server side (12 spans).
    let calls = Command::new(&python)
        .arg(repo().join("tests/peers/python/otel_calls.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.http), "--client", "web", "--server", "api"])
        .args(["--calls", "6", "--failures", "2"])
        .output()
        .expect("run otel_calls.py");
    assert!(calls.status.success(), "otel_calls.py: {}", String::from_utf8_lossy(&calls.stderr));
    let counts = || sums(&gw.path("counts.jsonl"), "app.spans", "service.name");
    assert!(
        eventually(Duration::from_secs(10), || counts().values().sum::<i64>() == 19),
        "counts {:?}, spans {}\n{}",
        counts(),
        span_names(&gw.path("traces.jsonl")).len(),
        gw.log()
    );
    let by_service = counts();
    assert_eq!((by_service.get("web"), by_service.get("api")), (Some(&6), Some(&6)), "{by_service:?}");
    let errors = sums(&gw.path("counts.jsonl"), "app.errors", "service.name");
    // The two failed server spans (the client side of a call is not failed), besides the
    // Python sender's own failed spans.
    assert_eq!((errors.get("api"), errors.get("web")), (Some(&2), None), "{errors:?}");
    assert_eq!(
        by_service.get("py-sender"),
        Some(&7),
        "the SDK's service.name (a resource attribute) is the label: {by_service:?}"
    );
    assert_eq!(span_names(&gw.path("traces.jsonl")).len(), 19, "the spans go on too");
    assert_eq!(sums(&gw.path("counts.jsonl"), "app.spans", "deployment.environment").get("unknown"), Some(&19));
}

#[test]
fn reloads_that_add_and_remove_connectors_while_spans_flow_lose_none() {
    let direct = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 200ms
exporters:
  file/a: {path: "{dir}/a.jsonl", append: true}
  file/b: {path: "{dir}/b.jsonl", append: true}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [file/a]}
"#;
    let connected = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 200ms
connectors:
  routing:
    default_pipelines: [traces/b]
    table:
      - condition: name == "never"
        context: span
        pipelines: [traces/a]
exporters:
  file/a: {path: "{dir}/a.jsonl", append: true}
  file/b: {path: "{dir}/b.jsonl", append: true}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [routing]}
    traces/a: {receivers: [routing], processors: [batch], exporters: [file/a]}
    traces/b: {receivers: [routing], processors: [batch], exporters: [file/b]}
"#;
    let mut gw = Gateway::start(direct);
    let http = gw.http;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = stop.clone();
    let sender = std::thread::spawn(move || {
        let mut accepted = 0;
        let mut i = 0;
        while !sending.load(std::sync::atomic::Ordering::Relaxed) {
            let body = traces_body(spans(&format!("flow-{i}-"), 5));
            let r = http_request("POST", http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body);
            if r.is_ok_and(|r| r.status == 200) {
                accepted += 5;
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        accepted
    });
    for template in [connected, direct, connected] {
        std::thread::sleep(Duration::from_millis(400));
        gw.rewrite(template);
        assert_eq!(gw.reload(), "success", "{}", gw.log());
    }
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let accepted = sender.join().unwrap();
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let (a, b) = (span_names(&gw.path("a.jsonl")), span_names(&gw.path("b.jsonl")));
    assert!(!b.is_empty(), "the routed topology delivered some");
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((all.len(), total), (accepted, accepted), "every accepted span delivered once:\n{log}");
    assert!(!log.contains("data lost"), "{log}");
}

#[test]
fn counts_made_cumulative_are_remote_written_into_prometheus_as_a_running_total() {
    use common::prom::Prometheus;
    let Some(python) = python_peer() else { return };
    let Some(prometheus) = Prometheus::start("global:\n  scrape_interval: 1h\n") else { return };
    // Remote write takes no delta sums: without deltatocumulative the counts would be dropped.
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
processors:
  deltatocumulative:
connectors:
  count:
    spans:
      app.spans:
        attributes: [{{key: span.kind, default_value: any}}]
exporters:
  file/traces: {{path: "{{dir}}/traces.jsonl"}}
  prometheusremotewrite:
    endpoint: {write}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/traces, count]}}
    metrics/counts: {{receivers: [count], processors: [deltatocumulative], exporters: [prometheusremotewrite]}}
"#,
        write = prometheus.remote_write_url()
    ));
    let endpoint = format!("http://127.0.0.1:{}", gw.grpc);
    for n in ["4", "3"] {
        let out = gw.dir.path().join("sent.json");
        let (ok, err) = python_try_send(&python, "grpc", &endpoint, &["--count".into(), n.into()], &out);
        assert!(ok, "{err}");
    }
    let total = || -> f64 {
        let answer = prometheus.query("sum(max_over_time(app_spans_total[10m]))");
        answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(20), || total() == 7.0),
        "Prometheus has {} for 4 + 3 spans: {}\n{}",
        total(),
        prometheus.query("app_spans_total"),
        gw.log()
    );
}

/// POSTs spans of `service` named `name`, each lasting `ms` milliseconds.
fn post_timed(gw: &Gateway, service: &str, name: &str, ms: u64, n: usize) {
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut list = spans(&format!("{name}-"), n);
    for s in &mut list {
        s.name = name.to_string();
        s.kind = 2;
        s.start_time_unix_nano = start;
        s.end_time_unix_nano = start + ms * 1_000_000;
    }
    post_under(gw, "service.name", service, list);
}

#[test]
fn spanmetrics_give_prometheus_call_counts_and_duration_quantiles_that_match_the_spans() {
    use common::prom::Prometheus;
    let prom_port = free_port();
    let Some(prometheus) = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n"
    )) else {
        return;
    };
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
connectors:
  spanmetrics:
    metrics_flush_interval: 1s
exporters:
  file/traces: {{path: "{{dir}}/traces.jsonl"}}
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/traces, spanmetrics]}}
    metrics: {{receivers: [spanmetrics], exporters: [prometheus]}}
"#
    ));
    // 30 fast calls (30 ms) and 10 slow ones (300 ms).
    post_timed(&gw, "checkout", "GET /fast", 30, 30);
    post_timed(&gw, "checkout", "GET /slow", 300, 10);
    let value = |promql: &str| -> Option<f64> {
        let answer = prometheus.query(promql);
        answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok())
    };
    let calls = |span: &str| value(&format!("sum(traces_span_metrics_calls_total{{span_name=\"{span}\"}})"));
    assert!(
        eventually(Duration::from_secs(30), || calls("GET /fast") == Some(30.0) && calls("GET /slow") == Some(10.0)),
        "calls: fast {:?}, slow {:?}; {}\n{}",
        calls("GET /fast"),
        calls("GET /slow"),
        prometheus.query("{__name__=~\"traces_span.*\"}"),
        gw.log()
    );
    let quantile = |span: &str| {
        value(&format!(
            "histogram_quantile(0.5, sum by (le) ({{__name__=~\"traces_span_metrics_duration.*_bucket\", span_name=\"{span}\"}}))"
        ))
    };
    // The default buckets around the durations: (10, 50] for 30 ms and (200, 400] for 300 ms.
    let (fast, slow) = (quantile("GET /fast").unwrap_or(-1.0), quantile("GET /slow").unwrap_or(-1.0));
    assert!((10.0..=50.0).contains(&fast), "median of 30 ms spans: {fast}");
    assert!((200.0..=400.0).contains(&slow), "median of 300 ms spans: {slow}");
    let labels = prometheus.query("traces_span_metrics_calls_total{span_name=\"GET /slow\"}");
    let metric = &labels["data"]["result"][0]["metric"];
    assert_eq!(
        (metric["span_kind"].as_str(), metric["status_code"].as_str()),
        (Some("SPAN_KIND_SERVER"), Some("STATUS_CODE_UNSET")),
        "{labels}"
    );
}

#[test]
fn servicegraph_gives_prometheus_the_calls_between_services_of_real_sdk_traces() {
    use common::prom::Prometheus;
    let Some(python) = common::python_peer() else { return };
    let prom_port = free_port();
    let Some(prometheus) = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n"
    )) else {
        return;
    };
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
connectors:
  servicegraph:
    metrics_flush_interval: 1s
    store: {{ttl: 10s}}
exporters:
  file/traces: {{path: "{{dir}}/traces.jsonl"}}
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/traces, servicegraph]}}
    metrics: {{receivers: [servicegraph], exporters: [prometheus]}}
"#
    ));
    // Two services of one SDK process calling each other, the context carried as in HTTP.
    let calls = |client: &str, server: &str, n: usize, failures: usize, ms: u64| {
        let out = Command::new(&python)
            .arg(common::repo().join("tests/peers/python/otel_calls.py"))
            .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.http), "--client", client, "--server", server])
            .args(["--calls", &n.to_string(), "--failures", &failures.to_string(), "--server-ms", &ms.to_string()])
            .output()
            .expect("run otel_calls.py");
        assert!(out.status.success(), "otel_calls.py: {}", String::from_utf8_lossy(&out.stderr));
    };
    calls("frontend", "backend", 20, 5, 20);
    calls("frontend", "payments", 8, 0, 0);
    let value = |promql: &str| -> Option<f64> {
        let answer = prometheus.query(promql);
        answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok())
    };
    let total = |server: &str| {
        value(&format!("sum(traces_service_graph_request_total{{client=\"frontend\",server=\"{server}\"}})"))
    };
    assert!(
        eventually(Duration::from_secs(30), || total("backend") == Some(20.0) && total("payments") == Some(8.0)),
        "backend {:?}, payments {:?}; {}\n{}",
        total("backend"),
        total("payments"),
        prometheus.query("{__name__=~\"traces_service_graph.*\"}"),
        gw.log()
    );
    let failed = value("sum(traces_service_graph_request_failed_total{client=\"frontend\",server=\"backend\"})");
    assert_eq!(failed, Some(5.0), "{}", prometheus.query("traces_service_graph_request_failed_total"));
    assert_eq!(value("sum(traces_service_graph_request_failed_total{server=\"payments\"})"), None);
    // The server spans slept 20 ms: the median is in the (0.01, 0.05] seconds bucket.
    let median = value(
        "histogram_quantile(0.5, sum by (le) (traces_service_graph_request_server_seconds_bucket{server=\"backend\"}))",
    )
    .unwrap_or(-1.0);
    assert!((0.01..=0.05).contains(&median), "median server latency {median} s");
    // No edge was made up: nothing to a virtual node, nothing between other services.
    let all = prometheus.query("count(traces_service_graph_request_total)");
    assert_eq!(
        all["data"]["result"][0]["value"][1].as_str(),
        Some("3"),
        "{}",
        prometheus.query("traces_service_graph_request_total")
    );
}

fn vm_rss_mib(pid: u32) -> u64 {
    vm_status_mib(pid, "VmRSS:")
}

/// A memory figure of /proc/PID/status (`VmRSS:`, `VmHWM:`), in MiB.
fn vm_status_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

/// A flood of distinct dimension values (an unbounded `http.route`): spanmetrics keeps 100,000
/// series and counts the rest in one overflow series, so memory stops growing at the cap.
#[test]
fn spanmetrics_memory_stops_growing_at_100000_distinct_dimension_values() {
    let mut gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
connectors:
  spanmetrics:
    dimensions: [{name: http.route}]
    metrics_flush_interval: 1h
exporters:
  debug: {verbosity: basic}
  file/metrics: {path: "{dir}/metrics.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [debug, spanmetrics]}
    metrics: {receivers: [spanmetrics], exporters: [file/metrics]}
"#,
    );
    let flood = |from: usize, to: usize| {
        for chunk in (from..to).collect::<Vec<_>>().chunks(5000) {
            let mut list = spans("r", chunk.len());
            for (s, i) in list.iter_mut().zip(chunk) {
                s.kind = 2;
                s.attributes = vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "http.route".into(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(format!(
                            "/users/{i}"
                        ))),
                    }),
                    ..Default::default()
                }];
            }
            post_under(&gw, "service.name", "api", list);
        }
    };
    // The connector has seen what the debug exporter (fed by the same fan-out) has sent.
    let seen = |n: f64| {
        eventually(Duration::from_secs(60), || {
            gw.metric("otelcol_exporter_sent_spans_total", &[("exporter", "debug")]) >= n
        })
    };
    let before = vm_rss_mib(gw.pid());
    flood(0, 100_000);
    assert!(seen(100_000.0), "{}", gw.log());
    let at_cap = vm_rss_mib(gw.pid());
    flood(100_000, 300_000);
    assert!(seen(300_000.0), "{}", gw.log());
    let after = vm_rss_mib(gw.pid());
    let peak = vm_status_mib(gw.pid(), "VmHWM:");
    eprintln!(
        "RSS before: {before} MiB; at 100,000 series: {at_cap} MiB; after 200,000 more: {after} MiB; peak {peak} MiB"
    );
    // 100,000 series take about 130 MiB here; without the cap, 300,000 would take over 400.
    assert!(peak < 320, "memory kept growing past the cap: {before} -> {at_cap} -> {after} MiB, peak {peak} MiB");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let calls = sums(&gw.path("metrics.jsonl"), "traces.span.metrics.calls", "http.route");
    assert_eq!(calls.len(), 100_001, "100,000 series and the overflow");
    assert_eq!(calls.get(""), Some(&200_000), "the overflow series counted every later span");
    assert_eq!(calls.values().sum::<i64>(), 300_000);
}

#[test]
fn spanmetrics_gathered_since_the_last_flush_are_handed_on_at_a_stop() {
    let mut gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
connectors:
  spanmetrics:
    metrics_flush_interval: 1h
exporters:
  file/traces: {path: "{dir}/traces.jsonl"}
  file/metrics: {path: "{dir}/metrics.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file/traces, spanmetrics]}
    metrics: {receivers: [spanmetrics], exporters: [file/metrics]}
"#,
    );
    post_timed(&gw, "checkout", "GET /x", 5, 6);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let calls = sums(&gw.path("metrics.jsonl"), "traces.span.metrics.calls", "span.name");
    assert_eq!(calls.get("GET /x"), Some(&6), "{calls:?}\n{log}");
}
