//! Credentials and tenant headers on the way out, seen by the backend: the grpcio OTLP sink
//! (tests/peers/python/otlp_sink.py, standing in for Jaeger/Tempo, which cannot be installed
//! here) records every request's metadata.
//!
//! - A client's tenant header, kept by the receiver's `include_metadata`, reaches the backend as
//!   `X-Scope-OrgID` through `headers_setter`, and the batch processor's `metadata_keys` never
//!   puts two tenants' spans in one request — with two real Python SDK clients sending at once.
//! - `bearertokenauth`, `basicauth` (`client_auth`) and `oauth2client` set each request's
//!   `authorization`; the OAuth2 token comes from an in-test token endpoint (client-credentials
//!   grant, checked as RFC 6749 says), is cached, and is fetched again before it expires.

mod common;

use base64::Engine;
use common::sink::Sink;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Python SDK sends `count` spans over gRPC with `headers`; its summary.
fn python_send(python: &Path, port: u16, count: usize, headers: &[&str], out: &Path) -> std::process::Child {
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/peers/python/otel_send.py"))
        .args(["--signal", "traces", "--protocol", "grpc", "--count", &count.to_string()])
        .args(["--endpoint", &format!("http://127.0.0.1:{port}"), "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for h in headers {
        cmd.args(["--header", h]);
    }
    cmd.spawn().expect("run otel_send.py")
}

fn span_ids_of(summary: &Path) -> BTreeSet<String> {
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    s["spans"].as_array().unwrap().iter().map(|sp| sp["span_id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_tenant_header_becomes_x_scope_orgid_and_no_request_mixes_tenants() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&python, dir.path(), &[]);
    let gw = Gateway::start(&format!(
        r#"
extensions:
  headers_setter:
    headers:
      - {{key: X-Scope-OrgID, from_context: x-tenant, default_value: anonymous}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}", include_metadata: true}}
processors:
  batch:
    send_batch_size: 1000
    timeout: 1s
    metadata_keys: [X-Tenant]
exporters:
  otlp/tempo:
    endpoint: 127.0.0.1:{port}
    tls: {{insecure: true}}
    auth: {{authenticator: headers_setter}}
service:
  extensions: [headers_setter]
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp/tempo]}}
"#,
        port = sink.port
    ));
    let tenants = ["acme", "globex"];
    let summaries: Vec<_> = tenants.iter().map(|t| dir.path().join(format!("{t}.json"))).collect();
    // Both tenants send at once, so their spans wait in the batch processor side by side.
    let children: Vec<_> = tenants
        .iter()
        .zip(&summaries)
        .map(|(t, s)| python_send(&python, gw.grpc, 30, &[&format!("x-tenant={t}")], s))
        .collect();
    let anonymous = dir.path().join("anonymous.json");
    let plain = python_send(&python, gw.grpc, 5, &[], &anonymous);
    for child in children.into_iter().chain([plain]) {
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    }
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for (t, s) in tenants.iter().zip(&summaries) {
        owner.extend(span_ids_of(s).into_iter().map(|id| (id, *t)));
    }
    owner.extend(span_ids_of(&anonymous).into_iter().map(|id| (id, "anonymous")));
    assert_eq!(owner.len(), 65);
    assert!(eventually(Duration::from_secs(15), || sink.span_ids().len() == 65), "{}", gw.log());
    for request in sink.lines() {
        let org = request["metadata"]["x-scope-orgid"].as_str().unwrap_or("(none)").to_string();
        let ids: Vec<&str> = request["span_ids"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        for id in &ids {
            assert_eq!(owner.get(*id).copied(), Some(org.as_str()), "span {id} went out under X-Scope-OrgID {org}");
        }
        // Only what headers_setter set goes out: the client's own tenant header stays behind.
        assert!(request["metadata"].get("x-tenant").is_none(), "{request}");
    }
}

/// An OAuth2 token endpoint for the test (client-credentials grant; no OAuth2 server can be
/// installed here): checks the client's Basic credentials and the form, and issues `tok-1`,
/// `tok-2`, … each valid for `lifetime` seconds.
struct TokenEndpoint {
    port: u16,
    issued: Arc<Mutex<Vec<String>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    fn start(lifetime: u64) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (issued, problems) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (i, p) = (issued.clone(), problems.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let Some(req) = read_request(&mut reader) else { continue };
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("switchyard-client:s3cr%2Fclient")
                );
                let body = String::from_utf8_lossy(&req.body).to_string();
                let mut problem = Vec::new();
                if !req.line.starts_with("POST /oauth/token ") {
                    problem.push(format!("request line {}", req.line.trim()));
                }
                if req.header("authorization").as_deref() != Some(want.as_str()) {
                    problem.push(format!("client credentials {:?}", req.header("authorization")));
                }
                if req.header("content-type").as_deref() != Some("application/x-www-form-urlencoded") {
                    problem.push("content type".into());
                }
                for part in ["grant_type=client_credentials", "scope=traces.write+traces.admin", "audience=tempo"] {
                    if !body.split('&').any(|p| p == part) {
                        problem.push(format!("form {body} lacks {part}"));
                    }
                }
                let mut conn = conn;
                if !problem.is_empty() {
                    p.lock().unwrap().extend(problem);
                    let answer = r#"{"error":"invalid_client"}"#;
                    let _ = write!(
                        conn,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    continue;
                }
                let token = {
                    let mut issued = i.lock().unwrap();
                    let t = format!("tok-{}", issued.len() + 1);
                    issued.push(t.clone());
                    t
                };
                let answer = format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{lifetime}}}"#);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        TokenEndpoint { port, issued, problems }
    }
}

