//! The `syslog` receiver with a real sender: util-linux `logger` sends RFC 5424 over TCP
//! (octet-counted) and UDP, and RFC 3164 over UDP; the test reads the exported OTLP log records
//! field by field. Bad input (not syslog, a frame over max_log_size) is counted and the next good
//! message still arrives.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  syslog/5424:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{port:tcp}
    udp:
      listen_address: 127.0.0.1:{port:udp}
    max_log_size: 1000
  syslog/3164:
    protocol: rfc3164
    location: "+02:00"
    udp:
      listen_address: 127.0.0.1:{port:udp3164}
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    logs:
      receivers: [syslog/5424, syslog/3164]
      exporters: [file]
"#;

fn logger() -> Option<std::path::PathBuf> {
    peer(std::path::Path::new("/usr/bin/logger"), "util-linux logger")
}

/// Every exported record: (resource attributes, record) as JSON.
fn records(path: &std::path::Path) -> Vec<(serde_json::Value, serde_json::Value)> {
    let mut out = Vec::new();
    for line in json_lines(path) {
        for rl in line["resourceLogs"].as_array().cloned().unwrap_or_default() {
            for sl in rl["scopeLogs"].as_array().cloned().unwrap_or_default() {
                for r in sl["logRecords"].as_array().cloned().unwrap_or_default() {
                    out.push((rl["resource"]["attributes"].clone(), r));
                }
            }
        }
    }
    out
}

fn attr(list: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    list.as_array()?.iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
}

fn find<'a>(
    all: &'a [(serde_json::Value, serde_json::Value)],
    body: &str,
) -> &'a (serde_json::Value, serde_json::Value) {
    all.iter()
        .find(|(_, r)| r["body"]["stringValue"] == body)
        .unwrap_or_else(|| panic!("no record \"{body}\" in {all:#?}"))
}

#[test]
fn logger_messages_arrive_as_log_records() {
    let Some(logger) = logger() else { return };
    let gw = Gateway::start(CONFIG);
    let send = |args: &[&str]| {
        let out = Command::new(&logger).args(args).output().unwrap();
        assert!(out.status.success(), "logger {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (tcp, udp, udp3164) = (gw.port("tcp").to_string(), gw.port("udp").to_string(), gw.port("udp3164").to_string());
    send(&[
        "--rfc5424",
        "-T",
        "--octet-count",
        "-i",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-t",
        "checkout",
        "-p",
        "local3.warning",
        "--msgid",
        "ORDER",
        "--sd-id",
        "order@32473",
        "--sd-param",
        "id=\"42\"",
        "hello over tcp",
    ]);
    send(&["--rfc5424", "-d", "-n", "127.0.0.1", "-P", &udp, "-t", "billing", "-p", "user.err", "hello over udp"]);
    send(&["--rfc3164", "-d", "-n", "127.0.0.1", "-P", &udp3164, "-t", "legacy", "-p", "daemon.info", "hello bsd"]);
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || records(&path).len() == 3), "{:#?}\n{}", records(&path), gw.log());
    let all = records(&path);

    let (res, r) = find(&all, "hello over tcp");
    assert_eq!(attr(res, "service.name"), Some(serde_json::json!({"stringValue": "checkout"})));
    assert!(attr(res, "host.name").is_some());
    assert_eq!(
        (r["severityNumber"].clone(), r["severityText"].clone()),
        (serde_json::json!(13), serde_json::json!("warning"))
    );
    assert_eq!(attr(&r["attributes"], "syslog.facility"), Some(serde_json::json!({"intValue": "19"})));
    assert_eq!(attr(&r["attributes"], "syslog.version"), Some(serde_json::json!({"intValue": "1"})));
    assert_eq!(attr(&r["attributes"], "syslog.msgid"), Some(serde_json::json!({"stringValue": "ORDER"})));
    assert_eq!(attr(&r["attributes"], "syslog.order@32473.id"), Some(serde_json::json!({"stringValue": "42"})));
    assert!(attr(&r["attributes"], "syslog.procid").is_some(), "logger sends its pid");
    let t: u64 = r["timeUnixNano"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert!(now.abs_diff(t) < 60_000_000_000, "the message's own time: {t} vs now {now}");

    let (res, r) = find(&all, "hello over udp");
    assert_eq!(attr(res, "service.name"), Some(serde_json::json!({"stringValue": "billing"})));
    assert_eq!(r["severityNumber"], 17);

    let (res, r) = find(&all, "hello bsd");
    assert_eq!(attr(res, "service.name"), Some(serde_json::json!({"stringValue": "legacy"})));
    assert_eq!(r["severityNumber"], 9);
    assert_eq!(attr(&r["attributes"], "syslog.facility"), Some(serde_json::json!({"intValue": "3"})));
}

#[test]
fn bad_syslog_input_is_counted_and_the_next_message_arrives() {
    let Some(logger) = logger() else { return };
    let gw = Gateway::start(CONFIG);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        udp.send_to(b"this is not syslog", ("127.0.0.1", gw.port("udp"))).unwrap();
    }
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", gw.port("tcp"))).unwrap();
    use std::io::Write;
    let big = format!("<13>1 - - - - - - {}", "x".repeat(5000));
    write!(tcp, "{} {big}", big.len()).unwrap();
    writeln!(tcp, "<13>1 - - - - - - after the big one").unwrap();
    drop(tcp);
    let out = Command::new(&logger)
        .args(["--rfc5424", "-d", "-n", "127.0.0.1", "-P", &gw.port("udp").to_string(), "still serving"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = gw.path("out.jsonl");
    assert!(
        eventually(Duration::from_secs(10), || {
            let all = records(&path);
            all.iter().any(|(_, r)| r["body"]["stringValue"] == "still serving")
                && all.iter().any(|(_, r)| r["body"]["stringValue"] == "after the big one")
        }),
        "{}",
        gw.log()
    );
    let count = |transport: &str, code: &str| {
        gw.metric(
            "switchyard_receiver_invalid_requests_total",
            &[("receiver", "syslog/5424"), ("transport", transport), ("code", code)],
        )
    };
    assert!(eventually(Duration::from_secs(5), || count("udp", "malformed") == 20.0), "{}", count("udp", "malformed"));
    assert_eq!(count("tcp", "too_large"), 1.0);
    assert!(records(&path).iter().all(|(_, r)| !r["body"]["stringValue"].as_str().unwrap_or("").starts_with("xxx")));
}
