//! The configuration error: where in which file, which key, and what was expected.

use std::fmt;
use std::sync::Arc;

/// A position in a configuration file (line and column are 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl Loc {
    pub fn start(file: &str) -> Loc {
        Loc { file: Arc::from(file), line: 1, column: 1 }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A configuration problem, reported as `file:line:column: key.path: message`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub loc: Option<Loc>,
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(loc: &Loc, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { loc: Some(loc.clone()), path: path.into(), message: message.into() }
    }

    pub fn file(name: &str, err: std::io::Error) -> ConfigError {
        ConfigError { loc: None, path: String::new(), message: format!("cannot read configuration file {name}: {err}") }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.loc {
            write!(f, "{loc}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A component's own check of its settings failed: the key it is about (dotted, relative to the
/// component, so the error can point at its line) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { key: key.into(), message: message.into() }
    }
}

impl From<(String, String)> for Invalid {
    fn from((key, message): (String, String)) -> Invalid {
        Invalid { key, message }
    }
}

/// The known name closest to `given`, if it is close enough to be a likely typo.
pub fn nearest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in known {
        let d = edit_distance(given, candidate);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.filter(|(d, c)| *d <= (c.len().max(given.len()) / 3).max(2)).map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `unknown key "x"` with a suggestion and the accepted keys.
pub fn unknown_key_message(given: &str, known: &[&str]) -> String {
    let mut msg = format!("unknown key \"{given}\"");
    if let Some(s) = nearest(given, known.iter().copied()) {
        msg.push_str(&format!("; did you mean \"{s}\"?"));
    }
    if known.is_empty() {
        msg.push_str(" (this component takes no settings)");
    } else {
        msg.push_str(&format!(" (expected one of: {})", known.join(", ")));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(nearest("endpiont", ["endpoint", "protocols"]), Some("endpoint"));
        assert_eq!(nearest("zzzzzz", ["endpoint", "protocols"]), None);
    }
}
