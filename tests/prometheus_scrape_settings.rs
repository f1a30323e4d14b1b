//! Scrape settings as a user relies on them, against an in-test target (the settings are about
//! what switchyard sends and does, so a target that checks the request stands in here): basic
//! auth, `honor_labels` (a scraped `job` label becomes `exported_job`), `metric_relabel_configs`
//! dropping a metric, target labels from `static_configs`, `sample_limit` failing the scrape,
//! and `file_sd_configs` picking up a target written after the start.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// A target that answers only requests with `Authorization: Basic dXNlcjpwYXNz` (user:pass).
fn target() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if line.to_ascii_lowercase().starts_with("authorization: basic dxnlcjpwyxnz") {
                    authorized = true;
                }
                line.clear();
            }
            let (status, body) = if authorized {
                ("200 OK", "# TYPE kept gauge\nkept{job=\"inner\"} 7\n# TYPE dropme gauge\ndropme 1\n")
            } else {
                ("401 Unauthorized", "")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
        }
    });
    port
}

/// A gauge point as exported: its attributes, its value, its job (`service.name`).
type GaugePoint = (Vec<(String, String)>, serde_json::Value, String);

fn metric_points(path: &std::path::Path, name: &str) -> Vec<GaugePoint> {
    let mut out = Vec::new();
    for line in json_lines(path) {
        for rm in line["resourceMetrics"].as_array().cloned().unwrap_or_default() {
            let job = rm["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
                .and_then(|kv| kv["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_string();
            for sm in rm["scopeMetrics"].as_array().cloned().unwrap_or_default() {
                for m in sm["metrics"].as_array().cloned().unwrap_or_default() {
                    if m["name"] != name {
                        continue;
                    }
                    for p in m["gauge"]["dataPoints"].as_array().cloned().unwrap_or_default() {
                        let attrs = p["attributes"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|kv| {
                                (
                                    kv["key"].as_str().unwrap().to_string(),
                                    kv["value"]["stringValue"].as_str().unwrap_or("").to_string(),
                                )
                            })
                            .collect();
                        out.push((attrs, p["asDouble"].clone(), job.clone()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn auth_labels_relabeling_limits_and_file_discovery_apply() {
    let port = target();
    let dir = tempfile::tempdir().unwrap();
    let sd_file = dir.path().join("targets.json");
    std::fs::write(&sd_file, "[]").unwrap();
    let gw = Gateway::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: app
          scrape_interval: 1s
          basic_auth:
            username: user
            password: pass
          metric_relabel_configs:
            - source_labels: [__name__]
              regex: dropme
              action: drop
          static_configs:
            - targets: ["127.0.0.1:{port}"]
              labels:
                team: payments
        - job_name: noauth
          scrape_interval: 1s
          static_configs:
            - targets: ["127.0.0.1:{port}"]
        - job_name: limited
          scrape_interval: 1s
          sample_limit: 1
          basic_auth:
            username: user
            password: pass
          static_configs:
            - targets: ["127.0.0.1:{port}"]
        - job_name: discovered
          scrape_interval: 1s
          basic_auth:
            username: user
            password: pass
          file_sd_configs:
            - files: ["{sd}"]
exporters:
  file:
    path: {{dir}}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file]
"#,
        sd = sd_file.display()
    ));
    let path = gw.path("out.jsonl");
    let up =
        |job: &str| metric_points(&path, "up").into_iter().filter(|(_, _, j)| j == job).map(|(_, v, _)| v).next_back();
    assert!(
        eventually(Duration::from_secs(15), || up("app").is_some()
            && up("noauth").is_some()
            && up("limited").is_some()),
        "{}",
        gw.log()
    );
    assert_eq!(up("app"), Some(serde_json::json!(1.0)));
    assert_eq!(up("noauth"), Some(serde_json::json!(0.0)), "401 without credentials");
    assert_eq!(up("limited"), Some(serde_json::json!(0.0)), "2 samples over sample_limit 1");
    assert!(gw.log().contains("over sample_limit 1"), "{}", gw.log());
    let kept = metric_points(&path, "kept");
    let (attrs, value, job) = kept.iter().find(|(_, _, j)| j == "app").expect("kept from job app");
    assert_eq!(value, &serde_json::json!(7.0));
    assert_eq!(job, "app", "the target's job wins");
    assert!(attrs.contains(&("exported_job".to_string(), "inner".to_string())), "{attrs:?}");
    assert!(attrs.contains(&("team".to_string(), "payments".to_string())), "{attrs:?}");
    assert!(metric_points(&path, "dropme").iter().all(|(_, _, j)| j != "app"), "dropped by metric_relabel_configs");
    // A target written into the file after the start is picked up.
    assert!(up("discovered").is_none());
    std::fs::write(&sd_file, format!(r#"[{{"targets": ["127.0.0.1:{port}"]}}]"#)).unwrap();
    assert!(eventually(Duration::from_secs(15), || up("discovered") == Some(serde_json::json!(1.0))), "{}", gw.log());
}
