//! The load benchmark: a load generator sends realistic OTLP trace requests (100 spans of ~10
//! attributes) over gRPC or HTTP to switchyard (release build, pinned to one core), which runs
//! `otlp -> batch -> otlp` to a counting OTLP/gRPC sink in this process. It prints spans sent and
//! received, switchyard's CPU-seconds per million spans and CPU use, throughput, and peak RSS.
//!
//! `cargo bench --bench load -- [--protocol grpc|http] [--spans N] [--rate SPANS_PER_S]
//! [--compression gzip|zstd|none] [--concurrency N] [--sink-rate SPANS_PER_S]
//! [--queue memory|disk] [--tls] [--tap COMPONENT]`; `benches/load.sh` runs the standard set.
//! `--tls` serves the OTLP/gRPC receiver over TLS (a certificate made at start; the client
//! verifies it). `--tap batch` runs `switchyard tap batch` (its default limit, output discarded)
//! throughout, for the cost of being tapped.
//! `benches/load.sh` runs the standard set. `--sink-rate` makes the sink
//! take at most that many spans a second (a destination slower than intake); `--queue disk` puts
//! the exporter's queue on disk (`sending_queue.storage`, `fsync: true`). Over gRPC it also
//! prints the client's latency percentiles. Under `cargo test` it sends a few thousand spans
//! only, as a smoke test.

#[path = "support/realistic.rs"]
mod realistic;

#[path = "support/proc.rs"]
mod proc;

use prost::Message;
use realistic::SPANS_PER_REQUEST;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchyard::grpc::{RawCodec, export_path};
use switchyard::pipeline::Signal;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
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

struct Args {
    protocol: String,
    spans: usize,
    rate: usize,
    compression: String,
    concurrency: usize,
    sink_rate: usize,
    disk: bool,
    tls: bool,
    tap: Option<String>,
    full: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let get = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1)).cloned();
    let full = argv.iter().any(|a| a == "--bench");
    Args {
        protocol: get("--protocol").unwrap_or_else(|| "grpc".into()),
        spans: get("--spans").and_then(|v| v.parse().ok()).unwrap_or(if full { 1_000_000 } else { 2_000 }),
        rate: get("--rate").and_then(|v| v.parse().ok()).unwrap_or(0),
        compression: get("--compression").unwrap_or_else(|| "gzip".into()),
        concurrency: get("--concurrency").and_then(|v| v.parse().ok()).unwrap_or(8),
        sink_rate: get("--sink-rate").and_then(|v| v.parse().ok()).unwrap_or(0),
        disk: get("--queue").is_some_and(|q| q == "disk"),
        tls: argv.iter().any(|a| a == "--tls"),
        tap: get("--tap"),
        full,
    }
}

/// The counting sink: an OTLP/gRPC server that validates and counts the spans it is sent; with
/// a pace, it takes at most that many spans a second (one request at a time).
#[derive(Clone)]
struct Sink(Arc<AtomicUsize>, Option<Arc<Pace>>);

/// A destination's speed: spans per second, and the next moment it is free.
struct Pace {
    rate: usize,
    free_at: tokio::sync::Mutex<tokio::time::Instant>,
}

impl tonic::server::UnaryService<bytes::Bytes> for Sink {
    type Response = bytes::Bytes;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<bytes::Bytes>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<bytes::Bytes>) -> Self::Future {
        let (counter, pace) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            let decoded = switchyard::receivers::otlp::decode_protobuf(Signal::Traces, request.into_inner())
                .map_err(|e| tonic::Status::invalid_argument(e.0))?;
            let items = decoded.batch.items();
            if let Some(pace) = pace {
                let mut free_at = pace.free_at.lock().await;
                let start = (*free_at).max(tokio::time::Instant::now());
                *free_at = start + Duration::from_secs_f64(items as f64 / pace.rate as f64);
                let done = *free_at;
                drop(free_at);
                tokio::time::sleep_until(done).await;
            }
            counter.fetch_add(items, Ordering::Relaxed);
            Ok(tonic::Response::new(bytes::Bytes::new()))
        })
    }
}

