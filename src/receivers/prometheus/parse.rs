//! The Prometheus exposition formats, parsed by hand: text 0.0.4 and OpenMetrics 1.0 (PROTOCOLS.md
//! §4.1–4.2), including escaped label values and quoted UTF-8 names (`{"my.metric","a.b"="x"}`).
//! Written here rather than taken from a crate because the common crates split label sets on
//! commas and quotes naively, and mis-read values such as `a="x,y"` or `a="say \"hi\""`.
//!
//! The output is families: a name, a type, help and unit, and the samples that belong to it (for
//! a histogram, its `_bucket`, `_sum`, `_count` and `_created` lines).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps in milliseconds.
    Text,
    /// `application/openmetrics-text; version=1.0.0`: timestamps in seconds, `# EOF` required.
    OpenMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (text) or `unknown` (OpenMetrics), and samples with no TYPE line.
    Unknown,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "gaugehistogram" => Kind::GaugeHistogram,
            "summary" => Kind::Summary,
            "info" => Kind::Info,
            "stateset" => Kind::StateSet,
            "untyped" | "unknown" => Kind::Unknown,
            _ => return None,
        })
    }

    /// The suffixes a sample of this family may add to the family name.
    fn suffixes(self, format: Format) -> &'static [&'static str] {
        match (self, format) {
            (Kind::Counter, Format::OpenMetrics) => &["_total", "_created"],
            (Kind::Histogram, _) => &["_bucket", "_sum", "_count", "_created"],
            (Kind::GaugeHistogram, _) => &["_bucket", "_gsum", "_gcount"],
            (Kind::Summary, _) => &["", "_sum", "_count", "_created"],
            (Kind::Info, _) => &["_info"],
            _ => &[""],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The full sample name (`http_requests_total`, `latency_bucket`).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// What is wrong with an exposition, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole exposition.
pub fn parse(body: &[u8], format: Format) -> Result<Vec<Family>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        ParseError { line, message: "invalid UTF-8".into() }
    })?;
    let mut p = Parser { format, families: Vec::new(), closed: Default::default(), eof: false };
    let last = text.split('\n').count();
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        let fail = |message: String| ParseError { line: n, message };
        if p.eof {
            if line.is_empty() && n == last {
                continue;
            }
            return Err(fail("content after # EOF".into()));
        }
        if format == Format::OpenMetrics && line.contains('\r') {
            return Err(fail("carriage return in OpenMetrics".into()));
        }
        let line = if format == Format::Text { line.trim_end_matches('\r') } else { line };
        if line.trim().is_empty() {
            if format == Format::OpenMetrics && n != last {
                return Err(fail("empty line in OpenMetrics".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            p.comment(rest).map_err(fail)?;
        } else {
            p.sample(line).map_err(fail)?;
        }
    }
    if format == Format::OpenMetrics && !p.eof {
        return Err(ParseError { line: last, message: "OpenMetrics must end with # EOF".into() });
    }
    Ok(p.families)
}

struct Parser {
    format: Format,
    families: Vec<Family>,
    /// Families already left (all lines of a family must be together).
    closed: std::collections::HashSet<String>,
    eof: bool,
}

impl Parser {
    fn current(&mut self) -> Option<&mut Family> {
        self.families.last_mut()
    }

    /// Makes `name` the current family (a new one if it is not), with the metadata line `what`.
    fn family_for_metadata(&mut self, name: &str, what: &str) -> Result<&mut Family, String> {
        let is_current = self.families.last().is_some_and(|f| f.name == name);
        if !is_current {
            if self.closed.contains(name) {
                return Err(format!(
                    "{what} for {name} after its samples or metadata elsewhere: a family's lines must be together"
                ));
            }
            if let Some(prev) = self.families.last() {
                self.closed.insert(prev.name.clone());
            }
            self.families.push(Family {
                name: name.to_string(),
                kind: Kind::Unknown,
                help: None,
                unit: None,
                samples: Vec::new(),
            });
        }
        Ok(self.families.last_mut().expect("just ensured"))
    }

    fn comment(&mut self, rest: &str) -> Result<(), String> {
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        match keyword {
            "EOF" if self.format == Format::OpenMetrics => {
                self.eof = true;
                Ok(())
            }
            "HELP" | "TYPE" | "UNIT" => {
                if keyword == "UNIT" && self.format == Format::Text {
                    return Ok(());
                }
                let (name, after) = metric_name_token(rest)?;
                let value = after.strip_prefix(' ').unwrap_or(after);
                let format = self.format;
                let family = self.family_for_metadata(&name, keyword)?;
                match keyword {
                    "HELP" => {
                        if family.help.is_some() {
                            return Err(format!("second HELP for {name}"));
                        }
                        family.help = Some(unescape(value, false));
                    }
                    "UNIT" => {
                        if family.unit.is_some() {
                            return Err(format!("second UNIT for {name}"));
                        }
                        if !value.is_empty() && !name.ends_with(&format!("_{value}")) {
                            return Err(format!("unit \"{value}\" is not a suffix of {name}"));
                        }
                        family.unit = Some(value.to_string()).filter(|u| !u.is_empty());
                    }
                    _ => {
                        if family.kind != Kind::Unknown || !family.samples.is_empty() {
                            return Err(format!("TYPE for {name} after its samples or a second TYPE"));
                        }
                        let kind = Kind::parse(value.trim())
                            .ok_or_else(|| format!("unknown metric type \"{}\" for {name}", value.trim()))?;
                        if format == Format::Text && matches!(kind, Kind::Info | Kind::StateSet | Kind::GaugeHistogram)
                        {
                            return Err(format!("type {} is OpenMetrics only", value.trim()));
                        }
                        family.kind = kind;
                    }
                }
                Ok(())
            }
            _ if self.format == Format::OpenMetrics => Err(format!("unexpected comment \"#{rest}\" in OpenMetrics")),
            // Other comments are allowed in the text format.
            _ => Ok(()),
        }
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let format = self.format;
        let sample = parse_sample(line, format)?;
        // Which family: the current one if the name fits it, else a new untyped family.
        let fits =
            |f: &Family| f.kind.suffixes(format).iter().any(|s| sample.name.strip_suffix(s) == Some(f.name.as_str()));
        if let Some(f) = self.families.last()
            && f.kind == Kind::Counter
            && format == Format::OpenMetrics
            && sample.name == f.name
        {
            return Err(format!("OpenMetrics counter sample {} must end in _total", sample.name));
        }
        if !self.current().is_some_and(|f| fits(f)) {
            if self.closed.contains(&sample.name) {
                return Err(format!("sample of {} apart from the rest of its family", sample.name));
            }
            if let Some(prev) = self.families.last() {
                self.closed.insert(prev.name.clone());
            }
            self.families.push(Family {
                name: sample.name.clone(),
                kind: Kind::Unknown,
                help: None,
                unit: None,
                samples: Vec::new(),
            });
        }
        self.families.last_mut().expect("a family").samples.push(sample);
        Ok(())
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A metric name at the start of `s` (plain, or quoted for UTF-8 names); returns it and the rest.
fn metric_name_token(s: &str) -> Result<(String, &str), String> {
    if s.starts_with('"') {
        let (name, rest) = quoted(s)?;
        return Ok((name, rest));
    }
    let end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!("invalid metric name in \"{s}\""));
    }
    Ok((name.to_string(), &s[end..]))
}

/// A double-quoted string at the start of `s` with `\\`, `\"` and `\n` escapes; the rest after it.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let body = s.strip_prefix('"').ok_or("expected a quoted string")?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                // Prometheus keeps an unknown escape as written.
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return Err("unterminated quoted string".into()),
            },
            other => out.push(other),
        }
    }
    Err("unterminated quoted string".into())
}

