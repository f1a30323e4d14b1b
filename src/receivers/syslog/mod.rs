//! The `syslog` receiver: RFC 5424 or RFC 3164 messages over UDP (one per datagram) and TCP
//! (octet-counted `<len> <msg>` frames, or one message per line, RFC 6587), turned into OTLP
//! log records per PROTOCOLS.md §5.4: `host.name`/`service.name` on the resource, severity
//! numbers, `syslog.*` attributes and structured data.

pub(crate) mod location;
pub mod parse;

use crate::attributes::{int, kv, string};
use crate::pipeline::{Batch, Intake, Request};
use crate::receivers::bad_input::BadInput;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parse::Message;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub listen_address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub listen_address: String,
    /// TLS (RFC 5425): the frames are the same, inside TLS.
    #[serde(default)]
    pub tls: Option<crate::tls::server::TlsServerConfig>,
    /// Connections served at once (switchyard's key); more are closed at once and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (switchyard's key).
    #[serde(default = "default_idle_timeout", deserialize_with = "crate::config::deserialize_duration")]
    pub idle_timeout: Duration,
}

fn default_max_connections() -> usize {
    crate::net::StreamLimits::default().max_connections
}

fn default_idle_timeout() -> Duration {
    crate::net::StreamLimits::default().idle_timeout
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub protocol: Option<Protocol>,
    /// RFC 3164 time zone: `UTC` or a fixed offset such as `+02:00`.
    pub location: String,
    pub udp: Option<ListenConfig>,
    pub tcp: Option<TcpConfig>,
    /// The longest message taken (longer TCP frames or lines are skipped and counted).
    pub max_log_size: usize,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig { protocol: None, location: "UTC".into(), udp: None, tcp: None, max_log_size: 1024 * 1024 }
    }
}

