//! `/tap` on the self-metrics port, what `switchyard tap` reads: a stream of JSON lines, one
//! per sampled item passing the named component (see `pipeline::tap`), and a notice line when
//! items were skipped. Answered to loopback clients only: it shows the data itself.

use crate::net::{self, BoxBody};
use crate::pipeline::board::Board;
use crate::pipeline::tap::{Kind, Sample, Subscription, Taps};
use crate::pipeline::{Request, metric_points, retain_points};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Items per second a tap shows unless it asks for another limit.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most a tap may ask for.
pub const MAX_LIMIT: u32 = 10_000;

/// What the endpoint needs: the service's tap points and what runs.
#[derive(Clone)]
pub struct TapSource {
    pub taps: Taps,
    pub board: Board,
}

/// What a `/tap` request asks for.
#[derive(Debug, PartialEq)]
struct Ask {
    component: String,
    kind: Option<Kind>,
    limit: u32,
}

fn parse(query: Option<&str>) -> Result<Ask, String> {
    let mut ask = Ask { component: String::new(), kind: None, limit: DEFAULT_LIMIT };
    for (k, v) in crate::percent::query_pairs(query.unwrap_or(""))? {
        match k.as_str() {
            "component" => ask.component = v,
            "kind" => {
                ask.kind =
                    Some(Kind::parse(&v).ok_or_else(|| {
                        format!("kind \"{v}\" is not one of receiver, processor, exporter, connector")
                    })?)
            }
            "limit" => {
                ask.limit =
                    v.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                        format!("limit \"{v}\" is not a number of items per second from 1 to {MAX_LIMIT}")
                    })?
            }
            other => return Err(format!("unknown parameter \"{other}\" (component, kind, limit)")),
        }
    }
    if ask.component.is_empty() {
        return Err(
            "which component? /tap?component=<id>[&kind=receiver|processor|exporter|connector][&limit=N]".into()
        );
    }
    Ok(ask)
}

/// The running components of each kind, in configuration order, each once.
fn running(board: &Board) -> Vec<(Kind, String)> {
    let mut all: Vec<(Kind, String)> = Vec::new();
    for p in board.get() {
        let ids = p
            .receivers
            .iter()
            .map(|r| (Kind::Receiver, r.clone()))
            .chain(p.processors.iter().map(|r| (Kind::Processor, r.clone())))
            .chain(p.exporters.iter().map(|(r, _)| (Kind::Exporter, r.clone())))
            .chain(p.to_connectors.iter().map(|c| (Kind::Connector, c.clone())));
        for id in ids {
            if !all.contains(&id) {
                all.push(id);
            }
        }
    }
    all
}

/// Whether `req` comes from this host and names it: a loopback peer, and a `Host` that is
/// `localhost` or a loopback address (a web page that rebinds its own name to 127.0.0.1, or a
/// proxy on this host passing on a request from elsewhere, names another host).
fn local<B>(req: &http::Request<B>) -> bool {
    let peer = req.extensions().get::<net::PeerAddr>().is_some_and(|p| p.0.ip().to_canonical().is_loopback());
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).or(req.uri().host());
    let host_is_local = host.is_some_and(|h| {
        let name = match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => h.rsplit_once(':').map_or(h, |(name, _)| name),
        };
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
    });
    peer && host_is_local
}

