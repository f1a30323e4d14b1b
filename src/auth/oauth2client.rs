//! The `oauth2client` extension: exporters send an access token obtained with the OAuth2
//! client-credentials grant (RFC 6749 §4.4). The token is fetched at the first request, kept,
//! and fetched again `expiry_buffer` before it expires (at most halfway through its life), so
//! exports do not wait on the token endpoint. A failed refresh keeps using a token that is still
//! valid; without one, the export fails and is retried.

use super::client::ClientAuthenticator;
use crate::pipeline::{BoxFuture, ExportError};
use crate::secret::Secret;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2ClientConfig {
    pub client_id: String,
    /// A file holding the client id instead (read at each token request).
    pub client_id_file: Option<PathBuf>,
    pub client_secret: Option<Secret>,
    /// A file holding the client secret instead (read at each token request, so a rotated
    /// secret is used at the next refresh).
    pub client_secret_file: Option<PathBuf>,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Extra form parameters of the token request (`audience`, `resource`).
    pub endpoint_params: BTreeMap<String, StringOrList>,
    /// How long a token request may take (0: 30 s).
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub timeout: Duration,
    /// How long before expiry the token is fetched again.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub expiry_buffer: Duration,
    /// TLS to the token endpoint (the exporters' client settings).
    pub tls: crate::tls::client::TlsClientConfig,
}

/// A form parameter: one value or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl Default for OAuth2ClientConfig {
    fn default() -> Self {
        OAuth2ClientConfig {
            client_id: String::new(),
            client_id_file: None,
            client_secret: None,
            client_secret_file: None,
            token_url: String::new(),
            scopes: Vec::new(),
            endpoint_params: BTreeMap::new(),
            timeout: Duration::ZERO,
            expiry_buffer: Duration::from_secs(5 * 60),
            tls: Default::default(),
        }
    }
}

impl OAuth2ClientConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.client_id.is_empty() == self.client_id_file.is_none() {
            return Err(("client_id".into(), "give client_id or client_id_file".into()));
        }
        if self.client_secret.is_none() == self.client_secret_file.is_none() {
            return Err(("client_secret".into(), "give client_secret or client_secret_file".into()));
        }
        let uri: http::Uri =
            self.token_url.parse().map_err(|_| ("token_url".to_string(), "is required: a URL".to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(("token_url".into(), "expected an http(s) URL".into()));
        }
        for (key, file) in [("client_id_file", &self.client_id_file), ("client_secret_file", &self.client_secret_file)]
        {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err((key.into(), format!("cannot read {}", f.display())));
            }
        }
        self.tls.validate()?;
        Ok(())
    }

    fn timeout(&self) -> Duration {
        if self.timeout.is_zero() { Duration::from_secs(30) } else { self.timeout }
    }

    pub fn client(&self) -> Result<OAuth2Client, String> {
        let connector = self.tls.connector(crate::tls::client::Protocol::Http1, self.timeout())?;
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(OAuth2Client { config: self.clone(), http, token: tokio::sync::Mutex::new(None), last: Default::default() })
    }
}

type Http = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// An access token and when to fetch the next one.
struct Token {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

pub struct OAuth2Client {
    config: OAuth2ClientConfig,
    http: Http,
    token: tokio::sync::Mutex<Option<Token>>,
    /// The current token's value, for scrubbing failure reasons.
    last: std::sync::Mutex<Option<Secret>>,
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client").field("token_url", &self.config.token_url).finish()
    }
}

