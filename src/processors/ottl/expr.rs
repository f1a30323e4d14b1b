//! OTTL-style conditions, parsed once and checked at start (a bad condition is a configuration
//! error naming its column), then evaluated without re-parsing. The language: paths
//! (`name`, `attributes["http.route"]`, `resource.attributes["service.name"]`, …), string, int,
//! float, bool and nil literals, enum names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`,
//! `SEVERITY_NUMBER_WARN`, `METRIC_DATA_TYPE_SUM`), comparisons (`==`, `!=`, `<`, `<=`, `>`,
//! `>=`), `and`, `or`, `not`, parentheses, list literals (`[a, b]`), the functions `IsMatch`,
//! `IsString`, `IsInt`, `IsDouble`, `IsBool`, `IsMap`, and the converters of `functions`.
//!
//! Comparison follows OTTL: values of different types are not equal (an int and a double compare
//! as numbers); ordering is defined for numbers and strings, otherwise it is false; `nil` equals
//! only a missing value.

use super::functions::{self, Func};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use regex::Regex;
use std::fmt;

/// A value a path or literal yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// A map (a kvlist value, a whole attribute map, what `ParseJSON` gives).
    Map(Vec<KeyValue>),
    /// A list (an array value, a list literal, what `Split` gives).
    List(Vec<AnyValue>),
    /// A point in time, in nanoseconds since the Unix epoch (what `Time` and `Unix` give).
    Time(i64),
}

impl Value {
    /// The name of its type, as the collector's errors give it.
    pub fn type_name(&self) -> &'static str {
        match self {
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
}

/// Which field of the item a path names. Resolved per context when the condition is compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Name,
    Kind,
    StatusCode,
    StatusMessage,
    TraceState,
    Duration,
    StartTime,
    EndTime,
    Time,
    ObservedTime,
    Attribute(String),
    ResourceAttribute(String),
    /// The whole attribute map of the item (`attributes` without a key).
    Attributes,
    /// The whole attribute map of the resource (`resource.attributes`).
    ResourceAttributes,
    ScopeName,
    ScopeVersion,
    Description,
    Unit,
    MetricType,
    ValueDouble,
    ValueInt,
    Body,
    SeverityNumber,
    SeverityText,
    /// The span of a span event, or the metric of a data point.
    ParentName,
    ParentAttribute(String),
    ParentKind,
    ParentMetricType,
    /// A value of the request's metadata (`request["X-Tenant"]`; names match without regard
    /// to case).
    Request(String),
}

/// Gives a field's value for the item being evaluated.
pub trait Item {
    fn get(&self, field: &Field) -> Value;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Literal(Value),
    Field(Field),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Cmp, Box<Expr>),
    IsMatch(Box<Expr>, Regex),
    IsType(Box<Expr>, &'static str),
    /// A list literal: `[a, b, …]`.
    List(Vec<Expr>),
    /// A converter with its arguments.
    Call(Func, Vec<Expr>),
}

