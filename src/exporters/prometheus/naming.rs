//! Prometheus names for OTLP metrics and attributes, as the Collector normalises them: units as
//! suffixes (`_seconds`, `_bytes`, `_per_second`), `_total` on monotonic counters, `_ratio` on
//! gauges of unit `1`, invalid characters as `_`, a namespace prefix.

/// OTLP (UCUM) units and their Prometheus words.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

/// The units after `/` (`By/s` → `per_second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// What a metric is, as far as its name is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Counter,
    Gauge,
    Other,
}

/// The Prometheus name of a metric. A name that is already a valid Prometheus name keeps its
/// characters (`job:requests:rate5m` stays), then gains what its unit and type call for.
pub fn metric_name(name: &str, unit: &str, kind: NameKind, namespace: &str, add_suffixes: bool) -> String {
    let mut full = sanitize_metric(name);
    if add_suffixes {
        let has = |full: &str, word: &str| full.split(['_', ':']).any(|t| t == word);
        let (main, per) = unit.split_once('/').unwrap_or((unit, ""));
        let clean = |u: &str| -> String {
            // `{requests}` and the like are annotations, not units.
            let mut out = String::new();
            let mut depth = 0;
            for c in u.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ if depth == 0 => out.push(c),
                    _ => {}
                }
            }
            out.trim().to_string()
        };
        let main = clean(main);
        let main_word = unit_word(&main).map(str::to_string).unwrap_or_else(|| sanitize_metric(&main));
        let main_word = main_word.trim_matches('_');
        if !main_word.is_empty() && !has(&full, main_word) && !full.ends_with(&format!("_{main_word}")) {
            full.push('_');
            full.push_str(main_word);
        }
        let per = clean(per);
        if !per.is_empty() {
            let per_word = per_unit_word(&per).map(str::to_string).unwrap_or_else(|| sanitize_metric(&per));
            if !full.contains(&format!("per_{per_word}")) {
                full.push_str("_per_");
                full.push_str(&per_word);
            }
        }
        match kind {
            NameKind::Counter if !full.ends_with("_total") && full != "total" => full.push_str("_total"),
            NameKind::Gauge if unit == "1" && !has(&full, "ratio") => full.push_str("_ratio"),
            _ => {}
        }
    }
    if !namespace.is_empty() {
        full = format!("{}_{full}", sanitize_metric(namespace));
    }
    if full.starts_with(|c: char| c.is_ascii_digit()) {
        full.insert(0, '_');
    }
    full
}

/// Runs of characters a metric name may not have become one `_`.
fn sanitize_metric(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out
}

/// A label name from an attribute key: invalid characters become `_`, a leading digit gets
/// `key_`, a single leading `_` gets `key` (`__` prefixes stay: they are Prometheus's own).
pub fn label_name(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_units_and_type_suffixes() {
        let n = |name, unit, kind| metric_name(name, unit, kind, "", true);
        assert_eq!(n("http.server.request.duration", "s", NameKind::Other), "http_server_request_duration_seconds");
        assert_eq!(n("http.server.requests", "{request}", NameKind::Counter), "http_server_requests_total");
        assert_eq!(n("system.network.io", "By", NameKind::Counter), "system_network_io_bytes_total");
        assert_eq!(n("requests_total", "1", NameKind::Counter), "requests_total");
        assert_eq!(n("cpu.utilization", "1", NameKind::Gauge), "cpu_utilization_ratio");
        assert_eq!(n("throughput", "By/s", NameKind::Gauge), "throughput_bytes_per_second");
        assert_eq!(n("latency_seconds", "s", NameKind::Other), "latency_seconds");
        assert_eq!(n("2xx.count", "", NameKind::Gauge), "_2xx_count");
        assert_eq!(metric_name("queue.size", "", NameKind::Gauge, "app", true), "app_queue_size");
        assert_eq!(metric_name("a.b-c", "s", NameKind::Counter, "", false), "a_b_c");
        assert_eq!(n("job:requests:rate5m", "", NameKind::Gauge), "job:requests:rate5m");
        assert_eq!(n("node_cpu_seconds_total", "", NameKind::Counter), "node_cpu_seconds_total");
        assert_eq!(n("a__b", "", NameKind::Gauge), "a__b");
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("2xx"), "key_2xx");
        assert_eq!(label_name("_private"), "key_private");
        assert_eq!(label_name("__name__"), "__name__");
    }
}
