//! `switchyard top`: per-component rates of a running switchyard in the terminal, like
//! `vector top`. It reads the status page's `/status.json` on the self-metrics address (local
//! only by default) every second and prints each pipeline's receivers, processors and
//! exporters with items per second, totals, queue fill and exporter state.

use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// GETs `/status.json` from `address` (`host:port`).
async fn fetch(address: &str) -> Result<Value, String> {
    let get = async {
        let resp = super::local_client::get(address, "/status.json").await?;
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{address}: not a status answer: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(5), get).await.map_err(|_| format!("{address}: no answer within 5 s"))?
}

/// The table of one sample, with rates against `previous` (taken `dt` earlier).
pub fn table(now: &Value, previous: Option<&Value>, dt: f64) -> String {
    let mut before: HashMap<String, f64> = HashMap::new();
    let key = |p: &Value, kind: &str, c: &Value, field: &str| {
        format!("{}/{kind}/{}/{field}", p["id"].as_str().unwrap_or(""), c["id"].as_str().unwrap_or(""))
    };
    let counts: &[(&str, &[&str])] = &[
        ("receivers", &["accepted", "refused"]),
        ("processors", &["dropped"]),
        ("exporters", &["sent", "failed", "dropped"]),
    ];
    if let Some(prev) = previous {
        for p in prev["pipelines"].as_array().into_iter().flatten() {
            for (kind, fields) in counts {
                for c in p[*kind].as_array().into_iter().flatten() {
                    for f in *fields {
                        before.insert(key(p, kind, c, f), c[*f].as_f64().unwrap_or(0.0));
                    }
                }
            }
        }
    }
    let rate = |p: &Value, kind: &str, c: &Value, f: &str| {
        let now = c[f].as_f64().unwrap_or(0.0);
        match before.get(&key(p, kind, c, f)) {
            Some(b) if dt > 0.0 => ((now - b) / dt).max(0.0),
            _ => 0.0,
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "{:<34} {:>10} {:>10} {:>12} {:>8}  STATE", "COMPONENT", "IN/s", "OUT/s", "TOTAL", "QUEUE");
    for p in now["pipelines"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "pipeline {}", p["id"].as_str().unwrap_or(""));
        for c in p["receivers"].as_array().into_iter().flatten() {
            let name = format!("  receiver {}", c["id"].as_str().unwrap_or(""));
            let refused = rate(p, "receivers", c, "refused");
            let state = if refused > 0.0 { format!("refusing {refused:.0}/s") } else { String::new() };
            let _ = writeln!(
                out,
                "{name:<34} {:>10.1} {:>10} {:>12} {:>8}  {state}",
                rate(p, "receivers", c, "accepted"),
                "",
                c["accepted"].as_f64().unwrap_or(0.0),
                ""
            );
        }
        for c in p["processors"].as_array().into_iter().flatten() {
            let name = format!("  processor {}", c["id"].as_str().unwrap_or(""));
            let dropped = rate(p, "processors", c, "dropped");
            let state = if dropped > 0.0 { format!("dropping {dropped:.0}/s") } else { String::new() };
            let _ = writeln!(out, "{name:<34} {:>10} {:>10} {:>12} {:>8}  {state}", "", "", "", "");
        }
        for c in p["exporters"].as_array().into_iter().flatten() {
            let name = format!("  exporter {}", c["id"].as_str().unwrap_or(""));
            let cap = c["queue_capacity"].as_f64().unwrap_or(0.0);
            let fill = if cap > 0.0 {
                format!("{:.1}%", 100.0 * c["queue_size"].as_f64().unwrap_or(0.0) / cap)
            } else {
                "-".into()
            };
            let mut state = c["state"].as_str().unwrap_or("").to_string();
            if let Some(e) = c["error"].as_str().filter(|e| !e.is_empty()) {
                // A backend's text reaches the terminal: no control characters (escape sequences).
                let short: String = e.chars().take(80).collect();
                let _ = write!(state, ": {}", super::local_client::printable(&short));
            }
            let _ = writeln!(
                out,
                "{name:<34} {:>10} {:>10.1} {:>12} {fill:>8}  {state}",
                "",
                rate(p, "exporters", c, "sent"),
                c["sent"].as_f64().unwrap_or(0.0)
            );
        }
    }
    out
}

/// Prints the table every second until interrupted; with `samples`, that many tables only.
pub async fn run(address: &str, samples: Option<usize>) -> Result<(), String> {
    let mut previous: Option<(Value, Instant)> = None;
    let clear = std::io::IsTerminal::is_terminal(&std::io::stdout()) && samples.is_none();
    let mut printed = 0;
    let mut misses = 0;
    loop {
        // A miss or two (switchyard reloading its self-metrics listener) is waited out.
        let now = match fetch(address).await {
            Ok(v) => {
                misses = 0;
                v
            }
            Err(e) if misses >= 3 || previous.is_none() => return Err(e),
            Err(_) => {
                misses += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let at = Instant::now();
        if let Some((prev, then)) = &previous {
            let t = table(&now, Some(prev), at.duration_since(*then).as_secs_f64());
            if clear {
                print!("\x1b[2J\x1b[H");
            }
            println!("switchyard top — {address} (every second; Ctrl-C to quit)\n{t}");
            printed += 1;
            if samples.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
        previous = Some((now, at));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
