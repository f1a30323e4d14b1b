//! Remote-write requests (1.0 `WriteRequest`, 2.0 `Request` with its symbols table) as families
//! of samples per (job, instance), ready for the Prometheus → OTLP translation the scraper uses.
//! Metric types come from the request's metadata (2.0 carries it per series; 1.0 senders send it
//! in separate requests, so it is remembered per family name); without any, a series is a gauge.

use crate::proto::prometheus as v1;
use crate::proto::prometheus_v2 as v2;
use crate::receivers::prometheus::parse::{Family, Kind, Sample};
use std::collections::HashMap;
use std::sync::Mutex;

type Labels = Vec<(String, String)>;

/// What is known of a metric family: its type, help and unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub kind: Kind,
    pub help: String,
    pub unit: String,
}

/// Metadata remembered from 1.0 requests, bounded.
pub struct MetaCache {
    map: Mutex<HashMap<String, Meta>>,
}

/// The most families whose metadata is remembered.
const META_LIMIT: usize = 100_000;

impl Default for MetaCache {
    fn default() -> Self {
        MetaCache { map: Mutex::new(HashMap::new()) }
    }
}

impl MetaCache {
    fn learn(&self, name: String, meta: Meta) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < META_LIMIT || map.contains_key(&name) {
            map.insert(name, meta);
        }
    }

    fn get(&self, name: &str) -> Option<Meta> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }
}

/// The families of one (job, instance), and the target labels that name it.
pub struct Group {
    pub target: Labels,
    pub families: Vec<Family>,
}

#[derive(Default)]
pub struct Decoded {
    pub groups: Vec<Group>,
    pub samples: usize,
}

fn kind_v1(t: i32) -> Kind {
    match v1::metric_metadata::MetricType::try_from(t).unwrap_or(v1::metric_metadata::MetricType::Unknown) {
        v1::metric_metadata::MetricType::Counter => Kind::Counter,
        v1::metric_metadata::MetricType::Gauge => Kind::Gauge,
        v1::metric_metadata::MetricType::Histogram => Kind::Histogram,
        v1::metric_metadata::MetricType::Gaugehistogram => Kind::GaugeHistogram,
        v1::metric_metadata::MetricType::Summary => Kind::Summary,
        v1::metric_metadata::MetricType::Info => Kind::Info,
        v1::metric_metadata::MetricType::Stateset => Kind::StateSet,
        v1::metric_metadata::MetricType::Unknown => Kind::Unknown,
    }
}

fn kind_v2(t: i32) -> Kind {
    use v2::metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unspecified) {
        T::Counter => Kind::Counter,
        T::Gauge => Kind::Gauge,
        T::Histogram => Kind::Histogram,
        T::Gaugehistogram => Kind::GaugeHistogram,
        T::Summary => Kind::Summary,
        T::Info => Kind::Info,
        T::Stateset => Kind::StateSet,
        T::Unspecified => Kind::Unknown,
    }
}

/// The family a series belongs to: its own name, or the name without the suffix its type adds.
fn family_of(name: &str, lookup: &dyn Fn(&str) -> Option<Meta>) -> (String, Option<Meta>) {
    if let Some(m) = lookup(name) {
        return (name.to_string(), Some(m));
    }
    for suffix in ["_bucket", "_sum", "_count", "_created", "_total", "_info", "_gsum", "_gcount"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(m) = lookup(base)
            && !matches!(m.kind, Kind::Gauge | Kind::Unknown)
        {
            return (base.to_string(), Some(m));
        }
    }
    (name.to_string(), None)
}

/// Checks a series' labels: `__name__` present, names valid and not repeated. Returns the name.
fn check(labels: &Labels, i: usize) -> Result<String, String> {
    let mut name = None;
    for (j, (n, v)) in labels.iter().enumerate() {
        if n.is_empty() {
            return Err(format!("series {i} has a label with an empty name"));
        }
        if labels[..j].iter().any(|(m, _)| m == n) {
            return Err(format!("series {i} has the label {n} twice"));
        }
        if n == "__name__" {
            name = Some(v.clone());
        }
    }
    name.filter(|n| !n.is_empty()).ok_or_else(|| format!("series {i} has no __name__ label"))
}

struct Builder {
    groups: HashMap<Labels, Vec<Family>>,
    order: Vec<Labels>,
    samples: usize,
}

impl Builder {
    fn new() -> Builder {
        Builder { groups: HashMap::new(), order: Vec::new(), samples: 0 }
    }

