//! CORS for HTTP receivers that browsers send to (OTLP/HTTP, Zipkin), with the collector's
//! `cors` keys: a preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed
//! origin is answered 204 with what may be sent; an actual request from one gets
//! `Access-Control-Allow-Origin` on its answer. Other origins get no CORS headers, so the
//! browser keeps the answer from the page. Preflights are answered before authentication (a
//! browser sends no credentials with them).

use crate::net::BoxBody;
use http::{HeaderValue, Method, StatusCode, header};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed (`https://app.example.com`); `*` allows every origin, and one `*` in an
    /// origin matches any text there (`https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Request headers a page may send besides the CORS-safelisted ones; `*` allows any.
    pub allowed_headers: Vec<String>,
    /// How long (seconds) a browser may keep a preflight's answer; 0 leaves it to the browser.
    pub max_age: u64,
}

/// Headers a page may always send (CORS-safelisted, or needed by every OTLP client).
const ALWAYS_ALLOWED: &[&str] = &[
    "accept",
    "accept-language",
    "content-language",
    "content-type",
    "content-encoding",
    "origin",
    "x-requested-with",
];

impl CorsConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let bad = o.is_empty() || o.matches('*').count() > 1 || (o != "*" && !o.contains("://"));
            if bad {
                return Err((
                    format!("cors.allowed_origins.{i}"),
                    format!("\"{o}\": expected *, or scheme://host[:port] with at most one *"),
                ));
            }
        }
        for (i, h) in self.allowed_headers.iter().enumerate() {
            if h != "*" && http::HeaderName::try_from(h.as_str()).is_err() {
                return Err((format!("cors.allowed_headers.{i}"), format!("\"{h}\" is not a header name")));
            }
        }
        Ok(())
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|pattern| match pattern.split_once('*') {
            None => pattern.eq_ignore_ascii_case(origin),
            Some(("", "")) => true,
            Some((pre, post)) => {
                origin.len() >= pre.len() + post.len()
                    && origin.get(..pre.len()).is_some_and(|p| p.eq_ignore_ascii_case(pre))
                    && origin.get(origin.len() - post.len()..).is_some_and(|p| p.eq_ignore_ascii_case(post))
            }
        })
    }

    fn allows_header(&self, name: &str) -> bool {
        let name = name.trim();
        ALWAYS_ALLOWED.iter().any(|h| h.eq_ignore_ascii_case(name))
            || self.allowed_headers.iter().any(|h| h == "*" || h.eq_ignore_ascii_case(name))
    }

    /// The answer to a preflight request, or `None` when `req` is not one (it goes on to the
    /// handler).
    pub fn preflight<B>(&self, req: &http::Request<B>) -> Option<http::Response<BoxBody>> {
        if req.method() != Method::OPTIONS {
            return None;
        }
        let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
        let method = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut r = crate::net::response(StatusCode::NO_CONTENT, "text/plain", "");
        r.headers_mut().remove(header::CONTENT_TYPE);
        let h = r.headers_mut();
        h.insert(
            header::VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        );
        let requested: Vec<String> = req
            .headers()
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        let method_ok = method == "POST" || method == "GET" || method == "HEAD";
        // Not allowed: an answer without CORS headers, which the browser takes as a refusal.
        if !self.allows_origin(origin) || !method_ok || !requested.iter().all(|r| self.allows_header(r)) {
            return Some(r);
        }
        if let Ok(v) = HeaderValue::from_str(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
        if !requested.is_empty()
            && let Ok(v) = HeaderValue::from_str(&requested.join(", "))
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if self.max_age > 0 {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        }
        Some(r)
    }

    /// The origin of `req` when it is an allowed one, to echo on the answer (see `decorate`).
    pub fn allowed_origin<B>(&self, req: &http::Request<B>) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN)?;
        self.allows_origin(origin.to_str().ok()?).then(|| origin.clone())
    }

    /// Adds the CORS headers of an actual request from `origin` to its answer.
    pub fn decorate(origin: Option<HeaderValue>, response: &mut http::Response<BoxBody>) {
        let h = response.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(o) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            // Let the page read the answer's retry advice.
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> CorsConfig {
        CorsConfig {
            allowed_origins: vec!["https://app.example.com".into(), "https://*.shop.example".into()],
            allowed_headers: vec!["X-Tenant".into()],
            max_age: 600,
        }
    }

    fn preflight(origin: &str, headers: &str) -> http::Request<()> {
        http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/traces")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
            .body(())
            .unwrap()
    }

    #[test]
    fn preflights_origins_and_headers() {
        let c = cors();
        c.validate().unwrap();
        let ok = c.preflight(&preflight("https://eu.shop.example", "content-type, x-tenant")).unwrap();
        assert_eq!(ok.status(), 204);
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://eu.shop.example");
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type, x-tenant");
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_MAX_AGE], "600");
        let other = c.preflight(&preflight("https://evil.example", "content-type")).unwrap();
        assert!(!other.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let header_not_allowed = c.preflight(&preflight("https://app.example.com", "x-secret")).unwrap();
        assert!(!header_not_allowed.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(!c.allows_origin("https://shop.example"), "the * needs its dot");
        let post =
            http::Request::post("/v1/traces").header(header::ORIGIN, "https://app.example.com").body(()).unwrap();
        assert!(c.preflight(&post).is_none());
        assert_eq!(c.allowed_origin(&post).unwrap(), "https://app.example.com");
        let bad = CorsConfig { allowed_origins: vec!["app.example.com".into()], ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().0, "cors.allowed_origins.0");
    }
}
