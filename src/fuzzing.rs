//! Entry points for the fuzz targets in `fuzz/`: one thin function per decoder that takes bytes
//! from the network or a file, calling it as its receiver (or client) does, so the decoders can
//! stay private. Not an API: nothing outside `fuzz/` and its regression tests should use it.

use crate::pipeline::{Batch, Intake, Request, Route, Signal};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// What one input came to: items taken, or why it was refused.
pub type Outcome = Result<usize, String>;

/// OTLP protobuf, both ways the receiver and the pipeline read it: the allocation-free scan the
/// receiver runs on arrival, and the full decode a processor triggers later. They must agree:
/// what the scan passes must decode, with as many items; what it refuses must not decode.
/// Panics (the fuzzer's finding) when they disagree.
pub fn otlp_protobuf(signal: Signal, bytes: &[u8]) -> Outcome {
    let scanned = crate::receivers::otlp::scan::scan(signal, bytes);
    // prost's recursion limit is lifted (Cargo.toml): the scan is what bounds nesting (the
    // receiver never decodes what it refused). The scan walks in the decoder's order, so a
    // refusal for any other reason happened no deeper than its limit: safe to compare.
    let safe_to_decode = !matches!(&scanned, Err(e) if e.contains("recursion limit"));
    if safe_to_decode {
        let decoded = Request::decode(signal, bytes);
        match (&scanned, &decoded) {
            (Ok(s), Ok(r)) => assert_eq!(s.items, r.item_count(), "scan and decode count different items"),
            (Ok(_), Err(e)) => panic!("the scan passed a request the decoder refuses: {}", e.reason),
            (Err(e), Ok(_)) => panic!("the scan refused a request the decoder takes: {e}"),
            (Err(_), Err(_)) => {}
        }
    }
    let taken =
        crate::receivers::otlp::decode_protobuf(signal, bytes::Bytes::copy_from_slice(bytes)).map_err(|e| e.0)?;
    let batch = taken.batch;
    // What a processor does with an encoded batch: decode it (which the scan promised works).
    if batch.is_encoded() {
        let items = batch.items();
        let request = batch.request().map_err(|e| e.reason.clone())?;
        assert_eq!(request.item_count(), items, "an encoded batch decodes to another item count");
    }
    Ok(batch.items())
}

/// OTLP/JSON, as the HTTP receiver decodes it.
pub fn otlp_json(signal: Signal, body: &[u8]) -> Outcome {
    let decoded = crate::receivers::otlp::decode_json(signal, body).map_err(|e| e.0)?;
    Ok(decoded.batch.items())
}

/// Jaeger Thrift: `compact`/`binary` agent datagrams (UDP 6831/6832), or with neither a collector
/// HTTP body (a bare Thrift-binary `Batch`); translated to OTLP as the receiver does.
pub fn jaeger_thrift(agent: Option<bool>, bytes: &[u8]) -> Outcome {
    use crate::receivers::jaeger::thrift::{Protocol, decode_agent_message, decode_batch};
    let batch = match agent {
        Some(true) => decode_agent_message(Protocol::Compact, bytes)?,
        Some(false) => decode_agent_message(Protocol::Binary, bytes)?,
        None => decode_batch(bytes)?,
    };
    let request = crate::receivers::jaeger::translate::batch_to_otlp(batch);
    Ok(Request::Traces(request).item_count())
}

/// Jaeger api_v2 protobuf (`PostSpans`), translated to OTLP.
pub fn jaeger_proto(bytes: &[u8]) -> Outcome {
    let batch = crate::receivers::jaeger::proto::decode_post_spans(bytes)?;
    let request = crate::receivers::jaeger::translate::batch_to_otlp(batch);
    Ok(Request::Traces(request).item_count())
}

/// Zipkin v2 spans, JSON or protobuf, translated to OTLP (with or without `parse_string_tags`).
pub fn zipkin(protobuf: bool, parse_string_tags: bool, body: &[u8]) -> Outcome {
    use crate::receivers::zipkin::{json, proto, translate};
    let spans = if protobuf { proto::decode(body)? } else { json::decode(body)? };
    let request = translate::to_otlp(spans, parse_string_tags);
    Ok(Request::Traces(request).item_count())
}

