//! `${env:VAR}`, `${env:VAR:-default}` and `${VAR}` expansion inside configuration values, as the
//! collector does it; `$$` stands for a literal `$`. An unset variable without a default expands
//! to the empty string.

/// Expands every reference in `input`, looking variables up with `lookup`, noting in `unset` the name of every variable that is unset and has no
/// default (it expanded to the empty string).
pub fn expand_noting(input: &str, lookup: impl Fn(&str) -> Option<String>, unset: &mut Vec<String>) -> String {
    if !input.contains('$') {
        return input.to_string();
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let reference = inner.strip_prefix("env:").unwrap_or(inner);
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            let value = lookup(name.trim()).filter(|v| !(default.is_some() && v.is_empty()));
            if value.is_none() && default.is_none() {
                unset.push(format!("${{{inner}}}"));
            }
            out.push_str(&value.or_else(|| default.map(str::to_string)).unwrap_or_default());
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
        expand_noting(input, lookup, &mut Vec::new())
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_all_forms() {
        assert_eq!(expand_with("${env:HOST}:4317", env), "db:4317");
        assert_eq!(expand_with("${HOST}", env), "db");
        assert_eq!(expand_with("${env:NOPE:-localhost}:1", env), "localhost:1");
        assert_eq!(expand_with("${env:EMPTY:-x}", env), "x");
        assert_eq!(expand_with("${env:NOPE}", env), "");
        let mut unset = Vec::new();
        assert_eq!(expand_noting("${env:NOPE}-${env:HOST}-${env:GONE:-d}", env, &mut unset), "-db-d");
        assert_eq!(unset, ["${env:NOPE}"], "only unset variables without a default, as written");
        assert_eq!(expand_with("cost $$5 and $x", env), "cost $5 and $x");
        assert_eq!(expand_with("${unterminated", env), "${unterminated");
    }
}
