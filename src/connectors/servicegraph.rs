//! The `servicegraph` connector: the calls between services, as the collector's servicegraph
//! connector counts them. A client (or producer) span and the server (or consumer) span whose
//! parent it is make one edge, client service → server service; an edge waits in a bounded store
//! for its other half (`store.ttl`, `store.max_items`). A client span naming a database is an
//! edge on its own; a half that waited too long becomes an edge to a virtual node (the peer it
//! named, or `user` for a root server span). Edges are counted per (client, server, connection
//! type, failed, dimensions) series into `traces_service_graph_request_total`, `…_failed_total`
//! and the `…_server` / `…_client` latency histograms (seconds), handed on every
//! `metrics_flush_interval`.

use crate::config::{Invalid, deserialize_duration};
use crate::connectors::exponential_histogram::ExponentialHistogram;
use crate::pipeline::component::{ConnectorContext, ConnectorSettings};
use crate::pipeline::connector::Connector;
use crate::pipeline::{Batch, Request};
use crate::signal::Signal;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as m;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::{Deserialize, Deserializer};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The instrumentation scope of the metrics it makes (the collector's).
pub const SCOPE_NAME: &str = "traces_service_graph";
/// Series kept at most; edges of further series are counted in one overflow series (the
/// collector keeps any number).
pub const SERIES_LIMIT: usize = 100_000;
/// How early a tick may come and still count as the flush interval's end.
const TICK_SLACK: Duration = Duration::from_millis(5);
/// A series not updated for this long is forgotten (the collector's 15 minutes).
const SERIES_IDLE: Duration = Duration::from_secs(15 * 60);

/// The collector's default latency bounds, in seconds.
const DEFAULT_BOUNDS: [f64; 16] =
    [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long a half edge waits for its other half.
    #[serde(deserialize_with = "deserialize_duration")]
    pub ttl: Duration,
    /// Half edges kept at most; spans beyond are not paired (and counted).
    pub max_items: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { ttl: Duration::from_secs(2), max_items: 1000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceGraphConfig {
    /// Latency histogram bounds, as durations (`100ms`, `1s`); recorded in seconds.
    #[serde(deserialize_with = "optional_durations")]
    pub latency_histogram_buckets: Option<Vec<Duration>>,
    /// Above 0: latencies in exponential histograms of at most this many buckets.
    pub exponential_histogram_max_size: i32,
    /// Span (or resource) attributes added as `client_<name>` / `server_<name>`.
    pub dimensions: Vec<String>,
    pub store: StoreConfig,
    /// How often idle series are looked for (they go after 15 minutes without an edge).
    #[serde(deserialize_with = "deserialize_duration")]
    pub cache_loop: Duration,
    /// How often half edges past their ttl are expired.
    #[serde(deserialize_with = "deserialize_duration")]
    pub store_expiration_loop: Duration,
    /// Client span attributes naming the server of an edge whose server span never came, the
    /// first found wins.
    pub virtual_node_peer_attributes: Vec<String>,
    /// Adds `virtual_node: client|server` to edges with a virtual node.
    pub virtual_node_extra_label: bool,
    /// How often metrics are handed on; 0: after every batch of spans.
    #[serde(deserialize_with = "deserialize_duration")]
    pub metrics_flush_interval: Duration,
    /// Deprecated by the collector for `database_name_attributes`; put first when set.
    pub database_name_attribute: Option<String>,
    /// Attributes naming the database of a client span, the first found wins.
    pub database_name_attributes: Vec<String>,
    /// Deprecated and without effect in the collector: the pipelines say where metrics go.
    pub metrics_exporter: Option<String>,
}

impl Default for ServiceGraphConfig {
    fn default() -> Self {
        ServiceGraphConfig {
            latency_histogram_buckets: None,
            exponential_histogram_max_size: 0,
            dimensions: Vec::new(),
            store: StoreConfig::default(),
            cache_loop: Duration::from_secs(60),
            store_expiration_loop: Duration::from_secs(2),
            virtual_node_peer_attributes: vec!["peer.service".into(), "db.name".into(), "db.system".into()],
            virtual_node_extra_label: false,
            metrics_flush_interval: Duration::from_secs(60),
            database_name_attribute: None,
            database_name_attributes: vec!["db.name".into()],
            metrics_exporter: None,
        }
    }
}

fn optional_durations<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Duration>>, D::Error> {
    let texts: Option<Vec<String>> = Option::deserialize(d)?;
    texts
        .map(|t| t.iter().map(|t| crate::config::parse_duration(t).map_err(serde::de::Error::custom)).collect())
        .transpose()
}

impl ConnectorSettings for ServiceGraphConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        if self.exponential_histogram_max_size < 0 {
            return Err(Invalid::new("exponential_histogram_max_size", "can not be negative"));
        }
        if self.exponential_histogram_max_size > 0 && self.latency_histogram_buckets.is_some() {
            return Err(Invalid::new(
                "exponential_histogram_max_size",
                "use either latency_histogram_buckets or exponential_histogram_max_size",
            ));
        }
        if (1..3).contains(&self.exponential_histogram_max_size) {
            return Err(Invalid::new("exponential_histogram_max_size", "must be at least 3, such as 160"));
        }
        if let Some(b) = &self.latency_histogram_buckets
            && b.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Invalid::new("latency_histogram_buckets", "bucket bounds must increase"));
        }
        if self.store.ttl.is_zero() {
            return Err(Invalid::new("store.ttl", "must be greater than 0, such as 2s"));
        }
        if self.store.max_items == 0 {
            return Err(Invalid::new("store.max_items", "must be greater than 0, such as 1000"));
        }
        if self.store_expiration_loop.is_zero() || self.cache_loop.is_zero() {
            let key = if self.cache_loop.is_zero() { "cache_loop" } else { "store_expiration_loop" };
            return Err(Invalid::new(key, "must be greater than 0"));
        }
        Ok(())
    }

    fn build(&self, ctx: &ConnectorContext) -> Result<Arc<dyn Connector>, String> {
        let bounds = match &self.latency_histogram_buckets {
            Some(b) => b.iter().map(Duration::as_secs_f64).collect(),
            None => DEFAULT_BOUNDS.to_vec(),
        };
        let mut databases = self.database_name_attributes.clone();
        if let Some(first) = &self.database_name_attribute {
            databases.retain(|d| d != first);
            databases.insert(0, first.clone());
        }
        let t = &ctx.telemetry;
        Ok(Arc::new(ServiceGraph {
            cfg: self.clone(),
            bounds,
            databases,
            dropped: t.servicegraph_dropped_spans.with_label_values(&[&ctx.name]),
            edges: t.servicegraph_total_edges.with_label_values(&[&ctx.name]),
            expired: t.servicegraph_expired_edges.with_label_values(&[&ctx.name]),
            start: crate::timefmt::now_unix_nanos(),
            state: Mutex::new(State {
                last_emit: Some(Instant::now()),
                last_idle_check: Some(Instant::now()),
                ..State::default()
            }),
        }))
    }
}