async fn run_sink(
    listener: tokio::net::TcpListener,
    counter: Arc<AtomicUsize>,
    rate: usize,
    stop: tokio_util::sync::CancellationToken,
) {
    use http_body_util::BodyExt;
    let pace =
        (rate > 0).then(|| Arc::new(Pace { rate, free_at: tokio::sync::Mutex::new(tokio::time::Instant::now()) }));
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let sink = Sink(counter.clone(), pace.clone());
        async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
                .max_decoding_message_size(256 << 20);
            let resp = grpc.unary(sink, req).await;
            resp.map(|b| b.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) }).boxed_unsync())
        }
    };
    switchyard::net::serve(listener, handler, stop, Duration::from_secs(1)).await;
}

/// Sends `requests` requests over gRPC from `concurrency` tasks on one channel, paced to `rate`
/// spans per second when it is not 0; returns how many were answered OK and each answer's
/// latency (from the moment the request was due).
async fn grpc_load(
    port: u16,
    bodies: Arc<Vec<bytes::Bytes>>,
    requests: usize,
    concurrency: usize,
    rate: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> (usize, Vec<Duration>) {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("uri");
    let channel = match tls {
        None => endpoint.connect_lazy(),
        Some(config) => endpoint.connect_with_connector_lazy(TlsConnector { port, config }),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (channel, bodies, next) = (channel.clone(), bodies.clone(), next.clone());
            tokio::spawn(async move {
                let (mut ok, mut latencies) = (0, Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return (ok, latencies);
                    }
                    let mut due = Instant::now();
                    if rate > 0 {
                        due = started + Duration::from_secs_f64((i * SPANS_PER_REQUEST) as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let mut grpc = tonic::client::Grpc::new(channel.clone());
                    if grpc.ready().await.is_err() {
                        continue;
                    }
                    let request = tonic::Request::new(bodies[i % bodies.len()].clone());
                    let path = http::uri::PathAndQuery::from_static(export_path(Signal::Traces));
                    if grpc.unary::<bytes::Bytes, bytes::Bytes, _>(request, path, RawCodec).await.is_ok() {
                        ok += 1;
                    }
                    latencies.push(due.elapsed());
                }
            })
        })
        .collect();
    let (mut ok, mut latencies) = (0, Vec::new());
    for t in tasks {
        let (n, l) = t.await.unwrap_or_default();
        ok += n;
        latencies.extend(l);
    }
    (ok, latencies)
}

/// Dials the receiver over TLS (offering HTTP/2), checking its certificate against the CA.
#[derive(Clone)]
struct TlsConnector {
    port: u16,
    config: Arc<rustls::ClientConfig>,
}

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (port, config) = (self.port, self.config.clone());
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// A CA and a certificate for localhost signed by it (PEM files in `dir`), and a client
/// configuration that trusts the CA and offers HTTP/2.
fn tls_setup(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Arc<rustls::ClientConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert =
        CertificateParams::new(vec!["localhost".to_string()]).expect("params").signed_by(&key, &ca).expect("cert");
    let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&c, cert.pem()).expect("cert");
    std::fs::write(&k, key.serialize_pem()).expect("key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    (c, k, Arc::new(config))
}

/// The `q` quantile (0..1) of `latencies`, in milliseconds.
fn quantile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort();
    let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[i].as_secs_f64() * 1000.0
}

