//! The self-metrics pushed as OTLP by a `periodic` reader: the Prometheus registry's metric
//! families turned into an `ExportMetricsServiceRequest`, POSTed over `http/protobuf` or sent as a
//! gRPC unary call, every `interval`. A failed push is logged (rate-limited) and never retried:
//! the next one carries the newer cumulative values anyway.
//!
//! Names: as the collector pushes its own metrics, counters lose the `_total` the Prometheus
//! endpoint shows (`otelcol_receiver_accepted_spans`), and the process metrics lose the unit
//! suffix their Prometheus names carry, the unit going into `unit` instead
//! (`otelcol_process_uptime`, `s`; `otelcol_process_memory_rss`, `By`). Every other name is the
//! Prometheus one.

use super::log_limit::LogLimit;
use super::readers::{MetricsSource, OtlpProtocol, OtlpPushConfig, PeriodicReaderConfig, PushCompression};
use crate::compression::{Compression, CompressionParams, Compressor};
use crate::grpc::client::{self as call, H2Client};
use crate::tls::client::{Protocol, TlsClientConfig};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint, metric::Data, number_data_point, summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus::proto::{MetricFamily, MetricType};
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The longest a push at shutdown may hold the shutdown up.
const FINAL_PUSH_LIMIT: Duration = Duration::from_secs(2);

/// How often a failing reader logs.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Who is reporting: the resource of every push, and when the cumulative values started.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `service.instance.id`: a random UUID per process, as the collector makes one.
    pub instance_id: Option<String>,
    /// Start of the cumulative series, in Unix nanoseconds.
    pub start_unix_nano: u64,
}

impl Identity {
    /// This process's identity, made on first use: readers restarted by a reload keep the
    /// instance id and the start time, as the counters they report go on.
    pub fn of_process() -> Identity {
        static PROCESS: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        PROCESS
            .get_or_init(|| {
                let instance_id =
                    std::fs::read_to_string("/proc/sys/kernel/random/uuid").ok().map(|s| s.trim().to_string());
                Identity { instance_id, start_unix_nano: unix_nano(SystemTime::now()) }
            })
            .clone()
    }

    fn resource(&self) -> Resource {
        let mut attributes =
            vec![string_attr("service.name", "switchyard"), string_attr("service.version", env!("CARGO_PKG_VERSION"))];
        if let Some(id) = &self.instance_id {
            attributes.push(string_attr("service.instance.id", id));
        }
        Resource { attributes, ..Default::default() }
    }
}

fn unix_nano(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default()
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    }
}

