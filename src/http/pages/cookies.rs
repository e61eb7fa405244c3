//! The pages' cookies: the session cookie (read by the JSON API too, which accepts it where a
//! bearer token may be sent, and cleared by its sign-out) and the name of the CSRF cookie.
//! Must not decide what a cookie's value means: sessions and CSRF tokens are checked elsewhere.

use hyper::header::{self, HeaderMap, HeaderValue};

use crate::config::PagesConfig;
use crate::http::error::Reply;

/// The session cookie's value in `headers`, if any.
pub fn session_cookie(config: &PagesConfig, headers: &HeaderMap) -> Option<String> {
    cookie(headers, &config.cookie.name).filter(|v| !v.is_empty())
}

/// Adds a `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(config: &PagesConfig, reply: &mut Reply) {
    let value = session_cookie_header(config, "", 0);
    if let Ok(v) = HeaderValue::from_str(&value) {
        reply.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name` (the first one sent).
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

pub(super) fn session_cookie_header(config: &PagesConfig, value: &str, max_age: u64) -> String {
    let c = &config.cookie;
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={}{}",
        c.name,
        c.same_site.as_str(),
        if c.secure { "; Secure" } else { "" }
    )
}

/// The CSRF cookie's name: the session cookie's, with `_csrf`.
pub(super) fn csrf_cookie_name(config: &PagesConfig) -> String {
    format!("{}_csrf", config.cookie.name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a_session=1; authd_session=tok; x=2"),
        );
        assert_eq!(cookie(&h, "authd_session").as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "session"), None);
    }
}
