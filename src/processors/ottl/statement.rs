//! OTTL-style statements for the `transform` processor: `function(arguments) [where condition]`,
//! parsed and checked once. The functions: `set(target, value)`, `delete_key(map, "key")`,
//! `delete_matching_keys(map, "regex")`, `keep_keys(map, ["a", "b"])`,
//! `truncate_all(map, limit)`, `limit(map, count, ["keep"])`, `replace_pattern(target, "regex",
//! "replacement")`, `replace_all_patterns(map, "key"|"value", "regex", "replacement")`,
//! `replace_match(target, "glob", "replacement")`, `replace_all_matches(map, "glob",
//! "replacement")`, `merge_maps(map, source, "insert"|"update"|"upsert")`, `flatten(map,
//! "prefix"?, depth?)`. Maps are `attributes` and `resource.attributes`. A statement that fails at
//! run time (a converter given the wrong type) returns its error for the caller's `error_mode`.

use super::expr::{Context, Expr, Field, Item, Parser, SyntaxError, Tok, Value, describe, eval, lex, try_matches};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use regex::Regex;

/// An attribute map a statement works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRef {
    Attributes,
    Resource,
}

#[derive(Debug, Clone)]
pub enum Op {
    Set(Field, Expr),
    DeleteKey(MapRef, String),
    DeleteMatchingKeys(MapRef, Regex),
    KeepKeys(MapRef, Vec<String>),
    TruncateAll(MapRef, usize),
    Limit(MapRef, usize, Vec<String>),
    ReplacePattern(Field, Regex, String),
    ReplaceAllPatterns(MapRef, bool, Regex, String),
    /// `set(attributes, map)`: the whole map.
    SetMap(MapRef, Expr),
    /// The glob, compiled as an anchored regular expression.
    ReplaceMatch(Field, Regex, String),
    ReplaceAllMatches(MapRef, Regex, String),
    MergeMaps(MapRef, Expr, Merge),
    Flatten(MapRef, Option<String>, Option<usize>),
}

/// How `merge_maps` treats the keys of its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Only keys the target does not have.
    Insert,
    /// Only keys the target has.
    Update,
    /// Every key.
    Upsert,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub op: Op,
    pub condition: Option<Expr>,
}

/// An item a statement changes: read as conditions read it, plus its maps and fields to write.
pub trait ItemMut: Item {
    fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>>;
    /// Sets a field; false if the field cannot be set here.
    fn set(&mut self, field: &Field, value: Value) -> bool;
}

enum Arg {
    Map(MapRef, usize),
    Expr(Expr, usize),
}

impl Arg {
    fn column(&self) -> usize {
        match self {
            Arg::Map(_, c) | Arg::Expr(_, c) => *c,
        }
    }
}

impl Parser {
    fn arg(&mut self) -> Result<Arg, SyntaxError> {
        let column = self.column();
        // `attributes` / `resource.attributes` without a key name a whole map.
        let map = |p: &Parser, n: usize| -> bool {
            p.toks.get(p.pos + n).map(|(t, _)| t) != Some(&Tok::LBracket)
                && !matches!(p.toks.get(p.pos + n).map(|(t, _)| t), Some(Tok::Dot))
        };
        match (self.toks.get(self.pos).map(|(t, _)| t.clone()), self.toks.get(self.pos + 2).map(|(t, _)| t.clone())) {
            (Some(Tok::Ident(w)), _) if w == "attributes" && map(self, 1) => {
                self.pos += 1;
                return Ok(Arg::Map(MapRef::Attributes, column));
            }
            (Some(Tok::Ident(w)), Some(Tok::Ident(a)))
                if w == "resource"
                    && a == "attributes"
                    && self.toks.get(self.pos + 1).map(|(t, _)| t) == Some(&Tok::Dot)
                    && map(self, 3) =>
            {
                self.pos += 3;
                return Ok(Arg::Map(MapRef::Resource, column));
            }
            _ => {}
        }
        Ok(Arg::Expr(self.or()?, column))
    }
}

