//! Authentication on the way out: what an exporter's `auth: {authenticator: <id>}` resolves to.
//! Before every request, the authenticator sets its headers (a bearer token, Basic
//! credentials, an OAuth2 access token, headers taken from the data's request context); the
//! exporter then sends. The authenticator is looked up by id for each request, so a reload that
//! changes the extension takes effect without rebuilding the exporters.

use super::{AuthSettings, Authenticators};
use crate::pipeline::{BoxFuture, ExportError};

/// What sets an exporter's credentials (the client side of an authenticator extension).
pub trait ClientAuthenticator: Send + Sync + std::fmt::Debug {
    /// Sets the request's credentials in `headers`; `context` is the data's request context
    /// (its client's metadata and `auth.*`), for authenticators that forward it.
    fn apply<'a>(
        &'a self,
        headers: &'a mut http::HeaderMap,
        context: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<(), ExportError>>;
    /// The secret values it sends, to take out of logged failure reasons.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether what it sets depends on the data's request context (which data read back from
    /// a persistent queue does not have).
    fn reads_context(&self) -> bool {
        false
    }
}

/// An exporter's authenticator: its id, looked up among the running ones for every request.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    authenticators: Authenticators,
    name: String,
}

impl ClientAuth {
    /// The authenticator `settings` name (none: `None`).
    pub fn new(settings: Option<&AuthSettings>, authenticators: &Authenticators) -> Option<ClientAuth> {
        settings.map(|s| ClientAuth { authenticators: authenticators.clone(), name: s.authenticator.clone() })
    }

    /// Sets the credentials of one request (see `ClientAuthenticator::apply`). An authenticator
    /// that is not running (yet) is a retryable failure.
    pub async fn apply(
        &self,
        headers: &mut http::HeaderMap,
        context: Option<&[(String, String)]>,
    ) -> Result<(), ExportError> {
        let Some(auth) = self.authenticators.client(&self.name) else {
            return Err(ExportError::Retryable {
                after: None,
                reason: format!("authenticator {} is not running", self.name),
            });
        };
        auth.apply(headers, context).await
    }

    /// `result` with the authenticator's secrets taken out of a failure's reason (a backend may
    /// quote the credentials it refused).
    pub fn scrub<T>(&self, result: Result<T, ExportError>) -> Result<T, ExportError> {
        let Err(e) = result else { return result };
        let secrets = self.authenticators.client(&self.name).map(|a| a.secrets()).unwrap_or_default();
        let clean = |reason: String| {
            secrets.iter().filter(|s| s.len() >= 4).fold(reason, |r, s| r.replace(s.as_str(), crate::secret::REDACTED))
        };
        Err(match e {
            ExportError::Retryable { after, reason } => ExportError::Retryable { after, reason: clean(reason) },
            ExportError::Permanent { reason } => ExportError::Permanent { reason: clean(reason) },
        })
    }
}

/// The headers of one request: `base` with what `auth` sets for data of `context` (`base`
/// itself when there is no authenticator).
pub async fn with_auth<'a>(
    auth: Option<&ClientAuth>,
    base: &'a [(http::HeaderName, http::HeaderValue)],
    context: Option<&[(String, String)]>,
) -> Result<std::borrow::Cow<'a, [(http::HeaderName, http::HeaderValue)]>, ExportError> {
    let Some(auth) = auth else { return Ok(std::borrow::Cow::Borrowed(base)) };
    let mut map = http::HeaderMap::new();
    for (k, v) in base {
        map.append(k.clone(), v.clone());
    }
    auth.apply(&mut map, context).await?;
    let mut out = Vec::with_capacity(map.len());
    let mut last: Option<http::HeaderName> = None;
    for (k, v) in map {
        if let Some(k) = k {
            last = Some(k);
        }
        if let Some(k) = &last {
            out.push((k.clone(), v));
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// `result` with `auth`'s secrets taken out of its failure (see `ClientAuth::scrub`).
pub fn scrubbed<T>(auth: Option<&ClientAuth>, result: Result<T, ExportError>) -> Result<T, ExportError> {
    match auth {
        Some(a) => a.scrub(result),
        None => result,
    }
}