    fn add(
        &mut self,
        name: String,
        labels: Labels,
        family: (String, Option<Meta>),
        samples: Vec<(f64, i64)>,
        start_ms: Option<i64>,
    ) {
        let target: Labels = labels.iter().filter(|(n, _)| n == "job" || n == "instance").cloned().collect();
        let families = self.groups.entry(target.clone()).or_insert_with(|| {
            self.order.push(target);
            Vec::new()
        });
        let (family_name, meta) = family;
        let meta = meta.unwrap_or(Meta { kind: Kind::Unknown, help: String::new(), unit: String::new() });
        let i = match families.iter().position(|f| f.name == family_name) {
            Some(i) => i,
            None => {
                families.push(Family {
                    name: family_name.clone(),
                    kind: meta.kind,
                    help: Some(meta.help).filter(|h| !h.is_empty()),
                    unit: Some(meta.unit).filter(|u| !u.is_empty()),
                    samples: Vec::new(),
                });
                families.len() - 1
            }
        };
        let labels: Labels = labels.into_iter().filter(|(n, _)| n != "__name__").collect();
        self.samples += samples.len();
        if let Some(start) = start_ms.filter(|s| *s > 0) {
            // As `_created` (seconds) would say it in an exposition.
            families[i].samples.push(Sample {
                name: format!("{family_name}_created"),
                labels: labels.clone(),
                value: start as f64 / 1000.0,
                timestamp_ms: None,
                exemplar: None,
            });
        }
        for (value, t) in samples {
            families[i].samples.push(Sample {
                name: name.clone(),
                labels: labels.clone(),
                value,
                timestamp_ms: Some(t),
                exemplar: None,
            });
        }
    }

    fn finish(mut self) -> Decoded {
        let samples = self.samples;
        let groups = self
            .order
            .into_iter()
            .map(|target| {
                let families = self.groups.remove(&target).unwrap_or_default();
                Group { target, families }
            })
            .collect();
        Decoded { groups, samples }
    }
}

/// The bytes of label text a 1.0 request expands to: each series' labels once per sample (and
/// once for the series).
pub fn expanded_v1(req: &v1::WriteRequest) -> usize {
    req.timeseries.iter().fold(0usize, |sum, ts| {
        let labels: usize = ts.labels.iter().map(|l| l.name.len() + l.value.len() + 48).sum();
        sum.saturating_add(labels.saturating_mul(ts.samples.len() + 1))
    })
}

/// The same for 2.0: a series' referenced symbols, once per sample.
pub fn expanded_v2(req: &v2::Request) -> usize {
    let symbol = |i: &u32| req.symbols.get(*i as usize).map_or(0, |s| s.len() + 24);
    req.timeseries.iter().fold(0usize, |sum, ts| {
        let labels: usize = ts.labels_refs.iter().map(symbol).sum();
        sum.saturating_add(labels.saturating_mul(ts.samples.len() + 1))
    })
}