#[test]
fn exporters_send_bearer_basic_and_oauth2_credentials_and_refresh_the_token_before_it_expires() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (bearer_sink, basic_sink, oauth_sink) = (
        Sink::start(&python, dir.path(), &[]),
        Sink::start(&python, dir.path(), &[]),
        Sink::start(&python, dir.path(), &[]),
    );
    let tokens = TokenEndpoint::start(4);
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, "s3cr/client\n").unwrap();
    let gw = Gateway::start(&format!(
        r#"
extensions:
  bearertokenauth/out:
    token: s3cr-vendor-token
  basicauth/out:
    client_auth: {{username: shipper, password: s3cr-shipper-pass}}
  oauth2client:
    client_id: switchyard-client
    client_secret_file: {secret}
    token_url: http://127.0.0.1:{token_port}/oauth/token
    scopes: [traces.write, traces.admin]
    endpoint_params: {{audience: tempo}}
    timeout: 2s
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}"}}
exporters:
  otlp/bearer: {{endpoint: "127.0.0.1:{b}", tls: {{insecure: true}}, auth: {{authenticator: bearertokenauth/out}}}}
  otlp/basic: {{endpoint: "127.0.0.1:{s}", tls: {{insecure: true}}, auth: {{authenticator: basicauth/out}}}}
  otlp/oauth: {{endpoint: "127.0.0.1:{o}", tls: {{insecure: true}}, auth: {{authenticator: oauth2client}}}}
service:
  extensions: [bearertokenauth/out, basicauth/out, oauth2client]
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp/bearer, otlp/basic, otlp/oauth]}}
"#,
        secret = secret_file.display(),
        token_port = tokens.port,
        b = bearer_sink.port,
        s = basic_sink.port,
        o = oauth_sink.port,
    ));
    let send = |name: &str| {
        let out = dir.path().join(format!("{name}.json"));
        let done = python_send(&python, gw.grpc, 3, &[], &out).wait_with_output().unwrap();
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    };
    let authorization = |sink: &Sink| -> Vec<String> {
        sink.lines().iter().filter_map(|l| l["metadata"]["authorization"].as_str().map(str::to_string)).collect()
    };
    // Three sends in quick succession: one token serves them all.
    for i in 0..3 {
        send(&format!("first-{i}"));
    }
    assert!(eventually(Duration::from_secs(10), || oauth_sink.span_ids().len() == 9), "{}", gw.log());
    assert!(
        eventually(Duration::from_secs(10), || bearer_sink.span_ids().len() == 9 && basic_sink.span_ids().len() == 9)
    );
    assert!(
        authorization(&bearer_sink).iter().all(|a| a == "Bearer s3cr-vendor-token"),
        "{:?}",
        authorization(&bearer_sink)
    );
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("shipper:s3cr-shipper-pass"));
    assert!(authorization(&basic_sink).iter().all(|a| *a == basic), "{:?}", authorization(&basic_sink));
    assert!(authorization(&oauth_sink).iter().all(|a| a == "Bearer tok-1"), "{:?}", authorization(&oauth_sink));
    assert_eq!(tokens.issued.lock().unwrap().len(), 1, "the token is cached");

    // The token lives 4 s and is fetched again at half its life (expiry_buffer is 5m by
    // default, more than the life): after 2.5 s the next request carries a new one.
    std::thread::sleep(Duration::from_millis(2500));
    send("later");
    assert!(eventually(Duration::from_secs(10), || oauth_sink.span_ids().len() == 12), "{}", gw.log());
    assert_eq!(authorization(&oauth_sink).last().map(String::as_str), Some("Bearer tok-2"));
    assert!(tokens.problems.lock().unwrap().is_empty(), "{:?}", tokens.problems.lock().unwrap());
    assert!(!gw.log().contains("s3cr"), "{}", gw.log());
}

#[test]
fn headers_from_the_context_and_a_persistent_queue_are_refused_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
extensions:
  file_storage: {{directory: {dir}}}
  headers_setter:
    headers: [{{key: X-Scope-OrgID, from_context: x-tenant}}]
receivers:
  otlp:
    protocols:
      grpc: {{include_metadata: true}}
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    tls: {{insecure: true}}
    sending_queue: {{storage: file_storage}}
    auth: {{authenticator: headers_setter}}
service:
  extensions: [file_storage, headers_setter]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("exporters.otlp.auth.authenticator") && text.contains("tenants would mix"), "{text}");
}
