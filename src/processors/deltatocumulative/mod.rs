//! The `deltatocumulative` processor: turns delta sums and histograms into cumulative ones by
//! adding each stream's samples in memory, as the collector's processor does, so that a
//! Prometheus exporter (which takes cumulative data) can carry what a count connector or a
//! delta SDK sends. A stream is a resource, scope, metric and set of point attributes; it
//! starts at its first sample and is forgotten after `max_stale` without one. As in the
//! collector, a sample that starts before its stream did (an older series) or is not later
//! than the stream's last sample (out of order) is dropped. Exponential histograms pass
//! through as they are.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, Processor, Request};
use crate::processors::metric_stream;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data, number_data_point};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaToCumulativeConfig {
    /// How long a stream without a new sample is kept.
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_stale: Duration,
    /// Streams tracked at most (0: no limit, as in the collector); samples of new streams over
    /// the limit are dropped and counted.
    pub max_streams: usize,
}

impl Default for DeltaToCumulativeConfig {
    fn default() -> Self {
        DeltaToCumulativeConfig { max_stale: Duration::from_secs(300), max_streams: 0 }
    }
}

/// What a stream has added up so far.
struct Stream {
    start: u64,
    /// The time of its latest sample (0: none yet).
    last: u64,
    value: Total,
    seen: Instant,
}

enum Total {
    Int(i64),
    Double(f64),
    Histogram { count: u64, sum: Option<f64>, bounds: Vec<f64>, buckets: Vec<u64>, min: Option<f64>, max: Option<f64> },
}

pub struct DeltaToCumulative {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    max_stale: Duration,
    max_streams: usize,
    streams: HashMap<Vec<u8>, Stream>,
    next_sweep: Instant,
}

impl DeltaToCumulative {
    pub fn new(
        name: String,
        cfg: &DeltaToCumulativeConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        DeltaToCumulative {
            name,
            telemetry,
            max_stale: cfg.max_stale,
            max_streams: cfg.max_streams,
            streams: HashMap::new(),
            next_sweep: Instant::now() + cfg.max_stale.min(Duration::from_secs(60)),
        }
    }

    /// The stream for `key`, made at `start` if new (none when over `max_streams`).
    fn stream(&mut self, key: Vec<u8>, start: u64, zero: Total) -> Option<&mut Stream> {
        let full = self.max_streams > 0 && self.streams.len() >= self.max_streams;
        if full && !self.streams.contains_key(&key) {
            return None;
        }
        let now = Instant::now();
        let s = self.streams.entry(key).or_insert(Stream { start, last: 0, value: zero, seen: now });
        s.seen = now;
        Some(s)
    }

