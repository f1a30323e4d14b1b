//! What the `prometheus` exporter serves: the latest value of every series, delta data added up
//! into cumulative totals, series dropped once they stop for `metric_expiration` (or end), and
//! rendered as the text format 0.0.4 or OpenMetrics 1.0.

use super::series::{FamilyKind, Point, Value, float_label, samples};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Labels = Vec<(String, String)>;

struct Entry {
    value: Value,
    time_ms: i64,
    updated: Instant,
}

struct FamilyEntry {
    kind: FamilyKind,
    help: String,
    series: HashMap<Labels, Entry>,
}

pub struct Registry {
    families: Mutex<BTreeMap<String, FamilyEntry>>,
    expiration: Duration,
}

impl Registry {
    pub fn new(expiration: Duration) -> Registry {
        Registry { families: Mutex::new(BTreeMap::new()), expiration }
    }

    /// Takes one point: replaces the series' value, adds a delta to it, or ends the series.
    pub fn update(&self, p: Point) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(p.family).or_insert_with(|| FamilyEntry {
            kind: p.kind,
            help: p.help.clone(),
            series: HashMap::new(),
        });
        if family.kind != p.kind {
            // A metric changed type: the new one wins, as a new family.
            *family = FamilyEntry { kind: p.kind, help: p.help.clone(), series: HashMap::new() };
        }
        if !p.help.is_empty() {
            family.help = p.help;
        }
        let labels: Labels = p.labels.into_iter().collect();
        if p.stale {
            family.series.remove(&labels);
            return;
        }
        let now = Instant::now();
        match family.series.get_mut(&labels) {
            Some(e) if p.delta => {
                e.value = add(&e.value, p.value);
                e.time_ms = e.time_ms.max(p.time_ms);
                e.updated = now;
            }
            Some(e) => {
                *e = Entry { value: p.value, time_ms: p.time_ms, updated: now };
            }
            None => {
                family.series.insert(labels, Entry { value: p.value, time_ms: p.time_ms, updated: now });
            }
        }
    }

    /// Renders every live series; `open_metrics` picks the format.
    pub fn render(&self, open_metrics: bool, const_labels: &BTreeMap<String, String>, timestamps: bool) -> String {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for f in families.values_mut() {
            f.series.retain(|_, e| now.duration_since(e.updated) < self.expiration);
        }
        families.retain(|_, f| !f.series.is_empty());
        let mut out = String::new();
        for (name, f) in families.iter() {
            let (type_name, kind) = match (f.kind, open_metrics) {
                (FamilyKind::Counter, true) => (name.strip_suffix("_total").unwrap_or(name), "counter"),
                (FamilyKind::Counter, false) => (name.as_str(), "counter"),
                (FamilyKind::Gauge, true) if name.ends_with("target_info") => {
                    (name.strip_suffix("_info").unwrap_or(name), "info")
                }
                (FamilyKind::Gauge, _) => (name.as_str(), "gauge"),
                (FamilyKind::Histogram, _) => (name.as_str(), "histogram"),
                (FamilyKind::Summary, _) => (name.as_str(), "summary"),
            };
            if !f.help.is_empty() {
                let _ = writeln!(out, "# HELP {type_name} {}", escape_help(&f.help, open_metrics));
            }
            let _ = writeln!(out, "# TYPE {type_name} {kind}");
            let mut series: Vec<(&Labels, &Entry)> = f.series.iter().collect();
            series.sort_by(|a, b| a.0.cmp(b.0));
            for (labels, e) in series {
                let point = Point {
                    family: name.clone(),
                    kind: f.kind,
                    help: String::new(),
                    labels: labels.iter().cloned().collect(),
                    value: e.value.clone(),
                    stale: false,
                    delta: false,
                    time_ms: e.time_ms,
                    start_ms: 0,
                };
                // Text format lists _sum/_count after the buckets and quantiles.
                let mut lines = samples(&point);
                lines.sort_by_key(|(n, _, _)| n.ends_with("_sum") || n.ends_with("_count"));
                for (mut sample_name, extra, value) in lines {
                    // OpenMetrics requires `_total` on counter samples (also when
                    // `add_metric_suffixes` is off).
                    if open_metrics && f.kind == FamilyKind::Counter && !sample_name.ends_with("_total") {
                        sample_name.push_str("_total");
                    }
                    let mut all: BTreeMap<&str, &str> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    for (k, v) in const_labels {
                        all.entry(k.as_str()).or_insert(v.as_str());
                    }
                    if let Some((k, v)) = &extra {
                        all.insert(k, v.as_str());
                    }
                    out.push_str(&sample_name);
                    if !all.is_empty() {
                        out.push('{');
                        for (i, (k, v)) in all.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            let _ = write!(out, "{k}=\"{}\"", escape_value(v));
                        }
                        out.push('}');
                    }
                    let _ = write!(out, " {}", float_label(value));
                    if timestamps {
                        if open_metrics {
                            let _ = write!(out, " {}", e.time_ms as f64 / 1000.0);
                        } else {
                            let _ = write!(out, " {}", e.time_ms);
                        }
                    }
                    out.push('\n');
                }
            }
        }
        if open_metrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// A delta added to a running total (histograms only with the same buckets; else replaced).
