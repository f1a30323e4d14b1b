//! An outage as an operator sees it: an exporter whose destination is down says so once, with
//! the cause (the refused address), keeps retrying quietly, shows it in its metrics
//! (`switchyard_exporter_up` 0, retries counted, every failed attempt in `send_failed`), and says
//! once when the destination is back (the grpcio OTLP sink started on the dead port), after
//! which everything queued is delivered.

mod common;

use common::sink::Sink;
use common::*;
use std::time::Duration;

#[test]
fn a_dead_backend_is_one_line_with_its_cause_then_one_line_when_it_recovers() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{http}}"}}
exporters:
  otlp/jaeger:
    endpoint: 127.0.0.1:{dead}
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 60s}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp/jaeger]}}
"#
    ));
    for i in 0..3 {
        post_spans(&gw, &format!("r{i}-"), 5);
    }
    let metric = |name: &str| gw.metric(name, &[("exporter", "otlp/jaeger")]);
    assert!(
        eventually(Duration::from_secs(10), || metric("switchyard_exporter_retries_total") >= 20.0),
        "{}",
        gw.log()
    );
    let log = gw.log();
    let failing: Vec<&str> = log.lines().filter(|l| l.contains("failing since")).collect();
    assert_eq!(failing.len(), 1, "one line for the outage, not one per retry:\n{log}");
    assert!(failing[0].contains(&format!("127.0.0.1:{dead}")) || failing[0].contains("refused"), "{}", failing[0]);
    assert!(failing[0].contains("Connection refused"), "the cause is named: {}", failing[0]);
    assert_eq!(metric("switchyard_exporter_up"), 0.0);
    assert!(metric("otelcol_exporter_send_failed_spans_total") >= 15.0, "every failed attempt counts");
    assert_eq!(metric("switchyard_exporter_dropped_spans_total"), 0.0, "nothing given up on");

    // The destination comes back on the same port: one recovery line, and everything arrives.
    let sink = Sink::start_on(&python, dir.path(), dead, &[]);
    assert!(eventually(Duration::from_secs(15), || sink.spans().len() == 15), "{}", gw.log());
    assert!(eventually(Duration::from_secs(5), || metric("switchyard_exporter_up") == 1.0));
    let log = gw.log();
    assert_eq!(log.lines().filter(|l| l.contains("delivering again after")).count(), 1, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("failing since")).count(), 1, "{log}");
    assert_eq!(metric("otelcol_exporter_sent_spans_total"), 15.0);
}