fn want_map(arg: &Arg, func: &str) -> Result<MapRef, SyntaxError> {
    match arg {
        Arg::Map(m, _) => Ok(*m),
        Arg::Expr(_, c) => {
            Err(SyntaxError { column: *c, message: format!("{func} needs a map: attributes or resource.attributes") })
        }
    }
}

fn want_target(arg: Arg, func: &str) -> Result<Field, SyntaxError> {
    match arg {
        Arg::Expr(Expr::Field(f), _) => Ok(f),
        other => Err(SyntaxError {
            column: other.column(),
            message: format!("{func}'s first argument must be a path such as attributes[\"key\"] or name"),
        }),
    }
}

/// An argument as a value: a whole map (`attributes`) is read as one.
fn want_value(arg: Arg, context: Context) -> Expr {
    match arg {
        Arg::Expr(e, _) => e,
        Arg::Map(MapRef::Attributes, _) if context != Context::Resource => Expr::Field(Field::Attributes),
        Arg::Map(..) => Expr::Field(Field::ResourceAttributes),
    }
}

fn want_str(arg: &Arg, what: &str) -> Result<String, SyntaxError> {
    match arg {
        Arg::Expr(Expr::Literal(Value::Str(s)), _) => Ok(s.clone()),
        other => Err(SyntaxError { column: other.column(), message: format!("{what} must be a string") }),
    }
}

fn want_int(arg: &Arg, what: &str) -> Result<usize, SyntaxError> {
    match arg {
        Arg::Expr(Expr::Literal(Value::Int(n)), _) if *n >= 0 => Ok(*n as usize),
        other => {
            Err(SyntaxError { column: other.column(), message: format!("{what} must be a whole number of 0 or more") })
        }
    }
}

/// A list of quoted keys, such as `["a", "b"]`.
fn want_keys(arg: &Arg, message: &str) -> Result<Vec<String>, SyntaxError> {
    let err = || SyntaxError { column: arg.column(), message: message.to_string() };
    match arg {
        Arg::Expr(Expr::List(items), _) => items
            .iter()
            .map(|i| match i {
                Expr::Literal(Value::Str(s)) => Ok(s.clone()),
                _ => Err(err()),
            })
            .collect(),
        _ => Err(err()),
    }
}

fn want_regex(arg: &Arg) -> Result<Regex, SyntaxError> {
    let pattern = want_str(arg, "the pattern")?;
    Regex::new(&pattern).map_err(|e| SyntaxError {
        column: arg.column(),
        message: format!("invalid regular expression \"{pattern}\": {e}"),
    })
}

/// A glob (`*` any run of characters, `?` one, `[abc]`, `[!a-z]`, `{a,b}`, a backslash escapes), as the
/// collector's `replace_match` takes it, compiled to a regular expression matching a whole string.
fn want_glob(arg: &Arg) -> Result<Regex, SyntaxError> {
    let glob = want_str(arg, "the pattern")?;
    let err = |message: String| SyntaxError { column: arg.column(), message };
    let mut re = String::from("^(?s:");
    let mut chars = glob.chars();
    let mut braces = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '\\' => match chars.next() {
                Some(e) => re.push_str(&regex::escape(&e.to_string())),
                None => return Err(err(format!("the pattern \"{glob}\" ends with a lone \\"))),
            },
            '[' => {
                re.push('[');
                let mut first = true;
                loop {
                    match chars.next() {
                        None => return Err(err(format!("the pattern \"{glob}\" has an unclosed ["))),
                        Some(']') if !first => break,
                        Some('!') if first => re.push('^'),
                        Some(x @ ('\\' | '[' | ']' | '^' | '&' | '~')) => {
                            re.push('\\');
                            re.push(x);
                        }
                        Some(x) => re.push(x),
                    }
                    first = false;
                }
                re.push(']');
            }
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            ',' if braces > 0 => re.push('|'),
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    if braces > 0 {
        return Err(err(format!("the pattern \"{glob}\" has an unclosed {{")));
    }
    re.push_str(")$");
    Regex::new(&re).map_err(|e| err(format!("invalid pattern \"{glob}\": {e}")))
}

