//! The collector's Thrift HTTP endpoint: POST /api/traces with a bare Thrift-binary `Batch`
//! (`application/x-thrift` or `application/vnd.apache.thrift.binary`), answered 202 Accepted.
//! Errors are plain text, as the Jaeger collector writes them.

use super::ThriftHttpConfig;
use super::thrift::decode_batch;
use crate::body::{BodyError, content_encoding, read_decoded};
use crate::net::{self, BoxBody, text};
use crate::pipeline::Intake;
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PATH: &str = "/api/traces";
const TRANSPORT: &str = "collector_http";

pub async fn serve(
    cfg: ThriftHttpConfig,
    listener: TcpListener,
    limits: crate::net::ConnLimits,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let limits = limits.counted(intake.telemetry());
    let limit = usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX);
    let handler = move |req: http::Request<Incoming>| {
        let intake = intake.clone();
        async move {
            let response = handle(req, &intake, limit).await;
            if response.status().is_client_error() {
                intake.invalid_request(TRANSPORT, response.status().as_str());
            }
            response
        }
    };
    net::serve_with(listener, limits, handler, shutdown, grace).await;
}

async fn handle(req: http::Request<Incoming>, intake: &Intake, limit: usize) -> http::Response<BoxBody> {
    if req.uri().path() != PATH {
        return text(StatusCode::NOT_FOUND, &format!("no Jaeger endpoint at {}: use POST {PATH}", req.uri().path()));
    }
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, &format!("method {} not allowed: use POST", req.method()));
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "application/x-thrift" | "application/vnd.apache.thrift.binary") {
        let given = if content_type.is_empty() { "none" } else { content_type };
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "unsupported content type \"{given}\": use application/x-thrift or application/vnd.apache.thrift.binary"
            ),
        );
    }
    // With a memory_limiter: the declared body reserved before it is read.
    let too_large = || {
        text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body over the max_request_body_size of {limit} bytes"))
    };
    let _reserved = match crate::body::reserve_memory_or_text(intake, req.headers(), limit, too_large) {
        Ok(claims) => claims,
        Err(response) => {
            crate::body::linger(req.into_body());
            return *response;
        }
    };
    let encoding = content_encoding(req.headers());
    let origin = crate::pipeline::origin_of(req.extensions());
    let deadline = net::read_deadline(&req);
    let body = match read_decoded(req.into_body(), &encoding, limit, deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return crate::body::closing(too_large()),
        Err(BodyError::Io(e)) => return text(StatusCode::BAD_REQUEST, &e),
        Err(e) => return e.text_response(limit),
    };
    // A Thrift tag takes as little as five bytes and decodes to a Jaeger tag and an OTLP
    // attribute: 32 bytes of memory per byte received bounds it.
    let decoding = match crate::receivers::budget::claim_or_text(intake, body.len().saturating_mul(32)) {
        Ok(claims) => claims,
        Err(response) => return *response,
    };
    let batch = match decode_batch(&body) {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("unable to process request body: not a Thrift-binary Batch: {e}"),
            );
        }
    };
    if batch.spans.is_empty() {
        return net::response(StatusCode::ACCEPTED, "text/plain", "");
    }
    let batch = super::to_batch(batch);
    // Decoded: what decoding took is the batch's own now (held by admission until exported).
    drop(decoding);
    match intake.submit(TRANSPORT, batch.with_origin(origin)).await {
        Ok(()) => net::response(StatusCode::ACCEPTED, "text/plain", ""),
        Err(refusal) if refusal.retryable => {
            let mut r =
                text(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot submit Jaeger batch: {}", refusal.message));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(refusal) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot submit Jaeger batch: {}", refusal.message))
        }
    }
}
