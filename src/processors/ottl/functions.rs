//! The converters of OTTL-style expressions (`ParseJSON`, `Concat`, `Int`, `Time`, …): their
//! arguments are checked when a condition or statement is compiled (a literal pattern or format is
//! compiled then, once), and they are evaluated on values as the collector's converters are.
//! A converter that fails at run time (a value of the wrong type, JSON that does not parse) gives
//! an error for the statement's `error_mode`; one the collector answers with nil gives nil.

use super::expr::{Expr, Item, SyntaxError, Value, eval};
use chrono::format::{Item as TimeItem, Parsed, StrftimeItems};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use regex::Regex;
use sha2::Digest;
use std::fmt::Write;

/// The converters this module knows, for messages.
pub const NAMES: &[&str] = &[
    "Concat",
    "Double",
    "ExtractPatterns",
    "Int",
    "Len",
    "ParseJSON",
    "SHA256",
    "Split",
    "String",
    "Substring",
    "Time",
    "ToLowerCase",
    "ToUpperCase",
    "Unix",
    "UnixMicro",
    "UnixMilli",
    "UnixNano",
    "UnixSeconds",
];

/// A converter, with what was compiled of its literal arguments.
#[derive(Debug, Clone)]
pub enum Func {
    ParseJson,
    ExtractPatterns(Regex),
    Concat,
    Split,
    Substring,
    Len,
    ToLowerCase,
    ToUpperCase,
    Sha256,
    Int,
    Double,
    String,
    /// The format, translated to chrono's directives.
    Time(Vec<TimeItem<'static>>),
    UnixNano,
    UnixMicro,
    UnixMilli,
    UnixSeconds,
    Unix,
}

/// Compiles a call of converter `name`, or None if there is no such converter.
pub fn compile(name: &str, mut args: Vec<Expr>, column: usize) -> Option<Result<Expr, SyntaxError>> {
    let (min, max) = match name {
        "ParseJSON" | "Len" | "ToLowerCase" | "ToUpperCase" | "SHA256" | "Int" | "Double" | "String" | "UnixNano"
        | "UnixMicro" | "UnixMilli" | "UnixSeconds" => (1, 1),
        "ExtractPatterns" | "Concat" | "Split" | "Time" => (2, 2),
        "Substring" => (3, 3),
        "Unix" => (1, 2),
        _ => return None,
    };
    let err = |message: String| Some(Err(SyntaxError { column, message }));
    if args.len() < min || args.len() > max {
        let want = if min == max { format!("{min} argument(s)") } else { format!("{min} or {max} arguments") };
        return err(format!("{name} takes {want}, got {}", args.len()));
    }
    let literal = |i: usize| match args.get(i) {
        Some(Expr::Literal(Value::Str(s))) => Some(s.clone()),
        _ => None,
    };
    let func = match name {
        "ParseJSON" => Func::ParseJson,
        "ExtractPatterns" => {
            let Some(pattern) = literal(1) else {
                return err("ExtractPatterns' pattern must be a string literal".into());
            };
            let re = match Regex::new(&pattern) {
                Ok(re) => re,
                Err(e) => return err(format!("invalid regular expression \"{pattern}\": {e}")),
            };
            if re.capture_names().flatten().next().is_none() {
                return err(format!(
                    "ExtractPatterns' pattern \"{pattern}\" has no named capture group, such as (?P<name>…)"
                ));
            }
            Func::ExtractPatterns(re)
        }
        "Concat" => {
            if !matches!(args[0], Expr::List(_) | Expr::Field(_) | Expr::Call(..)) {
                return err("Concat's first argument must be a list, such as [a, \"-\", b]".into());
            }
            Func::Concat
        }
        "Split" => Func::Split,
        "Substring" => Func::Substring,
        "Len" => Func::Len,
        "ToLowerCase" => Func::ToLowerCase,
        "ToUpperCase" => Func::ToUpperCase,
        "SHA256" => Func::Sha256,
        "Int" => Func::Int,
        "Double" => Func::Double,
        "String" => Func::String,
        "Time" => {
            let Some(format) = literal(1) else {
                return err("Time's format must be a string literal, such as \"%Y-%m-%d\"".into());
            };
            match time_format(&format) {
                Ok(items) => Func::Time(items),
                Err(e) => return err(e),
            }
        }
        "UnixNano" => Func::UnixNano,
        "UnixMicro" => Func::UnixMicro,
        "UnixMilli" => Func::UnixMilli,
        "UnixSeconds" => Func::UnixSeconds,
        _ => Func::Unix,
    };
    if matches!(func, Func::Time(_)) {
        args.truncate(1);
    }
    Some(Ok(Expr::Call(func, args)))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Double(_) => "double",
        Value::Str(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Map(_) => "map",
        Value::List(_) => "slice",
        Value::Time(_) => "time",
    }
}

fn wrong(func: &str, want: &str, got: &Value) -> String {
    format!("{func}: expected {want} but got {}", type_name(got))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A value as a string, as the collector's string-like arguments read it: numbers and bools
/// formatted, bytes as hex, maps and lists as JSON, a time as RFC 3339; nil is None.
pub fn string_like(v: &Value) -> Option<String> {
    Some(match v {
        Value::Nil => return None,
        Value::Str(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Bytes(b) => hex(b),
        Value::Map(_) | Value::List(_) => to_json(&to_any(v.clone())).to_string(),
        Value::Time(t) => rfc3339(*t),
    })
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A value as an OTLP value (nil is an empty value).
pub fn to_any(v: Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::Nil => None,
        Value::Bool(b) => Some(V::BoolValue(b)),
        Value::Int(i) => Some(V::IntValue(i)),
        Value::Double(d) => Some(V::DoubleValue(d)),
        Value::Str(s) => Some(V::StringValue(s)),
        Value::Bytes(b) => Some(V::BytesValue(b)),
        Value::Map(values) => Some(V::KvlistValue(KeyValueList { values })),
        Value::List(values) => Some(V::ArrayValue(ArrayValue { values })),
        Value::Time(t) => Some(V::StringValue(rfc3339(t))),
    };
    AnyValue { value }
}

fn to_json(v: &AnyValue) -> serde_json::Value {
    use any_value::Value as V;
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(V::StringValue(s)) => J::String(s.clone()),
        Some(V::BoolValue(b)) => J::Bool(*b),
        Some(V::IntValue(i)) => J::from(*i),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Some(V::BytesValue(b)) => J::String(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)),
        Some(V::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(V::KvlistValue(m)) => {
            J::Object(m.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(J::Null, to_json))).collect())
        }
        #[allow(unreachable_patterns)]
        Some(_) => J::Null,
    }
}

