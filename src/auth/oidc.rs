//! The `oidc` extension: receivers accept a JWT bearer token issued by an OpenID Connect
//! provider. The provider's keys come from its discovery document
//! (`<issuer_url>/.well-known/openid-configuration` → `jwks_uri`), fetched at the first request
//! and again when a token names a key not seen yet (at most every 10 s) or after an hour. A
//! token must verify with one of them, come from `issuer_url`, name `audience`, and be within
//! its `nbf`/`exp` window. Its subject (`username_claim`) is `auth.subject`, its groups
//! (`groups_claim`) `auth.membership`, and every other text claim `auth.claims.<name>`.

use super::jwt::{self, Jwk};
use super::{Denied, Identity, ServerAuthenticator};
use crate::pipeline::BoxFuture;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider; tokens' `iss` must be exactly this.
    pub issuer_url: String,
    /// PEM CAs to trust for the provider's https URLs instead of the system's.
    pub issuer_ca_path: Option<PathBuf>,
    /// Tokens' `aud` must name this.
    pub audience: String,
    /// Skip the audience check (the collector's key).
    pub ignore_audience: bool,
    /// The claim that is the subject (`auth.subject`).
    pub username_claim: String,
    /// The claim that lists the groups (`auth.membership`, comma-separated).
    pub groups_claim: String,
    /// The header that carries `Bearer <token>`.
    pub attribute: String,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer_url: String::new(),
            issuer_ca_path: None,
            audience: String::new(),
            ignore_audience: false,
            username_claim: "sub".into(),
            groups_claim: String::new(),
            attribute: "authorization".into(),
        }
    }
}

impl OidcConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let uri: http::Uri = self
            .issuer_url
            .parse()
            .map_err(|_| ("issuer_url".to_string(), "is required: the provider's URL".to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(("issuer_url".into(), format!("\"{}\": expected an http(s) URL", self.issuer_url)));
        }
        if self.audience.is_empty() && !self.ignore_audience {
            return Err(("audience".into(), "is required (or set ignore_audience: true)".into()));
        }
        if http::HeaderName::try_from(self.attribute.as_str()).is_err() {
            return Err(("attribute".into(), format!("\"{}\" is not a header name", self.attribute)));
        }
        if let Some(ca) = &self.issuer_ca_path
            && !ca.is_file()
        {
            return Err(("issuer_ca_path".into(), format!("cannot read {}", ca.display())));
        }
        Ok(())
    }

    pub fn server(&self) -> Result<OidcServer, String> {
        let tls = crate::tls::client::TlsClientConfig { ca_file: self.issuer_ca_path.clone(), ..Default::default() };
        let connector = tls.connector(crate::tls::client::Protocol::Http1, FETCH_TIMEOUT)?;
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(OidcServer { config: self.clone(), client, keys: std::sync::Mutex::new(Keys::default()) })
    }
}

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys are fetched again at most this often when a token names an unknown one.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// And always once they are this old.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// And every this often while there are none.
const RETRY_EMPTY: Duration = Duration::from_secs(2);
/// Clock skew allowed for `nbf` and `iat`.
const LEEWAY: u64 = 60;

#[derive(Default)]
struct Keys {
    jwks: Vec<Jwk>,
    /// When the keys were last fetched, and last tried; whether a fetch is under way.
    fetched: Option<Instant>,
    attempted: Option<Instant>,
    fetching: bool,
}

/// A fetch of the keys under way: `Keys::fetching` until it is dropped.
struct Fetching<'a>(&'a std::sync::Mutex<Keys>);

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).fetching = false;
    }
}

/// What a signature check means for the client (the details of a failed fetch are logged).
fn verdict(result: Result<(), Option<String>>, no_keys: bool) -> Result<(), Denied> {
    match result {
        Ok(()) => Ok(()),
        Err(None) if no_keys => Err(Denied("the provider's keys are not available".into())),
        Err(None) => Err(Denied("the token is signed with a key the provider does not publish".into())),
        Err(Some(reason)) => Err(Denied(reason)),
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

pub struct OidcServer {
    config: OidcConfig,
    client: Client,
    keys: std::sync::Mutex<Keys>,
}

impl std::fmt::Debug for OidcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcServer").field("issuer_url", &self.config.issuer_url).finish()
    }
}

