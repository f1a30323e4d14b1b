//! The persistent sending queue (`sending_queue.storage`) as an operator sees it: the real Python
//! SDK streams spans while switchyard is killed with SIGKILL at random moments, and every span it
//! was told was taken arrives; damaged segment files lose only their damaged records; a full disk
//! budget refuses (retryably) and loses nothing; SIGTERM with the destination down leaves the data
//! on disk for the next start; filelog lines survive a kill; a reload that changes the exporter
//! keeps what is on disk; remote write keeps its queue too (VictoriaMetrics). The destination is
//! otherwise tests/peers/python/otlp_sink.py (grpcio with the opentelemetry-proto servicers),
//! standing in for Jaeger, which cannot be installed here.

mod common;

use common::sink::Sink;
use common::*;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A gateway whose `otlp` exporter keeps its queue in `{dir}/queue`; `queue` adds keys to
/// `sending_queue`, `receivers` replaces the OTLP receiver, `signal` names the pipeline.
fn config(queue: &str, receivers: &str, signal: &str) -> String {
    format!(
        r#"
extensions:
  file_storage:
    directory: {{dir}}/queue
    create_directory: true
    fsync: true
receivers:
{receivers}
exporters:
  otlp:
    endpoint: 127.0.0.1:{{port:sink}}
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
    sending_queue:
      storage: file_storage
{queue}
service:
  extensions: [file_storage]
  shutdown_timeout: 2s
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    {signal}:
      receivers: [{names}]
      exporters: [otlp]
"#,
        names = if receivers.contains("filelog:") { "filelog" } else { "otlp" },
    )
}

const OTLP: &str = "  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n      http:\n        endpoint: 127.0.0.1:{http}";

/// The segment files of the `otlp` exporter's trace queue, in order.
fn segments(gw: &Gateway) -> Vec<PathBuf> {
    let dir = gw.path("queue/exporter_otlp/traces");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn post(gw: &Gateway, prefix: &str, n: usize) -> HttpResponse {
    let body = traces_body(spans(prefix, n));
    http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).expect("request")
}

/// How many times each item appears in `received`.
fn counts(received: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for r in received {
        *m.entry(r.as_str()).or_insert(0) += 1;
    }
    m
}

/// A small generator for the kill moments; the seed is printed so that a failing run can be
/// repeated with SWITCHYARD_TEST_SEED.
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        let seed = std::env::var("SWITCHYARD_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("kill moments: SWITCHYARD_TEST_SEED={seed}");
        Moments(seed | 1)
    }

    /// A duration between `low` and `high` milliseconds.
    fn between(&mut self, low: u64, high: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(low + self.0 % (high - low))
    }
}

