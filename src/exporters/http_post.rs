//! One HTTP POST with a deadline, for the exporters that speak a store's own HTTP API (loki,
//! elasticsearch, clickhouse): a connection failure or a missing answer is a retryable error,
//! the answer comes back with its body (up to a limit) for the exporter to judge. User info in
//! the URL is sent as basic auth (unless the headers hold an Authorization), never in the request.

use crate::pipeline::ExportError;
use crate::tls::client::{Protocol, TlsClientConfig};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

fn retryable(reason: String) -> ExportError {
    ExportError::Retryable { after: None, reason }
}

pub struct HttpPoster {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// The exporter's authenticator, which sets each request's credentials.
    auth: Option<crate::auth::client::ClientAuth>,
}

impl HttpPoster {
    pub fn new(tls: &TlsClientConfig, timeout: Duration) -> Result<HttpPoster, String> {
        let connector = tls.connector(Protocol::Http1, timeout)?;
        Ok(HttpPoster { client: Client::builder(TokioExecutor::new()).build(connector), timeout, auth: None })
    }

    /// The same poster, with the exporter's authenticator (its `auth` key).
    pub fn authenticated(self, auth: Option<crate::auth::client::ClientAuth>) -> HttpPoster {
        HttpPoster { auth, ..self }
    }

    /// The authenticator, to take its secrets out of failure reasons.
    pub fn auth(&self) -> Option<&crate::auth::client::ClientAuth> {
        self.auth.as_ref()
    }

    /// POSTs `body` to `uri` with `headers` (and the authenticator's, for data of `context`);
    /// the answer's head and up to `limit` bytes of its body. Errors print the URL with its
    /// user info redacted.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        limit: usize,
        context: Option<&[(String, String)]>,
    ) -> Result<(http::response::Parts, Bytes), ExportError> {
        let headers = crate::auth::client::with_auth(self.auth.as_ref(), headers, context).await?;
        let headers = &headers[..];
        let (uri, userinfo_auth) =
            crate::secret::basic_auth_from_userinfo(uri).map_err(|reason| ExportError::Permanent { reason })?;
        let mut req = http::Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(auth) = userinfo_auth
            && !crate::secret::has_authorization(headers)
        {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Full::new(body)).map_err(|e| ExportError::Permanent { reason: e.to_string() })?;
        let exchange = async {
            let resp =
                self.client.request(req).await.map_err(|e| retryable(format!("{uri}: {}", crate::cause::chain(&e))))?;
            let (parts, body) = resp.into_parts();
            let body =
                http_body_util::Limited::new(body, limit).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            Ok::<_, ExportError>((parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| retryable(format!("{uri}: no answer within {:?}", self.timeout)))?
    }
}

/// The error for a non-2xx answer: retryable for the statuses in `retry_on` (honouring
/// `Retry-After`), permanent otherwise; the reason quotes the start of the body.
pub fn status_error(parts: &http::response::Parts, body: &[u8], retry_on: impl Fn(u16) -> bool) -> ExportError {
    let text: String = String::from_utf8_lossy(body).trim().chars().take(500).collect();
    let reason = format!("HTTP {}: {text}", parts.status);
    if retry_on(parts.status.as_u16()) {
        ExportError::Retryable { after: super::otlphttp::retry_after(&parts.headers), reason }
    } else {
        ExportError::Permanent { reason }
    }
}