/// The OTLP name and unit of a metric family the Prometheus endpoint shows as `name`.
pub fn otlp_name(name: &str, kind: MetricType) -> (String, &'static str) {
    match name {
        "otelcol_process_uptime_seconds_total" => return ("otelcol_process_uptime".into(), "s"),
        "otelcol_process_cpu_seconds_total" => return ("otelcol_process_cpu_seconds".into(), "s"),
        "otelcol_process_memory_rss_bytes" => return ("otelcol_process_memory_rss".into(), "By"),
        _ => {}
    }
    let name = match kind {
        MetricType::COUNTER => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    (name.to_string(), "")
}

/// `families` as one OTLP request: counters as cumulative monotonic sums, gauges (and untyped
/// metrics) as gauges, histograms as cumulative explicit-bucket histograms, summaries as
/// summaries; labels become data point attributes.
pub fn to_request(families: &[MetricFamily], identity: &Identity, now: SystemTime) -> ExportMetricsServiceRequest {
    let time = unix_nano(now);
    let start = identity.start_unix_nano.min(time);
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .map(|family| {
            let kind = family.get_field_type();
            let (name, unit) = otlp_name(family.name(), kind);
            let points = family.get_metric();
            let number = |value: f64, m: &prometheus::proto::Metric, with_start: bool| NumberDataPoint {
                attributes: attributes(m),
                start_time_unix_nano: if with_start { start } else { 0 },
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            };
            let data = match kind {
                MetricType::COUNTER => Data::Sum(Sum {
                    data_points: points.iter().map(|m| number(m.get_counter().get_value(), m, true)).collect(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                MetricType::GAUGE => Data::Gauge(Gauge {
                    data_points: points.iter().map(|m| number(m.get_gauge().get_value(), m, false)).collect(),
                }),
                MetricType::UNTYPED => Data::Gauge(Gauge {
                    data_points: points.iter().map(|m| number(untyped_value(m), m, false)).collect(),
                }),
                MetricType::HISTOGRAM => Data::Histogram(Histogram {
                    data_points: points.iter().map(|m| histogram_point(m, start, time)).collect(),
                    aggregation_temporality: cumulative,
                }),
                MetricType::SUMMARY => Data::Summary(Summary {
                    data_points: points
                        .iter()
                        .map(|m| {
                            let s = m.get_summary();
                            SummaryDataPoint {
                                attributes: attributes(m),
                                start_time_unix_nano: start,
                                time_unix_nano: time,
                                count: s.sample_count(),
                                sum: s.sample_sum(),
                                quantile_values: s
                                    .get_quantile()
                                    .iter()
                                    .map(|q| summary_data_point::ValueAtQuantile {
                                        quantile: q.quantile(),
                                        value: q.value(),
                                    })
                                    .collect(),
                                flags: 0,
                            }
                        })
                        .collect(),
                }),
            };
            Metric {
                name,
                description: family.help().to_string(),
                unit: unit.to_string(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(identity.resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "switchyard".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The value of an untyped metric (which only custom collectors make; the crate marks the
/// accessor deprecated for that reason).
#[allow(deprecated)]
fn untyped_value(m: &prometheus::proto::Metric) -> f64 {
    m.get_untyped().get_value()
}

fn attributes(m: &prometheus::proto::Metric) -> Vec<KeyValue> {
    m.get_label().iter().map(|l| string_attr(l.name(), l.value())).collect()
}

/// Prometheus buckets are cumulative and the `+Inf` one is implied; OTLP's are per bucket with
/// the overflow bucket last.
fn histogram_point(m: &prometheus::proto::Metric, start: u64, time: u64) -> HistogramDataPoint {
    let h = m.get_histogram();
    let count = h.get_sample_count();
    let buckets: Vec<_> = h.get_bucket().iter().filter(|b| b.upper_bound().is_finite()).collect();
    let mut bucket_counts = Vec::with_capacity(buckets.len() + 1);
    let mut below = 0u64;
    for b in &buckets {
        let cumulative = b.cumulative_count().max(below);
        bucket_counts.push(cumulative - below);
        below = cumulative;
    }
    bucket_counts.push(count.saturating_sub(below));
    HistogramDataPoint {
        attributes: attributes(m),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count,
        sum: Some(h.get_sample_sum()),
        bucket_counts,
        explicit_bounds: buckets.iter().map(|b| b.upper_bound()).collect(),
        ..Default::default()
    }
}

/// The URL a reader sends to. As in the collector, an endpoint without `http://` or `https://`
/// means `https://` unless `insecure` is true; `http/protobuf` posts to the URL's path, or to
/// `/v1/metrics` when it has none; `grpc` calls the metrics service on the URL's server.
pub fn target(cfg: &OtlpPushConfig) -> Result<String, String> {
    let e = cfg.endpoint.trim();
    let shown = crate::secret::redact_url(e);
    let url = match e.split_once("://") {
        Some((scheme, _)) if scheme == "http" || scheme == "https" => e.to_string(),
        Some((scheme, _)) => {
            return Err(format!(
                "invalid endpoint \"{shown}\": unsupported scheme \"{scheme}\" (use http:// or https://)"
            ));
        }
        None if cfg.insecure == Some(true) => format!("http://{e}"),
        None => format!("https://{e}"),
    };
    let bad = || format!("invalid endpoint \"{shown}\": expected a URL such as http://collector:4318/v1/metrics");
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    if uri.host().is_none_or(str::is_empty) || authority.as_str().ends_with(':') {
        return Err(bad());
    }
    let base = format!("{}://{}", uri.scheme_str().unwrap_or("https"), authority.as_str());
    Ok(match cfg.protocol {
        OtlpProtocol::Grpc => format!("{base}{}", crate::grpc::export_path(crate::signal::Signal::Metrics)),
        OtlpProtocol::HttpProtobuf => match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => format!("{base}/v1/metrics"),
            Some(path) => format!("{base}{path}"),
        },
    })
}

/// The headers a reader sends: `headers_list` first, then `headers` (which win on a clash). An
/// error names the key (relative to `exporter.otlp`).
pub fn headers(cfg: &OtlpPushConfig) -> Result<Vec<(HeaderName, HeaderValue)>, (String, String)> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut put = |name: HeaderName, value: HeaderValue| {
        out.retain(|(n, _)| *n != name);
        out.push((name, value));
    };
    if let Some(list) = &cfg.headers_list {
        for member in list.expose().split(',').filter(|m| !m.trim().is_empty()) {
            let bad = || ("headers_list".to_string(), "expected name=value pairs separated by commas".to_string());
            let (name, value) = member.split_once('=').ok_or_else(bad)?;
            let name = HeaderName::try_from(name.trim()).map_err(|_| bad())?;
            let value = crate::percent::decode(value.trim()).and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
            put(name, crate::secret::header_value(&value).map_err(|_| bad())?);
        }
    }
    for (i, h) in cfg.headers.iter().enumerate() {
        let name = HeaderName::try_from(h.name.as_str())
            .map_err(|_| (format!("headers[{i}].name"), format!("invalid header name \"{}\"", h.name)))?;
        let Some(value) = &h.value else { continue };
        let value = crate::secret::header_value(value.expose())
            .map_err(|_| (format!("headers[{i}].value"), "invalid header value".to_string()))?;
        put(name, value);
    }
    Ok(out)
}

/// The TLS settings the schema's flat keys stand for.
pub fn tls(cfg: &OtlpPushConfig) -> TlsClientConfig {
    TlsClientConfig {
        insecure: cfg.insecure.unwrap_or(false),
        ca_file: cfg.certificate.clone(),
        cert_file: cfg.client_certificate.clone(),
        key_file: cfg.client_key.clone(),
        ..Default::default()
    }
}

enum Transport {
    Http(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Grpc(H2Client),
}

/// One periodic reader, ready to run.
pub struct Pusher {
    uri: Uri,
    /// The endpoint as logs show it (user info redacted).
    shown: String,
    transport: Transport,
    headers: Vec<(HeaderName, HeaderValue)>,
    compressor: Compressor,
    interval: Duration,
    /// The shorter of the reader's and the exporter's timeout.
    timeout: Duration,
    failures: LogLimit,
}

impl Pusher {
    /// Prepares the client (it connects on first use: a backend that is down at start is only a
    /// failed push).
    pub fn new(cfg: &PeriodicReaderConfig) -> Result<Pusher, String> {
        let otlp = cfg.exporter.otlp.as_ref().ok_or("a periodic reader needs the \"otlp\" exporter")?;
        let url = target(otlp)?;
        let (uri, userinfo_auth) = crate::secret::basic_auth_from_userinfo(
            &url.parse::<Uri>().map_err(|_| format!("invalid endpoint \"{}\"", crate::secret::redact_url(&url)))?,
        )?;
        let mut headers = headers(otlp).map_err(|(k, m)| format!("{k}: {m}"))?;
        if let Some(auth) = userinfo_auth
            && !crate::secret::has_authorization(&headers)
        {
            headers.push((header::AUTHORIZATION, auth));
        }
        let timeout = Duration::from_millis(cfg.timeout.min(otlp.timeout).max(1));
        let tls = tls(otlp);
        let transport = match otlp.protocol {
            OtlpProtocol::HttpProtobuf => {
                Transport::Http(Client::builder(TokioExecutor::new()).build(tls.connector(Protocol::Http1, timeout)?))
            }
            OtlpProtocol::Grpc => Transport::Grpc(
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .timer(TokioTimer::new())
                    .build(tls.connector(Protocol::Http2, timeout)?),
            ),
        };
        let kind = match otlp.compression {
            Some(PushCompression::Gzip) => Compression::Gzip,
            Some(PushCompression::None) | None => Compression::None,
        };
        Ok(Pusher {
            shown: crate::secret::redact_url(&url).into_owned(),
            uri,
            transport,
            headers,
            compressor: Compressor::new(kind, &CompressionParams::default()),
            interval: Duration::from_millis(cfg.interval.max(1)),
            timeout,
            failures: LogLimit::new(FAILURE_LOG_INTERVAL),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.shown
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Pushes every `interval` (the first one an interval after the start) until `stop` fires,
    /// then once more, for the final values.
    pub async fn run(self, source: MetricsSource, identity: Arc<Identity>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.push_logged(&source, &identity, self.timeout) => {}
            }
        }
        self.push_logged(&source, &identity, self.timeout.min(FINAL_PUSH_LIMIT)).await;
    }

    async fn push_logged(&self, source: &MetricsSource, identity: &Identity, timeout: Duration) {
        let request = to_request(&source(), identity, SystemTime::now());
        let outcome = match tokio::time::timeout(timeout, self.push(request.encode_to_vec(), timeout)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        if let Err(error) = outcome
            && let Some(held_back) = self.failures.allow()
        {
            tracing::warn!(endpoint = %self.shown, %error, held_back, "cannot push self-metrics");
        }
    }

    /// One push of the encoded `ExportMetricsServiceRequest`.
    async fn push(&self, encoded: Vec<u8>, timeout: Duration) -> Result<(), String> {
        match &self.transport {
            Transport::Grpc(client) => {
                let framed = call::frame(&encoded, &self.compressor)?;
                call::unary(client, self.uri.clone(), framed, &self.compressor, &self.headers, timeout)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))
            }
            Transport::Http(client) => {
                let body = match self.compressor.compress(&encoded)? {
                    Some(compressed) => compressed,
                    None => encoded,
                };
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri(self.uri.clone())
                    .header(header::CONTENT_TYPE, "application/x-protobuf")
                    .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
                if let Some(encoding) = self.compressor.encoding() {
                    req = req.header(header::CONTENT_ENCODING, encoding);
                }
                for (k, v) in &self.headers {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
                let resp = client.request(req).await.map_err(|e| format!("connection: {}", crate::cause::chain(&e)))?;
                let status = resp.status();
                let body = http_body_util::Limited::new(resp.into_body(), 16 * 1024)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if status.is_success() {
                    return Ok(());
                }
                let text = String::from_utf8_lossy(&body[..body.len().min(256)]).trim().to_string();
                Err(format!("HTTP {status}: {text}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

    fn registry() -> Registry {
        let r = Registry::new();
        let c = IntCounterVec::new(Opts::new("otelcol_receiver_accepted_spans_total", "spans"), &["receiver"]).unwrap();
        c.with_label_values(&["otlp"]).inc_by(7);
        r.register(Box::new(c)).unwrap();
        let g = IntGauge::new("otelcol_process_memory_rss_bytes", "rss").unwrap();
        g.set(4096);
        r.register(Box::new(g)).unwrap();
        let h = HistogramVec::new(HistogramOpts::new("batch_size", "sizes").buckets(vec![1.0, 10.0]), &["processor"])
            .unwrap();
        for v in [0.5, 5.0, 5.0, 50.0] {
            h.with_label_values(&["batch"]).observe(v);
        }
        r.register(Box::new(h)).unwrap();
        r
    }

    #[test]
    fn families_become_otlp_metrics_under_the_collector_names() {
        let identity = Identity { instance_id: Some("id-1".into()), start_unix_nano: 5 };
        let req = to_request(&registry().gather(), &identity, UNIX_EPOCH + Duration::from_secs(1));
        let rm = &req.resource_metrics[0];
        let resource = format!("{:?}", rm.resource);
        for attr in ["service.name", "switchyard", "service.version", "service.instance.id", "id-1"] {
            assert!(resource.contains(attr), "{resource}");
        }
        let metrics = &rm.scope_metrics[0].metrics;
        let by_name = |n: &str| metrics.iter().find(|m| m.name == n).unwrap_or_else(|| panic!("{n}: {metrics:?}"));
        let Some(Data::Sum(sum)) = &by_name("otelcol_receiver_accepted_spans").data else { panic!() };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        let p = &sum.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsDouble(7.0)));
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (5, 1_000_000_000));
        assert_eq!(p.attributes, vec![string_attr("receiver", "otlp")]);
        let rss = by_name("otelcol_process_memory_rss");
        assert_eq!(rss.unit, "By");
        assert!(
            matches!(&rss.data, Some(Data::Gauge(g)) if g.data_points[0].value == Some(number_data_point::Value::AsDouble(4096.0)))
        );
        let Some(Data::Histogram(h)) = &by_name("batch_size").data else { panic!() };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, vec![1.0, 10.0]);
        assert_eq!(p.bucket_counts, vec![1, 2, 1]);
        assert_eq!((p.count, p.sum), (4, Some(60.5)));
    }

    fn otlp(protocol: &str, endpoint: &str, insecure: Option<bool>) -> OtlpPushConfig {
        let mut yaml = format!("protocol: {protocol}\nendpoint: '{endpoint}'\n");
        if let Some(i) = insecure {
            yaml.push_str(&format!("insecure: {i}\n"));
        }
        crate::config::parse_yaml("t.yaml", &yaml).unwrap()
    }

    #[test]
    fn endpoints_follow_the_collector() {
        let t = |p, e, i| target(&otlp(p, e, i));
        assert_eq!(t("http/protobuf", "http://c:4318", None).unwrap(), "http://c:4318/v1/metrics");
        assert_eq!(t("http/protobuf", "http://c:4318/custom/path", None).unwrap(), "http://c:4318/custom/path");
        assert_eq!(t("http/protobuf", "c:4318", None).unwrap(), "https://c:4318/v1/metrics");
        assert_eq!(t("http/protobuf", "c:4318", Some(true)).unwrap(), "http://c:4318/v1/metrics");
        assert_eq!(
            t("grpc", "http://c:4317/ignored", None).unwrap(),
            "http://c:4317/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        );
        assert_eq!(
            t("grpc", "c:4317", None).unwrap(),
            "https://c:4317/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        );
        assert!(t("grpc", "ftp://c:1", None).unwrap_err().contains("unsupported scheme"));
        assert!(t("grpc", "http://:4317", None).is_err());
        assert!(t("grpc", "http://c:", None).is_err());
    }

    #[test]
    fn headers_from_the_list_and_the_pairs() {
        let cfg: OtlpPushConfig = crate::config::parse_yaml(
            "t.yaml",
            "protocol: grpc\nendpoint: http://c:1\nheaders_list: 'a=1,b=x%20y'\nheaders:\n  - name: a\n    value: '2'\n",
        )
        .unwrap();
        let h: Vec<(String, String)> =
            headers(&cfg).unwrap().into_iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
        assert_eq!(h, [("b".to_string(), "x y".to_string()), ("a".to_string(), "2".to_string())]);
    }
}
