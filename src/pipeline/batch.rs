//! The batch: one signal's data on its way through a pipeline. It can stay in the encoded form it
//! arrived in (OTLP protobuf) until something needs its fields, and then decodes once; copies
//! handed to several exporters share one payload.

use super::admission::{Capacity, Claim};
use super::delivery::Delivery;
use crate::signal::Signal;
use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use std::sync::{Arc, OnceLock};

/// A decoded OTLP export request of one signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

/// Stored bytes that no longer decode: a bug upstream, since receivers validate what they take.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid OTLP {signal} payload: {reason}")]
pub struct DecodeError {
    pub signal: Signal,
    pub reason: String,
}

impl Request {
    pub fn signal(&self) -> Signal {
        match self {
            Request::Traces(_) => Signal::Traces,
            Request::Metrics(_) => Signal::Metrics,
            Request::Logs(_) => Signal::Logs,
        }
    }

    /// Decodes protobuf bytes of `signal`'s export request.
    pub fn decode(signal: Signal, bytes: &[u8]) -> Result<Request, DecodeError> {
        let err = |e: prost::DecodeError| DecodeError { signal, reason: e.to_string() };
        Ok(match signal {
            Signal::Traces => Request::Traces(ExportTraceServiceRequest::decode(bytes).map_err(err)?),
            Signal::Metrics => Request::Metrics(ExportMetricsServiceRequest::decode(bytes).map_err(err)?),
            Signal::Logs => Request::Logs(ExportLogsServiceRequest::decode(bytes).map_err(err)?),
        })
    }

    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Request::Traces(r) => r.encode_to_vec(),
            Request::Metrics(r) => r.encode_to_vec(),
            Request::Logs(r) => r.encode_to_vec(),
        }
    }

    /// Bytes of its protobuf encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Request::Traces(r) => r.encoded_len(),
            Request::Metrics(r) => r.encoded_len(),
            Request::Logs(r) => r.encoded_len(),
        }
    }

    /// Spans, metric data points or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Request::Traces(r) => r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum(),
            Request::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| metric_points(m.data.as_ref()))
                .sum(),
            Request::Logs(r) => {
                r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).map(|sl| sl.log_records.len()).sum()
            }
        }
    }

    /// Appends `other`'s resources to this request (both of one signal).
    pub fn append(&mut self, other: Request) {
        match (self, other) {
            (Request::Traces(a), Request::Traces(b)) => a.resource_spans.extend(b.resource_spans),
            (Request::Metrics(a), Request::Metrics(b)) => a.resource_metrics.extend(b.resource_metrics),
            (Request::Logs(a), Request::Logs(b)) => a.resource_logs.extend(b.resource_logs),
            _ => debug_assert!(false, "appending requests of different signals"),
        }
    }

    pub fn empty(signal: Signal) -> Request {
        match signal {
            Signal::Traces => Request::Traces(Default::default()),
            Signal::Metrics => Request::Metrics(Default::default()),
            Signal::Logs => Request::Logs(Default::default()),
        }
    }
}

