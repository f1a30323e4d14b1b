//! The `basicauth` extension: HTTP Basic authentication. Receivers check users against an
//! htpasswd file or inline entries (bcrypt `$2y$`, Apache `$apr1$` MD5, `{SHA}`); exporters send
//! `client_auth`'s user name and password. The authenticated user name is `auth.username`.

use super::{Denied, Identity, ServerAuthenticator, same_secret};
use crate::pipeline::BoxFuture;
use crate::secret::Secret;
use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    /// Server side: the users allowed in.
    pub htpasswd: Option<Htpasswd>,
    /// Client side: the credentials exporters send.
    pub client_auth: Option<ClientAuth>,
}

/// `htpasswd`: a file in Apache's format, and/or the same lines inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    pub file: Option<PathBuf>,
    pub inline: Option<Secret>,
}

/// `client_auth`: what an exporter sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuth {
    /// Never printed either: tokens are often passed as the user name.
    pub username: Secret,
    pub password: Secret,
}

impl BasicAuthConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.htpasswd.is_none() && self.client_auth.is_none() {
            return Err(("htpasswd".into(), "give htpasswd (receivers) or client_auth (exporters)".into()));
        }
        if let Some(h) = &self.htpasswd {
            if h.file.is_none() && h.inline.is_none() {
                return Err(("htpasswd".into(), "give file or inline".into()));
            }
            h.users().map_err(|(k, m)| (format!("htpasswd.{k}"), m))?;
        }
        if let Some(c) = &self.client_auth
            && (c.username.expose().is_empty() || c.username.expose().contains(':'))
        {
            return Err(("client_auth.username".into(), "must be non-empty, without ':'".into()));
        }
        Ok(())
    }

    /// The `Authorization` value of `client_auth`.
    pub fn client_header(&self) -> Option<Secret> {
        let c = self.client_auth.as_ref()?;
        let pair = format!("{}:{}", c.username.expose(), c.password.expose());
        Some(Secret::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))))
    }
}

impl Htpasswd {
    /// Every user with its hash: the file's lines, then the inline ones (which win).
    fn users(&self) -> Result<HashMap<String, Hash>, (String, String)> {
        let mut users = HashMap::new();
        if let Some(f) = &self.file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| ("file".to_string(), format!("cannot read {}: {e}", f.display())))?;
            parse(&text, &mut users).map_err(|m| ("file".to_string(), format!("{}: {m}", f.display())))?;
        }
        if let Some(inline) = &self.inline {
            parse(inline.expose(), &mut users).map_err(|m| ("inline".to_string(), m))?;
        }
        if users.is_empty() {
            return Err(("file".into(), "no user in htpasswd".into()));
        }
        Ok(users)
    }
}

/// A password hash in one of the supported htpasswd forms.
#[derive(Clone)]
enum Hash {
    Bcrypt(String),
    Apr1 { salt: String, whole: String },
    Sha1(Vec<u8>),
}

/// Reads `user:hash` lines (blank lines and `#` comments skipped). The reason for a bad line
/// names its number, never its content.
fn parse(text: &str, users: &mut HashMap<String, Hash>) -> Result<(), String> {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {}: expected user:hash", i + 1));
        };
        let hash = if hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$") {
            Hash::Bcrypt(hash.to_string())
        } else if let Some(rest) = hash.strip_prefix("$apr1$") {
            let salt = rest.split('$').next().unwrap_or_default().to_string();
            Hash::Apr1 { salt, whole: hash.to_string() }
        } else if let Some(b64) = hash.strip_prefix("{SHA}") {
            let digest = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| format!("line {}: {{SHA}} hash is not base64", i + 1))?;
            Hash::Sha1(digest)
        } else {
            return Err(format!(
                "line {}: unsupported hash for user {user} (use bcrypt: htpasswd -B; or $apr1$, {{SHA}})",
                i + 1
            ));
        };
        users.insert(user.to_string(), hash);
    }
    Ok(())
}

impl Hash {
    fn matches(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Apr1 { salt, whole } => {
                same_secret(apr1(password.as_bytes(), salt.as_bytes()).as_bytes(), whole.as_bytes())
            }
            Hash::Sha1(digest) => {
                use sha1::Digest;
                same_secret(&sha1::Sha1::digest(password.as_bytes()), digest)
            }
        }
    }
}