/// What joins the two halves of an edge: the trace, and the client span's id (the server
/// span's parent).
type EdgeKey = (Vec<u8>, Vec<u8>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Connection {
    Direct,
    Messaging,
    Database,
    Virtual,
}

impl Connection {
    fn as_str(self) -> &'static str {
        match self {
            Connection::Direct => "",
            Connection::Messaging => "messaging_system",
            Connection::Database => "database",
            Connection::Virtual => "virtual_node",
        }
    }
}

/// One edge as its halves arrive.
struct Edge {
    client: Option<String>,
    server: Option<String>,
    connection: Connection,
    failed: bool,
    client_seconds: f64,
    server_seconds: f64,
    /// `client_<dim>` / `server_<dim>` values, in key order whatever half came first.
    dimensions: std::collections::BTreeMap<String, String>,
    /// The first peer attribute the client span has.
    peer: Option<String>,
    /// Which side a virtual node filled in.
    virtual_side: Option<&'static str>,
    expires: Instant,
}

impl Edge {
    fn complete(&self) -> bool {
        self.client.is_some() && self.server.is_some()
    }
}

/// The counts of one series.
struct Series {
    attributes: Vec<KeyValue>,
    requests: u64,
    failed: u64,
    client: Histogram,
    server: Histogram,
    updated: Instant,
}

enum Histogram {
    Explicit { count: u64, sum: f64, buckets: Vec<u64> },
    Exponential(ExponentialHistogram),
}

impl Histogram {
    fn new(bounds: &[f64], exponential_max_size: i32) -> Histogram {
        match usize::try_from(exponential_max_size) {
            Ok(size) if size > 0 => Histogram::Exponential(ExponentialHistogram::new(size)),
            _ => Histogram::Explicit { count: 0, sum: 0.0, buckets: vec![0; bounds.len() + 1] },
        }
    }

