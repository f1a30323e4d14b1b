//! OTLP over gRPC: the three `Export` methods, served on raw bytes so that a valid request can
//! travel on without being re-encoded. gzip, zstd and deflate request compression are accepted.

use super::GrpcConfig;
use super::decode::scan_protobuf;
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

pub async fn serve(
    cfg: GrpcConfig,
    listener: TcpListener,
    limits: crate::net::ConnLimits,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let route_intake = intake.clone();
    let route = move |path: &str| -> Option<crate::grpc::UnaryService> {
        let signal = Signal::ALL.into_iter().find(|s| export_path(*s) == path)?;
        let intake = route_intake.clone();
        Some(Arc::new(move |request| Box::pin(export(intake.clone(), signal, request))))
    };
    crate::grpc::serve_unary(listener, limits, cfg.max_bytes(), intake, route, shutdown, grace).await;
}

/// One `Export` call: decode, admit, answer.
async fn export(intake: Arc<Intake>, signal: Signal, request: tonic::Request<Bytes>) -> Result<Bytes, Status> {
    if !intake.accepts(signal) {
        return Err(Status::unimplemented(format!("receiver {} is in no {signal} pipeline", intake.receiver())));
    }
    let origin = crate::pipeline::origin_of(request.extensions());
    let checked = scan_protobuf(signal, request.into_inner())
        .map(|scanned| (intake.claim_decode(scanned.decoded_bytes()), scanned));
    let decoded = match checked {
        Ok((Err(refusal), _)) => return Err(crate::receivers::budget::grpc_status(&refusal)),
        Ok((Ok(claims), scanned)) => scanned.decode().map(|d| (d, claims)),
        Err(invalid) => Err(invalid),
    };
    let (decoded, decoding) = match decoded {
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
    // Decoded: what decoding took is the batch's own now (held by admission until exported).
    drop(decoding);
    intake.rejected("grpc", signal, decoded.rejected);
    match intake.submit("grpc", decoded.batch.with_origin(origin)).await {
        Ok(()) => Ok(Bytes::from(response::protobuf(signal, decoded.rejected, decoded.message.as_deref()))),
        Err(refusal) if refusal.retryable => Err(crate::grpc::retryable(Code::Unavailable, &refusal.message)),
        Err(refusal) => Err(Status::internal(refusal.message)),
    }
}
