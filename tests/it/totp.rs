//! The TOTP second factor end to end: the real daemon over HTTP, with every code computed by
//! an independent implementation, Python's `pyotp`, from the `otpauth://` URI authd answered
//! (so the key URI format is checked too). `.ci/run` makes the virtualenv
//! (`tests/python/.venv`, from `tests/python/requirements.txt`) and sets `AUTHD_TEST_PYTHON`;
//! without either, these tests print one line and pass without checking anything, and with
//! `AUTHD_TEST_PYTHON` set they fail if that Python cannot import pyotp.
//!
//! `required_after` names the password strategy and a magic-link strategy: a sign-in by
//! either continues to TOTP.

use std::path::{Path, PathBuf};
use std::process::Command;

use authd_strategy_api::Clock;
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{self, ARGON2, TestServer, claims_of, error_code, token_of};

/// Python with pyotp (see `util::python_with`).
fn python() -> Option<PathBuf> {
    util::python_with("pyotp")
}

/// What pyotp reads from a key URI, and its codes at each of `times` (Unix seconds).
struct Pyotp {
    issuer: String,
    name: String,
    secret: String,
    codes: Vec<String>,
}

fn pyotp(python: &Path, uri: &str, times: &[u64]) -> Pyotp {
    const SCRIPT: &str = "import json, sys, pyotp\n\
        t = pyotp.parse_uri(sys.argv[1])\n\
        print(json.dumps({'issuer': t.issuer, 'name': t.name, 'secret': t.secret,\n\
                          'codes': [t.at(int(s)) for s in sys.argv[2:]]}))";
    let out = Command::new(python)
        .args(["-c", SCRIPT, uri])
        .args(times.iter().map(u64::to_string))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Pyotp {
        issuer: v["issuer"].as_str().unwrap().into(),
        name: v["name"].as_str().unwrap().into(),
        secret: v["secret"].as_str().unwrap().into(),
        codes: v["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect(),
    }
}

/// Moves `clock` to one second into a 30 s period, so that no period ends within a test
/// unless the test moves the clock.
fn align(clock: &Clock) {
    let ms = clock.now_ms();
    clock.advance_ms(i64::try_from(30_000 - ms % 30_000 + 1_000).unwrap());
}

/// The usual user resource, a TOTP strategy after `password` and `magic`, and a magic-link
/// strategy sending its links with `sender`.
fn config(max_failures: u32, sender: &str) -> String {
    format!(
        "{}\n\
         [resources.user.strategies.totp]\n\
         type = \"totp\"\n\
         issuer = \"Example\"\n\
         required_after = [\"password\", \"magic\"]\n\
         brute_force = {{ max_failures = {max_failures}, window = \"5m\" }}\n\
         setup_token_lifetime = \"2m\"\n\
         [resources.user.strategies.magic]\n\
         type = \"magic_link\"\n\
         identity_field = \"email\"\n\
         sender = {sender}\n",
        util::user_resource(ARGON2, "")
    )
}

async fn start(clock: &Clock, max_failures: u32) -> TestServer {
    start_sending(clock, max_failures, "{ type = \"log\" }").await
}

async fn start_sending(clock: &Clock, max_failures: u32, sender: &str) -> TestServer {
    TestServer::start_custom(
        &config(max_failures, sender),
        &authd::registry::validate_strategy,
        clock.clone(),
    )
    .await
}

/// A magic link for `email`, as the webhook receiver got it, used by POST.
async fn magic_sign_in(
    s: &TestServer,
    hook: &mut util::Receiver,
    email: &str,
) -> (StatusCode, Value) {
    let (status, _) = s
        .post("/auth/user/magic/request", json!({ "email": email }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = hook.next().await["token"].as_str().unwrap().to_string();
    s.post("/auth/user/magic/sign_in", json!({ "token": token }))
        .await
}

/// A request with an optional bearer and a JSON body.
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (StatusCode, HeaderMap, Value) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    s.raw(method, path, &headers, Bytes::from(body.to_string()))
        .await
}

/// A user with TOTP on: registered, set up with a code pyotp computed from the key URI, and
/// confirmed. Returns the session, the key URI and the recovery codes.
async fn user_with_totp(
    s: &TestServer,
    python: &Path,
    clock: &Clock,
    email: &str,
) -> (String, String, Vec<String>) {
    let session = s.register(email, "correct horse").await;
    let (status, _, body) = call(
        s,
        Method::POST,
        "/auth/user/totp/setup",
        Some(&session),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["otpauth_uri"].as_str().unwrap().to_string();
    let p = pyotp(python, &uri, &[clock.now_secs()]);
    assert_eq!(p.issuer, "Example");
    assert_eq!(p.name, email);
    assert_eq!(p.secret, body["secret"], "the URI carries the secret shown");
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    assert_eq!(
        me["user"]["totp"], false,
        "nothing enabled before confirming"
    );
    let (status, _, body) = call(
        s,
        Method::POST,
        "/auth/user/totp/confirm_setup",
        Some(&session),
        json!({"setup_token": body["setup_token"], "code": p.codes[0]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recovery: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    (session, uri, recovery)
}

/// Signs in with the password; returns the continue token (asserting the continue answer).
async fn continue_token(s: &TestServer, email: &str) -> String {
    let (status, body) = s.sign_in(email, "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["continue"], "totp", "{body}");
    assert!(
        body.get("user").is_none(),
        "no user before the second factor"
    );
    token_of(&body)
}

async fn verify(s: &TestServer, token: &str, field: &str, value: &str) -> (StatusCode, Value) {
    s.post(
        "/auth/user/totp/verify",
        json!({"token": token, field: value}),
    )
    .await
}

/// A six-digit code that is none of `codes`.
fn other_than(codes: &[String]) -> String {
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919) % 1_000_000))
        .find(|c| !codes.contains(c))
        .unwrap()
}

#[tokio::test]
async fn a_code_from_pyotp_signs_in_and_every_misuse_is_refused() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 10).await;
    let (session, uri, recovery) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    assert_eq!(me["user"]["totp"], true, "{me}");

    // The password alone no longer signs in: it continues, with a token of its own purpose.
    let token = continue_token(&s, "ada@example.com").await;
    assert_eq!(claims_of(&token)["purpose"], "totp_verify");
    let (status, body) = s.get("/auth/user/me", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "continue token at /me");
    assert_eq!(error_code(&body), "invalid_token");
    let (status, _, _) = call(
        &s,
        Method::POST,
        "/auth/user/totp/setup",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "nor at any session route");

    // Three periods later: two periods ago is outside the window (grace_period = 1) though
    // newer than the code confirm_setup used.
    clock.advance_ms(90_000);
    let now = clock.now_secs();
    let codes = pyotp(&py, &uri, &[now - 60, now - 30, now, now + 30]).codes;
    let (status, body) = verify(&s, &token, "code", &codes[0]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "two periods ago: {body}");
    assert_eq!(error_code(&body), "authentication_failed");
    let (status, body) = verify(&s, &token, "code", &other_than(&codes[1..])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong code: {body}");
    assert_eq!(error_code(&body), "authentication_failed");

    let (status, body) = verify(&s, &token, "code", &codes[2]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com");
    let signed_in = token_of(&body);
    assert_eq!(claims_of(&signed_in)["purpose"], "user");
    let (status, me) = s.get("/auth/user/me", Some(&signed_in)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["totp"], true);

    // The continue token was single-use.
    let (status, body) = verify(&s, &token, "code", &codes[3]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
    // The same code again, with a new continue token: a replay within its period.
    let token = continue_token(&s, "ada@example.com").await;
    let (status, body) = verify(&s, &token, "code", &codes[2]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "replayed: {body}");
    assert_eq!(error_code(&body), "authentication_failed");
    // The previous period's code is within the window, but older than the one used.
    let (status, _) = verify(&s, &token, "code", &codes[1]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an older code after a newer"
    );

    // A recovery code works once.
    let (status, body) = verify(&s, &token, "recovery_code", &recovery[0]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = continue_token(&s, "ada@example.com").await;
    let (status, body) = verify(&s, &token, "recovery_code", &recovery[0]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a used recovery code: {body}"
    );
    assert_eq!(error_code(&body), "authentication_failed");
    let (status, body) = verify(&s, &token, "recovery_code", &recovery[1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A password change comes from a session that passed both factors: a session at once.
    let (status, _, body) = call(
        &s,
        Method::POST,
        "/auth/user/password/change_password",
        Some(&token_of(&body)),
        json!({"current_password": "correct horse", "password": "battery staple",
               "password_confirmation": "battery staple"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("continue").is_none(), "{body}");
    assert_eq!(
        s.get("/auth/user/me", Some(&token_of(&body))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_continue_token_dies_after_its_lifetime() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 10).await;
    let (_, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let token = continue_token(&s, "ada@example.com").await;
    // setup_token_lifetime = "2m"; the code is fresh, the token is not.
    clock.advance_ms(121_000);
    let code = pyotp(&py, &uri, &[clock.now_secs()]).codes.remove(0);
    let (status, body) = verify(&s, &token, "code", &code).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
    let token = continue_token(&s, "ada@example.com").await;
    let (status, body) = verify(&s, &token, "code", &code).await;
    assert_eq!(status, StatusCode::OK, "a new one works: {body}");
}

#[tokio::test]
async fn brute_force_locks_the_second_factor_after_max_failures() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 3).await;
    let (_, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let now = clock.now_secs();
    let codes = pyotp(&py, &uri, &[now - 30, now, now + 30]).codes;
    let wrong = other_than(&codes);
    let token = continue_token(&s, "ada@example.com").await;
    for i in 0..3 {
        let (status, body) = verify(&s, &token, "code", &wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    let (status, headers, body) = call(
        &s,
        Method::POST,
        "/auth/user/totp/verify",
        None,
        json!({"token": token, "code": codes[2]}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right code: {body}"
    );
    assert_eq!(error_code(&body), "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // The lock is persisted in the store and ends with the window.
    clock.advance_ms(301_000);
    let code = pyotp(&py, &uri, &[clock.now_secs()]).codes.remove(0);
    let token = continue_token(&s, "ada@example.com").await;
    let (status, body) = verify(&s, &token, "code", &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_user_without_totp_signs_in_with_the_password_alone() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 3).await;
    user_with_totp(&s, &py, &clock, "ada@example.com").await;
    s.register("bob@example.com", "correct horse").await;
    let (status, body) = s.sign_in("bob@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("continue").is_none(), "{body}");
    let (status, me) = s.get("/auth/user/me", Some(&token_of(&body))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["totp"], false);
}

#[tokio::test]
async fn turning_totp_off_takes_a_current_code_then_the_password_is_enough() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 10).await;
    let (session, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let (status, _, body) = call(
        &s,
        Method::DELETE,
        "/auth/user/totp",
        Some(&session),
        json!({"password": "correct horse"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["code"].is_array(), "{body}");
    let (status, _, body) = call(
        &s,
        Method::DELETE,
        "/auth/user/totp",
        None,
        json!({"code": "123456"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed in only: {body}");
    let next = pyotp(&py, &uri, &[clock.now_secs() + 30]).codes.remove(0);
    let (status, _, body) = call(
        &s,
        Method::DELETE,
        "/auth/user/totp",
        Some(&session),
        json!({"code": next}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = s.sign_in("ada@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["token"].is_string() && body.get("continue").is_none(),
        "{body}"
    );
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    assert_eq!(me["user"]["totp"], false);
}

#[tokio::test]
async fn required_after_a_magic_link_strategy_continues_it_too() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let mut hook = util::receiver().await;
    let s = start_sending(
        &clock,
        3,
        &format!(
            "{{ type = \"webhook\", url = \"{}\", retry_base = \"50ms\" }}",
            hook.url
        ),
    )
    .await;
    let (_, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let (status, body) = magic_sign_in(&s, &mut hook, "ADA@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["continue"], "totp", "{body}");
    let token = token_of(&body);
    assert!(
        claims_of(&token)["bnd"]
            .as_str()
            .unwrap()
            .starts_with("magic:"),
        "bound to the first factor"
    );
    let code = pyotp(&py, &uri, &[clock.now_secs() + 30]).codes.remove(0);
    let (status, body) = verify(&s, &token, "code", &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].is_string());
    // A user without TOTP is signed in by the link alone.
    s.register("bob@example.com", "correct horse").await;
    let (status, body) = magic_sign_in(&s, &mut hook, "bob@example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("continue").is_none(), "{body}");
}

/// A request to the admin listener with the admin token.
async fn admin(s: &TestServer, method: Method, path: String) -> (StatusCode, Value) {
    let auth = format!("Bearer {}", s.admin_token);
    let (status, _, body) = s
        .raw_at(&s.admin, method, &path, &[("authorization", &auth)], "")
        .await;
    (status, body)
}

#[tokio::test]
async fn operators_see_unlock_and_turn_off_a_users_totp() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 3).await;
    let (session, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    let id = me["user"]["id"].as_str().unwrap().to_string();
    let now = clock.now_secs();
    let codes = pyotp(&py, &uri, &[now - 30, now, now + 30]).codes;
    let token = continue_token(&s, "ada@example.com").await;
    for _ in 0..3 {
        verify(&s, &token, "code", &other_than(&codes)).await;
    }
    let (status, user) = admin(&s, Method::GET, format!("/admin/user/users/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    let totp = &user["user"]["strategies"]["totp"];
    assert_eq!(totp["on"], true, "{user}");
    assert_eq!(totp["recovery_codes_left"], 10, "{user}");
    assert!(totp["locked_for"].as_u64().is_some_and(|s| s > 0), "{user}");
    let serialized = user.to_string();
    assert!(
        !serialized.contains("clear:") && !serialized.contains("recovery\""),
        "no secret in the operator's view: {user}"
    );

    // Unlocked by an operator, the right code signs in at once.
    let (status, _) = admin(&s, Method::POST, format!("/admin/user/users/{id}/unlock")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = verify(&s, &token, "code", &codes[2]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A user who lost the app and the recovery codes: an operator turns TOTP off.
    let path = format!("/admin/user/users/{id}/credentials/totp");
    let (status, body) = admin(&s, Method::DELETE, path.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = s.sign_in("ada@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["token"].is_string() && body.get("continue").is_none(),
        "{body}"
    );
    let (status, _) = admin(&s, Method::DELETE, path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to remove");
}

#[test]
fn required_after_must_name_another_strategy_of_the_resource() {
    let text = |after: &str| {
        util::config_text(
            Path::new("/tmp/authd-test.redb"),
            "",
            &format!(
                "{}\n[resources.user.strategies.totp]\ntype = \"totp\"\nissuer = \"E\"\n\
                 required_after = [{after}]\nbrute_force = {{ max_failures = 5, window = \"5m\" }}\n",
                util::user_resource(ARGON2, "")
            ),
        )
    };
    let problems = authd::parse_config(&text("\"password\", \"magic\""))
        .err()
        .unwrap();
    assert_eq!(problems.0.len(), 1, "{problems}");
    assert_eq!(
        problems.0[0].path,
        "resources.user.strategies.totp.required_after"
    );
    assert!(problems.0[0].message.contains("`magic`"), "{problems}");
    let config = authd::parse_config(&text("\"password\"")).unwrap();
    let routes: Vec<String> = authd::registry::routes(&config)
        .iter()
        .map(|r| format!("{} {}", r.methods.join(","), r.path))
        .collect();
    for route in [
        "POST /auth/user/totp/setup",
        "POST /auth/user/totp/confirm_setup",
        "DELETE /auth/user/totp",
        "POST /auth/user/totp/verify",
    ] {
        assert!(routes.contains(&route.to_string()), "{route}: {routes:?}");
    }
}

/// `DELETE /auth/user/me` with `body`.
async fn delete_me(s: &TestServer, session: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, body) = call(s, Method::DELETE, "/auth/user/me", Some(session), body).await;
    (status, body)
}

#[tokio::test]
async fn deleting_the_account_takes_the_password_and_a_fresh_code() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 10).await;
    let (session, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let now = clock.now_secs();
    // confirm_setup used this period's code; the next one is within the window.
    let codes = pyotp(&py, &uri, &[now, now + 30]).codes;
    let next = codes[1].clone();
    let refused = |what: &str, (status, body): (StatusCode, Value)| {
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "authentication_failed"),
            "{what}: {body}"
        );
    };
    refused(
        "the password alone",
        delete_me(&s, &session, json!({"password": "correct horse"})).await,
    );
    refused(
        "a wrong code",
        delete_me(
            &s,
            &session,
            json!({"password": "correct horse", "code": other_than(&codes)}),
        )
        .await,
    );
    refused(
        "a code of the wrong length",
        delete_me(
            &s,
            &session,
            json!({"password": "correct horse", "code": "12"}),
        )
        .await,
    );
    refused(
        "a wrong password with a good code",
        delete_me(
            &s,
            &session,
            json!({"password": "wrong horse", "code": next}),
        )
        .await,
    );
    assert_eq!(
        s.get("/auth/user/me", Some(&session)).await.0,
        StatusCode::OK
    );

    // The wrong password did not spend the code: it signs in...
    let token = continue_token(&s, "ada@example.com").await;
    let (status, body) = verify(&s, &token, "code", &next).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ...and once used, it is refused here (a replay).
    refused(
        "a used code",
        delete_me(
            &s,
            &session,
            json!({"password": "correct horse", "code": next}),
        )
        .await,
    );

    // A code of a period after it deletes the account.
    clock.advance_ms(60_000);
    let fresh = pyotp(&py, &uri, &[clock.now_secs()]).codes.remove(0);
    let (status, body) = delete_me(
        &s,
        &session,
        json!({"password": "correct horse", "code": fresh}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        s.get("/auth/user/me", Some(&session)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_codes_at_account_deletion_count_toward_the_lockout() {
    let Some(py) = python() else { return };
    let clock = Clock::system();
    align(&clock);
    let s = start(&clock, 3).await;
    let (session, uri, _) = user_with_totp(&s, &py, &clock, "ada@example.com").await;
    let now = clock.now_secs();
    let codes = pyotp(&py, &uri, &[now - 30, now, now + 30]).codes;
    let wrong = other_than(&codes);
    for i in 0..3 {
        let (status, body) = delete_me(
            &s,
            &session,
            json!({"password": "correct horse", "code": wrong}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    // Locked: the right code is refused at deletion and at sign-in alike.
    let (status, _) = delete_me(
        &s,
        &session,
        json!({"password": "correct horse", "code": codes[2]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = continue_token(&s, "ada@example.com").await;
    let (status, body) = verify(&s, &token, "code", &codes[2]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        s.get("/auth/user/me", Some(&session)).await.0,
        StatusCode::OK
    );
}

/// The sealed seed of `email`'s TOTP, read from the redb file (the daemon stopped).
async fn stored_seed(db: &Path, email: &str) -> String {
    use authd_strategy_api::{UniqueKey, UserStore};
    let (store, _) = authd_store_redb::open(db).unwrap();
    let user = store
        .find_by_unique("user", &UniqueKey::new("email", email))
        .await
        .unwrap()
        .unwrap();
    let state: Value = serde_json::from_str(&user.secrets["totp_secret"]).unwrap();
    state["seed"].as_str().unwrap().to_string()
}

fn kek_id(keys: &str) -> String {
    authd::tokens::kek::Kek::parse(keys, "K").unwrap().ids()[0].to_string()
}

fn stop(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Signs in with the password and a code at the real binary; the status of `verify`.
async fn sign_in_with_code(p: &util::Probe, email: &str, code: &str) -> (StatusCode, Value) {
    let (status, body) = p
        .call(
            Method::POST,
            "/auth/user/password/sign_in",
            None,
            &json!({"email": email, "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["continue"], "totp", "{body}");
    p.call(
        Method::POST,
        "/auth/user/totp/verify",
        None,
        &json!({"token": body["token"], "code": code}),
    )
    .await
}

#[tokio::test]
async fn a_seed_used_after_a_kek_rotation_is_sealed_again_so_the_old_kek_can_go() {
    use base64::Engine;
    let Some(py) = python() else { return };
    let key = || base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let (a, b) = (key(), key());
    let dir = tempfile::tempdir().unwrap();
    // The real binary, reading its key-encryption key from the environment at start; a wide
    // grace period so that codes of the next periods work on the real clock.
    let body = format!(
        "[tokens]\nkey_encryption_key_env = \"AUTHD_TEST_KEK\"\n{}",
        config(10, "{ type = \"log\" }").replace(
            "issuer = \"Example\"",
            "issuer = \"Example\"\ngrace_period = 5"
        )
    );
    let bin = util::Binary::new(dir.path(), &body);
    let db = dir.path().join("authd.redb");
    let email = "ada@example.com";

    // Enrolled under A.
    let (child, p) = bin.start_with_env(&[("AUTHD_TEST_KEK", &a)]).await;
    let (status, body) = p
        .call(
            Method::POST,
            "/auth/user/password/register",
            None,
            &json!({"user": {"email": email, "password": "correct horse",
                             "password_confirmation": "correct horse"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = token_of(&body);
    let (status, setup) = p
        .call(
            Method::POST,
            "/auth/user/totp/setup",
            Some(&session),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let codes = pyotp(
        &py,
        setup["otpauth_uri"].as_str().unwrap(),
        &[now, now + 30, now + 60],
    )
    .codes;
    let (status, body) = p
        .call(
            Method::POST,
            "/auth/user/totp/confirm_setup",
            Some(&session),
            &json!({"setup_token": setup["setup_token"], "code": codes[0]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    stop(child);
    let under_a = stored_seed(&db, email).await;
    assert!(
        under_a.starts_with(&format!("v1:{}:", kek_id(&a))),
        "{under_a}"
    );

    // Rotated: B seals, A still opens. A sign-in with a code seals the seed again under B.
    let rotated = format!("{b},{a}");
    let (child, p) = bin.start_with_env(&[("AUTHD_TEST_KEK", &rotated)]).await;
    let (status, body) = sign_in_with_code(&p, email, &codes[1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    stop(child);
    let under_b = stored_seed(&db, email).await;
    assert!(
        under_b.starts_with(&format!("v1:{}:", kek_id(&b))),
        "{under_b}"
    );

    // A removed: the seed still opens, and the next code signs in.
    let (child, p) = bin.start_with_env(&[("AUTHD_TEST_KEK", &b)]).await;
    let (status, body) = sign_in_with_code(&p, email, &codes[2]).await;
    stop(child);
    assert_eq!(status, StatusCode::OK, "{body}");
}
