//! TLS on the receivers, with certificates the test generates (rcgen): the real Python SDK
//! sends over OTLP/gRPC (channel credentials) and OTLP/HTTP (`certificate_file`) to a gateway
//! serving TLS; a client trusting another CA, a plaintext client and (with `client_ca_file`) a
//! client without a certificate deliver nothing and are counted; a certificate rotated on disk
//! is served after `reload_interval` without a restart. Every other TCP listener (Jaeger gRPC and
//! Thrift HTTP, Zipkin, remote write, Fluent Forward, syslog) serves TLS the same way.

mod common;

use common::certs::{Certs, generate};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn p(x: &Path) -> String {
    x.display().to_string()
}

fn trusting(ca: &Path) -> Vec<String> {
    vec!["--ca-file".into(), p(ca)]
}

fn spans_written(gw: &Gateway) -> usize {
    span_names(&gw.path("out.jsonl")).len()
}

fn handshake_failures(gw: &Gateway, port: u16) -> f64 {
    gw.metric("switchyard_listener_tls_handshake_failures_total", &[("listener", &format!("127.0.0.1:{port}"))])
}

#[test]
fn the_python_sdk_sends_over_tls_and_a_rotated_certificate_is_served_without_a_restart() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let first: Certs = generate(&a);
    let second: Certs = generate(&b);
    let (live_cert, live_key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&first.server_cert, &live_cert).unwrap();
    std::fs::copy(&first.server_key, &live_key).unwrap();
    let tls = format!("{{cert_file: \"{}\", key_file: \"{}\", reload_interval: 1s}}", p(&live_cert), p(&live_key));
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}", tls: {tls}}}
      http: {{endpoint: "127.0.0.1:{{http}}", tls: {tls}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#
    ));
    let grpc = format!("https://localhost:{}", gw.grpc);
    let http = format!("https://localhost:{}", gw.http);
    let out = dir.path().join("summary.json");

    let (ok, err) = python_try_send(&python, "grpc", &grpc, &trusting(&first.ca), &out);
    assert!(ok, "gRPC over TLS: {err}\n{}", gw.log());
    let (ok, err) = python_try_send(&python, "http-protobuf", &http, &trusting(&first.ca), &out);
    assert!(ok, "HTTP over TLS: {err}\n{}", gw.log());
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 4), "{}", gw.log());

    // A client trusting another CA, and one speaking plaintext, deliver nothing.
    let before = handshake_failures(&gw, gw.grpc);
    let (ok, _) = python_try_send(&python, "grpc", &grpc, &trusting(&first.other_ca), &out);
    assert!(!ok, "a client that does not trust the server's CA must fail");
    let (ok, _) = python_try_send(&python, "grpc", &format!("http://127.0.0.1:{}", gw.grpc), &[], &out);
    assert!(!ok, "a plaintext client must fail");
    let (ok, _) = python_try_send(&python, "http-protobuf", &format!("http://127.0.0.1:{}", gw.http), &[], &out);
    assert!(!ok, "a plaintext HTTP client must fail");
    assert!(handshake_failures(&gw, gw.grpc) >= before + 2.0, "failed handshakes are counted");
    assert!(handshake_failures(&gw, gw.http) >= 1.0);
    assert_eq!(spans_written(&gw), 4);

    // The certificate is replaced on disk: after reload_interval, the new one is served.
    std::fs::copy(&second.server_cert, &live_cert).unwrap();
    std::fs::copy(&second.server_key, &live_key).unwrap();
    let rotated = eventually(Duration::from_secs(15), || {
        python_try_send(&python, "http-protobuf", &http, &trusting(&second.ca), &out).0
    });
    assert!(rotated, "the rotated certificate is served without a restart\n{}", gw.log());
    let (ok, err) = python_try_send(&python, "grpc", &grpc, &trusting(&second.ca), &out);
    assert!(ok, "gRPC after rotation: {err}");
    let (ok, _) = python_try_send(&python, "grpc", &grpc, &trusting(&first.ca), &out);
    assert!(!ok, "the old CA no longer matches");
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 8), "{}", gw.log());
}

