//! The operators that run on each entry after it is read (the collector's stanza operators):
//! every type is registered here by its configuration name, built once at start into a
//! [`Pipeline`], and run per record in order, or along `output`/router edges by operator `id`.
//! `container` is special: it is the reader's own format step and must come first.

mod add;
mod copy;
pub mod expr;
pub mod field;
mod flatten;
mod json;
mod key_value;
mod moves;
mod noop;
mod parser;
mod recombine;
mod regex;
mod remove;
mod retain;
mod router;
pub mod severity;
pub mod time;

use super::config::ContainerFormat;
use expr::Expr;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;

/// A log record on its way through the operators, with its resource (shared until an
/// operator writes to it) and the file offset where its entry began.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub log: LogRecord,
    pub resource: Arc<Vec<KeyValue>>,
    pub start: u64,
}

/// A configuration problem: the key (from `operators`) and what is wrong.
pub type Invalid = (String, String);

/// What an operator does with an entry it fails on.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Passes it on as it is, and logs.
    #[default]
    Send,
    /// Passes it on; logged at debug level only.
    SendQuiet,
    /// Drops it, and logs.
    Drop,
    /// Drops it; logged at debug level only.
    DropQuiet,
}

/// `output: id` or `output: [id]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Outputs {
    One(String),
    Many(Vec<String>),
}

impl Outputs {
    fn single(&self, key: &str) -> Result<&str, Invalid> {
        match self {
            Outputs::One(s) => Ok(s),
            Outputs::Many(v) if v.len() == 1 => Ok(&v[0]),
            Outputs::Many(_) => {
                Err((key.to_string(), "name one operator: sending an entry to several is not supported".into()))
            }
        }
    }
}

/// The keys every operator but `router` and `container` has.
macro_rules! operator_config {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(default)]
            pub id: Option<String>,
            #[serde(default)]
            pub output: Option<$crate::receivers::filelog::operators::Outputs>,
            #[serde(default)]
            pub on_error: $crate::receivers::filelog::operators::OnError,
            #[serde(default, rename = "if")]
            pub if_: Option<String>,
            $($(#[$fm])* #[serde(default)] pub $field: $ty,)*
        }

        impl $crate::receivers::filelog::operators::HasCommon for $name {
            fn common(&self) -> $crate::receivers::filelog::operators::Common<'_> {
                $crate::receivers::filelog::operators::Common {
                    id: self.id.as_deref(),
                    output: self.output.as_ref(),
                    on_error: self.on_error,
                    if_: self.if_.as_deref(),
                }
            }
        }
    };
}

/// The keys of the parsers: the common ones, `parse_from`, `parse_to`, `timestamp`, `severity`.
macro_rules! parser_config {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $crate::receivers::filelog::operators::operator_config!($(#[$m])* $name {
            parse_from: Option<String>,
            parse_to: Option<String>,
            timestamp: Option<$crate::receivers::filelog::operators::time::TimeConfig>,
            severity: Option<$crate::receivers::filelog::operators::severity::SeverityConfig>,
            $($(#[$fm])* $field: $ty,)*
        });
    };
}

pub(crate) use operator_config;
pub(crate) use parser_config;

pub struct Common<'a> {
    pub id: Option<&'a str>,
    pub output: Option<&'a Outputs>,
    pub on_error: OnError,
    pub if_: Option<&'a str>,
}

pub trait HasCommon {
    fn common(&self) -> Common<'_>;
}

/// One operator's work on one record, for the operators that only change it.
pub trait Op: Send + Sync + std::fmt::Debug {
    /// Changes `rec`; `Err` says why the operator failed on it (`on_error` decides what then).
    fn apply(&self, rec: &mut Record) -> Result<(), String>;
}

/// `type: container`: read by the reader (see `container.rs`); here for its keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub format: ContainerFormat,
    #[serde(default = "yes")]
    pub add_metadata_from_filepath: bool,
}

fn yes() -> bool {
    true
}

