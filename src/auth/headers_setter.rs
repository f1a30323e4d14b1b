//! The `headers_setter` extension: exporters set request headers from fixed values or from
//! the data's request context — a client's metadata (`from_context`, kept by a receiver's
//! `include_metadata` and a batch processor's `metadata_keys`) or who it authenticated as
//! (`from_attribute`). A tenant header that clients send can so become the backend's
//! `X-Scope-OrgID` (Loki, Mimir, Tempo).

use super::client::ClientAuthenticator;
use crate::pipeline::{BoxFuture, ExportError};
use crate::secret::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersSetterConfig {
    pub headers: Vec<HeaderRule>,
}

/// One header: where its value comes from, and what to do with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    pub key: String,
    /// A fixed value (a secret: never printed).
    #[serde(default)]
    pub value: Option<Secret>,
    /// A metadata key of the data's request context (`tenant`, or `metadata.tenant`).
    #[serde(default)]
    pub from_context: Option<String>,
    /// An attribute of who the client authenticated as (`subject`, `username`, or `auth.subject`).
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// The value when the context has none (a secret: never printed).
    #[serde(default)]
    pub default_value: Option<Secret>,
    #[serde(default)]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set the header only if the request does not have it yet.
    Insert,
    /// Replace it only if the request has it.
    Update,
    /// Set it either way.
    #[default]
    Upsert,
    /// Remove it.
    Delete,
}

impl HeadersSetterConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.headers.is_empty() {
            return Err(("headers".into(), "list at least one header".into()));
        }
        for (i, h) in self.headers.iter().enumerate() {
            let at = |k: &str| format!("headers.{i}.{k}");
            if http::HeaderName::try_from(h.key.as_str()).is_err() {
                return Err((at("key"), format!("\"{}\" is not a header name", h.key)));
            }
            let sources = usize::from(h.value.is_some())
                + usize::from(h.from_context.is_some())
                + usize::from(h.from_attribute.is_some());
            match (h.action, sources) {
                (Action::Delete, 0) => {}
                (Action::Delete, _) => return Err((at("action"), "delete takes no value".into())),
                (_, 1) => {}
                _ => return Err((at("value"), "give exactly one of value, from_context and from_attribute".into())),
            }
            for v in h.value.iter().chain(&h.default_value) {
                if http::HeaderValue::from_str(v.expose()).is_err() {
                    return Err((at("value"), "is not a valid header value".into()));
                }
            }
        }
        Ok(())
    }
}

impl HeaderRule {
    /// The context key it reads (`tenant`, `auth.subject`), if it reads one.
    fn context_key(&self) -> Option<String> {
        if let Some(k) = &self.from_context {
            return Some(k.strip_prefix("metadata.").unwrap_or(k).to_ascii_lowercase());
        }
        let a = self.from_attribute.as_ref()?;
        Some(if a.starts_with("auth.") { a.clone() } else { format!("auth.{a}") })
    }

    /// The value for a request whose data has `context`.
    fn value(&self, context: Option<&[(String, String)]>) -> Option<String> {
        if let Some(v) = &self.value {
            return Some(v.expose().to_string());
        }
        let key = self.context_key()?;
        let found: Vec<&str> =
            context.into_iter().flatten().filter(|(k, _)| *k == key).map(|(_, v)| v.as_str()).collect();
        if found.is_empty() {
            return self.default_value.as_ref().map(|d| d.expose().to_string());
        }
        Some(found.join(","))
    }
}

#[derive(Debug)]
pub struct HeadersSetter {
    config: HeadersSetterConfig,
}

impl ClientAuthenticator for HeadersSetter {
    fn apply<'a>(
        &'a self,
        headers: &'a mut http::HeaderMap,
        context: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            for rule in &self.config.headers {
                let Ok(name) = http::HeaderName::try_from(rule.key.as_str()) else { continue };
                if rule.action == Action::Delete {
                    headers.remove(&name);
                    continue;
                }
                let present = headers.contains_key(&name);
                if (rule.action == Action::Insert && present) || (rule.action == Action::Update && !present) {
                    continue;
                }
                let Some(value) = rule.value(context) else { continue };
                // A value from the context that cannot be a header value is left out.
                let Ok(mut value) = http::HeaderValue::from_str(&value) else { continue };
                value.set_sensitive(rule.value.is_some() || rule.default_value.is_some());
                headers.insert(name, value);
            }
            Ok(())
        })
    }

    fn reads_context(&self) -> bool {
        self.config.headers.iter().any(|h| h.from_context.is_some() || h.from_attribute.is_some())
    }

    fn secrets(&self) -> Vec<String> {
        self.config
            .headers
            .iter()
            .flat_map(|h| h.value.iter().chain(&h.default_value))
            .map(|v| v.expose().to_string())
            .collect()
    }
}

/// The `headers_setter` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<HeadersSetterConfig>(
    "headers_setter",
    "exporters set request headers from fixed values or the data's request context (a tenant id)",
);

impl crate::pipeline::component::ExtensionSettings for HeadersSetterConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        HeadersSetterConfig::validate(self).map_err(Into::into)
    }

    fn client_authenticator(&self) -> Option<Result<std::sync::Arc<dyn ClientAuthenticator>, String>> {
        Some(Ok(std::sync::Arc::new(HeadersSetter { config: self.clone() })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_context_attributes_defaults_and_actions() {
        let cfg: HeadersSetterConfig = crate::config::parse_yaml(
            "t.yaml",
            r#"
headers:
  - {key: X-Scope-OrgID, from_context: tenant, default_value: anonymous}
  - {key: X-User, from_attribute: subject}
  - {key: X-Static, value: fixed, action: insert}
  - {key: X-Remove, action: delete}
  - {key: X-Only-If-There, value: replaced, action: update}
"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let setter = HeadersSetter { config: cfg };
        let mut h = http::HeaderMap::new();
        h.insert("x-static", http::HeaderValue::from_static("already"));
        h.insert("x-remove", http::HeaderValue::from_static("gone"));
        let context = vec![("tenant".to_string(), "acme".to_string()), ("auth.subject".to_string(), "svc".to_string())];
        setter.apply(&mut h, Some(&context)).await.unwrap();
        assert_eq!(h["x-scope-orgid"], "acme");
        assert_eq!(h["x-user"], "svc");
        assert_eq!(h["x-static"], "already", "insert keeps what is there");
        assert!(!h.contains_key("x-remove") && !h.contains_key("x-only-if-there"));
        let mut h = http::HeaderMap::new();
        setter.apply(&mut h, None).await.unwrap();
        assert_eq!(h["x-scope-orgid"], "anonymous");
        assert!(!h.contains_key("x-user"));

        let bad: HeadersSetterConfig =
            crate::config::parse_yaml("t.yaml", "headers: [{key: a, value: x, from_context: y}]").unwrap();
        assert_eq!(bad.validate().unwrap_err().0, "headers.0.value");
    }
}