/// A Prometheus exposition (text 0.0.4 or OpenMetrics), parsed and translated to OTLP as a
/// scrape is.
pub fn prometheus_exposition(openmetrics: bool, body: &[u8]) -> Outcome {
    use crate::receivers::prometheus::parse::{Format, parse};
    use crate::receivers::prometheus::translate::{SeriesState, Target, to_otlp};
    let format = if openmetrics { Format::OpenMetrics } else { Format::Text };
    let families = parse(body, format).map_err(|e| e.to_string())?;
    let labels = vec![("job".to_string(), "fuzz".to_string()), ("instance".to_string(), "host:9100".to_string())];
    let target = Target { labels: &labels, scheme: "http" };
    let mut state = SeriesState::default();
    let request = to_otlp(&families, &target, 1_700_000_000_000_000_000, true, &mut state, &[("up", "", 1.0)]);
    // A second scrape of the same body: start times and staleness come into play.
    let again = to_otlp(&families, &target, 1_700_000_015_000_000_000, true, &mut state, &[]);
    Ok(Request::Metrics(request).item_count() + Request::Metrics(again).item_count())
}

/// A remote-write body (snappy block of a 1.0 `WriteRequest` or 2.0 `Request`), decoded and
/// translated as the receiver does, with a `limit` on the decompressed size.
pub fn remote_write(v2: bool, compressed: &[u8], limit: usize) -> Outcome {
    use crate::receivers::prometheusremotewrite::decode::MetaCache;
    use crate::receivers::prometheusremotewrite::http::{BodyFault, decode_body, to_request};
    use crate::receivers::prometheusremotewrite::{V1, V2};
    let meta = MetaCache::default();
    let kind = if v2 { V2 } else { V1 };
    let decoded = match decode_body(kind, compressed, limit, &meta) {
        Ok(d) => d,
        Err(BodyFault::TooLarge) => return Err("too large".into()),
        Err(BodyFault::Bad(e)) => return Err(e),
    };
    let mut states = HashMap::new();
    let request = to_request(&decoded, &mut states);
    Ok(Request::Metrics(request).item_count())
}

/// One syslog message (a UDP datagram), RFC 5424 or RFC 3164 (read in `location`, at `now_s`).
pub fn syslog_message(rfc5424: bool, location: &str, now_s: i64, datagram: &[u8]) -> Outcome {
    use crate::receivers::syslog::{location::Location, parse, to_otlp};
    let text = String::from_utf8_lossy(datagram);
    let line = text.trim_end_matches(['\r', '\n', '\0']);
    let message =
        if rfc5424 { parse::rfc5424(line)? } else { parse::rfc3164(line, &Location::parse(location)?, now_s)? };
    Ok(Request::Logs(to_otlp(vec![message])).item_count())
}

/// A syslog TCP connection (octet-counted or newline framing) carrying `stream`, read in pieces
/// of `piece` bytes (at least 1), with frames up to `max` bytes; returns the records taken.
pub fn syslog_tcp(rfc5424: bool, max: usize, piece: usize, stream: &[u8]) -> Outcome {
    use crate::receivers::syslog::{Parser, Protocol, connection, location::Location};
    let parser = Parser {
        protocol: if rfc5424 { Protocol::Rfc5424 } else { Protocol::Rfc3164 },
        location: Location::parse("UTC")?,
    };
    let (intake, mut taken) = intake();
    let bad = crate::receivers::bad_input::BadInput::new(intake.clone(), "tcp");
    let reader = Pieces { data: stream, piece: piece.max(1) };
    runtime().block_on(connection(reader, &parser, max.max(1), &intake, &bad, Default::default()));
    Ok(count(&mut taken))
}

