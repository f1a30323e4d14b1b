//! POST /api/v2/spans: a JSON array of spans (`application/json`, also the default) or a
//! protobuf `ListOfSpans` (`application/x-protobuf`), optionally gzip, deflate or zstd encoded;
//! answered 202 Accepted. Errors are plain text.

use super::ZipkinReceiverConfig;
use crate::body::{BodyError, content_encoding, read_decoded};
use crate::net::{self, BoxBody, text};
use crate::pipeline::{Batch, Intake, Request};
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PATH: &str = "/api/v2/spans";
const TRANSPORT: &str = "http";

struct Settings {
    limit: usize,
    parse_string_tags: bool,
}

pub async fn serve(
    cfg: ZipkinReceiverConfig,
    listener: TcpListener,
    limits: crate::net::ConnLimits,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let limits = limits.counted(intake.telemetry());
    let settings = Arc::new(Settings {
        limit: usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX),
        parse_string_tags: cfg.parse_string_tags,
    });
    let handler = move |req: http::Request<Incoming>| {
        let (intake, settings) = (intake.clone(), settings.clone());
        async move {
            let response = handle(req, &intake, &settings).await;
            if response.status().is_client_error() {
                intake.invalid_request(TRANSPORT, response.status().as_str());
            }
            response
        }
    };
    net::serve_with(listener, limits, handler, shutdown, grace).await;
}

/// The memory one decoded span takes at most (its Zipkin form and its OTLP form are both
/// counted through `2 *` at the call), and one decoded field or tag value.
const PER_SPAN: usize = std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::Span>();
const PER_VALUE: usize = std::mem::size_of::<opentelemetry_proto::tonic::common::v1::KeyValue>();

async fn handle(req: http::Request<Incoming>, intake: &Intake, settings: &Settings) -> http::Response<BoxBody> {
    let path = req.uri().path();
    if path != PATH {
        let hint = if path == "/api/v1/spans" { " (Zipkin v1 is not supported)" } else { "" };
        return text(StatusCode::NOT_FOUND, &format!("no Zipkin endpoint at {path}{hint}: use POST {PATH}"));
    }
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, &format!("method {} not allowed: use POST", req.method()));
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let protobuf = content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-protobuf");
    // With a memory_limiter: the declared body reserved before it is read.
    let limit = settings.limit;
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
    // Each JSON object or protobuf field becomes at most one Zipkin value and one OTLP one.
    let estimate = if protobuf {
        match crate::protowire::check(&body) {
            Ok(shape) => shape.estimate(body.len(), 2 * PER_VALUE),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("not a Zipkin ListOfSpans: {e}")),
        }
    } else {
        crate::receivers::budget::json_estimate(&body, 2 * PER_SPAN)
    };
    let decoding = match crate::receivers::budget::claim_or_text(intake, estimate) {
        Ok(claims) => claims,
        Err(response) => return *response,
    };
    let decoded = if protobuf { super::proto::decode(&body) } else { super::json::decode(&body) };
    let spans = match decoded {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    if spans.is_empty() {
        return net::response(StatusCode::ACCEPTED, "text/plain", "");
    }
    let request = super::translate::to_otlp(spans, settings.parse_string_tags);
    // Decoded: what decoding took is the batch's own now (held by admission until exported).
    drop(decoding);
    match intake.submit(TRANSPORT, Batch::from_request(Request::Traces(request)).with_origin(origin)).await {
        Ok(()) => net::response(StatusCode::ACCEPTED, "text/plain", ""),
        Err(refusal) if refusal.retryable => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, &refusal.message);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(refusal) => text(StatusCode::INTERNAL_SERVER_ERROR, &refusal.message),
    }
}
