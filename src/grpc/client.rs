//! One gRPC unary call over HTTP/2, framed here rather than by tonic so that the compression
//! level is ours to choose (tonic fixes gzip at level 6, which costs more CPU per span than the
//! whole rest of the gateway). Answers come back as `tonic::Status`, trailers or trailers-only.

use crate::compression::Compressor;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::io::Read;
use std::time::Duration;
use tonic::{Code, Status};

pub type H2Client = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Frames `message` as a gRPC length-prefixed message, compressed as asked.
pub fn frame(message: &[u8], compressor: &Compressor) -> Result<Bytes, String> {
    let (flag, payload): (u8, Vec<u8>) = match compressor.compress(message)? {
        Some(compressed) => (1, compressed),
        None => (0, message.to_vec()),
    };
    let len = u32::try_from(payload.len()).map_err(|_| "message over 4 GiB".to_string())?;
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u8(flag);
    out.put_u32(len);
    out.extend_from_slice(&payload);
    Ok(out.freeze())
}

/// Sends one framed request to `uri` and returns the response message, or the gRPC status.
pub async fn unary(
    client: &H2Client,
    uri: Uri,
    framed: Bytes,
    compressor: &Compressor,
    metadata: &[(http::HeaderName, HeaderValue)],
    timeout: Duration,
) -> Result<Bytes, Status> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header("grpc-accept-encoding", "gzip")
        .header("grpc-timeout", grpc_timeout(timeout))
        .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
    if let Some(encoding) = compressor.encoding() {
        req = req.header("grpc-encoding", encoding);
    }
    for (k, v) in metadata {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(framed)).map_err(|e| Status::internal(e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| Status::unavailable(format!("connection: {}", crate::cause::chain(&e))))?;
    let (parts, body) = resp.into_parts();
    if parts.status != http::StatusCode::OK {
        // gRPC's HTTP-to-status mapping for answers that are not gRPC at all.
        let code = match parts.status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        };
        return Err(Status::new(code, format!("HTTP {}", parts.status)));
    }
    // Trailers-only answer: the status is in the headers.
    if let Some(status) = status_from(&parts.headers) {
        return status.map(|()| Bytes::new());
    }
    // The answer is one small message; a backend streaming more is cut off.
    let collected = http_body_util::Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| Status::unavailable(format!("reading the answer: {}", crate::cause::chain(e.as_ref()))))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    match status_from(&trailers) {
        Some(Err(status)) => Err(status),
        // Delivered: an answer we cannot read only means no partial-success details.
        Some(Ok(())) => Ok(message(data, parts.headers.get("grpc-encoding")).unwrap_or_default()),
        None => Err(Status::unknown("answer without grpc-status")),
    }
}

/// The largest answer read from a backend.
const MAX_ANSWER: usize = 4 << 20;

/// The `grpc-status` in `headers`, if there is one: `Ok` for OK, else the status with its
/// message and details. A value that does not parse is UNKNOWN.
fn status_from(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let raw = headers.get("grpc-status")?;
    let code: i32 = raw.to_str().ok().and_then(|v| v.trim().parse().ok()).unwrap_or(2);
    if code == 0 {
        return Some(Ok(()));
    }
    let message =
        headers.get("grpc-message").and_then(|v| v.to_str().ok()).map(crate::percent::decode_lossy).unwrap_or_default();
    // Binary metadata is base64, with or without padding.
    let details = headers.get("grpc-status-details-bin").and_then(|v| {
        let unpadded = v.as_bytes().trim_ascii_end();
        let unpadded = &unpadded[..unpadded.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1)];
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded).ok()
    });
    Some(Err(match details {
        Some(d) => Status::with_details(Code::from_i32(code), message, d.into()),
        None => Status::new(Code::from_i32(code), message),
    }))
}

/// The first message of a response body, decompressed if flagged.
fn message(mut data: Bytes, encoding: Option<&HeaderValue>) -> Result<Bytes, Status> {
    if data.len() < 5 {
        return Ok(Bytes::new());
    }
    let compressed = data.get_u8() == 1;
    let len = data.get_u32() as usize;
    if data.len() < len {
        return Err(Status::internal("truncated answer"));
    }
    let body = data.split_to(len);
    if !compressed {
        return Ok(body);
    }
    let mut out = Vec::new();
    match encoding.and_then(|v| v.to_str().ok()) {
        Some("gzip") => flate2::read::GzDecoder::new(&body[..]).take(16 << 20).read_to_end(&mut out).map(|_| ()),
        Some("zstd") => {
            zstd::stream::read::Decoder::new(&body[..]).and_then(|d| d.take(16 << 20).read_to_end(&mut out)).map(|_| ())
        }
        _ => return Err(Status::internal("compressed answer in an unknown encoding")),
    }
    .map_err(|e| Status::internal(format!("answer: {e}")))?;
    Ok(out.into())
}

/// `grpc-timeout`: at most 8 digits, in the finest unit that fits.
fn grpc_timeout(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms < 100_000_000 {
        format!("{ms}m")
    } else if d.as_secs() < 100_000_000 {
        format!("{}S", d.as_secs())
    } else {
        format!("{}H", (d.as_secs() / 3600).min(99_999_999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_percent_decoding() {
        use crate::compression::{Compression, CompressionParams};
        let f = frame(b"abc", &Compressor::new(Compression::None, &CompressionParams::default())).unwrap();
        assert_eq!(&f[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let g = frame(&b"x".repeat(1000), &Compressor::new(Compression::Gzip, &CompressionParams::default())).unwrap();
        assert_eq!(g[0], 1);
        assert_eq!(u32::from_be_bytes([g[1], g[2], g[3], g[4]]) as usize, g.len() - 5);
        assert_eq!(crate::percent::decode_lossy("sink%20told%20to%20fail"), "sink told to fail");
        assert_eq!(crate::percent::decode_lossy("100%"), "100%");
        assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }

    #[test]
    fn statuses_come_from_headers_with_details() {
        let mut h = HeaderMap::new();
        assert!(status_from(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(status_from(&h), Some(Ok(()))));
        h.insert("grpc-status", HeaderValue::from_static("banana"));
        assert_eq!(status_from(&h).unwrap().unwrap_err().code(), Code::Unknown);
        let details = crate::rpc_status::status_with_retry_info(14, "busy", Duration::from_secs(2));
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&details);
        h.insert("grpc-status", HeaderValue::from_static("14"));
        h.insert("grpc-message", HeaderValue::from_static("busy%21"));
        h.insert("grpc-status-details-bin", HeaderValue::from_str(&encoded).unwrap());
        let s = status_from(&h).unwrap().unwrap_err();
        assert_eq!((s.code(), s.message()), (Code::Unavailable, "busy!"));
        assert_eq!(crate::grpc::retry_verdict(&s), (true, Some(Duration::from_secs(2))));
    }
}
