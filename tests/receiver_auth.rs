//! Authentication on the receivers, as clients meet it: the real Python SDK sends over TLS
//! (gRPC channel credentials, HTTP `certificate_file`) with a good bearer token, a wrong one and
//! none; Basic credentials checked against htpasswd; JWTs from an OpenID Connect provider the
//! test runs (an in-test HTTP server publishing discovery and a JWKS, with an ES256 key the test
//! makes). A refusal is 401 / UNAUTHENTICATED, admits nothing, is counted, and its log line never
//! holds the credential. The identity reaches processors as `auth.*`; a client cannot forge it
//! with an `auth.…` header. A reload that changes the token takes effect without a restart.

mod common;

use base64::Engine;
use common::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn p(x: &Path) -> String {
    x.display().to_string()
}

fn spans_written(gw: &Gateway) -> usize {
    span_names(&gw.path("out.jsonl")).len()
}

/// The values of span attribute `key` in what the file exporter wrote.
fn span_attribute(gw: &Gateway, key: &str) -> Vec<String> {
    json_lines(&gw.path("out.jsonl"))
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["attributes"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["key"] == key)
        .filter_map(|a| a["value"]["stringValue"].as_str().map(str::to_string))
        .collect()
}

fn failures(gw: &Gateway, authenticator: &str) -> f64 {
    gw.metric("switchyard_receiver_auth_failures_total", &[("receiver", "otlp"), ("authenticator", authenticator)])
}

fn header(value: &str) -> Vec<String> {
    vec!["--header".into(), format!("authorization={value}")]
}

#[test]
fn bearer_tokens_over_tls_from_the_python_sdk_and_a_reload_that_changes_the_token() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = common::certs::generate(dir.path());
    let template = |token: &str| {
        let tls = format!("{{cert_file: \"{}\", key_file: \"{}\"}}", p(&c.server_cert), p(&c.server_key));
        format!(
            r#"
extensions:
  bearertokenauth:
    token: {token}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}", tls: {tls}, auth: {{authenticator: bearertokenauth}}}}
      http: {{endpoint: "127.0.0.1:{{http}}", tls: {tls}, auth: {{authenticator: bearertokenauth}}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
service:
  extensions: [bearertokenauth]
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#
        )
    };
    let mut gw = Gateway::start(&template("s3cr-first-token"));
    let out = dir.path().join("summary.json");
    let tls = vec!["--ca-file".to_string(), p(&c.ca)];
    let with = |token: &str| [tls.clone(), header(&format!("Bearer {token}"))].concat();
    let endpoints = [
        ("grpc", format!("https://localhost:{}", gw.grpc)),
        ("http-protobuf", format!("https://localhost:{}", gw.http)),
    ];

    for (protocol, endpoint) in &endpoints {
        let (ok, err) = python_try_send(&python, protocol, endpoint, &with("s3cr-first-token"), &out);
        assert!(ok, "{protocol} with the token: {err}\n{}", gw.log());
        let (ok, err) = python_try_send(&python, protocol, endpoint, &with("s3cr-wrong-token"), &out);
        assert!(!ok, "{protocol} with a wrong token must fail");
        let expect = if *protocol == "grpc" { "UNAUTHENTICATED" } else { "401" };
        assert!(err.contains(expect), "{protocol}: the client sees {expect}: {err}");
        let (ok, _) = python_try_send(&python, protocol, endpoint, &tls, &out);
        assert!(!ok, "{protocol} without a token must fail");
    }
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 4), "{}", gw.log());
    // The Python SDK does not retry 401 / UNAUTHENTICATED: one refusal per attempt.
    assert_eq!(failures(&gw, "bearertokenauth"), 4.0, "{}", gw.log());
    assert!(gw.log().contains("authentication failed"), "refusals are logged");
    assert!(!gw.log().contains("s3cr"), "no token in the log:\n{}", gw.log());

    // The token changes by reload: the old one is refused at once, the new one accepted, and
    // the receiver (its port, its connections) was not restarted.
    gw.rewrite(&template("s3cr-second-token"));
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    let (grpc_protocol, grpc_endpoint) = &endpoints[0];
    let (ok, _) = python_try_send(&python, grpc_protocol, grpc_endpoint, &with("s3cr-first-token"), &out);
    assert!(!ok, "the old token is refused after the reload");
    let (ok, err) = python_try_send(&python, grpc_protocol, grpc_endpoint, &with("s3cr-second-token"), &out);
    assert!(ok, "the new token is accepted after the reload: {err}\n{}", gw.log());
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 6), "{}", gw.log());
    assert!(!gw.log().contains("receiver changed"), "the receiver kept running:\n{}", gw.log());
}

