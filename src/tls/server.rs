//! TLS for receivers that take TCP connections (`tls` with the collector's server keys): the
//! certificate and key (files or inline PEM), optionally the CAs that client certificates must
//! chain to (then a client without a valid certificate is refused), the protocol versions and
//! TLS 1.2 cipher suites allowed, and `reload_interval`, after which the files are read again
//! so that a rotated certificate is served without a restart.
//!
//! Every TCP listener takes its TLS from here through [`ServerTls`] (see `net::serve_with` and
//! `net::serve_streams`), so the receivers differ only in where the `tls` key sits.

use crate::secret::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// The certificate chain, as a PEM file or inline PEM.
    pub cert_file: Option<PathBuf>,
    pub cert_pem: Option<String>,
    /// The private key, as a PEM file or inline PEM (never printed).
    pub key_file: Option<PathBuf>,
    pub key_pem: Option<Secret>,
    /// CAs that client certificates must chain to: with it, every client must present one.
    pub client_ca_file: Option<PathBuf>,
    /// `"1.2"` (default) or `"1.3"`; `max_version` defaults to `"1.3"`.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// TLS 1.2 cipher suites allowed, by IANA name (default: all of rustls's, which are all
    /// AEAD with forward secrecy). Naming TLS 1.3 suites restricts those too.
    pub cipher_suites: Vec<String>,
    /// Read the certificate, key and client CAs again this often (unset: never).
    #[serde(deserialize_with = "crate::config::deserialize_opt_duration")]
    pub reload_interval: Option<Duration>,
}

/// What a listener offers in ALPN: HTTP servers offer HTTP/2 (which gRPC clients require) and
/// HTTP/1.1; stream listeners (syslog, Fluent Forward) offer nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http,
    None,
}

impl TlsServerConfig {
    /// Checks the settings, reading the files: a certificate that does not parse or a key that
    /// does not match it is reported by `validate`, not at the first client.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let one_of = |file: bool, pem: bool, what: &str| match (file, pem) {
            (true, true) => Err((format!("tls.{what}_file"), format!("give {what}_file or {what}_pem, not both"))),
            (false, false) => Err((format!("tls.{what}_file"), format!("a server needs {what}_file (or {what}_pem)"))),
            _ => Ok(()),
        };
        one_of(self.cert_file.is_some(), self.cert_pem.is_some(), "cert")?;
        one_of(self.key_file.is_some(), self.key_pem.is_some(), "key")?;
        for (key, file) in [
            ("tls.cert_file", self.cert_file.as_ref()),
            ("tls.key_file", self.key_file.as_ref()),
            ("tls.client_ca_file", self.client_ca_file.as_ref()),
        ] {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err((key.into(), format!("cannot read {}", f.display())));
            }
        }
        let min = version(self.min_version.as_deref(), "min_version")?.unwrap_or(Version::V12);
        let max = version(self.max_version.as_deref(), "max_version")?.unwrap_or(Version::V13);
        if min > max {
            return Err(("tls.min_version".into(), "is above max_version".into()));
        }
        suites(&self.cipher_suites, min, max)?;
        if self.reload_interval.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(("tls.reload_interval".into(), "must be at least 1s".into()));
        }
        self.build(Alpn::None).map(|_| ()).map_err(|m| ("tls".into(), m))
    }

    /// The listener's TLS, with everything read now (a bad file fails the start).
    pub fn server(&self, alpn: Alpn) -> Result<Arc<ServerTls>, String> {
        let config = self.build(alpn)?;
        Ok(Arc::new(ServerTls {
            settings: self.clone(),
            alpn,
            current: Mutex::new(Loaded { config, at: Instant::now() }),
        }))
    }

    fn build(&self, alpn: Alpn) -> Result<Arc<rustls::ServerConfig>, String> {
        let min = version(self.min_version.as_deref(), "min_version").map_err(|(_, m)| m)?.unwrap_or(Version::V12);
        let max = version(self.max_version.as_deref(), "max_version").map_err(|(_, m)| m)?.unwrap_or(Version::V13);
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = suites(&self.cipher_suites, min, max).map_err(|(_, m)| m)?;
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(Version::V13, &rustls::version::TLS13), (Version::V12, &rustls::version::TLS12)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_ca_file {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("tls.client_ca_file {}: {e}", ca.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("tls.client_ca_file {}: no certificate in it", ca.display()));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| format!("tls.client_ca_file: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain: Vec<CertificateDer<'static>> = match (&self.cert_file, &self.cert_pem) {
            (Some(f), _) => CertificateDer::pem_file_iter(f)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("tls.cert_file {}: {e}", f.display()))?,
            (None, Some(pem)) => CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls.cert_pem: {e}"))?,
            (None, None) => return Err("tls: cert_file (or cert_pem) is required".into()),
        };
        if chain.is_empty() {
            return Err("tls: the certificate PEM holds no certificate".into());
        }
        let key = match (&self.key_file, &self.key_pem) {
            (Some(f), _) => {
                PrivateKeyDer::from_pem_file(f).map_err(|e| format!("tls.key_file {}: {e}", f.display()))?
            }
            (None, Some(pem)) => {
                PrivateKeyDer::from_pem_slice(pem.expose().as_bytes()).map_err(|e| format!("tls.key_pem: {e}"))?
            }
            (None, None) => return Err("tls: key_file (or key_pem) is required".into()),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("TLS certificate and key do not go together: {e}"))?;
        if alpn == Alpn::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(Arc::new(config))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V12,
    V13,
}

