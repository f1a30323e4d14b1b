//! OTLP over gRPC: the three `Export` methods, served on raw bytes so that a valid request can
//! travel on without being re-encoded. gzip, zstd and deflate request compression are accepted.

use super::GrpcConfig;
use super::decode::decode_protobuf;
use super::response;
use crate::grpc::{RawCodec, export_path};
use crate::net::{self, BoxBody};
use crate::pipeline::{Intake, Signal};
use crate::rpc_status::{self, RpcStatus, code};
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};

/// How long a client is asked to wait before retrying a refused request.
const RETRY_DELAY: Duration = Duration::from_secs(1);

pub async fn serve(
    cfg: GrpcConfig,
    listener: TcpListener,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let max = (cfg.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024);
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let intake = intake.clone();
        async move {
            let signal = match req.uri().path() {
                p if p == export_path(Signal::Traces) => Signal::Traces,
                p if p == export_path(Signal::Metrics) => Signal::Metrics,
                p if p == export_path(Signal::Logs) => Signal::Logs,
                other => {
                    let status = Status::unimplemented(format!("unknown method {other}"));
                    return status.into_http::<BoxBody>();
                }
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Deflate)
                .max_decoding_message_size(max);
            let service = ExportService { intake: intake.clone(), signal };
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

#[derive(Clone)]
struct ExportService {
    intake: Arc<Intake>,
    signal: Signal,
}

impl tonic::server::UnaryService<Bytes> for ExportService {
    type Response = Bytes;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (intake, signal) = (self.intake.clone(), self.signal);
        Box::pin(async move {
            if !intake.accepts(signal) {
                return Err(Status::unimplemented(format!(
                    "receiver {} is in no {signal} pipeline",
                    intake.receiver()
                )));
            }
            let decoded = match decode_protobuf(signal, request.into_inner()) {
                Ok(d) => d,
                Err(invalid) => {
                    let status = RpcStatus {
                        code: code::INVALID_ARGUMENT,
                        message: invalid.0.clone(),
                        details: vec![rpc_status::bad_request_detail(&invalid.0)],
                    };
                    return Err(Status::with_details(Code::InvalidArgument, invalid.0, status.encode_to_vec().into()));
                }
            };
            intake.rejected("grpc", signal, decoded.rejected);
            match intake.submit("grpc", decoded.batch).await {
                Ok(()) => Ok(tonic::Response::new(Bytes::from(response::protobuf(
                    signal,
                    decoded.rejected,
                    decoded.message.as_deref(),
                )))),
                Err(refusal) if refusal.retryable => {
                    let details = rpc_status::status_with_retry_info(code::UNAVAILABLE, &refusal.message, RETRY_DELAY);
                    Err(Status::with_details(Code::Unavailable, refusal.message, details.into()))
                }
                Err(refusal) => Err(Status::internal(refusal.message)),
            }
        })
    }
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
