//! POST /api/v1/write: snappy-compressed protobuf, 1.0 (`application/x-protobuf`, or with
//! `proto=prometheus.WriteRequest`) or 2.0 (`proto=io.prometheus.write.v2.Request`). Answers as
//! the spec says: 204 when written (2.0 with the `…-Written` headers), 400 for a malformed body
//! (never retried), 415 for a message type or encoding not taken, 503 with `Retry-After` when
//! switchyard is full (senders retry 5xx).

use super::decode::{self, MetaCache};
use super::{PrometheusRemoteWriteReceiverConfig, V1, V2};
use crate::body::{BodyError, read_body};
use crate::net::{self, BoxBody, text};
use crate::pipeline::{Batch, Intake, Request};
use crate::proto::{prometheus as v1, prometheus_v2 as v2};
use crate::receivers::prometheus::translate::{self, SeriesState};
use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PATH: &str = "/api/v1/write";

struct Settings {
    accept_v1: bool,
    accept_v2: bool,
    limit: usize,
    meta: MetaCache,
    /// Start times per (job, instance), kept across requests; no staleness is inferred.
    series: std::sync::Mutex<std::collections::HashMap<Vec<(String, String)>, SeriesState>>,
}

pub async fn serve(
    cfg: PrometheusRemoteWriteReceiverConfig,
    listener: TcpListener,
    limits: crate::net::ConnLimits,
    intake: Arc<Intake>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let limits = limits.counted(intake.telemetry());
    let settings = Arc::new(Settings {
        accept_v1: cfg.accepted_protobuf_messages.iter().any(|m| m == V1),
        accept_v2: cfg.accepted_protobuf_messages.iter().any(|m| m == V2),
        limit: usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX),
        meta: MetaCache::default(),
        series: Default::default(),
    });
    let handler = move |req: http::Request<Incoming>| {
        let (intake, settings) = (intake.clone(), settings.clone());
        async move {
            let response = handle(req, &intake, &settings).await;
            if response.status().is_client_error() {
                intake.invalid_request("http", response.status().as_str());
            }
            response
        }
    };
    net::serve_with(listener, limits, handler, shutdown, grace).await;
}

/// Which message a request says it carries, from its Content-Type.
fn message(content_type: &str) -> Result<&'static str, String> {
    let mut parts = content_type.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("").to_ascii_lowercase();
    if essence != "application/x-protobuf" {
        return Err(format!("unsupported content type \"{content_type}\": use application/x-protobuf"));
    }
    match parts.find_map(|p| p.strip_prefix("proto=")) {
        None | Some(V1) => Ok(V1),
        Some(V2) => Ok(V2),
        Some(other) => Err(format!("unsupported remote-write message \"{other}\": use {V1} or {V2}")),
    }
}

