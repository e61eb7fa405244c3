//! The verified-token cache: a token whose signature was checked once is not checked again
//! while it lives, so that `/me` with EdDSA costs about what it costs with HMAC.
//!
//! Bounded (a fixed number of entries, evicted by `quick_cache`'s S3-FIFO), keyed by the
//! SHA-256 of the whole token (a changed byte is another key; the token itself is not kept),
//! each entry dropped once the token has expired. A hit is still refused when its key is gone
//! (removed from the list, or retired past its overlap): the caller checks that on every hit.
//! What the store decides (sign-out, the session epoch) is never cached here.

use std::sync::Arc;

use authd_strategy_api::Claims;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::config::SigningAlgorithm;

/// Entries kept at most (a few hundred bytes each).
pub const CAPACITY: usize = 16_384;

/// A verified token: its claims and the key that verified it.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    pub kid: Option<String>,
    pub alg: SigningAlgorithm,
}

/// Tokens verified recently.
pub struct VerifiedCache {
    entries: Cache<[u8; 32], Arc<Verified>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            entries: Cache::new(capacity.max(1)),
        }
    }

    /// The cache key of a token.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The entry of `key` if its token is still within its times at `now`; an expired one is
    /// dropped.
    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<Arc<Verified>> {
        let hit = self.entries.get(key)?;
        if hit.claims.exp <= now || hit.claims.nbf > now {
            self.entries.remove(key);
            return None;
        }
        Some(hit)
    }

    pub fn insert(&self, key: [u8; 32], verified: Verified) {
        self.entries.insert(key, Arc::new(verified));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use authd_strategy_api::Purpose;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "user?id=x".into(),
            jti: "j".into(),
            iat: 0,
            nbf: 0,
            exp,
            iss: "authd".into(),
            aud: Vec::new(),
            purpose: Purpose::SESSION,
            act: None,
            bnd: None,
            sep: None,
        }
    }

    #[test]
    fn entries_expire_with_their_token_and_the_size_is_bounded() {
        let cache = VerifiedCache::new(100);
        let key = VerifiedCache::key("a.b.c");
        assert_ne!(key, VerifiedCache::key("a.b.d"));
        cache.insert(
            key,
            Verified {
                claims: claims(50),
                kid: None,
                alg: SigningAlgorithm::Hs256,
            },
        );
        assert!(cache.get(&key, 49).is_some());
        assert!(cache.get(&key, 50).is_none());
        assert!(cache.get(&key, 10).is_none(), "dropped once expired");
        for i in 0..1000 {
            cache.insert(
                VerifiedCache::key(&i.to_string()),
                Verified {
                    claims: claims(u64::MAX),
                    kid: None,
                    alg: SigningAlgorithm::Hs256,
                },
            );
        }
        assert!(cache.len() <= 100, "{}", cache.len());
    }
}
