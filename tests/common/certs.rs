//! Certificates generated for a test (rcgen): a CA, a server certificate for localhost and
//! 127.0.0.1, a client certificate for mutual TLS, and a second, unrelated CA.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

pub struct Certs {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA")
}

pub fn generate(dir: &Path) -> Certs {
    let authority = ca("switchyard test CA");
    let other = ca("some other CA");
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, file: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, file);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &authority).expect("sign");
        let (c, k) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    };
    let (server_cert, server_key) =
        leaf(vec!["localhost".into(), "127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth, "server");
    let (client_cert, client_key) = leaf(vec!["client.test".into()], ExtendedKeyUsagePurpose::ClientAuth, "client");
    let (ca_path, other_path) = (dir.join("ca.crt"), dir.join("other-ca.crt"));
    std::fs::write(&ca_path, authority.pem()).expect("write ca");
    std::fs::write(&other_path, other.pem()).expect("write other ca");
    Certs { ca: ca_path, other_ca: other_path, server_cert, server_key, client_cert, client_key }
}
