//! gRPC pieces shared by the receivers and exporters: the OTLP Export method paths, a codec that
//! passes message bytes through untouched (so valid requests travel without re-encoding), a
//! server for unary methods on those bytes, and the OTLP retry rules for gRPC status codes.

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
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
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
/// `P::ENDPOINT`, and the largest request it takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct GrpcServerConfig<P: DefaultEndpoint> {
    pub endpoint: String,
    /// Largest request accepted, after decompression, in MiB.
    pub max_recv_msg_size_mib: u64,
    #[serde(skip)]
    default: std::marker::PhantomData<P>,
}

impl<P: DefaultEndpoint> Default for GrpcServerConfig<P> {
    fn default() -> Self {
        GrpcServerConfig {
            endpoint: P::ENDPOINT.to_string(),
            max_recv_msg_size_mib: 4,
            default: std::marker::PhantomData,
        }
    }
}

impl<P: DefaultEndpoint> GrpcServerConfig<P> {
    /// Checks the settings; `at` is the key path of this section, for the message.
    pub fn validate(&self, at: &str) -> Result<(), (String, String)> {
        crate::net::check_endpoint(&self.endpoint).map_err(|m| (format!("{at}.endpoint"), m))?;
        if !(1..=1024).contains(&self.max_recv_msg_size_mib) {
            return Err((format!("{at}.max_recv_msg_size_mib"), "must be between 1 and 1024".into()));
        }
        Ok(())
    }

    pub fn max_bytes(&self) -> usize {
        (self.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024)
    }
}

/// Serves unary gRPC methods on raw message bytes until `shutdown`: `route` picks the service
/// for a method path (none: UNIMPLEMENTED). Requests may be gzip, zstd or deflate compressed and
/// at most `max` bytes decompressed. Answers that blame the client are counted on `intake`.
pub async fn serve_unary<S, R>(
    listener: TcpListener,
    max: usize,
    intake: Arc<Intake>,
    route: R,
    shutdown: CancellationToken,
    grace: Duration,
) where
    R: Fn(&str) -> Option<S> + Clone + Send + Sync + 'static,
    S: tonic::server::UnaryService<Bytes, Response = Bytes> + Send + 'static,
    S::Future: Send + 'static,
{
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let (intake, route) = (intake.clone(), route.clone());
        async move {
            let Some(service) = route(req.uri().path()) else {
                let status = Status::unimplemented(format!("unknown method {}", req.uri().path()));
                intake.invalid_request("grpc", "UNIMPLEMENTED");
                return status.into_http::<BoxBody>();
            };
            // Over the memory limit: refused before the message is even read.
            if intake.memory_paused() {
                let details = crate::rpc_status::status_with_retry_info(
                    crate::rpc_status::code::UNAVAILABLE,
                    "memory limit reached; retry later",
                    Duration::from_secs(1),
                );
                let status =
                    Status::with_details(Code::Unavailable, "memory limit reached; retry later", details.into());
                return status.into_http::<BoxBody>();
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Deflate)
                .max_decoding_message_size(max);
            let mut resp = grpc.unary(service, req).await;
            // tonic reports an over-size message as OUT_OF_RANGE, which OTLP clients retry;
            // OTLP asks for RESOURCE_EXHAUSTED without RetryInfo, which they do not.
            if resp.headers().get("grpc-status").is_some_and(|v| v == "11") {
                resp.headers_mut().insert("grpc-status", http::HeaderValue::from_static("8"));
            }
            if let Some(code) = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok())
                && let Some(name) = client_error_name(code)
            {
                intake.invalid_request("grpc", name);
            }
            resp.map(|b| b.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) }).boxed_unsync())
        }
    };
    net::serve(listener, handler, shutdown, grace).await;
}

/// gRPC codes that mean the client sent something wrong, by their numeric value.
fn client_error_name(code: &str) -> Option<&'static str> {
    match code {
        "3" => Some("INVALID_ARGUMENT"),
        "8" => Some("RESOURCE_EXHAUSTED"),
        "12" => Some("UNIMPLEMENTED"),
        _ => None,
    }
}