/// Data points in one metric, as the collector counts them.
pub fn metric_points(data: Option<&Data>) -> usize {
    match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Keeps the data points of `metric` for which `keep` (called with each point's index, in
/// order) is true.
pub fn retain_points(
    metric: &mut opentelemetry_proto::tonic::metrics::v1::Metric,
    mut keep: impl FnMut(usize) -> bool,
) {
    fn retain<T>(points: &mut Vec<T>, keep: &mut impl FnMut(usize) -> bool) {
        let mut i = 0;
        points.retain(|_| {
            i += 1;
            keep(i - 1)
        });
    }
    match &mut metric.data {
        Some(Data::Gauge(g)) => retain(&mut g.data_points, &mut keep),
        Some(Data::Sum(s)) => retain(&mut s.data_points, &mut keep),
        Some(Data::Histogram(h)) => retain(&mut h.data_points, &mut keep),
        Some(Data::ExponentialHistogram(h)) => retain(&mut h.data_points, &mut keep),
        Some(Data::Summary(s)) => retain(&mut s.data_points, &mut keep),
        None => {}
    }
}

/// The shared body of a batch: the wire form, the decoded form, or both.
#[derive(Debug, Clone)]
struct Payload {
    /// One or more concatenated protobuf export requests, as received.
    encoded: Option<Bytes>,
    decoded: OnceLock<Request>,
}

/// See the module comment.
#[derive(Debug, Clone)]
pub struct Batch {
    signal: Signal,
    items: usize,
    payload: Arc<Payload>,
    /// Room held in exporter queues for this data (see `admission`), shared by its parts.
    claims: Vec<Arc<Claim>>,
    /// The client's request metadata (header names lower-cased), for `from_context`; kept
    /// through splits, and through merges of batches from the same context.
    context: Option<Arc<Vec<(String, String)>>>,
    /// The address of the client's connection; kept through splits, and merges of batches
    /// from the same client.
    client: Option<std::net::IpAddr>,
    /// Notices for the receiver that submitted the data (see `delivery`), shared by its parts.
    deliveries: Vec<Arc<Delivery>>,
}

/// Client request metadata, as receivers attach it to what they admit.
pub type Context = Arc<Vec<(String, String)>>;

/// A request's context as a batch carries it: its headers (gRPC metadata) when the receiver
/// has `include_metadata`, names lower-cased, followed by who it was authenticated as
/// (`auth.<name>`, from `auth::Identity` in its extensions). A client's own headers named
/// `auth.…` are left out, so that none can pass for an identity. `None` when there is nothing.
pub fn request_context(
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    include_metadata: bool,
) -> Option<Context> {
    // Credentials stay behind: the authenticator's header, and these wherever they are.
    let credential = extensions.get::<crate::auth::CredentialHeader>().map(|c| c.0.as_str());
    let secret = |k: &str| matches!(k, "authorization" | "proxy-authorization" | "cookie") || Some(k) == credential;
    let sent = headers
        .iter()
        .filter(|_| include_metadata)
        .filter(|(k, _)| !k.as_str().starts_with("auth.") && !secret(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())));
    let identity = extensions.get::<crate::auth::Identity>().into_iter().flat_map(|i| &i.0);
    let all: Vec<(String, String)> = sent.chain(identity.map(|(k, v)| (format!("auth.{k}"), v.clone()))).collect();
    (!all.is_empty()).then(|| Arc::new(all))
}

/// The context `net::serve_with` left in a request's extensions (see `request_context`).
#[derive(Clone, Debug)]
pub struct RequestContext(pub Context);

/// Where a request came from, as a receiver hands it to the batch it makes of it: its context
/// (see `request_context`) and the address of the client's connection.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub context: Option<Context>,
    pub client: Option<std::net::IpAddr>,
}

/// What the listener recorded in `extensions` about where the request came from.
pub fn origin_of(extensions: &http::Extensions) -> Origin {
    Origin {
        context: extensions.get::<RequestContext>().map(|c| c.0.clone()),
        client: extensions.get::<crate::net::PeerAddr>().map(|p| p.0.ip().to_canonical()),
    }
}

impl Batch {
    /// A batch from protobuf bytes that the caller has validated and counted.
    pub fn from_encoded(signal: Signal, bytes: Bytes, items: usize) -> Batch {
        Batch {
            signal,
            items,
            payload: Arc::new(Payload { encoded: Some(bytes), decoded: OnceLock::new() }),
            claims: Vec::new(),
            context: None,
            client: None,
            deliveries: Vec::new(),
        }
    }

