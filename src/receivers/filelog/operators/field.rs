//! Fields of a log record as the collector's operators name them: `body`, `body.a.b`,
//! `attributes.x`, `attributes["x.y"]`, `resource["k8s.pod.name"]` (a name without a root is
//! in the body), read, written, taken out.

use super::Record;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value::Value};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Body,
    Attributes,
    Resource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub root: Root,
    pub path: Vec<String>,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.root {
            Root::Body => "body",
            Root::Attributes => "attributes",
            Root::Resource => "resource",
        })?;
        for p in &self.path {
            if p.contains(['.', '[', ']', '"']) { write!(f, "[{p:?}]")? } else { write!(f, ".{p}")? }
        }
        Ok(())
    }
}

impl Field {
    pub fn body() -> Field {
        Field { root: Root::Body, path: Vec::new() }
    }

    pub fn attributes() -> Field {
        Field { root: Root::Attributes, path: Vec::new() }
    }

    pub fn attribute(key: &str) -> Field {
        Field { root: Root::Attributes, path: vec![key.to_string()] }
    }

    /// `body.a["b.c"]`, `attributes.x`, `resource["k"]`, or `a.b` (in the body).
    pub fn parse(text: &str) -> Result<Field, String> {
        let mut parts = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        let bad = |why: &str| {
            Err(format!(
                "\"{text}\" is not a field ({why}); write body.a.b, attributes.x or resource[\"k8s.pod.name\"]"
            ))
        };
        while i < b.len() {
            if b[i] == b'[' {
                let quote = match b.get(i + 1) {
                    Some(q @ (b'"' | b'\'')) => *q,
                    _ => return bad("a bracket must hold a quoted name"),
                };
                let Some(len) = text[i + 2..].find(quote as char) else { return bad("unclosed quote") };
                parts.push(text[i + 2..i + 2 + len].to_string());
                i += 2 + len + 1;
                if b.get(i) != Some(&b']') {
                    return bad("missing ]");
                }
                i += 1;
                if b.get(i) == Some(&b'.') {
                    i += 1;
                    if i == b.len() {
                        return bad("ends with a dot");
                    }
                }
            } else {
                let end = text[i..].find(['.', '[']).map_or(b.len(), |n| i + n);
                if end == i {
                    return bad("empty name");
                }
                parts.push(text[i..end].to_string());
                i = end;
                if b.get(i) == Some(&b'.') {
                    i += 1;
                    if i == b.len() {
                        return bad("ends with a dot");
                    }
                }
            }
        }
        if parts.is_empty() {
            return bad("empty");
        }
        let root = match parts[0].as_str() {
            "body" => Some(Root::Body),
            "attributes" => Some(Root::Attributes),
            "resource" => Some(Root::Resource),
            _ => None,
        };
        // A bracketed first part (`["body"]`) is a body key, not a root.
        let bracketed = text.starts_with('[');
        match root {
            Some(root) if !bracketed => Ok(Field { root, path: parts.split_off(1) }),
            _ => Ok(Field { root: Root::Body, path: parts }),
        }
    }

