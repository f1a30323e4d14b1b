//! The `clickhouse` exporter against a real ClickHouse 18.16 (Debian's clickhouse-server,
//! installed by scripts/install-peers.sh), started by the test on loopback with a scratch
//! directory of its own. The logs come from the real Python SDK; a `SELECT` reads them back
//! field by field.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLICKHOUSE: &str = "/usr/sbin/clickhouse-server";

/// A clickhouse-server on 127.0.0.1 with users `default` (no password) and `otel`/`s3cret`.
struct ClickHouse {
    child: Child,
    http: u16,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    fn config(dir: &Path, http: u16, tcp: u16) -> PathBuf {
        let d = dir.display();
        std::fs::write(
            dir.join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default/></profiles>
    <users>
        <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
        <otel><password>s3cret</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></otel>
    </users>
    <quotas><default/></quotas>
</yandex>
"#,
        )
        .unwrap();
        let config = dir.join("config.xml");
        // mark_cache_size and a <logger> section are required by 18.16, or it exits at start.
        std::fs::write(
            &config,
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/logs/server.log</log><errorlog>{d}/logs/server.err.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <users_config>{d}/users.xml</users_config>
    <mark_cache_size>268435456</mark_cache_size>
    <timezone>UTC</timezone>
</yandex>
"#
            ),
        )
        .unwrap();
        config
    }

    /// Starts on `http` (a free port when `None`); `None` when ClickHouse is not installed.
    fn start(http: Option<u16>) -> Option<ClickHouse> {
        peer(Path::new(CLICKHOUSE), "Debian's clickhouse-server")?;
        let dir = tempfile::tempdir().unwrap();
        let http = http.unwrap_or_else(free_port);
        let config = ClickHouse::config(dir.path(), http, free_port());
        let mut child = Command::new(CLICKHOUSE)
            .arg(format!("--config-file={}", config.display()))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clickhouse-server");
        let started = Instant::now();
        loop {
            // Our own process must be the one answering (a lost port race keeps it alive ~2 s).
            assert!(child.try_wait().unwrap().is_none(), "clickhouse-server exited at start");
            if http_request("GET", http, "/ping", &[], b"").is_ok_and(|r| r.text() == "Ok.\n") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "clickhouse-server did not answer /ping");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(ClickHouse { child, http, _dir: dir })
    }

    /// Runs `sql` as the default user; the answer's status and body.
    fn query(&self, sql: &str) -> (u16, String) {
        let r = http_request("POST", self.http, "/?output_format_json_quote_64bit_integers=0", &[], sql.as_bytes())
            .expect("query");
        (r.status, r.text())
    }

    fn rows(&self, sql: &str) -> Vec<serde_json::Value> {
        let (status, text) = self.query(&format!("{sql} FORMAT JSONEachRow"));
        assert_eq!(status, 200, "{text}");
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON row")).collect()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(http: u16, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
exporters:
  clickhouse:
    endpoint: http://127.0.0.1:{http}
    database: otel
    username: otel
    password: s3cret
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
{extra}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [clickhouse]
"#
    )
}

