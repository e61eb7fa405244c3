//! The JWKS document (`GET /.well-known/jwks.json`) and how long verifiers may cache it.
//!
//! Only public keys of asymmetric keys that are pending, active or retired (not gone) are
//! published; HMAC secrets never are, so an HMAC-only deployment publishes `{"keys": []}`.

use std::time::Duration;

use super::keyset::KeySet;

/// The longest `max-age` ever sent.
const MAX_AGE_CAP: u64 = 3600;

/// `max-age` of the JWKS: half of `publish_ahead` (at most an hour, at least a second). A new
/// key is published `publish_ahead` before it signs, and daemons sharing a store pick it up
/// within a quarter of it (see `TokenService::refresh_every`), so a verifier's cached copy
/// has it before its first token.
pub fn max_age(publish_ahead: Duration) -> u64 {
    (publish_ahead.as_secs() / 2).clamp(1, MAX_AGE_CAP)
}

/// The `Cache-Control` value.
pub fn cache_control(publish_ahead: Duration) -> String {
    format!("public, max-age={}", max_age(publish_ahead))
}

/// The document's bytes at `now`.
pub fn document(keys: &KeySet, now: u64) -> Vec<u8> {
    serde_json::to_vec(&keys.jwks(now)).unwrap_or_else(|_| br#"{"keys":[]}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_within_publish_ahead() {
        for secs in [1, 2, 60, 3600, 7200, 7 * 86_400] {
            let d = Duration::from_secs(secs);
            assert!(max_age(d) <= secs.max(1));
            assert!(max_age(d) <= MAX_AGE_CAP);
        }
        assert_eq!(
            cache_control(Duration::from_secs(3600)),
            "public, max-age=1800"
        );
    }
}
