//! The magic link strategy end to end: the real daemon, links delivered to a real webhook
//! receiver or a real SMTP server, signed in over HTTP. Every route, option and error of the
//! strategy; request timing is in `slow.rs`.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::mail::{decode_body, mail_header, smtp};
use crate::util::{self, ARGON2, Receiver, TestServer, error_code, token_of};

/// A user resource with a password strategy (to make accounts) and a magic link strategy
/// `magic` sending with `sender`.
pub fn config(sender: &str, extra: &str) -> String {
    format!(
        r#"
[resources.user]
attributes.email = {{ type = "ci_string", unique = true }}
attributes.name = {{ type = "string", max_length = 20 }}
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = {ARGON2}
[resources.user.strategies.magic]
type = "magic_link"
identity_field = "email"
sender = {sender}
{extra}
"#
    )
}

fn webhook(r: &Receiver) -> String {
    format!(
        "{{ type = \"webhook\", url = \"{}\", retry_base = \"50ms\" }}",
        r.url
    )
}

async fn request(s: &TestServer, email: &str) {
    let (status, body) = s
        .post("/auth/user/magic/request", json!({ "email": email }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({ "status": "accepted" }));
}

async fn sign_in(s: &TestServer, token: &str) -> (StatusCode, Value) {
    s.post("/auth/user/magic/sign_in", json!({ "token": token }))
        .await
}

/// The link delivered to the receiver: its kind and user checked, its token returned.
async fn delivered(r: &mut Receiver, email: &str) -> (String, Value) {
    let message = r.next().await;
    assert_eq!(message["kind"], "magic_link", "{message}");
    assert_eq!(message["strategy"], "magic");
    assert_eq!(message["user"]["email"], email, "{message}");
    assert!(message["expires_at"].as_u64().is_some());
    (
        message["token"].as_str().unwrap().to_string(),
        message["data"].clone(),
    )
}

#[tokio::test]
async fn a_get_with_require_interaction_leaves_the_link_usable_and_the_post_signs_in_once() {
    let mut r = util::receiver().await;
    let s = TestServer::start(&config(&webhook(&r), "")).await;
    s.register("ada@example.com", "correct horse").await;
    request(&s, "Ada@Example.com").await;
    let (token, data) = delivered(&mut r, "ada@example.com").await;
    assert_eq!(data["registration"], false);
    assert_eq!(util::claims_of(&token)["purpose"], "magic_link");

    // A mail scanner (or the user's browser) opening the link, twice.
    for _ in 0..2 {
        let (status, body) = s
            .get(&format!("/auth/user/magic/sign_in?token={token}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "interaction_required");
        assert_eq!(body["method"], "POST");
        assert!(body.get("token").is_none());
    }
    let (status, body) = sign_in(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com");
    let session = token_of(&body);
    let (status, me) = s.get("/auth/user/me", Some(&session)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], "ada@example.com");

    let (status, body) = sign_in(&s, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used: {body}");
    assert_eq!(error_code(&body), "invalid_token");
    // The token also works in the query of a POST, as links carry it.
    let (status, _, body) = s
        .raw(
            Method::POST,
            &format!("/auth/user/magic/sign_in?token={token}"),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_second_request_invalidates_the_first_link() {
    let mut r = util::receiver().await;
    let s = TestServer::start(&config(&webhook(&r), "")).await;
    s.register("ada@example.com", "correct horse").await;
    request(&s, "ada@example.com").await;
    let (first, _) = delivered(&mut r, "ada@example.com").await;
    request(&s, "ada@example.com").await;
    let (second, _) = delivered(&mut r, "ada@example.com").await;
    let (status, body) = sign_in(&s, &first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
    let (status, body) = sign_in(&s, &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_link_from_the_email_signs_in_once() {
    let (port, mut inbox) = smtp::start();
    let sender = format!(
        "{{ type = \"smtp\", host = \"127.0.0.1\", port = {port}, tls = \"none\", \
           from = \"authd@example.com\", magic_link_url = \"https://app.example/magic?token={{{{token}}}}\", \
           retry_base = \"50ms\" }}"
    );
    let s = TestServer::start(&config(&sender, "")).await;
    s.register("ada@example.com", "correct horse").await;
    request(&s, "nobody@example.com").await;
    request(&s, "ada@example.com").await;
    let mail = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("no email"))
        .unwrap();
    assert!(mail.to[0].contains("ada@example.com"), "{mail:?}");
    let (head, body) = mail.data.split_once("\r\n\r\n").unwrap();
    assert_eq!(mail_header(head, "Subject"), Some("Your sign-in link"));
    let text = decode_body(mail_header(head, "Content-Transfer-Encoding"), body);
    let link = "https://app.example/magic?token=";
    let token: String = text
        .split(link)
        .nth(1)
        .unwrap_or_else(|| panic!("no link in:\n{text}"))
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    assert!(text.contains("expires at 20"), "{text}");
    let (status, body) = sign_in(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(sign_in(&s, &token).await.0, StatusCode::UNAUTHORIZED);
    // Nothing was sent for the unknown address.
    let more = tokio::time::timeout(Duration::from_millis(300), inbox.recv()).await;
    assert!(more.is_err(), "{more:?}");
}

#[tokio::test]
async fn registration_enabled_creates_the_user_on_first_sign_in_and_not_otherwise() {
    // Off (the default): nothing is sent and nobody is created.
    let mut r = util::receiver().await;
    let off = TestServer::start(&config(&webhook(&r), "")).await;
    request(&off, "new@example.com").await;
    r.nothing_for(300).await;

    let mut r = util::receiver().await;
    let s = TestServer::start(&config(&webhook(&r), "registration_enabled = true")).await;
    request(&s, "New@Example.com").await;
    let (token, data) = delivered(&mut r, "New@Example.com").await;
    assert_eq!(data["registration"], true);
    // The request created nobody: the address is still free to register with a password.
    let (status, _) = s.sign_in("new@example.com", "whatever pass").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = s
        .get(&format!("/auth/user/magic/sign_in?token={token}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["status"], "interaction_required",
        "a GET creates nobody"
    );

    let (status, body) = sign_in(&s, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["email"], "New@Example.com");
    let id = body["user"]["id"].clone();
    let (status, me) = s.get("/auth/user/me", Some(&token_of(&body))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["id"], id);
    assert_eq!(sign_in(&s, &token).await.0, StatusCode::UNAUTHORIZED);

    // Known now: an ordinary link to the same account.
    request(&s, "new@example.com").await;
    let (token, data) = delivered(&mut r, "New@Example.com").await;
    assert_eq!(data["registration"], false);
    let (status, body) = sign_in(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], id);
}

#[tokio::test]
async fn without_require_interaction_the_link_signs_in_by_get() {
    let mut r = util::receiver().await;
    let s = TestServer::start(&config(&webhook(&r), "require_interaction = false")).await;
    s.register("ada@example.com", "correct horse").await;
    request(&s, "ada@example.com").await;
    let (token, _) = delivered(&mut r, "ada@example.com").await;
    let path = format!("/auth/user/magic/sign_in?token={token}");
    let (status, body) = s.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com");
    token_of(&body);
    let (status, body) = s.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn an_expired_link_is_refused_by_the_daemons_clock() {
    let mut r = util::receiver().await;
    let s = TestServer::start(&config(&webhook(&r), "token_lifetime = \"2m\"")).await;
    s.register("ada@example.com", "correct horse").await;
    request(&s, "ada@example.com").await;
    let (token, _) = delivered(&mut r, "ada@example.com").await;
    s.daemon.as_ref().unwrap().clock().advance_ms(121_000);
    let (status, body) = sign_in(&s, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
}

#[tokio::test]
async fn reusable_links_sign_in_until_they_expire() {
    let mut r = util::receiver().await;
    let s = TestServer::start(&config(&webhook(&r), "single_use_token = false")).await;
    s.register("ada@example.com", "correct horse").await;
    request(&s, "ada@example.com").await;
    let (token, _) = delivered(&mut r, "ada@example.com").await;
    for _ in 0..2 {
        assert_eq!(sign_in(&s, &token).await.0, StatusCode::OK);
    }
    s.daemon.as_ref().unwrap().clock().advance_ms(601_000);
    assert_eq!(sign_in(&s, &token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_are_named_and_floods_are_limited() {
    let r = util::receiver().await;
    let s = TestServer::start(&config(
        &webhook(&r),
        "request_limit = { per_identity = 2, per_address = 100 }",
    ))
    .await;
    let (status, body) = s.post("/auth/user/magic/request", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["email"].is_array(), "{body}");
    let (status, body) = s.post("/auth/user/magic/sign_in", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["token"].is_array(), "{body}");
    let (status, body) = sign_in(&s, "not.a.token").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    // `request` takes POST only.
    let (status, _) = s.get("/auth/user/magic/request", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    request(&s, "flood@example.com").await;
    request(&s, "FLOOD@example.com").await;
    let (status, headers, body) = s
        .raw(
            Method::POST,
            "/auth/user/magic/request",
            &[("content-type", "application/json")],
            json!({ "email": "flood@example.com" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    request(&s, "other@example.com").await;
}

#[tokio::test]
async fn a_session_token_or_another_strategys_token_is_not_a_link() {
    let mut r = util::receiver().await;
    let s = TestServer::start(&format!(
        "{}\n{}",
        config(&webhook(&r), ""),
        "[resources.user.strategies.magic2]\ntype = \"magic_link\"\nidentity_field = \"email\"\nsender = { type = \"log\" }"
    ))
    .await;
    let session = s.register("ada@example.com", "correct horse").await;
    assert_eq!(sign_in(&s, &session).await.0, StatusCode::UNAUTHORIZED);
    request(&s, "ada@example.com").await;
    let (token, _) = delivered(&mut r, "ada@example.com").await;
    let (status, _) = s
        .post("/auth/user/magic2/sign_in", json!({ "token": token }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&s, &token).await.0, StatusCode::OK);
}

#[test]
fn check_lists_the_routes_of_both_new_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authd.toml");
    let text = format!(
        "version = 1\n[store]\npath = {:?}\n{}\n[resources.user.strategies.api]\ntype = \"api_key\"\nprefix = \"ci\"\n",
        dir.path().join("authd.redb").display().to_string(),
        config("{ type = \"log\" }", "registration_enabled = true")
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "strategy magic: magic_link (identity `email`, links for 10m, sender log, registration, interaction required)",
        "strategy api: api_key (prefix `ci`, at most 10 keys per user, no default lifetime)",
        "POST      /auth/user/magic/request",
        "GET,POST  /auth/user/magic/sign_in",
        "GET,POST  /auth/user/api/keys",
        "DELETE    /auth/user/api/keys/{id}",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}