/// A Fluent Forward connection carrying `stream`, read in pieces of `piece` bytes: framed by the
/// msgpack scanner, each message decoded into log records, as the receiver does (acks aside).
/// The scanner and the msgpack decoder must agree on where a message ends. Returns the
/// records taken; an error when the connection would be closed.
pub fn fluent_forward(limit: usize, piece: usize, stream: &[u8]) -> Outcome {
    use crate::receivers::fluentforward::decode;
    use crate::receivers::fluentforward::frame::{Scan, Scanner};
    let limit = limit.max(1);
    let mut buf: Vec<u8> = Vec::new();
    let mut scanner = Scanner::new(limit);
    let mut records = 0;
    for chunk in stream.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            let len = match scanner.feed(&buf) {
                Scan::Complete(len) => {
                    scanner = Scanner::new(limit);
                    len
                }
                Scan::Incomplete => break,
                Scan::Invalid(m) => return Err(m),
            };
            let mut rest = &buf[..len];
            let message = rmpv::decode::read_value(&mut rest);
            if message.is_ok() {
                assert!(rest.is_empty(), "the scanner saw {len} bytes, msgpack read {}", len - rest.len());
            }
            buf.drain(..len);
            if let Ok((r, _ack)) = message.map_err(|e| e.to_string()).and_then(|m| decode(m, limit)) {
                records += r.len();
            }
        }
    }
    Ok(records)
}

/// The Kafka consumer-group responses switchyard reads itself (the rest goes through rskafka):
/// `api` picks which one `body` is answered as.
pub fn kafka_response(api: u8, body: &[u8]) -> Outcome {
    use crate::kafka::{assign, group};
    let err = |e: group::GroupError| e.message;
    match api % 9 {
        0 => group::read_find_coordinator(body, "fuzz").map(|(host, _)| host.len()),
        1 => group::read_join(body).map_err(err).map(|a| match a {
            group::JoinAnswer::Joined(j) => {
                // The leader reads every member's subscription.
                j.members.iter().filter(|(_, m)| assign::read_subscription(m).is_ok()).count()
            }
            group::JoinAnswer::MemberIdRequired(id) => id.len(),
        }),
        2 => {
            group::read_sync(body).map_err(err).and_then(|a| assign::read_assignment(&a, "otlp_logs")).map(|p| p.len())
        }
        3 => group::read_ack(body, "Heartbeat").map_err(err).map(|_| 0),
        4 => group::read_offset_fetch(body, "otlp_logs").map(|m| m.len()),
        5 => group::read_offset_commit(body, "otlp_logs").map_err(err).map(|_| 0),
        6 => assign::read_subscription(body).map(|t| t.len()),
        7 => assign::read_assignment(body, "otlp_spans").map(|p| p.len()),
        _ => group::read_ack(body, "LeaveGroup").map_err(err).map(|_| 0),
    }
}

/// The configuration loader: YAML parsing, `${env:…}` expansion, merging of several files
/// (later ones override), component decoding and validation.
pub fn config(sources: &[(String, String)]) -> Outcome {
    let config = crate::model::load_sources(sources).map_err(|e| e.to_string())?;
    Ok(config.pipelines.len())
}

/// One process-wide runtime for the async readers (building one per input would dominate).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            // The fuzzing harness cannot run without it; this is not input-driven.
            Err(e) => panic!("cannot build a tokio runtime: {e}"),
        }
    })
}

/// An intake with one pipeline per signal and no exporter queues: everything is taken.
fn intake() -> (Arc<Intake>, mpsc::UnboundedReceiver<Batch>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let route = || vec![Route { input: tx.clone(), queues: Vec::new() }];
    (Arc::new(Intake::standalone("fuzz".into(), [route(), route(), route()])), rx)
}

fn count(rx: &mut mpsc::UnboundedReceiver<Batch>) -> usize {
    let mut items = 0;
    while let Ok(b) = rx.try_recv() {
        items += b.items();
    }
    items
}

/// A stream that hands out its bytes `piece` at a time, as a slow sender's would arrive.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod seeds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facade_takes_the_fixtures() {
        let pb = crate::pipeline::tests_support::fixture("python-sdk-traces.pb");
        assert_eq!(otlp_protobuf(Signal::Traces, &pb), Ok(1));
        let json = crate::pipeline::tests_support::fixture("node-sdk-logs.json");
        assert!(otlp_json(Signal::Logs, &json).is_ok_and(|n| n > 0));
        let stream = b"<34>1 2003-10-11T22:14:15.003Z host su - ID47 - one\n17 <13>1 - - - - - -";
        assert_eq!(syslog_tcp(true, 1024, 3, stream), Ok(2));
        assert!(prometheus_exposition(false, b"# TYPE up gauge\nup 1\n").is_ok_and(|n| n >= 2));
    }
}
