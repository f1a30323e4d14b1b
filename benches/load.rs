//! The load benchmark: switchyard (release build) pinned to one core takes OTLP/HTTP protobuf
//! requests of 100 realistic spans from client threads on the other core, through
//! `otlp -> batch -> debug(basic)`, and reports its own CPU-seconds per million spans and its peak
//! resident memory. Run with `cargo bench --bench load`; under `cargo test` it sends a few
//! requests only, as a smoke test.

#[path = "support/realistic.rs"]
mod realistic;

use prost::Message;
use realistic::SPANS_PER_REQUEST;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// (user + system CPU seconds, peak RSS bytes) of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    ((ticks(11) + ticks(12)) / 100.0, hwm * 1024)
}

/// Sends `count` requests on one keep-alive connection; returns how many got 200.
fn client(port: u16, bodies: &[Vec<u8>], count: usize) -> usize {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).ok();
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut ok = 0;
    for i in 0..count {
        let body = &bodies[i % bodies.len()];
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(body)).expect("send");
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut sink = vec![0u8; len];
        reader.read_exact(&mut sink).expect("body");
        if status.split(' ').nth(1) == Some("200") {
            ok += 1;
        }
    }
    ok
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (clients, per_client) = if full { (8, 1250) } else { (2, 5) };
    let (http, metrics) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("load.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{http}\nprocessors:\n  batch:\nexporters:\n  debug:\n    verbosity: basic\nservice:\n  telemetry:\n    logs:\n      level: warn\n    metrics:\n      address: 127.0.0.1:{metrics}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n"
        ),
    )
    .expect("config");
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
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "switchyard did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bodies: Vec<Vec<u8>> = (0..16).map(|seed| realistic::request(seed).encode_to_vec()).collect();
    let bytes_per_span = bodies[0].len() / SPANS_PER_REQUEST;
    let (cpu0, _) = usage(pid);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let bodies = bodies.clone();
            std::thread::spawn(move || client(http, &bodies, per_client))
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, peak_rss) = usage(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let spans = ok * SPANS_PER_REQUEST;
    assert_eq!(ok, clients * per_client, "every request was accepted");
    let cpu = cpu1 - cpu0;
    println!(
        "load: {clients} clients x {per_client} requests x {SPANS_PER_REQUEST} spans ({bytes_per_span} B/span), gateway pinned to one core: {pinned}"
    );
    println!("load: {spans} spans in {wall:.2} s = {:.0} spans/s", spans as f64 / wall);
    println!("load: gateway CPU {cpu:.2} s = {:.2} CPU-seconds per million spans", cpu / spans as f64 * 1e6);
    println!("load: gateway peak RSS {:.1} MiB", peak_rss as f64 / (1024.0 * 1024.0));
}
