//! A YAML tree that remembers where every value came from, so that errors can name the file,
//! line and column. Built from the event stream of `saphyr-parser`, which gives positions that
//! the serde-level YAML crates do not expose once files are merged.

use super::error::{ConfigError, Loc};
use super::expand::expand_noting;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;
use std::sync::Arc;

/// One value of the configuration tree and where it was written.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Null,
    /// A scalar after `${…}` expansion; `plain` scalars may be read as numbers or booleans.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys with their own positions, in file order.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

impl Node {
    pub fn null(loc: Loc) -> Node {
        Node { kind: NodeKind::Null, loc }
    }

    /// The same value, wherever each was written (locations are not compared).
    pub fn same(&self, other: &Node) -> bool {
        match (&self.kind, &other.kind) {
            (NodeKind::Null, NodeKind::Null) => true,
            (NodeKind::Scalar { value: a, plain: pa }, NodeKind::Scalar { value: b, plain: pb }) => a == b && pa == pb,
            (NodeKind::Seq(a), NodeKind::Seq(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y)),
            (NodeKind::Map(a), NodeKind::Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka.name == kb.name && va.same(vb))
            }
            _ => false,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    /// The entries of a mapping; `None` for anything else.
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A short name for the kind of value, for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// Parses the first document of `text`; an empty file is an empty mapping.
pub fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    parse_noting(file, text).map(|(node, _)| node)
}

/// As `parse`, with a notice for every value whose `${env:…}` names an unset variable without
/// a default (`file:line:column: key.path: …`), with the location of that value.
pub fn parse_noting(file: &str, text: &str) -> Result<(Node, Vec<(Loc, String)>), ConfigError> {
    build(file, text, true)
}

/// As `parse`, with values taken as written: no `${…}` expansion, `$$` stays `$$` (files that
/// are not switchyard configuration, such as a kubeconfig holding a password).
pub fn parse_literal(file: &str, text: &str) -> Result<Node, ConfigError> {
    build(file, text, false).map(|(node, _)| node)
}

fn build(file: &str, text: &str, expand: bool) -> Result<(Node, Vec<(Loc, String)>), ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        unset: Vec::new(),
        expand,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            ConfigError::new(
                &Loc { file: file.clone(), line: m.line(), column: m.col() + 1 },
                "",
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        if builder.event(event, span)? {
            break;
        }
    }
    let root = builder.root.unwrap_or_else(|| Node { kind: NodeKind::Map(Vec::new()), loc: Loc::start(&file) });
    Ok((root, builder.unset))
}

enum Frame {
    Seq { anchor: usize, node: Node },
    Map { anchor: usize, node: Node, key: Option<Key> },
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    /// Values that name an unset variable without a default (see `parse_noting`).
    unset: Vec<(Loc, String)>,
    /// Whether values get `${…}` expanded.
    expand: bool,
}

impl Builder {
    /// The key path of the value being placed (`exporters.otlp.headers.api-key`).
    fn path(&self) -> String {
        let parts: Vec<String> = self
            .stack
            .iter()
            .map(|f| match f {
                Frame::Map { key, .. } => key.as_ref().map(|k| k.name.clone()).unwrap_or_default(),
                Frame::Seq { node, .. } => match &node.kind {
                    NodeKind::Seq(items) => items.len().to_string(),
                    _ => String::new(),
                },
            })
            .collect();
        parts.join(".")
    }

    fn loc(&self, span: &Span) -> Loc {
        Loc { file: self.file.clone(), line: span.start.line(), column: span.start.col() + 1 }
    }