    pub fn get<'a>(&self, rec: &'a Record) -> Option<&'a AnyValue> {
        let (first, rest) = match self.root {
            Root::Body => return descend(rec.log.body.as_ref()?, &self.path),
            Root::Attributes => (map_get(&rec.log.attributes, self.path.first()?)?, &self.path[1..]),
            Root::Resource => (map_get(&rec.resource, self.path.first()?)?, &self.path[1..]),
        };
        descend(first, rest)
    }

    /// Removes the value, returning it. An attributes or resource root is emptied (as a map).
    pub fn take(&self, rec: &mut Record) -> Option<AnyValue> {
        let kvs: &mut Vec<KeyValue> = match self.root {
            Root::Body => {
                let Some((last, parents)) = self.path.split_last() else { return rec.log.body.take() };
                let parent = descend_mut(rec.log.body.as_mut()?, parents)?;
                return take_key(as_map_mut(parent)?, last);
            }
            Root::Attributes => &mut rec.log.attributes,
            Root::Resource => Arc::make_mut(&mut rec.resource),
        };
        let Some((last, parents)) = self.path.split_last() else {
            return Some(map_value(std::mem::take(kvs)));
        };
        let Some((first, middle)) = parents.split_first() else { return take_key(kvs, last) };
        let parent = descend_mut(map_get_mut(kvs, first)?, middle)?;
        take_key(as_map_mut(parent)?, last)
    }

    /// Writes `value`, making maps on the way. A map written to the attributes or resource root
    /// is merged into it; anything else there is an error.
    pub fn set(&self, rec: &mut Record, value: AnyValue) -> Result<(), String> {
        let kvs: &mut Vec<KeyValue> = match self.root {
            Root::Body => {
                let Some((last, parents)) = self.path.split_last() else {
                    rec.log.body = Some(value);
                    return Ok(());
                };
                let body = rec.log.body.get_or_insert_with(empty_map);
                let mut at = make_map(body);
                for p in parents {
                    at = make_map(entry(at, p));
                }
                put(at, last, value);
                return Ok(());
            }
            Root::Attributes => &mut rec.log.attributes,
            Root::Resource => Arc::make_mut(&mut rec.resource),
        };
        let Some((last, parents)) = self.path.split_last() else {
            return match value.value {
                Some(Value::KvlistValue(m)) => {
                    let values =
                        m.values.into_iter().map(|kv| KeyValue { value: Some(kv.value.unwrap_or_default()), ..kv });
                    put_all(kvs, values);
                    Ok(())
                }
                _ => Err(format!("only a map can be written to {self}")),
            };
        };
        let mut at = kvs;
        for p in parents {
            at = make_map(entry(at, p));
        }
        put(at, last, value);
        Ok(())
    }
}

pub fn empty_map() -> AnyValue {
    AnyValue { value: Some(Value::KvlistValue(KeyValueList::default())) }
}

pub fn map_value(values: Vec<KeyValue>) -> AnyValue {
    AnyValue { value: Some(Value::KvlistValue(KeyValueList { values })) }
}

pub fn map_get<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    kvs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

fn map_get_mut<'a>(kvs: &'a mut [KeyValue], key: &str) -> Option<&'a mut AnyValue> {
    kvs.iter_mut().find(|kv| kv.key == key).and_then(|kv| kv.value.as_mut())
}

fn as_map_mut(v: &mut AnyValue) -> Option<&mut Vec<KeyValue>> {
    match v.value.as_mut()? {
        Value::KvlistValue(m) => Some(&mut m.values),
        _ => None,
    }
}

fn descend<'a>(mut v: &'a AnyValue, path: &[String]) -> Option<&'a AnyValue> {
    for p in path {
        match v.value.as_ref()? {
            Value::KvlistValue(m) => v = map_get(&m.values, p)?,
            _ => return None,
        }
    }
    Some(v)
}

fn descend_mut<'a>(mut v: &'a mut AnyValue, path: &[String]) -> Option<&'a mut AnyValue> {
    for p in path {
        v = map_get_mut(as_map_mut(v)?, p)?;
    }
    Some(v)
}

fn take_key(kvs: &mut Vec<KeyValue>, key: &str) -> Option<AnyValue> {
    let i = kvs.iter().position(|kv| kv.key == key)?;
    Some(kvs.remove(i).value.unwrap_or_default())
}

/// The map in `v`, which becomes an empty map first if it holds anything else.
fn make_map(v: &mut AnyValue) -> &mut Vec<KeyValue> {
    if !matches!(v.value, Some(Value::KvlistValue(_))) {
        *v = empty_map();
    }
    match v.value.as_mut() {
        Some(Value::KvlistValue(m)) => &mut m.values,
        _ => unreachable!("just made a map"),
    }
}