fn main() {
    let args = args();
    let (receiver_port, sink_port, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("load.yaml");
    let protocol_block = if args.protocol == "http" { "http" } else { "grpc" };
    let (receiver_tls, client_tls) = if args.tls {
        let (c, k, client) = tls_setup(dir.path());
        (
            format!("        tls:\n          cert_file: {}\n          key_file: {}\n", c.display(), k.display()),
            Some(client),
        )
    } else {
        (String::new(), None)
    };
    // With the queue on disk: the log in the scratch directory, synced per group commit.
    let (storage, queue) = if args.disk {
        (
            format!("extensions:\n  file_storage:\n    directory: {}\n    fsync: true\n", dir.path().display()),
            "    sending_queue:\n      storage: file_storage\n",
        )
    } else {
        (String::new(), "")
    };
    std::fs::write(
        &cfg,
        format!(
            "{storage}receivers:\n  otlp:\n    protocols:\n      {protocol_block}:\n        endpoint: 127.0.0.1:{receiver_port}\n{receiver_tls}processors:\n  batch:\nexporters:\n  otlp:\n    endpoint: 127.0.0.1:{sink_port}\n    tls:\n      insecure: true\n    compression: {}\n{queue}service:\n  extensions: [{}]\n  telemetry:\n    logs:\n      level: warn\n    metrics:\n      address: 127.0.0.1:{metrics}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n",
            args.compression,
            if args.disk { "file_storage" } else { "" },
        ),
    )
    .expect("config");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let received = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", sink_port))).expect("sink port");
    runtime.spawn(run_sink(listener, received.clone(), args.sink_rate, stop.clone()));

    // SWITCHYARD_BIN runs another build (an older commit's, for a before/after in one run).
    let bin = std::env::var("SWITCHYARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
    let bin = bin.as_str();
    let pinned = args.full && Command::new("taskset").arg("--version").output().is_ok();
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
    while TcpStream::connect(("127.0.0.1", receiver_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "switchyard did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut tap = args.tap.as_ref().map(|component| {
        let address = format!("127.0.0.1:{metrics}");
        Command::new(bin)
            .args(["tap", component, "--address", &address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchyard tap")
    });
    let bodies: Vec<Vec<u8>> = (0..16).map(|seed| realistic::request(seed).encode_to_vec()).collect();
    let bytes_per_span = bodies[0].len() / SPANS_PER_REQUEST;
    let requests = args.spans.div_ceil(SPANS_PER_REQUEST);
    let (cpu0, _) = proc::usage(pid);
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    let (ok, expected) = if args.protocol == "http" {
        let per_client = requests.div_ceil(args.concurrency);
        let threads: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let bodies = bodies.clone();
                std::thread::spawn(move || client(receiver_port, &bodies, per_client))
            })
            .collect();
        (threads.into_iter().map(|t| t.join().expect("client")).sum::<usize>(), per_client * args.concurrency)
    } else {
        let shared = Arc::new(bodies.iter().map(|b| bytes::Bytes::from(b.clone())).collect::<Vec<_>>());
        let (ok, l) =
            runtime.block_on(grpc_load(receiver_port, shared, requests, args.concurrency, args.rate, client_tls));
        latencies = l;
        (ok, requests)
    };
    let sent = ok * SPANS_PER_REQUEST;
    let delivered = Instant::now();
    while received.load(Ordering::Relaxed) < sent && delivered.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, peak_rss) = proc::usage(pid);
    if let Some(t) = tap.as_mut() {
        let _ = t.kill();
        let _ = t.wait();
    }
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    stop.cancel();
    let got = received.load(Ordering::Relaxed);
    let cpu = cpu1 - cpu0;
    println!(
        "load: {}{}{} in, otlp/gRPC out (compression {}), {} spans/request ({bytes_per_span} B/span), concurrency {}, rate {}, sink {}, queue {}, switchyard pinned to one core: {pinned}",
        args.protocol,
        if args.tls { " over TLS" } else { "" },
        args.tap.as_ref().map(|c| format!(" (tapping {c})")).unwrap_or_default(),
        args.compression,
        SPANS_PER_REQUEST,
        args.concurrency,
        if args.rate == 0 { "flat out".to_string() } else { format!("{} spans/s", args.rate) },
        if args.sink_rate == 0 {
            "as fast as it can".to_string()
        } else {
            format!("at most {} spans/s", args.sink_rate)
        },
        if args.disk { "on disk (fsync per group commit)" } else { "in memory" },
    );
    println!("load: spans sent {sent}, received by the sink {got}");
    println!("load: {:.0} spans/s over {wall:.2} s", got as f64 / wall);
    println!(
        "load: switchyard CPU {cpu:.2} s = {:.2} CPU-seconds per million spans, {:.0}% of one core",
        cpu / got.max(1) as f64 * 1e6,
        cpu / wall * 100.0
    );
    println!("load: switchyard peak RSS {:.1} MiB", peak_rss as f64 / (1024.0 * 1024.0));
    if !latencies.is_empty() {
        println!(
            "load: client latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            quantile_ms(&mut latencies, 0.5),
            quantile_ms(&mut latencies, 0.99),
            quantile_ms(&mut latencies, 1.0)
        );
    }
    assert_eq!(got, sent, "every span sent arrived at the sink");
    assert_eq!(ok, expected, "every request was accepted");
}
