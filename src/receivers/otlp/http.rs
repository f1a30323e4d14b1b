//! OTLP over HTTP: POST of protobuf or JSON bodies, optionally gzip, zstd or deflate encoded,
//! answered in the request's content type. Limits apply to the decompressed size, and a
//! decompression bomb stops at the limit instead of filling memory.

use super::HttpConfig;
use super::decode::{Decoded, Invalid, Scanned, decode_json, json_decoded_bytes, scan_protobuf};
use super::response;
use crate::body::{BodyError, NotReserved, content_encoding, decompress, read_body};
use crate::net::{self, BoxBody};
use crate::pipeline::{DecodeRefusal, Intake, Signal};
use crate::rpc_status::{self, RpcStatus, code};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bodies at least this large are decoded on the blocking thread pool.
const OFFLOAD_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

struct Routes {
    paths: [String; 3],
    limit: usize,
}

pub async fn serve(
    cfg: HttpConfig,
    listener: TcpListener,
    limits: crate::net::ConnLimits,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let limits = limits.counted(intake.telemetry());
    let routes = Arc::new(Routes {
        paths: [cfg.traces_url_path, cfg.metrics_url_path, cfg.logs_url_path],
        limit: usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX),
    });
    let handler = move |req: http::Request<Incoming>| {
        let (intake, routes) = (intake.clone(), routes.clone());
        async move {
            let response = handle(req, &intake, &routes).await;
            if response.status().is_client_error() {
                intake.invalid_request("http", response.status().as_str());
            }
            response
        }
    };
    net::serve_with(listener, limits, handler, shutdown, grace).await;
}

async fn handle(req: http::Request<Incoming>, intake: &Intake, routes: &Routes) -> http::Response<BoxBody> {
    let path = req.uri().path();
    let Some(signal) = Signal::ALL.into_iter().find(|s| routes.paths[s.index()] == path) else {
        return error(StatusCode::NOT_FOUND, Format::Json, code::UNIMPLEMENTED, &format!("no OTLP endpoint at {path}"));
    };
    if req.method() != Method::POST {
        let format = content_type(&req).unwrap_or(Format::Json);
        let msg = format!("method {} not allowed: use POST", req.method());
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format, code::INVALID_ARGUMENT, &msg);
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let format = match content_type(&req) {
        Some(f) => f,
        None => {
            let given = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
            let msg = format!("unsupported content type \"{given}\": use application/x-protobuf or application/json");
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, Format::Json, code::INVALID_ARGUMENT, &msg);
        }
    };
    if !intake.accepts(signal) {
        let msg = format!("receiver {} is in no {signal} pipeline", intake.receiver());
        return error(StatusCode::NOT_FOUND, format, code::UNIMPLEMENTED, &msg);
    }
    let _reserved = match crate::body::reserve_memory(intake, req.headers(), routes.limit) {
        Ok(claims) => claims,
        Err(NotReserved::TooLarge) => {
            crate::body::linger(req.into_body());
            return crate::body::closing(too_large(format, routes.limit));
        }
        Err(NotReserved::Busy(refusal)) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, format, code::UNAVAILABLE, &refusal.message);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let encoding = content_encoding(req.headers());
    let origin = crate::pipeline::origin_of(req.extensions());
    let deadline = net::read_deadline(&req);
    let raw = match read_body(req.into_body(), routes.limit, deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return crate::body::closing(too_large(format, routes.limit)),
        Err(BodyError::Timeout) => {
            let msg = "request body not received within the read timeout";
            return crate::body::closing(error(StatusCode::REQUEST_TIMEOUT, format, code::DEADLINE_EXCEEDED, msg));
        }
        Err(BodyError::Io(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format,
                code::INVALID_ARGUMENT,
                &format!("cannot read request body: {e}"),
            );
        }
    };
    let (limit, raw_len) = (routes.limit, raw.len());
    // First a look that builds nothing: decompress, check the wire format, estimate what
    // decoding will allocate. Then that memory is claimed, and only then is anything built.
    let look = move || -> Result<Prepared, Box<http::Response<BoxBody>>> {
        let body = match decompress(&encoding, raw, limit) {
            Ok(b) => b,
            Err(BodyError::TooLarge) => return Err(Box::new(too_large(format, limit))),
            Err(e) => {
                let msg = match e {
                    BodyError::Io(e) => e,
                    _ => "cannot decompress the request body".to_string(),
                };
                return Err(Box::new(error(StatusCode::BAD_REQUEST, format, code::INVALID_ARGUMENT, &msg)));
            }
        };
        let bad = |Invalid(msg)| Box::new(error(StatusCode::BAD_REQUEST, format, code::INVALID_ARGUMENT, &msg));
        match format {
            Format::Protobuf => scan_protobuf(signal, body).map(Prepared::Protobuf).map_err(bad),
            Format::Json => {
                let estimate = json_decoded_bytes(&body);
                Ok(Prepared::Json(body, estimate))
            }
        }
    };
    let prepared = match offload(raw_len, format, look).await {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let decoding = match intake.claim_decode(prepared.estimate()) {
        Ok(claims) => claims,
        Err(DecodeRefusal::TooLarge { bytes, bound }) => {
            let msg = DecodeRefusal::TooLarge { bytes, bound }.message();
            let r = error(StatusCode::PAYLOAD_TOO_LARGE, format, code::RESOURCE_EXHAUSTED, &msg);
            return crate::body::closing(r);
        }
        Err(DecodeRefusal::Busy(refusal)) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, format, code::UNAVAILABLE, &refusal.message);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let decode = move || -> Result<Decoded, Box<http::Response<BoxBody>>> {
        let decoded = match prepared {
            Prepared::Protobuf(scanned) => scanned.decode(),
            Prepared::Json(body, _) => decode_json(signal, &body),
        };
        decoded.map_err(|Invalid(msg)| Box::new(error(StatusCode::BAD_REQUEST, format, code::INVALID_ARGUMENT, &msg)))
    };
    let decoded = match offload(raw_len, format, decode).await {
        Ok(d) => d,
        Err(response) => return *response,
    };
    // Decoded: what decoding took is the batch's own now (held by admission until exported).
    drop(decoding);
    intake.rejected("http", signal, decoded.rejected);
    match intake.submit("http", decoded.batch.with_origin(origin)).await {
        Ok(()) => {
            let body: Bytes = match format {
                Format::Protobuf => response::protobuf(signal, decoded.rejected, decoded.message.as_deref()).into(),
                Format::Json => response::json(signal, decoded.rejected, decoded.message.as_deref()).into(),
            };
            net::response(StatusCode::OK, format.content_type(), body)
        }
        Err(refusal) if refusal.retryable => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, format, code::UNAVAILABLE, &refusal.message);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(refusal) => error(StatusCode::INTERNAL_SERVER_ERROR, format, code::INTERNAL, &refusal.message),
    }
}