/// Parses and checks a statement for items of `context`.
pub fn compile_statement(src: &str, context: Context) -> Result<Statement, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, end: src.chars().count() + 1, context };
    let column = p.column();
    let name = match p.next() {
        Some(Tok::Ident(n)) => n,
        _ => {
            return Err(SyntaxError { column, message: "a statement starts with a function, such as set(…)".into() });
        }
    };
    if p.next() != Some(Tok::LParen) {
        p.pos -= 1;
        return p.err(format!("expected ( after {name}"));
    }
    let mut args = Vec::new();
    if p.peek() == Some(&Tok::RParen) {
        p.pos += 1;
    } else {
        loop {
            args.push(p.arg()?);
            match p.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::RParen) => break,
                _ => {
                    p.pos -= 1;
                    return p.err("expected , or ) in the arguments");
                }
            }
        }
    }
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(SyntaxError { column, message: format!("{name} takes {n} argument(s), got {}", args.len()) })
        }
    };
    let op = match name.as_str() {
        "set" => {
            arity(2)?;
            let mut it = args.into_iter();
            let (target, value) = (it.next().expect("two"), it.next().expect("two"));
            let value = want_value(value, context);
            match target {
                Arg::Map(m, _) => Op::SetMap(m, value),
                target => Op::Set(want_target(target, "set")?, value),
            }
        }
        "delete_key" => {
            arity(2)?;
            Op::DeleteKey(want_map(&args[0], "delete_key")?, want_str(&args[1], "the key")?)
        }
        "delete_matching_keys" => {
            arity(2)?;
            Op::DeleteMatchingKeys(want_map(&args[0], "delete_matching_keys")?, want_regex(&args[1])?)
        }
        "keep_keys" => {
            arity(2)?;
            let keys = want_keys(&args[1], "keep_keys needs a list of keys, such as [\"a\", \"b\"]")?;
            Op::KeepKeys(want_map(&args[0], "keep_keys")?, keys)
        }
        "truncate_all" => {
            arity(2)?;
            Op::TruncateAll(want_map(&args[0], "truncate_all")?, want_int(&args[1], "the limit")?)
        }
        "limit" => {
            if !(2..=3).contains(&args.len()) {
                return Err(SyntaxError {
                    column,
                    message: format!("limit takes 2 or 3 arguments, got {}", args.len()),
                });
            }
            let keep = match args.get(2) {
                Some(a) => want_keys(a, "limit's third argument is a list of keys to keep")?,
                None => Vec::new(),
            };
            Op::Limit(want_map(&args[0], "limit")?, want_int(&args[1], "the limit")?, keep)
        }
        "replace_pattern" => {
            arity(3)?;
            let mut it = args.into_iter();
            let target = want_target(it.next().expect("three"), "replace_pattern")?;
            let (pattern, replacement) = (it.next().expect("three"), it.next().expect("three"));
            Op::ReplacePattern(target, want_regex(&pattern)?, want_str(&replacement, "the replacement")?)
        }
        "replace_all_patterns" => {
            arity(4)?;
            let mode = want_str(&args[1], "the mode")?;
            let on_keys = match mode.as_str() {
                "key" => true,
                "value" => false,
                other => {
                    return Err(SyntaxError {
                        column: args[1].column(),
                        message: format!("mode \"{other}\" is not \"key\" or \"value\""),
                    });
                }
            };
            Op::ReplaceAllPatterns(
                want_map(&args[0], "replace_all_patterns")?,
                on_keys,
                want_regex(&args[2])?,
                want_str(&args[3], "the replacement")?,
            )
        }
        "replace_match" => {
            arity(3)?;
            let mut it = args.into_iter();
            let target = want_target(it.next().expect("three"), "replace_match")?;
            let (pattern, replacement) = (it.next().expect("three"), it.next().expect("three"));
            Op::ReplaceMatch(target, want_glob(&pattern)?, want_str(&replacement, "the replacement")?)
        }
        "replace_all_matches" => {
            arity(3)?;
            Op::ReplaceAllMatches(
                want_map(&args[0], "replace_all_matches")?,
                want_glob(&args[1])?,
                want_str(&args[2], "the replacement")?,
            )
        }
        "merge_maps" => {
            arity(3)?;
            let strategy = match want_str(&args[2], "the strategy")?.as_str() {
                "insert" => Merge::Insert,
                "update" => Merge::Update,
                "upsert" => Merge::Upsert,
                other => {
                    return Err(SyntaxError {
                        column: args[2].column(),
                        message: format!("strategy \"{other}\" is not \"insert\", \"update\" or \"upsert\""),
                    });
                }
            };
            let target = want_map(&args[0], "merge_maps")?;
            let source = want_value(args.into_iter().nth(1).expect("three"), context);
            Op::MergeMaps(target, source, strategy)
        }
        "flatten" => {
            if !(1..=3).contains(&args.len()) {
                return Err(SyntaxError {
                    column,
                    message: format!("flatten takes 1 to 3 arguments, got {}", args.len()),
                });
            }
            let prefix = match args.get(1) {
                Some(a) => Some(want_str(a, "flatten's prefix")?).filter(|p| !p.is_empty()),
                None => None,
            };
            let depth = args.get(2).map(|a| want_int(a, "flatten's depth")).transpose()?;
            Op::Flatten(want_map(&args[0], "flatten")?, prefix, depth)
        }
        other => {
            return Err(SyntaxError {
                column,
                message: format!(
                    "unknown function {other} (known: set, delete_key, delete_matching_keys, keep_keys, truncate_all, limit, replace_pattern, replace_all_patterns, replace_match, replace_all_matches, merge_maps, flatten)"
                ),
            });
        }
    };
    let condition = if p.keyword("where") {
        p.pos += 1;
        Some(p.or()?)
    } else {
        None
    };
    if p.pos < p.toks.len() {
        let found = describe(&p.toks[p.pos].0);
        return p.err(format!("unexpected {found} after the statement (a condition follows where)"));
    }
    Ok(Statement { op, condition })
}