impl SyslogConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.protocol.is_none() {
            return Err(("protocol".into(), "is required: rfc5424 or rfc3164".into()));
        }
        if self.udp.is_none() && self.tcp.is_none() {
            return Err(("udp".into(), "give udp.listen_address, tcp.listen_address or both".into()));
        }
        let addresses = [
            ("udp", self.udp.as_ref().map(|u| &u.listen_address)),
            ("tcp", self.tcp.as_ref().map(|t| &t.listen_address)),
        ];
        for (k, address) in addresses {
            if let Some(a) = address {
                crate::net::check_endpoint(a).map_err(|m| (format!("{k}.listen_address"), m))?;
            }
        }
        if let Some(tls) = self.tcp.as_ref().and_then(|t| t.tls.as_ref()) {
            tls.validate().map_err(|(k, m)| (format!("tcp.{k}"), m))?;
        }
        location::Location::parse(&self.location).map_err(|m| ("location".to_string(), m))?;
        if self.max_log_size == 0 {
            return Err(("max_log_size".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

const SEVERITY_TEXT: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const SEVERITY_NUMBER: [i32; 8] = [21, 19, 18, 17, 13, 10, 9, 5];

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Messages as an OTLP logs request, one resource per (host, app).
pub fn to_otlp(messages: Vec<Message>) -> ExportLogsServiceRequest {
    let mut request = ExportLogsServiceRequest::default();
    let observed = now_ns();
    for m in messages {
        let mut resource_attrs: Vec<KeyValue> = Vec::new();
        if let Some(h) = &m.hostname {
            resource_attrs.push(kv("host.name", string(h)));
        }
        if let Some(a) = &m.app_name {
            resource_attrs.push(kv("service.name", string(a)));
        }
        let mut attributes = vec![kv("syslog.facility", int(i64::from(m.facility)))];
        if let Some(v) = m.version {
            attributes.push(kv("syslog.version", int(i64::from(v))));
        }
        if let Some(p) = &m.proc_id {
            attributes.push(kv("syslog.procid", string(p)));
        }
        if let Some(id) = &m.msg_id {
            attributes.push(kv("syslog.msgid", string(id)));
        }
        for (id, params) in &m.structured_data {
            for (name, value) in params {
                match (id.as_str(), name.as_str()) {
                    ("origin", "swVersion") => resource_attrs.push(kv("service.version", string(value))),
                    ("origin", "ip") => attributes.push(kv("client.address", string(value))),
                    _ => attributes.push(kv(&format!("syslog.{id}.{name}"), string(value))),
                }
            }
        }
        let record = LogRecord {
            time_unix_nano: m.time_ns.unwrap_or(0),
            observed_time_unix_nano: observed,
            severity_number: SEVERITY_NUMBER[usize::from(m.severity.min(7))],
            severity_text: SEVERITY_TEXT[usize::from(m.severity.min(7))].to_string(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(m.message)) }),
            attributes,
            ..Default::default()
        };
        let resource = Some(Resource { attributes: resource_attrs, ..Default::default() });
        match request.resource_logs.iter_mut().find(|r| r.resource == resource) {
            Some(r) => r.scope_logs[0].log_records.push(record),
            None => request.resource_logs.push(ResourceLogs {
                resource,
                scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
                ..Default::default()
            }),
        }
    }
    request
}

pub(crate) struct Parser {
    pub(crate) protocol: Protocol,
    pub(crate) location: location::Location,
}

impl Parser {
    fn parse(&self, line: &str) -> Result<Message, String> {
        let line = line.trim_end_matches(['\r', '\n', '\0']);
        match self.protocol {
            Protocol::Rfc5424 => parse::rfc5424(line),
            Protocol::Rfc3164 => parse::rfc3164(line, &self.location, (now_ns() / 1_000_000_000) as i64),
        }
    }
}

/// Binds the listeners and serves them.
pub async fn start(
    cfg: SyslogConfig,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    listeners: crate::net::Listeners,
) -> Result<Vec<JoinHandle<()>>, String> {
    let parser = Arc::new(Parser {
        protocol: cfg.protocol.unwrap_or(Protocol::Rfc5424),
        location: location::Location::parse(&cfg.location)?,
    });
    let mut tasks = Vec::new();
    if let Some(u) = &cfg.udp {
        let socket = listeners.udp(&u.listen_address).await?;
        tracing::info!(receiver = intake.receiver(), endpoint = %socket.local_addr().map(|a| a.to_string()).unwrap_or_default(), "syslog UDP listening");
        tasks.push(tokio::spawn(serve_udp(socket, parser.clone(), intake.clone(), shutdown.clone())));
    }
    if let Some(t) = &cfg.tcp {
        let limits = crate::net::StreamLimits {
            max_connections: t.max_connections,
            idle_timeout: t.idle_timeout,
            ..Default::default()
        }
        .counted(intake.telemetry())
        .with_tls(t.tls.as_ref())?;
        let listener = listeners.tcp(&t.listen_address).await?;
        tracing::info!(receiver = intake.receiver(), endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = limits.tls.is_some(), "syslog TCP listening");
        tasks.push(tokio::spawn(serve_tcp(listener, limits, parser, cfg.max_log_size, intake, shutdown)));
    }
    Ok(tasks)
}

async fn serve_udp(
    socket: tokio::net::UdpSocket,
    parser: Arc<Parser>,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
) {
    let bad = BadInput::new(intake.clone(), "udp");
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            r = socket.recv_from(&mut buf) => match r { Ok((n, _)) => n, Err(_) => continue },
            _ = shutdown.cancelled() => return,
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        match parser.parse(&text) {
            Ok(m) => {
                let batch = Batch::from_request(Request::Logs(to_otlp(vec![m])));
                if let Err(refusal) = intake.submit("udp", batch).await {
                    bad.warn("refused", &format!("dropped a syslog message: {}", refusal.message));
                }
            }
            Err(e) => bad.report("malformed", &format!("dropped a syslog datagram: {e}")),
        }
    }
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    limits: crate::net::StreamLimits,
    parser: Arc<Parser>,
    max: usize,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
) {
    let bad = Arc::new(BadInput::new(intake.clone(), "tcp"));
    let shutdown_for_connections = shutdown.clone();
    let serve_one = move |stream: crate::net::IdleStream| {
        let (parser, intake, bad, stop) =
            (parser.clone(), intake.clone(), bad.clone(), shutdown_for_connections.clone());
        async move { connection(stream, &parser, max, &intake, &bad, stop).await }
    };
    // Connections finish what they have read; those still open after a moment are closed.
    crate::net::serve_streams(listener, limits, shutdown, Duration::from_secs(2), serve_one).await;
}

