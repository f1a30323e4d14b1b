//! gRPC pieces shared by the receivers and exporters: the OTLP Export method paths, a codec that
//! passes message bytes through untouched (so valid requests travel without re-encoding), a
//! server for unary methods on those bytes, and the OTLP retry rules for gRPC status codes.

pub mod client;

use crate::net::{self, BoxBody};
use crate::pipeline::{Intake, Signal};
use crate::rpc_status::{RetryInfo, RpcStatus};
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use prost::Message;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// The `Export` method of `signal`'s OTLP service.
pub fn export_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
}

/// Whether a client may send the same request again after `status`, and after how long at
/// least: OTLP's table (PROTOCOLS.md §1.5). RESOURCE_EXHAUSTED is retryable only with RetryInfo.
pub fn retry_verdict(status: &Status) -> (bool, Option<Duration>) {
    let delay = retry_info(status);
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => delay.is_some(),
        _ => false,
    };
    (retryable, delay)
}

/// The delay of a `google.rpc.RetryInfo` in the status details, if any.
fn retry_info(status: &Status) -> Option<Duration> {
    crate::protowire::check(status.details()).ok()?;
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details.details.iter().find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))?;
    let d = RetryInfo::decode(&any.value[..]).ok()?.retry_delay?;
    Some(Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
}

/// A codec that hands the message bytes through untouched in both directions.
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Where a gRPC server listens when its configuration does not say (`localhost:PORT`).
pub trait DefaultEndpoint: std::fmt::Debug + Clone {
    const ENDPOINT: &'static str;
}

/// A gRPC server's settings (`protocols.grpc` of the receivers): where it listens, defaulting to
/// `P::ENDPOINT`, the largest request it takes, and what its connections may do (the
/// collector's keys; defaults in `net::ConnLimits`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct GrpcServerConfig<P: DefaultEndpoint> {
    pub endpoint: String,
    /// Largest request accepted, after decompression, in MiB.
    pub max_recv_msg_size_mib: u64,
    /// HTTP/2 streams (requests in progress) one connection may have open.
    pub max_concurrent_streams: u32,
    /// Bytes a client may send on one stream (read_buffer_size) before it is asked for more,
    /// and the send buffer of a connection (write_buffer_size).
    pub read_buffer_size: usize,
    pub write_buffer_size: usize,
    /// Connections served at once (switchyard's key; the collector has none).
    pub max_connections: usize,
    pub keepalive: Keepalive,
    /// Serve gRPC over TLS (see `tls::server`).
    pub tls: Option<crate::tls::server::TlsServerConfig>,
    /// Authenticate every request with this authenticator extension (see `auth`).
    pub auth: Option<crate::auth::AuthSettings>,
    /// Keep each request's headers as its data's context (see `net::ConnLimits`).
    pub include_metadata: bool,
    #[serde(skip)]
    default: std::marker::PhantomData<P>,
}

/// `keepalive` of a gRPC server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    pub server_parameters: ServerParameters,
}

/// `keepalive.server_parameters`: the collector's names; durations as `30s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerParameters {
    /// A connection with no request in progress for this long is closed.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub max_connection_idle: Duration,
    /// A connection older than this is asked to close (GOAWAY); 0 = no limit.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub max_connection_age: Duration,
    /// How long requests may still finish after that.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub max_connection_age_grace: Duration,
    /// Ping interval on a quiet connection, and how long the answer may take.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub time: Duration,
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub timeout: Duration,
}

impl Default for ServerParameters {
    fn default() -> Self {
        let d = net::ConnLimits::default();
        ServerParameters {
            max_connection_idle: d.idle_timeout,
            max_connection_age: d.max_connection_age,
            max_connection_age_grace: d.max_connection_age_grace,
            time: d.keepalive_time,
            timeout: d.keepalive_timeout,
        }
    }
}

impl<P: DefaultEndpoint> Default for GrpcServerConfig<P> {
    fn default() -> Self {
        let d = net::ConnLimits::default();
        GrpcServerConfig {
            endpoint: P::ENDPOINT.to_string(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: d.max_concurrent_streams,
            read_buffer_size: d.stream_window as usize,
            write_buffer_size: d.write_buffer_size,
            max_connections: d.max_connections,
            keepalive: Keepalive::default(),
            tls: None,
            auth: None,
            include_metadata: false,
            default: std::marker::PhantomData,
        }
    }
}

impl<P: DefaultEndpoint> GrpcServerConfig<P> {
    /// Checks the settings; `at` is the key path of this section, for the message.
    pub fn validate(&self, at: &str) -> Result<(), (String, String)> {
        crate::net::check_endpoint(&self.endpoint).map_err(|m| (format!("{at}.endpoint"), m))?;
        if let Some(tls) = &self.tls {
            tls.validate().map_err(|(k, m)| (format!("{at}.{k}"), m))?;
        }
        if !(1..=1024).contains(&self.max_recv_msg_size_mib) {
            return Err((format!("{at}.max_recv_msg_size_mib"), "must be between 1 and 1024".into()));
        }
        if self.max_concurrent_streams == 0 {
            return Err((format!("{at}.max_concurrent_streams"), "must be at least 1".into()));
        }
        if self.max_connections == 0 {
            return Err((format!("{at}.max_connections"), "must be at least 1".into()));
        }
        for (key, v) in [("read_buffer_size", self.read_buffer_size), ("write_buffer_size", self.write_buffer_size)] {
            if !(16 * 1024..=64 * 1024 * 1024).contains(&v) {
                return Err((format!("{at}.{key}"), "must be between 16384 and 67108864 bytes".into()));
            }
        }
        Ok(())
    }

