//! The `memory_limiter` as the admission budget: a flood against a backend that refuses for a
//! while (the strict in-test OTLP/HTTP backend, scripted to answer 503 first) with a 64 MiB
//! limit. Switchyard's resident memory, read from /proc while the flood runs, stays under the
//! limit; clients are told to retry (503 with Retry-After); and every span that was
//! acknowledged reaches the backend once it recovers.

mod common;

use common::vendor::Vendor;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[test]
fn a_flood_stays_under_the_limit_and_every_acknowledged_span_arrives() {
    let vendor = Vendor::start(0, None);
    let refusals: Vec<(u16, &[(&str, &str)])> = vec![(503, &[]); 400];
    vendor.script(&refusals);
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
processors:
  memory_limiter:
    check_interval: 50ms
    limit_mib: 64
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{vendor}
    sending_queue:
      queue_size: 100000
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 400ms
      max_elapsed_time: 0s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [otlphttp]
"#,
        vendor = vendor.port
    ));
    let limit = 64 * 1024 * 1024;
    let pid = gw.pid();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(Mutex::new(0u64));
    let watcher = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let r = rss_bytes(pid);
                let mut p = peak.lock().unwrap();
                *p = (*p).max(r);
                drop(p);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // Two clients send 2,000-span requests as fast as they are answered, for 6 seconds.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (acknowledged, refused, port) = (acknowledged.clone(), refused.clone(), gw.http);
            std::thread::spawn(move || {
                let mut n = 0;
                while started.elapsed() < Duration::from_secs(6) {
                    let prefix = format!("c{c}-r{n}-");
                    let body = traces_body(spans(&prefix, 2000));
                    n += 1;
                    let Ok(r) =
                        http_request("POST", port, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body)
                    else {
                        continue;
                    };
                    match r.status {
                        200 => acknowledged.lock().unwrap().extend((0..2000).map(|i| format!("{prefix}{i}"))),
                        503 => {
                            assert!(r.header("retry-after").is_some(), "a refusal says when to retry");
                            *refused.lock().unwrap() += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("unexpected answer {other}: {}", r.text()),
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let peak_during_flood = *peak.lock().unwrap();
    let refused = *refused.lock().unwrap();
    let mut acknowledged = acknowledged.lock().unwrap().clone();
    acknowledged.sort();
    assert!(refused > 0, "the flood met the limit (acknowledged {} spans)", acknowledged.len());
    assert!(!acknowledged.is_empty());
    // Every acknowledged span arrives once the backend recovers.
    let delivered = eventually(Duration::from_secs(90), || {
        let mut got = vendor.accepted_spans();
        got.dedup();
        acknowledged.iter().all(|a| got.binary_search(a).is_ok())
    });
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let peak_all = *peak.lock().unwrap();
    assert!(
        delivered,
        "acknowledged {} spans; delivered {}\n{}",
        acknowledged.len(),
        vendor.accepted_spans().len(),
        gw.log()
    );
    assert!(
        peak_all < limit,
        "resident memory peaked at {} MiB (flood {} MiB), over the 64 MiB limit\n{}",
        peak_all >> 20,
        peak_during_flood >> 20,
        gw.log()
    );
    eprintln!(
        "memory_limiter: peak RSS {} MiB, {} requests refused, {} spans acknowledged and delivered",
        peak_all >> 20,
        refused,
        acknowledged.len()
    );
}