/// A Remote Write 1.0 request. Its metadata (if any) is remembered for later requests.
pub fn from_v1(req: v1::WriteRequest, cache: &MetaCache) -> Result<Decoded, String> {
    for m in req.metadata {
        cache.learn(m.metric_family_name, Meta { kind: kind_v1(m.r#type), help: m.help, unit: m.unit });
    }
    let lookup = |n: &str| cache.get(n);
    let mut b = Builder::new();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let labels: Labels = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let name = check(&labels, i)?;
        let family = family_of(&name, &lookup);
        b.add(name, labels, family, ts.samples.into_iter().map(|s| (s.value, s.timestamp)).collect(), None);
    }
    Ok(b.finish())
}

/// A Remote Write 2.0 request: labels, help and unit resolved through the symbols table.
pub fn from_v2(req: v2::Request) -> Result<Decoded, String> {
    if req.symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err("symbols[0] must be the empty string".into());
    }
    let symbol = |i: u32, series: usize| -> Result<String, String> {
        req.symbols
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("series {series} refers to symbol {i}, but there are {}", req.symbols.len()))
    };
    // Metadata of every series first, so that e.g. `x_bucket` finds the histogram `x`.
    let mut metas: HashMap<String, Meta> = HashMap::new();
    let mut series = Vec::with_capacity(req.timeseries.len());
    for (i, ts) in req.timeseries.iter().enumerate() {
        if ts.labels_refs.len() % 2 != 0 {
            return Err(format!("series {i} has an odd number of label references"));
        }
        let labels: Labels = ts
            .labels_refs
            .chunks(2)
            .map(|p| Ok((symbol(p[0], i)?, symbol(p[1], i)?)))
            .collect::<Result<_, String>>()?;
        let name = check(&labels, i)?;
        if let Some(m) = &ts.metadata
            && m.r#type != 0
        {
            let meta = Meta { kind: kind_v2(m.r#type), help: symbol(m.help_ref, i)?, unit: symbol(m.unit_ref, i)? };
            let family = match meta.kind {
                Kind::Histogram | Kind::Summary => {
                    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_string()
                }
                _ => name.clone(),
            };
            metas.insert(family, meta);
        }
        series.push((name, labels));
    }
    let lookup = |n: &str| metas.get(n).cloned();
    let mut b = Builder::new();
    for ((name, labels), ts) in series.into_iter().zip(req.timeseries) {
        let family = family_of(&name, &lookup);
        let start = ts.samples.iter().map(|s| s.start_timestamp).find(|s| *s > 0);
        b.add(name, labels, family, ts.samples.into_iter().map(|s| (s.value, s.timestamp)).collect(), start);
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)], value: f64) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: pairs.iter().map(|(n, v)| v1::Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: vec![v1::Sample { value, timestamp: 1_700_000_000_000 }],
        }
    }

    #[test]
    fn v1_groups_by_job_and_instance_and_remembers_metadata() {
        let cache = MetaCache::default();
        let meta = v1::WriteRequest {
            metadata: vec![v1::MetricMetadata {
                r#type: v1::metric_metadata::MetricType::Histogram as i32,
                metric_family_name: "lat".into(),
                help: "Latency.".into(),
                unit: String::new(),
            }],
            ..Default::default()
        };
        assert_eq!(from_v1(meta, &cache).unwrap().samples, 0);
        let req = v1::WriteRequest {
            timeseries: vec![
                series(&[("__name__", "lat_bucket"), ("instance", "a:1"), ("job", "api"), ("le", "+Inf")], 3.0),
                series(&[("__name__", "lat_count"), ("instance", "a:1"), ("job", "api")], 3.0),
                series(&[("__name__", "up"), ("instance", "b:1"), ("job", "api")], 1.0),
            ],
            ..Default::default()
        };
        let d = from_v1(req, &cache).unwrap();
        assert_eq!(d.samples, 3);
        assert_eq!(d.groups.len(), 2);
        let lat = &d.groups[0].families[0];
        assert_eq!((lat.name.as_str(), lat.kind, lat.samples.len()), ("lat", Kind::Histogram, 2));
        assert_eq!(lat.help.as_deref(), Some("Latency."));
        assert_eq!(d.groups[1].families[0].kind, Kind::Unknown);
    }

    #[test]
    fn bad_series_are_refused_with_their_index() {
        let cache = MetaCache::default();
        let req =
            |labels: &[(&str, &str)]| v1::WriteRequest { timeseries: vec![series(labels, 1.0)], ..Default::default() };
        assert_eq!(from_v1(req(&[("job", "x")]), &cache).err().unwrap(), "series 0 has no __name__ label");
        assert_eq!(
            from_v1(req(&[("__name__", "a"), ("x", "1"), ("x", "2")]), &cache).err().unwrap(),
            "series 0 has the label x twice"
        );
    }

    #[test]
    fn v2_resolves_symbols_and_start_times() {
        let req = v2::Request {
            symbols: ["", "__name__", "reqs_total", "job", "api", "Requests.", "le"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![v2::Sample { value: 5.0, timestamp: 2_000, start_timestamp: 1_000 }],
                metadata: Some(v2::Metadata {
                    r#type: v2::metadata::MetricType::Counter as i32,
                    help_ref: 5,
                    unit_ref: 0,
                }),
            }],
        };
        let d = from_v2(req).unwrap();
        let f = &d.groups[0].families[0];
        assert_eq!((f.name.as_str(), f.kind, f.help.as_deref()), ("reqs_total", Kind::Counter, Some("Requests.")));
        assert_eq!(f.samples[0].name, "reqs_total_created");
        assert_eq!(f.samples[0].value, 1.0);
        assert_eq!(f.samples[1].value, 5.0);
        let bad = v2::Request {
            symbols: vec!["".into()],
            timeseries: vec![v2::TimeSeries { labels_refs: vec![1, 9], ..Default::default() }],
        };
        assert_eq!(from_v2(bad).err().unwrap(), "series 0 refers to symbol 1, but there are 1");
    }
}