#[test]
fn basic_auth_users_reach_processors_as_auth_username_and_cannot_be_forged() {
    let Some(python) = python_peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let apr1 = Command::new("openssl").args(["passwd", "-apr1", "-salt", "s4ltsalt", "ann-pass"]).output().unwrap();
    let ann = String::from_utf8(apr1.stdout).unwrap().trim().to_string();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("ann:{ann}\n")).unwrap();
    let gw = Gateway::start(&format!(
        r#"
extensions:
  basicauth/users:
    htpasswd:
      file: {}
      inline: |
        bob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{http}}", auth: {{authenticator: basicauth/users}}}}
processors:
  attributes/who:
    actions: [{{key: enduser.id, from_context: auth.username, action: upsert}}]
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
service:
  extensions: [basicauth/users]
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [attributes/who], exporters: [file]}}
"#,
        p(&htpasswd)
    ));
    let out = dir.path().join("summary.json");
    let endpoint = format!("http://127.0.0.1:{}", gw.http);
    let basic =
        |u: &str, pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}")));
    let (ok, err) = python_try_send(&python, "http-protobuf", &endpoint, &header(&basic("ann", "ann-pass")), &out);
    assert!(ok, "ann ($apr1$ from the file): {err}\n{}", gw.log());
    // bob tries to pass for ann with an `auth.username` header of his own.
    let mut forged = header(&basic("bob", "password"));
    forged.extend(["--header".into(), "auth.username=ann".into()]);
    let (ok, err) = python_try_send(&python, "http-protobuf", &endpoint, &forged, &out);
    assert!(ok, "bob ({{SHA}} inline): {err}");
    let (ok, _) = python_try_send(&python, "http-protobuf", &endpoint, &header(&basic("ann", "bob-guess")), &out);
    assert!(!ok, "a wrong password is refused");
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 4), "{}", gw.log());
    let mut users = span_attribute(&gw, "enduser.id");
    users.sort();
    assert_eq!(users, ["ann", "ann", "bob", "bob"], "each span carries who sent it");

    // What a plain HTTP client sees: 401 with a Basic challenge, and nothing admitted.
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(spans("x", 1)),
    )
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"switchyard\""));
    assert!(!gw.log().contains("bob-guess"));
    assert_eq!(failures(&gw, "basicauth/users"), 2.0);
    assert_eq!(spans_written(&gw), 4);
}

