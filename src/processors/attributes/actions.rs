//! Attribute actions, shared by the `attributes` and `resource` processors: insert, update,
//! upsert, delete, hash (SHA-256, hex), extract (named regex groups into attributes) and convert
//! (to int, double or string), on a key or on every key matching `pattern`; values from `value`
//! or `from_attribute`.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Insert,
    Update,
    Upsert,
    Delete,
    Hash,
    Extract,
    Convert,
}

/// A literal value in configuration: string, integer, float or boolean.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
}

impl Literal {
    fn any(&self) -> AnyValue {
        AnyValue {
            value: Some(match self {
                Literal::Bool(b) => any_value::Value::BoolValue(*b),
                Literal::Int(i) => any_value::Value::IntValue(*i),
                Literal::Double(d) => any_value::Value::DoubleValue(*d),
                Literal::Str(s) => any_value::Value::StringValue(s.clone()),
            }),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    #[serde(default)]
    pub key: Option<String>,
    /// A regular expression over keys (delete, hash, convert), or with named groups (extract).
    #[serde(default)]
    pub pattern: Option<String>,
    pub action: ActionKind,
    #[serde(default)]
    pub value: Option<Literal>,
    #[serde(default)]
    pub from_attribute: Option<String>,
    #[serde(default)]
    pub from_context: Option<String>,
    #[serde(default)]
    pub converted_type: Option<String>,
}

#[derive(Debug, Clone)]
enum Target {
    Key(String),
    Pattern(Regex),
}

#[derive(Debug, Clone)]
enum Source {
    Value(AnyValue),
    Attribute(String),
    /// A request header (gRPC metadata) of the client that sent the data, lower-cased.
    Context(String),
    None,
}

/// A checked action, ready to apply.
#[derive(Debug, Clone)]
pub struct Action {
    kind: ActionKind,
    target: Target,
    source: Source,
    /// extract: the regex with named groups.
    extract: Option<Regex>,
    convert: Option<&'static str>,
}

impl Action {
    /// Checks one configured action; errors name the key (relative to the action).
    pub fn new(cfg: &ActionConfig) -> Result<Action, (String, String)> {
        let kind = cfg.action;
        let regex = |p: &str| {
            Regex::new(p).map_err(|e| ("pattern".to_string(), format!("invalid regular expression \"{p}\": {e}")))
        };
        let (target, extract) = match (kind, &cfg.key, &cfg.pattern) {
            (ActionKind::Extract, Some(k), Some(p)) => {
                let re = regex(p)?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(("pattern".into(), "extract needs named groups, such as (?P<name>...)".into()));
                }
                (Target::Key(k.clone()), Some(re))
            }
            (ActionKind::Extract, _, _) => return Err(("pattern".into(), "extract needs key and pattern".into())),
            (_, Some(k), None) => (Target::Key(k.clone()), None),
            (ActionKind::Delete | ActionKind::Hash | ActionKind::Convert, None, Some(p)) => {
                (Target::Pattern(regex(p)?), None)
            }
            (_, Some(_), Some(_)) => return Err(("pattern".into(), "give key or pattern, not both".into())),
            (_, None, Some(_)) => {
                return Err(("pattern".into(), "pattern is for delete, hash, convert and extract".into()));
            }
            (_, None, None) => return Err(("key".into(), "is required".into())),
        };
        let upsert_like = matches!(kind, ActionKind::Insert | ActionKind::Update | ActionKind::Upsert);
        let source = match (&cfg.value, &cfg.from_attribute, &cfg.from_context) {
            (Some(v), None, None) if upsert_like => Source::Value(v.any()),
            (None, Some(a), None) if upsert_like => Source::Attribute(a.clone()),
            (None, None, Some(c)) if upsert_like => {
                // `metadata.<header>` as in the collector, or the bare header name; `auth.<name>`
                // for who the request was authenticated as (`auth.subject`, `auth.username`).
                let key = match c.strip_prefix("auth.") {
                    Some(name) => format!("auth.{name}"),
                    None => c.strip_prefix("metadata.").unwrap_or(c).to_ascii_lowercase(),
                };
                if key.is_empty() || key == "auth." {
                    return Err((
                        "from_context".into(),
                        format!("\"{c}\": use metadata.<request header name> or auth.<attribute>"),
                    ));
                }
                Source::Context(key)
            }
            _ if upsert_like => {
                return Err(("value".into(), "give exactly one of value, from_attribute and from_context".into()));
            }
            (None, None, None) => Source::None,
            _ => {
                return Err((
                    "value".into(),
                    format!("{kind:?} takes no value, from_attribute or from_context").to_lowercase(),
                ));
            }
        };
        let convert = match (kind, cfg.converted_type.as_deref()) {
            (ActionKind::Convert, Some("int")) => Some("int"),
            (ActionKind::Convert, Some("double")) => Some("double"),
            (ActionKind::Convert, Some("string")) => Some("string"),
            (ActionKind::Convert, other) => {
                return Err(("converted_type".into(), format!("{other:?} is not int, double or string")));
            }
            (_, Some(_)) => return Err(("converted_type".into(), "is only for action convert".into())),
            (_, None) => None,
        };
        Ok(Action { kind, target, source, extract, convert })
    }

    /// Applies the action to `attrs`; `context` is the client's request metadata, if known.
    pub fn apply(&self, attrs: &mut Vec<KeyValue>, context: Option<&[(String, String)]>) {
        let position = |attrs: &[KeyValue], k: &str| attrs.iter().position(|a| a.key == k);
        match (&self.target, self.kind) {
            (Target::Key(key), ActionKind::Insert | ActionKind::Update | ActionKind::Upsert) => {
                let value = match &self.source {
                    Source::Value(v) => v.clone(),
                    Source::Attribute(from) => match position(attrs, from).and_then(|i| attrs[i].value.clone()) {
                        Some(v) => v,
                        None => return,
                    },
                    Source::Context(key) => {
                        // Several values of one header are joined with `;`.
                        let values: Vec<&str> =
                            context.unwrap_or(&[]).iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
                        if values.is_empty() {
                            return;
                        }
                        AnyValue { value: Some(any_value::Value::StringValue(values.join(";"))) }
                    }
                    Source::None => return,
                };
                match (position(attrs, key), self.kind) {
                    (Some(i), ActionKind::Update | ActionKind::Upsert) => attrs[i].value = Some(value),
                    (None, ActionKind::Insert | ActionKind::Upsert) => {
                        attrs.push(KeyValue { key: key.clone(), value: Some(value), ..Default::default() })
                    }
                    _ => {}
                }
            }
            (target, ActionKind::Delete) => attrs.retain(|a| !self.targets(target, &a.key)),
            (target, ActionKind::Hash) => {
                for a in attrs.iter_mut().filter(|a| self.targets(target, &a.key)) {
                    a.value = Some(hash(a.value.as_ref()));
                }
            }
            (target, ActionKind::Convert) => {
                for a in attrs.iter_mut().filter(|a| self.targets(target, &a.key)) {
                    if let Some(v) = convert(a.value.as_ref(), self.convert.unwrap_or("string")) {
                        a.value = Some(v);
                    }
                }
            }
            (Target::Key(key), ActionKind::Extract) => {
                let Some(re) = &self.extract else { return };
                let Some(text) = position(attrs, key).and_then(|i| match attrs[i].value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                }) else {
                    return;
                };
                let Some(caps) = re.captures(&text) else { return };
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        let value = AnyValue { value: Some(any_value::Value::StringValue(m.as_str().to_string())) };
                        match position(attrs, name) {
                            Some(i) => attrs[i].value = Some(value),
                            None => {
                                attrs.push(KeyValue { key: name.to_string(), value: Some(value), ..Default::default() })
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn targets(&self, target: &Target, key: &str) -> bool {
        match target {
            Target::Key(k) => k == key,
            Target::Pattern(re) => re.is_match(key),
        }
    }
}

/// SHA-256 of the value as lowercase hex, with the collector's inputs: a string's bytes, an int
/// or double as 8 little-endian bytes, a bool as one byte, bytes as they are. Maps, lists and
/// empty values become the empty string.
fn hash(v: Option<&AnyValue>) -> AnyValue {
    let bytes: Vec<u8> = match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.as_bytes().to_vec(),
        Some(any_value::Value::IntValue(i)) => i.to_le_bytes().to_vec(),
        Some(any_value::Value::DoubleValue(d)) => d.to_bits().to_le_bytes().to_vec(),
        Some(any_value::Value::BoolValue(b)) => vec![u8::from(*b)],
        Some(any_value::Value::BytesValue(b)) => b.clone(),
        _ => return AnyValue { value: Some(any_value::Value::StringValue(String::new())) },
    };
    let digest = Sha256::digest(&bytes);
    AnyValue { value: Some(any_value::Value::StringValue(crate::hexfmt::hex(&digest))) }
}

/// The value as `to` (int, double, string); None when it cannot be (it is then left alone).
fn convert(v: Option<&AnyValue>, to: &str) -> Option<AnyValue> {
    use any_value::Value as V;
    let v = v?.value.as_ref()?;
    let out = match (v, to) {
        (V::StringValue(s), "int") => {
            V::IntValue(s.trim().parse().ok().or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64))?)
        }
        (V::DoubleValue(d), "int") => V::IntValue(*d as i64),
        (V::BoolValue(b), "int") => V::IntValue(i64::from(*b)),
        (V::IntValue(i), "int") => V::IntValue(*i),
        (V::StringValue(s), "double") => V::DoubleValue(s.trim().parse().ok()?),
        (V::IntValue(i), "double") => V::DoubleValue(*i as f64),
        (V::BoolValue(b), "double") => V::DoubleValue(if *b { 1.0 } else { 0.0 }),
        (V::DoubleValue(d), "double") => V::DoubleValue(*d),
        (V::StringValue(s), "string") => V::StringValue(s.clone()),
        (V::IntValue(i), "string") => V::StringValue(i.to_string()),
        (V::DoubleValue(d), "string") => V::StringValue(d.to_string()),
        (V::BoolValue(b), "string") => V::StringValue(b.to_string()),
        _ => return None,
    };
    Some(AnyValue { value: Some(out) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn action(yaml: serde_json::Value) -> Action {
        Action::new(&serde_json::from_value(yaml).unwrap()).unwrap()
    }

    fn get<'a>(attrs: &'a [KeyValue], k: &str) -> Option<&'a any_value::Value> {
        attrs.iter().find(|a| a.key == k).and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn insert_update_upsert_differ_on_existing_keys() {
        let base = vec![kv("env", s("dev"))];
        for (kind, existing, new) in [("insert", "dev", true), ("update", "prod", false), ("upsert", "prod", true)] {
            let mut a = base.clone();
            action(serde_json::json!({"key": "env", "value": "prod", "action": kind})).apply(&mut a, None);
            action(serde_json::json!({"key": "new", "value": 1, "action": kind})).apply(&mut a, None);
            assert_eq!(get(&a, "env"), Some(&s(existing)), "{kind}");
            assert_eq!(get(&a, "new").is_some(), new, "{kind}");
        }
        let mut a = vec![kv("from", s("x"))];
        action(serde_json::json!({"key": "to", "from_attribute": "from", "action": "insert"})).apply(&mut a, None);
        assert_eq!(get(&a, "to"), Some(&s("x")));
    }

    #[test]
    fn delete_and_hash_by_key_or_pattern() {
        let mut a = vec![kv("user.email", s("abc")), kv("password", s("x")), kv("secret_token", s("y"))];
        action(serde_json::json!({"key": "user.email", "action": "hash"})).apply(&mut a, None);
        action(serde_json::json!({"pattern": "^(password|secret_.*)$", "action": "delete"})).apply(&mut a, None);
        assert_eq!(a.len(), 1);
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(get(&a, "user.email"), Some(&s("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")));
    }

    #[test]
    fn extract_and_convert() {
        let mut a = vec![kv("http.url", s("https://shop.example/cart?id=42")), kv("count", s("17"))];
        action(serde_json::json!({"key": "http.url", "pattern": "^(?P<scheme>[a-z]+)://(?P<host>[^/]+)", "action": "extract"}))
            .apply(&mut a, None);
        action(serde_json::json!({"key": "count", "action": "convert", "converted_type": "int"})).apply(&mut a, None);
        assert_eq!(get(&a, "scheme"), Some(&s("https")));
        assert_eq!(get(&a, "host"), Some(&s("shop.example")));
        assert_eq!(get(&a, "count"), Some(&any_value::Value::IntValue(17)));
    }

    #[test]
    fn bad_actions_say_what_is_wrong() {
        let err = |j: serde_json::Value| Action::new(&serde_json::from_value(j).unwrap()).unwrap_err();
        assert_eq!(err(serde_json::json!({"key": "a", "action": "insert"})).0, "value");
        assert_eq!(err(serde_json::json!({"action": "delete"})).0, "key");
        assert_eq!(err(serde_json::json!({"key": "a", "pattern": "(x)", "action": "extract"})).0, "pattern");
        assert_eq!(
            err(serde_json::json!({"key": "a", "action": "convert", "converted_type": "float"})).0,
            "converted_type"
        );
        assert_eq!(err(serde_json::json!({"key": "a", "from_context": "auth.", "action": "upsert"})).0, "from_context");
    }

    #[test]
    fn from_context_reads_the_clients_request_metadata() {
        let mut a = Vec::new();
        action(serde_json::json!({"key": "tenant", "from_context": "metadata.X-Tenant", "action": "upsert"}))
            .apply(&mut a, Some(&[("x-tenant".to_string(), "acme".to_string())]));
        assert_eq!(get(&a, "tenant"), Some(&s("acme")));
    }
}