/// Apache's `$apr1$` variant of the MD5-based crypt.
fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let salt = &salt[..salt.len().min(8)];
    let alt = crate::md5::md5(&[password, salt, password].concat());
    let mut ctx = [password, MAGIC, salt].concat();
    let mut left = password.len();
    while left > 0 {
        ctx.extend_from_slice(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = password.len();
    while i > 0 {
        ctx.push(if i & 1 == 1 { 0 } else { password.first().copied().unwrap_or(0) });
        i >>= 1;
    }
    let mut last = crate::md5::md5(&ctx);
    for round in 0..1000 {
        let mut c = Vec::with_capacity(password.len() * 2 + 32);
        c.extend_from_slice(if round & 1 == 1 { password } else { &last });
        if round % 3 != 0 {
            c.extend_from_slice(salt);
        }
        if round % 7 != 0 {
            c.extend_from_slice(password);
        }
        c.extend_from_slice(if round & 1 == 1 { &last } else { password });
        last = crate::md5::md5(&c);
    }
    let mut out = String::from_utf8_lossy(MAGIC).into_owned();
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(last[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

/// The server side: the users, read at start.
pub struct BasicAuthServer {
    users: Arc<HashMap<String, Hash>>,
    /// What an unknown user's password is checked against: a real entry's hash, so that the
    /// answer takes as long as for a known user (no telling which names exist).
    decoy: Option<Hash>,
    /// Credentials checked recently and found good, by user and SHA-256 of the password: a
    /// client sending the same credentials with every request pays for bcrypt once a minute.
    good: std::sync::Mutex<HashMap<(String, [u8; 32]), std::time::Instant>>,
    /// Hash checks run off the async workers, at most this many at once (bcrypt costs
    /// tens of milliseconds of CPU: a flood of bad credentials cannot stall the gateway).
    checks: Arc<tokio::sync::Semaphore>,
}

/// How long good credentials are remembered.
const REMEMBER_GOOD: std::time::Duration = std::time::Duration::from_secs(60);
/// Entries kept in that memory at most.
const REMEMBER_AT_MOST: usize = 10_000;

impl BasicAuthServer {
    fn new(users: HashMap<String, Hash>) -> BasicAuthServer {
        let mut names: Vec<&String> = users.keys().collect();
        names.sort();
        let decoy = names.first().and_then(|n| users.get(*n)).cloned();
        let checks = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).div_ceil(2).max(1);
        BasicAuthServer {
            users: Arc::new(users),
            decoy,
            good: Default::default(),
            checks: Arc::new(tokio::sync::Semaphore::new(checks)),
        }
    }

    /// Whether `password` is `user`'s: remembered, or checked on a blocking thread.
    async fn check(&self, user: &str, password: &str) -> bool {
        use sha2::Digest;
        let key = (user.to_string(), <[u8; 32]>::from(sha2::Sha256::digest(password.as_bytes())));
        let remembered = self.good.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
        if remembered.is_some_and(|t| t.elapsed() < REMEMBER_GOOD) {
            return true;
        }
        let Ok(_permit) = self.checks.acquire().await else { return false };
        let hash = self.users.get(user).cloned();
        let known = hash.is_some();
        let Some(hash) = hash.or_else(|| self.decoy.clone()) else { return false };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || hash.matches(&password)).await.unwrap_or(false) && known;
        if ok {
            let mut good = self.good.lock().unwrap_or_else(|p| p.into_inner());
            if good.len() >= REMEMBER_AT_MOST {
                good.retain(|_, t| t.elapsed() < REMEMBER_GOOD);
                if good.len() >= REMEMBER_AT_MOST {
                    good.clear();
                }
            }
            good.insert(key, std::time::Instant::now());
        }
        ok
    }
}

impl std::fmt::Debug for BasicAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthServer").field("users", &self.users.len()).finish()
    }
}

impl ServerAuthenticator for BasicAuthServer {
    fn authenticate<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, Result<Identity, Denied>> {
        Box::pin(async move {
            let value = super::header(headers, "authorization")?;
            let encoded = value
                .get(..6)
                .filter(|s| s.eq_ignore_ascii_case("basic "))
                .map(|_| value[6..].trim())
                .ok_or_else(|| Denied("the Authorization header does not hold Basic credentials".into()))?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Denied("the Basic credentials are not base64 of user:password".into()))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Denied("the Basic credentials are not base64 of user:password".into()))?;
            if self.check(user, password).await {
                Ok(Identity(vec![("username".into(), user.to_string())]))
            } else {
                Err(Denied("user name or password not accepted".into()))
            }
        })
    }

    fn challenge(&self) -> &str {
        "Basic"
    }
}

