//! The hosted pages over HTTP, without a browser: what a plain client can check (CSRF
//! refusals, open redirects, headers, cookie attributes, config errors, the JSON API left as
//! it was). The browser tests (tests/browser) walk the same pages in chromium.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::util::{ARGON2, TestServer, receiver, user_resource};

const PAGES: &str = r#"
[pages]
base_path = "/ui"
title = "Example"
allowed_redirects = ["https://app.example.com/"]
cookie = { name = "sid", secure = false, same_site = "strict" }
"#;

/// A response as text.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// The value of the hidden input `name` (the first one).
    fn hidden(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }

    /// Every hidden input of the first form, as a browser would send them.
    fn hiddens(&self) -> Vec<(String, String)> {
        let form = self.body.split("</form>").next().unwrap_or("");
        form.split("<input type=\"hidden\" name=\"")
            .skip(1)
            .filter_map(|rest| {
                let (name, rest) = rest.split_once('"')?;
                let value = rest.split_once("value=\"")?.1.split_once('"')?.0;
                Some((name.to_string(), value.replace("&#x2f;", "/")))
            })
            .collect()
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Page {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A browser's state: its cookies, and the CSRF token of the last page.
struct Browser {
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, page: &Page) {
        for c in page.set_cookies() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !c.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let cookie = self.cookie_header();
        let page = send(&self.base, Method::GET, path, &[("cookie", &cookie)], "").await;
        self.keep(&page);
        page
    }

    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let cookie = self.cookie_header();
        let page = send(
            &self.base,
            Method::POST,
            path,
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form(pairs),
        )
        .await;
        self.keep(&page);
        page
    }

    /// GETs `path`, then posts its form with the page's CSRF token and `pairs`.
    async fn submit(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        let hidden = page.hiddens();
        assert!(
            hidden.iter().any(|(n, _)| n == "csrf_token"),
            "no CSRF token"
        );
        let mut all: Vec<(&str, &str)> = hidden
            .iter()
            .filter(|(n, _)| !pairs.iter().any(|(p, _)| p == n))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(pairs);
        self.post(path, &all).await
    }
}