/// HELP text: `\\` and `\n` are escapes (and, in OpenMetrics, `\"`).
fn unescape(s: &str, _quoted: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A label set `{a="x",b="y"}` (or, with `quoted_name_allowed`, `{"metric.name",a="x"}`); returns
/// the labels, the quoted metric name if one was inside, and the rest of the line.
#[allow(clippy::type_complexity)]
fn label_set(s: &str) -> Result<(Vec<(String, String)>, Option<String>, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut name_inside = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, name_inside, after));
        }
        let (label, after) = if rest.starts_with('"') {
            let (q, after) = quoted(rest)?;
            let after_ws = after.trim_start_matches([' ', '\t']);
            if !after_ws.starts_with('=') {
                // A quoted string not followed by `=` is the metric name (UTF-8 names).
                if name_inside.is_some() || !labels.is_empty() {
                    return Err("a quoted metric name must come first inside {}".into());
                }
                name_inside = Some(q);
                rest = after_ws;
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if !rest.starts_with('}') {
                    return Err("expected , or } after the metric name".into());
                }
                continue;
            }
            (q, after_ws)
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("invalid label name in \"{}\"", s.trim_end()));
            }
            (name.to_string(), rest[end..].trim_start_matches([' ', '\t']))
        };
        let after = after.strip_prefix('=').ok_or_else(|| format!("expected = after label {label}"))?;
        let value_text = after.trim_start_matches([' ', '\t']);
        if !value_text.starts_with('"') {
            return Err(format!("the value of label {label} must be a quoted string"));
        }
        let (value, after) = quoted(value_text)?;
        if labels.iter().any(|(n, _)| *n == label) {
            return Err(format!("duplicate label {label}"));
        }
        labels.push((label, value));
        rest = after.trim_start_matches([' ', '\t']);
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} in the labels of \"{}\"", s.trim_end()));
        }
    }
}