#[test]
fn every_acknowledged_span_arrives_across_kill_9_at_random_moments() {
    let Some(python) = python_peer() else { return };
    let max_batch = 2000;
    let mut gw = Gateway::start(&config(
        &format!("      num_consumers: 1\n      batch:\n        min_size: 1000\n        max_size: {max_batch}"),
        OTLP,
        "traces",
    ));
    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    // About 10,000 spans a second (12,000 asked for, over five seconds), from the real SDK, which retries what
    // failed while switchyard was down; `acked` lists the spans switchyard answered OK for.
    let (count, acked_file, summary) = (60_000, gw.path("acked.txt"), gw.path("stream.json"));
    let stream = Command::new(&python)
        .arg(repo().join("tests/peers/python/otel_stream.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.grpc), "--prefix", "k"])
        .args(["--count", &count.to_string(), "--seconds", "5", "--batch", "500", "--out"])
        .arg(&summary)
        .arg("--acked")
        .arg(&acked_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run otel_stream.py");
    let mut moments = Moments::new();
    let kills = 3;
    for round in 0..kills {
        std::thread::sleep(moments.between(400, 1500));
        let acked = std::fs::read_to_string(&acked_file).unwrap_or_default().lines().count();
        eprintln!("round {round}: kill -9 with {acked} spans acknowledged so far");
        gw.kill();
        gw.restart();
    }
    let done = stream.wait_with_output().expect("otel_stream.py ran");
    eprintln!(
        "stream: {} {}",
        std::fs::read_to_string(&summary).unwrap_or_default(),
        String::from_utf8_lossy(&done.stderr).lines().last().unwrap_or("")
    );
    let acked: HashSet<String> =
        std::fs::read_to_string(&acked_file).unwrap_or_default().lines().map(str::to_string).collect();
    assert!(acked.len() > count / 2, "most spans were acknowledged ({} of {count})", acked.len());
    let arrived = eventually(Duration::from_secs(60), || {
        let got: HashSet<String> = sink.span_ids().into_iter().collect();
        acked.is_subset(&got)
    });
    let received = sink.span_ids();
    let got: HashSet<&String> = received.iter().collect();
    let lost = acked.iter().filter(|id| !got.contains(id)).count();
    assert!(arrived, "{lost} of {} acknowledged spans never arrived:\n{}", acked.len(), gw.log());
    let duplicates: usize = counts(&received).values().map(|n| n - 1).sum();
    eprintln!(
        "{} spans acknowledged, {} received, {duplicates} duplicates after {kills} kills (bound: {} per kill)",
        acked.len(),
        got.len(),
        2 * max_batch
    );
    // A kill can catch one batch delivered but not yet marked so (and, rarely, the one before
    // it, whose mark was still being written): those are sent again.
    assert!(duplicates <= kills * 2 * max_batch, "{duplicates} duplicates");
}

#[test]
fn damaged_segments_lose_only_their_damaged_records() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&config("      num_consumers: 1", OTLP, "traces"));
    // The destination is down: three runs each write ten requests of ten spans, each run into
    // a segment file of its own.
    for run in 0..3 {
        if run > 0 {
            gw.restart();
        }
        for r in 0..10 {
            let answer = post(&gw, &format!("s{run}-{r}-"), 10);
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
        gw.kill();
    }
    let files = segments(&gw);
    assert_eq!(files.len(), 3, "{files:?}");
    // The first segment loses the end of its last record (a torn write); the second gets bytes
    // flipped in its middle.
    let first = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(first - 7).unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(&files[1], &bytes).unwrap();

    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    gw.restart();
    let complete = |run: usize, r: usize| (0..10).map(|i| format!("s{run}-{r}-{i}")).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(30), || sink.spans().len() >= 280), "{:?}\n{}", sink.spans(), gw.log());
    std::thread::sleep(Duration::from_millis(500));
    let got: HashSet<String> = sink.spans().into_iter().collect();
    // Run 0 lost exactly its last request; run 1 exactly one request; run 2 nothing.
    let missing =
        |run: usize| (0..10).filter(|&r| complete(run, r).iter().any(|s| !got.contains(s))).collect::<Vec<_>>();
    assert_eq!(missing(0), vec![9], "the torn tail");
    assert_eq!(missing(1).len(), 1, "the flipped record: {:?}", missing(1));
    assert!(missing(2).is_empty());
    assert_eq!(got.len(), 280);
    assert_eq!(gw.metric("switchyard_exporter_queue_damaged_records_total", &[("exporter", "otlp")]), 2.0);
    let log = gw.log();
    assert!(log.contains("cut off at the last good record"), "{log}");
    assert!(log.contains("damaged records skipped"), "{log}");
}