    fn record(&mut self, bounds: &[f64], value: f64) {
        match self {
            Histogram::Explicit { count, sum, buckets } => {
                *count += 1;
                *sum += value;
                // A value on a bound belongs to that bucket (upper bounds are inclusive).
                buckets[bounds.partition_point(|b| *b < value)] += 1;
            }
            Histogram::Exponential(h) => h.record(value),
        }
    }
}

#[derive(Default)]
struct State {
    edges: HashMap<EdgeKey, Edge>,
    /// Edge keys in the order they were stored, with when they expire.
    order: VecDeque<(EdgeKey, Instant)>,
    series: HashMap<String, Series>,
    /// Whether a series changed since metrics were last handed on.
    changed: bool,
    last_emit: Option<Instant>,
    last_idle_check: Option<Instant>,
}

struct ServiceGraph {
    cfg: ServiceGraphConfig,
    bounds: Vec<f64>,
    databases: Vec<String>,
    dropped: prometheus::IntCounter,
    edges: prometheus::IntCounter,
    expired: prometheus::IntCounter,
    start: u64,
    state: Mutex<State>,
}

fn text_of(attrs: &[&[KeyValue]], key: &str) -> Option<String> {
    attrs
        .iter()
        .find_map(|a| crate::attributes::get(a, key))
        .map(|v| crate::exporters::values::text(Some(v)))
        .filter(|v| !v.is_empty())
}

fn seconds(span: &Span) -> f64 {
    span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e9
}

impl ServiceGraph {
    /// Adds one half of an edge (`client`: the client side) from `span` of service `service`.
    fn half(&self, state: &mut State, span: &Span, service: &str, resource: &[KeyValue], client: bool, now: Instant) {
        let connection = match span.kind {
            4 | 5 => Connection::Messaging,
            _ => Connection::Direct,
        };
        let id = if client { &span.span_id } else { &span.parent_span_id };
        let key = (span.trace_id.clone(), id.clone());
        let failed = span.status.as_ref().is_some_and(|s| s.code == 2);
        let update = |e: &mut Edge| {
            e.connection = connection;
            e.failed |= failed;
            let side = if client { "client" } else { "server" };
            for d in &self.cfg.dimensions {
                if let Some(v) = text_of(&[resource, &span.attributes], d) {
                    e.dimensions.insert(format!("{side}_{d}"), v);
                }
            }
            if client {
                e.client = Some(service.to_string());
                e.client_seconds = seconds(span);
                e.peer = self.cfg.virtual_node_peer_attributes.iter().find_map(|a| text_of(&[&span.attributes], a));
                // A database call has no server span: the client span makes the edge.
                if let Some(db) = self.databases.iter().find_map(|a| text_of(&[resource, &span.attributes], a)) {
                    e.connection = Connection::Database;
                    e.server = Some(db);
                    e.server_seconds = seconds(span);
                }
            } else {
                e.server = Some(service.to_string());
                e.server_seconds = seconds(span);
            }
        };
        if let Some(edge) = state.edges.get_mut(&key) {
            update(edge);
            if edge.complete() {
                let edge = state.edges.remove(&key).expect("just found");
                self.count(state, &edge, now);
                // Completed edges leave stale entries in `order`: keep it near the store's size.
                if state.order.len() > 2 * state.edges.len() + 64 {
                    let edges = &state.edges;
                    state.order.retain(|(k, at)| edges.get(k).is_some_and(|e| e.expires == *at));
                }
            }
            return;
        }
        let mut edge = Edge {
            client: None,
            server: None,
            connection,
            failed: false,
            client_seconds: 0.0,
            server_seconds: 0.0,
            dimensions: Default::default(),
            peer: None,
            virtual_side: None,
            expires: now + self.cfg.store.ttl,
        };
        update(&mut edge);
        if edge.complete() {
            self.edges.inc();
            self.count(state, &edge, now);
            return;
        }
        if state.edges.len() >= self.cfg.store.max_items {
            // Halves past their ttl make room first.
            self.expire(state, now);
        }
        if state.edges.len() >= self.cfg.store.max_items {
            self.dropped.inc();
            return;
        }
        self.edges.inc();
        state.order.push_back((key.clone(), edge.expires));
        state.edges.insert(key, edge);
    }

