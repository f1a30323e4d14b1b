//! Splitting one export request into parts of at most N items (spans, data points, log
//! records), keeping each item's resource and scope, for `send_batch_max_size`.

use super::batch::{Request, metric_points};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};

pub fn split(request: Request, max: usize) -> Vec<Request> {
    match request {
        Request::Traces(r) => split_traces(r, max).into_iter().map(Request::Traces).collect(),
        Request::Metrics(r) => split_metrics(r, max).into_iter().map(Request::Metrics).collect(),
        Request::Logs(r) => split_logs(r, max).into_iter().map(Request::Logs).collect(),
    }
}

/// Walks resource → scope → items and cuts whenever a part is full. `$res`/`$scope`/`$items`
/// name the repeated fields of the signal's messages.
macro_rules! split_three_levels {
    ($request:expr, $max:expr, $req_ty:ty, $res:ident, $scopes:ident, $items:ident) => {{
        let max = $max;
        let mut parts: Vec<$req_ty> = Vec::new();
        let mut current = <$req_ty>::default();
        let mut count = 0usize;
        for mut resource in $request.$res {
            let scopes = std::mem::take(&mut resource.$scopes);
            for mut scope in scopes {
                let mut items = std::mem::take(&mut scope.$items);
                while !items.is_empty() {
                    if count == max {
                        parts.push(std::mem::take(&mut current));
                        count = 0;
                    }
                    let take = (max - count).min(items.len());
                    let rest = items.split_off(take);
                    let mut s = scope.clone();
                    s.$items = std::mem::replace(&mut items, rest);
                    count += take;
                    let same_resource = current
                        .$res
                        .last()
                        .is_some_and(|r| r.resource == resource.resource && r.schema_url == resource.schema_url);
                    if !same_resource {
                        let mut r = resource.clone();
                        r.$scopes = Vec::new();
                        current.$res.push(r);
                    }
                    if let Some(r) = current.$res.last_mut() {
                        r.$scopes.push(s);
                    }
                }
            }
        }
        if count > 0 {
            parts.push(current);
        }
        parts
    }};
}

fn split_traces(r: ExportTraceServiceRequest, max: usize) -> Vec<ExportTraceServiceRequest> {
    split_three_levels!(r, max, ExportTraceServiceRequest, resource_spans, scope_spans, spans)
}

fn split_logs(r: ExportLogsServiceRequest, max: usize) -> Vec<ExportLogsServiceRequest> {
    split_three_levels!(r, max, ExportLogsServiceRequest, resource_logs, scope_logs, log_records)
}

fn split_metrics(r: ExportMetricsServiceRequest, max: usize) -> Vec<ExportMetricsServiceRequest> {
    // First cut metrics with more points than fit in one part, then pack whole metrics.
    let mut r = r;
    for rm in &mut r.resource_metrics {
        for sm in &mut rm.scope_metrics {
            let metrics = std::mem::take(&mut sm.metrics);
            for m in metrics {
                sm.metrics.extend(cut_metric(m, max));
            }
        }
    }
    // Now every metric has at most `max` points; pack metrics greedily.
    let mut parts = Vec::new();
    let mut current = ExportMetricsServiceRequest::default();
    let mut count = 0usize;
    for mut resource in r.resource_metrics {
        let scopes = std::mem::take(&mut resource.scope_metrics);
        for mut scope in scopes {
            let metrics = std::mem::take(&mut scope.metrics);
            for m in metrics {
                let n = metric_points(m.data.as_ref());
                if count + n > max && count > 0 {
                    parts.push(std::mem::take(&mut current));
                    count = 0;
                }
                count += n;
                let same_resource = current
                    .resource_metrics
                    .last()
                    .is_some_and(|x| x.resource == resource.resource && x.schema_url == resource.schema_url);
                if !same_resource {
                    let mut x = resource.clone();
                    x.scope_metrics = Vec::new();
                    current.resource_metrics.push(x);
                }
                if let Some(x) = current.resource_metrics.last_mut() {
                    let same_scope = x
                        .scope_metrics
                        .last()
                        .is_some_and(|s| s.scope == scope.scope && s.schema_url == scope.schema_url);
                    if !same_scope {
                        let mut s = scope.clone();
                        s.metrics = Vec::new();
                        x.scope_metrics.push(s);
                    }
                    if let Some(s) = x.scope_metrics.last_mut() {
                        s.metrics.push(m);
                    }
                }
            }
        }
    }
    if count > 0 || !current.resource_metrics.is_empty() {
        parts.push(current);
    }
    parts
}

/// Cuts one metric into copies holding at most `max` data points each.
fn cut_metric(mut m: Metric, max: usize) -> Vec<Metric> {
    macro_rules! cut {
        ($variant:ident) => {{
            let mut points = match &mut m.data {
                Some(Data::$variant(d)) => std::mem::take(&mut d.data_points),
                _ => Vec::new(),
            };
            let mut out = Vec::new();
            while !points.is_empty() {
                let rest = if points.len() > max { points.split_off(max) } else { Vec::new() };
                let mut copy = m.clone();
                if let Some(Data::$variant(d)) = &mut copy.data {
                    d.data_points = std::mem::replace(&mut points, rest);
                }
                out.push(copy);
            }
            out
        }};
    }
    if metric_points(m.data.as_ref()) <= max {
        return vec![m];
    }
    match &m.data {
        Some(Data::Gauge(_)) => cut!(Gauge),
        Some(Data::Sum(_)) => cut!(Sum),
        Some(Data::Histogram(_)) => cut!(Histogram),
        Some(Data::ExponentialHistogram(_)) => cut!(ExponentialHistogram),
        Some(Data::Summary(_)) => cut!(Summary),
        None => vec![m],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mv1::{Gauge, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum};
    use opentelemetry_proto::tonic::metrics::v1 as mv1;

    fn metrics() -> ExportMetricsServiceRequest {
        let gauge = |n: usize| Metric {
            name: format!("g{n}"),
            data: Some(Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default(); n] })),
            ..Default::default()
        };
        let sum = Metric {
            name: "s".into(),
            data: Some(Data::Sum(Sum { data_points: vec![NumberDataPoint::default(); 5], ..Default::default() })),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![gauge(2), sum, gauge(1)], ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn metrics_split_by_points() {
        let parts = split_metrics(metrics(), 3);
        let counts: Vec<usize> = parts.iter().map(|p| Request::Metrics(p.clone()).item_count()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(counts.iter().all(|c| *c <= 3), "{counts:?}");
    }
}
