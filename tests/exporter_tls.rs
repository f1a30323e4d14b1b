//! TLS and mutual TLS from both OTLP exporters, with certificates the test generates (rcgen):
//! the HTTP exporter against a strict in-test HTTPS backend, the gRPC exporter against grpcio
//! (tests/peers/python/otlp_sink.py) with TLS. A backend whose certificate the configured CA did
//! not sign, or that wants a client certificate the exporter lacks, gets nothing.

mod common;

use common::certs::{Certs, generate};
use common::vendor::Vendor;
use common::*;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(exporter: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
exporters:
  {exporter}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{name}]
"#,
        name = exporter.split(':').next().unwrap_or("")
    )
}

fn retry_quickly() -> &'static str {
    "retry_on_failure: {initial_interval: 100ms, max_interval: 100ms, max_elapsed_time: 1s}"
}

/// Runs one gateway with `exporter` (YAML of one exporter, on one line), sends two spans, and
/// returns whether `delivered` came true.
fn delivers(exporter: &str, delivered: impl Fn() -> bool) -> bool {
    let mut gw = Gateway::start(&config(exporter));
    post_spans(&gw, "tls-", 2);
    // Either it arrives, or the exporter gives up (after 1 s of retries) and counts the failure.
    let failed = |gw: &Gateway| gw.metric("switchyard_exporter_dropped_spans_total", &[]) == 2.0;
    assert!(eventually(Duration::from_secs(15), || delivered() || failed(&gw)), "{}", gw.log());
    let ok = delivered();
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    ok
}

#[test]
fn https_with_a_ca_file_client_certificates_and_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let c: Certs = generate(dir.path());
    let p = |x: &Path| x.display().to_string();

    let vendor = Vendor::start_tls(&c.server_cert, &c.server_key, None);
    let url = format!("https://127.0.0.1:{}", vendor.port);
    let trusted =
        format!("otlphttp/v: {{endpoint: \"{url}\", tls: {{ca_file: \"{}\"}}, {}}}", p(&c.ca), retry_quickly());
    assert!(delivers(&trusted, || vendor.accepted_spans().len() == 2), "a server signed by ca_file is trusted");
    let wrong_ca =
        format!("otlphttp/v: {{endpoint: \"{url}\", tls: {{ca_file: \"{}\"}}, {}}}", p(&c.other_ca), retry_quickly());
    assert!(!delivers(&wrong_ca, || vendor.accepted_spans().len() > 2), "a server another CA signed is not");
    let system_roots = format!("otlphttp/v: {{endpoint: \"{url}\", {}}}", retry_quickly());
    assert!(
        !delivers(&system_roots, || vendor.accepted_spans().len() > 2),
        "the system store does not know the test CA"
    );
    let skip = format!("otlphttp/v: {{endpoint: \"{url}\", tls: {{insecure_skip_verify: true}}, {}}}", retry_quickly());
    assert!(delivers(&skip, || vendor.accepted_spans().len() == 4), "insecure_skip_verify accepts it");

    let mtls = Vendor::start_tls(&c.server_cert, &c.server_key, Some(&c.ca));
    let url = format!("https://localhost:{}", mtls.port);
    let with_cert = format!(
        "otlphttp/v: {{endpoint: \"{url}\", tls: {{ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\"}}, {}}}",
        p(&c.ca),
        p(&c.client_cert),
        p(&c.client_key),
        retry_quickly()
    );
    assert!(delivers(&with_cert, || mtls.accepted_spans().len() == 2), "mutual TLS with a client certificate");
    let without_cert =
        format!("otlphttp/v: {{endpoint: \"{url}\", tls: {{ca_file: \"{}\"}}, {}}}", p(&c.ca), retry_quickly());
    assert!(!delivers(&without_cert, || mtls.accepted_spans().len() > 2), "no client certificate, no delivery");
}

#[test]
fn grpc_over_tls_and_mutual_tls_to_grpcio() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let p = |x: &Path| x.display().to_string();
    let sink = |client_ca: Option<&Path>| {
        let port = free_port();
        let out = dir.path().join(format!("sink-{port}.jsonl"));
        let mut cmd = Command::new(&python);
        cmd.arg(repo().join("tests/peers/python/otlp_sink.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .arg("--tls-cert")
            .arg(&c.server_cert)
            .arg("--tls-key")
            .arg(&c.server_key);
        if let Some(ca) = client_ca {
            cmd.arg("--client-ca").arg(ca);
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        (child, port, out)
    };
    let spans_in =
        |out: &Path| json_lines(out).iter().map(|l| l["spans"].as_array().map_or(0, Vec::len)).sum::<usize>();

    let (mut tls_child, port, out) = sink(None);
    // A bare host:port means TLS; the name to check is overridden to the certificate's.
    let exporter = format!(
        "otlp/j: {{endpoint: \"127.0.0.1:{port}\", tls: {{ca_file: \"{}\", server_name_override: localhost}}, {}}}",
        p(&c.ca),
        retry_quickly()
    );
    assert!(delivers(&exporter, || spans_in(&out) == 2), "gRPC over TLS");
    let plaintext = format!("otlp/j: {{endpoint: \"127.0.0.1:{port}\", tls: {{insecure: true}}, {}}}", retry_quickly());
    assert!(!delivers(&plaintext, || spans_in(&out) > 2), "plaintext to a TLS server fails");
    let _ = tls_child.kill();
    let _ = tls_child.wait();

    let (mut mtls_child, port, out) = sink(Some(&c.ca));
    let exporter = format!(
        "otlp/j: {{endpoint: \"https://localhost:{port}\", tls: {{ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\"}}, {}}}",
        p(&c.ca),
        p(&c.client_cert),
        p(&c.client_key),
        retry_quickly()
    );
    assert!(delivers(&exporter, || spans_in(&out) == 2), "gRPC with mutual TLS");
    let no_cert = format!(
        "otlp/j: {{endpoint: \"https://localhost:{port}\", tls: {{ca_file: \"{}\"}}, {}}}",
        p(&c.ca),
        retry_quickly()
    );
    assert!(!delivers(&no_cert, || spans_in(&out) > 2), "no client certificate, no delivery");
    let _ = mtls_child.kill();
    let _ = mtls_child.wait();
}