fn version(v: Option<&str>, key: &str) -> Result<Option<Version>, (String, String)> {
    match v {
        None | Some("") => Ok(None),
        Some("1.2") => Ok(Some(Version::V12)),
        Some("1.3") => Ok(Some(Version::V13)),
        Some(v @ ("1.0" | "1.1")) => {
            Err((format!("tls.{key}"), format!("TLS {v} is not supported (it is insecure): use \"1.2\" or \"1.3\"")))
        }
        Some(v) => Err((format!("tls.{key}"), format!("\"{v}\": use \"1.2\" or \"1.3\""))),
    }
}

/// The names a suite is known by: its IANA name, and Go's short names for ChaCha20 suites.
fn suite_names(s: &rustls::SupportedCipherSuite) -> Vec<String> {
    let Some(name) = s.suite().as_str() else { return Vec::new() };
    let iana = name.replace("TLS13_", "TLS_");
    let mut names = vec![iana.clone()];
    if let Some(short) = iana.strip_suffix("_POLY1305_SHA256")
        && !short.starts_with("TLS_CHACHA20")
    {
        names.push(format!("{short}_POLY1305"));
    }
    names
}

/// The cipher suites `names` allows among rustls's: TLS 1.2 suites restricted to those named
/// (when any are named), TLS 1.3 suites restricted only when some are named.
fn suites(names: &[String], min: Version, max: Version) -> Result<Vec<rustls::SupportedCipherSuite>, (String, String)> {
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    if names.is_empty() {
        return Ok(all);
    }
    let named = |s: &rustls::SupportedCipherSuite| suite_names(s).iter().any(|n| names.contains(n));
    for n in names {
        if !all.iter().any(|s| suite_names(s).contains(n)) {
            let known: Vec<String> = all.iter().filter_map(|s| suite_names(s).into_iter().next()).collect();
            return Err((
                "tls.cipher_suites".into(),
                format!("unknown or unsupported suite \"{n}\"; supported: {}", known.join(", ")),
            ));
        }
    }
    let is13 = |s: &rustls::SupportedCipherSuite| matches!(s, rustls::SupportedCipherSuite::Tls13(_));
    let restrict13 = all.iter().any(|s| is13(s) && named(s));
    let chosen: Vec<_> = all.into_iter().filter(|s| if is13(s) { !restrict13 || named(s) } else { named(s) }).collect();
    let usable = chosen.iter().any(|s| if is13(s) { max == Version::V13 } else { min == Version::V12 });
    if !usable {
        return Err(("tls.cipher_suites".into(), "none of these suites can be used with the versions allowed".into()));
    }
    Ok(chosen)
}

/// A listener's TLS: hands out the current rustls configuration, read again from the files
/// every `reload_interval` (a failed read keeps the previous one and is logged).
pub struct ServerTls {
    settings: TlsServerConfig,
    alpn: Alpn,
    current: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    at: Instant,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("settings", &self.settings).finish()
    }
}