    pub fn max_bytes(&self) -> usize {
        (self.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024)
    }

    /// The connection limits these settings give.
    pub fn limits(&self) -> net::ConnLimits {
        let k = &self.keepalive.server_parameters;
        net::ConnLimits {
            max_connections: self.max_connections,
            idle_timeout: k.max_connection_idle,
            max_connection_age: k.max_connection_age,
            max_connection_age_grace: k.max_connection_age_grace,
            keepalive_time: k.time,
            keepalive_timeout: k.timeout,
            max_concurrent_streams: self.max_concurrent_streams,
            stream_window: u32::try_from(self.read_buffer_size).unwrap_or(u32::MAX),
            connection_window: u32::try_from(self.read_buffer_size.saturating_mul(4)).unwrap_or(u32::MAX),
            write_buffer_size: self.write_buffer_size,
            include_metadata: self.include_metadata,
            ..net::ConnLimits::default()
        }
    }
}

/// A unary gRPC method's handler, given the request's message bytes and metadata.
pub type UnaryService = std::sync::Arc<
    dyn Fn(tonic::Request<Bytes>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, Status>> + Send>>
        + Send
        + Sync,
>;

/// Serves unary gRPC methods on raw message bytes until `shutdown`: `route` picks the handler
/// for a method path (none: UNIMPLEMENTED). The request's message is read here, not by tonic, so
/// that memory grows only as bytes arrive (a frame declaring 4 MiB reserves nothing), a frame
/// over `max` is refused as soon as its header is read (RESOURCE_EXHAUSTED, not retried), and
/// bad framing or a corrupt compressed message is INVALID_ARGUMENT. gzip, zstd and deflate are
/// accepted. Answers that blame the client are counted on `intake`.
pub async fn serve_unary<R>(
    listener: TcpListener,
    limits: net::ConnLimits,
    max: usize,
    intake: Arc<Intake>,
    route: R,
    shutdown: CancellationToken,
    grace: Duration,
) where
    R: Fn(&str) -> Option<UnaryService> + Clone + Send + Sync + 'static,
{
    let limits = limits.counted(intake.telemetry());
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let (intake, route) = (intake.clone(), route.clone());
        async move {
            let result = match route(req.uri().path()) {
                None => Err(Status::unimplemented(format!("unknown method {}", req.uri().path()))),
                // Over the memory limit: refused before the message is even read.
                Some(_) if intake.memory_paused() => {
                    Err(retryable(Code::Unavailable, "memory limit reached; retry later"))
                }
                Some(service) => match read_unary(req, max).await {
                    Ok(request) => service(request).await,
                    Err(status) => Err(status),
                },
            };
            match result {
                Ok(message) => unary_response(message),
                Err(status) => {
                    if let Some(name) = client_error_name(status.code()) {
                        intake.invalid_request("grpc", name);
                    }
                    status.into_http::<BoxBody>()
                }
            }
        }
    };
    net::serve_with(listener, limits, handler, shutdown, grace).await;
}

/// A refusal the client should retry after a second (`RetryInfo` in the details).
pub fn retryable(code: Code, message: &str) -> Status {
    let details = crate::rpc_status::status_with_retry_info(code as i32, message, Duration::from_secs(1));
    Status::with_details(code, message.to_string(), details.into())
}

/// Reads the one length-prefixed message of a unary call, within `max` bytes (compressed and
/// decompressed) and the listener's read deadline.
async fn read_unary(req: http::Request<hyper::body::Incoming>, max: usize) -> Result<tonic::Request<Bytes>, Status> {
    let deadline = net::read_deadline(&req);
    let (parts, mut body) = req.into_parts();
    let encoding = parts.headers.get("grpc-encoding").and_then(|v| v.to_str().ok()).unwrap_or("identity").to_string();
    let too_large = |n: usize| {
        Status::resource_exhausted(format!(
            "message of {n} bytes is larger than the size limit of {max} bytes (max_recv_msg_size_mib)"
        ))
    };
    let mut buf = Gathered::default();
    let mut declared: Option<(bool, usize)> = None;
    loop {
        if declared.is_none() && buf.bytes().len() >= 5 {
            let head = buf.bytes();
            let compressed = match head[0] {
                0 => false,
                1 => true,
                flag => return Err(Status::invalid_argument(format!("invalid gRPC frame: compression flag {flag}"))),
            };
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > max {
                return Err(too_large(len));
            }
            declared = Some((compressed, len));
        }
        if let Some((_, len)) = declared
            && buf.bytes().len() > 5 + len
        {
            return Err(Status::invalid_argument("more than one message in a unary gRPC request"));
        }
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, body.frame())
                .await
                .map_err(|_| Status::deadline_exceeded("request not received within the read timeout"))?,
            None => body.frame().await,
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|e| Status::invalid_argument(format!("cannot read request: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.bytes().len() + data.len() > max.saturating_add(5) + 1 {
                return Err(too_large(buf.bytes().len() + data.len()));
            }
            buf.push(data);
        }
    }
    let Some((compressed, len)) = declared else {
        if buf.bytes().is_empty() {
            return Err(Status::invalid_argument("empty gRPC request: no message"));
        }
        return Err(Status::invalid_argument(format!("truncated gRPC frame: {} of 5 header bytes", buf.bytes().len())));
    };
    if buf.bytes().len() < 5 + len {
        return Err(Status::invalid_argument(format!(
            "truncated gRPC message: {} of the {len} bytes its frame declares",
            buf.bytes().len() - 5
        )));
    }
    let raw = buf.freeze().slice(5..5 + len);
    let message = if !compressed {
        raw
    } else {
        let encoding = encoding.trim().to_ascii_lowercase();
        if !matches!(encoding.as_str(), "gzip" | "zstd" | "deflate") {
            let mut status =
                Status::unimplemented(format!("message compressed with \"{encoding}\": use gzip, zstd or deflate"));
            status
                .metadata_mut()
                .insert("grpc-accept-encoding", tonic::metadata::MetadataValue::from_static("gzip,zstd,deflate"));
            return Err(status);
        }
        match crate::body::decompress(&encoding, raw, max) {
            Ok(m) => m,
            Err(crate::body::BodyError::TooLarge) => {
                return Err(Status::resource_exhausted(format!(
                    "message is larger than the size limit of {max} bytes when decompressed (max_recv_msg_size_mib)"
                )));
            }
            Err(crate::body::BodyError::Io(e)) => {
                return Err(Status::invalid_argument(format!("corrupt {encoding} message: {e}")));
            }
            Err(crate::body::BodyError::Timeout) => {
                return Err(Status::deadline_exceeded("request not received within the read timeout"));
            }
        }
    };
    Ok(tonic::Request::from_http(http::Request::from_parts(parts, message)))
}