/// A request body checked and measured, not yet decoded.
enum Prepared {
    Protobuf(Scanned),
    Json(Bytes, usize),
}

impl Prepared {
    /// An upper bound of what decoding it allocates.
    fn estimate(&self) -> usize {
        match self {
            Prepared::Protobuf(s) => s.decoded_bytes(),
            Prepared::Json(_, estimate) => *estimate,
        }
    }
}

/// Runs `work` on the blocking pool when the body is large (so that decoding a 20 MiB JSON
/// request does not hold up every other connection on a small machine), else right here.
async fn offload<T: Send + 'static>(
    raw_len: usize,
    format: Format,
    work: impl FnOnce() -> Result<T, Box<http::Response<BoxBody>>> + Send + 'static,
) -> Result<T, Box<http::Response<BoxBody>>> {
    if raw_len < OFFLOAD_BYTES {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let msg = format!("decoding failed: {e}");
            Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, format, code::INTERNAL, &msg)))
        }
    }
}

fn content_type(req: &http::Request<Incoming>) -> Option<Format> {
    let v = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
        "application/json" => Some(Format::Json),
        _ => None,
    }
}

fn too_large(format: Format, limit: usize) -> http::Response<BoxBody> {
    let msg = format!("request body too large: over the max_request_body_size of {limit} bytes");
    error(StatusCode::PAYLOAD_TOO_LARGE, format, code::RESOURCE_EXHAUSTED, &msg)
}

/// An error answer: a `google.rpc.Status` in the request's format.
/// Bad data (400) also carries a `google.rpc.BadRequest` detail, as OTLP asks.
fn error(status: StatusCode, format: Format, rpc_code: i32, message: &str) -> http::Response<BoxBody> {
    let bad_data = status == StatusCode::BAD_REQUEST;
    let body: Bytes = match format {
        Format::Protobuf => {
            let details = if bad_data { vec![rpc_status::bad_request_detail(message)] } else { Vec::new() };
            RpcStatus { code: rpc_code, message: message.to_string(), details }.encode_to_vec().into()
        }
        Format::Json if bad_data => serde_json::json!({
            "code": rpc_code,
            "message": message,
            "details": [{"@type": rpc_status::BAD_REQUEST_TYPE, "fieldViolations": [{"description": message}]}]
        })
        .to_string()
        .into(),
        Format::Json => serde_json::json!({"code": rpc_code, "message": message}).to_string().into(),
    };
    net::response(status, format.content_type(), body)
}
