//! Secrets a strategy must be able to read back (a TOTP seed), sealed at rest.
//!
//! With `tokens.key_encryption_key_env` set, the daemon's [`Sealer`] encrypts under that key
//! (an AEAD, the key id written beside the ciphertext so that the key can be rotated); without
//! it, [`ClearSealer`] stores the secret as it is, and README says so.

/// Seals and opens secrets kept in the store.
pub trait Sealer: Send + Sync {
    /// A text to store for `plaintext`.
    ///
    /// # Errors
    /// When encryption fails.
    fn seal(&self, plaintext: &[u8]) -> Result<String, crate::Error>;

    /// The plaintext of a text [`Sealer::seal`] made (by this or an earlier key).
    ///
    /// # Errors
    /// When the text was not made by a key this sealer holds, or was changed.
    fn open(&self, sealed: &str) -> Result<Vec<u8>, crate::Error>;

    /// Whether `sealed` was made by another key than the one that seals now (an older
    /// key-encryption key, or in clear): the owner should seal it again and store the new text,
    /// so that the old key can be dropped without stranding anything.
    fn needs_reseal(&self, sealed: &str) -> bool {
        let _ = sealed;
        false
    }
}

/// Stores secrets in clear (base64, prefixed `clear:`), for deployments without a
/// key-encryption key.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClearSealer;

impl Sealer for ClearSealer {
    fn seal(&self, plaintext: &[u8]) -> Result<String, crate::Error> {
        use base64::Engine;
        Ok(format!(
            "clear:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(plaintext)
        ))
    }

    fn open(&self, sealed: &str) -> Result<Vec<u8>, crate::Error> {
        use base64::Engine;
        let text = sealed.strip_prefix("clear:").ok_or_else(|| {
            crate::Error::Internal(
                "SE0001 a sealed secret needs a key-encryption key this daemon does not hold"
                    .into(),
            )
        })?;
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .map_err(|_| crate::Error::Internal("SE0002 a stored secret is unreadable".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn clear_round_trips_and_refuses_other_texts() {
        let s = ClearSealer;
        let sealed = s.seal(b"seed").unwrap();
        assert_eq!(s.open(&sealed).unwrap(), b"seed");
        assert!(s.open("v1:k1:xyz").is_err());
    }
}
