//! Reloading the configuration in place (SIGHUP and `--watch`), as an operator sees it with
//! the real OpenTelemetry Python SDK sending: an exporter added receives from then on while the
//! old one keeps everything; one removed delivers its queue first; a processor setting changes;
//! a receiver moves to a new port; a broken file keeps the running configuration; ten reloads
//! while 20,000 spans are sent lose and refuse nothing; filelog offsets and a tail-sampling
//! decision survive a reload of another component.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// OTLP in, `{extra_processors}` then batch, file exporter `a` (plus `{extra_exporters}`).
fn traces_config(
    processors: &str,
    extra_exporters: &str,
    pipeline_processors: &str,
    pipeline_exporters: &str,
) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
      http:
        endpoint: 127.0.0.1:{{http}}
processors:
  batch:
    timeout: 100ms
{processors}
exporters:
  file/a:
    path: {{dir}}/a.jsonl
{extra_exporters}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [{pipeline_processors}]
      exporters: [{pipeline_exporters}]
"#
    )
}

fn names_with(path: &Path, prefix: &str) -> Vec<String> {
    span_names(path).into_iter().filter(|n| n.starts_with(prefix)).collect()
}

fn send(python: &Path, gw: &Gateway, prefix: &str, count: usize) {
    let out = gw.path(&format!("{prefix}.json"));
    let summary = stream_summary(python_stream(python, gw.grpc, prefix, count, 0.0, &out), &out);
    assert_eq!(summary["exported"], count, "{summary}");
}

#[test]
fn an_added_exporter_receives_from_then_on_and_the_old_one_keeps_everything() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&traces_config("", "", "batch", "file/a"));
    send(&python, &gw, "before", 50);
    let (a, b) = (gw.path("a.jsonl"), gw.path("b.jsonl"));
    assert!(eventually(Duration::from_secs(10), || names_with(&a, "before").len() == 50), "{}", gw.log());

    gw.rewrite(&traces_config("", "  file/b:\n    path: {dir}/b.jsonl", "batch", "file/a, file/b"));
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    assert!(gw.log().contains("added: exporter file/b"), "the log says what changed: {}", gw.log());
    send(&python, &gw, "after", 50);
    assert!(eventually(Duration::from_secs(10), || names_with(&b, "after").len() == 50), "{}", gw.log());
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 100), "{}", gw.log());
    assert!(names_with(&b, "before").is_empty(), "the new exporter gets only what came after the reload");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(span_names(&a).len(), 100, "nothing twice");
}

#[test]
fn a_removed_exporter_delivers_its_queue_first() {
    let Some(python) = python_peer() else { return };
    // The vendor is down when the spans arrive: they wait in the exporter's queue, retried.
    let vendor_port = free_port();
    let vendor_exporter = format!(
        "  otlp/vendor:\n    endpoint: 127.0.0.1:{vendor_port}\n    tls: {{insecure: true}}\n    retry_on_failure:\n      initial_interval: 100ms\n      max_interval: 200ms\n      max_elapsed_time: 60s"
    );
    let mut gw = Gateway::start(&traces_config("", &vendor_exporter, "batch", "file/a, otlp/vendor"));
    send(&python, &gw, "queued", 20);
    let a = gw.path("a.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 20), "{}", gw.log());
    assert!(
        eventually(Duration::from_secs(10), || gw.log().contains("failing since")),
        "the vendor is down: {}",
        gw.log()
    );

    gw.rewrite(&traces_config("", "", "batch", "file/a"));
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    assert!(gw.log().contains("removed: exporter otlp/vendor"), "{}", gw.log());
    // Data sent from now on does not go to the removed exporter…
    send(&python, &gw, "later", 5);
    // …and what it held is delivered once the vendor (a second switchyard) comes up.
    let vendor = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{vendor_port}
exporters:
  file:
    path: {{dir}}/vendor.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
    ));
    let delivered = vendor.path("vendor.jsonl");
    assert!(
        eventually(Duration::from_secs(20), || span_names(&delivered).len() == 20),
        "the removed exporter's queue is delivered: {:?}\n{}",
        span_names(&delivered),
        gw.log()
    );
    // Counted once the vendor's answer is in (the vendor may write its file before that).
    assert!(eventually(Duration::from_secs(10), || gw
        .metric("otelcol_exporter_sent_spans_total", &[("exporter", "otlp/vendor")])
        == 20.0));
    assert!(names_with(&delivered, "later").is_empty());
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 25), "{}", gw.log());
}