/// Every operator type, by its configuration name: the one place they are registered.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum OperatorConfig {
    #[serde(rename = "container")]
    Container(ContainerConfig),
    #[serde(rename = "json_parser")]
    JsonParser(json::Config),
    #[serde(rename = "regex_parser")]
    RegexParser(regex::Config),
    #[serde(rename = "key_value_parser")]
    KeyValueParser(key_value::Config),
    #[serde(rename = "time_parser")]
    TimeParser(time::OperatorConfig),
    #[serde(rename = "severity_parser")]
    SeverityParser(severity::OperatorConfig),
    #[serde(rename = "move")]
    Move(moves::Config),
    #[serde(rename = "copy")]
    Copy(copy::Config),
    #[serde(rename = "add")]
    Add(add::Config),
    #[serde(rename = "remove")]
    Remove(remove::Config),
    #[serde(rename = "flatten")]
    Flatten(flatten::Config),
    #[serde(rename = "retain")]
    Retain(retain::Config),
    #[serde(rename = "noop")]
    Noop(noop::Config),
    #[serde(rename = "recombine")]
    Recombine(recombine::Config),
    #[serde(rename = "router")]
    Router(router::Config),
}

impl OperatorConfig {
    fn type_name(&self) -> &'static str {
        match self {
            OperatorConfig::Container(_) => "container",
            OperatorConfig::JsonParser(_) => "json_parser",
            OperatorConfig::RegexParser(_) => "regex_parser",
            OperatorConfig::KeyValueParser(_) => "key_value_parser",
            OperatorConfig::TimeParser(_) => "time_parser",
            OperatorConfig::SeverityParser(_) => "severity_parser",
            OperatorConfig::Move(_) => "move",
            OperatorConfig::Copy(_) => "copy",
            OperatorConfig::Add(_) => "add",
            OperatorConfig::Remove(_) => "remove",
            OperatorConfig::Flatten(_) => "flatten",
            OperatorConfig::Retain(_) => "retain",
            OperatorConfig::Noop(_) => "noop",
            OperatorConfig::Recombine(_) => "recombine",
            OperatorConfig::Router(_) => "router",
        }
    }

    fn common(&self) -> Option<Common<'_>> {
        Some(match self {
            OperatorConfig::Container(_) | OperatorConfig::Router(_) => return None,
            OperatorConfig::JsonParser(c) => c.common(),
            OperatorConfig::RegexParser(c) => c.common(),
            OperatorConfig::KeyValueParser(c) => c.common(),
            OperatorConfig::TimeParser(c) => c.common(),
            OperatorConfig::SeverityParser(c) => c.common(),
            OperatorConfig::Move(c) => c.common(),
            OperatorConfig::Copy(c) => c.common(),
            OperatorConfig::Add(c) => c.common(),
            OperatorConfig::Remove(c) => c.common(),
            OperatorConfig::Flatten(c) => c.common(),
            OperatorConfig::Retain(c) => c.common(),
            OperatorConfig::Noop(c) => c.common(),
            OperatorConfig::Recombine(c) => c.common(),
        })
    }

    fn id(&self) -> &str {
        let id = match self {
            OperatorConfig::Container(c) => c.id.as_deref(),
            OperatorConfig::Router(c) => c.id.as_deref(),
            other => other.common().and_then(|c| c.id),
        };
        id.unwrap_or(self.type_name())
    }

    fn build(&self, key: &str, resolve: &dyn Fn(&str, String) -> Result<usize, Invalid>) -> Result<Kind, Invalid> {
        let op = |b: Result<Box<dyn Op>, Invalid>| b.map(Kind::Op);
        match self {
            OperatorConfig::Container(_) => {
                Err((key.to_string(), "container must be the first operator (it reads the file's lines)".into()))
            }
            OperatorConfig::JsonParser(c) => op(c.build(key)),
            OperatorConfig::RegexParser(c) => op(c.build(key)),
            OperatorConfig::KeyValueParser(c) => op(c.build(key)),
            OperatorConfig::TimeParser(c) => op(c.build(key)),
            OperatorConfig::SeverityParser(c) => op(c.build(key)),
            OperatorConfig::Move(c) => op(c.build(key)),
            OperatorConfig::Copy(c) => op(c.build(key)),
            OperatorConfig::Add(c) => op(c.build(key)),
            OperatorConfig::Remove(c) => op(c.build(key)),
            OperatorConfig::Flatten(c) => op(c.build(key)),
            OperatorConfig::Retain(c) => op(c.build(key)),
            OperatorConfig::Noop(_) => op(Ok(Box::new(noop::Noop))),
            OperatorConfig::Recombine(c) => c.build(key).map(Kind::Recombine),
            OperatorConfig::Router(c) => c.build(key, resolve).map(Kind::Router),
        }
    }
}