#[test]
fn with_client_ca_file_only_clients_with_a_certificate_get_in() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let tls = format!(
        "{{cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\", min_version: \"1.3\"}}",
        p(&c.server_cert),
        p(&c.server_key),
        p(&c.ca)
    );
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}", tls: {tls}}}
      http: {{endpoint: "127.0.0.1:{{http}}", tls: {tls}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#
    ));
    let out = dir.path().join("summary.json");
    let mut with_cert = trusting(&c.ca);
    with_cert.extend(["--client-cert".into(), p(&c.client_cert), "--client-key".into(), p(&c.client_key)]);
    for (protocol, port) in [("grpc", gw.grpc), ("http-protobuf", gw.http)] {
        let endpoint = format!("https://localhost:{port}");
        let (ok, err) = python_try_send(&python, protocol, &endpoint, &with_cert, &out);
        assert!(ok, "{protocol} with a client certificate: {err}\n{}", gw.log());
        let (ok, _) = python_try_send(&python, protocol, &endpoint, &trusting(&c.ca), &out);
        assert!(!ok, "{protocol} without a client certificate must fail");
        assert!(handshake_failures(&gw, port) >= 1.0, "{}", gw.log());
    }
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 4), "{}", gw.log());
    assert!(gw.log().contains("TLS handshake failed"), "the refusal is logged with its reason");
}

/// A TLS connection to `port` trusting `ca`, offering `alpn`; `None` if the handshake fails.
fn tls_connect(
    port: u16,
    ca: &Path,
    alpn: &[&[u8]],
) -> Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        if stream.conn.complete_io(&mut stream.sock).is_err() {
            return None;
        }
    }
    Some(stream)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().unwrap()
}

/// An HTTP/1.1 request over an established stream; the status code of the answer.
fn https_status(stream: &mut impl ReadWrite, path: &str, content_type: &str, body: &[u8]) -> u16 {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text}"))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Whether a plaintext client writing `bytes` is cut off without an answer.
fn plaintext_refused(port: u16, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    // A TLS server answers plaintext with at most a TLS alert, never with HTTP or an ack.
    !String::from_utf8_lossy(&raw).contains("HTTP/")
}

