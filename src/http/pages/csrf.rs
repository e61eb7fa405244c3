//! CSRF protection of the pages' forms: a double-submit token tied to a cookie. The cookie
//! (`<cookie name>_csrf`: 32 random bytes, `HttpOnly`, `SameSite=Strict`, scoped to the pages'
//! path) holds a random value; each form carries `HMAC-SHA-256(key, value)` in its
//! `csrf_token` field. A state-changing POST is refused unless both are there and the HMAC of
//! the cookie's value equals the field, compared in constant time. Another site can make a
//! browser send the cookie but cannot read it, and cannot compute the field without the
//! daemon's key (kept in the store, so every daemon of a deployment agrees), so a cookie
//! planted by a sibling subdomain is no help either. Must not decide anything else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The form field carrying the token.
pub const FIELD: &str = "csrf_token";
/// Random bytes in the cookie.
const COOKIE_BYTES: usize = 32;
/// Domain separation of the HMAC.
const LABEL: &[u8] = b"authd pages csrf v1\0";

/// A new random cookie value.
pub fn new_cookie_value() -> String {
    let mut bytes = [0u8; COOKIE_BYTES];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` has the form of a cookie value this module makes (so that a cookie of
/// another form is replaced rather than signed).
pub fn is_cookie_value(value: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(value)
        .is_ok_and(|b| b.len() == COOKIE_BYTES)
}

/// The form token for a cookie value.
pub fn token_for(key: &[u8], cookie_value: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, cookie_value))
}

fn mac(key: &[u8], cookie_value: &str) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(LABEL);
    m.update(cookie_value.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Whether the submitted `token` matches the cookie (both present, the HMAC equal in constant
/// time).
pub fn verify(key: &[u8], cookie_value: Option<&str>, token: Option<&str>) -> bool {
    let (Some(cookie), Some(token)) = (cookie_value, token) else {
        return false;
    };
    if !is_cookie_value(cookie) {
        return false;
    }
    let Ok(given) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    let expected = mac(key, cookie);
    !expected.is_empty() && bool::from(expected.as_slice().ct_eq(given.as_slice()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_cookie_only() {
        let key = [9u8; 32];
        let cookie = new_cookie_value();
        let token = token_for(&key, &cookie);
        assert!(verify(&key, Some(&cookie), Some(&token)));
        assert!(!verify(&key, Some(&cookie), None));
        assert!(!verify(&key, None, Some(&token)));
        assert!(!verify(&key, Some(&new_cookie_value()), Some(&token)));
        assert!(!verify(&[8u8; 32], Some(&cookie), Some(&token)));
        // The cookie value itself is not a token (plain double submit would accept it).
        assert!(!verify(&key, Some(&cookie), Some(&cookie)));
        let mut bent = token.clone().into_bytes();
        bent[3] = if bent[3] == b'A' { b'B' } else { b'A' };
        assert!(!verify(
            &key,
            Some(&cookie),
            Some(std::str::from_utf8(&bent).unwrap())
        ));
        assert!(!verify(
            &key,
            Some("short"),
            Some(&token_for(&key, "short"))
        ));
    }
}