/// The `stage` attribute of every span in `path`, by span name.
fn stages(path: &Path) -> Vec<(String, String)> {
    json_lines(path)
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            let stage = s["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "stage")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_string();
            (s["name"].as_str().unwrap_or("").to_string(), stage)
        })
        .collect()
}

fn stage_processor(stage: &str) -> String {
    format!("  attributes:\n    actions:\n      - key: stage\n        value: {stage}\n        action: upsert")
}

#[test]
fn a_changed_processor_setting_applies_to_what_comes_after() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&traces_config(&stage_processor("one"), "", "attributes, batch", "file/a"));
    send(&python, &gw, "first", 10);
    let a = gw.path("a.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 10), "{}", gw.log());
    gw.rewrite(&traces_config(&stage_processor("two"), "", "attributes, batch", "file/a"));
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    assert!(gw.log().contains("changed: processor attributes"), "{}", gw.log());
    send(&python, &gw, "second", 10);
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 20), "{}", gw.log());
    for (name, stage) in stages(&a) {
        let want = if name.starts_with("first") { "one" } else { "two" };
        assert_eq!(stage, want, "{name}");
    }
}

#[test]
fn a_receiver_moved_to_a_new_port_listens_there_and_the_old_port_closes() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&traces_config("", "", "batch", "file/a"));
    let old = gw.grpc;
    send(&python, &gw, "old-port", 5);
    let moved = traces_config("", "", "batch", "file/a").replace("127.0.0.1:{grpc}", "127.0.0.1:{port:moved}");
    gw.rewrite(&moved);
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    gw.grpc = gw.port("moved");
    send(&python, &gw, "new-port", 5);
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", old)).is_err()),
        "the old port closes"
    );
    // The HTTP endpoint did not change: the same socket kept listening throughout.
    post_spans(&gw, "http-", 3);
    let a = gw.path("a.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 13), "{:?}", span_names(&a));
}

#[test]
fn a_broken_configuration_keeps_the_running_one_and_says_why() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&traces_config("", "", "batch", "file/a"));
    // Invalid: an unknown exporter type.
    gw.rewrite(&traces_config("", "  fiel/b:\n    path: {dir}/b.jsonl", "batch", "file/a"));
    assert_eq!(gw.reload(), "failure");
    let log = gw.log();
    assert!(log.contains("reload refused") && log.contains("unknown exporter type \"fiel\""), "{log}");
    assert!(log.contains("config.yaml:"), "the error names the file and line: {log}");
    // Valid but impossible: the receiver would move to a port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    gw.rewrite(&traces_config("", "", "batch", "file/a").replace("127.0.0.1:{grpc}", &format!("127.0.0.1:{port}")));
    assert_eq!(gw.reload(), "failure");
    assert!(gw.log().contains("configuration reload failed"), "{}", gw.log());
    // Valid but impossible: an exporter that cannot open its file.
    gw.rewrite(&traces_config("", "  file/b:\n    path: /proc/no-such-dir/b.jsonl", "batch", "file/a, file/b"));
    assert_eq!(gw.reload(), "failure");
    assert!(gw.log().contains("exporter file/b"), "{}", gw.log());
    // Still running as before, on the same ports.
    send(&python, &gw, "still", 10);
    let a = gw.path("a.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&a).len() == 10), "{}", gw.log());
    assert_eq!(gw.reloads("failure"), 3.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn ten_reloads_while_20000_spans_are_sent_lose_and_refuse_nothing() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&traces_config(&stage_processor("0"), "", "attributes, batch", "file/a"));
    let out = gw.path("stream.json");
    let sender = python_stream(&python, gw.grpc, "load", 20_000, 8.0, &out);
    for i in 1..=10 {
        std::thread::sleep(Duration::from_millis(500));
        // Alternately: a processor setting, an exporter added or removed, the batch timeout, the
        // receiver's settings.
        let extra = if i % 2 == 0 { "  file/b:\n    path: {dir}/b.jsonl" } else { "" };
        let exporters = if i % 2 == 0 { "file/a, file/b" } else { "file/a" };
        let mut config = traces_config(&stage_processor(&i.to_string()), extra, "attributes, batch", exporters)
            .replace("timeout: 100ms", if i % 3 == 0 { "timeout: 200ms" } else { "timeout: 100ms" });
        // Every reload changes the receiver itself (a setting added, then removed): its successor
        // takes over the sockets while the SDK's connection is open.
        if i % 2 == 1 {
            config = config.replace(
                "endpoint: 127.0.0.1:{grpc}\n",
                "endpoint: 127.0.0.1:{grpc}\n        max_recv_msg_size_mib: 8\n",
            );
        }
        gw.rewrite(&config);
        assert_eq!(gw.reload(), "success", "reload {i}: {}", gw.log());
    }
    let summary = stream_summary(sender, &out);
    assert_eq!(summary["exported"], 20_000, "{summary}");
    assert_eq!(summary["failed_exports"], 0, "{summary}");
    let a = gw.path("a.jsonl");
    let distinct = || span_names(&a).into_iter().collect::<BTreeSet<_>>().len();
    assert!(eventually(Duration::from_secs(20), || distinct() == 20_000), "{} of 20000", distinct());
    assert_eq!(span_names(&a).len(), 20_000, "none twice");
    assert_eq!(gw.metric("otelcol_receiver_refused_spans_total", &[]), 0.0, "none refused");
    assert_eq!(gw.reloads("success"), 10.0);
    // The receiver changed at every reload (its setting was added, then taken away again).
    assert_eq!(gw.log().matches("receiver changed: the new one is up").count(), 10, "{}", gw.log());
}