/// Reads frames from one TCP connection: octet-counted when a frame starts with a digit, else
/// one message per line. What was read is submitted before reading on, so a full pipeline
/// slows the sender down (TCP backpressure) instead of losing messages.
pub(crate) async fn connection<S: tokio::io::AsyncRead + Unpin>(
    mut stream: S,
    parser: &Parser,
    max: usize,
    intake: &Intake,
    bad: &BadInput,
    stop: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut skip = 0usize;
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => match r { Ok(0) | Err(_) => 0, Ok(n) => n },
            _ = stop.cancelled() => 0,
        };
        let eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        let mut messages = Vec::new();
        loop {
            if skip > 0 {
                let k = skip.min(buf.len());
                buf.drain(..k);
                skip -= k;
                if skip > 0 {
                    break;
                }
            }
            // Octet counting: `<len> <msg>`.
            let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 && buf.get(digits) == Some(&b' ') {
                let len: usize =
                    std::str::from_utf8(&buf[..digits]).ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
                if len > max {
                    bad.report(
                        "too_large",
                        &format!("skipped a syslog frame of {len} bytes, over max_log_size ({max})"),
                    );
                    buf.drain(..=digits);
                    skip = len;
                    continue;
                }
                if buf.len() < digits + 1 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..digits + 1 + len).skip(digits + 1).collect();
                push(parser, &frame, &mut messages, bad);
                continue;
            }
            if digits > 8 {
                bad.report("malformed", "skipped a syslog frame with an invalid length");
                buf.clear();
                break;
            }
            // Newline framing.
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if line.len() > max + 1 {
                        bad.report("too_large", &format!("skipped a syslog line over max_log_size ({max})"));
                    } else if !line.iter().all(|b| b.is_ascii_whitespace()) {
                        push(parser, &line, &mut messages, bad);
                    }
                }
                None if buf.len() > max => {
                    bad.report("too_large", &format!("skipped a syslog line over max_log_size ({max})"));
                    buf.clear();
                    break;
                }
                None if eof && !buf.is_empty() => {
                    let line = std::mem::take(&mut buf);
                    push(parser, &line, &mut messages, bad);
                    break;
                }
                None => break,
            }
        }
        if !messages.is_empty() {
            // Waits for room rather than dropping: the sender is held back meanwhile.
            let mut request = to_otlp(messages);
            loop {
                match intake.submit("tcp", Batch::from_request(Request::Logs(request.clone()))).await {
                    Ok(()) => break,
                    Err(refusal) if refusal.retryable && !stop.is_cancelled() => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(refusal) => {
                        bad.warn("refused", &format!("dropped syslog messages: {}", refusal.message));
                        break;
                    }
                }
            }
            request.resource_logs.clear();
        }
        if eof {
            return;
        }
    }
}

fn push(parser: &Parser, frame: &[u8], messages: &mut Vec<Message>, bad: &BadInput) {
    match parser.parse(&String::from_utf8_lossy(frame)) {
        Ok(m) => messages.push(m),
        Err(e) => bad.report("malformed", &format!("skipped a syslog message: {e}")),
    }
}

/// The `syslog` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<SyslogConfig>(
    "syslog",
    &[crate::signal::Signal::Logs],
    "RFC 5424 and RFC 3164 syslog over UDP and TCP",
);

impl crate::pipeline::component::ReceiverSettings for SyslogConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        SyslogConfig::validate(self).map_err(Into::into)
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

    #[test]
    fn mapping_follows_the_logs_data_model() {
        let m = parse::rfc5424(r#"<165>1 2003-08-24T05:14:15.000003-07:00 host1 myapp 8710 ID7 [origin ip="192.0.2.1" swVersion="2.1"][x@1 k="v"] hello"#).unwrap();
        let req = to_otlp(vec![m]);
        let rl = &req.resource_logs[0];
        let res = &rl.resource.as_ref().unwrap().attributes;
        assert!(res.contains(&kv("host.name", string("host1"))));
        assert!(res.contains(&kv("service.name", string("myapp"))));
        assert!(res.contains(&kv("service.version", string("2.1"))));
        let r = &rl.scope_logs[0].log_records[0];
        assert_eq!((r.severity_number, r.severity_text.as_str()), (10, "notice"));
        assert!(r.attributes.contains(&kv("syslog.facility", int(20))));
        assert!(r.attributes.contains(&kv("syslog.procid", string("8710"))));
        assert!(r.attributes.contains(&kv("syslog.msgid", string("ID7"))));
        assert!(r.attributes.contains(&kv("client.address", string("192.0.2.1"))));
        assert!(r.attributes.contains(&kv("syslog.x@1.k", string("v"))));
        assert_eq!(r.body, Some(AnyValue { value: Some(any_value::Value::StringValue("hello".into())) }));
    }

    #[test]
    fn every_severity_maps() {
        assert_eq!(SEVERITY_NUMBER, [21, 19, 18, 17, 13, 10, 9, 5]);
    }
}