    /// Adds a delta number point to its stream and makes it the cumulative point; false when
    /// it must be dropped.
    fn number(&mut self, key: Vec<u8>, p: &mut opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> bool {
        let zero = match p.value {
            Some(number_data_point::Value::AsInt(_)) => Total::Int(0),
            _ => Total::Double(0.0),
        };
        let Some(s) = self.stream(key, p.start_time_unix_nano, zero) else { return false };
        if p.start_time_unix_nano < s.start || (s.last > 0 && p.time_unix_nano <= s.last) {
            return false;
        }
        match (&mut s.value, p.value) {
            (Total::Int(t), Some(number_data_point::Value::AsInt(v))) => {
                *t = t.saturating_add(v);
                p.value = Some(number_data_point::Value::AsInt(*t));
            }
            (Total::Double(t), Some(number_data_point::Value::AsDouble(v))) => {
                *t += v;
                p.value = Some(number_data_point::Value::AsDouble(*t));
            }
            (Total::Double(t), Some(number_data_point::Value::AsInt(v))) => {
                *t += v as f64;
                p.value = Some(number_data_point::Value::AsDouble(*t));
            }
            (Total::Int(t), Some(number_data_point::Value::AsDouble(v))) => {
                let total = *t as f64 + v;
                s.value = Total::Double(total);
                p.value = Some(number_data_point::Value::AsDouble(total));
            }
            (_, None) => {}
            (Total::Histogram { .. }, _) => return false,
        }
        s.last = p.time_unix_nano;
        p.start_time_unix_nano = s.start;
        true
    }

    fn histogram(&mut self, key: Vec<u8>, p: &mut opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint) -> bool {
        let zero = Total::Histogram {
            count: 0,
            sum: Some(0.0),
            bounds: p.explicit_bounds.clone(),
            buckets: vec![0; p.bucket_counts.len()],
            min: None,
            max: None,
        };
        let Some(s) = self.stream(key, p.start_time_unix_nano, zero) else { return false };
        if p.start_time_unix_nano < s.start || (s.last > 0 && p.time_unix_nano <= s.last) {
            return false;
        }
        let Total::Histogram { count, sum, bounds, buckets, min, max } = &mut s.value else { return false };
        if *bounds != p.explicit_bounds || buckets.len() != p.bucket_counts.len() {
            // The buckets changed: the stream starts again from this sample.
            *bounds = p.explicit_bounds.clone();
            *buckets = vec![0; p.bucket_counts.len()];
            (*count, *sum, *min, *max) = (0, Some(0.0), None, None);
            s.start = p.start_time_unix_nano;
        }
        *count += p.count;
        *sum = match (*sum, p.sum) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        for (b, n) in buckets.iter_mut().zip(&p.bucket_counts) {
            *b += n;
        }
        *min = match (*min, p.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        *max = match (*max, p.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        p.count = *count;
        p.sum = *sum;
        p.bucket_counts = buckets.clone();
        p.min = *min;
        p.max = *max;
        s.last = p.time_unix_nano;
        p.start_time_unix_nano = s.start;
        true
    }

    /// Makes the delta sums and histograms of `request` cumulative; returns the points dropped.
    fn convert(&mut self, request: &mut Request) -> usize {
        let Request::Metrics(r) = request else { return 0 };
        let mut dropped = 0;
        let delta = AggregationTemporality::Delta as i32;
        for rm in &mut r.resource_metrics {
            let resource = metric_stream::resource_prefix(rm.resource.as_ref());
            for sm in &mut rm.scope_metrics {
                let prefix = metric_stream::scope_prefix(&resource, sm.scope.as_ref());
                for metric in &mut sm.metrics {
                    let names = (metric.name.clone(), metric.unit.clone());
                    let snapshot = (names.0.as_str(), names.1.as_str());
                    match &mut metric.data {
                        Some(Data::Sum(sum)) if sum.aggregation_temporality == delta => {
                            let monotonic = sum.is_monotonic;
                            let before = sum.data_points.len();
                            let points = std::mem::take(&mut sum.data_points);
                            sum.data_points = points
                                .into_iter()
                                .filter_map(|mut p| {
                                    let key = metric_stream::identity(&prefix, snapshot, 1, monotonic, &p.attributes);
                                    self.number(key, &mut p).then_some(p)
                                })
                                .collect();
                            dropped += before - sum.data_points.len();
                            sum.aggregation_temporality = AggregationTemporality::Cumulative as i32;
                        }
                        Some(Data::Histogram(h)) if h.aggregation_temporality == delta => {
                            let before = h.data_points.len();
                            let points = std::mem::take(&mut h.data_points);
                            h.data_points = points
                                .into_iter()
                                .filter_map(|mut p| {
                                    let key = metric_stream::identity(&prefix, snapshot, 2, false, &p.attributes);
                                    self.histogram(key, &mut p).then_some(p)
                                })
                                .collect();
                            dropped += before - h.data_points.len();
                            h.aggregation_temporality = AggregationTemporality::Cumulative as i32;
                        }
                        _ => {}
                    }
                }
                sm.metrics.retain(|m| crate::pipeline::metric_points(m.data.as_ref()) > 0 || m.data.is_none());
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        r.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
        dropped
    }

    fn sweep(&mut self, now: Instant) {
        let stale = self.max_stale;
        self.streams.retain(|_, s| now.duration_since(s.seen) < stale);
        self.next_sweep = now + stale.min(Duration::from_secs(60));
    }
}

impl Processor for DeltaToCumulative {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        if batch.signal() != crate::signal::Signal::Metrics {
            out.push(batch);
            return;
        }
        let telemetry = self.telemetry.clone();
        let name = self.name.clone();
        crate::processors::drop_items(&telemetry, &name, batch, out, |request| self.convert(request));
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_sweep)
    }

    fn on_deadline(&mut self, now: Instant, _out: &mut Vec<Batch>) {
        self.sweep(now);
    }
}

/// The `deltatocumulative` processor's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::processor::<DeltaToCumulativeConfig>(
        "deltatocumulative",
        &[crate::signal::Signal::Metrics],
        "turns delta sums and histograms cumulative, stream by stream",
    );

impl crate::pipeline::component::ProcessorSettings for DeltaToCumulativeConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        if self.max_stale.is_zero() {
            return Err(crate::config::Invalid::new("max_stale", "must be greater than 0, such as 5m"));
        }
        Ok(())
    }