    /// Half edges past their ttl: those that can be are counted with a virtual node.
    fn expire(&self, state: &mut State, now: Instant) {
        while let Some((_, at)) = state.order.front() {
            if *at > now {
                break;
            }
            let (key, at) = state.order.pop_front().expect("just looked");
            let Some(edge) = state.edges.get(&key) else { continue };
            if edge.expires != at {
                continue;
            }
            let mut edge = state.edges.remove(&key).expect("just found");
            self.expired.inc();
            edge.connection = Connection::Virtual;
            if edge.client.is_none() && key.1.iter().all(|b| *b == 0) {
                // A root server span: its caller is outside the traced world.
                edge.client = Some("user".into());
                edge.virtual_side = Some("client");
                self.count(state, &edge, now);
            } else if edge.server.is_none()
                && edge.client.is_some()
                && !self.cfg.virtual_node_peer_attributes.is_empty()
            {
                edge.server = Some(edge.peer.clone().unwrap_or_else(|| "unknown".into()));
                edge.virtual_side = Some("server");
                self.count(state, &edge, now);
            }
        }
    }

    /// Counts a complete edge in its series.
    fn count(&self, state: &mut State, edge: &Edge, now: Instant) {
        let client = edge.client.as_deref().unwrap_or_default();
        let server = edge.server.as_deref().unwrap_or_default();
        let mut key = format!("{client}\0{server}\0{}\0{}", edge.connection.as_str(), edge.failed);
        for (k, v) in &edge.dimensions {
            key.push('\0');
            key.push_str(k);
            key.push('=');
            key.push_str(v);
        }
        if self.cfg.virtual_node_extra_label
            && let Some(side) = edge.virtual_side
        {
            key.push_str("\0virtual_node=");
            key.push_str(side);
        }
        if !state.series.contains_key(&key) && state.series.len() >= SERIES_LIMIT {
            key = "\0overflow".into();
        }
        let series = state.series.entry(key).or_insert_with_key(|key| {
            let attributes = if key == "\0overflow" {
                vec![crate::attributes::overflow()]
            } else {
                let mut a = vec![
                    crate::attributes::kv("client", crate::attributes::string(client)),
                    crate::attributes::kv("server", crate::attributes::string(server)),
                    crate::attributes::kv("connection_type", crate::attributes::string(edge.connection.as_str())),
                    crate::attributes::kv("failed", crate::attributes::boolean(edge.failed)),
                ];
                a.extend(edge.dimensions.iter().map(|(k, v)| crate::attributes::kv(k, crate::attributes::string(v))));
                if self.cfg.virtual_node_extra_label
                    && let Some(side) = edge.virtual_side
                {
                    a.push(crate::attributes::kv("virtual_node", crate::attributes::string(side)));
                }
                a
            };
            Series {
                attributes,
                requests: 0,
                failed: 0,
                client: Histogram::new(&self.bounds, self.cfg.exponential_histogram_max_size),
                server: Histogram::new(&self.bounds, self.cfg.exponential_histogram_max_size),
                updated: now,
            }
        });
        series.requests += 1;
        series.failed += u64::from(edge.failed);
        series.client.record(&self.bounds, edge.client_seconds);
        series.server.record(&self.bounds, edge.server_seconds);
        series.updated = now;
        state.changed = true;
    }