#[test]
fn a_full_disk_budget_refuses_retryably_and_delivers_everything_accepted_in_order() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&config(
        "      num_consumers: 1\n      storage_limit_mib: 1\n      block_on_overflow: false",
        OTLP,
        "traces",
    ));
    // A long outage compressed in time: a client that retries refusals sends 300 requests of
    // 200 spans (about 3 MiB in all) into a 1 MiB budget while the destination is down.
    let requests = 300;
    let client = {
        let http = gw.http;
        std::thread::spawn(move || {
            let mut refusals = Vec::new();
            for r in 0..requests {
                let body = traces_body(spans(&format!("r{r:03}-"), 200));
                loop {
                    let answer =
                        http_request("POST", http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body)
                            .expect("request");
                    if answer.status == 200 {
                        break;
                    }
                    refusals.push((answer.status, answer.text()));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            refusals
        })
    };
    let refused = |gw: &Gateway| gw.metric("otelcol_exporter_enqueue_failed_spans_total", &[("exporter", "otlp")]);
    assert!(eventually(Duration::from_secs(60), || refused(&gw) >= 2000.0), "the budget never filled:\n{}", gw.log());
    let size = gw.metric("otelcol_exporter_queue_size", &[("exporter", "otlp")]);
    let capacity = gw.metric("otelcol_exporter_queue_capacity", &[("exporter", "otlp")]);
    assert_eq!(capacity, 1048576.0);
    assert!(size <= capacity && size > capacity / 2.0, "queue size {size} of {capacity}");
    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    let refusals = client.join().unwrap();
    assert!(!refusals.is_empty());
    for (status, text) in &refusals {
        assert_eq!(*status, 503, "{text}");
        assert!(text.contains("sending queue of exporter otlp is full"), "{text}");
    }
    assert!(
        eventually(Duration::from_secs(60), || sink.spans().len() >= requests * 200),
        "{} of {} spans arrived:\n{}",
        sink.spans().len(),
        requests * 200,
        gw.log()
    );
    // In the order accepted, each exactly once.
    let names: Vec<String> = sink
        .lines()
        .iter()
        .flat_map(|l| l["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let order: Vec<usize> = names.iter().map(|n| n[1..4].parse().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "out of order");
    assert_eq!(names.len(), requests * 200, "no duplicates");
    assert_eq!(counts(&names).len(), requests * 200);
    let _ = gw.stop();
}

#[test]
fn sigterm_with_the_destination_down_leaves_the_data_on_disk_for_the_next_start() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&config("", OTLP, "traces"));
    for r in 0..5 {
        assert_eq!(post(&gw, &format!("t{r}-"), 100).status, 200);
    }
    let started = Instant::now();
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "the shutdown deadline is 2 s");
    assert!(log.contains("undelivered data left on disk") && log.contains("items=500"), "{log}");
    assert!(!log.contains("lost"), "{log}");

    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    gw.restart();
    assert!(gw.log().contains("items=500"), "the start reports what it found:\n{}", gw.log());
    assert!(eventually(Duration::from_secs(30), || sink.spans().len() >= 500), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(300));
    let mut expected: Vec<String> = (0..5).flat_map(|r| (0..100).map(move |i| format!("t{r}-{i}"))).collect();
    expected.sort();
    assert_eq!(sink.spans(), expected);
    // Delivered means gone from disk: the next stop has nothing left.
    let (status, log) = gw.stop();
    assert!(status.success() && !log.contains("undelivered data left on disk"), "{log}");
    for segment in segments(&gw) {
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), 0, "{} still holds data", segment.display());
    }
}

#[test]
fn filelog_lines_survive_kill_9_through_a_persistent_queue() {
    let Some(python) = python_peer() else { return };
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("app.log");
    std::fs::write(&file, "").unwrap();
    let receivers = format!(
        "  filelog:\n    include: [\"{}\"]\n    start_at: beginning\n    poll_interval: 50ms\n    storage: file_storage",
        file.display()
    );
    let mut gw = Gateway::start(&config("      num_consumers: 1", &receivers, "logs"));
    let total = 6000;
    let writer = {
        let file = file.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
            for n in 0..total {
                writeln!(f, "line-{n:05}").unwrap();
                if n % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
        })
    };
    // Killed while the destination is down (the lines are only on switchyard's disk), then
    // again while it delivers.
    let mut moments = Moments::new();
    std::thread::sleep(moments.between(300, 800));
    gw.kill();
    gw.restart();
    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    std::thread::sleep(moments.between(300, 800));
    gw.kill();
    gw.restart();
    writer.join().unwrap();
    let expected: Vec<String> = (0..total).map(|n| format!("line-{n:05}")).collect();
    let all_there = || {
        let got: HashSet<String> = sink.log_bodies().into_iter().collect();
        expected.iter().all(|l| got.contains(l))
    };
    assert!(eventually(Duration::from_secs(60), all_there), "{} lines arrived:\n{}", sink.log_bodies().len(), gw.log());
    let received = sink.log_bodies();
    let duplicates: usize = counts(&received).values().map(|n| n - 1).sum();
    eprintln!("{total} lines, {} received, {duplicates} duplicates after 2 kills", received.len());
}

