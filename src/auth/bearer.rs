//! The `bearertokenauth` extension: a static token (or several, or a file of them) that
//! receivers require in a header (`Authorization: Bearer <token>` by default) and exporters
//! send (the first one). A token file is read again when it changes, so a rotated token takes effect without a
//! restart.

use super::{Denied, Identity, ServerAuthenticator, same_secret};
use crate::pipeline::BoxFuture;
use crate::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenConfig {
    /// What precedes the token in the header (`Bearer`); empty: the header is the token alone.
    pub scheme: String,
    /// The header that carries it.
    pub header: String,
    pub token: Option<Secret>,
    /// Several tokens, any of which a client may send (an exporter sends the first).
    pub tokens: Vec<Secret>,
    /// A file holding the token (several: one per line), read again when it changes.
    pub filename: Option<PathBuf>,
}

impl Default for BearerTokenConfig {
    fn default() -> Self {
        BearerTokenConfig {
            scheme: "Bearer".into(),
            header: "Authorization".into(),
            token: None,
            tokens: Vec::new(),
            filename: None,
        }
    }
}

impl BearerTokenConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let sources = usize::from(self.token.is_some())
            + usize::from(!self.tokens.is_empty())
            + usize::from(self.filename.is_some());
        if sources != 1 {
            return Err(("token".into(), "give exactly one of token, tokens and filename".into()));
        }
        if http::HeaderName::try_from(self.header.as_str()).is_err() {
            return Err(("header".into(), format!("\"{}\" is not a valid header name", self.header)));
        }
        if self.scheme.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(("scheme".into(), "must be one word".into()));
        }
        if let Some(f) = &self.filename {
            read_tokens(f).map_err(|m| ("filename".to_string(), m))?;
        }
        for t in self.token.iter().chain(&self.tokens) {
            if t.expose().is_empty() || http::HeaderValue::from_str(&self.value_for(t.expose())).is_err() {
                return Err(("token".into(), "must be non-empty text that fits in a header".into()));
            }
        }
        Ok(())
    }

    /// The header value that carries `token`.
    fn value_for(&self, token: &str) -> String {
        if self.scheme.is_empty() { token.to_string() } else { format!("{} {token}", self.scheme) }
    }

    /// The server side: checks requests against the tokens.
    pub fn server(&self) -> Result<BearerTokenServer, String> {
        let server = BearerTokenServer { config: self.clone(), file: Mutex::new(FileTokens::default()) };
        server.tokens()?;
        Ok(server)
    }
}

/// The tokens of a file, with when they were read and the file's modification time then.
#[derive(Default)]
struct FileTokens {
    tokens: Vec<Secret>,
    checked: Option<Instant>,
    modified: Option<SystemTime>,
}

/// Reads a token file: one token per line, blank lines ignored.
fn read_tokens(path: &std::path::Path) -> Result<Vec<Secret>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tokens: Vec<Secret> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(Secret::new).collect();
    if tokens.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    Ok(tokens)
}

#[derive(Debug)]
pub struct BearerTokenServer {
    config: BearerTokenConfig,
    file: Mutex<FileTokens>,
}

impl std::fmt::Debug for FileTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTokens").field("tokens", &self.tokens.len()).finish()
    }
}

impl BearerTokenServer {
    /// The tokens accepted now: the file's are read again (at most once a second) when its
    /// modification time changed; a file that cannot be read keeps the previous tokens.
    pub fn tokens(&self) -> Result<Vec<Secret>, String> {
        let Some(path) = &self.config.filename else {
            return Ok(self.config.token.iter().chain(&self.config.tokens).cloned().collect());
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            file.checked = Some(Instant::now());
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if file.tokens.is_empty() || modified != file.modified {
                match read_tokens(path) {
                    Ok(tokens) => {
                        if !file.tokens.is_empty() {
                            tracing::info!(file = %path.display(), "bearer token file changed: read again");
                        }
                        file.tokens = tokens;
                        file.modified = modified;
                    }
                    Err(e) if file.tokens.is_empty() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the bearer token file again; keeping the previous tokens")
                    }
                }
            }
        }
        Ok(file.tokens.clone())
    }
}