/// The value under `key`, added (empty) if missing.
fn entry<'a>(kvs: &'a mut Vec<KeyValue>, key: &str) -> &'a mut AnyValue {
    let i = match kvs.iter().position(|kv| kv.key == key) {
        Some(i) => i,
        None => {
            kvs.push(KeyValue { key: key.to_string(), value: Some(AnyValue::default()), ..Default::default() });
            kvs.len() - 1
        }
    };
    kvs[i].value.get_or_insert_with(AnyValue::default)
}

pub fn put(kvs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match kvs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(value),
        None => kvs.push(KeyValue { key: key.to_string(), value: Some(value), ..Default::default() }),
    }
}

/// Puts every pair of `incoming` into `kvs` (a key already there takes the new value; of a key
/// given twice, the last), in time linear in both: a hostile line may carry a hundred thousand
/// keys, and looking each up along the list would take hours.
pub fn put_all(kvs: &mut Vec<KeyValue>, incoming: impl IntoIterator<Item = KeyValue>) {
    let mut index: Option<std::collections::HashMap<String, usize>> = None;
    for kv in incoming {
        if index.is_none() && kvs.len() >= 16 {
            index = Some(kvs.iter().enumerate().map(|(i, kv)| (kv.key.clone(), i)).collect());
        }
        let at = match &index {
            Some(index) => index.get(&kv.key).copied(),
            None => kvs.iter().position(|k| k.key == kv.key),
        };
        match at {
            Some(i) => kvs[i].value = kv.value,
            None => {
                if let Some(index) = &mut index {
                    index.insert(kv.key.clone(), kvs.len());
                }
                kvs.push(kv);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{as_str, string};

    #[test]
    fn field_syntax() {
        let f = |s: &str| Field::parse(s).unwrap();
        assert_eq!(f("body"), Field::body());
        assert_eq!(f("body.a.b").path, ["a", "b"]);
        assert_eq!(f("message"), Field { root: Root::Body, path: vec!["message".into()] });
        assert_eq!(f("attributes[\"log.file.path\"]"), Field::attribute("log.file.path"));
        assert_eq!(f("resource['k8s.pod.name']").root, Root::Resource);
        assert_eq!(f("resource[\"a.b\"].c").path, ["a.b", "c"]);
        assert_eq!(f("attributes.x").to_string(), "attributes.x");
        assert_eq!(f("attributes[\"x.y\"]").to_string(), "attributes[\"x.y\"]");
        for bad in ["", "body.", "body..a", "body[a]", "body[\"a\"", "attributes[\"a\"x"] {
            assert!(Field::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_get_take() {
        let mut rec = Record::default();
        rec.log.body = Some(string("text"));
        Field::parse("body.a.b").unwrap().set(&mut rec, string("1")).unwrap();
        assert_eq!(as_str(Field::parse("body.a.b").unwrap().get(&rec).unwrap()), Some("1"));
        Field::parse("attributes.x.y").unwrap().set(&mut rec, string("2")).unwrap();
        assert_eq!(as_str(Field::parse("attributes.x.y").unwrap().get(&rec).unwrap()), Some("2"));
        Field::parse("resource[\"k8s.pod.name\"]").unwrap().set(&mut rec, string("p")).unwrap();
        assert_eq!(rec.resource[0].key, "k8s.pod.name");
        let taken = Field::parse("body.a.b").unwrap().take(&mut rec).unwrap();
        assert_eq!(as_str(&taken), Some("1"));
        assert!(Field::parse("body.a.b").unwrap().get(&rec).is_none());
        assert!(Field::parse("body.nope.b").unwrap().take(&mut rec).is_none());
        assert!(Field::attributes().set(&mut rec, string("x")).is_err());
        Field::attributes().set(&mut rec, map_value(vec![crate::attributes::kv("m", string("v"))])).unwrap();
        assert_eq!(rec.log.attributes.len(), 2, "merged");
    }
}