#[test]
fn a_reload_that_moves_the_exporter_takes_its_disk_queue_along() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&config("      num_consumers: 1", OTLP, "traces"));
    for r in 0..4 {
        assert_eq!(post(&gw, &format!("m{r}-"), 50).status, 200);
    }
    // The destination moves: the new exporter reads the same log and delivers there.
    let moved = config("      num_consumers: 1", OTLP, "traces").replace("{port:sink}", "{port:moved}");
    gw.rewrite(&moved);
    assert_eq!(gw.reload(), "success", "{}", gw.log());
    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("moved"), &[]);
    assert!(eventually(Duration::from_secs(30), || sink.spans().len() >= 200), "{}", gw.log());
    // And what arrives after the reload follows it.
    assert_eq!(post(&gw, "after-", 10).status, 200);
    assert!(eventually(Duration::from_secs(30), || sink.spans().len() >= 210), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.spans().len(), 210, "each once");
    let (status, log) = gw.stop();
    assert!(status.success() && !log.contains("undelivered data left on disk"), "{log}");
}

#[test]
fn remote_write_keeps_its_queue_on_disk_across_kill_9() {
    let Some(python) = python_peer() else { return };
    let Some(vm) = common::prom::VictoriaMetrics::start() else { return };
    let config = |endpoint: &str| {
        format!(
            r#"
extensions:
  file_storage:
    directory: {{dir}}/queue
    create_directory: true
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
exporters:
  prometheusremotewrite:
    endpoint: {endpoint}
    remote_write_queue:
      storage: file_storage
service:
  extensions: [file_storage]
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
"#
        )
    };
    // The store is unreachable while the SDK's metrics are acknowledged, and switchyard is killed.
    let mut gw = Gateway::start(&config("http://127.0.0.1:{port:down}/api/v1/write"));
    python_sends(&python, gw.grpc, "metrics", 3, &gw.path("metrics.json"));
    assert!(gw.metric("otelcol_exporter_queue_size", &[("exporter", "prometheusremotewrite")]) > 0.0);
    gw.kill();
    // Started again towards the store: what was on disk is written there.
    gw.rewrite(&config(&vm.write_url()));
    gw.restart();
    assert!(
        eventually(Duration::from_secs(30), || !vm.export("py_requests_total").is_empty()),
        "nothing arrived:\n{}",
        gw.log()
    );
    assert!(eventually(Duration::from_secs(10), || gw
        .metric("otelcol_exporter_queue_size", &[("exporter", "prometheusremotewrite")])
        == 0.0));
}

#[test]
fn large_records_are_gathered_into_exports_a_grpc_server_takes() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(&config("      num_consumers: 1", OTLP, "traces"));
    // Ten requests of about 1.1 MB each wait on disk; gathered to the default min_size (8192
    // spans) they would make exports over the 4 MiB grpcio (like most gRPC servers) takes.
    let padding = "x".repeat(500);
    for r in 0..10 {
        let big: Vec<_> = (0..2000).map(|i| span(&format!("b{r}-{i}-{padding}"), vec![1; 16])).collect();
        let body = traces_body(big);
        assert!(body.len() > 1_000_000);
        let answer =
            http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let sink = Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    assert!(
        eventually(Duration::from_secs(30), || sink.spans().len() >= 20_000),
        "{} of 20000 arrived:\n{}",
        sink.spans().len(),
        gw.log()
    );
    assert_eq!(gw.metric("switchyard_exporter_dropped_spans_total", &[("exporter", "otlp")]), 0.0);
    let (status, log) = gw.stop();
    assert!(status.success() && !log.contains("data dropped"), "{log}");
}