async fn server() -> TestServer {
    TestServer::start(&format!("{}{PAGES}", user_resource(ARGON2, ""))).await
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_accessible_fields() {
    let s = server().await;
    let mut b = Browser::new(&s.base);
    let page = b.get("/ui/user/password/sign_in").await;
    assert_eq!(page.status, StatusCode::OK);
    let h = |n: &str| page.headers.get(n).unwrap().to_str().unwrap().to_string();
    assert_eq!(
        h("content-security-policy"),
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https://app.example.com; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("cache-control"), "no-store");
    assert!(h("content-type").starts_with("text/html"));
    // The configured field names, each with its label; no script anywhere.
    assert!(page.body.contains("<html lang=\"en\">"));
    assert!(
        page.body.contains("<label for=\"f-email\">Email</label>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"email\""));
    assert!(
        page.body
            .contains("<label for=\"f-password\">Password</label>")
    );
    assert!(!page.body.contains("<script"));
    assert!(page.body.contains("Example"));
    // The CSRF cookie: HttpOnly, scoped to the pages.
    let csrf = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("sid_csrf="))
        .unwrap();
    assert!(
        csrf.contains("HttpOnly") && csrf.contains("Path=/ui"),
        "{csrf}"
    );
    let css = b.get("/ui/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    // A phase the config does not enable has no page.
    assert_eq!(
        b.get("/ui/user/password/reset_request").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.get("/ui/nobody/password/sign_in").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn forms_without_a_good_csrf_token_are_refused() {
    let s = server().await;
    let mut b = Browser::new(&s.base);
    let page = b.get("/ui/user/password/register").await;
    let token = page.hidden("csrf_token").unwrap();
    let fields = [
        ("email", "csrf@example.com"),
        ("password", "long enough pw"),
        ("password_confirmation", "long enough pw"),
    ];
    // No token.
    let refused = b.post("/ui/user/password/register", &fields).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("security token"));
    // A token of another cookie.
    let mut other = Browser::new(&s.base);
    let foreign = other
        .get("/ui/user/password/register")
        .await
        .hidden("csrf_token")
        .unwrap();
    let mut with = vec![("csrf_token", foreign.as_str())];
    with.extend_from_slice(&fields);
    assert_eq!(
        b.post("/ui/user/password/register", &with).await.status,
        StatusCode::FORBIDDEN
    );
    // The right token, but no cookie (a cross-site form post of a stolen page).
    let mut with = vec![("csrf_token", token.as_str())];
    with.extend_from_slice(&fields);
    let bare = send(
        &s.base,
        Method::POST,
        "/ui/user/password/register",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form(&with),
    )
    .await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    // Nothing was created by any of them.
    let (status, _) = s.sign_in("csrf@example.com", "long enough pw").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // With both, it works.
    let created = b.post("/ui/user/password/register", &with).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    // Sign out posted without a token is refused too (the session stays).
    let out = b.post("/ui/user/sign_out", &[]).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/ui/user/account").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_sign_in_sets_the_session_cookie_and_redirects_only_where_allowed() {
    let s = server().await;
    s.register("r@example.com", "long enough pw").await;
    let creds = [("email", "r@example.com"), ("password", "long enough pw")];
    for (return_to, expected) in [
        (
            "https://app.example.com/after?x=1",
            "https://app.example.com/after?x=1",
        ),
        ("/ui/user/account", "/ui/user/account"),
        ("//evil.example/", "/ui/user/account"),
        ("https://app.example.com.evil/", "/ui/user/account"),
        ("https://app.example.com@evil.example/", "/ui/user/account"),
        ("javascript:alert(1)", "/ui/user/account"),
        ("/\\evil.example", "/ui/user/account"),
        ("http://app.example.com/", "/ui/user/account"),
    ] {
        let mut b = Browser::new(&s.base);
        let mut pairs = creds.to_vec();
        pairs.push(("return_to", return_to));
        let page = b.submit("/ui/user/password/sign_in", &pairs).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{return_to}: {}",
            page.body
        );
        assert_eq!(page.location(), expected, "{return_to}");
        let cookie = page
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("sid="))
            .unwrap();
        assert!(cookie.contains("; Path=/;"), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        // secure = false is allowed here because the listener is on loopback.
        assert!(!cookie.contains("Secure"), "{cookie}");
        let max_age: u64 = cookie
            .split("Max-Age=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            max_age > 13 * 24 * 3600 && max_age <= 14 * 24 * 3600,
            "{max_age}"
        );
    }
    // A return_to that is refused never reaches the form either.
    let mut b = Browser::new(&s.base);
    let page = b
        .get("/ui/user/password/sign_in?return_to=%2F%2Fevil.example%2F")
        .await;
    assert!(!page.body.contains("evil.example"), "{}", page.body);
}

#[tokio::test]
async fn errors_show_the_json_api_messages_next_to_their_fields() {
    let s = server().await;
    let mut b = Browser::new(&s.base);
    let page = b
        .submit(
            "/ui/user/password/register",
            &[
                ("email", "e@example.com"),
                ("password", "short"),
                ("password_confirmation", "other"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, json_body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "e@example.com", "password": "short", "password_confirmation": "other"}),
        )
        .await;
    for (field, messages) in json_body["error"]["fields"].as_object().unwrap() {
        for m in messages.as_array().unwrap() {
            let m = m.as_str().unwrap();
            assert!(page.body.contains(m), "{field}: {m} not in {}", page.body);
        }
    }
    assert!(page.body.contains("role=\"alert\""));
    assert!(page.body.contains("aria-invalid=\"true\""));
    // The e-mail is kept, the passwords are not sent back.
    assert!(page.body.contains("value=\"e@example.com\""));
    assert!(!page.body.contains("value=\"short\""));
    let bad = b
        .submit(
            "/ui/user/password/sign_in",
            &[("email", "e@example.com"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("Authentication failed"));
}

#[tokio::test]
async fn the_me_route_takes_the_cookie_and_sign_out_needs_a_marker_header() {
    let s = server().await;
    let mut b = Browser::new(&s.base);
    let page = b
        .submit(
            "/ui/user/password/register",
            &[
                ("email", "c@example.com"),
                ("password", "long enough pw"),
                ("password_confirmation", "long enough pw"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let cookie = format!("sid={}", page.cookie("sid").unwrap());
    let me = send(
        &s.base,
        Method::GET,
        "/auth/user/me",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let user: Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(user["user"]["email"], "c@example.com");
    // A cross-site form can send the cookie but not a header: refused.
    let plain = send(
        &s.base,
        Method::POST,
        "/auth/user/sign_out",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
    let marked = send(
        &s.base,
        Method::POST,
        "/auth/user/sign_out",
        &[("cookie", &cookie), ("x-requested-with", "fetch")],
        "",
    )
    .await;
    assert_eq!(marked.status, StatusCode::NO_CONTENT);
    assert!(
        marked.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = send(
        &s.base,
        Method::GET,
        "/auth/user/me",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    // The account page sends a signed-out browser to the sign-in page.
    let mut fresh = Browser::new(&s.base);
    let account = fresh.get("/ui/user/account").await;
    assert_eq!(account.status, StatusCode::SEE_OTHER);
    assert_eq!(account.location(), "/ui/user/password/sign_in");
}

#[tokio::test]
async fn reset_links_point_to_the_pages_and_the_reset_page_works() {
    let mut r = receiver().await;
    let text = format!(
        "{}{}\n[pages]\npublic_url = \"http://127.0.0.1:9\"\ncookie = {{ secure = false }}\n",
        user_resource(ARGON2, ""),
        r.resettable()
    );
    let s = TestServer::start(&text).await;
    s.register("reset@example.com", "long enough pw").await;
    let mut b = Browser::new(&s.base);
    let sent = b
        .submit(
            "/ui/user/password/reset_request",
            &[("email", "reset@example.com")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let message = r.next().await;
    let url = message["data"]["url"].as_str().unwrap().to_string();
    let prefix = "http://127.0.0.1:9/ui/user/password/reset?token=";
    assert!(url.starts_with(prefix), "{url}");
    let path = url.trim_start_matches("http://127.0.0.1:9");
    let done = b
        .submit(
            path,
            &[
                ("password", "a new long pw"),
                ("password_confirmation", "a new long pw"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/ui/user/account");
    assert_eq!(
        s.sign_in("reset@example.com", "a new long pw").await.0,
        StatusCode::OK
    );
    // The link works once.
    let again = b
        .submit(
            path,
            &[
                ("password", "third long pw"),
                ("password_confirmation", "third long pw"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_json_api_is_unchanged_and_cors_is_off_unless_configured() {
    let s = server().await;
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "j@example.com", "password": "long enough pw", "password_confirmation": "long enough pw"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(body["token"].is_string());
    let pre = send(
        &s.base,
        Method::OPTIONS,
        "/auth/user/me",
        &[
            ("origin", "https://spa.example.com"),
            ("access-control-request-method", "GET"),
        ],
        "",
    )
    .await;
    assert!(pre.headers.get("access-control-allow-origin").is_none());

    let with_cors = TestServer::start_with(
        &user_resource(ARGON2, ""),
        "cors_allowed_origins = [\"https://spa.example.com\"]",
    )
    .await;
    let pre = send(
        &with_cors.base,
        Method::OPTIONS,
        "/auth/user/me",
        &[
            ("origin", "https://spa.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
        "",
    )
    .await;
    assert_eq!(pre.status, StatusCode::OK);
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "https://spa.example.com"
    );
    assert!(
        pre.headers
            .get("access-control-allow-credentials")
            .is_none()
    );
    let other = send(
        &with_cors.base,
        Method::GET,
        "/healthz",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

#[test]
fn config_errors_name_their_keys() {
    let problems = |text: &str| -> Vec<String> {
        match authd::parse_config(text) {
            Ok(_) => Vec::new(),
            Err(p) => {
                p.0.into_iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect()
            }
        }
    };
    let base = user_resource(ARGON2, "");
    let not_loopback = format!(
        "version = 1\n[server]\nlisten = \"0.0.0.0:4000\"\n{base}\n[pages]\ncookie = {{ secure = false }}\n"
    );
    let p = problems(&not_loopback);
    assert!(
        p.iter().any(|m| m.starts_with("pages.cookie.secure")),
        "{p:?}"
    );
    let loopback = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:4000\"\n{base}\n[pages]\ncookie = {{ secure = false }}\n"
    );
    assert!(problems(&loopback).is_empty());
    let bad = format!(
        "version = 1\n{base}\n[pages]\nbase_path = \"/auth\"\nallowed_redirects = [\"javascript:x\", \"https://u:p@app.example.com/\"]\npublic_url = \"https://a.example.com/x\"\ncookie = {{ name = \"a b\", same_site = \"sometimes\" }}\nunknown = 1\n[server]\ncors_allowed_origins = [\"*\"]\n"
    );
    let p = problems(&bad);
    for key in [
        "pages.base_path",
        "pages.allowed_redirects[0]",
        "pages.allowed_redirects[1]",
        "pages.public_url",
        "pages.cookie.name",
        "pages.cookie.same_site",
        "pages.unknown",
        "server.cors_allowed_origins[0]",
    ] {
        assert!(
            p.iter().any(|m| m.starts_with(&format!("{key}:"))),
            "{key} not in {p:?}"
        );
    }
}

#[tokio::test]
async fn templates_are_replaced_from_templates_dir_and_reloaded_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("tpl");
    std::fs::create_dir(&tpl).unwrap();
    std::fs::write(
        tpl.join("message.html"),
        "<!doctype html><html lang=\"en\"><title>t</title><p>one: {{ page.heading }}</p></html>",
    )
    .unwrap();
    let body = |title: &str| {
        format!(
            "{}\n[pages]\ntitle = \"{title}\"\ntemplates_dir = {:?}\ncookie = {{ secure = false }}\n",
            user_resource(ARGON2, ""),
            tpl.display().to_string()
        )
    };
    let s = TestServer::start_watching(&body("First")).await;
    let mut b = Browser::new(&s.base);
    // A page of the replaced template (message.html), and one of the built-in form.html.
    let message = b.get("/ui/user/confirm_nothing/x/y").await;
    assert_eq!(message.status, StatusCode::NOT_FOUND);
    assert!(
        message.body.contains("one: Page not found"),
        "{}",
        message.body
    );
    assert!(
        b.get("/ui/user/password/sign_in")
            .await
            .body
            .contains("First")
    );

    // A template that does not compile refuses the reload; the old generation stays.
    std::fs::write(tpl.join("message.html"), "{% if %}").unwrap();
    s.save_by_rename(&s.text_for(&body("Second")));
    let health = s
        .wait_health("a refused reload", |h| !h["last_reload_error"].is_null())
        .await;
    assert_eq!(health["config"]["generation"], 1);
    let status = s.status().await;
    assert!(status.to_string().contains("message.html"), "{status}");
    assert!(
        b.get("/ui/user/password/sign_in")
            .await
            .body
            .contains("First")
    );

    // Fixed, the next save applies both.
    std::fs::write(
        tpl.join("message.html"),
        "<!doctype html><html lang=\"en\"><title>t</title><p>two: {{ page.heading }}</p></html>",
    )
    .unwrap();
    s.save_by_rename(&s.text_for(&body("Third")));
    s.wait_generation(2).await;
    assert!(
        b.get("/ui/user/password/sign_in")
            .await
            .body
            .contains("Third")
    );
    let message = b.get("/ui/user/confirm_nothing/x/y").await;
    assert!(
        message.body.contains("two: Page not found"),
        "{}",
        message.body
    );
}