fn any(v: Value) -> Option<AnyValue> {
    match v {
        Value::Nil => None,
        v => Some(super::functions::to_any(v)),
    }
}

/// Sets `key` in a map (a later value replaces an earlier one; nil deletes).
pub fn put(map: &mut Vec<KeyValue>, key: &str, v: Value) {
    match any(v) {
        None => map.retain(|a| a.key != key),
        Some(value) => match map.iter_mut().find(|a| a.key == key) {
            Some(a) => a.value = Some(value),
            None => map.push(KeyValue { key: key.to_string(), value: Some(value), ..Default::default() }),
        },
    }
}

impl Statement {
    /// Runs the statement on `item` if its condition holds; the error of a converter that failed.
    pub fn run(&self, item: &mut dyn ItemMut) -> Result<(), String> {
        if let Some(c) = &self.condition
            && !try_matches(c, item)?
        {
            return Ok(());
        }
        match &self.op {
            // As the collector: setting nil does nothing.
            Op::Set(target, value) => match eval(value, item)? {
                Value::Nil => {}
                v => set_field(item, target, v),
            },
            Op::SetMap(m, value) => match eval(value, item)? {
                Value::Nil => {}
                Value::Map(values) => {
                    if let Some(map) = item.map(*m) {
                        *map = values;
                    }
                }
                other => return Err(format!("set: a map can only be set to a map, not to a {}", other.type_name())),
            },
            Op::ReplaceMatch(target, glob, replacement) => {
                if let Value::Str(s) = item.get(target)
                    && glob.is_match(&s)
                    && s != *replacement
                {
                    set_field(item, target, Value::Str(replacement.clone()));
                }
            }
            Op::ReplaceAllMatches(m, glob, replacement) => {
                if let Some(map) = item.map(*m) {
                    for a in map.iter_mut() {
                        if let Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) = a.value.as_mut()
                            && glob.is_match(s)
                        {
                            replacement.clone_into(s);
                        }
                    }
                }
            }
            Op::MergeMaps(m, source, strategy) => {
                let source = match eval(source, item)? {
                    Value::Map(values) => values,
                    other => return Err(format!("merge_maps: expected a map but got {}", other.type_name())),
                };
                if let Some(map) = item.map(*m) {
                    for kv in source {
                        match (map.iter().position(|a| a.key == kv.key), strategy) {
                            (Some(i), Merge::Update | Merge::Upsert) => map[i].value = kv.value,
                            (None, Merge::Insert | Merge::Upsert) => map.push(kv),
                            _ => {}
                        }
                    }
                }
            }
            Op::Flatten(m, prefix, depth) => {
                if let Some(map) = item.map(*m) {
                    let old = std::mem::take(map);
                    for kv in old {
                        let key = match prefix {
                            Some(p) => format!("{p}.{}", kv.key),
                            None => kv.key,
                        };
                        flatten_into(map, key, kv.value, depth.unwrap_or(usize::MAX));
                    }
                }
            }
            Op::DeleteKey(m, key) => {
                if let Some(map) = item.map(*m) {
                    map.retain(|a| a.key != *key);
                }
            }
            Op::DeleteMatchingKeys(m, re) => {
                if let Some(map) = item.map(*m) {
                    map.retain(|a| !re.is_match(&a.key));
                }
            }
            Op::KeepKeys(m, keys) => {
                if let Some(map) = item.map(*m) {
                    map.retain(|a| keys.contains(&a.key));
                }
            }
            Op::TruncateAll(m, limit) => {
                if let Some(map) = item.map(*m) {
                    for a in map.iter_mut() {
                        if let Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) = a.value.as_mut()
                            && s.len() > *limit
                        {
                            let mut end = *limit;
                            while !s.is_char_boundary(end) {
                                end -= 1;
                            }
                            s.truncate(end);
                        }
                    }
                }
            }
            Op::Limit(m, count, keep) => {
                if let Some(map) = item.map(*m)
                    && map.len() > *count
                {
                    // The listed keys stay first; the rest fill what room is left, in order.
                    let mut room = count.saturating_sub(map.iter().filter(|a| keep.contains(&a.key)).count());
                    map.retain(|a| {
                        if keep.contains(&a.key) {
                            return true;
                        }
                        if room > 0 {
                            room -= 1;
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            Op::ReplacePattern(target, re, replacement) => {
                if let Value::Str(s) = item.get(target) {
                    let replaced = re.replace_all(&s, replacement.as_str()).into_owned();
                    if replaced != s {
                        set_field(item, target, Value::Str(replaced));
                    }
                }
            }
            Op::ReplaceAllPatterns(m, on_keys, re, replacement) => {
                if let Some(map) = item.map(*m) {
                    for a in map.iter_mut() {
                        if *on_keys {
                            a.key = re.replace_all(&a.key, replacement.as_str()).into_owned();
                        } else if let Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) =
                            a.value.as_mut()
                        {
                            *s = re.replace_all(s, replacement.as_str()).into_owned();
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Puts `value` under `key`, or, while `depth` is left, its entries under `key.entry` (a list's
/// under `key.0`, `key.1`, …). A later key replaces an earlier one.
fn flatten_into(out: &mut Vec<KeyValue>, key: String, value: Option<AnyValue>, depth: usize) {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::KvlistValue(m)) if depth > 0 => {
            for kv in m.values {
                flatten_into(out, format!("{key}.{}", kv.key), kv.value, depth - 1);
            }
        }
        Some(any_value::Value::ArrayValue(a)) if depth > 0 => {
            for (i, v) in a.values.into_iter().enumerate() {
                flatten_into(out, format!("{key}.{i}"), Some(v), depth - 1);
            }
        }
        value => {
            let value = Some(AnyValue { value });
            match out.iter_mut().find(|a| a.key == key) {
                Some(a) => a.value = value,
                None => out.push(KeyValue { key, value, ..Default::default() }),
            }
        }
    }
}

fn set_field(item: &mut dyn ItemMut, target: &Field, v: Value) {
    match target {
        Field::Attribute(k) => {
            if let Some(map) = item.map(MapRef::Attributes) {
                put(map, k, v);
            }
        }
        Field::ResourceAttribute(k) => {
            if let Some(map) = item.map(MapRef::Resource) {
                put(map, k, v);
            }
        }
        other => {
            item.set(other, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_parses_and_bad_statements_say_where() {
        for ok in [
            r#"set(attributes["env"], "prod") where resource.attributes["service.name"] == "api""#,
            r#"set(name, attributes["http.route"])"#,
            r#"delete_key(attributes, "password")"#,
            r#"delete_matching_keys(resource.attributes, "^tmp\\.")"#,
            r#"keep_keys(attributes, ["http.method", "http.route"])"#,
            r#"truncate_all(attributes, 64)"#,
            r#"limit(attributes, 10, ["http.route"])"#,
            r#"replace_pattern(attributes["url"], "token=[^&]*", "token=***")"#,
            r#"replace_all_patterns(attributes, "value", "\\d{16}", "****")"#,
        ] {
            compile_statement(ok, Context::Span).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, column, msg) in [
            (r#"sett(name, "x")"#, 1, "unknown function sett"),
            (r#"set(name)"#, 1, "set takes 2 argument(s), got 1"),
            (r#"delete_key(name, "x")"#, 12, "needs a map"),
            (r#"keep_keys(attributes, "a")"#, 23, "needs a list"),
            (r#"truncate_all(attributes, -1)"#, 26, "whole number"),
            (r#"replace_all_patterns(attributes, "both", "x", "y")"#, 34, "not \"key\" or \"value\""),
            (r#"set(name, "x") when kind == 1"#, 16, "after the statement"),
            (r#"set(name, "x") where nmae == 1"#, 22, "unknown path nmae"),
        ] {
            let e = compile_statement(bad, Context::Span).unwrap_err();
            assert_eq!(e.column, column, "{bad}: {e}");
            assert!(e.message.contains(msg), "{bad}: {e}");
        }
    }

    /// A log record with attributes, resource attributes and a body, to run statements on.
    struct Log {
        record: opentelemetry_proto::tonic::logs::v1::LogRecord,
        resource: Vec<KeyValue>,
    }

    impl Item for Log {
        fn get(&self, field: &Field) -> Value {
            match field {
                Field::ResourceAttributes => Value::Map(self.resource.clone()),
                Field::ResourceAttribute(k) => super::super::items::value(
                    self.resource.iter().find(|a| a.key == *k).and_then(|a| a.value.as_ref()),
                ),
                f => super::super::items::LogItem {
                    log: &self.record,
                    origin: super::super::items::Origin { resource: None, scope: None },
                }
                .get(f),
            }
        }
    }

    impl ItemMut for Log {
        fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>> {
            Some(match m {
                MapRef::Attributes => &mut self.record.attributes,
                MapRef::Resource => &mut self.resource,
            })
        }

        fn set(&mut self, field: &Field, v: Value) -> bool {
            match (field, v) {
                (Field::Body, v) => self.record.body = Some(super::super::functions::to_any(v)),
                (Field::SeverityNumber, Value::Int(n)) => self.record.severity_number = n as i32,
                _ => return false,
            }
            true
        }
    }

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(super::super::functions::to_any(v)), ..Default::default() }
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn log() -> Log {
        Log {
            record: opentelemetry_proto::tonic::logs::v1::LogRecord {
                body: Some(super::super::functions::to_any(s(r#"{"a":"json","n":1}"#))),
                severity_text: "WARNING".into(),
                attributes: vec![
                    kv("a", s("old")),
                    kv("path", s("/user/42/list/7")),
                    kv("other", s("/health")),
                    kv("i", Value::Int(3)),
                    kv(
                        "nested",
                        Value::Map(vec![
                            kv("x", Value::Int(1)),
                            kv("deep", Value::Map(vec![kv("y", s("z"))])),
                            kv("list", Value::List(vec![super::super::functions::to_any(s("p"))])),
                        ]),
                    ),
                ],
                ..Default::default()
            },
            resource: vec![kv("a", s("resource")), kv("r", s("only"))],
        }
    }

    /// Runs each statement on a fresh log: the attributes after (key = value as a string), or
    /// the start of the run-time error.
    fn table(cases: &[(&str, Result<&str, &str>)]) {
        for (src, want) in cases {
            let st = compile_statement(src, Context::LogRecord).unwrap_or_else(|e| panic!("{src}: {e}"));
            let mut l = log();
            match (st.run(&mut l), want) {
                (Ok(()), Ok(want)) => {
                    let got: Vec<String> = l
                        .record
                        .attributes
                        .iter()
                        .map(|a| {
                            let v = super::super::items::value(a.value.as_ref());
                            format!("{}={}", a.key, super::super::functions::string_like(&v).unwrap_or("nil".into()))
                        })
                        .collect();
                    assert_eq!(got.join(" "), *want, "{src}");
                }
                (Err(got), Err(want)) => assert!(got.contains(want), "{src}: {got}"),
                (got, want) => panic!("{src}: got {got:?}, want {want:?}"),
            }
        }
    }

    const BEFORE: &str = r#"a=old path=/user/42/list/7 other=/health i=3 nested={"deep":{"y":"z"},"list":["p"],"x":1}"#;

    #[test]
    fn replace_match_and_replace_all_matches() {
        table(&[
            (
                r#"replace_match(attributes["path"], "/user/*/list/*", "/user/{id}/list/{id}")"#,
                Ok(&BEFORE.replace("/user/42/list/7", "/user/{id}/list/{id}")),
            ),
            (r#"replace_match(attributes["path"], "/user/*", "x")"#, Ok(&BEFORE.replace("/user/42/list/7", "x"))),
            (r#"replace_match(attributes["path"], "/user/?/list/*", "x")"#, Ok(BEFORE)),
            (
                r#"replace_match(attributes["path"], "/user/[0-9][0-9]/list/[!a-z]", "x")"#,
                Ok(&BEFORE.replace("/user/42/list/7", "x")),
            ),
            (
                r#"replace_match(attributes["other"], "/{health,ready}", "probe")"#,
                Ok(&BEFORE.replace("/health", "probe")),
            ),
            (r#"replace_match(attributes["i"], "*", "x")"#, Ok(BEFORE)),
            (r#"replace_match(attributes["missing"], "*", "x")"#, Ok(BEFORE)),
            (r#"replace_match(attributes["path"], "user", "x")"#, Ok(BEFORE)),
            (
                r#"replace_all_matches(attributes, "/*", "redacted")"#,
                Ok(&BEFORE.replace("/user/42/list/7", "redacted").replace("/health", "redacted")),
            ),
            (r#"replace_all_matches(attributes, "nothing", "x")"#, Ok(BEFORE)),
        ]);
    }

    #[test]
    fn merge_maps_strategies() {
        table(&[
            (r#"merge_maps(attributes, ParseJSON(body), "upsert")"#, Ok(&(BEFORE.replace("a=old", "a=json") + " n=1"))),
            (r#"merge_maps(attributes, ParseJSON(body), "insert")"#, Ok(&format!("{BEFORE} n=1"))),
            (r#"merge_maps(attributes, ParseJSON(body), "update")"#, Ok(&BEFORE.replace("a=old", "a=json"))),
            (r#"merge_maps(attributes, resource.attributes, "insert")"#, Ok(&format!("{BEFORE} r=only"))),
            (
                r#"merge_maps(attributes, attributes["nested"], "upsert")"#,
                Ok(&format!(r#"{BEFORE} x=1 deep={{"y":"z"}} list=["p"]"#)),
            ),
            (r#"merge_maps(attributes, ParseJSON("{}"), "upsert")"#, Ok(BEFORE)),
            (
                r#"merge_maps(attributes, attributes["missing"], "upsert")"#,
                Err("merge_maps: expected a map but got nil"),
            ),
            (r#"merge_maps(attributes, attributes["a"], "upsert")"#, Err("merge_maps: expected a map but got string")),
            (r#"merge_maps(attributes, ParseJSON("{nope"), "upsert")"#, Err("ParseJSON: ")),
        ]);
    }

    #[test]
    fn flatten_maps() {
        let rest = "a=old path=/user/42/list/7 other=/health i=3";
        table(&[
            (r#"flatten(attributes)"#, Ok(&format!("{rest} nested.x=1 nested.deep.y=z nested.list.0=p"))),
            (
                r#"flatten(attributes, "app")"#,
                Ok(
                    "app.a=old app.path=/user/42/list/7 app.other=/health app.i=3 app.nested.x=1 app.nested.deep.y=z app.nested.list.0=p",
                ),
            ),
            (
                r#"flatten(attributes, "", 1)"#,
                Ok(&format!(r#"{rest} nested.x=1 nested.deep={{"y":"z"}} nested.list=["p"]"#)),
            ),
            (r#"flatten(attributes, "", 0)"#, Ok(BEFORE)),
        ]);
    }

    #[test]
    fn set_takes_any_expression() {
        table(&[
            (r#"set(attributes["n"], Int("12"))"#, Ok(&format!("{BEFORE} n=12"))),
            (r#"set(attributes["a"], Int("abc"))"#, Ok(BEFORE)),
            (r#"set(attributes["j"], ParseJSON(body))"#, Ok(&format!(r#"{BEFORE} j={{"a":"json","n":1.0}}"#))),
            (
                r#"set(attributes["parts"], Split(attributes["path"], "/"))"#,
                Ok(&format!(r#"{BEFORE} parts=["","user","42","list","7"]"#)),
            ),
            (
                r#"set(attributes["c"], Concat([attributes["a"], attributes["i"]], "-"))"#,
                Ok(&format!("{BEFORE} c=old-3")),
            ),
            (r#"set(attributes["l"], ["x", 2])"#, Ok(&format!(r#"{BEFORE} l=["x",2]"#))),
            (r#"set(attributes, ExtractPatterns(attributes["path"], "/user/(?P<user>[0-9]+)"))"#, Ok("user=42")),
            (r#"set(attributes, attributes["a"])"#, Err("set: a map can only be set to a map")),
            (
                r#"set(attributes["x"], ToLowerCase(attributes["i"]))"#,
                Err("ToLowerCase: expected a string but got int"),
            ),
            (r#"set(attributes["x"], "y") where ToLowerCase(attributes["i"]) == "3""#, Err("ToLowerCase")),
            (r#"set(attributes["x"], "y") where Len(attributes) == 5"#, Ok(&format!("{BEFORE} x=y"))),
        ]);
    }

    #[test]
    fn severity_number_from_text() {
        for (src, want) in [
            (r#"set(severity_number, SEVERITY_NUMBER_WARN) where IsMatch(severity_text, "(?i)^warn")"#, 13),
            (r#"set(severity_number, SEVERITY_NUMBER_INFO) where IsMatch(severity_text, "(?i)info")"#, 0),
            (r#"set(severity_number, Int(attributes["i"]) + 0)"#, -1),
            (r#"set(severity_number, Int(attributes["i"]))"#, 3),
            (r#"set(severity_number, Len(severity_text))"#, 7),
        ] {
            let Ok(st) = compile_statement(src, Context::LogRecord) else {
                assert_eq!(want, -1, "{src}");
                continue;
            };
            let mut l = log();
            st.run(&mut l).unwrap();
            assert_eq!(l.record.severity_number, want, "{src}");
        }
    }

    #[test]
    fn new_editors_check_their_arguments() {
        for (bad, msg) in [
            (r#"replace_match(attributes["p"], "[a-", "x")"#, "unclosed ["),
            (r#"replace_match(attributes["p"], "{a,b", "x")"#, "unclosed {"),
            (r#"replace_match(attributes, "*", "x")"#, "must be a path"),
            (r#"replace_match(attributes["p"], "*")"#, "replace_match takes 3 argument(s), got 2"),
            (r#"replace_all_matches(attributes["p"], "*", "x")"#, "needs a map"),
            (r#"merge_maps(attributes, body, "replace")"#, "is not \"insert\", \"update\" or \"upsert\""),
            (r#"merge_maps(attributes["a"], body, "upsert")"#, "needs a map"),
            (r#"merge_maps(attributes, body)"#, "merge_maps takes 3 argument(s), got 2"),
            (r#"flatten(attributes, "p", -1)"#, "depth must be a whole number"),
            (r#"flatten(attributes, 1)"#, "prefix must be a string"),
            (r#"flatten()"#, "flatten takes 1 to 3 arguments, got 0"),
            (r#"keep_keys(attributes, ["a", 1])"#, "needs a list of keys"),
        ] {
            let e = compile_statement(bad, Context::LogRecord).unwrap_err();
            assert!(e.message.contains(msg), "{bad}: {e}");
        }
    }
}
