//! OTTL-style statements for the `transform` processor: `function(arguments) [where condition]`,
//! parsed and checked once. The functions: `set(target, value)`, `delete_key(map, "key")`,
//! `delete_matching_keys(map, "regex")`, `keep_keys(map, ["a", "b"])`,
//! `truncate_all(map, limit)`, `limit(map, count, ["keep"])`, `replace_pattern(target, "regex",
//! "replacement")`, `replace_all_patterns(map, "key"|"value", "regex", "replacement")`. Maps are
//! `attributes` and `resource.attributes`.

use super::expr::{Context, Expr, Field, Item, Parser, SyntaxError, Tok, Value, describe, lex, matches};
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
    List(Vec<String>, usize),
}

impl Parser {
    fn arg(&mut self) -> Result<Arg, SyntaxError> {
        let column = self.column();
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            let mut items = Vec::new();
            loop {
                match self.next() {
                    Some(Tok::Str(s)) => items.push(s),
                    Some(Tok::RBracket) if items.is_empty() => return Ok(Arg::List(items, column)),
                    _ => {
                        self.pos -= 1;
                        return self.err("expected a list of quoted strings");
                    }
                }
                match self.next() {
                    Some(Tok::Comma) => continue,
                    Some(Tok::RBracket) => return Ok(Arg::List(items, column)),
                    _ => {
                        self.pos -= 1;
                        return self.err("expected , or ] in the list");
                    }
                }
            }
        }
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
        Arg::Expr(_, c) | Arg::List(_, c) => {
            Err(SyntaxError { column: *c, message: format!("{func} needs a map: attributes or resource.attributes") })
        }
    }
}

fn want_target(arg: Arg, func: &str) -> Result<Field, SyntaxError> {
    match arg {
        Arg::Expr(Expr::Field(f), _) => Ok(f),
        Arg::Map(_, c) | Arg::Expr(_, c) | Arg::List(_, c) => Err(SyntaxError {
            column: c,
            message: format!("{func}'s first argument must be a path such as attributes[\"key\"] or name"),
        }),
    }
}

fn want_str(arg: &Arg, what: &str) -> Result<String, SyntaxError> {
    match arg {
        Arg::Expr(Expr::Literal(Value::Str(s)), _) => Ok(s.clone()),
        Arg::Map(_, c) | Arg::Expr(_, c) | Arg::List(_, c) => {
            Err(SyntaxError { column: *c, message: format!("{what} must be a string") })
        }
    }
}

fn want_int(arg: &Arg, what: &str) -> Result<usize, SyntaxError> {
    match arg {
        Arg::Expr(Expr::Literal(Value::Int(n)), _) if *n >= 0 => Ok(*n as usize),
        Arg::Map(_, c) | Arg::Expr(_, c) | Arg::List(_, c) => {
            Err(SyntaxError { column: *c, message: format!("{what} must be a whole number of 0 or more") })
        }
    }
}

fn want_regex(arg: &Arg) -> Result<Regex, SyntaxError> {
    let pattern = want_str(arg, "the pattern")?;
    let column = match arg {
        Arg::Map(_, c) | Arg::Expr(_, c) | Arg::List(_, c) => *c,
    };
    Regex::new(&pattern)
        .map_err(|e| SyntaxError { column, message: format!("invalid regular expression \"{pattern}\": {e}") })
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
            let target = want_target(it.next().expect("two"), "set")?;
            let value = match it.next().expect("two") {
                Arg::Expr(e, _) => e,
                Arg::Map(_, c) | Arg::List(_, c) => {
                    return Err(SyntaxError { column: c, message: "set's value must be a value".into() });
                }
            };
            Op::Set(target, value)
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
            let keys = match &args[1] {
                Arg::List(l, _) => l.clone(),
                Arg::Map(_, c) | Arg::Expr(_, c) => {
                    return Err(SyntaxError {
                        column: *c,
                        message: "keep_keys needs a list of keys, such as [\"a\", \"b\"]".into(),
                    });
                }
            };
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
                Some(Arg::List(l, _)) => l.clone(),
                None => Vec::new(),
                Some(Arg::Map(_, c) | Arg::Expr(_, c)) => {
                    return Err(SyntaxError {
                        column: *c,
                        message: "limit's third argument is a list of keys to keep".into(),
                    });
                }
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
                    let c = match &args[1] {
                        Arg::Map(_, c) | Arg::Expr(_, c) | Arg::List(_, c) => *c,
                    };
                    return Err(SyntaxError {
                        column: c,
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
        other => {
            return Err(SyntaxError {
                column,
                message: format!(
                    "unknown function {other} (known: set, delete_key, delete_matching_keys, keep_keys, truncate_all, limit, replace_pattern, replace_all_patterns)"
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
    let value = match v {
        Value::Nil => return None,
        Value::Bool(b) => any_value::Value::BoolValue(b),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Double(d) => any_value::Value::DoubleValue(d),
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Bytes(b) => any_value::Value::BytesValue(b),
        Value::Other(_) => return None,
    };
    Some(AnyValue { value: Some(value) })
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
    /// Runs the statement on `item` if its condition holds.
    pub fn run(&self, item: &mut dyn ItemMut) {
        if let Some(c) = &self.condition
            && !matches(c, item)
        {
            return;
        }
        match &self.op {
            Op::Set(target, value) => {
                let v = match value {
                    Expr::Literal(v) => v.clone(),
                    Expr::Field(f) => item.get(f),
                    other => Value::Bool(matches(other, item)),
                };
                set_field(item, target, v);
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
}