    /// Every series, as cumulative metrics.
    fn metrics(&self, state: &State) -> Request {
        let now = crate::timefmt::now_unix_nanos();
        let cumulative = m::AggregationTemporality::Cumulative as i32;
        let sum = |name: &str, points: Vec<m::NumberDataPoint>| m::Metric {
            name: name.to_string(),
            data: Some(m::metric::Data::Sum(m::Sum {
                data_points: points,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let point = |s: &Series, value: u64| m::NumberDataPoint {
            attributes: s.attributes.clone(),
            start_time_unix_nano: self.start,
            time_unix_nano: now,
            value: Some(m::number_data_point::Value::AsInt(i64::try_from(value).unwrap_or(i64::MAX))),
            ..Default::default()
        };
        let histogram = |name: &str, of: &dyn Fn(&Series) -> &Histogram| {
            let (mut explicit, mut exponential) = (Vec::new(), Vec::new());
            for s in state.series.values() {
                match of(s) {
                    Histogram::Explicit { count, sum, buckets } => explicit.push(m::HistogramDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: self.start,
                        time_unix_nano: now,
                        count: *count,
                        sum: Some(*sum),
                        bucket_counts: buckets.clone(),
                        explicit_bounds: self.bounds.clone(),
                        ..Default::default()
                    }),
                    Histogram::Exponential(h) => exponential.push(m::ExponentialHistogramDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: self.start,
                        time_unix_nano: now,
                        ..h.to_point()
                    }),
                }
            }
            let data = if exponential.is_empty() {
                m::metric::Data::Histogram(m::Histogram { data_points: explicit, aggregation_temporality: cumulative })
            } else {
                m::metric::Data::ExponentialHistogram(m::ExponentialHistogram {
                    data_points: exponential,
                    aggregation_temporality: cumulative,
                })
            };
            m::Metric { name: name.to_string(), unit: "s".into(), data: Some(data), ..Default::default() }
        };
        let mut metrics = vec![sum(
            "traces_service_graph_request_total",
            state.series.values().map(|s| point(s, s.requests)).collect(),
        )];
        let failed: Vec<_> = state.series.values().filter(|s| s.failed > 0).map(|s| point(s, s.failed)).collect();
        if !failed.is_empty() {
            metrics.push(sum("traces_service_graph_request_failed_total", failed));
        }
        metrics.push(histogram("traces_service_graph_request_server", &|s| &s.server));
        metrics.push(histogram("traces_service_graph_request_client", &|s| &s.client));
        Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![m::ResourceMetrics {
                scope_metrics: vec![m::ScopeMetrics {
                    scope: Some(InstrumentationScope { name: SCOPE_NAME.into(), ..Default::default() }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    /// The metrics of every series (none when there are none).
    fn emit(&self, state: &mut State, now: Instant) -> Option<Batch> {
        if state.series.is_empty() {
            return None;
        }
        state.changed = false;
        state.last_emit = Some(now);
        Some(Batch::from_request(self.metrics(state)))
    }
}

impl Connector for ServiceGraph {
    fn derives(&self) -> bool {
        true
    }

    fn route(&self, batch: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>) {
        let Ok(Request::Traces(r)) = batch.request() else { return };
        let now = Instant::now();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        for rs in &r.resource_spans {
            let resource = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
            // As the collector: spans of a resource without service.name make no edges.
            let Some(service) = text_of(&[resource], "service.name") else { continue };
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                // Ids of other lengths are not ids (and a forged long one must not be stored).
                let parent_ok = span.parent_span_id.is_empty() || span.parent_span_id.len() == 8;
                if span.trace_id.len() != 16 || span.span_id.len() != 8 || !parent_ok {
                    continue;
                }
                match span.kind {
                    3 | 4 => self.half(state, span, &service, resource, true, now),
                    2 | 5 => self.half(state, span, &service, resource, false, now),
                    _ => {}
                }
            }
        }
        if self.cfg.metrics_flush_interval.is_zero()
            && let Some(metrics) = self.emit(state, now)
        {
            for i in 0..downstream.len() {
                out.push((i, metrics.clone()));
            }
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        let mut every = self.cfg.store_expiration_loop.min(self.cfg.cache_loop);
        if !self.cfg.metrics_flush_interval.is_zero() {
            every = every.min(self.cfg.metrics_flush_interval);
        }
        Some(every)
    }

    fn flush(&self, out: &mut Vec<Batch>, last: bool) {
        let now = Instant::now();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        self.expire(state, now);
        if state.last_idle_check.is_none_or(|t| now.duration_since(t) >= self.cfg.cache_loop) {
            state.last_idle_check = Some(now);
            state.series.retain(|_, s| now.duration_since(s.updated) < SERIES_IDLE);
        }
        // Every interval; or, flushed after every batch, when expired edges changed a series.
        let due = if self.cfg.metrics_flush_interval.is_zero() {
            state.changed
        } else {
            state.last_emit.is_none_or(|t| now.duration_since(t) + TICK_SLACK >= self.cfg.metrics_flush_interval)
        };
        if (due || last)
            && let Some(metrics) = self.emit(state, now)
        {
            out.push(metrics);
        }
    }
}

/// The `servicegraph` connector's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::connector::<ServiceGraphConfig>(
    "servicegraph",
    &[Signal::Traces, Signal::Metrics],
    &[(Signal::Traces, Signal::Metrics)],
    "request, failure and latency metrics of the calls between services (a service graph), from client/server span pairs",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn build(yaml: &str) -> Arc<dyn Connector> {
        let cfg: ServiceGraphConfig = crate::config::parse_yaml("s.yaml", yaml).unwrap();
        cfg.validate().unwrap();
        cfg.build(&ConnectorContext { name: "servicegraph".into(), telemetry: Default::default() }).unwrap()
    }

    struct S {
        trace: u8,
        id: u8,
        parent: u8,
        kind: i32,
        ms: u64,
        failed: bool,
        attrs: Vec<(&'static str, &'static str)>,
    }

    fn span(trace: u8, id: u8, parent: u8, kind: i32, ms: u64) -> S {
        S { trace, id, parent, kind, ms, failed: false, attrs: Vec::new() }
    }

    /// The spans of one service.
    fn batch(service: &str, spans: Vec<S>) -> Batch {
        let spans = spans
            .into_iter()
            .map(|s| Span {
                trace_id: vec![s.trace; 16],
                span_id: vec![s.id; 8],
                parent_span_id: if s.parent == 0 { Vec::new() } else { vec![s.parent; 8] },
                kind: s.kind,
                name: "op".into(),
                start_time_unix_nano: 1_000_000_000,
                end_time_unix_nano: 1_000_000_000 + s.ms * 1_000_000,
                status: s.failed.then(|| Status { code: 2, ..Default::default() }),
                attributes: s.attrs.iter().map(|(k, v)| kv(k, string(v))).collect(),
                ..Default::default()
            })
            .collect();
        Batch::from_request(Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string(service))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }))
    }

    /// Per metric: (sorted "k=v" attributes, value or count, sum) rows, sorted.
    fn flushed(c: &dyn Connector, last: bool) -> Vec<(String, String, u64, f64)> {
        let mut out = Vec::new();
        c.flush(&mut out, last);
        let mut rows = Vec::new();
        for b in out {
            let Some(Request::Metrics(r)) = b.decoded() else { panic!("metrics") };
            for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
                let dims = |attrs: &[KeyValue]| {
                    let mut d: Vec<String> = attrs
                        .iter()
                        .map(|a| format!("{}={}", a.key, crate::exporters::values::text(a.value.as_ref())))
                        .collect();
                    d.sort();
                    d.join(",")
                };
                match &m.data {
                    Some(m::metric::Data::Sum(s)) => {
                        for p in &s.data_points {
                            let Some(m::number_data_point::Value::AsInt(v)) = p.value else { panic!("int") };
                            rows.push((m.name.clone(), dims(&p.attributes), v as u64, 0.0));
                        }
                    }
                    Some(m::metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            rows.push((m.name.clone(), dims(&p.attributes), p.count, p.sum.unwrap_or(0.0)));
                        }
                    }
                    _ => panic!("unexpected {m:?}"),
                }
            }
        }
        rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
        rows
    }

    fn route(c: &dyn Connector, b: Batch) {
        let mut out = Vec::new();
        c.route(b, &["metrics".into()], &mut out);
        assert!(out.is_empty(), "metrics wait for the flush interval");
    }

    const EDGE: &str = "client=frontend,connection_type=,failed=false,server=backend";

    #[test]
    fn a_client_and_server_span_pair_make_one_edge_in_either_order() {
        let c = build("store: {ttl: 1m}\n");
        // Trace 1: the client span first; trace 2: the server span first, in another batch.
        route(&*c, batch("frontend", vec![span(1, 10, 0, 3, 300), span(2, 20, 0, 3, 200)]));
        route(&*c, batch("backend", vec![span(1, 11, 10, 2, 250), span(2, 21, 20, 2, 500)]));
        // An internal span and a server span of a trace with no client side yet make nothing.
        route(&*c, batch("backend", vec![span(3, 30, 0, 1, 5), span(4, 41, 40, 2, 5)]));
        let rows = flushed(&*c, true);
        assert_eq!(
            rows,
            vec![
                ("traces_service_graph_request_client".into(), EDGE.into(), 2, 0.5),
                ("traces_service_graph_request_server".into(), EDGE.into(), 2, 0.75),
                ("traces_service_graph_request_total".into(), EDGE.into(), 2, 0.0),
            ]
        );
    }

    #[test]
    fn failures_dimensions_messaging_and_databases() {
        let c = build("dimensions: [http.method]\nstore: {ttl: 1m}\n");
        let mut client = span(1, 10, 0, 3, 10);
        client.attrs = vec![("http.method", "GET")];
        let mut server = span(1, 11, 10, 2, 5);
        server.failed = true;
        route(&*c, batch("frontend", vec![client, span(2, 20, 0, 4, 1)]));
        route(&*c, batch("backend", vec![server, span(2, 21, 20, 5, 1)]));
        let mut query = span(3, 30, 0, 3, 7);
        query.attrs = vec![("db.name", "orders")];
        route(&*c, batch("backend", vec![query]));
        let rows = flushed(&*c, true);
        let totals: Vec<_> =
            rows.iter().filter(|r| r.0.ends_with("request_total") || r.0.ends_with("failed_total")).collect();
        assert_eq!(
            totals.iter().map(|r| (r.0.as_str(), r.1.as_str(), r.2)).collect::<Vec<_>>(),
            vec![
                (
                    "traces_service_graph_request_failed_total",
                    "client=frontend,client_http.method=GET,connection_type=,failed=true,server=backend",
                    1
                ),
                (
                    "traces_service_graph_request_total",
                    "client=backend,connection_type=database,failed=false,server=orders",
                    1
                ),
                (
                    "traces_service_graph_request_total",
                    "client=frontend,client_http.method=GET,connection_type=,failed=true,server=backend",
                    1
                ),
                (
                    "traces_service_graph_request_total",
                    "client=frontend,connection_type=messaging_system,failed=false,server=backend",
                    1
                ),
            ]
        );
    }

    #[test]
    fn halves_that_wait_too_long_become_edges_to_virtual_nodes() {
        let c = build("store: {ttl: 20ms}\nvirtual_node_extra_label: true\n");
        let mut cache = span(1, 10, 0, 3, 2);
        cache.attrs = vec![("peer.service", "redis")];
        route(&*c, batch("frontend", vec![cache, span(2, 20, 0, 3, 2)]));
        // A root server span (no parent): called from outside.
        route(&*c, batch("frontend", vec![span(3, 30, 0, 2, 2)]));
        // A server span whose client side never comes: not an edge.
        route(&*c, batch("backend", vec![span(4, 41, 40, 2, 2)]));
        assert!(flushed(&*c, true).is_empty(), "not expired yet");
        std::thread::sleep(Duration::from_millis(40));
        let totals: Vec<_> = flushed(&*c, true)
            .into_iter()
            .filter(|r| r.0 == "traces_service_graph_request_total")
            .map(|r| (r.1, r.2))
            .collect();
        assert_eq!(
            totals,
            vec![
                (
                    "client=frontend,connection_type=virtual_node,failed=false,server=redis,virtual_node=server".into(),
                    1
                ),
                (
                    "client=frontend,connection_type=virtual_node,failed=false,server=unknown,virtual_node=server"
                        .into(),
                    1
                ),
                ("client=user,connection_type=virtual_node,failed=false,server=frontend,virtual_node=client".into(), 1),
            ]
        );
    }

    #[test]
    fn a_full_store_drops_further_halves_and_counts_them() {
        let telemetry = Arc::new(crate::telemetry::metrics::Metrics::default());
        let cfg: ServiceGraphConfig = crate::config::parse_yaml("s.yaml", "store: {max_items: 2, ttl: 1m}\n").unwrap();
        let c = cfg.build(&ConnectorContext { name: "sg".into(), telemetry: telemetry.clone() }).unwrap();
        route(&*c, batch("frontend", (1..=5).map(|t| span(t, 10, 0, 3, 1)).collect()));
        route(&*c, batch("backend", (1..=5).map(|t| span(t, 11, 10, 2, 1)).collect()));
        let dropped = telemetry.servicegraph_dropped_spans.with_label_values(&["sg"]).get();
        let edges = telemetry.servicegraph_total_edges.with_label_values(&["sg"]).get();
        // Two client halves stored (three dropped), paired by their server spans; the other
        // three server halves fill the store again (two kept, one dropped).
        assert_eq!((dropped, edges), (4, 4));
        let total = flushed(&*c, true).into_iter().find(|r| r.0 == "traces_service_graph_request_total").unwrap();
        assert_eq!(total.2, 2);
    }

    #[test]
    fn metrics_go_on_at_the_flush_interval_or_after_every_batch() {
        let c = build("store: {ttl: 1m}\nmetrics_flush_interval: 1h\n");
        route(&*c, batch("frontend", vec![span(1, 10, 0, 3, 1)]));
        route(&*c, batch("backend", vec![span(1, 11, 10, 2, 1)]));
        assert!(flushed(&*c, false).is_empty(), "not due");
        assert_eq!(flushed(&*c, true).len(), 3, "handed on when let go of");
        let every = build("store: {ttl: 1m}\nmetrics_flush_interval: 0s\n");
        route(&*every, batch("frontend", vec![span(1, 10, 0, 3, 1)]));
        let mut out = Vec::new();
        every.route(batch("backend", vec![span(1, 11, 10, 2, 1)]), &["metrics".into(), "metrics/2".into()], &mut out);
        assert_eq!(out.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn settings_are_checked() {
        let err = |yaml: &str| {
            let cfg: ServiceGraphConfig = crate::config::parse_yaml("s.yaml", yaml).unwrap();
            cfg.validate().unwrap_err().to_string()
        };
        assert!(err("latency_histogram_buckets: [1s, 100ms]\n").contains("must increase"));
        assert!(err("exponential_histogram_max_size: 160\nlatency_histogram_buckets: [1s]\n").contains("use either"));
        assert!(err("store: {ttl: 0s}\n").contains("store.ttl"));
        assert!(err("store: {max_items: 0}\n").contains("store.max_items"));
        let cfg: Result<ServiceGraphConfig, _> = crate::config::parse_yaml("s.yaml", "stor: {}\n");
        assert!(cfg.is_err());
    }

    #[test]
    fn latencies_in_exponential_histograms_when_asked() {
        let c = build("store: {ttl: 1m}\nexponential_histogram_max_size: 8\n");
        route(&*c, batch("frontend", vec![span(1, 10, 0, 3, 40), span(2, 20, 0, 3, 4000)]));
        route(&*c, batch("backend", vec![span(1, 11, 10, 2, 30), span(2, 21, 20, 2, 3000)]));
        let mut out = Vec::new();
        c.flush(&mut out, true);
        let Some(Request::Metrics(r)) = out[0].decoded() else { panic!() };
        let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
        let server = metrics.iter().find(|m| m.name == "traces_service_graph_request_server").unwrap();
        let Some(m::metric::Data::ExponentialHistogram(h)) = &server.data else { panic!("{server:?}") };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.min, p.max), (2, Some(0.03), Some(3.0)));
        assert!(p.positive.as_ref().unwrap().bucket_counts.len() <= 8);
    }

    #[test]
    fn one_series_whichever_half_came_first_and_expired_halves_make_room() {
        let c = build("dimensions: [env]\nstore: {ttl: 1m}\n");
        let with_env = |mut s: S| {
            s.attrs = vec![("env", "prod")];
            s
        };
        // Trace 1: client first; trace 2: server first; trace 1's client span sent twice.
        route(&*c, batch("frontend", vec![with_env(span(1, 10, 0, 3, 1)), with_env(span(1, 10, 0, 3, 1))]));
        route(&*c, batch("backend", vec![with_env(span(1, 11, 10, 2, 1)), with_env(span(2, 21, 20, 2, 1))]));
        route(&*c, batch("frontend", vec![with_env(span(2, 20, 0, 3, 1))]));
        let totals: Vec<_> =
            flushed(&*c, true).into_iter().filter(|r| r.0 == "traces_service_graph_request_total").collect();
        assert_eq!(totals.len(), 1, "{totals:?}");
        assert_eq!(
            (totals[0].1.as_str(), totals[0].2),
            ("client=frontend,client_env=prod,connection_type=,failed=false,server=backend,server_env=prod", 2)
        );

        let small = build("store: {ttl: 10ms, max_items: 1}\n");
        route(&*small, batch("frontend", vec![span(1, 10, 0, 3, 1)]));
        std::thread::sleep(Duration::from_millis(20));
        // The store is full of an expired half: it goes (to a virtual node), the new one is kept.
        route(&*small, batch("frontend", vec![span(2, 20, 0, 3, 1)]));
        route(&*small, batch("backend", vec![span(2, 21, 20, 2, 1)]));
        let totals: Vec<_> = flushed(&*small, true)
            .into_iter()
            .filter(|r| r.0 == "traces_service_graph_request_total")
            .map(|r| (r.1, r.2))
            .collect();
        assert_eq!(
            totals,
            vec![
                ("client=frontend,connection_type=,failed=false,server=backend".into(), 1),
                ("client=frontend,connection_type=virtual_node,failed=false,server=unknown".into(), 1),
            ]
        );
    }
}
