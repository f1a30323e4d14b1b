//! Decode memory as a budget: what decoding a request will allocate, estimated from its bytes
//! before anything is built, and the answers a receiver gives when the memory budget
//! (`memory_limiter`'s, or the default one) cannot take it.

use crate::net::BoxBody;
use crate::pipeline::{Claim, DecodeRefusal, Intake};

/// An upper bound of what parsing a JSON document builds: the bytes themselves, plus
/// `per_object` for every object and array element (each becomes at most one struct or value).
/// A linear scan that skips strings; it builds nothing.
pub fn json_estimate(body: &[u8], per_object: usize) -> usize {
    let mut values = 0usize;
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
            // An object, or another element or member after a comma.
            b'{' | b',' | b'[' => values += 1,
            _ => {}
        }
    }
    body.len().saturating_add(values.saturating_mul(per_object))
}

/// Claims `estimate` bytes for decoding, answering a refusal as plain text: 413 when one
/// request may not take that much (not retried), 503 with `Retry-After` when the budget is
/// busy. For the Jaeger, Zipkin and remote-write HTTP receivers.
pub fn claim_or_text(intake: &Intake, estimate: usize) -> Result<Vec<Claim>, Box<http::Response<BoxBody>>> {
    intake.claim_decode(estimate).map_err(|refusal| {
        let message = refusal.message();
        Box::new(match refusal {
            DecodeRefusal::TooLarge { .. } => {
                crate::receivers::body::too_large_close(crate::net::text(http::StatusCode::PAYLOAD_TOO_LARGE, &message))
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
        // "[", three "{" and two ",": an element after a comma is counted twice, as a bound.
        assert_eq!(json_estimate(b"[{},{},{}]", 100), 10 + 6 * 100);
        // Braces and commas inside strings (escaped quotes too) are text, not values.
        let text = br#"{"a":"{,[\"{,"}"#;
        assert_eq!(json_estimate(text, 100), text.len() + 100);
        // Six million empty objects: far more than their 18 MB.
        let many = b"{},".repeat(1000);
        assert!(json_estimate(&many, 256) > 100 * many.len());
    }
}