/// JSON as an OTLP value, as the collector's ParseJSON maps it: every number is a double.
fn from_json(j: serde_json::Value) -> AnyValue {
    use any_value::Value as V;
    use serde_json::Value as J;
    let value = match j {
        J::Null => None,
        J::Bool(b) => Some(V::BoolValue(b)),
        J::Number(n) => Some(V::DoubleValue(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Some(V::StringValue(s)),
        J::Array(a) => Some(V::ArrayValue(ArrayValue { values: a.into_iter().map(from_json).collect() })),
        J::Object(o) => Some(V::KvlistValue(KeyValueList {
            values: o
                .into_iter()
                .map(|(key, v)| KeyValue { key, value: Some(from_json(v)), ..Default::default() })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// Translates the collector's strptime-like directives into chrono's, checking them.
fn time_format(format: &str) -> Result<Vec<TimeItem<'static>>, String> {
    if format.is_empty() {
        return Err("Time's format is empty".into());
    }
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let d = chars.next().ok_or_else(|| format!("Time's format \"{format}\" ends with a lone %"))?;
        out.push_str(match d {
            'Y' => "%Y",
            'y' => "%y",
            'm' | 'o' | 'q' => "%m",
            'b' | 'h' => "%b",
            'B' => "%B",
            'd' | 'g' => "%d",
            'e' => "%e",
            'a' => "%a",
            'A' => "%A",
            'H' => "%H",
            'I' => "%I",
            'l' => "%l",
            'p' | 'P' => "%p",
            'M' => "%M",
            'S' => "%S",
            'L' => "%3f",
            'f' => "%6f",
            's' => "%9f",
            'z' => "%z",
            'Z' => "%Z",
            'i' => "%#z",
            'j' => "%:z",
            'k' => "%::z",
            'D' | 'x' => "%m/%d/%y",
            'F' => "%Y-%m-%d",
            'T' | 'X' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            'R' => "%H:%M",
            'c' => "%a %b %d %H:%M:%S %Y",
            'n' => "\n",
            't' => "\t",
            '%' => "%%",
            other => return Err(format!("Time's format \"{format}\" has an unknown directive %{other}")),
        });
    }
    let items = StrftimeItems::new(&out).parse_to_owned().map_err(|e| format!("Time's format \"{format}\": {e}"))?;
    Ok(items)
}

fn parse_time(s: &str, items: &[TimeItem<'static>]) -> Result<i64, String> {
    if s.is_empty() {
        return Err("Time: the time is an empty string".into());
    }
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, items.iter())
        .map_err(|e| format!("Time: \"{s}\" does not follow the format: {e}"))?;
    let date = parsed.to_naive_date().map_err(|e| format!("Time: \"{s}\" has no whole date: {e}"))?;
    let time = match parsed.hour_div_12() {
        Some(_) => parsed.to_naive_time().map_err(|e| format!("Time: \"{s}\": {e}"))?,
        None => chrono::NaiveTime::MIN,
    };
    let utc = chrono::NaiveDateTime::new(date, time).and_utc();
    let offset = i64::from(parsed.offset().unwrap_or(0));
    utc.timestamp_nanos_opt()
        .and_then(|n| n.checked_sub(offset * 1_000_000_000))
        .ok_or_else(|| format!("Time: \"{s}\" is out of range"))
}

fn want_str(func: &str, v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(wrong(func, "a string", &other)),
    }
}

fn want_int(func: &str, v: Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        other => Err(wrong(func, "an int", &other)),
    }
}

fn want_time(func: &str, v: Value) -> Result<i64, String> {
    match v {
        Value::Time(t) => Ok(t),
        other => Err(wrong(func, "a time", &other)),
    }
}

/// Concat's pieces: a nil is `<nil>`; maps and lists are left out, as the collector documents.
fn concat_piece(v: &Value, out: &mut String, first: &mut bool, delimiter: &str) {
    if matches!(v, Value::Map(_) | Value::List(_)) {
        return;
    }
    if !*first {
        out.push_str(delimiter);
    }
    *first = false;
    match v {
        Value::Str(s) => out.push_str(s),
        Value::Nil => out.push_str("<nil>"),
        other => out.push_str(&string_like(other).unwrap_or_default()),
    }
}

/// Evaluates converter `f` on `args` for `item`.
pub fn call(f: &Func, args: &[Expr], item: &dyn Item) -> Result<Value, String> {
    let arg = |i: usize| match args.get(i) {
        Some(e) => eval(e, item),
        None => Ok(Value::Nil),
    };
    Ok(match f {
        Func::ParseJson => {
            let s = want_str("ParseJSON", arg(0)?)?;
            match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(j @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
                    super::items::value(Some(&from_json(j)))
                }
                Ok(_) => return Err("ParseJSON: the JSON is neither an object nor an array".into()),
                Err(e) => return Err(format!("ParseJSON: {e}")),
            }
        }
        Func::ExtractPatterns(re) => {
            let s = want_str("ExtractPatterns", arg(0)?)?;
            let mut out = Vec::new();
            if let Some(caps) = re.captures(&s) {
                for (i, name) in re.capture_names().enumerate() {
                    if let Some(name) = name {
                        let v = caps.get(i).map_or("", |m| m.as_str());
                        out.push(KeyValue {
                            key: name.to_string(),
                            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.to_string())) }),
                            ..Default::default()
                        });
                    }
                }
            }
            Value::Map(out)
        }
        Func::Concat => {
            let delimiter = want_str("Concat", arg(1)?)?;
            let (mut out, mut first) = (String::new(), true);
            match &args[0] {
                Expr::List(items) => {
                    for e in items {
                        concat_piece(&eval(e, item)?, &mut out, &mut first, &delimiter);
                    }
                }
                other => match eval(other, item)? {
                    Value::List(items) => {
                        for a in &items {
                            concat_piece(&super::items::value(Some(a)), &mut out, &mut first, &delimiter);
                        }
                    }
                    v => return Err(wrong("Concat", "a list", &v)),
                },
            }
            Value::Str(out)
        }
        Func::Split => {
            let s = want_str("Split", arg(0)?)?;
            let d = want_str("Split", arg(1)?)?;
            let piece = |p: &str| AnyValue { value: Some(any_value::Value::StringValue(p.to_string())) };
            let values: Vec<AnyValue> = if d.is_empty() {
                s.char_indices().map(|(i, c)| piece(&s[i..i + c.len_utf8()])).collect()
            } else {
                s.split(d.as_str()).map(piece).collect()
            };
            Value::List(values)
        }
        Func::Substring => {
            let s = want_str("Substring", arg(0)?)?;
            let start = want_int("Substring", arg(1)?)?;
            let length = want_int("Substring", arg(2)?)?;
            if start < 0 {
                return Err(format!("Substring: invalid start {start}"));
            }
            if length <= 0 {
                return Err(format!("Substring: invalid length {length}"));
            }
            let end = start.checked_add(length).filter(|e| *e as u64 <= s.len() as u64).ok_or_else(|| {
                format!("Substring: start {start} and length {length} go past the string's {} bytes", s.len())
            })?;
            Value::Str(String::from_utf8_lossy(&s.as_bytes()[start as usize..end as usize]).into_owned())
        }
        Func::Len => match arg(0)? {
            Value::Str(s) => Value::Int(s.len() as i64),
            Value::List(l) => Value::Int(l.len() as i64),
            Value::Map(m) => Value::Int(m.len() as i64),
            other => return Err(wrong("Len", "a string, slice or map", &other)),
        },
        Func::ToLowerCase => Value::Str(want_str("ToLowerCase", arg(0)?)?.to_lowercase()),
        Func::ToUpperCase => Value::Str(want_str("ToUpperCase", arg(0)?)?.to_uppercase()),
        Func::Sha256 => Value::Str(hex(&sha2::Sha256::digest(want_str("SHA256", arg(0)?)?.as_bytes()))),
        Func::Int => match arg(0)? {
            Value::Int(i) => Value::Int(i),
            Value::Double(d) => Value::Int(d.trunc() as i64),
            Value::Bool(b) => Value::Int(i64::from(b)),
            Value::Str(s) => s.parse::<i64>().map_or(Value::Nil, Value::Int),
            _ => Value::Nil,
        },
        Func::Double => match arg(0)? {
            Value::Double(d) => Value::Double(d),
            Value::Int(i) => Value::Double(i as f64),
            Value::Bool(b) => Value::Double(if b { 1.0 } else { 0.0 }),
            Value::Str(s) => s.parse::<f64>().map_or(Value::Nil, Value::Double),
            _ => Value::Nil,
        },
        Func::String => string_like(&arg(0)?).map_or(Value::Nil, Value::Str),
        Func::Time(items) => Value::Time(parse_time(&want_str("Time", arg(0)?)?, items)?),
        Func::UnixNano => Value::Int(want_time("UnixNano", arg(0)?)?),
        Func::UnixMicro => Value::Int(want_time("UnixMicro", arg(0)?)?.div_euclid(1_000)),
        Func::UnixMilli => Value::Int(want_time("UnixMilli", arg(0)?)?.div_euclid(1_000_000)),
        Func::UnixSeconds => Value::Int(want_time("UnixSeconds", arg(0)?)?.div_euclid(1_000_000_000)),
        Func::Unix => {
            let seconds = want_int("Unix", arg(0)?)?;
            let nanos = if args.len() > 1 { want_int("Unix", arg(1)?)? } else { 0 };
            seconds
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(nanos))
                .map(Value::Time)
                .ok_or_else(|| format!("Unix: {seconds} s and {nanos} ns are out of range"))?
        }
    })
}
