//! Authentication: the authenticator extensions (`bearertokenauth`, `basicauth`, `oidc` for
//! receivers; `bearertokenauth`, `basicauth`, `oauth2client`, `headers_setter` for exporters, see
//! `client`), what a receiver's `auth: {authenticator: <id>}` resolves to, and the guard every
//! HTTP and gRPC listener runs before a request's body is read.
//!
//! A request that fails is answered 401 (HTTP, with `WWW-Authenticate`) or `UNAUTHENTICATED`
//! (gRPC), counted in `switchyard_receiver_auth_failures_total{receiver,authenticator}`, and
//! logged at most once a second with the reason — never with the credential. One that passes
//! carries its identity (`Identity`) in the request's extensions; receivers put it in the
//! batch's context as `auth.<name>`, where processors read it (`from_context: auth.subject`).

pub mod basic;
pub mod bearer;
pub mod client;
pub mod headers_setter;
pub mod jwt;
pub mod oauth2client;
pub mod oidc;

use crate::net::BoxBody;
use crate::pipeline::BoxFuture;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// `auth` on a receiver's protocol (or an exporter): the authenticator extension to use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub authenticator: String,
}

/// Who a request was authenticated as: attributes such as `subject`, `username`, `membership`,
/// which processors read as `auth.<name>`.
#[derive(Debug, Clone, Default)]
pub struct Identity(pub Vec<(String, String)>);

/// Why a request was refused: a message safe to show and log (it never holds the credential).
#[derive(Debug, Clone)]
pub struct Denied(pub String);

/// What checks the credentials of incoming requests (the server side of an authenticator
/// extension).
pub trait ServerAuthenticator: Send + Sync + std::fmt::Debug {
    /// The request's identity, from its headers (gRPC metadata), or why it is refused.
    fn authenticate<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, Result<Identity, Denied>>;
    /// The scheme named in `WWW-Authenticate` on a 401 (`Bearer`, `Basic`).
    fn challenge(&self) -> &str;
    /// The header that carries the credential: left out of the request context, so that
    /// `include_metadata` never hands a client's secret to processors or exporters.
    fn credential_header(&self) -> &str {
        "authorization"
    }
}

/// How long authenticating one request may take (an identity provider that does not answer).
const AUTHENTICATE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The authenticators of the running configuration, by extension id. A receiver looks its
/// authenticator up for every request, so an extension changed by a reload takes effect at
/// once, without restarting the receivers that use it.
#[derive(Clone, Default)]
pub struct Authenticators {
    running: Arc<RwLock<BTreeMap<String, Sides>>>,
}

/// The two sides an authenticator extension may have.
#[derive(Clone, Default)]
struct Sides {
    server: Option<Arc<dyn ServerAuthenticator>>,
    client: Option<Arc<dyn client::ClientAuthenticator>>,
}

impl std::fmt::Debug for Authenticators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.running.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        f.debug_struct("Authenticators").field("running", &names).finish()
    }
}

impl Authenticators {
    /// Sets (or replaces, both sides at once) extension `id`'s authenticators.
    pub fn set(
        &self,
        id: &str,
        server: Option<Arc<dyn ServerAuthenticator>>,
        client: Option<Arc<dyn client::ClientAuthenticator>>,
    ) {
        self.running.write().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), Sides { server, client });
    }

    /// Forgets extension `id` (it was removed). Guards that used it keep the last one they
    /// saw, so a receiver retiring at a reload still answers its last requests.
    pub fn remove(&self, id: &str) {
        self.running.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn client(&self, id: &str) -> Option<Arc<dyn client::ClientAuthenticator>> {
        self.running.read().unwrap_or_else(|p| p.into_inner()).get(id).and_then(|s| s.client.clone())
    }

    fn server(&self, id: &str) -> Option<Arc<dyn ServerAuthenticator>> {
        self.running.read().unwrap_or_else(|p| p.into_inner()).get(id).and_then(|s| s.server.clone())
    }

    /// The guard for a listener of `receiver` whose `auth` names `settings` (none: no guard).
    /// The extension must be running (the configuration check makes sure it is listed).
    pub fn guard(
        &self,
        settings: Option<&AuthSettings>,
        receiver: &str,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Result<Option<Arc<Guard>>, String> {
        let Some(settings) = settings else { return Ok(None) };
        let Some(current) = self.server(&settings.authenticator) else {
            return Err(format!(
                "auth.authenticator: {} is not a running server authenticator (bearertokenauth, basicauth or oidc listed in service.extensions)",
                settings.authenticator
            ));
        };
        Ok(Some(Arc::new(Guard {
            last: std::sync::Mutex::new(current),
            authenticators: self.clone(),
            name: settings.authenticator.clone(),
            failures: metrics.auth_failures.with_label_values(&[receiver, &settings.authenticator]),
            receiver: receiver.to_string(),
            log: Default::default(),
        })))
    }
}

/// Checks every request of one listener with its authenticator (see the module comment).
pub struct Guard {
    authenticators: Authenticators,
    /// The authenticator seen last, used when the extension is gone (see `Authenticators::remove`).
    last: std::sync::Mutex<Arc<dyn ServerAuthenticator>>,
    name: String,
    failures: prometheus::IntCounter,
    receiver: String,
    log: crate::telemetry::log_limit::LogLimit,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("authenticator", &self.name).finish()
    }
}

impl Guard {
    /// Lets `req` through with its identity in its extensions, or answers it.
    pub async fn check<B>(&self, req: &mut http::Request<B>) -> Result<(), http::Response<BoxBody>> {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/grpc"));
        let auth = match self.authenticators.server(&self.name) {
            Some(a) => {
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = a.clone();
                a
            }
            None => self.last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        let outcome = tokio::time::timeout(AUTHENTICATE_WITHIN, auth.authenticate(req.headers()))
            .await
            .unwrap_or_else(|_| Err(Denied("authentication did not finish in time".into())));
        match outcome {
            Ok(identity) => {
                req.extensions_mut().insert(identity);
                req.extensions_mut().insert(CredentialHeader(auth.credential_header().to_ascii_lowercase()));
                Ok(())
            }
            Err(Denied(reason)) => {
                self.failures.inc();
                if let Some(held_back) = self.log.allow() {
                    tracing::warn!(receiver = %self.receiver, authenticator = %self.name, %reason,
                        suppressed_since_last_warning = held_back, "request refused: authentication failed");
                }
                Err(refusal(grpc, auth.challenge(), &reason))
            }
        }
    }
}

/// The header that carried a request's credential (see `ServerAuthenticator::credential_header`).
#[derive(Debug, Clone)]
pub struct CredentialHeader(pub String);

/// The answer to a request that failed authentication.
fn refusal(grpc: bool, scheme: &str, reason: &str) -> http::Response<BoxBody> {
    let message = format!("unauthenticated: {reason}");
    if grpc {
        return tonic::Status::unauthenticated(message).into_http::<BoxBody>();
    }
    let mut r = crate::net::text(http::StatusCode::UNAUTHORIZED, &message);
    if let Ok(v) = http::HeaderValue::from_str(&format!("{scheme} realm=\"switchyard\"")) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Compares two secrets in time that does not depend on where they differ (their SHA-256
/// digests are compared, so their lengths do not show either).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (da, db) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    da.iter().zip(db.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A header's value as text, or why it cannot be used.
pub(crate) fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<&'a str, Denied> {
    let value = headers.get(name).ok_or_else(|| Denied(format!("no {name} header")))?;
    value.to_str().map_err(|_| Denied(format!("the {name} header is not text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"token", b"token2"));
    }
}
