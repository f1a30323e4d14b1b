//! Percent-encoding (`%XX`) as URLs, query strings and gRPC's `grpc-message` use it.

/// The byte two hex digits stand for (`from_str_radix` alone would take `+F`).
fn hex_byte(digits: &[u8]) -> Option<u8> {
    match digits {
        [a, b] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
            u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
        }
        _ => None,
    }
}

/// `%XX` escapes decoded; `None` for a malformed escape (as Go's URL parser refuses it).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(hex_byte(b.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `%XX` escapes decoded where they are well formed, the rest kept as it is, invalid UTF-8
/// replaced (for text shown to people, such as a `grpc-message`).
pub fn decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(hex_byte)) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` with everything but unreserved characters (RFC 3986: letters, digits, `-._~`) escaped,
/// for a query value or a path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `key=value` pairs of a query string (`+` is a space), decoded; a pair that does not
/// decode to UTF-8 is an error naming it.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    let text = |s: &str| {
        let spaced = s.replace('+', " ");
        decode(&spaced)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("malformed query parameter \"{s}\""))
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((text(k)?, text(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_strictly_or_lossily() {
        assert_eq!(decode("a%2Fb%20c").unwrap(), b"a/b c");
        assert_eq!(decode("bad%zz"), None);
        assert_eq!(decode("cut%2"), None);
        assert_eq!(decode("sign%+F"), None);
        assert_eq!(decode_lossy("sign%+F"), "sign%+F");
        assert_eq!(decode_lossy("50%25 off %zz%2"), "50% off %zz%2");
        assert_eq!(decode_lossy("caf%C3%A9"), "café");
        assert_eq!(encode("otlp/jaeger café"), "otlp%2Fjaeger%20caf%C3%A9");
        assert_eq!(decode(&encode("a&b=c+d")).unwrap(), b"a&b=c+d");
    }

    #[test]
    fn query_pairs_are_split_and_decoded() {
        assert_eq!(
            query_pairs("component=otlp%2Fjaeger&kind=exporter&flag&x=a+b").unwrap(),
            [("component", "otlp/jaeger"), ("kind", "exporter"), ("flag", ""), ("x", "a b")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(query_pairs("a=%ff").unwrap_err().contains("%ff"));
        assert!(query_pairs("").unwrap().is_empty());
    }
}
