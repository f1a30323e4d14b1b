//! Decode memory as a budget: what decoding a request will allocate, estimated from its bytes
//! before anything is built, and the answers a receiver gives when the memory budget
//! (`memory_limiter`'s, or the default one) cannot take it.

use crate::net::BoxBody;
use crate::pipeline::{Claim, DecodeRefusal, Intake};

/// An estimate of what parsing a JSON document builds: the bytes themselves, `per_object` for
/// every object (each becomes at most one struct), and 16 bytes for every other array element
/// (a number in a packed list). A linear scan that skips strings; it builds nothing.
pub fn json_estimate(body: &[u8], per_object: usize) -> usize {
    let mut objects = 0usize;
    let mut elements = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => objects += 1,
            b',' | b'[' => elements += 1,
            _ => {}
        }
    }
    body.len().saturating_add(objects.saturating_mul(per_object)).saturating_add(elements.saturating_mul(16))
}

/// Claims `estimate` bytes for decoding, answering a refusal as plain text: 413 when one
/// request may not take that much (not retried), 503 with `Retry-After` when the budget is
/// busy. For the Jaeger, Zipkin and remote-write HTTP receivers.
pub fn claim_or_text(intake: &Intake, estimate: usize) -> Result<Vec<Claim>, Box<http::Response<BoxBody>>> {
    intake.claim_decode(estimate).map_err(|refusal| {
        let message = refusal.message();
        Box::new(match refusal {
            DecodeRefusal::TooLarge { .. } => {
                crate::body::closing(crate::net::text(http::StatusCode::PAYLOAD_TOO_LARGE, &message))
            }
            DecodeRefusal::Busy(_) => {
                let mut r = crate::net::text(http::StatusCode::SERVICE_UNAVAILABLE, &message);
                r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                r
            }
        })
    })
}

/// The gRPC answer for a decode refusal: RESOURCE_EXHAUSTED without RetryInfo when too large
/// (OTLP clients do not retry it), UNAVAILABLE with RetryInfo when the budget is busy.
pub fn grpc_status(refusal: &DecodeRefusal) -> tonic::Status {
    match refusal {
        DecodeRefusal::TooLarge { .. } => tonic::Status::resource_exhausted(refusal.message()),
        DecodeRefusal::Busy(_) => crate::grpc::retryable(tonic::Code::Unavailable, &refusal.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_counted_outside_strings() {
        // Three objects, "[" and two commas.
        assert_eq!(json_estimate(b"[{},{},{}]", 100), 10 + 3 * 100 + 3 * 16);
        // Braces and commas inside strings (escaped quotes too) are text, not values.
        let text = br#"{"a":"{,[\"{,"}"#;
        assert_eq!(json_estimate(text, 100), text.len() + 100);
        // Six million empty objects: far more than their 18 MB.
        let many = b"{},".repeat(1000);
        assert!(json_estimate(&many, 256) > 80 * many.len());
    }
}
