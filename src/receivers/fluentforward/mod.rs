//! The `fluentforward` receiver (alias `fluent_forward`): Fluent Forward protocol v1 over TCP
//! (PROTOCOLS.md §5.5), all four event modes (Message, Forward, PackedForward and gzip
//! CompressedPackedForward), integer and EventTime timestamps, and `chunk` acknowledgements sent
//! only once the events are handed on, and UDP heartbeats on the same port. One log record per
//! event: `fluent.tag`, `message` or `log` as the body, the other record keys as attributes.

pub(crate) mod frame;

use crate::attributes::{kv, string};
use crate::pipeline::{Batch, Intake, Request};
use crate::receivers::bad_input::BadInput;
use frame::Scan;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use rmpv::Value;
use serde::Deserialize;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FluentForwardConfig {
    pub endpoint: String,
    /// The largest message (one msgpack array, or its gzip-decompressed entries) taken.
    pub max_message_size: usize,
    /// Connections served at once (switchyard's key); more are closed at once and counted.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (switchyard's key).
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub idle_timeout: Duration,
    /// Serve TLS (Fluent Bit's `tls on`, Fluentd's `transport tls`); see `tls::server`.
    pub tls: Option<crate::tls::server::TlsServerConfig>,
}

impl Default for FluentForwardConfig {
    fn default() -> Self {
        let limits = crate::net::StreamLimits::default();
        FluentForwardConfig {
            endpoint: "localhost:24224".into(),
            max_message_size: 64 * 1024 * 1024,
            max_connections: limits.max_connections,
            idle_timeout: limits.idle_timeout,
            tls: None,
        }
    }
}

impl FluentForwardConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::net::check_endpoint(&self.endpoint).map_err(|m| ("endpoint".into(), m))?;
        if !(1024..=(1 << 30)).contains(&self.max_message_size) {
            return Err(("max_message_size".into(), "must be between 1024 and 1073741824".into()));
        }
        if self.max_connections == 0 {
            return Err(("max_connections".into(), "must be at least 1".into()));
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }

    fn limits(&self) -> crate::net::StreamLimits {
        crate::net::StreamLimits {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            ..Default::default()
        }
    }
}

/// The longest tag taken (tags are dotted names such as `app.web.access`).
const MAX_TAG: usize = 1024;

/// What one msgpack value may take once decoded: its `rmpv` form (as a map entry, the largest
/// case), the OTLP attribute it becomes, and its share of a log record.
const PER_VALUE: usize = std::mem::size_of::<(Value, Value)>()
    + std::mem::size_of::<opentelemetry_proto::tonic::common::v1::KeyValue>()
    + std::mem::size_of::<opentelemetry_proto::tonic::logs::v1::LogRecord>() / 4;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A msgpack value as an OTLP value.
fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Nil => return AnyValue { value: None },
        Value::Boolean(b) => any_value::Value::BoolValue(*b),
        Value::Integer(i) => match i.as_i64() {
            Some(n) => any_value::Value::IntValue(n),
            None => any_value::Value::DoubleValue(i.as_f64().unwrap_or(0.0)),
        },
        Value::F32(f) => any_value::Value::DoubleValue(f64::from(*f)),
        Value::F64(f) => any_value::Value::DoubleValue(*f),
        Value::String(s) => any_value::Value::StringValue(
            s.as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ),
        Value::Binary(b) | Value::Ext(_, b) => any_value::Value::BytesValue(b.clone()),
        Value::Array(a) => any_value::Value::ArrayValue(ArrayValue { values: a.iter().map(any).collect() }),
        Value::Map(m) => {
            any_value::Value::KvlistValue(KeyValueList { values: m.iter().map(|(k, v)| kv(&key(k), any(v))).collect() })
        }
    };
    AnyValue { value: Some(value) }
}