/// An OpenID Connect provider for the test: discovery and a JWKS on an in-test HTTP server
/// (no real provider can be installed from the registries), and an ES256 key to sign with.
struct Provider {
    issuer: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Provider {
    fn start() -> Provider {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://127.0.0.1:{}/realms/test", listener.local_addr().unwrap().port());
        let public = key.public_key().as_ref().to_vec();
        let kid = "test-key-1".to_string();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64url(&public[1..33]), "y": b64url(&public[33..65])}]})
        .to_string();
        let discovery =
            serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys"), "id_token_signing_alg_values_supported": ["ES256"]})
                .to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let Some(req) = read_request(&mut reader) else { continue };
                let body = if req.line.contains("/.well-known/openid-configuration") { &discovery } else { &jwks };
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Provider { issuer, key, rng, kid }
    }

    fn token(&self, claims: serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signed = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let sig = self.key.sign(&self.rng, signed.as_bytes()).unwrap();
        format!("{signed}.{}", b64url(sig.as_ref()))
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn oidc_tokens_are_verified_against_the_providers_keys_and_their_subject_reaches_processors() {
    let Some(python) = python_peer() else { return };
    let provider = Provider::start();
    let impostor = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&format!(
        r#"
extensions:
  oidc:
    issuer_url: {issuer}
    audience: switchyard
    groups_claim: groups
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}", auth: {{authenticator: oidc}}}}
processors:
  attributes/who:
    actions:
      - {{key: enduser.id, from_context: auth.subject, action: upsert}}
      - {{key: enduser.groups, from_context: auth.membership, action: upsert}}
      - {{key: tenant, from_context: auth.claims.tenant, action: upsert}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
service:
  extensions: [oidc]
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [attributes/who], exporters: [file]}}
"#,
        issuer = provider.issuer
    ));
    let out = dir.path().join("summary.json");
    let endpoint = format!("http://127.0.0.1:{}", gw.grpc);
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"iss": provider.issuer, "aud": ["other", "switchyard"], "sub": "svc-checkout",
            "groups": ["payments", "sre"], "tenant": "acme", "iat": now(), "exp": now() + 300});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let bearer = |t: String| header(&format!("Bearer {t}"));
    let (ok, err) =
        python_try_send(&python, "grpc", &endpoint, &bearer(provider.token(claims(serde_json::json!({})))), &out);
    assert!(ok, "a valid token: {err}\n{}", gw.log());
    assert!(eventually(Duration::from_secs(10), || spans_written(&gw) == 2), "{}", gw.log());
    assert_eq!(span_attribute(&gw, "enduser.id"), ["svc-checkout", "svc-checkout"]);
    assert_eq!(span_attribute(&gw, "enduser.groups"), ["payments,sre", "payments,sre"]);
    assert_eq!(span_attribute(&gw, "tenant"), ["acme", "acme"]);

    // Each refusal tells the client why (the gRPC status message).
    let refused = [
        ("has expired", provider.token(claims(serde_json::json!({"exp": now() - 10})))),
        ("not for this audience", provider.token(claims(serde_json::json!({"aud": "someone-else"})))),
        ("issuer is not issuer_url", provider.token(claims(serde_json::json!({"iss": impostor.issuer})))),
        ("signature does not verify", impostor.token(claims(serde_json::json!({})))),
        ("not a JWT", "s3cr-not-a-jwt".to_string()),
    ];
    for (why, token) in &refused {
        let (ok, err) = python_try_send(&python, "grpc", &endpoint, &bearer(token.clone()), &out);
        assert!(!ok, "{why}: must be refused");
        assert!(err.contains("UNAUTHENTICATED") && err.contains(why), "{why}: {err}");
    }
    assert_eq!(failures(&gw, "oidc"), refused.len() as f64, "{}", gw.log());
    let log = gw.log();
    for (what, token) in &refused {
        let signature = token.rsplit('.').next().unwrap();
        assert!(signature.is_empty() || !log.contains(signature), "{what}: the token is not logged");
    }
    assert!(log.contains("authentication failed") && log.contains("has expired"), "the log says why:\n{log}");
    assert!(!log.contains("s3cr"), "{log}");
    assert_eq!(spans_written(&gw), 2);
}

#[test]
fn an_auth_key_must_name_a_listed_authenticator() {
    let dir = tempfile::tempdir().unwrap();
    let check = |yaml: &str| {
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out =
            Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["validate", "--config"]).arg(&path).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let base = |ext: &str, listed: &str| {
        format!(
            "extensions:\n{ext}\nreceivers:\n  otlp:\n    protocols:\n      http:\n        auth: {{authenticator: bearertokenauth}}\nexporters:\n  debug:\nservice:\n  extensions: [{listed}]\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [debug]}}\n"
        )
    };
    let (ok, out) = check(&base("  bearertokenauth: {token: x}", ""));
    assert!(!ok && out.contains("receivers.otlp.protocols.http.auth.authenticator"), "{out}");
    assert!(out.contains("listed in service.extensions"), "{out}");
    let (ok, out) = check(&base("  bearertokenauth: {token: x}", "bearertokenauth"));
    assert!(ok, "{out}");
    let (ok, out) = check(&base("  bearertokenauth: {}", "bearertokenauth"));
    assert!(!ok && out.contains("exactly one of token, tokens and filename"), "{out}");
}

