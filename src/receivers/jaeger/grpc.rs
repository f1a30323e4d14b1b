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
    let route = move |path: &str| (path == POST_SPANS).then(|| PostSpans { intake: route_intake.clone() });
    crate::grpc::serve_unary(listener, cfg.max_bytes(), intake, route, shutdown, grace).await;
}

#[derive(Clone)]
struct PostSpans {
    intake: Arc<Intake>,
}

impl tonic::server::UnaryService<Bytes> for PostSpans {
    type Response = Bytes;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let intake = self.intake.clone();
        Box::pin(async move {
            let batch = match decode_post_spans(&request.into_inner()) {
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
                match intake.submit("grpc", super::to_batch(batch)).await {
                    Ok(()) => {}
                    Err(refusal) if refusal.retryable => {
                        let details =
                            rpc_status::status_with_retry_info(code::UNAVAILABLE, &refusal.message, RETRY_DELAY);
                        return Err(Status::with_details(Code::Unavailable, refusal.message, details.into()));
                    }
                    Err(refusal) => return Err(Status::internal(refusal.message)),
                }
            }
            // PostSpansResponse has no fields: its encoding is empty.
            Ok(tonic::Response::new(Bytes::new()))
        })
    }
}
