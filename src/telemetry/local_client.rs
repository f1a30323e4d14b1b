//! What `switchyard top` and `switchyard tap` share: a GET to a running switchyard's
//! self-metrics address, with its failures said plainly, and text from it made safe to print.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Duration;

/// GETs `path` (with its query) from `address` (`host:port`). The answer's headers must come
/// within 5 s; an answer other than 2xx is an error quoting what switchyard said.
pub async fn get(address: &str, path: &str) -> Result<http::Response<hyper::body::Incoming>, String> {
    let uri: http::Uri =
        format!("http://{address}{path}").parse().map_err(|_| format!("invalid address \"{address}\""))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| format!("{address}: no answer within 5 s"))?
        .map_err(|e| format!("cannot reach switchyard at {address}: {}", crate::cause::chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
    let text = body.ok().and_then(Result::ok).map(|b| b.to_bytes()).unwrap_or_default();
    let text = printable(String::from_utf8_lossy(&text[..text.len().min(2048)]).trim());
    Err(format!("{address} answered HTTP {status}: {text} (is it switchyard's self-metrics address?)"))
}

/// `text` with what could drive a terminal (control characters, C1 codes, bidirectional
/// overrides) written as `\u{…}` escapes, which stay valid inside a JSON string.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped() {
        assert_eq!(printable("a\u{1b}[2Jb\u{9b}c\u{202e}d\u{7f}"), "a\\u001b[2Jb\\u009bc\\u202ed\\u007f");
        let json = printable("{\"name\":\"x\u{85}y\"}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["name"], "x\u{85}y", "still the same JSON");
    }
}
