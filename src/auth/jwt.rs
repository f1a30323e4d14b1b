//! JSON Web Tokens (RFC 7519) in compact form, and their signatures checked against the keys of
//! a JWKS (RFC 7517): RS256/384/512, PS256/384/512, ES256/384 and EdDSA (Ed25519), with ring.
//! `none` and HMAC algorithms are refused: a server only holds public keys.

use base64::Engine;
use ring::signature;
use serde_json::{Map, Value};

/// One public key of a JWKS.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    key: PublicKey,
}

#[derive(Debug, Clone)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 ‖ x ‖ y) on P-256 or P-384.
    Ec {
        p384: bool,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| "not base64url".to_string())
}

/// The usable signing keys of a JWKS document; keys of other types or uses are skipped.
pub fn parse_jwks(json: &[u8]) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_slice(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("JWKS has no \"keys\" array")?;
    let text = |k: &Value, f: &str| k.get(f).and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::new();
    for k in keys {
        if text(k, "use").is_some_and(|u| u != "sig") {
            continue;
        }
        let field = |f: &str| text(k, f).ok_or_else(|| format!("JWK without \"{f}\"")).and_then(|v| b64(&v));
        let key = match (text(k, "kty").as_deref(), text(k, "crv").as_deref()) {
            (Some("RSA"), _) => PublicKey::Rsa { n: field("n")?, e: field("e")? },
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                let point = [vec![4u8], field("x")?, field("y")?].concat();
                PublicKey::Ec { p384: crv == "P-384", point }
            }
            (Some("OKP"), Some("Ed25519")) => PublicKey::Ed25519(field("x")?),
            _ => continue,
        };
        out.push(Jwk { kid: text(k, "kid"), key });
    }
    Ok(out)
}

/// A decoded token whose signature is not checked yet.
#[derive(Debug)]
pub struct Token {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signed: String,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS; says what is wrong without quoting the token.
pub fn decode(token: &str) -> Result<Token, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not a JWT (three dot-separated parts)".into());
    };
    let header: Value = serde_json::from_slice(&b64(h).map_err(|e| format!("JWT header {e}"))?)
        .map_err(|_| "JWT header is not JSON".to_string())?;
    let claims: Value = serde_json::from_slice(&b64(p).map_err(|e| format!("JWT payload {e}"))?)
        .map_err(|_| "JWT payload is not JSON".to_string())?;
    let Value::Object(claims) = claims else { return Err("JWT payload is not a JSON object".into()) };
    Ok(Token {
        alg: header.get("alg").and_then(Value::as_str).unwrap_or_default().to_string(),
        kid: header.get("kid").and_then(Value::as_str).map(str::to_string),
        claims,
        signed: format!("{h}.{p}"),
        signature: b64(s).map_err(|e| format!("JWT signature {e}"))?,
    })
}

impl Token {
    /// Checks the signature with the key named by `kid` (without one: any key that fits).
    /// `Err(None)`: no key has that `kid` (the JWKS may have rotated); `Err(Some(reason))`:
    /// the token is refused.
    pub fn verify(&self, keys: &[Jwk]) -> Result<(), Option<String>> {
        let candidates: Vec<&Jwk> = match &self.kid {
            Some(kid) => keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            None => keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(None);
        }
        let msg = self.signed.as_bytes();
        for jwk in candidates {
            let ok = match (&jwk.key, self.alg.as_str()) {
                (PublicKey::Rsa { n, e }, alg) => {
                    let params: &signature::RsaParameters = match alg {
                        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                        _ => continue,
                    };
                    signature::RsaPublicKeyComponents { n, e }.verify(params, msg, &self.signature).is_ok()
                }
                (PublicKey::Ec { p384: false, point }, "ES256") => {
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(msg, &self.signature)
                        .is_ok()
                }
                (PublicKey::Ec { p384: true, point }, "ES384") => {
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                        .verify(msg, &self.signature)
                        .is_ok()
                }
                (PublicKey::Ed25519(x), "EdDSA") => {
                    signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, &self.signature).is_ok()
                }
                _ => continue,
            };
            if ok {
                return Ok(());
            }
        }
        match self.alg.as_str() {
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA" => {
                Err(Some("JWT signature does not verify".into()))
            }
            "" => Err(Some("JWT header has no alg".into())),
            other => Err(Some(format!("JWT algorithm {other} is not accepted"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn enc(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn es256_tokens_verify_with_their_key_only() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let public = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": enc(&public[1..33]), "y": enc(&public[33..65])},
            {"kty": "oct", "k": "c2VjcmV0"}
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1, "symmetric keys are skipped");
        let sign = |header: Value, claims: Value| {
            let signed = format!("{}.{}", enc(header.to_string().as_bytes()), enc(claims.to_string().as_bytes()));
            let sig = pair.sign(&rng, signed.as_bytes()).unwrap();
            format!("{signed}.{}", enc(sig.as_ref()))
        };
        let good = sign(serde_json::json!({"alg": "ES256", "kid": "k1"}), serde_json::json!({"sub": "ann"}));
        let t = decode(&good).unwrap();
        assert_eq!(t.claims["sub"], "ann");
        t.verify(&keys).unwrap();

        let tampered = format!(
            "{}.{}.{}",
            good.split('.').next().unwrap(),
            enc(b"{\"sub\":\"root\"}"),
            good.split('.').nth(2).unwrap()
        );
        assert!(decode(&tampered).unwrap().verify(&keys).unwrap_err().unwrap().contains("does not verify"));
        let other_kid = sign(serde_json::json!({"alg": "ES256", "kid": "k2"}), serde_json::json!({}));
        assert!(decode(&other_kid).unwrap().verify(&keys).unwrap_err().is_none(), "unknown kid");
        let none = format!("{}.{}.", enc(b"{\"alg\":\"none\"}"), enc(b"{}"));
        assert!(decode(&none).unwrap().verify(&keys).unwrap_err().unwrap().contains("not accepted"));
        assert!(decode("abc").is_err());
    }
}
