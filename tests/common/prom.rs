//! The Prometheus-family test peers, all Debian packages that `scripts/install-peers.sh`
//! installs: node exporter 1.5 (a real scrape target), VictoriaMetrics 1.79 (a remote-write
//! destination, read back with `/api/v1/export`) and Prometheus 2.42 (scraper, remote-write
//! sender and remote-write receiver). Each runs on 127.0.0.1 with a free port and a scratch
//! directory of its own, is waited for (up to 20 s) until it answers, and is killed, reaped and
//! its directory removed when dropped. `start` returns `None` (the test skips) when the binary is
//! missing, or fails the test under `SWITCHYARD_REQUIRE_PEERS=1`, as `peer` does.

use super::{HttpResponse, eventually, free_port, http_request, peer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
pub const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long a peer gets to answer its readiness check (all three answer within ~0.1 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The node exporter collectors `NodeExporter` enables (`--collector.disable-defaults` turns off
/// the rest): they only read /proc, need no root, never fail in a container and take well under
/// a millisecond. Left out on purpose: `systemd` (fails without D-Bus), the hardware ones
/// (`hwmon`, `nvme`, `rapl`, `dmi`, …: fail or vary by machine), `diskstats`, `filesystem`,
/// `netdev`, `netclass` (which devices and mounts exist varies by machine).
/// Together with the exporter's own `go_*`, `process_*` and `promhttp_*` metrics and the
/// textfile fixture this serves ~165 families, ~220 samples on 2 CPUs: 13 counters
/// (`node_cpu_seconds_total`, `node_context_switches_total`, `node_forks_total`,
/// `node_intr_total`, …), ~100 gauges, 47 untyped (`node_netstat_*`, `node_vmstat_*`), the
/// summaries `go_gc_duration_seconds` and `switchyard_fixture_rpc_duration_seconds`, and the
/// histogram `switchyard_fixture_request_duration_seconds` (node exporter has none of its own).
pub const NODE_EXPORTER_COLLECTORS: &[&str] =
    &["cpu", "filefd", "loadavg", "meminfo", "netstat", "stat", "textfile", "time", "uname", "vmstat"];

/// The file `NodeExporter::start` puts in the textfile collector's directory: constant series of
/// every type, so a test can check exact values after a scrape. The collector re-reads it on
/// every scrape and adds `node_textfile_mtime_seconds{file=…}` and `node_textfile_scrape_error`.
pub const NODE_EXPORTER_FIXTURE: &str = r#"# HELP switchyard_fixture_request_duration_seconds A fixed histogram served through the textfile collector.
# TYPE switchyard_fixture_request_duration_seconds histogram
switchyard_fixture_request_duration_seconds_bucket{path="/a",le="0.1"} 3
switchyard_fixture_request_duration_seconds_bucket{path="/a",le="0.5"} 5
switchyard_fixture_request_duration_seconds_bucket{path="/a",le="1"} 6
switchyard_fixture_request_duration_seconds_bucket{path="/a",le="+Inf"} 7
switchyard_fixture_request_duration_seconds_sum{path="/a"} 4.25
switchyard_fixture_request_duration_seconds_count{path="/a"} 7
# HELP switchyard_fixture_rpc_duration_seconds A fixed summary.
# TYPE switchyard_fixture_rpc_duration_seconds summary
switchyard_fixture_rpc_duration_seconds{quantile="0.5"} 0.2
switchyard_fixture_rpc_duration_seconds{quantile="0.99"} 0.9
switchyard_fixture_rpc_duration_seconds_sum 12.5
switchyard_fixture_rpc_duration_seconds_count 40
# HELP switchyard_fixture_events_total A fixed counter.
# TYPE switchyard_fixture_events_total counter
switchyard_fixture_events_total{kind="a"} 42
switchyard_fixture_events_total{kind="b \"quoted\""} 7
# HELP switchyard_fixture_temperature_celsius A fixed gauge.
# TYPE switchyard_fixture_temperature_celsius gauge
switchyard_fixture_temperature_celsius -3.5
"#;

/// Percent-encodes `s` for a URL query string (everything but RFC 3986 unreserved characters).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier test process with this pid
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One running peer: the process, its port, and its scratch directory, which holds its data
/// and `NAME.log` (its stderr). Dropping it kills and reaps the process, then removes the
/// directory.
struct Process {
    child: Child,
    name: &'static str,
    port: u16,
    dir: Scratch,
}

impl Process {
    /// Runs `bin args…` in `dir`, stdout discarded, stderr to `dir/NAME.log`.
    fn spawn(name: &'static str, bin: &Path, port: u16, dir: Scratch, args: &[String]) -> Process {
        let log_path = dir.0.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let child = Command::new(bin)
            .args(args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", bin.display()));
        Process { child, name, port, dir }
    }

    /// Waits until `GET path` answers 200; fails the test, with the log, when the process exits
    /// first or `READY_TIMEOUT` passes.
    fn wait_ready(&mut self, path: &str) {
        let port = self.port;
        let child = &mut self.child;
        let mut exited: Option<ExitStatus> = None;
        let ready = eventually(READY_TIMEOUT, || {
            if exited.is_none() {
                exited = child.try_wait().ok().flatten();
            }
            exited.is_some() || http_request("GET", port, path, &[], b"").is_ok_and(|r| r.status == 200)
        });
        if let Some(status) = exited {
            panic!("{} exited before it was ready ({status}):\n{}", self.name, self.log());
        }
        assert!(ready, "{} did not answer GET {path} with 200 within {READY_TIMEOUT:?}:\n{}", self.name, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_request("GET", self.port, path, headers, b"")
            .unwrap_or_else(|e| panic!("GET {path} from {}: {e}\n{}", self.name, self.log()))
    }

    /// `GET path`, parsed as JSON whatever the status (Prometheus-style APIs answer errors as
    /// `{"status":"error",…}`).
    fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path, &[]);
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("GET {path} from {}: {} is not JSON ({e}): {}", self.name, r.status, r.text()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Debian's node exporter 1.5 with the collectors in `NODE_EXPORTER_COLLECTORS` and a textfile
/// directory. It answers text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`) even
/// when asked for OpenMetrics (1.5 has no switch for it), protobuf when asked for
/// `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`,
/// chunked, gzip when accepted.
pub struct NodeExporter {
    process: Process,
}

impl NodeExporter {
    /// Starts node exporter serving `NODE_EXPORTER_FIXTURE` through its textfile collector.
    pub fn start() -> Option<NodeExporter> {
        NodeExporter::start_with_textfile(NODE_EXPORTER_FIXTURE)
    }

    /// Starts node exporter serving `text` (Prometheus text format) through its textfile
    /// collector, beside the /proc collectors.
    pub fn start_with_textfile(text: &str) -> Option<NodeExporter> {
        let bin = peer(Path::new(NODE_EXPORTER), "node exporter (Debian package prometheus-node-exporter)")?;
        let port = free_port();
        let dir = Scratch::new("node-exporter");
        let textfile_dir = dir.0.join("textfile");
        std::fs::create_dir_all(&textfile_dir).expect("textfile dir");
        std::fs::write(textfile_dir.join("fixture.prom"), text).expect("write the textfile fixture");
        let mut args =
            vec![format!("--web.listen-address=127.0.0.1:{port}"), "--collector.disable-defaults".to_string()];
        args.extend(NODE_EXPORTER_COLLECTORS.iter().map(|c| format!("--collector.{c}")));
        args.push(format!("--collector.textfile.directory={}", textfile_dir.display()));
        args.push("--log.level=warn".to_string());
        let mut process = Process::spawn("node-exporter", &bin, port, dir, &args);
        process.wait_ready("/metrics");
        Some(NodeExporter { process })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `127.0.0.1:PORT`, for a scrape config's `targets`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.process.port)
    }

    /// The scrape URL, `http://127.0.0.1:PORT/metrics`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.process.port)
    }

    /// `GET /metrics` with `headers` (e.g. `Accept`), as answered.
    pub fn scrape(&self, headers: &[(&str, &str)]) -> HttpResponse {
        self.process.get("/metrics", headers)
    }

    /// `GET /metrics`: the text exposition (expects 200).
    pub fn scrape_text(&self) -> String {
        let r = self.scrape(&[]);
        assert_eq!(r.status, 200, "node exporter /metrics: {}", r.text());
        r.text()
    }

    /// Replaces the textfile fixture; the next scrape serves `text` (written aside and renamed,
    /// so a scrape never sees half a file).
    pub fn set_textfile(&self, text: &str) {
        let dir = self.process.dir.0.join("textfile");
        std::fs::write(dir.join("fixture.prom.tmp"), text).expect("write the textfile fixture");
        std::fs::rename(dir.join("fixture.prom.tmp"), dir.join("fixture.prom")).expect("rename the textfile fixture");
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Debian's VictoriaMetrics 1.79 (single node) with an empty storage directory. Flags:
/// `-search.latencyOffset=0s` (the default 30 s hides samples younger than that from
/// `/api/v1/query`), `-search.disableCache` (no stale cached query results),
/// `-retentionPeriod=100y` (the default 1 month drops samples with old fixed timestamps).
/// Without a flush, a sample written to an existing series shows up in `/api/v1/export` after
/// ~0.75 s and a new series after up to ~10 s; `export` and `query` call `flush` first, which
/// makes everything written so far visible at once to `export`. `/api/v1/query` still only sees
/// samples older than about 1 s: poll it with `eventually`.
pub struct VictoriaMetrics {
    process: Process,
}

impl VictoriaMetrics {
    pub fn start() -> Option<VictoriaMetrics> {
        let bin = peer(Path::new(VICTORIA_METRICS), "VictoriaMetrics (Debian package victoria-metrics)")?;
        let port = free_port();
        let dir = Scratch::new("victoria-metrics");
        let args = vec![
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.0.join("data").display()),
            "-retentionPeriod=100y".to_string(),
            "-search.latencyOffset=0s".to_string(),
            "-search.disableCache".to_string(),
            "-loggerLevel=WARN".to_string(),
        ];
        let mut process = Process::spawn("victoria-metrics", &bin, port, dir, &args);
        process.wait_ready("/health");
        Some(VictoriaMetrics { process })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// The Prometheus remote-write endpoint, `http://127.0.0.1:PORT/api/v1/write` (snappy
    /// protobuf; answers 204 with an empty body, 400 when the body is not snappy).
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// `GET /internal/force_flush`: makes everything ingested so far searchable.
    pub fn flush(&self) {
        let r = self.process.get("/internal/force_flush", &[]);
        assert_eq!(r.status, 200, "victoria-metrics force_flush: {}", r.text());
    }

    /// Every series matching `match_selector` (e.g. `{job="node"}` or `up`), all samples, from
    /// `GET /api/v1/export`: one `{"metric":{"__name__":…,…},"values":[…],"timestamps":[ms…]}`
    /// per series. Flushes first; the end of the range is a day ahead (the default, "now", is
    /// coarse and misses the newest samples).
    pub fn export(&self, match_selector: &str) -> Vec<serde_json::Value> {
        self.flush();
        let path = format!("/api/v1/export?match[]={}&end={}", url_encode(match_selector), unix_secs() + 86_400);
        let r = self.process.get(&path, &[]);
        assert_eq!(r.status, 200, "victoria-metrics {path}: {}", r.text());
        r.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("victoria-metrics export line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// `GET /api/v1/query?query=PROMQL` (after a flush): the whole answer,
    /// `{"status":"success","data":{"resultType":"vector","result":[…]}}` or `{"status":"error",…}`.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        self.flush();
        self.process.get_json(&format!("/api/v1/query?query={}", url_encode(promql)))
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Debian's Prometheus 2.42 with an empty TSDB and the remote-write receiver on (without
/// `--web.enable-remote-write-receiver`, `/api/v1/write` answers 404 "remote write receiver
/// needs to be enabled with --enable-feature=remote-write-receiver"; with it, 204 and the
/// samples are queryable at once; 400 when the body is not snappy). Ready in ~0.1 s.
pub struct Prometheus {
    process: Process,
}

impl Prometheus {
    /// Starts Prometheus with `config_yaml` as its configuration file, in which `{port}` is
    /// replaced by its own port and `{dir}` by its scratch directory. For quick tests use
    /// `scrape_interval: 1s` and, under `remote_write`, `queue_config: {batch_send_deadline: 1s}`
    /// (the default deadline is 5 s). The first scrape comes ~5 s after the start whatever the
    /// interval (2.42's scrape manager applies targets on a fixed 5 s tick): poll with
    /// `eventually`.
    pub fn start(config_yaml: &str) -> Option<Prometheus> {
        let bin = peer(Path::new(PROMETHEUS), "Prometheus (Debian package prometheus)")?;
        let port = free_port();
        let dir = Scratch::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        let text = config_yaml.replace("{port}", &port.to_string()).replace("{dir}", &dir.0.display().to_string());
        std::fs::write(&config, text).expect("write prometheus.yml");
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.0.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
        ];
        let mut process = Process::spawn("prometheus", &bin, port, dir, &args);
        process.wait_ready("/-/ready");
        Some(Prometheus { process })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// The remote-write receiver, `http://127.0.0.1:PORT/api/v1/write`.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// `GET /api/v1/query?query=PROMQL`: the whole answer,
    /// `{"status":"success","data":{"resultType":"vector","result":[…]}}` or `{"status":"error",…}`.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        self.process.get_json(&format!("/api/v1/query?query={}", url_encode(promql)))
    }

    /// Prometheus's stderr (its log, level info).
    pub fn log(&self) -> String {
        self.process.log()
    }
}
