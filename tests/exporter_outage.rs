//! An outage as an operator sees it: an exporter whose destination is down says so once, with
//! the cause (the refused address), keeps retrying quietly, shows it in its metrics
//! (`switchyard_exporter_up` 0, retries counted, nothing counted as failed while it retries), and says
//! once when the destination is back (the grpcio OTLP sink started on the dead port), after
//! which everything queued is delivered. The health check's component status (the collector's
//! v2 shape) names the failing exporter and why, and with `component_health` the process is
//! unhealthy while the outage lasts longer than `recovery_duration`.

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
extensions:
  health_check:
    endpoint: 127.0.0.1:{{health}}
    component_health: {{include_recoverable_errors: true, recovery_duration: 1s}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp/jaeger]}}
"#
    ));
    let health = |path: &str| {
        let r = http_request("GET", gw.health, path, &[], b"").unwrap();
        (r.status, serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default())
    };
    let (code, status) = health("/health/status");
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["components"]["pipeline:traces"]["components"]["exporter:otlp/jaeger"]["status"], "StatusOK");
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
    // The line names the destination and that connecting failed. Its detail is the first failed
    // request's: "Connection refused", or "request was canceled" for a request that was waiting
    // on the same refused connection; the health check below shows the refusal itself.
    assert!(failing[0].contains(&format!("127.0.0.1:{dead}")), "{}", failing[0]);
    assert!(failing[0].contains("client error (Connect)"), "the cause is named: {}", failing[0]);
    assert_eq!(metric("switchyard_exporter_up"), 0.0);
    assert_eq!(
        metric("otelcol_exporter_send_failed_spans_total"),
        0.0,
        "retried, not failed (as the collector counts)"
    );
    assert_eq!(metric("switchyard_exporter_dropped_spans_total"), 0.0, "nothing given up on");

    // The health check: the exporter's error, and (past recovery_duration) 503 on both paths.
    assert!(eventually(Duration::from_secs(5), || health("/health/status").0 == 503), "{}", health("/health/status").1);
    let exporter_of = |status: &serde_json::Value| {
        status["components"]["pipeline:traces"]["components"]["exporter:otlp/jaeger"].clone()
    };
    let named = eventually(Duration::from_secs(5), || {
        let e = exporter_of(&health("/health/status").1);
        e["status"] == "StatusRecoverableError"
            && e["error"].as_str().unwrap_or_default().contains("Connection refused")
    });
    let (_, status) = health("/health/status");
    assert!(named, "the failing exporter and its cause: {status}");
    assert_eq!(status["healthy"], false);
    assert_eq!(status["components"]["pipeline:traces"]["components"]["receiver:otlp"]["status"], "StatusOK");
    assert_eq!(health("/").0, 503, "the classic endpoint follows the rule");
    assert_eq!(health("/health/status?pipeline=traces").1["status"], "StatusRecoverableError");

    // The destination comes back on the same port: one recovery line, and everything arrives.
    let sink = Sink::start_on(&python, dir.path(), dead, &[]);
    assert!(eventually(Duration::from_secs(15), || sink.spans().len() == 15), "{}", gw.log());
    // Back up once no attempt has failed for a moment (the health check looks again).
    assert!(eventually(Duration::from_secs(10), || {
        let _ = health("/health/status");
        metric("switchyard_exporter_up") == 1.0
    }));
    let log = gw.log();
    assert_eq!(log.lines().filter(|l| l.contains("delivering again after")).count(), 1, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("failing since")).count(), 1, "{log}");
    assert_eq!(metric("otelcol_exporter_sent_spans_total"), 15.0);
    assert_eq!(health("/").0, 200);
    assert_eq!(health("/health/status").0, 200);
}
