//! `/tap` on the self-metrics port, what `switchyard tap` reads: a stream of JSON lines, one
//! per sampled item passing the named component (see `pipeline::tap`), and a notice line when
//! items were skipped. Answered to loopback clients only: it shows the data itself.

use crate::net::{self, BoxBody};
use crate::pipeline::board::Board;
use crate::pipeline::tap::{Kind, Sample, Subscription, Taps};
use crate::pipeline::{Request, metric_points};
use bytes::Bytes;
use http::{Response, StatusCode};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};
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
                ask.kind = Some(
                    Kind::parse(&v)
                        .ok_or_else(|| format!("kind \"{v}\" is not one of receiver, processor, exporter"))?,
                )
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
        return Err("which component? /tap?component=<id>[&kind=receiver|processor|exporter][&limit=N]".into());
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
            .chain(p.exporters.iter().map(|(r, _)| (Kind::Exporter, r.clone())));
        for id in ids {
            if !all.contains(&id) {
                all.push(id);
            }
        }
    }
    all
}

/// Answers `GET /tap`.
pub fn serve(req: &http::Request<hyper::body::Incoming>, source: &TapSource) -> Response<BoxBody> {
    let local = req.extensions().get::<net::PeerAddr>().is_some_and(|p| p.0.ip().is_loopback());
    if !local {
        return net::text(
            StatusCode::FORBIDDEN,
            "tap answers local clients only: it shows the data itself (run switchyard tap on the same host, or through a port-forward)",
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
    let subscription = source.taps.subscribe(&ask.component, ask.kind, ask.limit, 16);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let hello = json!({"notice": format!("tapping {} {} (at most {} items/s from each; Ctrl-C to stop)", kinds.join(" and "), ask.component, ask.limit)});
    tokio::spawn(stream(subscription, hello, tx));
    let mut response = net::response(StatusCode::OK, "application/x-ndjson", Bytes::new());
    *response.body_mut() = http_body_util::BodyExt::boxed_unsync(Lines(rx));
    response.extensions_mut().insert(net::Streaming);
    response
}

/// Sends the tap's lines until the client goes away.
async fn stream(mut subscription: Subscription, hello: Value, tx: mpsc::Sender<Bytes>) {
    let line = |v: &Value| Bytes::from(format!("{v}\n"));
    if tx.send(line(&hello)).await.is_err() {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    ticks.tick().await;
    loop {
        tokio::select! {
            sample = subscription.next() => {
                let Some(sample) = sample else { return };
                for item in render(&sample) {
                    if tx.send(line(&item)).await.is_err() {
                        return;
                    }
                }
            }
            _ = ticks.tick() => {
                let skipped = subscription.take_skipped();
                if skipped > 0 {
                    let notice = json!({"notice": format!("{skipped} items skipped in the last 5 s (over the limit)"), "skipped": skipped});
                    if tx.send(line(&notice)).await.is_err() {
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
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

/// The indices of `take` items spread evenly over `items`.
fn picks(items: usize, take: usize) -> Vec<usize> {
    let take = take.min(items);
    (0..take).map(|k| k * items / take).collect()
}

/// One JSON object per sampled item: where it was seen, its resource and scope, and the item
/// in OTLP/JSON (a metric with only the sampled data point).
pub fn render(sample: &Sample) -> Vec<Value> {
    let request = match sample.batch.peek_request() {
        Ok(r) => r,
        Err(e) => return vec![json!({"notice": format!("cannot show a batch: {e}")})],
    };
    let wanted = picks(sample.batch.items(), sample.take);
    let mut out = Vec::with_capacity(wanted.len());
    let head = |resource: Value, scope: Value| {
        let mut v = json!({"component": &*sample.component, "kind": sample.kind.as_str()});
        if let Some(p) = &sample.pipeline {
            v["pipeline"] = json!(&**p);
        }
        v["signal"] = json!(sample.batch.signal().as_str());
        v["resource"] = resource;
        v["scope"] = scope;
        v
    };
    let mut n = 0usize;
    let mut next = wanted.iter().peekable();
    let mut due = |n: usize| next.next_if(|&&i| i == n).is_some();
    match &*request {
        Request::Traces(r) => {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        if due(n) {
                            let mut v = head(json!(rs.resource), json!(ss.scope));
                            v["span"] = json!(span);
                            out.push(v);
                        }
                        n += 1;
                    }
                }
            }
        }
        Request::Logs(r) => {
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    for record in &sl.log_records {
                        if due(n) {
                            let mut v = head(json!(rl.resource), json!(sl.scope));
                            v["log"] = json!(record);
                            out.push(v);
                        }
                        n += 1;
                    }
                }
            }
        }
        Request::Metrics(r) => {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        for point in 0..metric_points(metric.data.as_ref()) {
                            if due(n) {
                                let mut v = head(json!(rm.resource), json!(sm.scope));
                                v["metric"] = json!(one_point(metric, point));
                                out.push(v);
                            }
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

/// `metric` with only its data point at `index`.
fn one_point(metric: &Metric, index: usize) -> Metric {
    fn keep<T: Clone>(points: &[T], index: usize) -> Vec<T> {
        points.get(index).cloned().into_iter().collect()
    }
    let mut m = Metric { data: None, ..metric.clone() };
    m.data = metric.data.as_ref().map(|d| match d {
        Data::Gauge(g) => {
            Data::Gauge(opentelemetry_proto::tonic::metrics::v1::Gauge { data_points: keep(&g.data_points, index) })
        }
        Data::Sum(s) => Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
            data_points: keep(&s.data_points, index),
            ..s.clone()
        }),
        Data::Histogram(h) => Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
            data_points: keep(&h.data_points, index),
            ..h.clone()
        }),
        Data::ExponentialHistogram(h) => {
            Data::ExponentialHistogram(opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: keep(&h.data_points, index),
                ..h.clone()
            })
        }
        Data::Summary(s) => {
            Data::Summary(opentelemetry_proto::tonic::metrics::v1::Summary { data_points: keep(&s.data_points, index) })
        }
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Batch;
    use std::sync::Arc;

    #[test]
    fn asks_are_checked_with_clear_messages() {
        assert_eq!(
            parse(Some("component=otlp%2Fjaeger&kind=exporter&limit=5")).unwrap(),
            Ask { component: "otlp/jaeger".into(), kind: Some(Kind::Exporter), limit: 5 }
        );
        assert_eq!(parse(Some("component=batch")).unwrap().limit, DEFAULT_LIMIT);
        assert!(parse(None).unwrap_err().contains("which component"));
        assert!(parse(Some("component=a&kind=sink")).unwrap_err().contains("receiver, processor, exporter"));
        assert!(parse(Some("component=a&limit=0")).unwrap_err().contains("from 1 to"));
        assert!(parse(Some("component=a&limit=x")).unwrap_err().contains("from 1 to"));
        assert!(parse(Some("component=a&color=red")).unwrap_err().contains("unknown parameter \"color\""));
    }

    #[test]
    fn picks_spread_over_the_batch() {
        assert_eq!(picks(10, 3), [0, 3, 6]);
        assert_eq!(picks(2, 5), [0, 1]);
        assert!(picks(5, 0).is_empty());
    }

    #[test]
    fn a_metric_sample_shows_one_data_point_with_its_resource() {
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
        let batch = Batch::from_request(request);
        let sample = Sample {
            component: Arc::from("batch"),
            kind: Kind::Processor,
            pipeline: Some(Arc::from("metrics")),
            batch,
            take: 2,
        };
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

    #[test]
    fn a_span_sample_is_otlp_json_with_hex_ids_read_from_the_wire_form() {
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
        let sample = Sample { component: Arc::from("otlp"), kind: Kind::Receiver, pipeline: None, batch, take: 2 };
        let lines = render(&sample);
        let names: Vec<&str> = lines.iter().filter_map(|l| l["span"]["name"].as_str()).collect();
        assert_eq!(names, ["s1", "s3"]);
        assert_eq!(lines[0]["span"]["traceId"], "01010101010101010101010101010101");
        assert_eq!(lines[0]["span"]["spanId"], "abababababababab");
        assert!(lines[0].get("pipeline").is_none());
    }
}