#[test]
fn a_reload_that_adds_auth_but_cannot_start_it_closes_the_door_instead_of_leaving_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let bad_ca = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad_ca, "this is not PEM\n").unwrap();
    let open = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{http}"}
exporters:
  file: {path: "{dir}/out.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#;
    let mut gw = Gateway::start(open);
    post_spans(&gw, "open-", 1);
    let closed = open
        .replacen(
            "receivers:",
            &format!(
                "extensions:\n  oidc: {{issuer_url: \"https://idp.example.com\", audience: a, issuer_ca_path: \"{}\"}}\nreceivers:",
                p(&bad_ca)
            ),
            1,
        )
        .replace(r#"http: {endpoint: "127.0.0.1:{http}"}"#, r#"http: {endpoint: "127.0.0.1:{http}", auth: {authenticator: oidc}}"#)
        .replace("  pipelines:", "  extensions: [oidc]\n  pipelines:");
    gw.rewrite(&closed);
    assert_eq!(gw.reload(), "failure", "{}", gw.log());
    assert!(gw.log().contains("requires authentication but cannot start"), "{}", gw.log());
    // Nobody gets in unauthenticated: the port is closed rather than open without auth.
    let after = eventually(Duration::from_secs(10), || {
        http_request(
            "POST",
            gw.http,
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &traces_body(spans("late-", 1)),
        )
        .is_err()
    });
    assert!(after, "the old, open receiver must not keep taking data\n{}", gw.log());
    assert_eq!(span_names(&gw.path("out.jsonl")), ["open-0"]);
}

#[test]
fn every_http_receiver_takes_auth_from_the_same_key() {
    let gw = Gateway::start(
        r#"
extensions:
  bearertokenauth: {token: s3cr-shared-token}
receivers:
  jaeger:
    protocols:
      thrift_http: {endpoint: "127.0.0.1:{port:jaeger}", auth: {authenticator: bearertokenauth}}
  zipkin: {endpoint: "127.0.0.1:{port:zipkin}", auth: {authenticator: bearertokenauth}}
  prometheusremotewrite: {endpoint: "127.0.0.1:{port:prw}", auth: {authenticator: bearertokenauth}}
exporters:
  file: {path: "{dir}/out.jsonl"}
  file/metrics: {path: "{dir}/metrics.jsonl"}
service:
  extensions: [bearertokenauth]
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [jaeger, zipkin], exporters: [file]}
    metrics: {receivers: [prometheusremotewrite], exporters: [file/metrics]}
"#,
    );
    let zipkin = br#"[{"traceId":"0123456789abcdef0123456789abcdef","id":"0123456789abcdef","name":"with-token","timestamp":1700000000000000,"duration":5}]"#;
    for (name, path, ctype) in [
        ("jaeger", "/api/traces", "application/x-thrift"),
        ("zipkin", "/api/v2/spans", "application/json"),
        ("prw", "/api/v1/write", "application/x-protobuf"),
    ] {
        let r = http_request("POST", gw.port(name), path, &[("Content-Type", ctype)], zipkin).unwrap();
        assert_eq!(r.status, 401, "{name} without a token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"switchyard\""), "{name}");
        let wrong = [("Content-Type", ctype), ("Authorization", "Bearer nope")];
        assert_eq!(http_request("POST", gw.port(name), path, &wrong, zipkin).unwrap().status, 401, "{name}");
    }
    let good = [("Content-Type", "application/json"), ("Authorization", "Bearer s3cr-shared-token")];
    let r = http_request("POST", gw.port("zipkin"), "/api/v2/spans", &good, zipkin).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        eventually(Duration::from_secs(10), || span_names(&gw.path("out.jsonl")) == ["with-token"]),
        "{}",
        gw.log()
    );
    for receiver in ["jaeger", "zipkin", "prometheusremotewrite"] {
        let n = gw.metric("switchyard_receiver_auth_failures_total", &[("receiver", receiver)]);
        assert_eq!(n, 2.0, "{receiver}");
    }
    assert!(!gw.log().contains("s3cr"));
}