/// A body's bytes as they arrive: the first frame kept as it is (most unary requests come in
/// one, so their message is never copied), later ones appended to a copy.
#[derive(Default)]
struct Gathered {
    first: Bytes,
    rest: Option<bytes::BytesMut>,
}

impl Gathered {
    fn push(&mut self, data: Bytes) {
        match &mut self.rest {
            Some(rest) => rest.extend_from_slice(&data),
            None if self.first.is_empty() => self.first = data,
            None => {
                let mut rest = bytes::BytesMut::with_capacity(self.first.len() + data.len());
                rest.extend_from_slice(&self.first);
                rest.extend_from_slice(&data);
                self.rest = Some(rest);
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self.rest.as_deref().unwrap_or(&self.first)
    }

    fn freeze(self) -> Bytes {
        self.rest.map(|r| r.freeze()).unwrap_or(self.first)
    }
}

/// A successful unary answer: the message in one frame, then `grpc-status: 0` as a trailer.
fn unary_response(message: Bytes) -> http::Response<BoxBody> {
    use bytes::BufMut;
    let mut framed = bytes::BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = futures_frames(framed.freeze(), trailers);
    let mut r = http::Response::new(frames);
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    r
}

/// A body of one data frame followed by trailers.
fn futures_frames(data: Bytes, trailers: http::HeaderMap) -> BoxBody {
    OneMessage { data: Some(data), trailers: Some(trailers) }.boxed_unsync()
}

/// The body of a unary answer: its one framed message, then the trailers.
struct OneMessage {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(d) => Some(http_body::Frame::data(d)),
            None => self.trailers.take().map(http_body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// gRPC codes that mean the client sent something wrong.
fn client_error_name(code: Code) -> Option<&'static str> {
    match code {
        Code::InvalidArgument => Some("INVALID_ARGUMENT"),
        Code::ResourceExhausted => Some("RESOURCE_EXHAUSTED"),
        Code::Unimplemented => Some("UNIMPLEMENTED"),
        Code::DeadlineExceeded => Some("DEADLINE_EXCEEDED"),
        _ => None,
    }
}
