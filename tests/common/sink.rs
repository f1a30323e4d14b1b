//! The independent OTLP/gRPC backend of the exporter tests: the Python grpcio server with the
//! opentelemetry-proto servicer (tests/peers/python/otlp_sink.py), standing in for Jaeger, which
//! takes OTLP on 4317 but cannot be installed here.

use super::{free_port, json_lines, repo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The grpcio backend, stopped when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl Sink {
    pub fn start(python: &Path, dir: &Path, args: &[&str]) -> Sink {
        Sink::start_on(python, dir, free_port(), args)
    }

    /// As `start`, on `port`: a sink started again on the port of one stopped before appends to
    /// the same record, so that its `lines` hold what both received.
    pub fn start_on(python: &Path, dir: &Path, port: u16, args: &[&str]) -> Sink {
        let out = dir.join(format!("sink-{port}.jsonl"));
        let mut child = Command::new(python)
            .arg(repo().join("tests/peers/python/otlp_sink.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start otlp_sink.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("sink output");
        assert_eq!(line.trim(), "ready", "otlp_sink.py did not start");
        Sink { child, port, out }
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        json_lines(&self.out)
    }

    pub fn spans(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lines()
            .iter()
            .flat_map(|l| l["spans"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// The ids (hex) of every span received, in the order received, repeats included.
    pub fn span_ids(&self) -> Vec<String> {
        self.lines()
            .iter()
            .flat_map(|l| l["span_ids"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    }

    /// The bodies of every log record received (as strings), in the order received.
    pub fn log_bodies(&self) -> Vec<String> {
        self.lines()
            .iter()
            .flat_map(|l| l["logs"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    }
}

impl Sink {
    /// Every request the sink answered OK, decoded.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.lines()
            .iter()
            .filter_map(|l| l["request_hex"].as_str())
            .map(|h| {
                let bytes: Vec<u8> =
                    (0..h.len() / 2).map(|i| u8::from_str_radix(&h[i * 2..i * 2 + 2], 16).unwrap()).collect();
                ExportTraceServiceRequest::decode(&bytes[..]).expect("the sink wrote a valid request")
            })
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
