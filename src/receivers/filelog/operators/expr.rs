//! The conditions of `if`, router `expr` and recombine `is_first_entry`/`is_last_entry`: a
//! subset of the expression language the collector uses, compiled once at start. Names:
//! `body`, `attributes`, `resource` with `.key` and `["key"]`; literals: strings ("…" or '…'),
//! numbers, `true`, `false`, `nil`, lists (after `in`); operators: `==`, `!=`, `<`, `<=`, `>`,
//! `>=`, `matches` (a regex literal), `contains`, `startsWith`, `endsWith`, `in`, `and`/`&&`,
//! `or`/`||`, `not`/`!`, parentheses. Anything else is refused when the configuration is loaded.

use super::Record;
use super::field::{Field, Root};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value as V};

#[derive(Debug)]
pub struct Expr(Node);

#[derive(Debug)]
enum Node {
    Lit(Lit),
    List(Vec<Lit>),
    Field(Field),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(Box<Node>, Op, Box<Node>),
    Matches(Box<Node>, regex::Regex),
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
    EndsWith,
    In,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else { return Err("a string is not closed".into()) };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' {
                    let Some(&e) = chars.get(i) else { return Err("a string is not closed".into()) };
                    i += 1;
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        '\\' | '"' | '\'' => s.push(e),
                        // Kept as written, so "\d" reaches a regex as \d.
                        other => {
                            s.push('\\');
                            s.push(other);
                        }
                    }
                } else {
                    s.push(d);
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            out.push(if text.contains('.') {
                Tok::Float(text.parse().map_err(|_| format!("\"{text}\" is not a number"))?)
            } else {
                Tok::Int(text.parse().map_err(|_| format!("\"{text}\" is not a number"))?)
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let sym = ["==", "!=", "<=", ">=", "&&", "||"]
            .into_iter()
            .find(|s| *s == two)
            .or_else(|| ["<", ">", "!", "(", ")", "[", "]", ".", ","].into_iter().find(|s| s.starts_with(c)));
        match sym {
            Some(s) => {
                i += s.len();
                out.push(Tok::Sym(s));
            }
            None => return Err(format!("unexpected \"{c}\"")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x == w)
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.is_sym(s) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected \"{s}\"{}", self.here()))
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            None => " at the end".into(),
            Some(t) => format!(" at {}", show(t)),
        }
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut left = self.and()?;
        while self.is_word("or") || self.is_sym("||") {
            self.at += 1;
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut left = self.not()?;
        while self.is_word("and") || self.is_sym("&&") {
            self.at += 1;
            left = Node::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, String> {
        if self.is_word("not") || self.is_sym("!") {
            self.at += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Node, String> {
        let left = self.primary()?;
        let op = match self.peek() {
            Some(Tok::Sym("==")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Ident(w)) if w == "contains" => Op::Contains,
            Some(Tok::Ident(w)) if w == "startsWith" => Op::StartsWith,
            Some(Tok::Ident(w)) if w == "endsWith" => Op::EndsWith,
            Some(Tok::Ident(w)) if w == "in" => Op::In,
            Some(Tok::Ident(w)) if w == "matches" => {
                self.at += 1;
                let Some(Tok::Str(re)) = self.peek().cloned() else {
                    return Err(format!("matches takes a string literal regex{}", self.here()));
                };
                self.at += 1;
                let re = regex::Regex::new(&re).map_err(|e| format!("invalid regex \"{re}\": {e}"))?;
                return Ok(Node::Matches(Box::new(left), re));
            }
            _ => return Ok(left),
        };
        self.at += 1;
        let right = if op == Op::In {
            self.expect("[")?;
            let mut items = Vec::new();
            while !self.is_sym("]") {
                match self.primary()? {
                    Node::Lit(l) => items.push(l),
                    _ => return Err("`in` takes a list of literals, such as [\"a\", \"b\"]".into()),
                }
                if !self.is_sym("]") {
                    self.expect(",")?;
                }
            }
            self.at += 1;
            Node::List(items)
        } else {
            self.primary()?
        };
        Ok(Node::Cmp(Box::new(left), op, Box::new(right)))
    }

    fn primary(&mut self) -> Result<Node, String> {
        let Some(t) = self.peek().cloned() else { return Err("the expression ends too early".into()) };
        self.at += 1;
        Ok(match t {
            Tok::Sym("(") => {
                let inner = self.or()?;
                self.expect(")")?;
                inner
            }
            Tok::Str(s) => Node::Lit(Lit::Str(s)),
            Tok::Int(i) => Node::Lit(Lit::Int(i)),
            Tok::Float(f) => Node::Lit(Lit::Float(f)),
            Tok::Ident(w) => match w.as_str() {
                "true" => Node::Lit(Lit::Bool(true)),
                "false" => Node::Lit(Lit::Bool(false)),
                "nil" => Node::Lit(Lit::Nil),
                "body" | "attributes" | "resource" => {
                    let root = match w.as_str() {
                        "body" => Root::Body,
                        "attributes" => Root::Attributes,
                        _ => Root::Resource,
                    };
                    let mut path = Vec::new();
                    loop {
                        if self.is_sym(".") {
                            self.at += 1;
                            match self.peek().cloned() {
                                Some(Tok::Ident(k)) => path.push(k),
                                _ => return Err(format!("expected a name after \".\"{}", self.here())),
                            }
                            self.at += 1;
                        } else if self.is_sym("[") {
                            self.at += 1;
                            match self.peek().cloned() {
                                Some(Tok::Str(k)) => path.push(k),
                                _ => return Err(format!("expected a quoted key in [ ]{}", self.here())),
                            }
                            self.at += 1;
                            self.expect("]")?;
                        } else {
                            break;
                        }
                    }
                    if root != Root::Body && path.is_empty() {
                        return Err(format!("name a key of {w}, such as {w}.key or {w}[\"a.b\"]"));
                    }
                    Node::Field(Field { root, path })
                }
                other if self.is_sym("(") => {
                    return Err(format!("the function {other}() is not supported"));
                }
                other => {
                    return Err(format!(
                        "unknown name \"{other}\": use body, attributes or resource (timestamp and env() are not supported)"
                    ));
                }
            },
            other => return Err(format!("unexpected {}", show(&other))),
        })
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("\"{s}\""),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Sym(s) => format!("\"{s}\""),
    }
}

/// A value while evaluating.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Other(&'a AnyValue),
}

impl<'a> Val<'a> {
    fn of(v: Option<&'a AnyValue>) -> Val<'a> {
        match v.and_then(|v| v.value.as_ref().map(|x| (v, x))) {
            None => Val::Nil,
            Some((_, V::StringValue(s))) => Val::Str(s),
            Some((_, V::BoolValue(b))) => Val::Bool(*b),
            Some((_, V::IntValue(i))) => Val::Int(*i),
            Some((_, V::DoubleValue(d))) => Val::Float(*d),
            Some((v, _)) => Val::Other(v),
        }
    }

    fn lit(l: &'a Lit) -> Val<'a> {
        match l {
            Lit::Nil => Val::Nil,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Int(i) => Val::Int(*i),
            Lit::Float(f) => Val::Float(*f),
            Lit::Str(s) => Val::Str(s),
        }
    }

    fn num(self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(i as f64),
            Val::Float(f) => Some(f),
            _ => None,
        }
    }
}

fn equal(a: Val, b: Val) -> bool {
    match (a, b) {
        (Val::Nil, Val::Nil) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Other(x), Val::Other(y)) => x == y,
        (x, y) => matches!((x.num(), y.num()), (Some(p), Some(q)) if p == q),
    }
}

fn order(a: Val, b: Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
        (x, y) => x.num()?.partial_cmp(&y.num()?),
    }
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, String> {
        let toks = lex(src).map_err(|e| format!("expression \"{src}\": {e}"))?;
        let mut p = Parser { toks, at: 0 };
        let node = p.or().map_err(|e| format!("expression \"{src}\": {e}"))?;
        if p.at < p.toks.len() {
            return Err(format!("expression \"{src}\": unexpected{}", p.here()));
        }
        if matches!(node, Node::Lit(Lit::Int(_) | Lit::Float(_) | Lit::Str(_) | Lit::Nil) | Node::List(_)) {
            return Err(format!("expression \"{src}\" is not a condition (true or false)"));
        }
        Ok(Expr(node))
    }

    /// Whether the condition holds for `rec` (a value that is not a bool counts as false).
    pub fn test(&self, rec: &Record) -> bool {
        matches!(eval(&self.0, rec), Val::Bool(true))
    }
}

fn eval<'a>(n: &'a Node, rec: &'a Record) -> Val<'a> {
    match n {
        Node::Lit(l) => Val::lit(l),
        Node::List(_) => Val::Nil,
        Node::Field(f) => Val::of(f.get(rec)),
        Node::Not(x) => match eval(x, rec) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Bool(false),
        },
        Node::And(a, b) => {
            Val::Bool(matches!(eval(a, rec), Val::Bool(true)) && matches!(eval(b, rec), Val::Bool(true)))
        }
        Node::Or(a, b) => Val::Bool(matches!(eval(a, rec), Val::Bool(true)) || matches!(eval(b, rec), Val::Bool(true))),
        Node::Matches(x, re) => Val::Bool(matches!(eval(x, rec), Val::Str(s) if re.is_match(s))),
        Node::Cmp(a, op, b) => {
            let x = eval(a, rec);
            if let (Op::In, Node::List(items)) = (op, &**b) {
                return Val::Bool(items.iter().any(|l| equal(x, Val::lit(l))));
            }
            let y = eval(b, rec);
            use std::cmp::Ordering::*;
            Val::Bool(match op {
                Op::Eq => equal(x, y),
                Op::Ne => !equal(x, y),
                Op::Lt => order(x, y) == Some(Less),
                Op::Le => matches!(order(x, y), Some(Less | Equal)),
                Op::Gt => order(x, y) == Some(Greater),
                Op::Ge => matches!(order(x, y), Some(Greater | Equal)),
                Op::Contains => matches!((x, y), (Val::Str(s), Val::Str(t)) if s.contains(t)),
                Op::StartsWith => matches!((x, y), (Val::Str(s), Val::Str(t)) if s.starts_with(t)),
                Op::EndsWith => matches!((x, y), (Val::Str(s), Val::Str(t)) if s.ends_with(t)),
                Op::In => false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{int, kv, string};

    fn rec() -> Record {
        let mut r = Record::default();
        r.log.body = Some(super::super::field::map_value(vec![
            kv("level", string("error")),
            kv("code", int(503)),
            kv("msg", string("GET /health took 3ms")),
        ]));
        r.log.attributes = vec![kv("log.iostream", string("stderr")), kv("env", string("prod"))];
        r.resource = std::sync::Arc::new(vec![kv("k8s.namespace.name", string("shop"))]);
        r
    }

    #[test]
    fn conditions() {
        let r = rec();
        let mut text = Record::default();
        text.log.body = Some(string("2024-03-01 10:00:00 ERROR boom"));
        let cases: &[(&str, &Record, bool)] = &[
            (r#"body.level == "error""#, &r, true),
            (r#"body.level != 'error'"#, &r, false),
            (r#"body.code >= 500 and body.code < 600"#, &r, true),
            (r#"body.code == 503.0"#, &r, true),
            (r#"attributes["log.iostream"] == "stderr" && attributes.env == "prod""#, &r, true),
            (r#"resource["k8s.namespace.name"] == "shop""#, &r, true),
            (r#"attributes.missing == nil"#, &r, true),
            (r#"not (body.level == "info") or false"#, &r, true),
            (r#"!(body.level in ["error", "fatal"])"#, &r, false),
            (r#"body.msg contains "/health""#, &r, true),
            (r#"body.msg startsWith "GET" and body.msg endsWith "ms""#, &r, true),
            (r#"body matches "^\\d{4}-\\d{2}-\\d{2} ""#, &text, true),
            (r#"body matches "^\d{4}""#, &text, true),
            (r#"body matches "^\\s""#, &text, false),
            (r#"body matches "x""#, &r, false),
            (r#"body.level"#, &r, false),
            (r#"body.code > "a""#, &r, false),
        ];
        for (src, rec, want) in cases {
            let e = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(e.test(rec), *want, "{src}");
        }
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        for (src, why) in [
            ("timestamp > 0", "unknown name"),
            ("env(\"X\") == \"y\"", "not supported"),
            ("type(body) == \"map\"", "not supported"),
            ("body.level ==", "ends too early"),
            ("body.level = \"x\"", "unexpected"),
            ("body matches attributes.re", "string literal"),
            ("body matches \"(\"", "invalid regex"),
            ("attributes == nil", "name a key"),
            ("\"just a string\"", "not a condition"),
            ("body.a ?? 1", "unexpected"),
            ("(body.a == 1", "expected \")\""),
        ] {
            let e = Expr::parse(src).err().unwrap_or_else(|| panic!("{src} parsed"));
            assert!(e.contains(why), "{src}: {e}");
        }
    }
}