    fn build(&self, ctx: &crate::pipeline::component::ProcessorContext) -> Result<Box<dyn Processor>, String> {
        Ok(Box::new(DeltaToCumulative::new(ctx.name.clone(), self, ctx.telemetry.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };

    fn processor(max_streams: usize) -> DeltaToCumulative {
        let cfg = DeltaToCumulativeConfig { max_streams, ..Default::default() };
        DeltaToCumulative::new("d".into(), &cfg, Default::default())
    }

    fn request(metrics: Vec<Metric>) -> Batch {
        Batch::from_request(Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            }],
        }))
    }

    fn delta_sum(points: &[(&str, u64, u64, i64)]) -> Metric {
        Metric {
            name: "calls".into(),
            data: Some(Data::Sum(Sum {
                data_points: points
                    .iter()
                    .map(|(tenant, start, time, v)| NumberDataPoint {
                        attributes: vec![kv("tenant", string(tenant))],
                        start_time_unix_nano: *start,
                        time_unix_nano: *time,
                        value: Some(number_data_point::Value::AsInt(*v)),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    /// (tenant, start, time, value) of every sum point, and whether the sums are cumulative.
    fn sums(batches: &[Batch]) -> Vec<(String, u64, u64, i64, bool)> {
        let mut out = Vec::new();
        for b in batches {
            let Some(Request::Metrics(r)) = b.decoded() else { continue };
            for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
                let Some(Data::Sum(s)) = &m.data else { continue };
                let cumulative = s.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                for p in &s.data_points {
                    let Some(number_data_point::Value::AsInt(v)) = p.value else { continue };
                    let tenant = crate::exporters::values::text(p.attributes[0].value.as_ref());
                    out.push((tenant, p.start_time_unix_nano, p.time_unix_nano, v, cumulative));
                }
            }
        }
        out
    }

    #[test]
    fn delta_sums_add_up_per_stream_from_their_first_start() {
        let mut d = processor(0);
        let mut out = Vec::new();
        d.process(request(vec![delta_sum(&[("a", 10, 20, 3), ("b", 10, 20, 1)])]), &mut out);
        d.process(request(vec![delta_sum(&[("a", 20, 30, 4)])]), &mut out);
        // Out of order (no later than the stream's last sample): dropped.
        d.process(request(vec![delta_sum(&[("a", 15, 25, 100), ("b", 20, 30, 2)])]), &mut out);
        assert_eq!(
            sums(&out),
            [
                ("a".into(), 10, 20, 3, true),
                ("b".into(), 10, 20, 1, true),
                ("a".into(), 10, 30, 7, true),
                ("b".into(), 10, 30, 3, true),
            ]
        );
        assert_eq!(d.telemetry.processor_dropped[1].with_label_values(&["d"]).get(), 1);
    }

    #[test]
    fn samples_without_a_start_time_add_up_in_time_order() {
        // As the count connector sends them: start 0, each later than the last.
        let mut d = processor(0);
        let mut out = Vec::new();
        for (time, v) in [(10, 1), (20, 1), (20, 5), (30, 2)] {
            d.process(request(vec![delta_sum(&[("a", 0, time, v)])]), &mut out);
        }
        let values: Vec<i64> = sums(&out).iter().map(|s| s.3).collect();
        assert_eq!(values, [1, 2, 4], "the repeated time 20 is out of order");
    }

    #[test]
    fn cumulative_data_passes_and_new_streams_over_the_limit_are_dropped() {
        let mut d = processor(1);
        let mut cumulative = delta_sum(&[("a", 0, 5, 9)]);
        if let Some(Data::Sum(s)) = &mut cumulative.data {
            s.aggregation_temporality = AggregationTemporality::Cumulative as i32;
        }
        let mut out = Vec::new();
        d.process(request(vec![cumulative.clone()]), &mut out);
        assert_eq!(sums(&out), [("a".into(), 0, 5, 9, true)], "untouched");
        out.clear();
        d.process(request(vec![delta_sum(&[("a", 10, 20, 1), ("b", 10, 20, 1)])]), &mut out);
        assert_eq!(sums(&out), [("a".into(), 10, 20, 1, true)], "b would be a second stream");
        // A stream forgotten after max_stale leaves room.
        d.sweep(Instant::now() + Duration::from_secs(301));
        out.clear();
        d.process(request(vec![delta_sum(&[("b", 30, 40, 5)])]), &mut out);
        assert_eq!(sums(&out), [("b".into(), 30, 40, 5, true)]);
    }

    #[test]
    fn delta_histograms_add_up_bucket_by_bucket() {
        let h = |start: u64, time: u64, buckets: Vec<u64>, sum: f64| Metric {
            name: "latency".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: buckets.iter().sum(),
                    sum: Some(sum),
                    explicit_bounds: vec![10.0, 100.0],
                    bucket_counts: buckets,
                    min: Some(sum / 2.0),
                    max: Some(sum),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        };
        let mut d = processor(0);
        let mut out = Vec::new();
        d.process(request(vec![h(1, 2, vec![1, 0, 1], 120.0)]), &mut out);
        d.process(request(vec![h(2, 3, vec![0, 2, 0], 60.0)]), &mut out);
        let Some(Request::Metrics(r)) = out[1].decoded() else { panic!() };
        let Some(Data::Histogram(hist)) = &r.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!() };
        let p = &hist.data_points[0];
        assert_eq!(
            (p.start_time_unix_nano, p.count, p.bucket_counts.clone(), p.sum),
            (1, 4, vec![1, 2, 1], Some(180.0))
        );
        assert_eq!((p.min, p.max), (Some(30.0), Some(120.0)));
        assert_eq!(hist.aggregation_temporality, AggregationTemporality::Cumulative as i32);
    }
}