/// A compile error: the column (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// The item kinds a condition can be written for, each with its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Span,
    SpanEvent,
    Metric,
    DataPoint,
    LogRecord,
    Resource,
    /// The request a batch came in with: its metadata (the routing connector's `request`).
    Request,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
            Context::LogRecord => "log",
            Context::Resource => "resource",
            Context::Request => "request",
        }
    }

    /// The plain paths of this context (attribute maps aside), for messages.
    fn paths(self) -> &'static [&'static str] {
        match self {
            Context::Span => &[
                "name",
                "kind",
                "status.code",
                "status.message",
                "trace_state",
                "duration",
                "start_time_unix_nano",
                "end_time_unix_nano",
                "attributes[\"…\"]",
            ],
            Context::SpanEvent => {
                &["name", "time_unix_nano", "attributes[\"…\"]", "span.name", "span.kind", "span.attributes[\"…\"]"]
            }
            Context::Metric => &["name", "description", "unit", "type"],
            Context::DataPoint => &[
                "attributes[\"…\"]",
                "value_double",
                "value_int",
                "time_unix_nano",
                "start_time_unix_nano",
                "metric.name",
                "metric.type",
                "metric.unit",
            ],
            Context::LogRecord => &[
                "body",
                "severity_number",
                "severity_text",
                "attributes[\"…\"]",
                "time_unix_nano",
                "observed_time_unix_nano",
            ],
            Context::Resource => &["attributes[\"…\"]"],
            Context::Request => &["request[\"…\"]"],
        }
    }

    /// The field a path names in this context.
    pub(super) fn field(self, parts: &[String], key: Option<String>) -> Option<Field> {
        let p: Vec<&str> = parts.iter().map(String::as_str).collect();
        use Context::*;
        Some(match (self, p.as_slice(), key) {
            (Request, ["request"], Some(k)) => Field::Request(k),
            (Request, _, _) => return None,
            (_, ["resource", "attributes"], Some(k)) => Field::ResourceAttribute(k),
            (_, ["resource", "attributes"], None) | (Resource, ["attributes"], None) => Field::ResourceAttributes,
            (Span | SpanEvent | DataPoint | LogRecord, ["attributes"], None) => Field::Attributes,
            (_, ["instrumentation_scope", "name"], None) => Field::ScopeName,
            (_, ["instrumentation_scope", "version"], None) => Field::ScopeVersion,
            (Resource, ["attributes"], Some(k)) => Field::ResourceAttribute(k),
            (Span | SpanEvent | DataPoint | LogRecord, ["attributes"], Some(k)) => Field::Attribute(k),
            (Span | SpanEvent | Metric, ["name"], None) => Field::Name,
            (Span, ["kind"], None) => Field::Kind,
            (Span, ["status", "code"], None) => Field::StatusCode,
            (Span, ["status", "message"], None) => Field::StatusMessage,
            (Span, ["trace_state"], None) => Field::TraceState,
            (Span, ["duration"], None) => Field::Duration,
            (Span | DataPoint, ["start_time_unix_nano"], None) => Field::StartTime,
            (Span, ["end_time_unix_nano"], None) => Field::EndTime,
            (SpanEvent | DataPoint | LogRecord, ["time_unix_nano"], None) => Field::Time,
            (LogRecord, ["observed_time_unix_nano"], None) => Field::ObservedTime,
            (Metric, ["description"], None) => Field::Description,
            (Metric, ["unit"], None) => Field::Unit,
            (Metric, ["type"], None) => Field::MetricType,
            (DataPoint, ["value_double"], None) => Field::ValueDouble,
            (DataPoint, ["value_int"], None) => Field::ValueInt,
            (DataPoint, ["metric", "name"], None) | (SpanEvent, ["span", "name"], None) => Field::ParentName,
            (DataPoint, ["metric", "unit"], None) => Field::Unit,
            (DataPoint, ["metric", "type"], None) => Field::ParentMetricType,
            (SpanEvent, ["span", "kind"], None) => Field::ParentKind,
            (SpanEvent, ["span", "attributes"], Some(k)) => Field::ParentAttribute(k),
            (LogRecord, ["body"], None) => Field::Body,
            (LogRecord, ["severity_number"], None) => Field::SeverityNumber,
            (LogRecord, ["severity_text"], None) => Field::SeverityText,
            _ => return None,
        })
    }
}

