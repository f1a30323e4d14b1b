//! The `syslog` receiver with real senders: util-linux `logger` sends RFC 5424 over TCP
//! (octet-counted) and UDP, and RFC 3164 over UDP; rsyslog 8.2302 relays `logger` messages in
//! the same three forms (its `omfwd` forwarding), and over TLS (RFC 5425, rsyslog's gtls driver
//! checking switchyard's certificate). The test reads the exported OTLP log records
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

/// A throwaway rsyslogd (not the system service) relaying what arrives on three loopback TCP
/// inputs to the receiver: RFC 5424 over TCP with octet counting, RFC 5424 over UDP, and the
/// traditional RFC 3164 form over UDP. No /dev/log, no kernel log, nothing under /var.
struct Rsyslog {
    child: std::process::Child,
    inputs: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start(tcp: u16, udp: u16, udp3164: u16) -> Option<Rsyslog> {
        let rules = format!(
            r#"ruleset(name="r0") {{
  action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted"
         template="RSYSLOG_SyslogProtocol23Format" queue.type="Direct" action.resumeRetryCount="-1" action.resumeInterval="1")
}}
ruleset(name="r1") {{
  action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" template="RSYSLOG_SyslogProtocol23Format" queue.type="Direct")
}}
ruleset(name="r2") {{
  action(type="omfwd" target="127.0.0.1" port="{udp3164}" protocol="udp" template="RSYSLOG_TraditionalForwardFormat" queue.type="Direct")
}}
"#
        );
        Rsyslog::with_rules("", &rules, 3)
    }

    /// An rsyslogd with `inputs` loopback TCP inputs, the n-th feeding ruleset `r<n>` of `rules`.
    fn with_rules(global: &str, rules: &str, inputs: usize) -> Option<Rsyslog> {
        let bin = peer(std::path::Path::new("/usr/sbin/rsyslogd"), "Debian's rsyslog")?;
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let ports: Vec<u16> = (0..inputs).map(|_| free_port()).collect();
        let listen: String = ports
            .iter()
            .enumerate()
            .map(|(n, p)| format!("input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{p}\" ruleset=\"r{n}\")\n"))
            .collect();
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" processInternalMessages="on" net.enableDNS="off" maxMessageSize="64k" {global})
module(load="imtcp")
action(type="omfile" file="{dir}/internal.log")
{listen}{rules}"#,
                work = work.display(),
                dir = dir.path().display(),
            ),
        )
        .unwrap();
        let pid_file = dir.path().join("rsyslogd.pid");
        let mut child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pid_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let ready = eventually(Duration::from_secs(10), || {
            std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == child.id().to_string())
                && ports.iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        if !ready {
            let _ = child.kill();
            panic!("rsyslogd did not start: {:?}", std::fs::read_to_string(dir.path().join("internal.log")));
        }
        Some(Rsyslog { child, inputs: ports, _dir: dir })
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rsyslog_relays_arrive_as_log_records() {
    let Some(logger) = logger() else { return };
    let gw = Gateway::start(CONFIG);
    let Some(rsyslog) = Rsyslog::start(gw.port("tcp"), gw.port("udp"), gw.port("udp3164")) else { return };
    let send = |port: u16, args: &[&str]| {
        let out =
            Command::new(&logger).args(["-T", "-n", "127.0.0.1", "-P", &port.to_string()]).args(args).output().unwrap();
        assert!(out.status.success(), "logger {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let sd = ["--sd-id", "meta@32473", "--sd-param", "env=\"ci\""];
    let five = ["--rfc5424", "-i", "--msgid", "MID1", "-p", "local0.warning"];
    send(rsyslog.inputs[0], &[&five[..], &sd[..], &["-t", "relay-tcp", "relayed over tcp"]].concat());
    send(rsyslog.inputs[1], &[&five[..], &sd[..], &["-t", "relay-udp", "relayed over udp"]].concat());
    send(rsyslog.inputs[2], &["--rfc3164", "-i", "-t", "relay-bsd", "-p", "mail.err", "relayed bsd"]);
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || records(&path).len() == 3), "{:#?}\n{}", records(&path), gw.log());
    let all = records(&path);
    for (body, app) in [("relayed over tcp", "relay-tcp"), ("relayed over udp", "relay-udp")] {
        let (res, r) = find(&all, body);
        assert_eq!(attr(res, "service.name"), Some(serde_json::json!({"stringValue": app})));
        assert_eq!(r["severityNumber"], 13, "warning");
        assert_eq!(attr(&r["attributes"], "syslog.facility"), Some(serde_json::json!({"intValue": "16"})));
        assert_eq!(attr(&r["attributes"], "syslog.msgid"), Some(serde_json::json!({"stringValue": "MID1"})));
        assert_eq!(attr(&r["attributes"], "syslog.meta@32473.env"), Some(serde_json::json!({"stringValue": "ci"})));
        assert!(attr(&r["attributes"], "syslog.procid").is_some());
    }
    let (res, r) = find(&all, "relayed bsd");
    assert_eq!(attr(res, "service.name"), Some(serde_json::json!({"stringValue": "relay-bsd"})));
    assert_eq!(r["severityNumber"], 17, "err");
    assert_eq!(attr(&r["attributes"], "syslog.facility"), Some(serde_json::json!({"intValue": "2"})));
    assert_eq!(gw.metric("switchyard_receiver_invalid_requests_total", &[]), 0.0, "nothing rsyslog sent was refused");
}