enum Kind {
    Op(Box<dyn Op>),
    Router(router::Router),
    Recombine(recombine::Recombine),
}

struct Node {
    id: String,
    cond: Option<Expr>,
    on_error: OnError,
    /// The next operator, or none: the record is done.
    next: Option<usize>,
    kind: Kind,
}

/// An operator failed on a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub operator: String,
    pub message: String,
    /// `send_quiet` or `drop_quiet`: logged at debug level only.
    pub quiet: bool,
}

/// What came out of the operators: finished records, and the failures on the way.
#[derive(Debug, Default)]
pub struct Output {
    pub records: Vec<Record>,
    pub failures: Vec<Failure>,
}

/// What operators keep between records of one file (recombine's entries being gathered).
#[derive(Default)]
pub struct State {
    recombine: Vec<recombine::Batches>,
}

impl State {
    /// Whether entries are held back.
    pub fn holds(&self) -> bool {
        self.recombine.iter().any(|b| !b.is_empty())
    }

    /// The file offset of the earliest entry held back, if any: reading must resume there.
    pub fn held_from(&self) -> Option<u64> {
        self.recombine.iter().filter_map(|b| b.earliest_start()).min()
    }
}

/// The operators of one receiver, built from its configuration.
pub struct Pipeline {
    nodes: Vec<Node>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.nodes.iter().map(|n| &n.id)).finish()
    }
}