    pub fn from_request(request: Request) -> Batch {
        let (signal, items) = (request.signal(), request.item_count());
        let decoded = OnceLock::new();
        let _ = decoded.set(request);
        Batch {
            signal,
            items,
            payload: Arc::new(Payload { encoded: None, decoded }),
            claims: Vec::new(),
            context: None,
            client: None,
            deliveries: Vec::new(),
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The decoded request, if the batch has been decoded (or was built decoded).
    pub fn decoded(&self) -> Option<&Request> {
        self.payload.decoded.get()
    }

    /// The protobuf bytes as received, if the batch still has them.
    pub fn encoded(&self) -> Option<&Bytes> {
        self.payload.encoded.as_ref()
    }

    /// Spans, data points or log records in the batch, known without decoding.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Bytes of the protobuf encoding: the received bytes, or what encoding would produce.
    pub fn wire_size(&self) -> usize {
        match (&self.payload.encoded, self.payload.decoded.get()) {
            (Some(b), _) => b.len(),
            (None, Some(r)) => r.encoded_len(),
            (None, None) => 0,
        }
    }

    pub fn is_encoded(&self) -> bool {
        self.payload.encoded.is_some()
    }

    /// Attaches room claimed in an exporter queue; it is released when every copy and part of
    /// the batch that holds it is gone.
    pub fn hold(&mut self, claim: Claim) {
        self.claims.push(Arc::new(claim));
    }

    /// Keeps only the claims on `capacities`: the copy of the batch handed to an exporter's
    /// queue should not hold room in the others.
    pub fn keep_claims_for(&mut self, capacities: &[Arc<Capacity>]) {
        self.claims.retain(|c| capacities.iter().any(|q| c.is_for(q)));
    }

    /// Takes the claims out, for a processor that gathers batches (see `ClaimSet`).
    pub fn take_claims(&mut self) -> Vec<Arc<Claim>> {
        std::mem::take(&mut self.claims)
    }

    /// Attaches claims taken from other batches.
    /// Attaches the client's request metadata.
    pub fn with_context(mut self, context: Context) -> Batch {
        self.context = Some(context);
        self
    }

    /// The batch with where its request came from (see `origin_of`).
    pub fn with_origin(mut self, origin: Origin) -> Batch {
        if origin.context.is_some() {
            self.context = origin.context;
        }
        self.client = origin.client;
        self
    }

    /// The address of the connection the data came on (for k8sattributes' `connection`
    /// association), while the batch holds data of one client only.
    pub fn client(&self) -> Option<std::net::IpAddr> {
        self.client
    }

    /// Attaches a delivery notice: it runs once every copy and part of this data is done with.
    pub fn on_delivered(mut self, delivery: Delivery) -> Batch {
        self.deliveries.push(Arc::new(delivery));
        self
    }

    /// The delivery notices the batch carries.
    pub(crate) fn deliveries(&self) -> Vec<Arc<Delivery>> {
        self.deliveries.clone()
    }

    /// Lets go of the notices that wait only for the data to be persisted: an in-memory queue
    /// taking its copy is as far as that copy goes toward a disk.
    pub(crate) fn release_until_persisted(&mut self) {
        self.deliveries.retain(|d| !d.is_until_persisted());
    }

    /// The data could not be kept: its notices will not run (a receiver waiting on one answers
    /// its client with a refusal, a file offset is not checkpointed past it).
    pub(crate) fn cancel_deliveries(&mut self) {
        for d in self.deliveries.drain(..) {
            d.cancel();
        }
    }

    /// The client's request metadata, if the receiver recorded it.
    pub fn context(&self) -> Option<&[(String, String)]> {
        self.context.as_deref().map(Vec::as_slice)
    }

    pub fn hold_shared(&mut self, claims: &[Arc<Claim>]) {
        self.claims.extend(claims.iter().cloned());
    }
    /// The same data (shared, not copied) without its claims, context or delivery notices: for
    /// work on another thread that must not hold queue room or delay an acknowledgement.
    pub fn data_only(&self) -> Batch {
        Batch {
            signal: self.signal,
            items: self.items,
            payload: self.payload.clone(),
            claims: Vec::new(),
            context: None,
            client: None,
            deliveries: Vec::new(),
        }
    }

    /// The decoded request; decodes on first use and keeps the result for every copy.
    pub fn request(&self) -> Result<&Request, DecodeError> {
        if let Some(r) = self.payload.decoded.get() {
            return Ok(r);
        }
        let bytes = self.payload.encoded.as_deref().unwrap_or_default();
        let decoded = Request::decode(self.signal, bytes)?;
        Ok(self.payload.decoded.get_or_init(|| decoded))
    }

    /// The request for changing; copies the payload if another batch shares it, and drops the
    /// wire form, which no longer matches.
    pub fn request_mut(&mut self) -> Result<&mut Request, DecodeError> {
        self.request()?;
        let payload = Arc::make_mut(&mut self.payload);
        payload.encoded = None;
        let request = payload
            .decoded
            .get_mut()
            .ok_or_else(|| DecodeError { signal: self.signal, reason: "decoded payload vanished".to_string() })?;
        Ok(request)
    }

    /// Recounts items after a processor changed the request.
    pub fn recount(&mut self) {
        if let Some(r) = self.payload.decoded.get() {
            self.items = r.item_count();
        }
    }

    /// The wire form for an OTLP exporter: the original bytes if untouched, else encoded now.
    pub fn to_encoded(&self) -> Bytes {
        match (&self.payload.encoded, self.payload.decoded.get()) {
            (Some(b), _) => b.clone(),
            (None, Some(r)) => Bytes::from(r.encode_to_vec()),
            (None, None) => Bytes::new(),
        }
    }

    /// Joins batches of one signal into one (`None` for no batches). Encoded batches stay
    /// encoded (protobuf messages of one type concatenate into one valid message); otherwise the
    /// requests are appended.
    pub fn merge(batches: Vec<Batch>) -> Option<Batch> {
        let mut iter = batches.into_iter();
        let first = iter.next()?;
        let rest: Vec<Batch> = iter.collect();
        if rest.is_empty() {
            return Some(first);
        }
        let signal = first.signal;
        let items = first.items + rest.iter().map(|b| b.items).sum::<usize>();
        let context = first.context.clone().filter(|c| rest.iter().all(|b| b.context.as_ref() == Some(c)));
        let client = first.client.filter(|c| rest.iter().all(|b| b.client == Some(*c)));
        let mut claims = first.claims.clone();
        let mut deliveries = first.deliveries.clone();
        for b in &rest {
            claims.extend(b.claims.iter().cloned());
            deliveries.extend(b.deliveries.iter().cloned());
        }
        let all_encoded = first.is_encoded() && rest.iter().all(Batch::is_encoded);
        let payload = if all_encoded {
            let len = |b: &Batch| b.payload.encoded.as_ref().map_or(0, Bytes::len);
            let total = len(&first) + rest.iter().map(len).sum::<usize>();
            let mut buf = BytesMut::with_capacity(total);
            for b in std::iter::once(&first).chain(rest.iter()) {
                if let Some(e) = &b.payload.encoded {
                    buf.extend_from_slice(e);
                }
            }
            Payload { encoded: Some(buf.freeze()), decoded: OnceLock::new() }
        } else {
            let mut merged = Request::empty(signal);
            for b in std::iter::once(first).chain(rest) {
                match b.into_request() {
                    Ok(r) => merged.append(r),
                    Err(e) => tracing::error!(error = %e, "dropping undecodable part of a batch"),
                }
            }
            let decoded = OnceLock::new();
            let _ = decoded.set(merged);
            Payload { encoded: None, decoded }
        };
        Some(Batch { signal, items, payload: Arc::new(payload), claims, context, client, deliveries })
    }

    /// Takes the request out, decoding if needed and copying only if the payload is shared.
    pub fn into_request(self) -> Result<Request, DecodeError> {
        self.request()?;
        match Arc::try_unwrap(self.payload) {
            Ok(mut p) => p.decoded.take().ok_or_else(|| DecodeError { signal: self.signal, reason: "empty".into() }),
            Err(shared) => Ok(shared.decoded.get().cloned().unwrap_or_else(|| Request::empty(self.signal))),
        }
    }

    /// Splits into batches of at most `max_items` items each; every part shares the claims, so
    /// the room is released once all parts are done.
    pub fn split(self, max_items: usize) -> Vec<Batch> {
        if max_items == 0 || self.items <= max_items {
            return vec![self];
        }
        let signal = self.signal;
        match self.into_pieces() {
            Ok((request, kin)) => super::split::split(request, max_items).into_iter().map(|r| kin.part(r)).collect(),
            Err(e) => {
                tracing::error!(error = %e, %signal, "cannot split an undecodable batch");
                Vec::new()
            }
        }
    }

    /// Takes the request out to be cut into pieces, with what makes each piece a part of this
    /// batch (see `Kin`).
    pub fn into_pieces(self) -> Result<(Request, Kin), DecodeError> {
        let kin = Kin {
            claims: self.claims.clone(),
            context: self.context.clone(),
            client: self.client,
            deliveries: self.deliveries.clone(),
        };
        Ok((self.into_request()?, kin))
    }
}

/// What the parts of one batch share: the queue room it holds (released once every part is
/// done), its request context and its delivery notices.
pub struct Kin {
    claims: Vec<Arc<Claim>>,
    context: Option<Arc<Vec<(String, String)>>>,
    client: Option<std::net::IpAddr>,
    deliveries: Vec<Arc<Delivery>>,
}

impl Kin {
    /// A part of the batch made of `request`.
    pub fn part(&self, request: Request) -> Batch {
        let mut b = Batch::from_request(request);
        b.claims = self.claims.clone();
        b.context = self.context.clone();
        b.client = self.client;
        b.deliveries = self.deliveries.clone();
        b
    }
}

/// Request builders shared by unit tests across the crate.
#[cfg(test)]
pub mod tests_support {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    /// A payload captured from a real SDK, from `tests/fixtures/`.
    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `spans` spans with valid ids, named s0, s1, …, under one resource and scope.
    pub fn traces(spans: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|i| Span {
                            name: format!("s{i}"),
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::traces;
    use super::*;

    #[test]
    fn a_request_context_keeps_metadata_and_identity_but_never_credentials() {
        let mut headers = http::HeaderMap::new();
        for (k, v) in
            [("x-tenant", "acme"), ("authorization", "Bearer t"), ("x-api-key", "k"), ("auth.subject", "root")]
        {
            headers.insert(http::HeaderName::from_static(k), http::HeaderValue::from_static(v));
        }
        let mut ext = http::Extensions::new();
        ext.insert(crate::auth::Identity(vec![("subject".into(), "svc".into())]));
        ext.insert(crate::auth::CredentialHeader("x-api-key".into()));
        let c = request_context(&headers, &ext, true).unwrap();
        let keys: Vec<&str> = c.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["x-tenant", "auth.subject"]);
        assert_eq!(c[1].1, "svc", "the identity, not the client's forged header");
        let without = request_context(&headers, &ext, false).unwrap();
        assert_eq!(without.len(), 1, "without include_metadata only the identity");
        assert!(request_context(&headers, &http::Extensions::new(), false).is_none());
    }

    #[test]
    fn encoded_batches_merge_by_concatenation() {
        let a = Batch::from_encoded(Signal::Traces, traces(2).encode_to_vec().into(), 2);
        let b = Batch::from_encoded(Signal::Traces, traces(3).encode_to_vec().into(), 3);
        let m = Batch::merge(vec![a, b]).unwrap();
        assert!(m.is_encoded());
        assert_eq!(m.items(), 5);
        assert_eq!(m.request().unwrap().item_count(), 5);
        let Request::Traces(t) = m.request().unwrap() else { panic!() };
        assert_eq!(t.resource_spans.len(), 2);
    }

    #[test]
    fn mixed_batches_merge_decoded() {
        let a = Batch::from_encoded(Signal::Traces, traces(2).encode_to_vec().into(), 2);
        let b = Batch::from_request(Request::Traces(traces(1)));
        let m = Batch::merge(vec![a, b]).unwrap();
        assert!(!m.is_encoded());
        assert_eq!(m.request().unwrap().item_count(), 3);
    }

    #[test]
    fn untouched_batch_leaves_as_the_same_bytes() {
        let bytes: Bytes = traces(4).encode_to_vec().into();
        let b = Batch::from_encoded(Signal::Traces, bytes.clone(), 4);
        let _ = b.request().unwrap();
        assert_eq!(b.to_encoded(), bytes);
    }

    #[test]
    fn changing_a_shared_batch_copies_it() {
        let mut a = Batch::from_encoded(Signal::Traces, traces(2).encode_to_vec().into(), 2);
        let b = a.clone();
        if let Request::Traces(t) = a.request_mut().unwrap() {
            t.resource_spans[0].scope_spans[0].spans.pop();
        }
        a.recount();
        assert_eq!(a.items(), 1);
        assert_eq!(b.request().unwrap().item_count(), 2);
        assert!(b.is_encoded() && !a.is_encoded());
    }

    #[test]
    fn split_keeps_every_item_once() {
        let b = Batch::from_request(Request::Traces(traces(10)));
        let parts = b.split(4);
        assert_eq!(parts.iter().map(Batch::items).collect::<Vec<_>>(), vec![4, 4, 2]);
        let names: Vec<String> = parts
            .iter()
            .flat_map(|p| match p.request().unwrap() {
                Request::Traces(t) => {
                    t.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
                }
                _ => vec![],
            })
            .collect();
        assert_eq!(names, (0..10).map(|i| format!("s{i}")).collect::<Vec<_>>());
    }
}
