//! Secrets stay secret: one configuration puts a distinct fake secret in every secret-bearing key
//! of every exporter and receiver that has one (headers, API keys, basic auth user names and
//! passwords, bearer tokens, URL user info), and switchyard is taken through `validate` (valid
//! and invalid variants), the `Debug` form of the loaded configuration, a run at
//! `service.telemetry.logs.level: debug` with connection failures (dead ports) and auth failures
//! (in-test servers answering 401 and 403), and a scrape of its self-metrics. No secret may
//! appear anywhere a user can read. Every secret contains `s3cr`, which nothing else in the
//! output does, so a partial leak is caught too; the Basic credentials switchyard builds are
//! checked in their base64 form as well.
//!
//! The in-test servers (HTTP/1.1, and HTTP/2 for gRPC) also check what arrived: URL user info as a correct
//! `Authorization: Basic` header (percent-decoded, as Go's HTTP client sends it for the
//! collector) and never in the request line, an explicitly configured Authorization header
//! winning over URL user info, and the configured credentials of each exporter. Their refusals
//! quote the credentials they got, as some backends do, so the logged reasons must not.

mod common;

use base64::Engine;
use common::*;
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a leak looks like: every fake secret contains it.
const MARK: &str = "s3cr";

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// The (user, decoded password) pairs that travel as Basic credentials, for the base64 check.
const BASIC_PAIRS: &[(&str, &str)] = &[
    ("s3cr-oh-user", "s3cr-oh-pass/1"),
    ("s3cr-ohx-user", "s3cr-ohx-pass"),
    ("s3cr-ohdead-user", "s3cr-ohdead-pass"),
    ("s3cr-grpc-user", "s3cr-grpc-pass"),
    ("s3cr-grpcauth-user", "s3cr-grpcauth-pass"),
    ("s3cr-bo-user", "s3cr-bo-pass"),
    ("s3cr-loki-user", "s3cr-loki-pass@2"),
    ("s3cr-es-user", "s3cr-es-pass"),
    ("s3cr-esurl-user", "s3cr-esurl-pass"),
    ("s3cr-churl-user", "s3cr-churl-pass"),
    ("s3cr-prw-user", "s3cr-prw-pass"),
    ("s3cr-prwdead-user", "s3cr-prwdead-pass"),
    ("s3cr-scrape-user", "s3cr-scrape-pass"),
];

/// An in-test backend that answers every request with `status`, after checking that the
/// request line carries no secret and that the headers hold what `expect` lists.
struct AuthServer {
    port: u16,
    seen: Arc<Mutex<usize>>,
    problems: Arc<Mutex<Vec<String>>>,
}

fn auth_server(name: &'static str, status: u16, expect: Vec<(&'static str, String)>) -> AuthServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(0));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let (s2, p2) = (seen.clone(), problems.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (s3, p3, expect) = (s2.clone(), p2.clone(), expect.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                while let Some(req) = read_request(&mut reader) {
                    let mut p = p3.lock().unwrap();
                    if req.line.contains(MARK) || req.line.contains('@') {
                        p.push(format!("{name}: credentials in the request line {:?}", req.line));
                    }
                    if req.header("host").is_some_and(|h| h.contains(MARK) || h.contains('@')) {
                        p.push(format!("{name}: credentials in the Host header"));
                    }
                    for (header, want) in &expect {
                        let got = req.header(header);
                        if got.as_deref() != Some(want.as_str()) {
                            p.push(format!("{name}: header {header} was {got:?}, expected {want:?}"));
                        }
                    }
                    drop(p);
                    *s3.lock().unwrap() += 1;
                    let reason = if status == 401 { "Unauthorized" } else { "Forbidden" };
                    // As some backends do: the refusal quotes the credentials it refused.
                    let quoted: Vec<String> = expect.iter().filter_map(|(h, _)| req.header(h)).collect();
                    let body = format!("access denied for {}\n", quoted.join(" and "));
                    let answer = format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    AuthServer { port, seen, problems }
}

/// An in-test gRPC backend (cleartext HTTP/2) that refuses every export with UNAUTHENTICATED,
/// after checking `:authority` and the metadata as `auth_server` checks a request.
fn grpc_auth_server(name: &'static str, expect: Vec<(&'static str, String)>) -> AuthServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(0));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let (s2, p2) = (seen.clone(), problems.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let (s3, p3, expect) = (s2.clone(), p2.clone(), expect.clone());
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let mut p = p3.lock().unwrap();
                    let uri = req.uri().to_string();
                    if uri.contains(MARK) || uri.contains('@') {
                        p.push(format!("{name}: credentials in :authority or :path {uri:?}"));
                    }
                    for (header, want) in &expect {
                        let got = req.headers().get(*header).and_then(|v| v.to_str().ok());
                        if got != Some(want.as_str()) {
                            p.push(format!("{name}: metadata {header} was {got:?}, expected {want:?}"));
                        }
                    }
                    *s3.lock().unwrap() += 1;
                    let quoted: Vec<&str> =
                        expect.iter().filter_map(|(h, _)| req.headers().get(*h)?.to_str().ok()).collect();
                    let answer = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "16")
                        .header("grpc-message", format!("bad credentials {}", quoted.join(" and ")))
                        .body(http_body_util::Empty::<bytes::Bytes>::new());
                    async move { answer }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
    });
    AuthServer { port, seen, problems }
}