impl Pipeline {
    /// Builds the operators after a leading `container` (which the reader applies). `None`
    /// when there are none. Errors name the key, such as `operators.2.regex`.
    pub fn build(configs: &[OperatorConfig]) -> Result<Option<Pipeline>, Invalid> {
        let skip = usize::from(matches!(configs.first(), Some(OperatorConfig::Container(_))));
        let configs = &configs[skip..];
        if configs.is_empty() {
            return Ok(None);
        }
        let key = |i: usize| format!("operators.{}", i + skip);
        // Operators without an id of their own are named by type: json_parser, json_parser1, …
        let mut ids: Vec<String> = configs.iter().map(|c| c.id().to_string()).collect();
        let mut taken: std::collections::HashMap<&str, usize> = Default::default();
        for (i, c) in configs.iter().enumerate() {
            let t = c.type_name();
            if ids[i] != t {
                continue;
            }
            let n = taken.entry(t).or_insert(0);
            if *n > 0 {
                while ids.contains(&format!("{t}{n}")) {
                    *n += 1;
                }
                ids[i] = format!("{t}{n}");
            }
            *n += 1;
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err((format!("{}.id", key(i)), format!("\"{id}\" is the id of an earlier operator")));
            }
        }
        if skip == 1 && matches!(&configs[0], OperatorConfig::Container(_)) {
            return Err((key(0), "container appears twice".into()));
        }
        let resolve = |name: &str, at: String| -> Result<usize, Invalid> {
            ids.iter()
                .position(|id| id == name)
                .ok_or_else(|| (at, format!("no operator has the id \"{name}\" (ids: {})", ids.join(", "))))
        };
        let mut nodes = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let k = key(i);
            let kind = c.build(&k, &resolve)?;
            let (cond, on_error, next) = match c.common() {
                Some(common) => {
                    let cond = common.if_.map(Expr::parse).transpose().map_err(|e| (format!("{k}.if"), e))?;
                    let next = match common.output {
                        Some(o) => Some(resolve(o.single(&format!("{k}.output"))?, format!("{k}.output"))?),
                        None => (i + 1 < configs.len()).then_some(i + 1),
                    };
                    (cond, common.on_error, next)
                }
                None => (None, OnError::Send, None),
            };
            nodes.push(Node { id: ids[i].clone(), cond, on_error, next, kind });
        }
        let p = Pipeline { nodes };
        // An operator that leads back to itself would pass a record around forever.
        for start in 0..p.nodes.len() {
            let mut seen = vec![false; p.nodes.len()];
            let mut todo = vec![start];
            while let Some(n) = todo.pop() {
                for to in p.edges(n) {
                    if to == start {
                        return Err((key(start), format!("operator \"{}\" leads back to itself", p.nodes[start].id)));
                    }
                    if !seen[to] {
                        seen[to] = true;
                        todo.push(to);
                    }
                }
            }
        }
        Ok(Some(p))
    }

    fn edges(&self, n: usize) -> Vec<usize> {
        let node = &self.nodes[n];
        match &node.kind {
            Kind::Router(r) => r.targets(),
            _ => node.next.into_iter().collect(),
        }
    }

    /// Runs `rec` through the operators; what comes out goes to `out`.
    pub fn run(&self, state: &mut State, rec: Record, out: &mut Output) {
        self.run_from(Some(0), state, rec, out);
    }

    fn run_from(&self, mut at: Option<usize>, state: &mut State, mut rec: Record, out: &mut Output) {
        while let Some(i) = at {
            let node = &self.nodes[i];
            if node.cond.as_ref().is_some_and(|c| !c.test(&rec)) {
                at = node.next;
                continue;
            }
            match &node.kind {
                Kind::Op(op) => {
                    if let Err(message) = op.apply(&mut rec) {
                        let quiet = matches!(node.on_error, OnError::SendQuiet | OnError::DropQuiet);
                        out.failures.push(Failure { operator: node.id.clone(), message, quiet });
                        if matches!(node.on_error, OnError::Drop | OnError::DropQuiet) {
                            return;
                        }
                    }
                    at = node.next;
                }
                Kind::Router(r) => match r.route(&mut rec) {
                    Some(to) => at = Some(to),
                    None => return,
                },
                Kind::Recombine(r) => {
                    if state.recombine.len() < self.nodes.len() {
                        state.recombine.resize_with(self.nodes.len(), Default::default);
                    }
                    let mut ready = Vec::new();
                    if let Err(message) = r.add(&mut state.recombine[i], rec, &mut ready) {
                        let quiet = matches!(node.on_error, OnError::SendQuiet | OnError::DropQuiet);
                        out.failures.push(Failure { operator: node.id.clone(), message, quiet });
                    }
                    for rec in ready {
                        self.run_from(node.next, state, rec, out);
                    }
                    return;
                }
            }
        }
        out.records.push(rec);
    }

    /// Sends on what recombine has gathered for longer than its `force_flush_period`, or
    /// everything held when `all` (the file is done with).
    pub fn flush(&self, state: &mut State, now: Instant, all: bool, out: &mut Output) {
        for i in 0..state.recombine.len() {
            let Kind::Recombine(r) = &self.nodes[i].kind else { continue };
            let mut ready = Vec::new();
            r.flush(&mut state.recombine[i], now, all, &mut ready);
            for rec in ready {
                self.run_from(self.nodes[i].next, state, rec, out);
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::attributes::{as_str, string};

    /// The operators of a YAML list, as the receiver's configuration would hold them.
    pub fn pipeline(yaml: &str) -> Result<Pipeline, Invalid> {
        let configs: Vec<OperatorConfig> =
            crate::config::parse_yaml("test.yaml", yaml).map_err(|e| (String::new(), e.to_string()))?;
        Pipeline::build(&configs).map(|p| p.expect("operators"))
    }

    pub fn text_record(body: &str) -> Record {
        let mut r = Record::default();
        r.log.body = Some(string(body));
        r
    }

    pub fn run(p: &Pipeline, bodies: &[&str]) -> Output {
        let mut state = State::default();
        let mut out = Output::default();
        for b in bodies {
            p.run(&mut state, text_record(b), &mut out);
        }
        p.flush(&mut state, Instant::now(), true, &mut out);
        out
    }

    pub fn attr<'a>(r: &'a Record, key: &str) -> Option<&'a str> {
        field::map_get(&r.log.attributes, key).and_then(as_str)
    }

    #[test]
    fn operators_run_in_order_or_along_output() {
        let p = pipeline(
            r#"
- type: add
  field: attributes.a
  value: one
  output: last
- type: add
  id: skipped
  field: attributes.b
  value: two
- type: add
  id: last
  field: attributes.c
  value: three
"#,
        )
        .unwrap();
        let out = run(&p, &["x"]);
        assert_eq!(attr(&out.records[0], "a"), Some("one"));
        assert_eq!(attr(&out.records[0], "b"), None, "output skipped it");
        assert_eq!(attr(&out.records[0], "c"), Some("three"));
    }

    #[test]
    fn operators_without_an_id_are_named_by_type() {
        let p =
            pipeline("- type: noop\n- type: noop\n  id: noop1\n- type: noop\n- type: add\n  field: body\n  value: x")
                .unwrap();
        let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["noop", "noop1", "noop2", "add"]);
    }

    #[test]
    fn on_error_modes() {
        for (mode, passed, quiet) in
            [("send", true, false), ("send_quiet", true, true), ("drop", false, false), ("drop_quiet", false, true)]
        {
            let p = pipeline(&format!(
                "- type: json_parser\n  on_error: {mode}\n- type: add\n  field: attributes.after\n  value: yes"
            ))
            .unwrap();
            let out = run(&p, &["{not json", "{\"ok\":true}"]);
            assert_eq!(out.records.len(), if passed { 2 } else { 1 }, "{mode}");
            assert_eq!(out.failures.len(), 1, "{mode}");
            assert_eq!(out.failures[0].quiet, quiet, "{mode}");
            assert_eq!(out.failures[0].operator, "json_parser");
            if passed {
                assert_eq!(attr(&out.records[0], "after"), Some("yes"), "sent on to the next operator");
            }
        }
    }

    #[test]
    fn if_skips_an_operator() {
        let p = pipeline("- type: json_parser\n  if: body matches \"^\\\\{\"\n").unwrap();
        let out = run(&p, &["plain text", "{\"a\":\"b\"}"]);
        assert!(out.failures.is_empty());
        assert_eq!(attr(&out.records[1], "a"), Some("b"));
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let cases = [
            ("- type: add\n  field: attributes.a\n  value: 1\n  output: nowhere", "operators.0.output", "no operator"),
            ("- type: noop\n  id: a\n- type: noop\n  id: a", "operators.1.id", "earlier operator"),
            ("- type: noop\n  if: timestamp > 0", "operators.0.if", "unknown name"),
            ("- type: noop\n  output: [a, b]", "operators.0.output", "several"),
            ("- type: noop\n  id: a\n  output: b\n- type: noop\n  id: b\n  output: a", "operators.0", "leads back"),
            ("- type: noop\n- type: container", "operators.1", "first operator"),
            ("- type: regex_parser\n  regex: '(?P<a>x'", "operators.0.regex", "invalid regex"),
        ];
        for (yaml, key, why) in cases {
            let (k, e) = pipeline(yaml).unwrap_err();
            assert_eq!(k, key, "{yaml}: {e}");
            assert!(e.contains(why), "{yaml}: {e}");
        }
        let e = pipeline("- type: csv_parser").unwrap_err().1;
        assert!(e.contains("csv_parser"), "{e}");
        let e = pipeline("- type: json_parser\n  regex: x").unwrap_err().1;
        assert!(e.contains("regex"), "{e}");
    }
}
