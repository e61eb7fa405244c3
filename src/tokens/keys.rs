//! Asymmetric signing keys: generating them (Ed25519, P-256, RSA 2048), reading the operator's
//! PEM files, storing them as PKCS#8, and their public halves as JWKs with the RFC 7638
//! thumbprint as default `kid`. The cryptography is RustCrypto's (the crates `jsonwebtoken`
//! signs with); this module only converts between their encodings.
//!
//! It must not read files or the store (callers do), and no error names key material.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::SigningAlgorithm;

/// RSA keys are made and accepted at this size or more.
pub const RSA_BITS: usize = 2048;

/// Why a key could not be made or read. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "is not a PEM private key (PKCS#8 `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`)"
    )]
    NotPem,
    #[error("is not an Ed25519, P-256 or RSA private key")]
    Unsupported,
    #[error("is an RSA key of {0} bits; use {RSA_BITS} bits or more")]
    RsaTooSmall(usize),
    #[error("is a {found} key, not a {wanted} key")]
    WrongAlgorithm {
        found: &'static str,
        wanted: &'static str,
    },
    #[error("HMAC has no key pair")]
    Hmac,
    #[error("cannot encode the key: {0}")]
    Encoding(String),
}

/// The private half, as its crate holds it.
enum Private {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// An asymmetric key pair with its `kid`, ready to sign and verify.
pub struct KeyPair {
    pub alg: SigningAlgorithm,
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key as a JWK (`kty`, `crv`/`x`/`y` or `n`/`e`, `kid`, `alg`, `use`).
    jwk: Value,
    /// PKCS#8 DER of the private key: what the store keeps (sealed).
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The `jsonwebtoken` algorithm of `alg`.
pub fn jwt_algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::Hs256 => Algorithm::HS256,
        SigningAlgorithm::Hs384 => Algorithm::HS384,
        SigningAlgorithm::Hs512 => Algorithm::HS512,
        SigningAlgorithm::EdDsa => Algorithm::EdDSA,
        SigningAlgorithm::Es256 => Algorithm::ES256,
        SigningAlgorithm::Rs256 => Algorithm::RS256,
    }
}

/// authd's algorithm of a token header's `alg`, if authd signs with it.
pub fn from_jwt_algorithm(alg: Algorithm) -> Option<SigningAlgorithm> {
    SigningAlgorithm::ALL
        .into_iter()
        .find(|a| jwt_algorithm(*a) == alg)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rng() -> rand_core06::OsRng {
    rand_core06::OsRng
}

impl Private {
    fn alg(&self) -> SigningAlgorithm {
        match self {
            Private::Ed25519(_) => SigningAlgorithm::EdDsa,
            Private::P256(_) => SigningAlgorithm::Es256,
            Private::Rsa(_) => SigningAlgorithm::Rs256,
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<Private, KeyError> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(Private::Ed25519(k));
        }
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(Private::P256(k));
        }
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
            return Ok(Private::Rsa(Box::new(k)));
        }
        Err(KeyError::Unsupported)
    }

    fn from_pem(text: &str) -> Result<Private, KeyError> {
        let label = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("-----BEGIN "))
            .ok_or(KeyError::NotPem)?;
        match label {
            "-----BEGIN PRIVATE KEY-----" => {
                let (_, der) = pem_der(text)?;
                Private::from_pkcs8(&der)
            }
            "-----BEGIN EC PRIVATE KEY-----" => p256::SecretKey::from_sec1_pem(text)
                .map(Private::P256)
                .map_err(|_| KeyError::Unsupported),
            "-----BEGIN RSA PRIVATE KEY-----" => rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map(|k| Private::Rsa(Box::new(k)))
                .map_err(|_| KeyError::Unsupported),
            _ => Err(KeyError::NotPem),
        }
    }
}

/// The DER inside a PEM document.
fn pem_der(text: &str) -> Result<(String, zeroize::Zeroizing<Vec<u8>>), KeyError> {
    let start = text.find("-----BEGIN ").ok_or(KeyError::NotPem)?;
    let (label, der) =
        pem_rfc7468::decode_vec(&text.as_bytes()[start..]).map_err(|_| KeyError::NotPem)?;
    Ok((label.to_string(), zeroize::Zeroizing::new(der)))
}