impl OidcServer {
    /// GETs `url` as JSON (at most 1 MiB, within the fetch timeout).
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(http_body_util::Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {}", crate::cause::chain(&e)))?;
        let fetch = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{url}: HTTP {}", resp.status()));
            }
            let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
    }

    /// The provider's keys, from its discovery document.
    async fn fetch_keys(&self) -> Result<Vec<Jwk>, String> {
        let discovery = format!("{}/.well-known/openid-configuration", self.config.issuer_url.trim_end_matches('/'));
        let doc = self.get_json(&discovery).await?;
        let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if issuer != self.config.issuer_url {
            return Err(format!("{discovery}: issuer is \"{issuer}\", not issuer_url \"{}\"", self.config.issuer_url));
        }
        let jwks_uri =
            doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| format!("{discovery}: no jwks_uri"))?;
        let jwks = self.get_json(jwks_uri).await?;
        jwt::parse_jwks(jwks.to_string().as_bytes()).map_err(|e| format!("{jwks_uri}: {e}"))
    }

    /// Checks `token`'s signature, fetching the keys when there are none yet, when they are
    /// old, or when the token names a key they do not have (at most every 10 s; every 2 s
    /// while there are none). One fetch runs at a time, without holding up other requests:
    /// they are checked against the keys there are meanwhile.
    async fn verify(&self, token: &jwt::Token) -> Result<(), Denied> {
        {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = keys.fetched.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE);
            let result = token.verify(&keys.jwks);
            let backoff = if keys.jwks.is_empty() { RETRY_EMPTY } else { REFETCH_AFTER };
            let may_fetch = !keys.fetching && keys.attempted.is_none_or(|t| t.elapsed() >= backoff);
            if (fresh && !matches!(result, Err(None))) || !may_fetch {
                return verdict(result, keys.jwks.is_empty());
            }
            keys.fetching = true;
            keys.attempted = Some(Instant::now());
        }
        // Cleared however this ends, even if the request is dropped while fetching.
        let _fetching = Fetching(&self.keys);
        let fetched = self.fetch_keys().await;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(jwks) => {
                keys.jwks = jwks;
                keys.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(issuer_url = %self.config.issuer_url, error = %e, "cannot fetch the OIDC provider's keys")
            }
        }
        verdict(token.verify(&keys.jwks), keys.jwks.is_empty())
    }

    /// Checks the claims and turns them into the identity.
    fn identity(&self, claims: &serde_json::Map<String, Value>) -> Result<Identity, Denied> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let number = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as u64);
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer_url.as_str()) {
            return Err(Denied("the token's issuer is not issuer_url".into()));
        }
        let exp = number("exp").ok_or_else(|| Denied("the token has no exp".into()))?;
        if exp <= now {
            return Err(Denied("the token has expired".into()));
        }
        if number("nbf").is_some_and(|nbf| nbf > now + LEEWAY) {
            return Err(Denied("the token is not valid yet (nbf)".into()));
        }
        if !self.config.ignore_audience {
            let aud = match claims.get("aud") {
                Some(Value::String(a)) => a == &self.config.audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(self.config.audience.as_str())),
                _ => false,
            };
            if !aud {
                return Err(Denied("the token is not for this audience".into()));
            }
        }
        let subject = claims
            .get(&self.config.username_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| Denied(format!("the token has no {} claim", self.config.username_claim)))?;
        let mut attrs = vec![("subject".to_string(), subject.to_string())];
        if !self.config.groups_claim.is_empty() {
            let groups = match claims.get(&self.config.groups_claim) {
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            attrs.push(("membership".into(), groups));
        }
        for (k, v) in claims {
            if let Value::String(s) = v {
                attrs.push((format!("claims.{k}"), s.clone()));
            }
        }
        Ok(Identity(attrs))
    }
}

impl ServerAuthenticator for OidcServer {
    fn authenticate<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, Result<Identity, Denied>> {
        Box::pin(async move {
            let value = super::header(headers, &self.config.attribute)?;
            let raw =
                value.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).map(|_| value[7..].trim()).ok_or_else(
                    || Denied(format!("the {} header does not hold a Bearer token", self.config.attribute)),
                )?;
            let token = jwt::decode(raw).map_err(Denied)?;
            self.verify(&token).await?;
            self.identity(&token.claims)
        })
    }

    fn challenge(&self) -> &str {
        "Bearer"
    }

    fn credential_header(&self) -> &str {
        &self.config.attribute
    }
}

/// The `oidc` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<OidcConfig>(
    "oidc",
    "OpenID Connect: receivers accept JWTs the provider signed (keys from its JWKS)",
);

impl crate::pipeline::component::ExtensionSettings for OidcConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        OidcConfig::validate(self).map_err(Into::into)
    }

    fn server_authenticator(&self) -> Option<Result<std::sync::Arc<dyn ServerAuthenticator>, String>> {
        Some(self.server().map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn ServerAuthenticator>))
    }
}