/// A port nothing listens on (connection refused).
fn dead_port() -> u16 {
    free_port()
}

struct Ports {
    http: u16,
    metrics: u16,
    oh: u16,
    ohx: u16,
    loki: u16,
    es: u16,
    esurl: u16,
    ch: u16,
    churl: u16,
    prw: u16,
    grpc: u16,
    scrape_basic: u16,
    scrape_bearer: u16,
    dead: u16,
    secured: u16,
    bt_out: u16,
    bo_out: u16,
    hs_out: u16,
}

fn config(p: &Ports) -> String {
    let retry = "retry_on_failure: {initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 1s}";
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  prometheus:
    config:
      scrape_configs:
        - job_name: basic
          scrape_interval: 1s
          basic_auth: {{username: s3cr-scrape-user, password: s3cr-scrape-pass}}
          static_configs: [{{targets: ["127.0.0.1:{scrape_basic}"]}}]
        - job_name: authz
          scrape_interval: 1s
          authorization: {{type: Bearer, credentials: s3cr-scrape-authz}}
          static_configs: [{{targets: ["127.0.0.1:{dead}"]}}]
        - job_name: bearer
          scrape_interval: 1s
          bearer_token: s3cr-scrape-bearer
          static_configs: [{{targets: ["127.0.0.1:{scrape_bearer}"]}}]
  otlp/secured:
    protocols:
      http:
        endpoint: 127.0.0.1:{secured}
        auth: {{authenticator: bearertokenauth/in}}
extensions:
  bearertokenauth/in:
    tokens: [s3cr-in-token, s3cr-in-token2]
  basicauth/in:
    htpasswd: {{inline: "s3cr-in-user:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}}
  bearertokenauth/out:
    token: s3cr-bt-out
  basicauth/out:
    client_auth: {{username: s3cr-bo-user, password: s3cr-bo-pass}}
  headers_setter:
    headers:
      - {{key: x-api, value: s3cr-hs-value}}
      - {{key: x-tenant, from_context: tenant, default_value: s3cr-hs-default}}
  oauth2client:
    client_id: oauth-id
    client_secret: s3cr-oauth-secret
    token_url: http://127.0.0.1:{dead}/token
    timeout: 1s
exporters:
  otlphttp/bearer-ext:
    endpoint: http://127.0.0.1:{bt_out}
    auth: {{authenticator: bearertokenauth/out}}
    {retry}
  otlphttp/basic-ext:
    endpoint: http://127.0.0.1:{bo_out}
    auth: {{authenticator: basicauth/out}}
    {retry}
  otlphttp/headers-ext:
    endpoint: http://127.0.0.1:{hs_out}
    auth: {{authenticator: headers_setter}}
    {retry}
  otlphttp/oauth-ext:
    endpoint: http://127.0.0.1:{dead}
    auth: {{authenticator: oauth2client}}
    {retry}
  otlphttp/auth:
    endpoint: http://s3cr-oh-user:s3cr-oh-pass%2F1@127.0.0.1:{oh}
    headers: {{x-api-key: s3cr-oh-apikey}}
    {retry}
  otlphttp/explicit:
    endpoint: http://s3cr-ohx-user:s3cr-ohx-pass@127.0.0.1:{ohx}
    headers: {{Authorization: "Bearer s3cr-ohx-bearer"}}
    {retry}
  otlphttp/dead:
    endpoint: http://s3cr-ohdead-user:s3cr-ohdead-pass@127.0.0.1:{dead}
    headers: {{x-api-key: s3cr-ohdead-apikey}}
    {retry}
  otlp/dead:
    endpoint: http://s3cr-grpc-user:s3cr-grpc-pass@127.0.0.1:{dead}
    headers: {{x-api-key: s3cr-grpc-apikey}}
    timeout: 1s
    {retry}
  otlp/auth:
    endpoint: http://s3cr-grpcauth-user:s3cr-grpcauth-pass@127.0.0.1:{grpc}
    headers: {{x-api-key: s3cr-grpcauth-apikey}}
    {retry}
  loki/auth:
    endpoint: http://s3cr-loki-user:s3cr-loki-pass%402@127.0.0.1:{loki}/loki/api/v1/push
    headers: {{x-api-key: s3cr-loki-apikey}}
    {retry}
  elasticsearch/auth:
    endpoints: [http://127.0.0.1:{es}]
    user: s3cr-es-user
    password: s3cr-es-pass
    {retry}
  elasticsearch/url:
    endpoints: [http://s3cr-esurl-user:s3cr-esurl-pass@127.0.0.1:{esurl}]
    {retry}
  elasticsearch/apikey:
    endpoints: [http://127.0.0.1:{dead}]
    api_key: s3cr-es-apikey
    {retry}
  clickhouse/auth:
    endpoint: http://127.0.0.1:{ch}
    username: s3cr-ch-user
    password: s3cr-ch-pass
    {retry}
  clickhouse/url:
    endpoint: http://s3cr-churl-user:s3cr-churl-pass@127.0.0.1:{churl}
    {retry}
  prometheusremotewrite/auth:
    endpoint: http://s3cr-prw-user:s3cr-prw-pass@127.0.0.1:{prw}/api/v1/write
    headers: {{x-api-key: s3cr-prw-apikey}}
    {retry}
  prometheusremotewrite/dead:
    endpoint: http://s3cr-prwdead-user:s3cr-prwdead-pass@127.0.0.1:{dead}/api/v1/write
    headers: {{Authorization: "Bearer s3cr-prwdead-bearer"}}
    {retry}
service:
  extensions: [bearertokenauth/in, basicauth/in, bearertokenauth/out, basicauth/out, headers_setter, oauth2client]
  telemetry:
    logs: {{level: debug}}
    metrics: {{address: 127.0.0.1:{metrics}}}
  pipelines:
    traces:
      receivers: [otlp, otlp/secured]
      exporters: [otlphttp/auth, otlphttp/explicit, otlphttp/dead, otlp/dead, otlp/auth, otlphttp/bearer-ext, otlphttp/basic-ext, otlphttp/headers-ext, otlphttp/oauth-ext]
    metrics:
      receivers: [otlp, prometheus]
      exporters: [otlphttp/auth, prometheusremotewrite/auth, prometheusremotewrite/dead]
    logs:
      receivers: [otlp]
      exporters: [otlphttp/dead, loki/auth, elasticsearch/auth, elasticsearch/url, elasticsearch/apikey, clickhouse/auth, clickhouse/url]
"#,
        http = p.http,
        metrics = p.metrics,
        oh = p.oh,
        ohx = p.ohx,
        loki = p.loki,
        es = p.es,
        esurl = p.esurl,
        ch = p.ch,
        churl = p.churl,
        prw = p.prw,
        grpc = p.grpc,
        scrape_basic = p.scrape_basic,
        scrape_bearer = p.scrape_bearer,
        dead = p.dead,
        secured = p.secured,
        bt_out = p.bt_out,
        bo_out = p.bo_out,
        hs_out = p.hs_out,
    )
}

/// Notes in `leaks` every line of `text` (from `what`) that holds a secret.
fn find_secrets(leaks: &mut Vec<String>, what: &str, text: &str) {
    let mut needles: Vec<String> = vec![MARK.to_string()];
    for (u, p) in BASIC_PAIRS {
        needles.push(basic(u, p).trim_start_matches("Basic ").to_string());
    }
    for line in text.lines().filter(|l| needles.iter().any(|n| l.contains(n.as_str()))) {
        let line: String = line.chars().take(400).collect();
        leaks.push(format!("in {what}: {line}"));
    }
}

/// Runs `switchyard validate` on `yaml`: (exit code, stdout + stderr).
fn validate(dir: &Path, yaml: &str) -> (i32, String) {
    let path = dir.join("validate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run switchyard validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn post(port: u16, path: &str, json: &serde_json::Value) {
    let r = http_request("POST", port, path, &[("Content-Type", "application/json")], json.to_string().as_bytes())
        .expect("post to the OTLP receiver");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
}

#[test]
fn no_secret_reaches_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let oh = auth_server(
        "otlphttp/auth",
        401,
        vec![("authorization", basic("s3cr-oh-user", "s3cr-oh-pass/1")), ("x-api-key", "s3cr-oh-apikey".into())],
    );
    let ohx = auth_server("otlphttp/explicit", 403, vec![("authorization", "Bearer s3cr-ohx-bearer".into())]);
    let loki = auth_server(
        "loki/auth",
        401,
        vec![("authorization", basic("s3cr-loki-user", "s3cr-loki-pass@2")), ("x-api-key", "s3cr-loki-apikey".into())],
    );
    let es = auth_server("elasticsearch/auth", 403, vec![("authorization", basic("s3cr-es-user", "s3cr-es-pass"))]);
    let esurl =
        auth_server("elasticsearch/url", 401, vec![("authorization", basic("s3cr-esurl-user", "s3cr-esurl-pass"))]);
    let ch = auth_server(
        "clickhouse/auth",
        403,
        vec![("x-clickhouse-user", "s3cr-ch-user".into()), ("x-clickhouse-key", "s3cr-ch-pass".into())],
    );
    let churl =
        auth_server("clickhouse/url", 401, vec![("authorization", basic("s3cr-churl-user", "s3cr-churl-pass"))]);
    let prw = auth_server(
        "prometheusremotewrite/auth",
        401,
        vec![("authorization", basic("s3cr-prw-user", "s3cr-prw-pass")), ("x-api-key", "s3cr-prw-apikey".into())],
    );
    let grpc = grpc_auth_server(
        "otlp/auth",
        vec![
            ("authorization", basic("s3cr-grpcauth-user", "s3cr-grpcauth-pass")),
            ("x-api-key", "s3cr-grpcauth-apikey".into()),
        ],
    );
    let scrape_basic = auth_server(
        "prometheus scrape basic_auth",
        401,
        vec![("authorization", basic("s3cr-scrape-user", "s3cr-scrape-pass"))],
    );
    let scrape_bearer =
        auth_server("prometheus scrape bearer_token", 403, vec![("authorization", "Bearer s3cr-scrape-bearer".into())]);
    let bt_out = auth_server("otlphttp/bearer-ext", 401, vec![("authorization", "Bearer s3cr-bt-out".into())]);
    let bo_out = auth_server("otlphttp/basic-ext", 401, vec![("authorization", basic("s3cr-bo-user", "s3cr-bo-pass"))]);
    let hs_out = auth_server(
        "otlphttp/headers-ext",
        403,
        vec![("x-api", "s3cr-hs-value".into()), ("x-tenant", "s3cr-hs-default".into())],
    );
    let servers = [
        &oh,
        &ohx,
        &loki,
        &es,
        &esurl,
        &ch,
        &churl,
        &prw,
        &grpc,
        &scrape_basic,
        &scrape_bearer,
        &bt_out,
        &bo_out,
        &hs_out,
    ];
    let ports = Ports {
        http: free_port(),
        metrics: free_port(),
        oh: oh.port,
        ohx: ohx.port,
        loki: loki.port,
        es: es.port,
        esurl: esurl.port,
        ch: ch.port,
        churl: churl.port,
        prw: prw.port,
        grpc: grpc.port,
        scrape_basic: scrape_basic.port,
        scrape_bearer: scrape_bearer.port,
        dead: dead_port(),
        secured: free_port(),
        bt_out: bt_out.port,
        bo_out: bo_out.port,
        hs_out: hs_out.port,
    };
    let cfg = config(&ports);
    // Every stage runs before anything is asserted, so a failure lists every leak at once.
    let mut leaks = Vec::new();

    // The Debug form of the loaded configuration.
    let loaded = switchyard::model::load_sources(&[("secrets.yaml".into(), cfg.clone())]).expect("valid configuration");
    find_secrets(&mut leaks, "the Debug output of the configuration", &format!("{loaded:?}"));

    // `validate`: the valid configuration, then variants that fail on a secret-bearing key.
    let (code, out) = validate(dir.path(), &cfg);
    assert_eq!(code, 0, "{out}");
    find_secrets(&mut leaks, "validate of the valid configuration", &out);
    let certs = common::certs::generate(dir.path());
    let tls_with_key = |key: &str| {
        format!(
            "      http:\n        tls: {{cert_file: \"{}\", key_pem: \"{key}\"}}\n        endpoint: 127.0.0.1:",
            certs.server_cert.display()
        )
    };
    let bad_key_pem = tls_with_key("-----BEGIN PRIVATE KEY-----\\ns3cr-tls-key-pem\\n-----END PRIVATE KEY-----\\n");
    // A real key with a secret in a PEM header line (which parsers skip), not this certificate's.
    let other_key = std::fs::read_to_string(&certs.client_key).unwrap();
    let wrong_key_pem =
        tls_with_key(&other_key.replacen("-----\n", "-----\ns3cr-tls-key-pem: x\n", 1).replace('\n', "\\n"));
    let invalid = [
        ("http://s3cr-oh-user:s3cr-oh-pass%2F1@127.0.0.1", "http://s3cr-oh-user:s3cr-oh-pass%2F1@127.0.0 .1"),
        ("http://s3cr-ohx-user:s3cr-ohx-pass@127.0.0.1", "ftp://s3cr-ohx-user:s3cr-ohx-pass@127.0.0.1"),
        (
            "endpoint: http://s3cr-grpc-user",
            "tls: {server_name_override: example.com}\n    endpoint: http://s3cr-grpc-user",
        ),
        ("http://s3cr-loki-user:s3cr-loki-pass%402@127.0.0.1", "http://s3cr-loki-user:s3cr-loki-pass%402@127 .0.0.1"),
        ("http://s3cr-esurl-user:s3cr-esurl-pass@127.0.0.1", "ftp://s3cr-esurl-user:s3cr-esurl-pass@127.0.0.1"),
        ("http://s3cr-churl-user:s3cr-churl-pass@127.0.0.1", "http://s3cr-churl-user:s3cr-churl-pass@127 .0.0.1"),
        ("http://s3cr-prw-user:s3cr-prw-pass@127.0.0.1", "ftp://s3cr-prw-user:s3cr-prw-pass@127.0.0.1"),
        ("targets: [\"127.0.0.1:", "targets: [\"s3cr-target-user:s3cr-target-pass@127.0.0.1:"),
        ("x-api-key: s3cr-oh-apikey", "x-api-key: \"s3cr-oh-apikey\\n\""),
        ("password: s3cr-es-pass", "password: [s3cr-es-pass]"),
        ("s3cr-prw-pass@127.0.0.1", "s3cr-prw-pass%zz@127.0.0.1"),
        // A receiver's inline TLS key that does not parse, and one that parses but is not the
        // certificate's.
        ("      http:\n        endpoint: 127.0.0.1:", &bad_key_pem),
        ("      http:\n        endpoint: 127.0.0.1:", &wrong_key_pem),
    ];
    for (from, to) in invalid {
        let to: &str = to;
        assert!(cfg.contains(from), "the variant's anchor {from:?} is in the configuration");
        let (code, out) = validate(dir.path(), &cfg.replacen(from, to, 1));
        if code == 0 {
            leaks.push(format!("validate accepted {to:?}, so this variant shows nothing"));
        }
        find_secrets(&mut leaks, &format!("validate with {to:?}"), &out);
    }

    // A run at debug level: every exporter fails, by connection or by authentication.
    let cfg_path = dir.path().join("run.yaml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("--config")
        .arg(&cfg_path)
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start switchyard");
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let ready = eventually(Duration::from_secs(20), || stderr().contains("switchyard is running"));
    if !ready {
        let _ = child.kill();
        panic!("switchyard did not start:\n{}", stderr());
    }
    post(
        ports.http,
        "/v1/traces",
        &serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "s",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}),
    );
    post(
        ports.http,
        "/v1/metrics",
        &serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "m", "gauge": {"dataPoints": [{"asDouble": 1.5, "timeUnixNano": "1000000000"}]}}]}]}]}),
    );
    post(
        ports.http,
        "/v1/logs",
        &serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": "1000000000", "body": {"stringValue": "hello"}}]}]}]}),
    );
    // A wrong token at the secured receiver: refused (401), and the log never holds it.
    let refused = http_request(
        "POST",
        ports.secured,
        "/v1/traces",
        &[("Content-Type", "application/json"), ("Authorization", "Bearer s3cr-in-wrong")],
        b"{}",
    )
    .map(|r| r.status)
    .unwrap_or(0);
    let all_asked = eventually(Duration::from_secs(20), || servers.iter().all(|s| *s.seen.lock().unwrap() > 0));
    // Let the retries against the dead port run out, so their last errors are logged too.
    let dropped = eventually(Duration::from_secs(20), || {
        let log = stderr();
        ["otlphttp/dead", "otlp/dead", "prometheusremotewrite/dead", "elasticsearch/apikey", "otlphttp/oauth-ext"]
            .iter()
            .all(|e| log.lines().any(|l| l.contains(e) && l.contains("data dropped")))
    });
    let metrics = http_request("GET", ports.metrics, "/metrics", &[], b"").map(|r| r.text()).unwrap_or_default();
    signal(child.id(), "TERM");
    let _ = eventually(Duration::from_secs(30), || child.try_wait().ok().flatten().is_some());
    let _ = child.kill();
    let _ = child.wait();
    let (out, err) = (std::fs::read_to_string(&stdout_path).unwrap_or_default(), stderr());

    assert!(all_asked, "every in-test backend was asked: {:?}\n{err}", servers.map(|s| *s.seen.lock().unwrap()));
    assert!(dropped, "the exporters of dead endpoints gave up and said so:\n{err}");
    assert_eq!(refused, 401, "a wrong token is refused");
    for refusal in ["401 Unauthorized", "403 Forbidden", "gRPC Unauthenticated"] {
        assert!(err.contains(refusal), "the auth failures were logged ({refusal}):\n{err}");
    }
    assert!(metrics.contains("otelcol_exporter_send_failed"), "self-metrics were scraped:\n{metrics}");
    let problems: Vec<String> = servers.iter().flat_map(|s| s.problems.lock().unwrap().clone()).collect();
    find_secrets(&mut leaks, "stdout", &out);
    find_secrets(&mut leaks, "stderr (debug logs)", &err);
    find_secrets(&mut leaks, "self-metrics", &metrics);
    let mut problems: Vec<&String> = problems.iter().collect();
    problems.dedup();
    assert!(
        leaks.is_empty() && problems.is_empty(),
        "{} lines with secrets:\n{}\n\nwhat the backends got wrong:\n{}",
        leaks.len(),
        leaks.join("\n"),
        problems.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("\n")
    );
}
