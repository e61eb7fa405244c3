//! The key-encryption key (`tokens.key_encryption_key_env`): private signing keys and strategy
//! secrets (TOTP seeds) sealed at rest with XChaCha20-Poly1305, as
//! `v1:<kek id>:<base64url(nonce ‖ ciphertext)>`.
//!
//! The variable holds one or more keys (base64 of 32 bytes, separated by commas): the first
//! seals, every one opens. A key's id is derived from the key itself (the first 8 bytes of a
//! SHA-256), so that an operator never names them and a text always says which key opens it.
//! Rotation: put the new key first and keep the old one after it; texts sealed by the old one
//! still open, and their owners seal them again ([`Sealer::needs_reseal`]: authd reseals the
//! stored signing keys at its next key refresh, strategies their secrets when they next use
//! them); drop the old key only once nothing is sealed under it. A text under a key no longer
//! held fails with `SE0003` naming that key's id, so that the key can be put back.
//!
//! It must not log or return key bytes or plaintexts.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use authd_strategy_api::{Error as ApiError, Sealer};

/// The format version of sealed texts.
const PREFIX: &str = "v1";
/// Bytes of an XChaCha20 nonce (random: 192 bits never repeat by chance).
const NONCE_BYTES: usize = 24;

/// Why the key-encryption key could not be read. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    #[error("tokens.key_encryption_key_env: environment variable {0} is not set")]
    Missing(String),
    #[error(
        "tokens.key_encryption_key_env: entry {0} of {1} is not base64 of 32 bytes (make one with `openssl rand -base64 32`)"
    )]
    Malformed(usize, String),
}

/// One or more key-encryption keys: the first seals, all open.
#[derive(Clone)]
pub struct Kek {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

/// The id of a key: 16 hex characters of SHA-256 over a label and the key.
fn key_id(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"authd key-encryption key id\0")
        .chain_update(key)
        .finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Kek {
    /// Reads the variable `var`.
    ///
    /// # Errors
    /// When it is unset or an entry is not a key.
    pub fn from_env(var: &str) -> Result<Kek, KekError> {
        let text = std::env::var(var).map_err(|_| KekError::Missing(var.to_string()))?;
        Kek::parse(&text, var)
    }

    /// Reads keys from `text` (`var` names where it came from, for messages).
    ///
    /// # Errors
    /// When an entry is not base64 of 32 bytes, or there is none.
    pub fn parse(text: &str, var: &str) -> Result<Kek, KekError> {
        let mut keys = Vec::new();
        for (i, entry) in text.split(',').map(str::trim).enumerate() {
            let bytes = zeroize::Zeroizing::new(
                STANDARD
                    .decode(entry)
                    .or_else(|_| STANDARD_NO_PAD.decode(entry))
                    .or_else(|_| URL_SAFE_NO_PAD.decode(entry))
                    .map_err(|_| KekError::Malformed(i + 1, var.to_string()))?,
            );
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| KekError::Malformed(i + 1, var.to_string()))?;
            keys.push((key_id(&bytes), cipher));
        }
        if keys.is_empty() {
            return Err(KekError::Malformed(1, var.to_string()));
        }
        Ok(Kek { keys })
    }

    /// The ids, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The key id a sealed text names, if it is one.
    pub fn id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(PREFIX), Some(id), Some(_)) => Some(id),
            _ => None,
        }
    }
}

/// Associated data: binds a text to its format and key id.
fn aad(id: &str) -> Vec<u8> {
    format!("authd sealed {PREFIX}:{id}").into_bytes()
}

/// Seals with a [`Kek`]; opens texts of any of its keys, and `clear:` texts of
/// deployments that had none (which then need a reseal).
#[derive(Debug, Clone)]
pub struct KekSealer(pub Kek);

impl Sealer for KekSealer {
    fn seal(&self, plaintext: &[u8]) -> Result<String, ApiError> {
        let Some((id, cipher)) = self.0.keys.first() else {
            return Err(ApiError::Internal("SE0004 no key-encryption key".into()));
        };
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let aad = aad(id);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| ApiError::Internal("SE0005 sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}:{id}:{}", URL_SAFE_NO_PAD.encode(out)))
    }

    fn open(&self, sealed: &str) -> Result<Vec<u8>, ApiError> {
        if sealed.starts_with("clear:") {
            return authd_strategy_api::ClearSealer.open(sealed);
        }
        let unreadable = || ApiError::Internal("SE0002 a stored secret is unreadable".into());
        let id = Kek::id_of(sealed).ok_or_else(unreadable)?;
        let Some((_, cipher)) = self.0.keys.iter().find(|(k, _)| k == id) else {
            return Err(ApiError::Internal(format!(
                "SE0003 a secret is sealed with key-encryption key {id}, which tokens.key_encryption_key_env does not hold: add that key back after the new one"
            )));
        };
        let body = sealed
            .rsplit_once(':')
            .map(|(_, b)| b)
            .ok_or_else(unreadable)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_BYTES {
            return Err(unreadable());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(id),
                },
            )
            .map_err(|_| unreadable())
    }

    fn needs_reseal(&self, sealed: &str) -> bool {
        Kek::id_of(sealed) != self.0.keys.first().map(|(id, _)| id.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    #[test]
    fn seals_opens_and_refuses_changed_texts() {
        let s = KekSealer(Kek::parse(&key(), "K").unwrap());
        let sealed = s.seal(b"seed").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("seed"));
        assert_eq!(s.open(&sealed).unwrap(), b"seed");
        assert!(!s.needs_reseal(&sealed));
        // Two seals of one plaintext differ (random nonce).
        assert_ne!(s.seal(b"seed").unwrap(), sealed);
        // A flipped byte, or a text moved under another id, does not open.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(s.open(&String::from_utf8(bytes).unwrap()).is_err());
        let other = KekSealer(Kek::parse(&key(), "K").unwrap());
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn rotation_keeps_old_texts_readable_and_asks_for_a_reseal() {
        let (old, new) = (key(), key());
        let before = KekSealer(Kek::parse(&old, "K").unwrap());
        let sealed = before.seal(b"private key").unwrap();
        let after = KekSealer(Kek::parse(&format!("{new}, {old}"), "K").unwrap());
        assert_eq!(after.open(&sealed).unwrap(), b"private key");
        assert!(after.needs_reseal(&sealed));
        let resealed = after.seal(&after.open(&sealed).unwrap()).unwrap();
        assert!(!after.needs_reseal(&resealed));
        // The old key dropped: the resealed text still opens, the old one names its key.
        let only_new = KekSealer(Kek::parse(&new, "K").unwrap());
        assert_eq!(only_new.open(&resealed).unwrap(), b"private key");
        let e = only_new.open(&sealed).unwrap_err().to_string();
        assert!(e.contains(&key_id(&STANDARD.decode(&old).unwrap())), "{e}");
        // Texts of a deployment without a KEK open, and are resealed.
        let clear = authd_strategy_api::ClearSealer.seal(b"x").unwrap();
        assert_eq!(after.open(&clear).unwrap(), b"x");
        assert!(after.needs_reseal(&clear));
    }

    #[test]
    fn malformed_keys_are_named_by_position_never_echoed() {
        let e = Kek::parse("c2hvcnQ=", "AUTHD_KEK").unwrap_err().to_string();
        assert!(e.contains("entry 1") && e.contains("AUTHD_KEK"), "{e}");
        assert!(!e.contains("c2hvcnQ"));
        assert!(Kek::parse(&format!("{},", key()), "K").is_err());
    }
}