impl ServerTls {
    /// The configuration for the next handshake, reloaded first when it is due.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        let mut loaded = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(every) = self.settings.reload_interval
            && loaded.at.elapsed() >= every
        {
            loaded.at = Instant::now();
            match self.settings.build(self.alpn) {
                Ok(config) => {
                    tracing::debug!("TLS certificate and key read again (reload_interval)");
                    loaded.config = config;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the TLS certificate again; serving the previous one"),
            }
        }
        loaded.config.clone()
    }

    /// The TLS handshake on `io`, within `limit`.
    pub async fn accept<IO>(&self, io: IO, limit: Duration) -> Result<tokio_rustls::server::TlsStream<IO>, String>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        match tokio::time::timeout(limit, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err(format!("TLS handshake not finished within {limit:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> TlsServerConfig {
        crate::config::parse_yaml("t.yaml", yaml).unwrap()
    }

    #[test]
    fn versions_and_suites_are_checked() {
        assert_eq!(version(Some("1.3"), "min_version").unwrap(), Some(Version::V13));
        assert!(version(Some("1.1"), "min_version").unwrap_err().1.contains("not supported"));
        assert!(version(Some("tls13"), "max_version").is_err());
        let named =
            |n: &[&str]| suites(&n.iter().map(|s| s.to_string()).collect::<Vec<_>>(), Version::V12, Version::V13);
        let only = named(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]).unwrap();
        let twelve: Vec<_> = only.iter().filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_))).collect();
        assert_eq!(twelve.len(), 1, "TLS 1.2 restricted to the one named");
        assert_eq!(only.len(), 1 + 3, "TLS 1.3 suites untouched when none is named");
        assert!(named(&["TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"]).is_ok(), "Go's short name");
        assert!(named(&["TLS_AES_256_GCM_SHA384"]).unwrap().len() == 1);
        let err = named(&["TLS_RSA_WITH_RC4_128_SHA"]).unwrap_err();
        assert!(err.1.contains("supported: "), "{}", err.1);
        let v12 = suites(&["TLS_AES_128_GCM_SHA256".to_string()], Version::V12, Version::V12);
        assert!(v12.is_err(), "a 1.3 suite alone with TLS 1.2 only cannot work");
    }

    #[test]
    fn a_server_needs_a_certificate_and_a_key_once() {
        let err = config("key_file: /nonexistent").validate().unwrap_err();
        assert_eq!(err.0, "tls.cert_file");
        let err = config("cert_file: /a\ncert_pem: x\nkey_pem: y").validate().unwrap_err();
        assert!(err.1.contains("not both"), "{err:?}");
        let err = config("cert_pem: x\nkey_pem: y\nmin_version: '1.3'\nmax_version: '1.2'").validate().unwrap_err();
        assert_eq!(err.0, "tls.min_version");
        let err = config("cert_pem: x\nkey_pem: secret-key-material").validate().unwrap_err();
        assert!(!format!("{err:?}").contains("secret-key-material"));
        assert!(!format!("{:?}", config("cert_pem: x\nkey_pem: secret-key-material")).contains("secret-key-material"));
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn inline_pem_serves_and_files_are_read_again_after_reload_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("first.test");
        let (c, k) = (dir.path().join("s.crt"), dir.path().join("s.key"));
        std::fs::write(&c, &cert).unwrap();
        std::fs::write(&k, &key).unwrap();
        let inline =
            TlsServerConfig { cert_pem: Some(cert.clone()), key_pem: Some(Secret::new(key)), ..Default::default() };
        inline.validate().unwrap();
        inline.server(Alpn::Http).unwrap();

        let files = TlsServerConfig {
            cert_file: Some(c.clone()),
            key_file: Some(k.clone()),
            reload_interval: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        files.validate().unwrap();
        let tls = files.server(Alpn::Http).unwrap();
        assert_eq!(tls.config().alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let before = Arc::as_ptr(&tls.config());
        assert_eq!(before, Arc::as_ptr(&tls.config()), "not read again before the interval");
        // A broken file at reload keeps the previous configuration.
        std::fs::write(&k, "not a key").unwrap();
        tls.current.lock().unwrap().at -= Duration::from_secs(2);
        assert_eq!(before, Arc::as_ptr(&tls.config()));
        let (cert2, key2) = self_signed("second.test");
        std::fs::write(&c, cert2).unwrap();
        std::fs::write(&k, key2).unwrap();
        tls.current.lock().unwrap().at -= Duration::from_secs(2);
        assert_ne!(before, Arc::as_ptr(&tls.config()), "read again once due");
    }
}
