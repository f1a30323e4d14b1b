//! The collector's gRPC endpoint: `jaeger.api_v2.CollectorService/PostSpans` (14250), answered
//! with an empty `PostSpansResponse`.

use super::GrpcConfig;
use super::proto::decode_post_spans;
use crate::pipeline::Intake;
use crate::rpc_status::{self, RpcStatus, code};
use bytes::Bytes;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

const POST_SPANS: &str = "/jaeger.api_v2.CollectorService/PostSpans";

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
        let intake = route_intake.clone();
        (path == POST_SPANS).then(|| -> crate::grpc::UnaryService {
            Arc::new(move |request| Box::pin(post_spans(intake.clone(), request)))
        })
    };
    crate::grpc::serve_unary(listener, limits, cfg.max_bytes(), intake, route, shutdown, grace).await;
}

/// One `PostSpans` call; its answer, `PostSpansResponse`, has no fields: its encoding is empty.
async fn post_spans(intake: Arc<Intake>, request: tonic::Request<Bytes>) -> Result<Bytes, Status> {
    let origin = crate::pipeline::origin_of(request.extensions());
    let body = request.into_inner();
    // Each protobuf field decodes to at most one Jaeger value and one OTLP value.
    let estimate = crate::protowire::check(&body)
        .map(|s| s.estimate(body.len(), 2 * std::mem::size_of::<opentelemetry_proto::tonic::common::v1::KeyValue>()))
        .unwrap_or(body.len());
    let decoding = intake.claim_decode(estimate).map_err(|r| crate::receivers::budget::grpc_status(&r))?;
    let batch = match decode_post_spans(&body) {
        Ok(b) => b,
        Err(message) => {
            let status = RpcStatus {
                code: code::INVALID_ARGUMENT,
                message: message.clone(),
                details: vec![rpc_status::bad_request_detail(&message)],
            };
            return Err(Status::with_details(Code::InvalidArgument, message, status.encode_to_vec().into()));
        }
    };
    if !batch.spans.is_empty() {
        let batch = super::to_batch(batch).with_origin(origin);
        // Decoded: what decoding took is the batch's own now (held by admission until exported).
        drop(decoding);
        match intake.submit("grpc", batch).await {
            Ok(()) => {}
            Err(refusal) if refusal.retryable => {
                return Err(crate::grpc::retryable(Code::Unavailable, &refusal.message));
            }
            Err(refusal) => return Err(Status::internal(refusal.message)),
        }
    }
    Ok(Bytes::new())
}