impl KeyPair {
    /// A new random key for `alg` (an asymmetric algorithm).
    ///
    /// # Errors
    /// [`KeyError::Hmac`] for an HMAC algorithm; encoding failures.
    pub fn generate(alg: SigningAlgorithm) -> Result<KeyPair, KeyError> {
        let private = match alg {
            SigningAlgorithm::EdDsa => {
                Private::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng()))
            }
            SigningAlgorithm::Es256 => Private::P256(p256::SecretKey::random(&mut rng())),
            SigningAlgorithm::Rs256 => Private::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut rng(), RSA_BITS)
                    .map_err(|e| KeyError::Encoding(e.to_string()))?,
            )),
            _ => return Err(KeyError::Hmac),
        };
        KeyPair::from_private(private, None)
    }

    /// A key stored as PKCS#8 DER, which must be of `alg`.
    ///
    /// # Errors
    /// When the DER is not such a key.
    pub fn from_pkcs8(alg: SigningAlgorithm, der: &[u8], kid: String) -> Result<KeyPair, KeyError> {
        let private = Private::from_pkcs8(der)?;
        if private.alg() != alg {
            return Err(KeyError::WrongAlgorithm {
                found: private.alg().name(),
                wanted: alg.name(),
            });
        }
        KeyPair::from_private(private, Some(kid))
    }

    /// The operator's PEM file's text; `kid` defaults to the thumbprint.
    ///
    /// # Errors
    /// When the text is not a PEM private key authd signs with.
    pub fn from_pem(text: &str, kid: Option<String>) -> Result<KeyPair, KeyError> {
        KeyPair::from_private(Private::from_pem(text)?, kid)
    }

    fn from_private(private: Private, kid: Option<String>) -> Result<KeyPair, KeyError> {
        let enc = |e: &dyn std::fmt::Display| KeyError::Encoding(e.to_string());
        let alg = private.alg();
        let (pkcs8, encoding, decoding, public) = match &private {
            Private::Ed25519(k) => {
                let der = k.to_pkcs8_der().map_err(|e| enc(&e))?;
                let x = b64(k.verifying_key().as_bytes());
                let decoding = DecodingKey::from_ed_components(&x).map_err(|e| enc(&e))?;
                let encoding = EncodingKey::from_ed_der(der.as_bytes());
                (
                    der.as_bytes().to_vec(),
                    encoding,
                    decoding,
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                )
            }
            Private::P256(k) => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let der = k.to_pkcs8_der().map_err(|e| enc(&e))?;
                let point = k.public_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(KeyError::Unsupported);
                };
                let (x, y) = (b64(x), b64(y));
                let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| enc(&e))?;
                let encoding = EncodingKey::from_ec_der(der.as_bytes());
                (
                    der.as_bytes().to_vec(),
                    encoding,
                    decoding,
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                )
            }
            Private::Rsa(k) => {
                let bits = k.size() * 8;
                if bits < RSA_BITS {
                    return Err(KeyError::RsaTooSmall(bits));
                }
                use rsa::pkcs8::EncodePrivateKey as _;
                let der = k.to_pkcs8_der().map_err(|e| enc(&e))?;
                // jsonwebtoken signs RSA with PKCS#1 DER.
                let pkcs1 = k.to_pkcs1_der().map_err(|e| enc(&e))?;
                let (n, e) = (b64(&k.n().to_bytes_be()), b64(&k.e().to_bytes_be()));
                let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| enc(&e))?;
                let encoding = EncodingKey::from_rsa_der(pkcs1.as_bytes());
                (
                    der.as_bytes().to_vec(),
                    encoding,
                    decoding,
                    json!({"kty": "RSA", "n": n, "e": e}),
                )
            }
        };
        let kid = match kid {
            Some(kid) => kid,
            None => thumbprint(&public)?,
        };
        let mut jwk = public;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.name());
        jwk["use"] = json!("sig");
        Ok(KeyPair {
            alg,
            kid,
            encoding,
            decoding,
            jwk,
            pkcs8: zeroize::Zeroizing::new(pkcs8),
        })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// PKCS#8 DER of the private key (to be sealed before it is stored).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: its required members, in
/// lexicographic order, without white space.
///
/// # Errors
/// When `jwk` lacks a required member.
pub fn thumbprint(jwk: &Value) -> Result<String, KeyError> {
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .ok_or(KeyError::Unsupported)
    };
    let canonical = match jwk.get("kty").and_then(Value::as_str) {
        Some("OKP") => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            member("crv")?,
            member("x")?
        ),
        Some("EC") => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        Some("RSA") => format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            member("e")?,
            member("n")?
        ),
        _ => return Err(KeyError::Unsupported),
    };
    Ok(b64(&Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638, section 3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_round_trip_through_pkcs8_and_pem() {
        for alg in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let k = KeyPair::generate(alg).unwrap();
            assert_eq!(k.kid, thumbprint(k.jwk()).unwrap());
            let again = KeyPair::from_pkcs8(alg, k.pkcs8(), k.kid.clone()).unwrap();
            assert_eq!(again.jwk(), k.jwk());
            let pem =
                pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, k.pkcs8())
                    .unwrap();
            let from_pem = KeyPair::from_pem(&pem, None).unwrap();
            assert_eq!((from_pem.alg, &from_pem.kid), (alg, &k.kid));
            let other = if alg == SigningAlgorithm::EdDsa {
                SigningAlgorithm::Es256
            } else {
                SigningAlgorithm::EdDsa
            };
            assert!(KeyPair::from_pkcs8(other, k.pkcs8(), k.kid.clone()).is_err());
        }
        assert_eq!(
            KeyPair::generate(SigningAlgorithm::Hs256).unwrap_err(),
            KeyError::Hmac
        );
        assert_eq!(
            KeyPair::from_pem("hello", None).unwrap_err(),
            KeyError::NotPem
        );
    }

    #[test]
    fn rsa_keys_are_2048_bits_and_read_from_pkcs1() {
        let k = KeyPair::generate(SigningAlgorithm::Rs256).unwrap();
        let private = rsa::RsaPrivateKey::from_pkcs8_der(k.pkcs8()).unwrap();
        assert_eq!(private.size() * 8, RSA_BITS);
        let pkcs1 = private.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        let from_pem = KeyPair::from_pem(&pkcs1, Some("r1".into())).unwrap();
        assert_eq!(from_pem.kid, "r1");
        assert_eq!(from_pem.jwk()["n"], k.jwk()["n"]);
        assert_eq!(from_pem.jwk()["e"], "AQAB");
    }
}
