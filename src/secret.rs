//! Secrets in configuration: values that are never printed ([`Secret`]), URLs that are printed
//! with their user info redacted ([`SecretUrl`], [`redact_url`], [`redact_urls`]), and the user
//! info of an exporter URL sent as HTTP basic auth ([`basic_auth_from_userinfo`]), as Go's HTTP
//! client does it for the collector.
//!
//! A [`Scrubber`] holds one exporter's secret values and takes them out of the reasons its
//! failures are logged with, since a backend may quote the credentials it refused.
//!
//! Redacting a URL replaces its whole user info, user name included, by `xxxxx`
//! (`http://xxxxx@host:4318/v1/traces`): tokens are often passed as the user name.

use base64::Engine;
use http::{HeaderName, HeaderValue, Uri, header};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// What a secret value prints as.
pub const REDACTED: &str = "[REDACTED]";

/// What the user info of a printed URL is replaced by.
pub const USERINFO_MASK: &str = "xxxxx";

/// A configuration value that must not be printed (a password, an API key, a header value):
/// `Debug` and `Display` show `[REDACTED]`; [`Secret::expose`] gives the value to whoever
/// must send it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the request that carries it; never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// A URL from configuration that may carry credentials in its user info: `Debug` and
/// `Display` print it with the user info redacted; [`SecretUrl::expose`] gives it whole.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as configured, user info included; for parsing and dialling, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*redact_url(&self.0), f)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> SecretUrl {
        SecretUrl(s.to_string())
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> SecretUrl {
        SecretUrl(s)
    }
}

/// `url` with its user info (everything before the last `@` of the authority) replaced by
/// `xxxxx`, and the value of every query parameter too (`?dd-api-key=xxxxx`: vendors take keys
/// there); a URL without a scheme (`user:pass@host:4317`) is read as an authority. A string
/// that does not parse as a URI but holds an `@` is redacted up to its last `@`, since where
/// its authority ends cannot be known.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    match redact_userinfo(url) {
        Cow::Borrowed(b) => mask_query(b),
        Cow::Owned(o) => Cow::Owned(mask_query(&o).into_owned()),
    }
}

/// `url` with the value of every query parameter replaced by `xxxxx`.
fn mask_query(url: &str) -> Cow<'_, str> {
    let Some(q) = url.find('?') else { return Cow::Borrowed(url) };
    let end = url[q..].find('#').map_or(url.len(), |i| q + i);
    let masked: Vec<String> = url[q + 1..end]
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !v.is_empty() => format!("{k}={USERINFO_MASK}"),
            _ => kv.to_string(),
        })
        .collect();
    Cow::Owned(format!("{}?{}{}", &url[..q], masked.join("&"), &url[end..]))
}

/// `url` with its user info replaced (see `redact_url`).
fn redact_userinfo(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..end].rfind('@') {
        Some(at) => Some(at),
        None if url.parse::<Uri>().is_err() => rest.rfind('@'),
        None => None,
    };
    match at {
        Some(at) => Cow::Owned(format!("{}{USERINFO_MASK}{}", &url[..start], &rest[at..])),
        None => Cow::Borrowed(url),
    }
}

/// `text` with the user info of every `scheme://` URL in it redacted, for messages that come
/// from elsewhere (a library's error, a backend's answer) and may quote a URL.
pub fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str(USERINFO_MASK);
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One component's secret values, to be taken out of text that came from elsewhere (a backend's
/// answer quoting the credentials it refused). Values shorter than [`Scrubber::MIN_LEN`] are
/// left alone: replacing them everywhere would garble messages more than it protects.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so that a secret containing another is replaced whole.
    values: std::sync::Arc<[String]>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} values)", self.values.len())
    }
}

impl Scrubber {
    pub const MIN_LEN: usize = 4;