fn read_trimmed(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl OAuth2Client {
    /// Asks the token endpoint for a new token. The client authenticates with HTTP Basic
    /// (RFC 6749 §2.3.1); the reason of a failure never holds the secret.
    async fn fetch(&self) -> Result<Token, String> {
        let c = &self.config;
        let id = match &c.client_id_file {
            Some(f) => read_trimmed(f)?,
            None => c.client_id.clone(),
        };
        let secret = match (&c.client_secret_file, &c.client_secret) {
            (Some(f), _) => Secret::new(read_trimmed(f)?),
            (None, Some(s)) => s.clone(),
            (None, None) => return Err("no client secret".into()),
        };
        let mut body = String::from("grant_type=client_credentials");
        if !c.scopes.is_empty() {
            body.push_str(&format!("&scope={}", form(&c.scopes.join(" "))));
        }
        for (k, v) in &c.endpoint_params {
            let values = match v {
                StringOrList::One(s) => std::slice::from_ref(s),
                StringOrList::Many(list) => list.as_slice(),
            };
            for v in values {
                body.push_str(&format!("&{}={}", form(k), form(v)));
            }
        }
        let basic = format!("{}:{}", form(&id), form(secret.expose()));
        let mut auth =
            http::HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(basic)))
                .map_err(|_| "client_id does not fit in a header".to_string())?;
        auth.set_sensitive(true);
        let req = http::Request::post(&c.token_url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, auth)
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let url = crate::secret::redact_url(&c.token_url);
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| format!("token request to {url}: {}", crate::cause::chain(&e)))?;
            let status = resp.status();
            let bytes = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|e| format!("token answer from {url}: {e}"))?
                .to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if !status.is_success() {
                // RFC 6749 §5.2: `error` and `error_description` say why.
                let why = [json.get("error"), json.get("error_description")]
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(": ");
                return Err(format!(
                    "token endpoint {url} answered HTTP {status}{}",
                    if why.is_empty() { String::new() } else { format!(" ({why})") }
                ));
            }
            let value = json
                .get("access_token")
                .and_then(|v| v.as_str())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("token endpoint {url}: no access_token in the answer"))?;
            let lifetime = json
                .get("expires_in")
                .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                .filter(|s| s.is_finite());
            // Without expires_in the token is kept for an hour.
            let lifetime = Duration::from_secs_f64(lifetime.unwrap_or(3600.0).clamp(1.0, 365.0 * 86400.0));
            let early = c.expiry_buffer.min(lifetime / 2);
            let now = Instant::now();
            Ok(Token { value: Secret::new(value), refresh_at: now + lifetime - early, expires_at: now + lifetime })
        };
        tokio::time::timeout(self.config.timeout(), exchange)
            .await
            .map_err(|_| format!("token endpoint {url}: no answer within {:?}", self.config.timeout()))?
    }

    /// The token to send now, fetched when there is none or it is due for a refresh.
    async fn current(&self) -> Result<Secret, ExportError> {
        let mut slot = self.token.lock().await;
        let due = slot.as_ref().is_none_or(|t| Instant::now() >= t.refresh_at);
        if due {
            match self.fetch().await {
                Ok(token) => {
                    *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.value.clone());
                    *slot = Some(token);
                }
                Err(e) => match slot.as_mut() {
                    Some(t) if Instant::now() < t.expires_at => {
                        // Exports go on with it; the next refresh is tried in a while, not by
                        // every export.
                        let left = t.expires_at.saturating_duration_since(Instant::now());
                        t.refresh_at =
                            Instant::now() + (left / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
                        tracing::warn!(error = %e, "cannot refresh the OAuth2 token; using the current one until it expires");
                    }
                    _ => return Err(ExportError::Retryable { after: None, reason: e }),
                },
            }
        }
        Ok(slot.as_ref().map(|t| t.value.clone()).unwrap_or_default())
    }
}

impl ClientAuthenticator for OAuth2Client {
    fn apply<'a>(
        &'a self,
        headers: &'a mut http::HeaderMap,
        _context: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let token = self.current().await?;
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| ExportError::Permanent { reason: "the access token does not fit in a header".into() })?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
            Ok(())
        })
    }

    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.config.client_secret.iter().map(|s| s.expose().to_string()).collect();
        if let Some(t) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            out.push(t.expose().to_string());
        }
        out
    }
}

/// The `oauth2client` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<OAuth2ClientConfig>(
    "oauth2client",
    "exporters send an OAuth2 access token (client credentials grant), refreshed before it expires",
);

impl crate::pipeline::component::ExtensionSettings for OAuth2ClientConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        OAuth2ClientConfig::validate(self).map_err(Into::into)
    }

    fn client_authenticator(&self) -> Option<Result<std::sync::Arc<dyn ClientAuthenticator>, String>> {
        Some(self.client().map(|c| std::sync::Arc::new(c) as std::sync::Arc<dyn ClientAuthenticator>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form("a b/c&d=é"), "a+b%2Fc%26d%3D%C3%A9");
    }
}
