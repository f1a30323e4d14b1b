//! OTLP over gRPC: the three `Export` methods, served on raw bytes so that a valid request can
//! travel on without being re-encoded. gzip, zstd and deflate request compression are accepted.

use super::GrpcConfig;
use super::decode::decode_protobuf;
use super::response;
use crate::grpc::export_path;
use crate::pipeline::{Intake, Signal};
use crate::rpc_status::{self, RpcStatus, code};
use bytes::Bytes;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
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
    let route_intake = intake.clone();
    let route = move |path: &str| {
        let signal = Signal::ALL.into_iter().find(|s| export_path(*s) == path)?;
        Some(ExportService { intake: route_intake.clone(), signal })
    };
    crate::grpc::serve_unary(listener, cfg.max_bytes(), intake, route, shutdown, grace).await;
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
            let context = crate::pipeline::context_from_headers(&request.metadata().clone().into_headers());
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
            match intake.submit("grpc", decoded.batch.with_context(context)).await {
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