    /// A scrubber for `secrets` and the URLs of `urls`' user info: each value as configured,
    /// its last word (the token of `Bearer <token>`), and for user info the user name and
    /// password, raw and percent-decoded, and the Basic credentials they make.
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = &'a Secret>,
        urls: impl IntoIterator<Item = &'a SecretUrl>,
    ) -> Scrubber {
        let mut values: Vec<String> = Vec::new();
        let mut add = |v: &str| {
            values.push(v.to_string());
            if let Some(word) = v.split_whitespace().last() {
                values.push(word.to_string());
            }
        };
        for s in secrets {
            add(s.expose());
        }
        for u in urls {
            let Ok(uri) = u.expose().parse::<Uri>() else { continue };
            // Query values (API keys in the URL), raw: errors quote the URL as it was sent.
            for kv in uri.query().unwrap_or_default().split('&') {
                if let Some((_, v)) = kv.split_once('=') {
                    add(v);
                }
            }
            let Some((userinfo, _)) = uri.authority().and_then(|a| a.as_str().rsplit_once('@')) else { continue };
            add(userinfo);
            for part in userinfo.split(':') {
                add(part);
                if let Some(decoded) = crate::percent::decode(part) {
                    add(&String::from_utf8_lossy(&decoded));
                }
            }
            if let Ok((_, Some(basic))) = basic_auth_from_userinfo(&uri)
                && let Ok(v) = basic.to_str()
            {
                add(v);
            }
        }
        values.retain(|v| v.len() >= Self::MIN_LEN);
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Scrubber { values: values.into() }
    }

    /// `text` with URL user info redacted and every secret value replaced by `[REDACTED]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = redact_urls(text);
        for v in self.values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), REDACTED));
            }
        }
        out
    }
}

/// A header value that holds a secret: marked sensitive, so HTTP/2 never indexes it and its
/// `Debug` form hides it.
pub fn header_value(value: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut v = HeaderValue::try_from(value)?;
    v.set_sensitive(true);
    Ok(v)
}

/// Configured headers as sent: names checked, every value marked sensitive. The error names
/// the header, never its value.
pub fn headers<'a>(
    configured: impl IntoIterator<Item = (&'a String, &'a Secret)>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    configured
        .into_iter()
        .map(|(k, v)| {
            let name = HeaderName::try_from(k.as_str()).map_err(|_| format!("header {k}: invalid header name"))?;
            let value = header_value(v.expose()).map_err(|_| format!("header {k}: invalid header value"))?;
            Ok((name, value))
        })
        .collect()
}

/// Checks configured headers for `validate`: `(key, message)` naming the header, never its value.
pub fn check_headers<'a>(
    configured: impl IntoIterator<Item = (&'a String, &'a Secret)>,
) -> Result<(), (String, String)> {
    for (name, value) in configured {
        HeaderName::try_from(name.as_str()).map_err(|_| (format!("headers.{name}"), "invalid header name".into()))?;
        HeaderValue::try_from(value.expose())
            .map_err(|_| (format!("headers.{name}"), "invalid header value".into()))?;
    }
    Ok(())
}

/// True when `headers` already set `Authorization`.
pub fn has_authorization(headers: &[(HeaderName, HeaderValue)]) -> bool {
    headers.iter().any(|(k, _)| k == header::AUTHORIZATION)
}