impl super::client::ClientAuthenticator for BearerTokenServer {
    fn apply<'a>(
        &'a self,
        headers: &'a mut http::HeaderMap,
        _context: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<(), crate::pipeline::ExportError>> {
        Box::pin(async move {
            let permanent = |reason: String| crate::pipeline::ExportError::Permanent { reason };
            let tokens = self.tokens().map_err(permanent)?;
            let token = tokens.first().ok_or_else(|| permanent("bearertokenauth has no token".into()))?;
            let name = http::HeaderName::try_from(self.config.header.as_str()).map_err(|e| permanent(e.to_string()))?;
            let mut value = http::HeaderValue::from_str(&self.config.value_for(token.expose()))
                .map_err(|_| permanent("the token does not fit in a header".into()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
            Ok(())
        })
    }

    fn secrets(&self) -> Vec<String> {
        self.tokens().unwrap_or_default().iter().map(|t| t.expose().to_string()).collect()
    }
}

impl ServerAuthenticator for BearerTokenServer {
    fn authenticate<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, Result<Identity, Denied>> {
        Box::pin(async move {
            let got = super::header(headers, &self.config.header)?;
            let tokens = self.tokens().map_err(Denied)?;
            if tokens.iter().any(|t| same_secret(got.as_bytes(), self.config.value_for(t.expose()).as_bytes())) {
                return Ok(Identity::default());
            }
            let scheme = &self.config.scheme;
            if !scheme.is_empty() && !got.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme)) {
                return Err(Denied(format!("the {} header does not hold a {scheme} token", self.config.header)));
            }
            Err(Denied("the token is not one of the accepted ones".into()))
        })
    }

    fn challenge(&self) -> &str {
        if self.config.scheme.is_empty() { "Bearer" } else { &self.config.scheme }
    }

    fn credential_header(&self) -> &str {
        &self.config.header
    }
}

/// The `bearertokenauth` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<BearerTokenConfig>(
    "bearertokenauth",
    "a static bearer token that receivers require and exporters send",
);

impl crate::pipeline::component::ExtensionSettings for BearerTokenConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        BearerTokenConfig::validate(self).map_err(Into::into)
    }

    fn server_authenticator(&self) -> Option<Result<std::sync::Arc<dyn ServerAuthenticator>, String>> {
        Some(self.server().map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn ServerAuthenticator>))
    }

    fn client_authenticator(&self) -> Option<Result<std::sync::Arc<dyn super::client::ClientAuthenticator>, String>> {
        Some(self.server().map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn super::client::ClientAuthenticator>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::try_from(*k).unwrap(), http::HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    async fn check(cfg: &BearerTokenConfig, pairs: &[(&str, &str)]) -> Result<(), String> {
        cfg.server().unwrap().authenticate(&headers(pairs)).await.map(|_| ()).map_err(|d| d.0)
    }

    #[tokio::test]
    async fn tokens_schemes_headers_and_files() {
        let cfg = BearerTokenConfig { tokens: vec![Secret::new("one"), Secret::new("two")], ..Default::default() };
        cfg.validate().unwrap();
        assert!(check(&cfg, &[("authorization", "Bearer two")]).await.is_ok());
        let wrong = check(&cfg, &[("authorization", "Bearer three")]).await.unwrap_err();
        assert!(!wrong.contains("three"), "the credential is never in the reason: {wrong}");
        assert!(check(&cfg, &[]).await.unwrap_err().contains("no Authorization header"));
        assert!(check(&cfg, &[("authorization", "Basic dXNlcjpwYXNz")]).await.unwrap_err().contains("Bearer token"));

        let custom = BearerTokenConfig {
            scheme: String::new(),
            header: "X-Api-Key".into(),
            token: Some(Secret::new("k")),
            ..Default::default()
        };
        assert!(check(&custom, &[("x-api-key", "k")]).await.is_ok());
        assert!(check(&custom, &[("authorization", "k")]).await.is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let filed = BearerTokenConfig { filename: Some(path.clone()), ..Default::default() };
        filed.validate().unwrap();
        let server = filed.server().unwrap();
        assert!(server.authenticate(&headers(&[("authorization", "Bearer first")])).await.is_ok());
        std::fs::write(&path, "second\nthird\n").unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        server.file.lock().unwrap().checked = None;
        assert!(server.authenticate(&headers(&[("authorization", "Bearer third")])).await.is_ok());
        assert!(server.authenticate(&headers(&[("authorization", "Bearer first")])).await.is_err());

        let none = BearerTokenConfig::default();
        assert_eq!(none.validate().unwrap_err().0, "token");
    }
}
