//! The converters of OTTL-style expressions (`ParseJSON`, `Concat`, `Int`, `Time`, …): their
//! arguments are checked when a condition or statement is compiled (a literal pattern or format is
//! compiled then, once), and they are evaluated on values as the collector's converters are.
//! A converter that fails at run time (a value of the wrong type, JSON that does not parse) gives
//! an error for the statement's `error_mode`; one the collector answers with nil gives nil.

use super::expr::{Expr, Item, SyntaxError, Value, eval};
use chrono::format::{Item as TimeItem, Parsed};
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

fn wrong(func: &str, want: &str, got: &Value) -> String {
    format!("{func}: expected {want} but got {}", got.type_name())
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

/// The collector's strptime directives as chrono items (shared with filelog's time parser).
fn time_format(format: &str) -> Result<Vec<TimeItem<'static>>, String> {
    crate::timefmt::strptime(format).map_err(|e| format!("Time's format {e}"))
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

#[cfg(test)]
mod tests {
    use super::super::expr::{Context, compile};
    use super::super::items::{LogItem, Origin};
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(to_any(v)), ..Default::default() }
    }

    fn log() -> LogRecord {
        LogRecord {
            body: Some(to_any(Value::Str(r#"{"user":"ann","n":2,"tags":["a","b"],"ok":true,"x":null}"#.into()))),
            severity_text: "Info".into(),
            attributes: vec![
                kv("s", Value::Str("Hello World".into())),
                kv("empty", Value::Str(String::new())),
                kv("i", Value::Int(42)),
                kv("d", Value::Double(2.75)),
                kv("b", Value::Bool(true)),
                kv("bytes", Value::Bytes(vec![0xde, 0xad])),
                kv("list", Value::List(vec![to_any(Value::Str("x".into())), to_any(Value::Int(1))])),
                kv("map", Value::Map(vec![kv("k", Value::Str("v".into()))])),
                kv("line", Value::Str("GIT_SHA=abc123 user=bob".into())),
                kv("when", Value::Str("2023-02-04 10:20:30".into())),
            ],
            ..Default::default()
        }
    }

    /// Evaluates each expression on the log and checks its value or the start of its error.
    fn table(cases: &[(&str, Result<Value, &str>)]) {
        let record = log();
        let item = LogItem { log: &record, origin: Origin { resource: None, scope: None } };
        for (src, want) in cases {
            let e = compile(src, Context::LogRecord).unwrap_or_else(|e| panic!("{src}: {e}"));
            match (eval(&e, &item), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{src}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{src}: {got}"),
                (got, want) => panic!("{src}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Each source must fail to compile with a message containing the text.
    fn bad(cases: &[(&str, &str)]) {
        for (src, want) in cases {
            let e = compile(src, Context::LogRecord).unwrap_err();
            assert!(e.message.contains(want), "{src}: {e}");
        }
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn strs(v: &[&str]) -> Value {
        Value::List(v.iter().map(|x| to_any(s(x))).collect())
    }

    #[test]
    fn parse_json() {
        let Ok(Value::Map(m)) = ({
            let record = log();
            let item = LogItem { log: &record, origin: Origin { resource: None, scope: None } };
            eval(&compile("ParseJSON(body)", Context::LogRecord).unwrap(), &item)
        }) else {
            panic!("not a map")
        };
        let keys: Vec<&str> = m.iter().map(|k| k.key.as_str()).collect();
        // Keys come in sorted order (the collector's come in Go map order, which is random).
        assert_eq!(keys, ["n", "ok", "tags", "user", "x"]);
        assert_eq!(m[0].value, Some(to_any(Value::Double(2.0))), "JSON numbers are doubles");
        assert_eq!(m[4].value, Some(AnyValue { value: None }), "null is an empty value");
        table(&[
            (r#"ParseJSON("[1, \"a\"]")"#, Ok(Value::List(vec![to_any(Value::Double(1.0)), to_any(s("a"))]))),
            (r#"ParseJSON("{}")"#, Ok(Value::Map(vec![]))),
            (r#"ParseJSON("{\"a\":{\"b\":1}}") == ParseJSON("{\"a\":{\"b\":1}}")"#, Ok(Value::Bool(true))),
            (r#"ParseJSON("{oops")"#, Err("ParseJSON: ")),
            (r#"ParseJSON("")"#, Err("ParseJSON: ")),
            (r#"ParseJSON("3")"#, Err("neither an object nor an array")),
            (r#"ParseJSON(attributes["missing"])"#, Err("expected a string but got nil")),
            (r#"ParseJSON(attributes["i"])"#, Err("expected a string but got int")),
        ]);
        bad(&[("ParseJSON()", "ParseJSON takes 1 argument(s), got 0")]);
    }

    #[test]
    fn extract_patterns() {
        table(&[
            (
                r#"ExtractPatterns(attributes["line"], "GIT_SHA=(?P<sha>\\w+) user=(?P<user>\\w+)")"#,
                Ok(Value::Map(vec![kv("sha", s("abc123")), kv("user", s("bob"))])),
            ),
            (r#"ExtractPatterns(attributes["line"], "nomatch(?P<x>\\d+)")"#, Ok(Value::Map(vec![]))),
            (
                r#"ExtractPatterns(attributes["line"], "(?P<a>GIT)|(?P<b>zzz)")"#,
                Ok(Value::Map(vec![kv("a", s("GIT")), kv("b", s(""))])),
            ),
            (r#"ExtractPatterns(attributes["empty"], "(?P<x>.*)")"#, Ok(Value::Map(vec![kv("x", s(""))]))),
            (r#"ExtractPatterns(attributes["missing"], "(?P<x>.*)")"#, Err("expected a string but got nil")),
            (r#"ExtractPatterns(attributes["i"], "(?P<x>.*)")"#, Err("expected a string but got int")),
        ]);
        bad(&[
            (r#"ExtractPatterns(body, "(?P<x>")"#, "invalid regular expression"),
            (r#"ExtractPatterns(body, "(\\d+)")"#, "no named capture group"),
            (r#"ExtractPatterns(body, attributes["p"])"#, "must be a string literal"),
            (r#"ExtractPatterns(body)"#, "takes 2 argument(s), got 1"),
        ]);
    }

    #[test]
    fn concat() {
        table(&[
            (
                r#"Concat([attributes["s"], "x", attributes["i"], attributes["d"], attributes["b"]], "-")"#,
                Ok(s("Hello World-x-42-2.75-true")),
            ),
            (r#"Concat(["a", attributes["missing"]], ",")"#, Ok(s("a,<nil>"))),
            (r#"Concat(["a", attributes["map"], attributes["list"], "b"], "")"#, Ok(s("ab"))),
            (r#"Concat([], "-")"#, Ok(s(""))),
            (r#"Concat(["a", attributes["bytes"]], ":")"#, Ok(s("a:dead"))),
            (r#"Concat(attributes["list"], "+")"#, Ok(s("x+1"))),
            (r#"Concat(Split("a b", " "), "_")"#, Ok(s("a_b"))),
            (r#"Concat(attributes["s"], "-")"#, Err("Concat: expected a list but got string")),
            (r#"Concat(["a"], attributes["missing"])"#, Err("Concat: expected a string but got nil")),
        ]);
        bad(&[(r#"Concat("a", "b")"#, "must be a list"), (r#"Concat(["a"])"#, "takes 2 argument(s)")]);
    }

    #[test]
    fn split() {
        table(&[
            (r#"Split("a,b,,c", ",")"#, Ok(strs(&["a", "b", "", "c"]))),
            (r#"Split(attributes["s"], " ")"#, Ok(strs(&["Hello", "World"]))),
            (r#"Split("abc", "")"#, Ok(strs(&["a", "b", "c"]))),
            (r#"Split("", ",")"#, Ok(strs(&[""]))),
            (r#"Split("no delimiter", ";")"#, Ok(strs(&["no delimiter"]))),
            (r#"Split(attributes["missing"], ",")"#, Err("Split: expected a string but got nil")),
            (r#"Split(attributes["i"], ",")"#, Err("Split: expected a string but got int")),
        ]);
    }

    #[test]
    fn substring() {
        table(&[
            (r#"Substring("123456789", 0, 3)"#, Ok(s("123"))),
            (r#"Substring("123456789", 6, 3)"#, Ok(s("789"))),
            (r#"Substring(attributes["s"], 6, 5)"#, Ok(s("World"))),
            (r#"Substring("123", 1, 3)"#, Err("go past the string's 3 bytes")),
            (r#"Substring("123", -1, 2)"#, Err("invalid start -1")),
            (r#"Substring("123", 0, 0)"#, Err("invalid length 0")),
            (r#"Substring("123", 0, -2)"#, Err("invalid length -2")),
            (r#"Substring("", 0, 1)"#, Err("go past")),
            (r#"Substring(attributes["missing"], 0, 1)"#, Err("expected a string but got nil")),
            (r#"Substring(attributes["i"], 0, 1)"#, Err("expected a string but got int")),
            (r#"Substring("abc", "0", 1)"#, Err("expected an int but got string")),
        ]);
        bad(&[(r#"Substring("abc", 0)"#, "Substring takes 3 argument(s), got 2")]);
    }

    #[test]
    fn len() {
        table(&[
            (r#"Len(attributes["s"])"#, Ok(Value::Int(11))),
            (r#"Len("")"#, Ok(Value::Int(0))),
            (r#"Len("é")"#, Ok(Value::Int(2))),
            (r#"Len(attributes["list"])"#, Ok(Value::Int(2))),
            (r#"Len(attributes["map"])"#, Ok(Value::Int(1))),
            (r#"Len(attributes)"#, Ok(Value::Int(10))),
            (r#"Len(["a", "b", "c"])"#, Ok(Value::Int(3))),
            (r#"Len(attributes["i"])"#, Err("Len: expected a string, slice or map but got int")),
            (r#"Len(attributes["missing"])"#, Err("but got nil")),
            (r#"Len(attributes["s"]) > 10"#, Ok(Value::Bool(true))),
        ]);
    }

    #[test]
    fn case_and_hash() {
        table(&[
            (r#"ToLowerCase(attributes["s"])"#, Ok(s("hello world"))),
            (r#"ToUpperCase(attributes["s"])"#, Ok(s("HELLO WORLD"))),
            (r#"ToUpperCase("straße")"#, Ok(s("STRASSE"))),
            (r#"ToLowerCase("")"#, Ok(s(""))),
            (r#"ToLowerCase(attributes["missing"])"#, Err("ToLowerCase: expected a string but got nil")),
            (r#"ToUpperCase(attributes["i"])"#, Err("ToUpperCase: expected a string but got int")),
            (r#"SHA256("")"#, Ok(s("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))),
            (r#"SHA256("abc")"#, Ok(s("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))),
            (r#"SHA256(attributes["missing"])"#, Err("SHA256: expected a string but got nil")),
            (r#"SHA256(attributes["i"])"#, Err("SHA256: expected a string but got int")),
        ]);
        bad(&[("ToLowerCase()", "takes 1 argument(s), got 0"), ("Lowercase(body)", "unknown function Lowercase")]);
    }

    #[test]
    fn int_double_string() {
        table(&[
            (r#"Int("42")"#, Ok(Value::Int(42))),
            (r#"Int("-7")"#, Ok(Value::Int(-7))),
            (r#"Int("abc")"#, Ok(Value::Nil)),
            (r#"Int("2.0")"#, Ok(Value::Nil)),
            (r#"Int("")"#, Ok(Value::Nil)),
            (r#"Int(attributes["d"])"#, Ok(Value::Int(2))),
            (r#"Int(-2.9)"#, Ok(Value::Int(-2))),
            (r#"Int(attributes["b"])"#, Ok(Value::Int(1))),
            (r#"Int(attributes["i"])"#, Ok(Value::Int(42))),
            (r#"Int(attributes["missing"])"#, Ok(Value::Nil)),
            (r#"Int(attributes["map"])"#, Ok(Value::Nil)),
            (r#"Double("2.5")"#, Ok(Value::Double(2.5))),
            (r#"Double("x")"#, Ok(Value::Nil)),
            (r#"Double(attributes["i"])"#, Ok(Value::Double(42.0))),
            (r#"Double(false)"#, Ok(Value::Double(0.0))),
            (r#"Double(attributes["missing"])"#, Ok(Value::Nil)),
            (r#"String(attributes["i"])"#, Ok(s("42"))),
            (r#"String(attributes["d"])"#, Ok(s("2.75"))),
            (r#"String(2.0)"#, Ok(s("2"))),
            (r#"String(true)"#, Ok(s("true"))),
            (r#"String("")"#, Ok(s(""))),
            (r#"String(attributes["bytes"])"#, Ok(s("dead"))),
            (r#"String(attributes["map"])"#, Ok(s(r#"{"k":"v"}"#))),
            (r#"String(attributes["list"])"#, Ok(s(r#"["x",1]"#))),
            (r#"String(attributes["missing"])"#, Ok(Value::Nil)),
        ]);
    }

    #[test]
    fn is_match_reads_every_type_as_a_string() {
        table(&[
            (r#"IsMatch(attributes["i"], "^4\\d$")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(attributes["d"], "^2\\.75$")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(attributes["b"], "true")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(attributes["map"], "\"k\":\"v\"")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(attributes["missing"], ".*")"#, Ok(Value::Bool(false))),
            (r#"IsMatch(attributes["empty"], "^$")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(severity_text, "(?i)^info$")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(ToUpperCase(attributes["s"]), "^HELLO")"#, Ok(Value::Bool(true))),
            (r#"IsMatch(ToUpperCase(attributes["i"]), "4")"#, Err("ToUpperCase: expected a string")),
        ]);
        bad(&[(r#"IsMatch(body, "(")"#, "invalid regular expression")]);
    }

    #[test]
    fn time_and_unix() {
        // 2023-02-04T00:00:00Z
        let day = 1_675_468_800i64;
        table(&[
            (r#"UnixSeconds(Time("02/04/2023", "%m/%d/%Y"))"#, Ok(Value::Int(day))),
            (r#"UnixSeconds(Time(attributes["when"], "%Y-%m-%d %H:%M:%S"))"#, Ok(Value::Int(day + 37230))),
            (
                r#"UnixMilli(Time("2023-02-04T10:20:30.123+0100", "%Y-%m-%dT%H:%M:%S.%L%z"))"#,
                Ok(Value::Int((day + 37230 - 3600) * 1000 + 123)),
            ),
            (
                r#"UnixMicro(Time("2023-02-04 10:20:30.000042", "%F %T.%f"))"#,
                Ok(Value::Int((day + 37230) * 1_000_000 + 42)),
            ),
            (
                r#"UnixNano(Time("Feb 4, 2023 10:20:30 pm", "%b %d, %Y %I:%M:%S %p"))"#,
                Ok(Value::Int((day + 80430) * 1_000_000_000)),
            ),
            (
                r#"UnixSeconds(Time("2023-02-04 10:20:30 -07:00", "%Y-%m-%d %H:%M:%S %j"))"#,
                Ok(Value::Int(day + 37230 + 7 * 3600)),
            ),
            (r#"UnixSeconds(Time("2023-02-04 UTC", "%Y-%m-%d %Z"))"#, Ok(Value::Int(day))),
            (r#"Time("", "%Y")"#, Err("empty string")),
            (r#"Time("2023-13-01", "%Y-%m-%d")"#, Err("does not follow the format")),
            (r#"Time("yesterday", "%Y-%m-%d")"#, Err("does not follow the format")),
            (r#"Time(attributes["missing"], "%Y")"#, Err("Time: expected a string but got nil")),
            (r#"Time(attributes["i"], "%Y")"#, Err("Time: expected a string but got int")),
            (r#"UnixNano(Unix(1672527600))"#, Ok(Value::Int(1_672_527_600_000_000_000))),
            (r#"UnixMilli(Unix(1, 500000000))"#, Ok(Value::Int(1500))),
            (r#"UnixSeconds(Unix(-1, 500000000))"#, Ok(Value::Int(-1))),
            (r#"Unix(9223372036854775807)"#, Err("out of range")),
            (r#"Unix("1")"#, Err("Unix: expected an int but got string")),
            (r#"UnixNano(attributes["i"])"#, Err("UnixNano: expected a time but got int")),
            (r#"UnixSeconds(attributes["missing"])"#, Err("expected a time but got nil")),
            (r#"String(Unix(0))"#, Ok(s("1970-01-01T00:00:00Z"))),
        ]);
        bad(&[
            (r#"Time(body, "%Q")"#, "unknown directive %Q"),
            (r#"Time(body, "")"#, "format is empty"),
            (r#"Time(body, "%Y%")"#, "lone %"),
            (r#"Time(body, attributes["f"])"#, "must be a string literal"),
            (r#"Unix(1, 2, 3)"#, "Unix takes 1 or 2 arguments, got 3"),
            (r#"UnixNano()"#, "takes 1 argument(s), got 0"),
        ]);
    }

    #[test]
    fn lists_and_whole_maps_are_values() {
        table(&[
            (
                r#"["a", 1, true]"#,
                Ok(Value::List(vec![to_any(s("a")), to_any(Value::Int(1)), to_any(Value::Bool(true))])),
            ),
            (r#"[]"#, Ok(Value::List(vec![]))),
            (r#"IsMap(attributes)"#, Ok(Value::Bool(true))),
            (r#"IsMap(attributes["map"])"#, Ok(Value::Bool(true))),
            (r#"Len(resource.attributes)"#, Ok(Value::Int(0))),
        ]);
        bad(&[(r#"["a", "b""#, "expected , or ] in the list")]);
    }

    #[test]
    fn converters_work_in_every_context() {
        use super::super::items::{RequestItem, SpanItem};
        for (context, path) in [
            (Context::Span, "kind"),
            (Context::SpanEvent, "span.kind"),
            (Context::Metric, "type"),
            (Context::DataPoint, "metric.type"),
            (Context::LogRecord, "severity_number"),
            (Context::Resource, r#"attributes["x"]"#),
            (Context::Request, r#"request["x-tenant"]"#),
        ] {
            for src in [
                r#"IsMatch(ToLowerCase(Concat(["A", 1, Len("ab")], "")), "^a12$")"#.to_string(),
                format!(r#"IsMatch({path}, ".*") or true"#),
                format!(r#"Int(String({path})) == nil or IsInt(Int(String({path})))"#),
            ] {
                compile(&src, context).unwrap_or_else(|e| panic!("{} {src}: {e}", context.name()));
            }
        }
        let span = opentelemetry_proto::tonic::trace::v1::Span { kind: 2, ..Default::default() };
        let item = SpanItem { span: &span, origin: Origin { resource: None, scope: None } };
        let e = compile(r#"IsMatch(kind, "^2$") and Int(String(kind)) == SPAN_KIND_SERVER"#, Context::Span).unwrap();
        assert!(super::super::expr::matches(&e, &item));
        let headers = vec![("x-tenant".to_string(), "Acme".to_string())];
        let item = RequestItem { context: Some(&headers) };
        let e = compile(r#"ToLowerCase(request["X-Tenant"]) == "acme""#, Context::Request).unwrap();
        assert!(super::super::expr::matches(&e, &item));
        // A converter that fails in a condition is no match.
        let e = compile(r#"ToLowerCase(request["missing"]) == "acme" or true"#, Context::Request).unwrap();
        assert!(!super::super::expr::matches(&e, &item));
    }
}
