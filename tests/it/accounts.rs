//! Accounts users look after themselves: change password, edit attributes, sign out
//! everywhere, delete the account, confirm an address — over real HTTP, with a real webhook
//! receiver and a real SMTP server.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::mail::{body_of, smtp};
use crate::util::{self, ARGON2, Receiver, TestServer, error_code, token_of};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let auth = token.map(bearer);
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let (status, _, body) = s
        .raw(
            method,
            path,
            &headers,
            if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn change_password_revokes_the_other_sessions_and_keeps_the_new_one() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let first = s.register("ada@example.com", "correct horse").await;
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    let second = token_of(&body);
    let path = "/auth/user/password/change_password";

    // A new password that breaks the rules counts nothing and changes nothing.
    let (status, body) = call(
        &s,
        Method::POST,
        path,
        Some(&first),
        json!({"current_password": "correct horse", "password": "short", "password_confirmation": "short"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["password"].is_array());
    // A wrong current password is an authentication failure.
    let (status, body) = call(
        &s,
        Method::POST,
        path,
        Some(&first),
        json!({"current_password": "wrong horse", "password": "new horse!", "password_confirmation": "new horse!"}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "authentication_failed")
    );
    // Without a session: 401.
    let (status, _) = call(
        &s,
        Method::POST,
        path,
        None,
        json!({"current_password": "correct horse", "password": "new horse!", "password_confirmation": "new horse!"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(
        &s,
        Method::POST,
        path,
        Some(&first),
        json!({"current_password": "correct horse", "password": "new horse!", "password_confirmation": "new horse!"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "ada@example.com");
    let new = token_of(&body);
    for old in [&first, &second] {
        assert_eq!(
            s.get("/auth/user/me", Some(old)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(s.get("/auth/user/me", Some(&new)).await.0, StatusCode::OK);
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.sign_in("ada@example.com", "new horse!").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_wrong_current_password_counts_like_a_failed_sign_in() {
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        r#"rate_limit = { identity_failures = 2, window = "1h" }"#,
    ))
    .await;
    let token = s.register("ada@example.com", "correct horse").await;
    for _ in 0..2 {
        call(
            &s,
            Method::POST,
            "/auth/user/password/change_password",
            Some(&token),
            json!({"current_password": "wrong horse", "password": "new horse!", "password_confirmation": "new horse!"}),
        )
        .await;
    }
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_user_edits_attributes_with_the_rules_of_registration() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    s.register("bob@example.com", "correct horse").await;
    let (status, body) = call(
        &s,
        Method::PATCH,
        "/auth/user/me",
        Some(&token),
        json!({"name": "Ada", "age": 36}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["user"]["name"].clone(), body["user"]["age"].clone()),
        (json!("Ada"), json!(36))
    );
    for (params, field) in [
        (json!({"nickname": "x"}), "nickname"),
        (json!({"hashed_password": "$2b$04$x"}), "hashed_password"),
        (json!({"id": "00000000-0000-0000-0000-000000000000"}), "id"),
        (json!({"name": "x".repeat(21)}), "name"),
        (json!({"age": "old"}), "age"),
        (json!({"email": "BOB@example.com"}), "email"),
        (json!({"email": null}), "email"),
    ] {
        let (status, body) = call(
            &s,
            Method::PATCH,
            "/auth/user/me",
            Some(&token),
            params.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{params}: {body}");
        assert!(
            body["error"]["fields"][field].is_array(),
            "{params}: {body}"
        );
    }
    // The identity moves: the old one is free, the new one signs in.
    let (status, _) = call(
        &s,
        Method::PATCH,
        "/auth/user/me",
        Some(&token),
        json!({"email": "ada@new.example"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.sign_in("ada@new.example", "correct horse").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    s.register("ada@example.com", "another horse").await;
    let (status, _) = call(
        &s,
        Method::PATCH,
        "/auth/user/me",
        None,
        json!({"name": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_everywhere_kills_every_token_of_the_user() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&util::user_resource(ARGON2, &hook.resettable())).await;
    let a = s.register("ada@example.com", "correct horse").await;
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    let b = token_of(&body);
    let (_, body) = s
        .post(
            "/auth/user/password/sign_in",
            json!({"email": "ada@example.com", "password": "correct horse", "token_type": "sign_in"}),
        )
        .await;
    let sign_in_token = token_of(&body);
    s.post(
        "/auth/user/password/reset_request",
        json!({"email": "ada@example.com"}),
    )
    .await;
    let reset_token = hook.next().await["token"].as_str().unwrap().to_string();
    let other = s.register("bob@example.com", "correct horse").await;

    let (status, _) = call(
        &s,
        Method::POST,
        "/auth/user/sign_out_all",
        Some(&a),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        assert_eq!(
            s.get("/auth/user/me", Some(t)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, _) = s
        .post(
            "/auth/user/password/sign_in_with_token",
            json!({"token": sign_in_token}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": reset_token, "password": "new horse!", "password_confirmation": "new horse!"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.get("/auth/user/me", Some(&other)).await.0,
        StatusCode::OK,
        "other users keep theirs"
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_the_account_needs_the_password_and_frees_the_identity() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    let (status, body) = call(
        &s,
        Method::DELETE,
        "/auth/user/me",
        Some(&token),
        json!({"password": "wrong horse"}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "authentication_failed")
    );
    let (status, _) = call(
        &s,
        Method::DELETE,
        "/auth/user/me",
        Some(&token),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no password, no deletion");
    let (status, _) = call(
        &s,
        Method::DELETE,
        "/auth/user/me",
        Some(&token),
        json!({"password": "correct horse"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/auth/user/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    let again = s.register("ada@example.com", "another horse").await;
    assert_eq!(s.get("/auth/user/me", Some(&again)).await.0, StatusCode::OK);
    assert_eq!(
        s.get("/auth/user/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED,
        "the old user's tokens stay dead"
    );
}

fn confirmable(hook: &Receiver, extra: &str) -> String {
    util::user_resource(ARGON2, extra)
        + &format!(
            "[resources.user.confirmation]\nmonitor_fields = [\"email\"]\n\
             sender = {{ type = \"webhook\", url = \"{}\", retry_base = \"50ms\" }}\n",
            hook.url
        )
}

async fn confirm(s: &TestServer, token: &str) -> (StatusCode, Value) {
    s.post("/auth/user/confirm", json!({"confirm": token}))
        .await
}

#[tokio::test]
async fn a_new_user_confirms_by_post_and_a_get_changes_nothing() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&confirmable(&hook, "")).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    assert_eq!(me["user"]["confirmed_at"], Value::Null);
    let message = hook.next().await;
    assert_eq!(message["kind"], "confirmation");
    assert_eq!(message["user"]["email"], "ada@example.com");
    assert!(message.get("templates").is_none(), "{message}");
    let token = message["token"].as_str().unwrap().to_string();
    assert_eq!(util::claims_of(&token)["purpose"], "confirm");

    // A link scanner's GET changes nothing.
    let (status, body) = s
        .get(&format!("/auth/user/confirm?confirm={token}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "confirmation_required");
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    assert_eq!(me["user"]["confirmed_at"], Value::Null);

    let (status, body) = confirm(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["user"]["confirmed_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // Single use.
    let (status, body) = confirm(&s, &token).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    // A session token is not a confirmation token.
    let (status, _) = confirm(&s, &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_require_interaction_the_link_confirms() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&(confirmable(&hook, "") + "require_interaction = false\n")).await;
    s.register("ada@example.com", "correct horse").await;
    let token = hook.next().await["token"].as_str().unwrap().to_string();
    let (status, body) = s
        .get(&format!("/auth/user/confirm?confirm={token}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["user"]["confirmed_at"].is_string());
}

#[tokio::test]
async fn a_changed_address_waits_for_its_confirmation_and_outdated_tokens_die() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&confirmable(&hook, "")).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let first = hook.next().await["token"].as_str().unwrap().to_string();
    confirm(&s, &first).await;

    let (status, body) = call(
        &s,
        Method::PATCH,
        "/auth/user/me",
        Some(&session),
        json!({"email": "ada@new.example"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["user"]["email"], "ada@example.com",
        "kept pending until confirmed"
    );
    let message = hook.next().await;
    assert_eq!(
        message["user"]["email"], "ada@new.example",
        "sent to the new address"
    );
    let outdated = message["token"].as_str().unwrap().to_string();
    // The old address still signs in; the new one not yet.
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("ada@new.example", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Changed again before confirming: the first link is outdated.
    call(
        &s,
        Method::PATCH,
        "/auth/user/me",
        Some(&session),
        json!({"email": "ada@newer.example"}),
    )
    .await;
    let current = hook.next().await["token"].as_str().unwrap().to_string();
    let (status, body) = confirm(&s, &outdated).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let (status, body) = confirm(&s, &current).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["email"], "ada@newer.example");
    assert_eq!(
        s.sign_in("ada@newer.example", "correct horse").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn require_confirmed_refuses_only_after_the_right_password() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&confirmable(&hook, "require_confirmed = true")).await;
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "ada@example.com", "password": "correct horse", "password_confirmation": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        body.get("token").is_none(),
        "no session before confirmation: {body}"
    );
    let (status, body) = s.sign_in("ada@example.com", "wrong horse").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "authentication_failed")
    );
    let (status, body) = s.sign_in("ada@example.com", "correct horse").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "unconfirmed")
    );
    let token = hook.next().await["token"].as_str().unwrap().to_string();
    confirm(&s, &token).await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn resend_answers_202_for_anyone_and_sends_only_to_unconfirmed_users() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&confirmable(&hook, "")).await;
    s.register("ada@example.com", "correct horse").await;
    hook.next().await;
    for email in ["ada@example.com", "nobody@example.com"] {
        let (status, body) = s
            .post("/auth/user/confirm/resend", json!({"email": email}))
            .await;
        assert_eq!(
            (status, body["status"].clone()),
            (StatusCode::ACCEPTED, json!("accepted"))
        );
    }
    let again = hook.next().await;
    assert_eq!(again["user"]["email"], "ada@example.com");
    hook.nothing_for(300).await;
    let (status, _) = s.post("/auth/user/confirm/resend", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_confirmation_email_reaches_a_real_smtp_server() {
    let (port, mut inbox) = smtp::start();
    let s = TestServer::start(
        &(util::user_resource(ARGON2, "")
            + &format!(
                "[resources.user.confirmation]\nmonitor_fields = [\"email\"]\n\
                 sender = {{ type = \"smtp\", host = \"127.0.0.1\", port = {port}, tls = \"none\", \
                 from = \"authd@example.com\", confirm_url = \"https://app.example/confirm?confirm={{{{token}}}}\", \
                 retry_base = \"50ms\" }}\n"
            )),
    )
    .await;
    s.register("ada@example.com", "correct horse").await;
    let mail = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mail.to, vec!["ada@example.com".to_string()]);
    let body = body_of(&mail);
    let token = body
        .split("confirm=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let (status, body) = confirm(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