#[test]
fn filelog_offsets_and_a_tail_sampling_decision_survive_a_reload_of_another_component() {
    let config = |traces_exporters: &str, extra: &str| {
        format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
  filelog:
    include: ["{{dir}}/app.log"]
    start_at: beginning
    poll_interval: 50ms
processors:
  tail_sampling:
    decision_wait: 3s
    policies:
      - name: wanted
        type: string_attribute
        string_attribute: {{key: keep, values: ["yes"]}}
exporters:
  file/traces:
    path: {{dir}}/traces.jsonl
  file/logs:
    path: {{dir}}/logs.jsonl
{extra}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [{traces_exporters}]
    logs:
      receivers: [filelog]
      exporters: [file/logs]
"#
        )
    };
    let mut gw = Gateway::start(&config("file/traces", ""));
    let log_file = gw.path("app.log");
    let write_lines = |from: usize, to: usize| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log_file).unwrap();
        for i in from..to {
            writeln!(f, "line {i}").unwrap();
        }
    };
    let bodies = |gw: &Gateway| -> Vec<String> {
        json_lines(&gw.path("logs.jsonl"))
            .iter()
            .flat_map(|l| l["resourceLogs"].as_array().cloned().unwrap_or_default())
            .flat_map(|rl| rl["scopeLogs"].as_array().cloned().unwrap_or_default())
            .flat_map(|sl| sl["logRecords"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["body"]["stringValue"].as_str().map(str::to_string))
            .collect()
    };
    write_lines(0, 5);
    assert!(eventually(Duration::from_secs(10), || bodies(&gw).len() == 5), "{}", gw.log());

    // The first span of a wanted trace waits for its decision…
    let trace = vec![9; 16];
    let mut first = span("wanted-first", trace.clone());
    first.attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
        key: "keep".into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("yes".into())),
        }),
        ..Default::default()
    });
    let post = |gw: &Gateway, s| {
        http_request(
            "POST",
            gw.http,
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &traces_body(vec![s]),
        )
        .unwrap()
        .status
    };
    assert_eq!(post(&gw, first), 200);
    // …while a reload adds an exporter to that same pipeline (the sampler itself is unchanged).
    gw.rewrite(&config("file/traces, file/more", "  file/more:\n    path: {dir}/more.jsonl"));
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    let traces = gw.path("traces.jsonl");
    assert!(span_names(&traces).is_empty(), "the decision is not forced early by the reload");
    assert!(
        eventually(Duration::from_secs(10), || span_names(&traces) == ["wanted-first"]),
        "decided after decision_wait as if nothing happened: {}",
        gw.log()
    );
    assert_eq!(span_names(&gw.path("more.jsonl")), ["wanted-first"], "and sent to the exporters of now");
    // A late span of the same trace, without the attribute, follows the remembered decision.
    let mut late = span("wanted-late", trace);
    late.span_id = vec![8; 8];
    assert_eq!(post(&gw, late), 200);
    assert!(
        eventually(Duration::from_secs(10), || span_names(&traces) == ["wanted-first", "wanted-late"]),
        "{:?}",
        span_names(&traces)
    );

    // The file tailer was not restarted: lines already read are not read again.
    write_lines(5, 8);
    assert!(eventually(Duration::from_secs(10), || bodies(&gw).len() >= 8), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(500));
    let mut got = bodies(&gw);
    got.sort();
    let want: Vec<String> = {
        let mut w: Vec<String> = (0..8).map(|i| format!("line {i}")).collect();
        w.sort();
        w
    };
    assert_eq!(got, want, "every line once");
}