#[test]
fn python_sdk_logs_are_selected_back_field_by_field_after_clickhouse_comes_up() {
    let Some(python) = python_peer() else { return };
    if peer(Path::new(CLICKHOUSE), "Debian's clickhouse-server").is_none() {
        return;
    }
    // switchyard first: its inserts are refused (connection refused) and retried until
    // ClickHouse is up; then it creates the database and table itself.
    let http = free_port();
    let gw = Gateway::start(&config(http, ""));
    let sent = python_sends(&python, gw.grpc, "logs", 4, &gw.path("sent.json"));
    std::thread::sleep(Duration::from_millis(400));
    let ch = ClickHouse::start(Some(http)).unwrap();
    let arrived =
        eventually(Duration::from_secs(20), || ch.query("SELECT count() FROM otel.otel_logs").1.trim() == "4");
    assert!(arrived, "{:?}\n{}", ch.query("SELECT count() FROM otel.otel_logs"), gw.log());
    let rows = ch.rows(
        "SELECT Timestamp, TimestampNanos, TraceId, SpanId, SeverityText, SeverityNumber, ServiceName, Body, \
         ResourceAttributes.key, ResourceAttributes.value, LogAttributes.key, LogAttributes.value, ScopeName, ScopeVersion \
         FROM otel.otel_logs ORDER BY TimestampNanos",
    );
    let logs = sent["logs"].as_array().unwrap();
    assert_eq!(rows.len(), logs.len());
    for (row, log) in rows.iter().zip(logs) {
        assert_eq!(row["Body"], log["body"]);
        assert_eq!(row["SeverityText"], "WARN");
        assert_eq!(row["SeverityNumber"], log["severity_number"]);
        assert_eq!(row["TimestampNanos"], log["time_unix_nano"]);
        let secs = log["time_unix_nano"].as_u64().unwrap() / 1_000_000_000;
        let (days, rem) = (secs / 86400, secs % 86400);
        assert!(row["Timestamp"].as_str().unwrap().ends_with(&format!(
            "{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )));
        assert!(days > 19000);
        assert_eq!(row["ServiceName"], "py-sender");
        assert_eq!(row["ScopeName"], log["scope"]);
        assert_eq!(row["TraceId"], log["trace_id"].as_str().unwrap_or(""));
        assert_eq!(row["SpanId"], log["span_id"].as_str().unwrap_or(""));
        let attrs: std::collections::BTreeMap<String, String> = row["LogAttributes.key"]
            .as_array()
            .unwrap()
            .iter()
            .zip(row["LogAttributes.value"].as_array().unwrap())
            .map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_str().unwrap().to_string()))
            .collect();
        let k = log["attributes"]["i"].as_i64().unwrap() - 42;
        assert_eq!(attrs["s"], format!("v{k}"));
        assert_eq!(attrs["i"], (42 + k).to_string());
        assert_eq!(attrs["f"], "1.5");
        assert_eq!(attrs["b"], (k % 2 == 0).to_string());
        assert_eq!(attrs["arr"], r#"["a","b"]"#);
        let resource_keys = row["ResourceAttributes.key"].as_array().unwrap();
        assert!(resource_keys.iter().any(|k| k == "service.name"), "{resource_keys:?}");
    }
    assert!(!rows.last().unwrap()["TraceId"].as_str().unwrap().is_empty(), "the last record was emitted in a span");
}

#[test]
fn a_table_that_does_not_fit_is_a_permanent_error_with_the_exception_code() {
    let Some(python) = python_peer() else { return };
    let Some(ch) = ClickHouse::start(None) else { return };
    assert_eq!(ch.query("CREATE DATABASE otel").0, 200);
    let (status, text) = ch
        .query("CREATE TABLE otel.otel_logs (Timestamp DateTime, Body String) ENGINE = MergeTree() ORDER BY Timestamp");
    assert_eq!(status, 200, "{text}");
    let gw = Gateway::start(&config(ch.http, "    create_schema: false"));
    python_sends(&python, gw.grpc, "logs", 3, &gw.path("sent.json"));
    let failed = || gw.metric("switchyard_exporter_dropped_log_records_total", &[("exporter", "clickhouse")]);
    assert!(eventually(Duration::from_secs(15), || failed() == 3.0), "{}\n{}", failed(), gw.log());
    let log = gw.log();
    assert!(log.contains("code 117"), "ClickHouse's exception code (unknown field) is in the log:\n{log}");
    assert_eq!(ch.query("SELECT count() FROM otel.otel_logs").1.trim(), "0");
}

#[test]
fn a_wrong_password_is_not_retried() {
    let Some(python) = python_peer() else { return };
    let Some(ch) = ClickHouse::start(None) else { return };
    let gw = Gateway::start(&config(ch.http, "").replace("password: s3cret", "password: wrong"));
    python_sends(&python, gw.grpc, "logs", 2, &gw.path("sent.json"));
    let failed = || gw.metric("switchyard_exporter_dropped_log_records_total", &[("exporter", "clickhouse")]);
    assert!(eventually(Duration::from_secs(15), || failed() == 2.0), "{}", gw.log());
    assert!(gw.log().contains("code 193"), "{}", gw.log());
}
