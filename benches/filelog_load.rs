//! The filelog load benchmark, after the OpenTelemetry Collector testbed's filelog test: this
//! process appends log lines to a file at a steady rate (10,000 lines/s by default) while
//! switchyard (release build, pinned to one core) tails it with `filelog -> batch -> otlphttp`
//! to a counting OTLP/HTTP sink in this process. It prints lines written and received,
//! switchyard's CPU-seconds per million lines, CPU use and peak RSS.
//!
//! `cargo bench --bench filelog_load -- [--format plain|cri|cri-json] [--rate LINES_PER_S] [--seconds N]`
//! (`cri-json`: the CRI lines of an application logging JSON, parsed by `json_parser` with its
//! timestamp and severity, the message moved to the body: an agent's usual operator chain).
//! (`--rate 0`: as fast as possible, N × 100,000 lines written up front). Under `cargo test` it
//! writes a few thousand lines only, as a smoke test.

#[path = "support/proc.rs"]
mod proc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Counts the log records of every OTLP/HTTP request; answers 200.
fn sink(listener: TcpListener, received: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let received = received.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                let mut len = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let req = ExportLogsServiceRequest::decode(&body[..]).expect("valid logs");
                let n: usize = req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
                received.fetch_add(n, Ordering::Relaxed);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
    }
}

fn line(format: &str, n: usize) -> String {
    let text = format!(
        "2026-11-26 10:14:15.{:03} INFO [checkout-worker-{}] order {n} paid: amount=129.90 EUR user=u{} latency_ms={}",
        n % 1000,
        n % 8,
        n % 977,
        n % 250
    );
    match format {
        "cri" => format!("2026-11-26T10:14:15.{:09}Z stdout F {text}\n", n % 1_000_000_000),
        "cri-json" => format!(
            "2026-11-26T10:14:15.{:09}Z stdout F {{\"ts\":\"2026-11-26T10:14:15.{:03}Z\",\"level\":\"info\",\"logger\":\"checkout-worker-{}\",\"msg\":\"order {n} paid\",\"amount\":129.9,\"currency\":\"EUR\",\"user\":\"u{}\",\"latency_ms\":{}}}\n",
            n % 1_000_000_000,
            n % 1000,
            n % 8,
            n % 977,
            n % 250
        ),
        _ => format!("{text}\n"),
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let get = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let full = argv.iter().any(|a| a == "--bench");
    let format = get("--format").unwrap_or_else(|| "plain".into());
    let rate: usize = get("--rate").and_then(|v| v.parse().ok()).unwrap_or(if full { 10_000 } else { 0 });
    let seconds: usize = get("--seconds").and_then(|v| v.parse().ok()).unwrap_or(if full { 30 } else { 0 });
    let total = if rate == 0 { if full { seconds.max(1) * 100_000 } else { 5_000 } } else { rate * seconds };

    let dir = tempfile::tempdir().expect("temp dir");
    let pods = dir.path().join("pods/shop_checkout-7d9f_0c1f7f7e-2b1a-4d7e-9d61-1c2b3a4d5e6f/server");
    std::fs::create_dir_all(&pods).expect("dirs");
    let file = pods.join("0.log");
    std::fs::write(&file, "").expect("log file");
    let (sink_port, metrics) = (free_port(), free_port());
    let operators = match format.as_str() {
        "cri" => "    operators:\n      - type: container\n",
        "cri-json" => concat!(
            "    operators:\n      - type: container\n",
            "      - type: json_parser\n        timestamp: {parse_from: attributes.ts, layout_type: gotime, layout: '2006-01-02T15:04:05.000Z07:00'}\n",
            "        severity: {parse_from: attributes.level}\n",
            "      - type: move\n        from: attributes.msg\n        to: body\n",
        ),
        _ => "",
    };
    let cfg = dir.path().join("filelog.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  filelog:\n    include: [{}]\n    start_at: beginning\n{operators}processors:\n  batch:\nexporters:\n  otlphttp:\n    endpoint: http://127.0.0.1:{sink_port}\n    compression: none\nservice:\n  telemetry:\n    logs:\n      level: warn\n    metrics:\n      address: 127.0.0.1:{metrics}\n  pipelines:\n    logs:\n      receivers: [filelog]\n      processors: [batch]\n      exporters: [otlphttp]\n",
            file.display()
        ),
    )
    .expect("config");
    let received = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind(("127.0.0.1", sink_port)).expect("sink port");
    let counter = received.clone();
    std::thread::spawn(move || sink(listener, counter));

    let bin = env!("CARGO_BIN_EXE_switchyard");
    let pinned = full && Command::new("taskset").arg("--version").output().is_ok();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    let mut child =
        cmd.arg("--config").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start switchyard");
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));

    let mut out = std::fs::OpenOptions::new().append(true).open(&file).expect("append");
    let started = Instant::now();
    if rate == 0 {
        let mut chunk = String::new();
        for n in 0..total {
            chunk.push_str(&line(&format, n));
            if chunk.len() > 1 << 20 {
                out.write_all(chunk.as_bytes()).expect("write");
                chunk.clear();
            }
        }
        out.write_all(chunk.as_bytes()).expect("write");
    } else {
        // 100 writes a second, rate/100 lines each.
        let per_tick = rate.div_ceil(100);
        let mut n = 0;
        let mut tick = 0u32;
        while n < total {
            let mut chunk = String::new();
            for _ in 0..per_tick.min(total - n) {
                chunk.push_str(&line(&format, n));
                n += 1;
            }
            out.write_all(chunk.as_bytes()).expect("write");
            tick += 1;
            let due = started + Duration::from_millis(10) * tick;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    while received.load(Ordering::Relaxed) < total && started.elapsed() < Duration::from_secs(seconds as u64 + 60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu, rss) = proc::usage(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let got = received.load(Ordering::Relaxed);
    println!(
        "filelog {format}, {}: written {total}, received {got}; {elapsed:.1} s; switchyard CPU {cpu:.2} s = {:.2} CPU-s per million lines, {:.1}% of a core; peak RSS {:.1} MiB{}",
        if rate == 0 { "flat out".to_string() } else { format!("{rate} lines/s") },
        cpu / total as f64 * 1e6,
        cpu / elapsed * 100.0,
        rss as f64 / (1 << 20) as f64,
        if pinned { " (pinned to core 0)" } else { "" }
    );
    assert_eq!(got, total, "every line written arrived");
}