/// Enum names OTTL knows, as their integer values.
fn enum_value(name: &str) -> Option<i64> {
    Some(match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        "SEVERITY_NUMBER_TRACE" => 1,
        "SEVERITY_NUMBER_TRACE2" => 2,
        "SEVERITY_NUMBER_TRACE3" => 3,
        "SEVERITY_NUMBER_TRACE4" => 4,
        "SEVERITY_NUMBER_DEBUG" => 5,
        "SEVERITY_NUMBER_DEBUG2" => 6,
        "SEVERITY_NUMBER_DEBUG3" => 7,
        "SEVERITY_NUMBER_DEBUG4" => 8,
        "SEVERITY_NUMBER_INFO" => 9,
        "SEVERITY_NUMBER_INFO2" => 10,
        "SEVERITY_NUMBER_INFO3" => 11,
        "SEVERITY_NUMBER_INFO4" => 12,
        "SEVERITY_NUMBER_WARN" => 13,
        "SEVERITY_NUMBER_WARN2" => 14,
        "SEVERITY_NUMBER_WARN3" => 15,
        "SEVERITY_NUMBER_WARN4" => 16,
        "SEVERITY_NUMBER_ERROR" => 17,
        "SEVERITY_NUMBER_ERROR2" => 18,
        "SEVERITY_NUMBER_ERROR3" => 19,
        "SEVERITY_NUMBER_ERROR4" => 20,
        "SEVERITY_NUMBER_FATAL" => 21,
        "SEVERITY_NUMBER_FATAL2" => 22,
        "SEVERITY_NUMBER_FATAL3" => 23,
        "SEVERITY_NUMBER_FATAL4" => 24,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

pub(super) fn lex(src: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| SyntaxError { column, message };
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push((Tok::LParen, col));
                i += 1
            }
            ')' => {
                out.push((Tok::RParen, col));
                i += 1
            }
            '[' => {
                out.push((Tok::LBracket, col));
                i += 1
            }
            ']' => {
                out.push((Tok::RBracket, col));
                i += 1
            }
            ',' => {
                out.push((Tok::Comma, col));
                i += 1
            }
            '.' => {
                out.push((Tok::Dot, col));
                i += 1
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "==" => "==",
                    "!=" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    _ if c == '<' => "<",
                    _ if c == '>' => ">",
                    _ => return Err(err(col, format!("unexpected \"{c}\" (comparisons are ==, !=, <, <=, >, >=)"))),
                };
                out.push((Tok::Op(op), col));
                i += op.len();
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(col, "unterminated string".into())),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(&other) => s.push(other),
                                None => return Err(err(col, "unterminated string".into())),
                            }
                            i += 2;
                        }
                        Some(&other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), col));
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e' || chars[i] == 'E')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if text.contains(['.', 'e', 'E']) {
                    let f = text.parse::<f64>().map_err(|_| err(col, format!("invalid number \"{text}\"")))?;
                    out.push((Tok::Float(f), col));
                } else {
                    let n = text.parse::<i64>().map_err(|_| err(col, format!("invalid number \"{text}\"")))?;
                    out.push((Tok::Int(n), col));
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), col));
            }
            other => return Err(err(col, format!("unexpected \"{other}\""))),
        }
    }
    Ok(out)
}

pub(super) struct Parser {
    pub(super) toks: Vec<(Tok, usize)>,
    pub(super) pos: usize,
    pub(super) end: usize,
    pub(super) context: Context,
}

impl Parser {
    pub(super) fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    pub(super) fn column(&self) -> usize {
        self.toks.get(self.pos).map(|(_, c)| *c).unwrap_or(self.end)
    }

