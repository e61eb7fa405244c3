//! Where a `return_to` may send people after they sign in: an absolute `http(s)` URL under one
//! of `pages.allowed_redirects` (scheme, host and port equal; the path under the allowed one),
//! or a path of the pages themselves. The check parses the URL as a browser would (WHATWG
//! URL, the `url` crate) and compares the parsed parts, never text prefixes, so that
//! `//evil.example`, `https://app.example.com.evil`, `https://app.example.com@evil`,
//! `/\evil`, `javascript:` and encoded tricks are refused. Must not decide anything else.

use url::Url;

/// The most characters of a `return_to` looked at.
const MAX_LEN: usize = 2048;

/// The URL to redirect to, when `return_to` is allowed; `None` otherwise.
pub fn check(return_to: &str, allowed: &[Url], base_path: &str) -> Option<String> {
    if return_to.is_empty()
        || return_to.len() > MAX_LEN
        || return_to.contains('\\')
        || return_to
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    // A path of the pages themselves (`/ui/user/account`): resolved against a placeholder
    // origin, it must stay on it and under the base path.
    if return_to.starts_with('/') && !return_to.starts_with("//") {
        let placeholder = Url::parse("http://pages.invalid/").ok()?;
        let resolved = placeholder.join(return_to).ok()?;
        let under_base = resolved.path() == base_path
            || resolved
                .path()
                .strip_prefix(base_path)
                .is_some_and(|rest| rest.starts_with('/'));
        if resolved.origin() == placeholder.origin() && under_base {
            let mut out = resolved.path().to_string();
            if let Some(q) = resolved.query() {
                out.push('?');
                out.push_str(q);
            }
            return Some(out);
        }
        return None;
    }
    let url = Url::parse(return_to).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    allowed
        .iter()
        .any(|a| {
            a.scheme() == url.scheme()
                && a.host() == url.host()
                && a.port_or_known_default() == url.port_or_known_default()
                && path_under(url.path(), a.path())
        })
        .then(|| url.to_string())
}

/// Whether `path` is `prefix` or under it (as path segments: `/app` does not cover `/apple`).
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn allowed() -> Vec<Url> {
        vec![
            Url::parse("https://app.example.com/").unwrap(),
            Url::parse("https://tools.example.com/admin").unwrap(),
        ]
    }

    #[test]
    fn allowed_targets_pass() {
        let a = allowed();
        for ok in [
            "https://app.example.com/",
            "https://app.example.com/dashboard?tab=1",
            "https://APP.example.com:443/x",
            "https://tools.example.com/admin",
            "https://tools.example.com/admin/users",
            "/ui/user/account",
        ] {
            assert!(check(ok, &a, "/ui").is_some(), "{ok}");
        }
    }

    #[test]
    fn open_redirects_are_refused() {
        let a = allowed();
        for bad in [
            "//evil.example/",
            "///evil.example/",
            "/\\evil.example/",
            "\\\\evil.example",
            "https://app.example.com.evil/",
            "https://app.example.com@evil.example/",
            "https://evil.example@app.example.com/",
            "https://user:pw@app.example.com/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "https://tools.example.com/administrator",
            "https://tools.example.com/",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "https://evil.example/",
            "https:evil.example",
            "https:/evil.example",
            " https://evil.example/",
            "https://app.example.com%2eevil/",
            "/ui/../evil",
            "/uix/user",
            "/auth/user/me",
            "https://app.example.com/\n.evil",
            "",
        ] {
            assert_eq!(check(bad, &a, "/ui"), None, "{bad}");
        }
    }
}