async fn handle(req: http::Request<Incoming>, intake: &Intake, s: &Settings) -> http::Response<BoxBody> {
    if req.uri().path() != PATH {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no remote-write endpoint at {}: use POST {PATH}", req.uri().path()),
        );
    }
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, &format!("method {} not allowed: use POST", req.method()));
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = match message(content_type) {
        Ok(k) => k,
        Err(e) => return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e),
    };
    if (kind == V1 && !s.accept_v1) || (kind == V2 && !s.accept_v2) {
        let accepted: Vec<&str> =
            [(V1, s.accept_v1), (V2, s.accept_v2)].iter().filter(|(_, a)| *a).map(|(m, _)| *m).collect();
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("{kind} is not accepted here (accepted: {})", accepted.join(", ")),
        );
    }
    // With a memory_limiter: the declared body reserved before it is read.
    let _reserved = match crate::body::reserve_memory_or_text(intake, req.headers(), s.limit, || too_large(s.limit)) {
        Ok(claims) => claims,
        Err(response) => {
            crate::body::linger(req.into_body());
            return *response;
        }
    };
    let encoding = crate::body::content_encoding(req.headers());
    let origin = crate::pipeline::origin_of(req.extensions());
    if encoding != "snappy" {
        let given = if encoding.is_empty() { "none" } else { &encoding };
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("unsupported content encoding \"{given}\": use snappy"),
        );
    }
    let deadline = net::read_deadline(&req);
    let compressed = match read_body(req.into_body(), s.limit, deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return crate::body::closing(too_large(s.limit)),
        Err(e) => return e.text_response(s.limit),
    };
    let (raw, estimate) = match unpack(kind, &compressed, s.limit) {
        Ok(r) => r,
        Err(BodyFault::TooLarge) => return too_large(s.limit),
        Err(BodyFault::Bad(e)) => return text(StatusCode::BAD_REQUEST, &e),
    };
    drop(compressed);
    let decoding = match crate::receivers::budget::claim_or_text(intake, estimate) {
        Ok(claims) => claims,
        Err(response) => return *response,
    };
    let decoded = match decode_raw(kind, &raw, &s.meta, intake.decode_bound()) {
        Ok(d) => d,
        Err(BodyFault::TooLarge) => return too_large(s.limit),
        Err(BodyFault::Bad(e)) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let samples = decoded.samples;
    let request = {
        let mut states = s.series.lock().unwrap_or_else(|e| e.into_inner());
        to_request(&decoded, &mut states)
    };
    // Decoded: what decoding took is the batch's own now (held by admission until exported).
    drop(decoding);
    let batch = Batch::from_request(Request::Metrics(request)).with_origin(origin);
    if batch.items() > 0 {
        match intake.submit("http", batch).await {
            Ok(()) => {}
            Err(refusal) if refusal.retryable => {
                let mut r = text(StatusCode::SERVICE_UNAVAILABLE, &refusal.message);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            Err(refusal) => return text(StatusCode::INTERNAL_SERVER_ERROR, &refusal.message),
        }
    }
    let mut r = net::response(StatusCode::NO_CONTENT, "text/plain", "");
    if kind == V2 {
        let h = r.headers_mut();
        h.insert("X-Prometheus-Remote-Write-Samples-Written", HeaderValue::from(samples));
        h.insert("X-Prometheus-Remote-Write-Histograms-Written", HeaderValue::from_static("0"));
        h.insert("X-Prometheus-Remote-Write-Exemplars-Written", HeaderValue::from_static("0"));
    }
    r
}

/// Memory one decoded remote-write field may take: a series' label or sample, and the OTLP
/// data point or attribute it becomes.
const PER_FIELD: usize = std::mem::size_of::<opentelemetry_proto::tonic::metrics::v1::NumberDataPoint>()
    + std::mem::size_of::<opentelemetry_proto::tonic::common::v1::KeyValue>();

/// Why a body was not taken.
pub(crate) enum BodyFault {
    /// Over the limit once decompressed.
    TooLarge,
    /// Not snappy, or not the message it claims to be.
    Bad(String),
}

/// A snappy-compressed body of message `kind` (`V1` or `V2`), decoded into series; at most
/// `limit` bytes once decompressed.
pub(crate) fn decode_body(
    kind: &str,
    compressed: &[u8],
    limit: usize,
    meta: &MetaCache,
) -> Result<decode::Decoded, BodyFault> {
    let (raw, _estimate) = unpack(kind, compressed, limit)?;
    decode_raw(kind, &raw, meta, limit.saturating_mul(8))
}

/// Undoes snappy (at most `limit` bytes, checked from the block header before allocating) and
/// looks at the protobuf without building it: its nesting is bounded, and the estimate of what
/// decoding it takes is returned with it.
pub(crate) fn unpack(kind: &str, compressed: &[u8], limit: usize) -> Result<(Vec<u8>, usize), BodyFault> {
    match snap::raw::decompress_len(compressed) {
        Ok(n) if n > limit => return Err(BodyFault::TooLarge),
        Ok(_) => {}
        Err(e) => return Err(BodyFault::Bad(format!("body is not snappy block-compressed: {e}"))),
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(compressed)
        .map_err(|e| BodyFault::Bad(format!("corrupt snappy body: {e}")))?;
    // Each protobuf field decodes to at most one label, sample or series, and then to an OTLP
    // point or attribute.
    let shape = crate::protowire::check(&raw).map_err(|e| BodyFault::Bad(format!("not a {kind}: {e}")))?;
    let estimate = shape.estimate(raw.len(), PER_FIELD);
    Ok((raw, estimate))
}

/// Decodes an unpacked body (see `unpack`) into series. Every sample gets its own copy of its
/// series' labels, so before that the copies' size is added up: over `max_expanded` bytes (a
/// long label on many samples, or a 2.0 symbol referenced many times) the body is too large.
pub(crate) fn decode_raw(
    kind: &str,
    raw: &[u8],
    meta: &MetaCache,
    max_expanded: usize,
) -> Result<decode::Decoded, BodyFault> {
    let too_large = |n: usize| if n > max_expanded { Err(BodyFault::TooLarge) } else { Ok(()) };
    let decoded = if kind == V1 {
        let r = v1::WriteRequest::decode(raw).map_err(|e| BodyFault::Bad(format!("not a {V1}: {e}")))?;
        too_large(decode::expanded_v1(&r))?;
        decode::from_v1(r, meta)
    } else {
        let r = v2::Request::decode(raw).map_err(|e| BodyFault::Bad(format!("not a {V2}: {e}")))?;
        too_large(decode::expanded_v2(&r))?;
        decode::from_v2(r)
    };
    decoded.map_err(BodyFault::Bad)
}

/// The series as one OTLP request (so that a refusal takes none of it), with start times kept
/// per (job, instance) in `states` across requests.
pub(crate) fn to_request(
    decoded: &decode::Decoded,
    states: &mut std::collections::HashMap<Vec<(String, String)>, SeriesState>,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    let mut request = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::default();
    for group in &decoded.groups {
        let target = translate::Target { labels: &group.target, scheme: "" };
        // Start times carry over between requests (a series' first sample starts it, unless a
        // 2.0 start timestamp says otherwise); absence from a request ends nothing.
        let state = states.entry(group.target.clone()).or_insert_with(SeriesState::without_staleness);
        let part = translate::to_otlp(&group.families, &target, 0, true, state, &[]);
        request.resource_metrics.extend(part.resource_metrics);
    }
    request
}

fn too_large(limit: usize) -> http::Response<BoxBody> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request over max_request_body_size ({limit} bytes) when decompressed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_comes_from_the_content_type() {
        assert_eq!(message("application/x-protobuf"), Ok(V1));
        assert_eq!(message("application/x-protobuf;proto=prometheus.WriteRequest"), Ok(V1));
        assert_eq!(message("application/x-protobuf; proto=io.prometheus.write.v2.Request"), Ok(V2));
        assert!(message("application/json").is_err());
        assert!(message("application/x-protobuf;proto=io.prometheus.write.v3.Request").is_err());
    }
}