    pub(super) fn err<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError { column: self.column(), message: message.into() })
    }

    pub(super) fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    pub(super) fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    pub(super) fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SyntaxError> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, SyntaxError> {
        let left = self.value()?;
        let op = match self.peek() {
            Some(Tok::Op(op)) => *op,
            _ => return Ok(left),
        };
        self.pos += 1;
        let cmp = match op {
            "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            _ => Cmp::Ge,
        };
        let right = self.value()?;
        Ok(Expr::Compare(Box::new(left), cmp, Box::new(right)))
    }

    pub(super) fn value(&mut self) -> Result<Expr, SyntaxError> {
        let column = self.column();
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Literal(Value::Str(s))),
            Some(Tok::Int(n)) => Ok(Expr::Literal(Value::Int(n))),
            Some(Tok::Float(f)) => Ok(Expr::Literal(Value::Double(f))),
            Some(Tok::LBracket) => {
                let mut items = Vec::new();
                if self.peek() == Some(&Tok::RBracket) {
                    self.pos += 1;
                    return Ok(Expr::List(items));
                }
                loop {
                    items.push(self.or()?);
                    match self.next() {
                        Some(Tok::Comma) => continue,
                        Some(Tok::RBracket) => return Ok(Expr::List(items)),
                        _ => {
                            self.pos -= 1;
                            return self.err("expected , or ] in the list");
                        }
                    }
                }
            }
            Some(Tok::LParen) => {
                let e = self.or()?;
                if self.next() != Some(Tok::RParen) {
                    self.pos -= 1;
                    return self.err("expected )");
                }
                Ok(e)
            }
            Some(Tok::Ident(word)) => match word.as_str() {
                "true" => Ok(Expr::Literal(Value::Bool(true))),
                "false" => Ok(Expr::Literal(Value::Bool(false))),
                "nil" => Ok(Expr::Literal(Value::Nil)),
                w if self.peek() == Some(&Tok::LParen) => self.call(w.to_string(), column),
                w if w.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => match enum_value(w) {
                    Some(v) => Ok(Expr::Literal(Value::Int(v))),
                    None => Err(SyntaxError { column, message: format!("unknown enum {w}") }),
                },
                _ => self.path(word, column),
            },
            Some(other) => {
                Err(SyntaxError { column, message: format!("expected a value, found {}", describe(&other)) })
            }
            None => Err(SyntaxError { column, message: "expected a value, found the end".into() }),
        }
    }

    fn path(&mut self, first: String, column: usize) -> Result<Expr, SyntaxError> {
        let mut parts = vec![first];
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Ident(w)) => parts.push(w),
                _ => {
                    self.pos -= 1;
                    return self.err("expected a name after .");
                }
            }
        }
        let mut key = None;
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Str(k)) => key = Some(k),
                _ => {
                    self.pos -= 1;
                    return self.err("expected a quoted key inside [ ]");
                }
            }
            if self.next() != Some(Tok::RBracket) {
                self.pos -= 1;
                return self.err("expected ]");
            }
            if self.peek() == Some(&Tok::LBracket) {
                return self.err("nested keys are not supported");
            }
        }
        let written = match &key {
            Some(k) => format!("{}[\"{k}\"]", parts.join(".")),
            None => parts.join("."),
        };
        match self.context.field(&parts, key) {
            Some(f) => Ok(Expr::Field(f)),
            None => Err(SyntaxError {
                column,
                message: format!(
                    "unknown path {written} for a {} condition (known: {}, resource.attributes[\"…\"], instrumentation_scope.name, instrumentation_scope.version)",
                    self.context.name(),
                    self.context.paths().join(", ")
                ),
            }),
        }
    }

    fn call(&mut self, name: String, column: usize) -> Result<Expr, SyntaxError> {
        self.pos += 1; // (
        let mut args = Vec::new();
        if self.peek() != Some(&Tok::RParen) {
            loop {
                args.push(self.or()?);
                match self.next() {
                    Some(Tok::Comma) => continue,
                    Some(Tok::RParen) => break,
                    _ => {
                        self.pos -= 1;
                        return self.err("expected , or ) in the arguments");
                    }
                }
            }
        } else {
            self.pos += 1;
        }
        let arity = |n: usize| -> Result<(), SyntaxError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(SyntaxError { column, message: format!("{name} takes {n} argument(s), got {}", args.len()) })
            }
        };
        match name.as_str() {
            "IsMatch" => {
                arity(2)?;
                let Some(Expr::Literal(Value::Str(pattern))) = args.get(1) else {
                    return Err(SyntaxError { column, message: "IsMatch's pattern must be a string literal".into() });
                };
                let regex = Regex::new(pattern).map_err(|e| SyntaxError {
                    column,
                    message: format!("invalid regular expression \"{pattern}\": {e}"),
                })?;
                Ok(Expr::IsMatch(Box::new(args.swap_remove(0)), regex))
            }
            "IsString" | "IsInt" | "IsDouble" | "IsBool" | "IsMap" => {
                arity(1)?;
                let t = match name.as_str() {
                    "IsString" => "string",
                    "IsInt" => "int",
                    "IsDouble" => "double",
                    "IsBool" => "bool",
                    _ => "map",
                };
                Ok(Expr::IsType(Box::new(args.swap_remove(0)), t))
            }
            other => functions::compile(other, args, column).unwrap_or_else(|| {
                Err(SyntaxError {
                    column,
                    message: format!(
                        "unknown function {other} (known: IsMatch, IsString, IsInt, IsDouble, IsBool, IsMap, {})",
                        functions::NAMES.join(", ")
                    ),
                })
            }),
        }
    }
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(w) => format!("\"{w}\""),
        Tok::Str(s) => format!("the string \"{s}\""),
        Tok::Int(n) => n.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Op(o) => format!("\"{o}\""),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LBracket => "\"[\"".into(),
        Tok::RBracket => "\"]\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Dot => "\".\"".into(),
    }
}