/// Answers `GET /tap`; the stream ends when the client goes away or `stop` fires.
pub fn serve(
    req: &http::Request<hyper::body::Incoming>,
    source: &TapSource,
    stop: &tokio_util::sync::CancellationToken,
) -> Response<BoxBody> {
    if !local(req) {
        return net::text(
            StatusCode::FORBIDDEN,
            "tap answers local clients only (a loopback peer naming localhost): it shows the data itself; run switchyard tap on the same host, or through a port-forward",
        );
    }
    let ask = match parse(req.uri().query()) {
        Ok(a) => a,
        Err(m) => return net::text(StatusCode::BAD_REQUEST, &m),
    };
    let running = running(&source.board);
    let matched: Vec<&(Kind, String)> =
        running.iter().filter(|(k, id)| *id == ask.component && ask.kind.is_none_or(|a| a == *k)).collect();
    if matched.is_empty() {
        let list: Vec<String> = running.iter().map(|(k, id)| format!("{} {id}", k.as_str())).collect();
        let what = ask.kind.map(|k| format!("{} ", k.as_str())).unwrap_or_default();
        return net::text(
            StatusCode::NOT_FOUND,
            &format!("no running {what}component \"{}\"; running: {}", ask.component, list.join(", ")),
        );
    }
    let kinds: Vec<&str> = matched.iter().map(|(k, _)| k.as_str()).collect();
    let subscription = match source.taps.subscribe(&ask.component, ask.kind, ask.limit, 16) {
        Ok(s) => s,
        Err(m) => return net::text(StatusCode::SERVICE_UNAVAILABLE, &m),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let hello = format!(
        "tapping {} {} (at most {} items/s from each; Ctrl-C to stop)",
        kinds.join(" and "),
        ask.component,
        ask.limit
    );
    let tap = Tap { subscription, board: source.board.clone(), component: ask.component, kind: ask.kind };
    tokio::spawn(tap.stream(hello, tx, stop.clone()));
    let mut response = net::response(StatusCode::OK, "application/x-ndjson", Bytes::new());
    *response.body_mut() = http_body_util::BodyExt::boxed_unsync(Lines(rx));
    response.extensions_mut().insert(net::Streaming);
    response
}

/// A line sent after this long without one, so that a client gone without a word is noticed
/// (the write fails, or waits out the listener's `write_timeout`).
const HEARTBEAT: Duration = Duration::from_secs(30);

/// One running tap, as the endpoint streams it.
struct Tap {
    subscription: Subscription,
    board: Board,
    component: String,
    kind: Option<Kind>,
}

impl Tap {
    /// Whether a component it watches runs (a reload may remove it, and add it back).
    fn watched_runs(&self) -> bool {
        running(&self.board).iter().any(|(k, id)| *id == self.component && self.kind.is_none_or(|a| a == *k))
    }

    /// Sends the tap's lines until the client goes away or `stop` fires.
    async fn stream(mut self, hello: String, tx: mpsc::Sender<Bytes>, stop: tokio_util::sync::CancellationToken) {
        let line = |v: &Value| Bytes::from(format!("{v}\n"));
        if tx.send(line(&json!({"notice": hello}))).await.is_err() {
            return;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        ticks.tick().await;
        let mut last_sent = tokio::time::Instant::now();
        let mut gone = false;
        loop {
            let mut lines = Vec::new();
            tokio::select! {
                sample = self.subscription.next() => {
                    match tokio::task::spawn_blocking(move || render(&sample)).await {
                        Ok(rendered) => lines = rendered,
                        Err(e) => lines.push(json!({"notice": format!("cannot show a batch: {e}")})),
                    }
                }
                _ = ticks.tick() => {
                    let skipped = self.subscription.take_skipped();
                    if skipped > 0 {
                        lines.push(json!({"notice": format!("{skipped} items skipped in the last 5 s (over the limit, or this tap was behind)"), "skipped": skipped}));
                    }
                    match (self.watched_runs(), gone) {
                        (false, false) => lines.push(json!({"notice": format!("{} no longer runs (a reload removed it); waiting for it to come back", self.component)})),
                        (true, true) => lines.push(json!({"notice": format!("{} runs again", self.component)})),
                        _ => {}
                    }
                    gone = !self.watched_runs();
                    if lines.is_empty() && last_sent.elapsed() >= HEARTBEAT {
                        lines.push(json!({"heartbeat": true}));
                    }
                }
                _ = tx.closed() => return,
                _ = stop.cancelled() => return,
            }
            for l in &lines {
                if tx.send(line(l)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}

/// A response body made of the lines a task sends.
struct Lines(mpsc::Receiver<Bytes>);

impl http_body::Body for Lines {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|line| line.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// One JSON object per item of a sample: where it was seen, its resource and scope, and the
/// item in OTLP/JSON under `span`, `log` or `metric` (a metric with only the sampled point).
pub fn render(sample: &Sample) -> Vec<Value> {
    let request = match sample.items() {
        Ok(r) => r,
        Err(e) => return vec![json!({"notice": format!("cannot show a batch: {e}")})],
    };
    let head = |resource: Value, scope: Value| {
        let mut v = json!({"component": &*sample.component, "kind": sample.kind.as_str()});
        if let Some(p) = &sample.pipeline {
            v["pipeline"] = json!(&**p);
        }
        v["signal"] = json!(request.signal().as_str());
        v["resource"] = resource;
        v["scope"] = scope;
        v
    };
    let mut out = Vec::new();
    let mut item = |resource: Value, scope: Value, field: &str, value: Value| {
        let mut v = head(resource, scope);
        v[field] = value;
        out.push(v);
    };
    match &request {
        Request::Traces(r) => {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        item(json!(rs.resource), json!(ss.scope), "span", json!(span));
                    }
                }
            }
        }
        Request::Logs(r) => {
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    for record in &sl.log_records {
                        item(json!(rl.resource), json!(sl.scope), "log", json!(record));
                    }
                }
            }
        }
        Request::Metrics(r) => {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        for point in 0..metric_points(metric.data.as_ref()) {
                            let mut one = metric.clone();
                            retain_points(&mut one, |i| i == point);
                            item(json!(rm.resource), json!(sm.scope), "metric", json!(one));
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Batch;
    use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};
    use std::sync::Arc;

    /// What a tap of `limit` items per second on `component` gets of `batch`.
    async fn one_sample(kind: Kind, component: &str, pipeline: Option<&str>, batch: Batch, limit: u32) -> Sample {
        let taps = Taps::default();
        let point = taps.point(kind, component);
        let mut subscription = taps.subscribe(component, Some(kind), limit, 4).unwrap();
        point.observe(pipeline.map(Arc::from).as_ref(), &batch);
        subscription.next().await
    }

    #[test]
    fn asks_are_checked_with_clear_messages() {
        assert_eq!(
            parse(Some("component=otlp%2Fjaeger&kind=exporter&limit=5")).unwrap(),
            Ask { component: "otlp/jaeger".into(), kind: Some(Kind::Exporter), limit: 5 }
        );
        assert_eq!(parse(Some("component=batch")).unwrap().limit, DEFAULT_LIMIT);
        assert!(parse(None).unwrap_err().contains("which component"));
        assert!(parse(Some("component=a&kind=sink")).unwrap_err().contains("receiver, processor, exporter, connector"));
        assert!(parse(Some("component=a&limit=0")).unwrap_err().contains("from 1 to"));
        assert!(parse(Some("component=a&limit=x")).unwrap_err().contains("from 1 to"));
        assert!(parse(Some("component=a&color=red")).unwrap_err().contains("unknown parameter \"color\""));
    }

    #[test]
    fn only_a_loopback_peer_naming_this_host_may_tap() {
        let req = |peer: &str, host: Option<&str>| {
            let mut r = http::Request::builder().uri("/tap?component=otlp");
            if let Some(h) = host {
                r = r.header("host", h);
            }
            let mut r = r.body(()).unwrap();
            r.extensions_mut().insert(net::PeerAddr(peer.parse().unwrap()));
            r
        };
        assert!(local(&req("127.0.0.1:5000", Some("127.0.0.1:8888"))));
        assert!(local(&req("127.0.0.1:5000", Some("localhost:8888"))));
        assert!(local(&req("[::1]:5000", Some("[::1]:8888"))));
        assert!(local(&req("[::ffff:127.0.0.1]:5000", Some("localhost"))), "IPv4 on a dual-stack listener");
        assert!(!local(&req("10.1.2.3:5000", Some("127.0.0.1:8888"))), "a remote peer");
        assert!(!local(&req("127.0.0.1:5000", Some("evil.example:8888"))), "a rebound name");
        assert!(!local(&req("127.0.0.6:5000", Some("10.0.0.7:8888"))), "a local proxy passing on a remote request");
        assert!(!local(&req("127.0.0.1:5000", None)));
    }

    #[tokio::test]
    async fn a_tap_ends_when_its_client_goes_away() {
        let taps = Taps::default();
        let point = taps.point(Kind::Receiver, "otlp");
        let subscription = taps.subscribe("otlp", None, 10, 4).unwrap();
        assert!(point.is_active());
        let tap = Tap { subscription, board: Board::default(), component: "otlp".into(), kind: None };
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(tap.stream("hello".into(), tx, Default::default()));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the stream ends").unwrap();
        assert!(!point.is_active(), "nobody is subscribed any more");
    }

    #[tokio::test]
    async fn a_metric_sample_shows_one_data_point_with_its_resource() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, NumberDataPoint, ResourceMetrics, ScopeMetrics, number_data_point::Value as V,
        };
        let point = |v| NumberDataPoint { value: Some(V::AsInt(v)), ..Default::default() };
        let request = Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(Data::Gauge(Gauge { data_points: vec![point(1), point(2), point(3)] })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let sample = one_sample(Kind::Processor, "batch", Some("metrics"), Batch::from_request(request), 2).await;
        let lines = render(&sample);
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_eq!((line["component"].as_str(), line["kind"].as_str()), (Some("batch"), Some("processor")));
            assert_eq!((line["pipeline"].as_str(), line["signal"].as_str()), (Some("metrics"), Some("metrics")));
            let metric: Metric = serde_json::from_value(line["metric"].clone()).unwrap();
            assert_eq!(metric_points(metric.data.as_ref()), 1, "{line}");
        }
        assert_eq!(lines[1]["metric"]["gauge"]["dataPoints"][0]["asInt"], "2", "the second of three points");
    }

    #[tokio::test]
    async fn a_span_sample_is_otlp_json_with_hex_ids_read_from_the_wire_form() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use prost::Message;
        let span =
            |i: u8| Span { name: format!("s{i}"), trace_id: vec![i; 16], span_id: vec![0xab; 8], ..Default::default() };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: (1..=4).map(span).collect(), ..Default::default() }],
                ..Default::default()
            }],
        };
        let batch = Batch::from_encoded(crate::signal::Signal::Traces, Bytes::from(request.encode_to_vec()), 4);
        let sample = one_sample(Kind::Receiver, "otlp", None, batch, 2).await;
        let lines = render(&sample);
        let names: Vec<&str> = lines.iter().filter_map(|l| l["span"]["name"].as_str()).collect();
        assert_eq!(names, ["s1", "s3"]);
        assert_eq!(lines[0]["span"]["traceId"], "01010101010101010101010101010101");
        assert_eq!(lines[0]["span"]["spanId"], "abababababababab");
        assert!(lines[0].get("pipeline").is_none());
    }
}