fn add(total: &Value, delta: Value) -> Value {
    match (total, delta) {
        (Value::Number(a), Value::Number(b)) => Value::Number(a + b),
        (
            Value::Histogram { bounds, counts, sum, count },
            Value::Histogram { bounds: b2, counts: c2, sum: s2, count: n2 },
        ) if *bounds == b2 && counts.len() == c2.len() => Value::Histogram {
            bounds: b2,
            counts: counts.iter().zip(&c2).map(|(a, b)| a + b).collect(),
            sum: match (sum, s2) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            },
            count: count + n2,
        },
        (_, other) => other,
    }
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str, open_metrics: bool) -> String {
    let s = v.replace('\\', "\\\\").replace('\n', "\\n");
    if open_metrics { s.replace('"', "\\\"") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::prometheus::parse::{Format, parse};

    fn point(family: &str, kind: FamilyKind, labels: &[(&str, &str)], value: Value, delta: bool) -> Point {
        Point {
            family: family.into(),
            kind,
            help: "Help \\ text.".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
            stale: false,
            delta,
            time_ms: 1_700_000_000_000,
            start_ms: 0,
        }
    }

    #[test]
    fn deltas_add_up_and_both_formats_parse_back() {
        let r = Registry::new(Duration::from_secs(300));
        for _ in 0..3 {
            r.update(point("jobs_total", FamilyKind::Counter, &[("q", "a\"b")], Value::Number(2.0), true));
        }
        r.update(point(
            "lat_seconds",
            FamilyKind::Histogram,
            &[],
            Value::Histogram { bounds: vec![0.1, 1.0], counts: vec![1, 2, 3], sum: Some(4.5), count: 6 },
            false,
        ));
        r.update(point("target_info", FamilyKind::Gauge, &[("job", "x")], Value::Number(1.0), false));
        let text = r.render(false, &[("region".to_string(), "eu".to_string())].into(), false);
        assert!(text.contains("jobs_total{q=\"a\\\"b\",region=\"eu\"} 6\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"1\",region=\"eu\"} 3\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\",region=\"eu\"} 6\n"), "{text}");
        let families = parse(text.as_bytes(), Format::Text).unwrap();
        assert_eq!(families.len(), 3);
        let om = r.render(true, &BTreeMap::new(), true);
        let families = parse(om.as_bytes(), Format::OpenMetrics).unwrap();
        assert!(om.contains("# TYPE jobs counter\n"), "{om}");
        assert!(om.contains("# TYPE target info\n"), "{om}");
        assert_eq!(families.iter().find(|f| f.name == "jobs").unwrap().samples[0].value, 6.0);
    }

    #[test]
    fn series_expire_and_end() {
        let r = Registry::new(Duration::from_millis(50));
        r.update(point("g", FamilyKind::Gauge, &[("a", "1")], Value::Number(1.0), false));
        let mut ended = point("g", FamilyKind::Gauge, &[("a", "2")], Value::Number(1.0), false);
        r.update(ended.clone());
        ended.stale = true;
        r.update(ended);
        let text = r.render(false, &BTreeMap::new(), false);
        assert!(text.contains("g{a=\"1\"} 1") && !text.contains("a=\"2\""), "{text}");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(r.render(false, &BTreeMap::new(), false), "");
    }
}