/// Compiles a condition for items of `context`.
pub fn compile(src: &str, context: Context) -> Result<Expr, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, end: src.chars().count() + 1, context };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        let found = describe(&p.toks[p.pos].0);
        return p.err(format!("unexpected {found} after a complete condition (join conditions with and / or)"));
    }
    Ok(e)
}

/// The value of an expression for `item`; an error is a converter that failed at run time (a
/// value of the wrong type, JSON that does not parse, …), for the statement's `error_mode`.
pub fn eval(e: &Expr, item: &dyn Item) -> Result<Value, String> {
    match e {
        Expr::Literal(v) => Ok(v.clone()),
        Expr::Field(f) => Ok(item.get(f)),
        Expr::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(functions::to_any(eval(i, item)?));
            }
            Ok(Value::List(out))
        }
        Expr::Call(f, args) => functions::call(f, args, item),
        other => try_matches(other, item).map(Value::Bool),
    }
}

fn compare(a: &Value, cmp: Cmp, b: &Value) -> bool {
    use std::cmp::Ordering;
    let order: Option<Ordering> = match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Double(y)) => (*x as f64).partial_cmp(y),
        (Value::Double(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match cmp {
        Cmp::Eq => order.map_or_else(|| a == b, |o| o == Ordering::Equal),
        Cmp::Ne => order.map_or_else(|| a != b, |o| o != Ordering::Equal),
        Cmp::Lt => order == Some(Ordering::Less),
        Cmp::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
        Cmp::Gt => order == Some(Ordering::Greater),
        Cmp::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Whether `item` matches the condition. A value that is not a bool is not a match, nor is a
/// condition whose converter failed at run time.
pub fn matches(e: &Expr, item: &dyn Item) -> bool {
    try_matches(e, item).unwrap_or(false)
}

/// Whether `item` matches the condition, or the run-time error of a converter in it.
pub fn try_matches(e: &Expr, item: &dyn Item) -> Result<bool, String> {
    Ok(match e {
        Expr::Literal(Value::Bool(b)) => *b,
        Expr::Literal(_) | Expr::List(_) => false,
        Expr::Field(f) => item.get(f) == Value::Bool(true),
        Expr::Not(inner) => !try_matches(inner, item)?,
        Expr::And(a, b) => try_matches(a, item)? && try_matches(b, item)?,
        Expr::Or(a, b) => try_matches(a, item)? || try_matches(b, item)?,
        Expr::Compare(a, cmp, b) => compare(&eval(a, item)?, *cmp, &eval(b, item)?),
        // As the collector: a value that is not a string is matched as its string form; nil is
        // never a match.
        Expr::IsMatch(v, re) => match eval(v, item)? {
            Value::Str(s) => re.is_match(&s),
            other => functions::string_like(&other).is_some_and(|s| re.is_match(&s)),
        },
        Expr::IsType(v, t) => matches!(
            (eval(v, item)?, *t),
            (Value::Str(_), "string")
                | (Value::Int(_), "int")
                | (Value::Double(_), "double")
                | (Value::Bool(_), "bool")
                | (Value::Map(_), "map")
        ),
        Expr::Call(..) => eval(e, item)? == Value::Bool(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<String, Value>);

    impl Item for Fake {
        fn get(&self, field: &Field) -> Value {
            let key = match field {
                Field::Attribute(k) => format!("attr:{k}"),
                Field::ResourceAttribute(k) => format!("res:{k}"),
                other => format!("{other:?}"),
            };
            self.0.get(&key).cloned().unwrap_or(Value::Nil)
        }
    }

    fn span() -> Fake {
        Fake(HashMap::from([
            ("Name".to_string(), Value::Str("GET /healthz".into())),
            ("Kind".to_string(), Value::Int(2)),
            ("StatusCode".to_string(), Value::Int(2)),
            ("Duration".to_string(), Value::Int(1_500_000)),
            ("attr:http.route".to_string(), Value::Str("/healthz".into())),
            ("attr:http.status_code".to_string(), Value::Int(503)),
            ("attr:ratio".to_string(), Value::Double(0.5)),
            ("attr:cached".to_string(), Value::Bool(true)),
            ("res:service.name".to_string(), Value::Str("checkout".into())),
        ]))
    }

    #[test]
    fn a_table_of_conditions() {
        let s = span();
        let table = [
            (r#"attributes["http.route"] == "/healthz""#, true),
            (r#"attributes["http.route"] != "/healthz""#, false),
            (r#"resource.attributes["service.name"] == "checkout" and kind == SPAN_KIND_SERVER"#, true),
            (r#"kind == SPAN_KIND_CLIENT or status.code == STATUS_CODE_ERROR"#, true),
            (r#"not (status.code == STATUS_CODE_ERROR)"#, false),
            (r#"duration > 1000000"#, true),
            (r#"duration >= 1500000 and duration <= 1500000"#, true),
            (r#"attributes["http.status_code"] >= 500"#, true),
            (r#"attributes["http.status_code"] == 503.0"#, true),
            (r#"attributes["http.status_code"] == "503""#, false),
            (r#"attributes["ratio"] < 1"#, true),
            (r#"attributes["cached"] == true"#, true),
            (r#"attributes["cached"]"#, true),
            (r#"attributes["missing"] == nil"#, true),
            (r#"attributes["missing"] != nil"#, false),
            (r#"attributes["missing"] > 3"#, false),
            (r#"IsMatch(name, "^GET /health")"#, true),
            // As the collector: an int is matched as its decimal string.
            (r#"IsMatch(attributes["http.status_code"], "5..")"#, true),
            (r#"IsMatch(attributes["missing"], ".*")"#, false),
            (
                r#"IsString(name) and IsInt(kind) and IsDouble(attributes["ratio"]) and IsBool(attributes["cached"])"#,
                true,
            ),
            (r#"name < "H" and name > "A""#, true),
            (r#"true and not false"#, true),
            (r#"-1 < 0"#, true),
        ];
        for (src, want) in table {
            let e = compile(src, Context::Span).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(matches(&e, &s), want, "{src}");
        }
    }

    #[test]
    fn every_error_names_its_column() {
        let table = [
            (r#"attributes["http.route" == "x""#, 25, "expected ]"),
            (r#"name == "#, 9, "expected a value, found the end"),
            (r#"name = "x""#, 6, "unexpected \"=\""),
            (r#"nmae == "x""#, 1, "unknown path nmae for a span condition"),
            (r#"severity_number < SEVERITY_NUMBER_WARN"#, 1, "unknown path severity_number for a span condition"),
            (r#"kind == SPAN_KIND_SEVER"#, 9, "unknown enum SPAN_KIND_SEVER"),
            (r#"IsMatch(name, "(")"#, 1, "invalid regular expression"),
            (r#"IsMatch(name)"#, 1, "IsMatch takes 2 argument(s), got 1"),
            (r#"Matches(name, "x")"#, 1, "unknown function Matches"),
            (r#"name == "x" name == "y""#, 13, "after a complete condition"),
            (r#"(name == "x""#, 13, "expected )"),
            (r#"name == "unterminated"#, 9, "unterminated string"),
            (r#"attributes[name] == 1"#, 12, "expected a quoted key"),
        ];
        for (src, column, message) in table {
            let e = compile(src, Context::Span).unwrap_err();
            assert_eq!(e.column, column, "{src}: {e}");
            assert!(e.message.contains(message), "{src}: {e}");
        }
    }

    #[test]
    fn paths_belong_to_their_context() {
        assert!(compile(r#"severity_number < SEVERITY_NUMBER_WARN"#, Context::LogRecord).is_ok());
        assert!(compile(r#"body == "x""#, Context::LogRecord).is_ok());
        assert!(compile(r#"metric.name == "x" and value_double > 1"#, Context::DataPoint).is_ok());
        assert!(compile(r#"type == METRIC_DATA_TYPE_SUM"#, Context::Metric).is_ok());
        assert!(compile(r#"span.name == "x""#, Context::SpanEvent).is_ok());
        assert!(compile(r#"duration > 1"#, Context::LogRecord).is_err());
    }
}