#[test]
fn every_tcp_listener_serves_tls_from_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let tls = format!("{{cert_file: \"{}\", key_file: \"{}\"}}", p(&c.server_cert), p(&c.server_key));
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{http}}"}}
  jaeger:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{port:jaeger_grpc}}", tls: {tls}}}
      thrift_http: {{endpoint: "127.0.0.1:{{port:jaeger_http}}", tls: {tls}}}
  zipkin: {{endpoint: "127.0.0.1:{{port:zipkin}}", tls: {tls}}}
  prometheusremotewrite: {{endpoint: "127.0.0.1:{{port:prw}}", tls: {tls}}}
  fluentforward: {{endpoint: "127.0.0.1:{{port:forward}}", tls: {tls}}}
  syslog: {{tcp: {{listen_address: "127.0.0.1:{{port:syslog}}", tls: {tls}}}, protocol: rfc5424}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
  file/logs: {{path: "{{dir}}/logs.jsonl"}}
  file/metrics: {{path: "{{dir}}/metrics.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp, jaeger, zipkin], exporters: [file]}}
    logs: {{receivers: [fluentforward, syslog], exporters: [file/logs]}}
    metrics: {{receivers: [prometheusremotewrite], exporters: [file/metrics]}}
"#
    ));

    // Zipkin over HTTPS: the span arrives.
    let zipkin = r#"[{"traceId":"0123456789abcdef0123456789abcdef","id":"0123456789abcdef","name":"over-tls","timestamp":1700000000000000,"duration":5}]"#;
    let mut s = tls_connect(gw.port("zipkin"), &c.ca, &[b"http/1.1"]).expect("Zipkin TLS handshake");
    assert_eq!(https_status(&mut s, "/api/v2/spans", "application/json", zipkin.as_bytes()), 202);
    assert!(eventually(Duration::from_secs(10), || span_names(&gw.path("out.jsonl")) == ["over-tls"]), "{}", gw.log());

    // Jaeger Thrift HTTP and remote write answer HTTP over TLS (an empty body is a client error).
    for (name, path, ctype) in
        [("jaeger_http", "/api/traces", "application/x-thrift"), ("prw", "/api/v1/write", "application/x-protobuf")]
    {
        let mut s = tls_connect(gw.port(name), &c.ca, &[b"http/1.1"]).unwrap_or_else(|| panic!("{name} handshake"));
        let status = https_status(&mut s, path, ctype, b"\x00garbage");
        assert!((400..500).contains(&status), "{name}: {status}");
    }

    // Jaeger gRPC negotiates HTTP/2 for gRPC clients.
    let s = tls_connect(gw.port("jaeger_grpc"), &c.ca, &[b"h2"]).expect("Jaeger gRPC handshake");
    assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));

    // Fluent Forward over TLS: a Message-mode event arrives.
    let mut s = tls_connect(gw.port("forward"), &c.ca, &[]).expect("Fluent Forward handshake");
    let event = rmpv::Value::Array(vec![
        "app.tls".into(),
        1_700_000_000u64.into(),
        rmpv::Value::Map(vec![("message".into(), "forwarded over tls".into())]),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &event).unwrap();
    s.write_all(&bytes).unwrap();
    s.flush().unwrap();
    // Syslog over TLS (RFC 5425 octet counting).
    let mut s2 = tls_connect(gw.port("syslog"), &c.ca, &[]).expect("syslog handshake");
    let msg = "<13>1 2024-01-01T00:00:00Z host app - - - syslog over tls";
    s2.write_all(format!("{} {msg}", msg.len()).as_bytes()).unwrap();
    s2.flush().unwrap();
    let logs = || std::fs::read_to_string(gw.path("logs.jsonl")).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || logs().contains("forwarded over tls")
            && logs().contains("syslog over tls")),
        "{}",
        gw.log()
    );
    drop((s, s2));

    // Plaintext gets nothing from any of them, and each refusal is counted by listener.
    for name in ["zipkin", "jaeger_http", "prw", "jaeger_grpc", "forward", "syslog"] {
        let port = gw.port(name);
        assert!(
            plaintext_refused(port, b"POST /api/v2/spans HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            "{name}"
        );
        assert!(eventually(Duration::from_secs(5), || handshake_failures(&gw, port) == 1.0), "{name}: {}", gw.log());
    }
    assert_eq!(span_names(&gw.path("out.jsonl")), ["over-tls"]);
}

#[test]
fn a_bad_certificate_fails_validate_and_start_without_printing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let c = generate(dir.path());
    let other = tempfile::tempdir().unwrap();
    let mismatched = generate(other.path());
    let config = dir.path().join("config.yaml");
    let key_pem = std::fs::read_to_string(&mismatched.server_key).unwrap();
    let indented: String = key_pem.lines().map(|l| format!("            {l}\n")).collect();
    std::fs::write(
        &config,
        format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
        tls:
          cert_file: {cert}
          key_pem: |
{indented}
exporters:
  debug:
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"#,
            port = free_port(),
            cert = p(&c.server_cert),
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let validate = Command::new(bin).args(["validate", "--config"]).arg(&config).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&validate.stdout), String::from_utf8_lossy(&validate.stderr));
    assert!(!validate.status.success(), "{text}");
    assert!(text.contains("receivers.otlp") && text.contains("tls"), "names the key: {text}");
    assert!(text.contains("do not go together"), "says what is wrong: {text}");
    let secret_line = key_pem.lines().nth(1).unwrap();
    assert!(!text.contains(secret_line), "the key never appears: {text}");
    let run = Command::new(bin).arg("--config").arg(&config).output().unwrap();
    assert!(!run.status.success());
    assert!(!String::from_utf8_lossy(&run.stderr).contains(secret_line));
}