#[test]
fn watch_reloads_when_the_file_changes() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start_with_args(&traces_config("", "", "batch", "file/a"), &["--watch"]);
    gw.rewrite(&traces_config("", "  file/b:\n    path: {dir}/b.jsonl", "batch", "file/a, file/b"));
    assert!(
        eventually(Duration::from_secs(15), || gw.reloads("success") == 1.0),
        "a changed file is reloaded without a signal: {}",
        gw.log()
    );
    send(&python, &gw, "watched", 5);
    let b = gw.path("b.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&b).len() == 5), "{}", gw.log());
    // A broken edit is refused and counted; the running configuration stays.
    gw.rewrite("receivers: [");
    assert!(eventually(Duration::from_secs(15), || gw.reloads("failure") == 1.0), "{}", gw.log());
    send(&python, &gw, "after-broken", 5);
    assert!(eventually(Duration::from_secs(10), || span_names(&b).len() == 10), "{}", gw.log());
}

#[test]
fn the_log_level_changes_in_place() {
    let mut gw = Gateway::start(&traces_config("", "", "batch", "file/a"));
    let debug = traces_config("", "  file/b:\n    path: {dir}/b.jsonl", "batch", "file/a, file/b")
        .replace("  telemetry:\n", "  telemetry:\n    logs:\n      level: debug\n");
    gw.rewrite(&debug);
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    let log = gw.log();
    assert!(log.contains("log level changed"), "{log}");
    assert!(log.contains("DEBUG") && log.contains("pipeline rewired"), "debug lines from then on: {log}");
}

#[test]
fn a_changed_prometheus_exporter_and_health_check_keep_their_ports() {
    let Some(python) = python_peer() else { return };
    let config = |namespace: &str, health_path: &str| {
        format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
exporters:
  prometheus:
    endpoint: 127.0.0.1:{{port:prom}}
    namespace: {namespace}
extensions:
  health_check:
    endpoint: 127.0.0.1:{{health}}
    path: {health_path}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"#
        )
    };
    let mut gw = Gateway::start(&config("one", "/"));
    let port = gw.port("prom");
    let scrape = || http_request("GET", port, "/metrics", &[], b"").map(|r| r.text()).unwrap_or_default();
    python_sends(&python, gw.grpc, "metrics", 3, &gw.path("m1.json"));
    assert!(eventually(Duration::from_secs(10), || scrape().contains("one_py_requests_total")), "{}", scrape());
    // The same endpoints with other settings: the new exporter and extension take over the
    // sockets instead of failing on a port still in use.
    gw.rewrite(&config("two", "/healthz"));
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    assert!(gw.log().contains("changed: exporter prometheus, extension health_check"), "{}", gw.log());
    python_sends(&python, gw.grpc, "metrics", 3, &gw.path("m2.json"));
    assert!(eventually(Duration::from_secs(10), || scrape().contains("two_py_requests_total")), "{}", scrape());
    let health = http_request("GET", gw.health, "/healthz", &[], b"").expect("health check answers");
    assert_eq!(health.status, 200);
}