/// A float as the formats write it: decimal, `NaN`, `+Inf`, `-Inf` (any case for the text format).
fn float(s: &str) -> Result<f64, String> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Ok(f64::NAN),
        "+inf" | "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => {
            if s.contains(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_')))
                || s.contains('_')
            {
                return Err(format!("invalid value \"{s}\""));
            }
            s.parse::<f64>().map_err(|_| format!("invalid value \"{s}\""))
        }
    }
}

fn timestamp(s: &str, format: Format) -> Result<i64, String> {
    match format {
        Format::Text => s.parse::<i64>().map_err(|_| format!("invalid timestamp \"{s}\" (milliseconds expected)")),
        Format::OpenMetrics => {
            let secs = float(s).map_err(|_| format!("invalid timestamp \"{s}\" (seconds expected)"))?;
            if !secs.is_finite() {
                return Err(format!("invalid timestamp \"{s}\""));
            }
            Ok((secs * 1000.0).round() as i64)
        }
    }
}

fn parse_sample(line: &str, format: Format) -> Result<Sample, String> {
    let (mut name, rest) = if line.starts_with('{') {
        (None, line)
    } else {
        let (n, r) = metric_name_token(line)?;
        (Some(n), r)
    };
    let (labels, rest) = if rest.starts_with('{') {
        let (labels, inside, r) = label_set(rest)?;
        if let Some(inside) = inside {
            if name.is_some() {
                return Err("metric name given twice".into());
            }
            name = Some(inside);
        }
        (labels, r)
    } else {
        (Vec::new(), rest)
    };
    let name = name.ok_or("sample without a metric name")?;
    // Value, optional timestamp, optional exemplar (OpenMetrics).
    let (main, exemplar) = match rest.split_once(" # ") {
        Some((m, e)) if format == Format::OpenMetrics => (m, Some(e)),
        _ => (rest, None),
    };
    if !main.starts_with([' ', '\t']) {
        return Err(format!("expected a space before the value of {name}"));
    }
    let mut fields = main.split([' ', '\t']).filter(|f| !f.is_empty());
    let value = float(fields.next().ok_or_else(|| format!("sample {name} has no value"))?)?;
    let timestamp_ms = fields.next().map(|t| timestamp(t, format)).transpose()?;
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected \"{extra}\" after the timestamp"));
    }
    let exemplar = exemplar
        .map(|e| -> Result<Exemplar, String> {
            let (labels, inside, rest) = label_set(e.trim_start())?;
            if inside.is_some() {
                return Err("exemplar labels cannot name a metric".into());
            }
            let mut fields = rest.split(' ').filter(|f| !f.is_empty());
            let value = float(fields.next().ok_or("exemplar without a value")?)?;
            let timestamp_ms = fields.next().map(|t| timestamp(t, Format::OpenMetrics)).transpose()?;
            Ok(Exemplar { labels, value, timestamp_ms })
        })
        .transpose()?;
    Ok(Sample { name, labels, value, timestamp_ms, exemplar })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Vec<Family> {
        parse(s.as_bytes(), Format::Text).unwrap()
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn text_families_with_help_type_and_escapes() {
        let f = text(concat!(
            "# HELP http_requests_total The total \\\\ number\\nof requests.\n",
            "# TYPE http_requests_total counter\n",
            "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n",
            "http_requests_total{method=\"post\",code=\"400\",} 3 1395066363000\n",
            "# a free comment\n",
            "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n",
            "metric_without_timestamp_and_labels 12.47\n",
            "something_weird{problem=\"division by zero\"} +Inf -3982045\n",
        ));
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].name, "http_requests_total");
        assert_eq!(f[0].kind, Kind::Counter);
        assert_eq!(f[0].help.as_deref(), Some("The total \\ number\nof requests."));
        assert_eq!(f[0].samples[1].labels, l(&[("method", "post"), ("code", "400")]));
        assert_eq!(f[0].samples[0].timestamp_ms, Some(1395066363000));
        assert_eq!(f[1].kind, Kind::Unknown);
        assert_eq!(
            f[1].samples[0].labels,
            l(&[("path", "C:\\DIR\\FILE.TXT"), ("error", "Cannot find file:\n\"FILE.TXT\"")])
        );
        assert_eq!(f[3].samples[0].value, f64::INFINITY);
        assert_eq!(f[3].samples[0].timestamp_ms, Some(-3982045));
    }

    #[test]
    fn commas_and_braces_inside_values_are_values() {
        let f = text("m{a=\"x,y\",b=\"}{\",c=\"say \\\"hi\\\"\"} 1\n");
        assert_eq!(f[0].samples[0].labels, l(&[("a", "x,y"), ("b", "}{"), ("c", "say \"hi\"")]));
    }

    #[test]
    fn histograms_and_summaries_gather_their_suffixed_samples() {
        let f = text(concat!(
            "# TYPE latency histogram\n",
            "latency_bucket{le=\"0.1\"} 3\n",
            "latency_bucket{le=\"+Inf\"} 5\n",
            "latency_sum 1.5\n",
            "latency_count 5\n",
            "# TYPE rpc summary\n",
            "rpc{quantile=\"0.5\"} 0.2\n",
            "rpc_sum 10\n",
            "rpc_count 40\n",
        ));
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].kind, f[0].samples.len()), (Kind::Histogram, 4));
        assert_eq!((f[1].kind, f[1].samples.len()), (Kind::Summary, 3));
    }

    #[test]
    fn special_values_parse() {
        let f = text("a NaN\nb -Inf\nc +inf\nd 1e-3\n");
        assert!(f[0].samples[0].value.is_nan());
        assert_eq!(f[1].samples[0].value, f64::NEG_INFINITY);
        assert_eq!(f[2].samples[0].value, f64::INFINITY);
        assert_eq!(f[3].samples[0].value, 0.001);
    }

    #[test]
    fn quoted_utf8_names() {
        let f = text("# TYPE \"my.metric\" gauge\n{\"my.metric\",\"a.b\"=\"x\"} 1\n");
        assert_eq!(f[0].name, "my.metric");
        assert_eq!(f[0].kind, Kind::Gauge);
        assert_eq!(f[0].samples[0].labels, l(&[("a.b", "x")]));
    }

    #[test]
    fn openmetrics_counters_units_timestamps_and_exemplars() {
        let body = concat!(
            "# TYPE acme_http_router_request_seconds summary\n",
            "# UNIT acme_http_router_request_seconds seconds\n",
            "# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n",
            "acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n",
            "acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n",
            "acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n",
            "# TYPE foo counter\n",
            "foo_total 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n",
            "foo_created 1520430000.123\n",
            "# EOF\n",
        );
        let f = parse(body.as_bytes(), Format::OpenMetrics).unwrap();
        assert_eq!(f[0].unit.as_deref(), Some("seconds"));
        assert_eq!(f[0].samples.len(), 3);
        let foo = &f[1];
        assert_eq!((foo.name.as_str(), foo.kind, foo.samples.len()), ("foo", Kind::Counter, 2));
        assert_eq!(foo.samples[0].timestamp_ms, Some(1520879607789));
        let ex = foo.samples[0].exemplar.as_ref().unwrap();
        assert_eq!((ex.labels.clone(), ex.value), (l(&[("trace_id", "KOO5S4vxi0o")]), 0.67));
    }

    #[test]
    fn errors_name_the_line() {
        let bad = [
            ("a{b=\"c\" 1\n", 1, "expected , or }"),
            ("a{b=\"c\",b=\"d\"} 1\n", 1, "duplicate label b"),
            ("ok 1\na{b=c} 1\n", 2, "the value of label b must be a quoted string"),
            ("a 1\na 2\nb 3\na 4\n", 4, "apart from the rest"),
            ("a one\n", 1, "invalid value"),
            ("# TYPE a counter\n# TYPE a gauge\n", 2, "second TYPE"),
            ("# TYPE a wibble\n", 1, "unknown metric type"),
            ("a 1 2 3\n", 1, "unexpected"),
            ("9a 1\n", 1, "invalid metric name"),
            ("a{b=\"unterminated} 1\n", 1, "unterminated"),
        ];
        for (body, line, msg) in bad {
            let e = parse(body.as_bytes(), Format::Text).unwrap_err();
            assert_eq!(e.line, line, "{body:?}: {e}");
            assert!(e.message.contains(msg), "{body:?}: {e}");
        }
        let e = parse(b"ok 1\n\xff\xfe 2\n", Format::Text).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "invalid UTF-8"));
        let e = parse(b"# TYPE a gauge\na 1\n", Format::OpenMetrics).unwrap_err();
        assert!(e.message.contains("# EOF"), "{e}");
        let e = parse(b"# TYPE a counter\na 1\n# EOF\n", Format::OpenMetrics).unwrap_err();
        assert!(e.message.contains("_total"), "{e}");
        let e = parse(b"a 1\n# EOF\nb 2\n", Format::OpenMetrics).unwrap_err();
        assert!(e.message.contains("after # EOF"), "{e}");
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let good = b"# TYPE h histogram\nh_bucket{le=\"1\",x=\"a\\\"b\"} 1 5\nh_count 1\nh_sum 2\n# EOF\n".to_vec();
        for _ in 0..50_000 {
            let mut d = good.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % d.len();
                d[i] = (seed >> 32) as u8;
            }
            let _ = parse(&d, Format::Text);
            let _ = parse(&d, Format::OpenMetrics);
        }
    }
}