/// `uri` without its user info, and the `Authorization: Basic` value the user info stands for
/// (user name and password percent-decoded, a missing password empty), as Go's HTTP client
/// sends it. The caller sends that value only when no Authorization header is configured: an
/// explicit header wins, as in Go (`send` sets basic auth from `URL.User` only when the request
/// has no Authorization header). Errors never quote the user info.
pub fn basic_auth_from_userinfo(uri: &Uri) -> Result<(Uri, Option<HeaderValue>), String> {
    let Some(authority) = uri.authority() else { return Ok((uri.clone(), None)) };
    let Some((userinfo, host)) = authority.as_str().rsplit_once('@') else { return Ok((uri.clone(), None)) };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let bad = || "the user info of the URL is not validly percent-encoded".to_string();
    let mut credentials = crate::percent::decode(user).ok_or_else(bad)?;
    credentials.push(b':');
    credentials.extend(crate::percent::decode(password).ok_or_else(bad)?);
    let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
    let value = header_value(&value).map_err(|_| bad())?;
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host.parse().map_err(|_| format!("invalid host \"{host}\""))?);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    let stripped = Uri::from_parts(parts).map_err(|_| format!("invalid URL {}", redact_url(&uri.to_string())))?;
    Ok((stripped, Some(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_redacted() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[REDACTED] [REDACTED]");
        assert_eq!(s.expose(), "hunter2");
        let u = SecretUrl::from("http://me:hunter2@host:4318/v1");
        assert_eq!(format!("{u} {u:?}"), "http://xxxxx@host:4318/v1 \"http://xxxxx@host:4318/v1\"");
    }

    #[test]
    fn urls_lose_their_whole_userinfo() {
        assert_eq!(redact_url("https://user:pw@host:1/p?q=a@b"), "https://xxxxx@host:1/p?q=xxxxx");
        assert_eq!(
            redact_url("https://http-intake.logs.example/api/v2/logs?dd-api-key=k3y&ddsource=x#f"),
            "https://http-intake.logs.example/api/v2/logs?dd-api-key=xxxxx&ddsource=xxxxx#f",
            "vendors take keys in the query"
        );
        assert_eq!(redact_url("https://token@host"), "https://xxxxx@host");
        assert_eq!(redact_url("user:pw@host:4317"), "xxxxx@host:4317");
        assert_eq!(redact_url("http://host:1/p@q"), "http://host:1/p@q");
        assert_eq!(redact_url("http://u:p w@ho st/x"), "http://xxxxx@ho st/x");
        assert_eq!(redact_url("http://u:pa/ss@h st"), "http://xxxxx@h st", "unparsable: up to the last @");
        assert_eq!(
            redact_urls("POST http://a:b@h:1/x failed; then \"https://c@d/\" and ftp://e"),
            "POST http://xxxxx@h:1/x failed; then \"https://xxxxx@d/\" and ftp://e"
        );
    }

    #[test]
    fn a_scrubber_takes_out_what_a_backend_quotes() {
        let key = Secret::from("Bearer tok-123456");
        let short = Secret::from("on");
        let url = SecretUrl::from("http://me%40corp:pa%2Fss@host/x");
        let s = Scrubber::new([&key, &short], [&url]);
        assert_eq!(s.scrub("HTTP 401: bad token tok-123456 (on)"), "HTTP 401: bad token [REDACTED] (on)");
        assert_eq!(s.scrub("user me@corp, password pa/ss"), "user [REDACTED], password [REDACTED]");
        assert_eq!(s.scrub("got Basic bWVAY29ycDpwYS9zcw=="), "got [REDACTED]");
        assert_eq!(s.scrub("see http://a:b@h/"), "see http://xxxxx@h/");
    }

    #[test]
    fn userinfo_becomes_basic_auth_as_go_sends_it() {
        let uri: Uri = "http://us%65r:p%40ss%3Aw@127.0.0.1:4318/v1/traces?x=1".parse().unwrap();
        let (stripped, auth) = basic_auth_from_userinfo(&uri).unwrap();
        assert_eq!(stripped.to_string(), "http://127.0.0.1:4318/v1/traces?x=1");
        let auth = auth.unwrap();
        assert!(auth.is_sensitive());
        // Go: base64("user:p@ss:w")
        assert_eq!(auth.to_str().unwrap(), "Basic dXNlcjpwQHNzOnc=");
        let (_, only_user) = basic_auth_from_userinfo(&"http://token@h".parse().unwrap()).unwrap();
        assert_eq!(only_user.unwrap().to_str().unwrap(), "Basic dG9rZW46");
        let (same, none) = basic_auth_from_userinfo(&"http://h:1/x".parse().unwrap()).unwrap();
        assert_eq!((same.to_string().as_str(), none), ("http://h:1/x", None));
        let err = basic_auth_from_userinfo(&"http://u:s3cr%zz@h".parse().unwrap()).unwrap_err();
        assert!(!err.contains("s3cr"), "{err}");
    }
}
