//! A serde deserializer over the positioned YAML tree, so that typed component configs can be
//! plain `#[derive(Deserialize)]` structs while errors still name the file, line, column and key.

use super::error::{ConfigError, Loc, unknown_key_message};
use super::yaml::{Key, Node, NodeKind};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// Decodes `node` (found at key path `path`) into `T`.
pub fn from_node<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, ConfigError> {
    T::deserialize(NodeDe { node, path: path.to_string() }).map_err(|e| e.into_config(node, path))
}

/// An error on its way out of serde; the innermost node that saw it pins its position.
#[derive(Debug)]
pub struct DeError {
    message: String,
    at: Option<(Loc, String)>,
}

impl DeError {
    fn at(mut self, loc: &Loc, path: &str) -> DeError {
        if self.at.is_none() {
            self.at = Some((loc.clone(), path.to_string()));
        }
        self
    }

    fn into_config(self, node: &Node, path: &str) -> ConfigError {
        let (loc, path) = self.at.unwrap_or_else(|| (node.loc.clone(), path.to_string()));
        ConfigError { loc: Some(loc), path, message: self.message }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), at: None }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError { message: unknown_key_message(field, expected), at: None }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError { message: format!("unknown value \"{variant}\" (expected one of: {})", expected.join(", ")), at: None }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError { message: format!("missing required key \"{field}\""), at: None }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError { message: format!("expected {exp}, found {unexp}"), at: None }
    }
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Result<&'a str, DeError> {
        match &self.node.kind {
            NodeKind::Scalar { value, .. } => Ok(value),
            _ => Err(de::Error::custom(format!("expected a single value, found {}", self.node.describe()))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        let s = self.scalar()?;
        s.trim().parse().map_err(|_| de::Error::custom(format!("expected {what}, found \"{s}\"")))
    }

    fn pin(&self, e: DeError) -> DeError {
        e.at(&self.node.loc, &self.path)
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

macro_rules! parse_number {
    ($method:ident, $visit:ident, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.parse($what).map_err(|e| self.pin(e))?;
            visitor.$visit(v).map_err(|e| self.pin(e))
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Scalar { value, plain } => {
                if *plain {
                    if let Ok(b) = value.parse::<bool>() {
                        return visitor.visit_bool(b).map_err(|e| self.pin(e));
                    }
                    if let Ok(i) = value.parse::<i64>() {
                        return visitor.visit_i64(i).map_err(|e| self.pin(e));
                    }
                    if let Ok(f) = value.parse::<f64>() {
                        return visitor.visit_f64(f).map_err(|e| self.pin(e));
                    }
                }
                visitor.visit_str(value)
            }
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter(), path: &self.path, index: 0 }),
            NodeKind::Map(entries) => {
                visitor.visit_map(MapAccess { entries: entries.iter(), path: &self.path, value: None })
            }
        };
        r.map_err(|e| self.pin(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.parse("true or false").map_err(|e| self.pin(e))?;
        visitor.visit_bool(v).map_err(|e| self.pin(e))
    }

    parse_number!(deserialize_i8, visit_i8, "an integer");
    parse_number!(deserialize_i16, visit_i16, "an integer");
    parse_number!(deserialize_i32, visit_i32, "an integer");
    parse_number!(deserialize_i64, visit_i64, "an integer");
    parse_number!(deserialize_u8, visit_u8, "a non-negative integer");
    parse_number!(deserialize_u16, visit_u16, "a non-negative integer");
    parse_number!(deserialize_u32, visit_u32, "a non-negative integer");
    parse_number!(deserialize_u64, visit_u64, "a non-negative integer");
    parse_number!(deserialize_f32, visit_f32, "a number");
    parse_number!(deserialize_f64, visit_f64, "a number");

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = self.scalar().map_err(|e| self.pin(e))?;
        visitor.visit_str(s).map_err(|e| self.pin(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            let (loc, path) = (self.node.loc.clone(), self.path.clone());
            visitor.visit_some(self).map_err(|e| e.at(&loc, &path))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter(), path: &self.path, index: 0 }),
            NodeKind::Null => visitor.visit_seq(SeqAccess { items: [].iter(), path: &self.path, index: 0 }),
            _ => Err(de::Error::custom(format!("expected a list, found {}", self.node.describe()))),
        };
        r.map_err(|e| self.pin(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => {
                visitor.visit_map(MapAccess { entries: entries.iter(), path: &self.path, value: None })
            }
            NodeKind::Null => visitor.visit_map(MapAccess { entries: [].iter(), path: &self.path, value: None }),
            _ => {
                Err(de::Error::custom(format!("expected a mapping of keys to values, found {}", self.node.describe())))
            }
        };
        r.map_err(|e| self.pin(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let s = self.scalar().map_err(|e| self.pin(e))?;
        let d: de::value::StrDeserializer<'_, DeError> = s.into_deserializer();
        visitor.visit_enum(d).map_err(|e| self.pin(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    path: &'p str,
    index: usize,
}

impl<'de, 'a, 'p> de::SeqAccess<'de> for SeqAccess<'a, 'p> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path: path.clone() }).map(Some).map_err(|e| e.at(&node.loc, &path))
    }
}

struct MapAccess<'a, 'p> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    path: &'p str,
    value: Option<(&'a Node, String)>,
}

impl<'de, 'a, 'p> de::MapAccess<'de> for MapAccess<'a, 'p> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let path = child_path(self.path, &key.name);
        let k = seed
            .deserialize(de::value::StrDeserializer::<DeError>::new(&key.name))
            .map_err(|e| e.at(&key.loc, &path))?;
        self.value = Some((value, path));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path) = self.value.take().ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(NodeDe { node, path: path.clone() }).map_err(|e| e.at(&node.loc, &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        endpoint: String,
        size: u32,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Inner,
        list: Vec<String>,
        flag: Option<bool>,
        mode: Mode,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Basic,
        Detailed,
    }

    fn load(text: &str) -> Result<Outer, ConfigError> {
        let n = parse("t.yaml", text).unwrap();
        from_node(&n, "root")
    }

    #[test]
    fn decodes_typed_values() {
        let o = load("inner: {endpoint: 'a:1', size: 5}\nlist: [x, y]\nflag: true\nmode: detailed\n").unwrap();
        assert_eq!(o.inner.endpoint, "a:1");
        assert_eq!(o.inner.size, 5);
        assert_eq!(o.list, vec!["x", "y"]);
        assert_eq!(o.flag, Some(true));
        assert_eq!(o.mode, Mode::Detailed);
    }

    #[test]
    fn unknown_key_names_position_path_and_suggestion() {
        let e = load("inner:\n  endpiont: x\nlist: []\nmode: basic\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.yaml:2:3: root.inner.endpiont: unknown key \"endpiont\"; did you mean \"endpoint\"? (expected one of: endpoint, size)"
        );
    }

    #[test]
    fn wrong_type_names_the_value() {
        let e = load("inner:\n  size: big\nlist: []\nmode: basic\n").unwrap_err();
        assert_eq!(e.to_string(), "t.yaml:2:9: root.inner.size: expected a non-negative integer, found \"big\"");
        let e = load("inner: {}\nlist: []\nmode: loud\n").unwrap_err();
        assert!(e.to_string().starts_with("t.yaml:3:7: root.mode: unknown value \"loud\""), "{e}");
    }

    #[test]
    fn missing_key_is_reported_on_the_parent() {
        let e = load("inner: {}\nlist: []\n").unwrap_err();
        assert_eq!(e.to_string(), "t.yaml:1:1: root: missing required key \"mode\"");
    }
}