fn key(k: &Value) -> String {
    match k {
        Value::String(s) => {
            s.as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        other => other.to_string(),
    }
}

/// An event time: integer seconds, or EventTime (ext 0: u32 seconds, u32 nanoseconds, big-endian).
fn time(v: &Value) -> Result<u64, String> {
    match v {
        Value::Integer(i) => Ok(i.as_u64().unwrap_or(0).saturating_mul(1_000_000_000)),
        Value::F64(f) => Ok((f * 1e9) as u64),
        Value::Ext(0, b) if b.len() == 8 => {
            let s = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            Ok(u64::from(s) * 1_000_000_000 + u64::from(n))
        }
        other => Err(format!("an event time must be an integer or EventTime, not {other}")),
    }
}

fn record(tag: &str, time_ns: u64, record: &Value, observed: u64) -> Result<LogRecord, String> {
    let Value::Map(fields) = record else { return Err("an event record must be a map".into()) };
    let mut r = LogRecord { time_unix_nano: time_ns, observed_time_unix_nano: observed, ..Default::default() };
    r.attributes.push(kv("fluent.tag", string(tag)));
    for (k, v) in fields {
        let name = key(k);
        if (name == "message" || name == "log") && r.body.is_none() {
            r.body = Some(any(v));
        } else {
            r.attributes.push(kv(&name, any(v)));
        }
    }
    Ok(r)
}

/// One forward message as log records, and its `chunk` option (to acknowledge), if any.
/// The message is consumed as its records are built, so the two are not held whole together.
pub fn decode(message: Value, limit: usize) -> Result<(Vec<LogRecord>, Option<Value>), String> {
    let Value::Array(mut parts) = message else { return Err("a forward message must be an array".into()) };
    let tag = match parts.first() {
        Some(Value::String(s)) => s.as_str().unwrap_or("").to_string(),
        _ => return Err("a forward message starts with its tag (a string)".into()),
    };
    // Every record carries the tag: a long one would be copied into each.
    if tag.len() > MAX_TAG {
        return Err(format!("a tag of {} bytes (at most {MAX_TAG})", tag.len()));
    }
    if parts.len() < 2 {
        return Err("a forward message needs its events".into());
    }
    let observed = now_ns();
    let second = std::mem::replace(&mut parts[1], Value::Nil);
    let option_at = |i: usize| parts.get(i).and_then(|o| if let Value::Map(m) = o { Some(m.clone()) } else { None });
    let (records, option) = match &second {
        // Message: [tag, time, record, option?]
        Value::Integer(_) | Value::Ext(..) | Value::F64(_) => {
            let rec = parts.get(2).ok_or("a Message needs its record")?;
            (vec![record(&tag, time(&second)?, rec, observed)?], option_at(3))
        }
        // Forward: [tag, [[time, record], …], option?]
        Value::Array(_) => {
            let option = option_at(2);
            let Value::Array(entries) = second else { unreachable!("matched as an array") };
            let records = entries
                .into_iter()
                .map(|e| match &e {
                    Value::Array(pair) if pair.len() >= 2 => record(&tag, time(&pair[0])?, &pair[1], observed),
                    _ => Err("a Forward entry must be [time, record]".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (records, option)
        }
        // PackedForward: [tag, bin|str of concatenated [time, record], option?] (gzip: compressed)
        Value::Binary(_) | Value::String(_) => {
            let option = option_at(2);
            let bytes: &[u8] = match &second {
                Value::Binary(b) => b,
                Value::String(s) => s.as_bytes(),
                _ => &[],
            };
            let gzip = option
                .as_ref()
                .is_some_and(|o| o.iter().any(|(k, v)| key(k) == "compressed" && v.as_str() == Some("gzip")));
            let stream: Vec<u8> = if gzip {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(bytes)
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("cannot gunzip a CompressedPackedForward: {e}"))?;
                if out.len() > limit {
                    return Err(format!("a CompressedPackedForward decompresses to more than {limit} bytes"));
                }
                out
            } else {
                bytes.to_vec()
            };
            let mut records = Vec::new();
            let mut rest = &stream[..];
            // One value budget for all the entries: a small gzip payload must not inflate into
            // millions of tiny entries, each within its own budget.
            let mut budget = frame::value_budget(limit);
            while !rest.is_empty() {
                let mut scanner = frame::Scanner::with_budget(limit, budget);
                let scanned = scanner.feed(rest);
                budget = budget.saturating_sub(scanner.values());
                let len = match scanned {
                    Scan::Complete(n) => n,
                    Scan::Incomplete => return Err("a PackedForward entry is cut short".into()),
                    Scan::Invalid(m) => return Err(m),
                };
                let entry = rmpv::decode::read_value(&mut &rest[..len]).map_err(|e| format!("invalid msgpack: {e}"))?;
                match entry {
                    Value::Array(pair) if pair.len() >= 2 => {
                        records.push(record(&tag, time(&pair[0])?, &pair[1], observed)?)
                    }
                    _ => return Err("a PackedForward entry must be [time, record]".into()),
                }
                rest = &rest[len..];
            }
            (records, option)
        }
        other => return Err(format!("unrecognised forward message: {other}")),
    };
    let chunk = option.and_then(|o| o.into_iter().find(|(k, _)| key(k) == "chunk").map(|(_, v)| v));
    Ok((records, chunk))
}

/// Binds the listener and serves it.
pub async fn start(
    cfg: FluentForwardConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    listeners: crate::net::Listeners,
) -> Result<Vec<JoinHandle<()>>, String> {
    let limits = cfg.limits().counted(intake.telemetry()).with_tls(cfg.tls.as_ref())?;
    let listener = listeners.tcp(&cfg.endpoint).await?;
    let local = listener.local_addr().map_err(|e| format!("{}: {e}", cfg.endpoint))?;
    tracing::info!(receiver = intake.receiver(), endpoint = %local, tls = limits.tls.is_some(), "Fluent Forward listening");
    // Heartbeats come over UDP on the same address and port.
    let udp = listeners.udp(&local.to_string()).await.map_err(|e| format!("{e} (UDP, heartbeats)"))?;
    Ok(vec![
        tokio::spawn(serve(listener, limits, cfg.max_message_size, intake, shutdown.clone())),
        tokio::spawn(heartbeats(udp, shutdown)),
    ])
}

/// Answers every UDP heartbeat with a single NUL byte, as Fluentd's `in_forward` does, so that
/// senders with `heartbeat_type udp` see this server as alive.
async fn heartbeats(socket: tokio::net::UdpSocket, shutdown: CancellationToken) {
    let mut buf = [0u8; 1024];
    loop {
        let from = tokio::select! {
            r = socket.recv_from(&mut buf) => match r { Ok((_, from)) => from, Err(_) => continue },
            _ = shutdown.cancelled() => return,
        };
        let _ = socket.send_to(b"\0", from).await;
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    limits: crate::net::StreamLimits,
    limit: usize,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
) {
    let bad = Arc::new(BadInput::new(intake.clone(), "tcp"));
    let stop = shutdown.clone();
    let serve_one = move |stream: crate::net::IdleStream| {
        let (intake, bad, stop) = (intake.clone(), bad.clone(), stop.clone());
        async move { connection(stream, limit, &intake, &bad, stop).await }
    };
    crate::net::serve_streams(listener, limits, shutdown, Duration::from_secs(2), serve_one).await;
}

async fn connection(
    mut stream: crate::net::IdleStream,
    limit: usize,
    intake: &Intake,
    bad: &BadInput,
    stop: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Resumes where it stopped as a message's bytes arrive: one pass per message.
    let mut scanner = frame::Scanner::new(limit);
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = stop.cancelled() => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let (len, values) = match scanner.feed(&buf) {
                Scan::Complete(len) => {
                    let values = scanner.values();
                    scanner = frame::Scanner::new(limit);
                    (len, values)
                }
                Scan::Incomplete => break,
                Scan::Invalid(m) => {
                    // The stream cannot be resynchronised: close the connection.
                    bad.report("malformed", &format!("closed a Fluent Forward connection: {m}"));
                    return;
                }
            };
            // The message's decoded size, claimed before anything is built. (A compressed
            // PackedForward's entries are bounded by the same value budget as they decompress.)
            // Strings are copied twice (into the msgpack values, then into the records), and
            // each record (three values at least) gets a copy of the tag.
            let per_value = PER_VALUE + frame::tag_len(&buf[..len]).min(MAX_TAG) / 3;
            let estimate = len.saturating_mul(2).saturating_add(values.saturating_mul(per_value));
            let claimed = loop {
                match intake.claim_decode(estimate) {
                    Ok(claims) => break Some(claims),
                    Err(crate::pipeline::DecodeRefusal::Busy(_)) if stop.is_cancelled() => return,
                    Err(crate::pipeline::DecodeRefusal::Busy(_)) => {
                        // Not read on meanwhile: the sender waits (TCP backpressure).
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(refusal) => {
                        // No ack: a sender that asked for one will not see this chunk taken.
                        bad.report("too_large", &format!("dropped a Fluent Forward message: {}", refusal.message()));
                        break None;
                    }
                }
            };
            let Some(decoding) = claimed else {
                buf.drain(..len);
                continue;
            };
            let message = rmpv::decode::read_value(&mut &buf[..len]);
            buf.drain(..len);
            let (records, ack) =
                match message.map_err(|e| format!("invalid msgpack: {e}")).and_then(|m| decode(m, limit)) {
                    Ok(d) => d,
                    Err(e) => {
                        bad.report("malformed", &format!("dropped a Fluent Forward message: {e}"));
                        continue;
                    }
                };
            if !records.is_empty() {
                let request = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                        ..Default::default()
                    }],
                };
                // Wait for room (the sender waits for its ack meanwhile) rather than drop.
                let batch = Batch::from_request(Request::Logs(request));
                drop(decoding);
                loop {
                    match intake.submit("tcp", batch.clone()).await {
                        Ok(()) => break,
                        Err(r) if r.retryable && !stop.is_cancelled() => {
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                        Err(r) => {
                            bad.warn("refused", &format!("dropped Fluent Forward events: {}", r.message));
                            // No ack: the sender keeps the chunk and sends it again.
                            return;
                        }
                    }
                }
            }
            if let Some(chunk_id) = ack {
                let mut out = Vec::new();
                let answer = Value::Map(vec![(Value::from("ack"), chunk_id)]);
                if rmpv::encode::write_value(&mut out, &answer).is_err() || stream.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The `fluentforward` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<FluentForwardConfig>(
    "fluentforward",
    &[crate::signal::Signal::Logs],
    "Fluent Forward protocol v1 over TCP (alias fluent_forward)",
)
.aliases(&["fluent_forward"]);

impl crate::pipeline::component::ReceiverSettings for FluentForwardConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        FluentForwardConfig::validate(self).map_err(Into::into)
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop, ctx.listeners))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn entry(secs: u32, nanos: u32, msg: &str) -> Value {
        let mut t = secs.to_be_bytes().to_vec();
        t.extend_from_slice(&nanos.to_be_bytes());
        Value::Array(vec![
            Value::Ext(0, t),
            Value::Map(vec![(Value::from("log"), Value::from(msg)), (Value::from("stream"), Value::from("stdout"))]),
        ])
    }

    #[test]
    fn all_four_modes_decode() {
        let message = Value::Array(vec![
            Value::from("app"),
            Value::from(1_700_000_000u64),
            Value::Map(vec![(Value::from("message"), Value::from("hi")), (Value::from("n"), Value::from(3))]),
        ]);
        let (r, ack) = decode(message.clone(), 1 << 20).unwrap();
        assert_eq!((r.len(), r[0].time_unix_nano, ack), (1, 1_700_000_000_000_000_000, None));
        assert_eq!(r[0].body, Some(AnyValue { value: Some(any_value::Value::StringValue("hi".into())) }));
        assert!(r[0].attributes.contains(&kv("fluent.tag", string("app"))));
        let forward = Value::Array(vec![Value::from("app"), Value::Array(vec![entry(1, 5, "a"), entry(2, 6, "b")])]);
        let (r, _) = decode(forward.clone(), 1 << 20).unwrap();
        assert_eq!(r.iter().map(|x| x.time_unix_nano).collect::<Vec<_>>(), vec![1_000_000_005, 2_000_000_006]);
        let packed: Vec<u8> = [entry(1, 0, "a"), entry(2, 0, "b"), entry(3, 0, "c")].iter().flat_map(encode).collect();
        let chunk = Value::from("chunk-1");
        let pf = Value::Array(vec![
            Value::from("app"),
            Value::Binary(packed.clone()),
            Value::Map(vec![(Value::from("chunk"), chunk.clone())]),
        ]);
        let (r, ack) = decode(pf.clone(), 1 << 20).unwrap();
        assert_eq!((r.len(), ack), (3, Some(chunk.clone())));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&packed).unwrap();
        let cpf = Value::Array(vec![
            Value::from("app"),
            Value::Binary(gz.finish().unwrap()),
            Value::Map(vec![(Value::from("compressed"), Value::from("gzip")), (Value::from("chunk"), chunk)]),
        ]);
        let (r, _) = decode(cpf.clone(), 1 << 20).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].body, Some(AnyValue { value: Some(any_value::Value::StringValue("c".into())) }));
    }

    #[test]
    fn packed_entries_share_one_value_budget() {
        // 10,000 entries of [int, {}] (3 values each) in a PackedForward: 30,000 values, over
        // the budget of a 64 KiB limit (4,096), though each entry alone is tiny.
        let mut stream = Vec::new();
        for i in 0..10_000u32 {
            let entry = Value::Array(vec![Value::from(i), Value::Map(vec![])]);
            rmpv::encode::write_value(&mut stream, &entry).unwrap();
        }
        let message = Value::Array(vec![Value::from("t"), Value::Binary(stream.clone())]);
        let err = decode(message.clone(), 64 * 1024).unwrap_err();
        assert!(err.contains("values"), "{err}");
        assert_eq!(decode(message.clone(), 1 << 20).unwrap().0.len(), 10_000, "within a larger budget");
    }

    #[test]
    fn bad_messages_say_why() {
        assert!(decode(Value::from(1), 100).is_err());
        assert!(decode(Value::Array(vec![Value::from(1)]), 100).is_err());
        assert!(decode(Value::Array(vec![Value::from("t"), Value::from(1), Value::from("not a map")]), 100).is_err());
    }
}