#[test]
fn rsyslog_over_tls_arrives_and_a_plain_client_is_refused() {
    let Some(logger) = logger() else { return };
    // The plugin's directory is the machine's multiarch triple (x86_64-linux-gnu, aarch64-linux-gnu…).
    let plugin = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("rsyslog/lmnsd_gtls.so"))
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/lib/<multiarch>/rsyslog/lmnsd_gtls.so"));
    if peer(&plugin, "Debian's rsyslog-gnutls").is_none() {
        return;
    }
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = certs::generate(certs_dir.path());
    let config = format!(
        r#"
receivers:
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{{port:tls}}
      tls:
        cert_file: {cert}
        key_file: {key}
exporters:
  file:
    path: {{dir}}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    logs:
      receivers: [syslog]
      exporters: [file]
"#,
        cert = certs.server_cert.display(),
        key = certs.server_key.display()
    );
    let gw = Gateway::start(&config);
    // rsyslog's gtls driver checks switchyard's certificate against the test CA (RFC 5425).
    let rules = format!(
        r#"ruleset(name="r0") {{
  action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp" TCP_Framing="octet-counted"
         template="RSYSLOG_SyslogProtocol23Format" StreamDriver="gtls" StreamDriverMode="1"
         StreamDriverAuthMode="x509/certvalid" queue.type="Direct" action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"#,
        tls = gw.port("tls")
    );
    let global = format!(r#"DefaultNetstreamDriverCAFile="{}""#, certs.ca.display());
    let Some(rsyslog) = Rsyslog::with_rules(&global, &rules, 1) else { return };
    let out = Command::new(&logger)
        .args(["-T", "-n", "127.0.0.1", "-P", &rsyslog.inputs[0].to_string(), "--rfc5424", "-t", "secure", "over tls"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || records(&path).len() == 1), "{}", gw.log());
    let all = records(&path);
    let (res, _) = find(&all, "over tls");
    assert_eq!(attr(res, "service.name"), Some(serde_json::json!({"stringValue": "secure"})));

    // A sender speaking plain TCP to the TLS port is refused and counted.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", gw.port("tls"))).unwrap();
    std::io::Write::write_all(&mut plain, b"21 <13>1 - - - - - - x").unwrap();
    drop(plain);
    let listener = format!("127.0.0.1:{}", gw.port("tls"));
    let refused = || gw.metric("switchyard_listener_tls_handshake_failures_total", &[("listener", &listener)]);
    assert!(eventually(Duration::from_secs(10), || refused() == 1.0), "{}", gw.log());
    assert_eq!(records(&path).len(), 1);
}