    /// Feeds one event; true once the first document is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, ConfigError> {
        let loc = self.loc(&span);
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let node = if plain && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                    Node::null(loc)
                } else {
                    Node { kind: NodeKind::Scalar { value: value.into_owned(), plain }, loc }
                };
                self.value(anchor, node, true)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    ConfigError::new(&loc, "", "alias refers to an anchor that is not defined before it")
                })?;
                self.value(0, node, false)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { anchor, node: Node { kind: NodeKind::Seq(Vec::new()), loc } });
                Ok(false)
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { anchor, node: Node { kind: NodeKind::Map(Vec::new()), loc }, key: None });
                Ok(false)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, node) = match self.stack.pop() {
                    Some(Frame::Seq { anchor, node }) | Some(Frame::Map { anchor, node, .. }) => (anchor, node),
                    None => return Ok(false),
                };
                self.value(anchor, node, false)
            }
            Event::DocumentEnd => Ok(self.root.is_some()),
            _ => Ok(false),
        }
    }

    /// Places a finished node; `from_scalar` scalars in value position get `${…}` expanded
    /// (keys are never expanded, as in the collector).
    fn value(&mut self, anchor: usize, mut node: Node, from_scalar: bool) -> Result<bool, ConfigError> {
        let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
        if from_scalar
            && !is_key
            && self.expand
            && let NodeKind::Scalar { value, .. } = &mut node.kind
        {
            let mut unset = Vec::new();
            *value = expand_noting(value, |name| std::env::var(name).ok(), &mut unset);
            for name in unset {
                let key = self.path();
                let l = &node.loc;
                let notice = format!(
                    "{}:{}:{}: {key}: {name} is not set and has no default: the value is empty",
                    l.file, l.line, l.column
                );
                self.unset.push((l.clone(), notice));
            }
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(false)
            }
            Some(Frame::Seq { node: parent, .. }) => {
                if let NodeKind::Seq(items) = &mut parent.kind {
                    items.push(node);
                }
                Ok(false)
            }
            Some(Frame::Map { node: parent, key, .. }) => match key.take() {
                None => {
                    let name = match &node.kind {
                        NodeKind::Scalar { value, .. } => value.clone(),
                        NodeKind::Null => String::new(),
                        _ => {
                            return Err(ConfigError::new(&node.loc, "", "mapping keys must be plain names"));
                        }
                    };
                    if let NodeKind::Map(entries) = &parent.kind
                        && entries.iter().any(|(k, _)| k.name == name)
                    {
                        return Err(ConfigError::new(&node.loc, "", format!("key \"{name}\" appears twice")));
                    }
                    *key = Some(Key { name, loc: node.loc });
                    Ok(false)
                }
                Some(k) => {
                    if let NodeKind::Map(entries) = &mut parent.kind {
                        entries.push((k, node));
                    }
                    Ok(false)
                }
            },
        }
    }
}

/// Merges `overlay` onto `base`: mappings merge key by key, anything else is replaced.
pub fn merge(base: Node, overlay: Node) -> Node {
    match (base.kind, overlay.kind) {
        (NodeKind::Map(mut entries), NodeKind::Map(over)) => {
            for (k, v) in over {
                match entries.iter().position(|(bk, _)| bk.name == k.name) {
                    Some(i) => {
                        let (bk, bv) = entries.remove(i);
                        let _ = bk;
                        entries.insert(i, (k, merge(bv, v)));
                    }
                    None => entries.push((k, v)),
                }
            }
            Node { kind: NodeKind::Map(entries), loc: overlay.loc }
        }
        (_, kind) => Node { kind, loc: overlay.loc },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_types() {
        let n = parse("a.yaml", "x:\n  y: 5\n  z: \"5\"\n  n:\nl: [1, 2]\n").unwrap();
        let y = n.get("x").unwrap().get("y").unwrap();
        assert_eq!((y.loc.line, y.loc.column), (2, 6));
        assert!(matches!(&y.kind, NodeKind::Scalar { value, plain: true } if value == "5"));
        assert!(matches!(&n.get("x").unwrap().get("z").unwrap().kind, NodeKind::Scalar { plain: false, .. }));
        assert!(n.get("x").unwrap().get("n").unwrap().is_null());
        assert!(matches!(&n.get("l").unwrap().kind, NodeKind::Seq(v) if v.len() == 2));
    }

    #[test]
    fn merges_maps_deeply_and_replaces_lists() {
        let a = parse("a", "m: {x: 1, y: 2}\nl: [1, 2]\n").unwrap();
        let b = parse("b", "m: {y: 3}\nl: [9]\n").unwrap();
        let m = merge(a, b);
        assert_eq!(m.get("m").unwrap().get("x").unwrap().as_str(), Some("1"));
        assert_eq!(m.get("m").unwrap().get("y").unwrap().as_str(), Some("3"));
        assert_eq!(m.get("m").unwrap().get("y").unwrap().loc.file.as_ref(), "b");
        assert!(matches!(&m.get("l").unwrap().kind, NodeKind::Seq(v) if v.len() == 1));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let e = parse("bad.yaml", "a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("d.yaml", "a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.to_string(), "d.yaml:2:1: key \"a\" appears twice");
    }

    #[test]
    fn variables_expand_in_values_only() {
        let path = std::env::var("PATH").unwrap_or_default();
        let n = parse("a", "${PATH}: ${PATH}\n").unwrap();
        assert_eq!(n.get("${PATH}").and_then(Node::as_str), Some(path.as_str()));
    }

    #[test]
    fn anchors_and_aliases() {
        let n = parse("a", "x: &v {k: 1}\ny: *v\n").unwrap();
        assert_eq!(n.get("y").unwrap().get("k").unwrap().as_str(), Some("1"));
    }
}