/// The client side: the `Authorization` value `client_auth` gives.
pub struct BasicAuthClient {
    value: Secret,
    /// The user name and password, to take out of failure reasons.
    parts: Vec<String>,
}

impl std::fmt::Debug for BasicAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicAuthClient")
    }
}

impl super::client::ClientAuthenticator for BasicAuthClient {
    fn apply<'a>(
        &'a self,
        headers: &'a mut http::HeaderMap,
        _context: Option<&'a [(String, String)]>,
    ) -> BoxFuture<'a, Result<(), crate::pipeline::ExportError>> {
        Box::pin(async move {
            let mut value = http::HeaderValue::from_str(self.value.expose()).map_err(|_| {
                crate::pipeline::ExportError::Permanent { reason: "client_auth does not fit in a header".into() }
            })?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
            Ok(())
        })
    }

    fn secrets(&self) -> Vec<String> {
        let encoded = self.value.expose().trim_start_matches("Basic ").to_string();
        let mut out = vec![encoded];
        out.extend(self.parts.iter().cloned());
        out
    }
}

/// The `basicauth` extension's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::extension::<BasicAuthConfig>(
    "basicauth",
    "HTTP Basic authentication: htpasswd users for receivers, client_auth for exporters",
);

impl crate::pipeline::component::ExtensionSettings for BasicAuthConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        BasicAuthConfig::validate(self).map_err(Into::into)
    }

    fn server_authenticator(&self) -> Option<Result<std::sync::Arc<dyn ServerAuthenticator>, String>> {
        let h = self.htpasswd.as_ref()?;
        Some(
            h.users()
                .map(|users| {
                    std::sync::Arc::new(BasicAuthServer::new(users)) as std::sync::Arc<dyn ServerAuthenticator>
                })
                .map_err(|(k, m)| format!("htpasswd.{k}: {m}")),
        )
    }

    fn client_authenticator(&self) -> Option<Result<std::sync::Arc<dyn super::client::ClientAuthenticator>, String>> {
        let value = self.client_header()?;
        let parts =
            self.client_auth.iter().flat_map(|c| [c.username.expose().to_string(), c.password.expose().to_string()]);
        let parts: Vec<String> = parts.collect();
        Some(Ok(std::sync::Arc::new(BasicAuthClient { value, parts })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apr1_matches_apache() {
        // openssl passwd -apr1 -salt abcdefgh password
        assert_eq!(apr1(b"password", b"abcdefgh"), "$apr1$abcdefgh$FBwExRW4dCc8aL.OvjpIE1");
    }

    fn basic(user: &str, pass: &str) -> http::HeaderMap {
        let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")));
        [(http::header::AUTHORIZATION, http::HeaderValue::from_str(&v).unwrap())].into_iter().collect()
    }

    #[tokio::test]
    async fn every_hash_form_checks_the_password() {
        let bcrypt_hash = bcrypt::hash_with_salt("b-pass", 4, *b"0123456789abcdef")
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let inline = format!(
            "# users\nann:$apr1$abcdefgh$FBwExRW4dCc8aL.OvjpIE1\nbob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\ncid:{bcrypt_hash}\n"
        );
        let cfg = BasicAuthConfig {
            htpasswd: Some(Htpasswd { file: None, inline: Some(Secret::new(inline)) }),
            client_auth: None,
        };
        cfg.validate().unwrap();
        let server = BasicAuthServer::new(cfg.htpasswd.as_ref().unwrap().users().unwrap());
        for (user, pass) in [("ann", "password"), ("bob", "password"), ("cid", "b-pass")] {
            let id = server.authenticate(&basic(user, pass)).await.unwrap();
            assert_eq!(id.0, vec![("username".to_string(), user.to_string())]);
            assert!(server.authenticate(&basic(user, "wrong")).await.is_err(), "{user}");
        }
        let unknown = server.authenticate(&basic("eve", "eve-pass")).await.unwrap_err();
        assert!(!unknown.0.contains("eve"), "neither the user nor the password is in the reason: {}", unknown.0);
        assert!(server.authenticate(&http::HeaderMap::new()).await.is_err());

        let bad = BasicAuthConfig {
            htpasswd: Some(Htpasswd { file: None, inline: Some(Secret::new("dan:plaintext-s3cret")) }),
            client_auth: None,
        };
        let err = bad.validate().unwrap_err();
        assert!(err.1.contains("unsupported hash") && !err.1.contains("s3cret"), "{err:?}");
    }
}
