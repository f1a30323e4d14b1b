//! OTLP over HTTP: POST of protobuf or JSON bodies, optionally gzip, zstd or deflate encoded,
//! answered in the request's content type. Limits apply to the decompressed size, and a
//! decompression bomb stops at the limit instead of filling memory.

use super::HttpConfig;
use super::decode::{Decoded, Invalid, decode_json, decode_protobuf};
use super::response;
use crate::net::{self, BoxBody};
use crate::pipeline::{Intake, Signal};
use crate::rpc_status::{self, RpcStatus, code};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prost::Message;
use std::io::Read;
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
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
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
    net::serve(listener, handler, shutdown, grace).await;
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
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let raw = match read_body(req.into_body(), routes.limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(format, routes.limit),
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
    let work = move || -> Result<Decoded, Box<http::Response<BoxBody>>> {
        let body = match decompress(&encoding, raw, limit) {
            Ok(b) => b,
            Err(BodyError::TooLarge) => return Err(Box::new(too_large(format, limit))),
            Err(BodyError::Io(e)) => {
                return Err(Box::new(error(StatusCode::BAD_REQUEST, format, code::INVALID_ARGUMENT, &e)));
            }
        };
        let decoded = match format {
            Format::Protobuf => decode_protobuf(signal, body),
            Format::Json => decode_json(signal, &body),
        };
        decoded.map_err(|Invalid(msg)| Box::new(error(StatusCode::BAD_REQUEST, format, code::INVALID_ARGUMENT, &msg)))
    };
    // Large bodies are decompressed and decoded on the blocking pool, so that a 20 MiB JSON
    // request does not hold up every other connection on a small machine.
    let outcome = if raw_len >= OFFLOAD_BYTES {
        match tokio::task::spawn_blocking(work).await {
            Ok(o) => o,
            Err(e) => {
                let msg = format!("decoding failed: {e}");
                Err(Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, format, code::INTERNAL, &msg)))
            }
        }
    } else {
        work()
    };
    let decoded = match outcome {
        Ok(d) => d,
        Err(response) => return *response,
    };
    intake.rejected("http", signal, decoded.rejected);
    match intake.submit("http", decoded.batch).await {
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

enum BodyError {
    TooLarge,
    Io(String),
}

/// Reads the whole body (chunked or not), refusing more than `limit` bytes.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Io(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Undoes `Content-Encoding`, stopping with `TooLarge` as soon as the output passes `limit`.
fn decompress(encoding: &str, raw: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    /// Reads in 64 KiB steps, growing the buffer exactly, so nothing is allocated past the limit.
    fn bounded(mut reader: impl Read, limit: usize, what: &str) -> Result<Bytes, BodyError> {
        const STEP: usize = 64 * 1024;
        let mut out: Vec<u8> = Vec::new();
        loop {
            if out.len() > limit {
                return Err(BodyError::TooLarge);
            }
            let want = STEP.min(limit + 1 - out.len());
            out.reserve_exact(want);
            let start = out.len();
            out.resize(start + want, 0);
            match reader.read(&mut out[start..]) {
                Ok(0) => {
                    out.truncate(start);
                    return Ok(out.into());
                }
                Ok(n) => out.truncate(start + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(start),
                Err(e) => return Err(BodyError::Io(format!("cannot decompress {what} body: {e}"))),
            }
        }
    }
    match encoding {
        "" | "identity" => Ok(raw),
        "gzip" | "x-gzip" => bounded(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        "deflate" => {
            // HTTP's deflate is zlib; some clients send raw deflate, so fall back to that.
            match bounded(flate2::read::ZlibDecoder::new(&raw[..]), limit, "deflate") {
                Err(BodyError::Io(_)) => bounded(flate2::read::DeflateDecoder::new(&raw[..]), limit, "deflate"),
                other => other,
            }
        }
        "zstd" => {
            let decoder = zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| BodyError::Io(format!("cannot decompress zstd body: {e}")))?;
            bounded(decoder, limit, "zstd")
        }
        other => Err(BodyError::Io(format!("unsupported content encoding \"{other}\": use gzip, zstd or deflate"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 200_000);
        assert!(matches!(decompress("gzip", bomb.into(), 1 << 20), Err(BodyError::TooLarge)));
    }

    #[test]
    fn each_encoding_round_trips() {
        let data = b"hello otlp".repeat(10);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(&data).unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for (enc, body) in
            [("gzip", gz.finish().unwrap()), ("deflate", zl.finish().unwrap()), ("zstd", zs), ("", data.clone())]
        {
            let out = decompress(enc, body.into(), 1 << 20).ok().unwrap_or_default();
            assert_eq!(&out[..], &data[..], "{enc}");
        }
        assert!(matches!(decompress("br", Bytes::from_static(b"x"), 10), Err(BodyError::Io(_))));
    }
}
