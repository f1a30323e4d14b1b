//! Shared test harness: runs the real `switchyard` binary on free loopback ports, talks plain
//! HTTP to it, and finds the test peers (OpenTelemetry SDKs, Prometheus) that
//! `scripts/install-peers.sh` installs.
#![allow(dead_code)]

pub mod certs;
pub mod kube_api;
pub mod prom;
pub mod sink;
pub mod vendor;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free now and not handed out before in this test process: the kernel can
/// give the same ephemeral port to two binds in a row once the first is closed, and two
/// components of one test (or two tests running at once) must not both get it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running switchyard with its ports and scratch directory.
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub grpc: u16,
    pub http: u16,
    pub metrics: u16,
    pub health: u16,
    /// The ports given to `{port:NAME}` placeholders, by name.
    pub ports: std::collections::HashMap<String, u16>,
    log: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// Runs started so far (`restart` starts another, with a log of its own).
    runs: usize,
}

impl Gateway {
    /// Starts switchyard with `template`, in which `{grpc}`, `{http}`, `{metrics}`, `{health}`
    /// and `{dir}` are replaced, and each `{port:NAME}` by a free port of its own (see `port`);
    /// waits until the receivers listen.
    pub fn start(template: &str) -> Gateway {
        Gateway::start_with_env(template, &[])
    }

    /// As `start`, with extra environment variables for switchyard (for `${env:…}` in configs).
    pub fn start_with_env(template: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::launch(template, env, &[])
    }

    /// As `start`, with extra command-line arguments (`--watch`).
    pub fn start_with_args(template: &str, args: &[&str]) -> Gateway {
        Gateway::launch(template, &[], args)
    }

    fn launch(template: &str, env: &[(&str, &str)], args: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let (grpc, http, metrics, health) = (free_port(), free_port(), free_port(), free_port());
        let ports = std::collections::HashMap::new();
        let log = dir.path().join("switchyard.log");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut gw = Gateway { child: None, dir, grpc, http, metrics, health, ports, log, env, args, runs: 0 };
        gw.rewrite(template);
        gw.spawn();
        gw
    }

