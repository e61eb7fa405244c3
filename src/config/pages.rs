//! `[pages]`: the hosted pages (sign in, register, reset, magic link, confirmation, second
//! factor, account) and their cookie. Raw serde types (whose doc comments are the user
//! documentation) and their validation, pure like the rest of `config`: the templates folder is
//! read when a generation is built, not here.

use std::net::SocketAddr;
use std::path::PathBuf;

use authd_strategy_api::Problems;
use serde::Deserialize;

/// `[pages]`: server-rendered HTML pages for people, generated from the resources and
/// strategies of this file (only for the phases they enable). Without the table there are no
/// pages, and the JSON API is all there is.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawPages {
    /// The path the pages live under, e.g. `"/ui"`: `{base_path}/{subject}/{strategy}/{phase}`,
    /// `{base_path}/{subject}/confirm`, `{base_path}/{subject}/account`,
    /// `{base_path}/static/style.css`. Must start with `/`, not end with one, and not be `/auth`
    /// or under it. Default `"/ui"`.
    #[serde(default = "default_base_path")]
    pub base_path: String,
    /// Where a `return_to` parameter may send people after they sign in: absolute `http(s)`
    /// URLs, each a prefix (scheme, host and port equal, path under its path), e.g.
    /// `["https://app.example.com/"]`. Anything else (other hosts, `//evil`, `javascript:`,
    /// user info, backslashes) is refused and people land on the account page. Default: none.
    #[serde(default)]
    pub allowed_redirects: Vec<String>,
    /// A folder whose `<page>.html` files (minijinja, autoescaped) replace the built-in
    /// templates of the same name (`base.html`, `form.html`, `message.html`, `account.html`,
    /// ...). Read when the config is loaded or reloaded; a template that does not compile
    /// refuses the config. Relative to the working directory. Default: the built-in ones.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// The site name shown in each page's title and heading. Default `"authd"`.
    #[serde(default = "default_title")]
    pub title: String,
    /// The address people reach this daemon's public listener at, e.g.
    /// `"https://auth.example.com"`. When set, messages whose sender has no link of its own
    /// (`reset_url`, `magic_link_url`, `confirm_url` of `smtp`; any `webhook` or `log` sender)
    /// link to these pages: the email's `{{url}}`, and `data.url` for webhook receivers.
    /// Default: none (links only as the senders configure them).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The session cookie set by a sign-in on the pages.
    #[serde(default)]
    pub cookie: RawCookie,
}

/// `pages.cookie = { name, secure, same_site }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawCookie {
    /// The cookie's name (letters, digits, `_`, `-`). The CSRF cookie is named after it
    /// (`<name>_csrf`). Default `"authd_session"`.
    #[serde(default = "default_cookie_name")]
    pub name: String,
    /// Sent with `Secure` (browsers return it over https only). `false` is allowed only when
    /// `server.listen` is a loopback address (development without TLS). Default true.
    #[serde(default = "yes")]
    pub secure: bool,
    /// `"lax"` (default), `"strict"` or `"none"` (`none` needs `secure`).
    #[serde(default = "default_same_site")]
    pub same_site: String,
}

impl Default for RawCookie {
    fn default() -> Self {
        RawCookie {
            name: default_cookie_name(),
            secure: true,
            same_site: default_same_site(),
        }
    }
}

fn default_base_path() -> String {
    "/ui".into()
}
fn default_title() -> String {
    "authd".into()
}
fn default_cookie_name() -> String {
    "authd_session".into()
}
fn default_same_site() -> String {
    "lax".into()
}
fn yes() -> bool {
    true
}

/// `SameSite` of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// The session cookie of the pages, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
}

/// `[pages]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagesConfig {
    /// Starts with `/`, does not end with one.
    pub base_path: String,
    pub allowed_redirects: Vec<url::Url>,
    pub templates_dir: Option<PathBuf>,
    pub title: String,
    /// Without a trailing `/`.
    pub public_url: Option<String>,
    pub cookie: CookieConfig,
}

/// A path segment the pages may use: what a URL path holds without escaping.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && s != "."
        && s != ".."
}

/// Validates `[pages]` against the listener it is served on.
pub(super) fn check_pages(
    raw: RawPages,
    listen: Option<SocketAddr>,
    problems: &mut Problems,
) -> PagesConfig {
    let base = raw.base_path.trim_end_matches('/');
    let segments: Vec<&str> = base.split('/').skip(1).collect();
    if !raw.base_path.starts_with('/')
        || base.is_empty()
        || !segments.iter().all(|s| is_path_segment(s))
    {
        problems.push(
            "pages.base_path",
            "must be a path such as \"/ui\" (letters, digits, `_`, `-`, `.` between slashes)",
        );
    } else if segments
        .first()
        .is_some_and(|s| *s == "auth" || *s == "healthz")
    {
        problems.push(
            "pages.base_path",
            "must not be /auth, /healthz or under them (the JSON API's routes)",
        );
    }
    let mut allowed_redirects = Vec::new();
    for (i, entry) in raw.allowed_redirects.iter().enumerate() {
        let at = format!("pages.allowed_redirects[{i}]");
        match url::Url::parse(entry) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                allowed_redirects.push(u);
            }
            _ => problems.push(
                at,
                "must be an absolute http(s) URL without user, query or fragment, such as \"https://app.example.com/\"",
            ),
        }
    }
    if raw.title.trim().is_empty() || raw.title.chars().count() > 100 {
        problems.push("pages.title", "must be 1 to 100 characters");
    }
    let public_url = match &raw.public_url {
        None => None,
        Some(text) => match url::Url::parse(text) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.path() == "/" =>
            {
                Some(text.trim_end_matches('/').to_string())
            }
            _ => {
                problems.push(
                    "pages.public_url",
                    "must be an http(s) origin such as \"https://auth.example.com\" (no path, query or user)",
                );
                None
            }
        },
    };
    let name_ok = !raw.cookie.name.is_empty()
        && raw.cookie.name.len() <= 64
        && raw
            .cookie
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        problems.push(
            "pages.cookie.name",
            "must be 1 to 64 letters, digits, `_` or `-`",
        );
    }
    let same_site = match raw.cookie.same_site.to_ascii_lowercase().as_str() {
        "lax" => SameSite::Lax,
        "strict" => SameSite::Strict,
        "none" => SameSite::None,
        _ => {
            problems.push(
                "pages.cookie.same_site",
                "must be \"lax\", \"strict\" or \"none\"",
            );
            SameSite::Lax
        }
    };
    if !raw.cookie.secure {
        if listen.is_some_and(|l| !l.ip().is_loopback()) {
            problems.push(
                "pages.cookie.secure",
                "may be false only when server.listen is a loopback address: a session cookie without Secure travels in clear text",
            );
        }
        if same_site == SameSite::None {
            problems.push(
                "pages.cookie.same_site",
                "\"none\" needs secure = true (browsers refuse it otherwise)",
            );
        }
    }
    PagesConfig {
        base_path: base.to_string(),
        allowed_redirects,
        templates_dir: raw.templates_dir,
        title: raw.title,
        public_url,
        cookie: CookieConfig {
            name: raw.cookie.name,
            secure: raw.cookie.secure,
            same_site,
        },
    }
}
