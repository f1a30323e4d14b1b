//! Request bodies for the receivers (HTTP bodies and gRPC messages): read whole (chunked or not)
//! within a size limit, and `Content-Encoding` undone with the limit applied to the decompressed
//! size, so that a decompression bomb stops at the limit instead of filling memory.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::io::Read;

pub enum BodyError {
    TooLarge,
    /// The client did not send the whole body before the listener's `read_timeout`.
    Timeout,
    Io(String),
}

impl BodyError {
    /// The HTTP answer for this error as plain text (408 for a stalled body, 413 past `limit`,
    /// 400 otherwise), for receivers that answer errors in text.
    pub fn text_response(&self, limit: usize) -> http::Response<crate::net::BoxBody> {
        use http::StatusCode;
        match self {
            BodyError::TooLarge => closing(crate::net::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over the max_request_body_size of {limit} bytes"),
            )),
            BodyError::Timeout => closing(crate::net::text(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received within the read timeout",
            )),
            BodyError::Io(e) => crate::net::text(StatusCode::BAD_REQUEST, &format!("cannot read request body: {e}")),
        }
    }
}

/// Marks an answer as the connection's last (a 413 or 408: the rest of the body is never read).
pub fn closing(mut r: http::Response<crate::net::BoxBody>) -> http::Response<crate::net::BoxBody> {
    r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    r
}

/// The body size the client declared (`Content-Length`), if any.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
}

/// After a refusal sent before the body was read: up to 256 KiB more of it, for at most 2 s,
/// read and thrown away (as Go's server does), so that a client still sending reads the answer
/// rather than a connection reset; then the connection closes.
pub fn linger(mut body: Incoming) {
    tokio::spawn(async move {
        let mut left: usize = 256 * 1024;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            left = match left.checked_sub(n) {
                Some(l) if l > 0 => l,
                _ => break,
            };
        }
    });
}

/// Why a body was not reserved before reading it.
pub enum NotReserved {
    /// Its declared length is over the receiver's limit: refused before a byte is read.
    TooLarge,
    /// The memory budget cannot take it now.
    Busy(crate::pipeline::Refusal),
}

/// Before a body is read: a declared length over `limit` refused, else the declared size
/// reserved in the memory budgets its data will meet, or, without a Content-Length, a check
/// that none is refusing everything. The claims are held until the data is admitted.
pub fn reserve_memory(
    intake: &crate::pipeline::Intake,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Vec<crate::pipeline::Claim>, NotReserved> {
    match declared_length(headers) {
        Some(n) if n > limit as u64 => Err(NotReserved::TooLarge),
        Some(n) => intake.reserve_memory(n as usize).map_err(NotReserved::Busy),
        None if intake.memory_paused() => {
            Err(NotReserved::Busy(crate::pipeline::Refusal::retryable("memory limit reached; retry later")))
        }
        None => Ok(Vec::new()),
    }
}

/// `reserve_memory` for the Jaeger, Zipkin and remote-write HTTP receivers, which answer in
/// plain text: `too_large` (made the connection's last) past the limit, 503 with
/// `Retry-After: 1` when the memory budget is full.
pub fn reserve_memory_or_text(
    intake: &crate::pipeline::Intake,
    headers: &http::HeaderMap,
    limit: usize,
    too_large: impl FnOnce() -> http::Response<crate::net::BoxBody>,
) -> Result<Vec<crate::pipeline::Claim>, Box<http::Response<crate::net::BoxBody>>> {
    reserve_memory(intake, headers, limit).map_err(|not| match not {
        NotReserved::TooLarge => Box::new(closing(too_large())),
        NotReserved::Busy(refusal) => {
            let mut r = crate::net::text(http::StatusCode::SERVICE_UNAVAILABLE, &refusal.message);
            r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            Box::new(r)
        }
    })
}

/// The request's `Content-Encoding`, trimmed and lower-cased ("" when absent).
pub fn content_encoding(headers: &http::HeaderMap) -> String {
    headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase()
}

/// Reads the whole body within `limit` and undoes `encoding`, the limit applying to both.
pub async fn read_decoded(
    body: Incoming,
    encoding: &str,
    limit: usize,
    deadline: Option<tokio::time::Instant>,
) -> Result<Bytes, BodyError> {
    decompress(encoding, read_body(body, limit, deadline).await?, limit)
}

/// Reads the whole body (chunked or not), refusing more than `limit` bytes — at once when the
/// declared length is over it — and giving up at `deadline` (a body that stalls).
pub async fn read_body(
    mut body: Incoming,
    limit: usize,
    deadline: Option<tokio::time::Instant>,
) -> Result<Bytes, BodyError> {
    use http_body::Body;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    // Grows as data arrives, never by what the client declared.
    let mut buf = BytesMut::new();
    loop {
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, body.frame()).await.map_err(|_| BodyError::Timeout)?,
            None => body.frame().await,
        };
        let Some(frame) = next else { break };
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
pub fn decompress(encoding: &str, raw: Bytes, limit: usize) -> Result<Bytes, BodyError> {
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