    /// Starts switchyard on the configuration file as it is now, and waits until it is ready.
    fn spawn(&mut self) {
        self.runs += 1;
        if self.runs > 1 {
            self.log = self.dir.path().join(format!("switchyard.{}.log", self.runs));
        }
        // SWITCHYARD_BIN runs another build (the release one, for figures in docs/BENCHMARKS.md).
        let bin = std::env::var("SWITCHYARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
        let child = Command::new(bin)
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).expect("log file"))
            .spawn()
            .expect("start switchyard");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Kills switchyard with SIGKILL, as a crash or the OOM killer would, and waits for it to die.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts switchyard again after `kill` or `stop`, with the same configuration file, ports
    /// and directory; `log` reads this run's log from now on.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill or stop");
        self.spawn();
    }

    /// Writes `template` as the configuration file (placeholders as in `start`; a `{port:NAME}`
    /// named before keeps its port), without telling switchyard. Returns the file's path.
    pub fn rewrite(&mut self, template: &str) -> PathBuf {
        let mut template = template.to_string();
        while let Some(at) = template.find("{port:") {
            let end = at + template[at..].find('}').expect("a closing } after {port:");
            let name = template[at + 6..end].to_string();
            let port = *self.ports.entry(name.clone()).or_insert_with(free_port);
            template = template.replace(&format!("{{port:{name}}}"), &port.to_string());
        }
        let config = template
            .replace("{grpc}", &self.grpc.to_string())
            .replace("{http}", &self.http.to_string())
            .replace("{metrics}", &self.metrics.to_string())
            .replace("{health}", &self.health.to_string())
            .replace("{dir}", &self.dir.path().display().to_string());
        let cfg_path = self.dir.path().join("config.yaml");
        // Written whole and renamed, as an editor or a ConfigMap update does, so that a reader
        // never sees half a file.
        let partial = self.dir.path().join("config.yaml.new");
        std::fs::write(&partial, config).expect("write config");
        std::fs::rename(&partial, &cfg_path).expect("replace config");
        cfg_path
    }

    /// Reloads counted so far, by result (`success` or `failure`).
    pub fn reloads(&self, result: &str) -> f64 {
        self.metric("switchyard_config_reloads_total", &[("result", result)])
    }

    /// Sends SIGHUP and waits until switchyard has counted the reload; returns its result.
    pub fn reload(&self) -> &'static str {
        let (ok, failed) = (self.reloads("success"), self.reloads("failure"));
        signal(self.pid(), "HUP");
        let mut result = "";
        let counted = eventually(Duration::from_secs(30), || {
            if self.reloads("success") > ok {
                result = "success";
            } else if self.reloads("failure") > failed {
                result = "failure";
            }
            !result.is_empty()
        });
        assert!(counted, "the reload was not counted within 30 s:\n{}", self.log());
        result
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("switchyard exited early ({status}):\n{}", self.log());
            }
            // Receivers start last; this line says they all listen.
            if self.log().contains("switchyard is running") {
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!("switchyard did not become ready:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the log. The scratch
    /// directory stays until the `Gateway` is dropped.
    pub fn stop(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status, self.log());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("switchyard did not stop within 30 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The self-metric `name` with all of `labels` (`k="v"` pairs), or 0 if absent.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = http_request("GET", self.metrics, "/metrics", &[], b"").map(|r| r.text()).unwrap_or_default();
        metric_value(&text, name, labels)
    }

    /// The port a `{port:NAME}` placeholder got.
    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Finds `name{labels…} value` in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Every complete line of an OTLP/JSON-lines file, parsed; a last line still being written (no
/// newline yet) is left for the next read.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect()
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 client (Connection: close), so tests see exactly what is on the wire.
pub fn http_request(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).map_err(|_| bad())?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Ok(HttpResponse { status, headers, body })
}

/// A peer program installed by `scripts/install-peers.sh`. When it is missing, the test is
/// skipped with a message — unless `SWITCHYARD_REQUIRE_PEERS=1` (set by scripts/test.sh), where
/// a missing peer fails the test.
pub fn peer(path: &Path, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if std::env::var("SWITCHYARD_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("{what} is not installed at {}: run scripts/install-peers.sh", path.display());
    }
    eprintln!("SKIPPED: {what} is not installed at {} (run scripts/install-peers.sh)", path.display());
    None
}

pub fn python_peer() -> Option<PathBuf> {
    peer(&repo().join("target/peers/venv/bin/python"), "the OpenTelemetry Python SDK venv")
}

/// Runs the Python SDK peer (tests/peers/python/otel_send.py) to send `signal` over OTLP/gRPC
/// to `grpc_port`, `count` items; fails the test if it fails. Returns its summary of what it sent.
pub fn python_sends(python: &Path, grpc_port: u16, signal: &str, count: usize, summary: &Path) -> serde_json::Value {
    let out = Command::new(python)
        .arg(repo().join("tests/peers/python/otel_send.py"))
        .args(["--signal", signal, "--protocol", "grpc", "--count", &count.to_string()])
        .args(["--endpoint", &format!("http://127.0.0.1:{grpc_port}"), "--out"])
        .arg(summary)
        .output()
        .expect("run otel_send.py");
    assert!(out.status.success(), "otel_send.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(summary).expect("summary")).expect("summary is JSON")
}

/// Runs the Python SDK peer: two spans over `protocol` (`grpc`, `http-protobuf`) to `endpoint`,
/// with `extra` arguments (`--ca-file`, `--header`…) and a 3 s export timeout. Returns whether
/// every export succeeded, and what it printed (its failures).
pub fn python_try_send(python: &Path, protocol: &str, endpoint: &str, extra: &[String], out: &Path) -> (bool, String) {
    let done = Command::new(python)
        .arg(repo().join("tests/peers/python/otel_send.py"))
        .args(["--signal", "traces", "--protocol", protocol, "--count", "2", "--timeout", "3"])
        .args(["--endpoint", endpoint, "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("run otel_send.py");
    (done.status.success(), String::from_utf8_lossy(&done.stderr).into_owned())
}

/// Starts the Python SDK peer tests/peers/python/otel_stream.py: `count` spans named
/// `prefix-0…` over OTLP/gRPC to `grpc_port`, spread over `seconds`; see `stream_summary`.
pub fn python_stream(python: &Path, grpc_port: u16, prefix: &str, count: usize, seconds: f64, out: &Path) -> Child {
    Command::new(python)
        .arg(repo().join("tests/peers/python/otel_stream.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{grpc_port}"), "--prefix", prefix])
        .args(["--count", &count.to_string(), "--seconds", &seconds.to_string(), "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run otel_stream.py")
}

/// Waits for an `otel_stream.py` run; fails the test if an export failed. Returns its summary.
pub fn stream_summary(child: Child, out: &Path) -> serde_json::Value {
    let done = child.wait_with_output().expect("otel_stream.py ran");
    let summary = std::fs::read_to_string(out).unwrap_or_default();
    assert!(done.status.success(), "otel_stream.py failed ({summary}): {}", String::from_utf8_lossy(&done.stderr));
    serde_json::from_str(&summary).expect("summary is JSON")
}

pub fn node_peer() -> Option<PathBuf> {
    peer(
        &repo().join("tests/peers/node/node_modules/@opentelemetry/exporter-trace-otlp-http"),
        "the OpenTelemetry JS SDK",
    )
    .map(|_| PathBuf::from("node"))
}

/// A configuration with OTLP on gRPC and HTTP, batching, and a file exporter to `{dir}/out.jsonl`.
pub const FILE_PIPELINE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    timeout: 100ms
exporters:
  file:
    path: {dir}/out.jsonl
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
"#;

/// A span named `name` with the given trace id and a fixed valid span id.
pub fn span(name: &str, trace_id: Vec<u8>) -> Span {
    Span {
        name: name.into(),
        trace_id,
        span_id: vec![7; 8],
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Default::default()
    }
}

/// A length-delimited protobuf field `number` holding `inner` (for requests no encoder would
/// write: millions of empty items, nesting deeper than any real value).
pub fn wrap(number: u8, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = inner.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(inner);
    out
}

/// An OTLP/protobuf traces request holding `spans` under one resource and scope.
pub fn traces_body(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `n` valid spans named `{prefix}{i}`.
pub fn spans(prefix: &str, n: usize) -> Vec<Span> {
    (0..n).map(|i| span(&format!("{prefix}{i}"), vec![1; 16])).collect()
}

/// The names of every span in an OTLP/JSON-lines file, sorted.
pub fn span_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = json_lines(path)
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// POSTs `n` spans named `{prefix}{i}` to the gateway's OTLP/HTTP port and expects 200.
pub fn post_spans(gw: &Gateway, prefix: &str, n: usize) {
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(spans(prefix, n)),
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// One HTTP/1.1 request as an in-test server reads it.
pub struct ReceivedRequest {
    /// The request line, such as `POST /_bulk HTTP/1.1` (with its line end).
    pub line: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
}

/// Reads the next request of a connection (body by `content-length`); `None` when the
/// connection ends first.
pub fn read_request(reader: &mut impl std::io::BufRead) -> Option<ReceivedRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = Vec::new();
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header != "\r\n" {
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        header.clear();
    }
    let mut request = ReceivedRequest { line, headers, body: Vec::new() };
    let len: usize = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    request.body = vec![0; len];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}
