//! The password strategy's actions end to end.

use hyper::StatusCode;
use serde_json::json;

use crate::util::{self, ARGON2, BCRYPT, SCRYPT, TestServer, error_code, token_of};

#[tokio::test]
async fn register_sign_in_me_sign_out() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"user": {"email": "Ada@Example.com", "name": "Ada", "age": 36,
                            "password": "correct horse", "password_confirmation": "correct horse"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["email"], "Ada@Example.com", "stored as given");
    assert_eq!(body["user"]["age"], 36);
    assert!(body["user"]["id"].is_string());
    assert!(body["user"].get("hashed_password").is_none(), "{body}");
    assert!(body["user"].get("password").is_none(), "{body}");

    // Flat params, and the identity in another case.
    let (status, body) = s.sign_in("ADA@example.COM", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = token_of(&body);
    assert_eq!(body["user"]["name"], "Ada");

    let (status, me) = s.get("/auth/user/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], "Ada@Example.com");
    assert!(me["user"].get("hashed_password").is_none());

    // Sign out revokes that token only.
    let (_, other) = s.sign_in("ada@example.com", "correct horse").await;
    let other = token_of(&other);
    let (status, _, body) = s
        .raw(
            hyper::Method::POST,
            "/auth/user/sign_out",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = s.get("/auth/user/me", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "invalid_token");
    assert_eq!(s.get("/auth/user/me", Some(&other)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_identity_get_the_same_answer() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    s.register("ada@example.com", "correct horse").await;
    let wrong = s.sign_in("ada@example.com", "wrong horse!").await;
    let unknown = s.sign_in("bob@example.com", "correct horse").await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&wrong.1), "authentication_failed");
    assert_eq!(
        wrong, unknown,
        "responses must not tell which identities exist"
    );
}

#[tokio::test]
async fn identities_are_unique_case_insensitively() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    s.register("ada@example.com", "correct horse").await;
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "ADA@example.com", "password": "another one", "password_confirmation": "another one"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["fields"]["email"][0],
        "has already been taken"
    );
}

#[tokio::test]
async fn every_hash_algorithm_registers_and_signs_in() {
    for hash in [ARGON2, SCRYPT, BCRYPT] {
        let s = TestServer::start(&util::user_resource(hash, "")).await;
        s.register("ada@example.com", "correct horse").await;
        assert_eq!(
            s.sign_in("ada@example.com", "correct horse").await.0,
            StatusCode::OK,
            "{hash}"
        );
        assert_eq!(
            s.sign_in("ada@example.com", "correct hors").await.0,
            StatusCode::UNAUTHORIZED,
            "{hash}"
        );
    }
}

#[tokio::test]
async fn bcrypt_refuses_passwords_over_72_bytes_instead_of_truncating() {
    let s = TestServer::start(&util::user_resource(BCRYPT, "")).await;
    let long = "é".repeat(37); // 74 bytes, 37 characters
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "a@b.c", "password": long, "password_confirmation": long}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["fields"]["password"][0]
            .as_str()
            .unwrap_or("")
            .contains("72 bytes"),
        "{body}"
    );
}

#[tokio::test]
async fn password_reset_over_a_webhook() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&util::user_resource(ARGON2, &hook.resettable())).await;
    s.register("ada@example.com", "correct horse").await;

    // Unknown identity: the same 202, and nothing is sent.
    let (status, body) = s
        .post(
            "/auth/user/password/reset_request",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"status": "accepted"}))
    );
    hook.nothing_for(300).await;

    let (status, _) = s
        .post(
            "/auth/user/password/reset_request",
            json!({"user": {"email": "ADA@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let message = hook.next().await;
    assert_eq!(message["subject"], "user");
    assert_eq!(message["strategy"], "password");
    assert_eq!(message["user"]["email"], "ada@example.com");
    assert!(message["user"].get("hashed_password").is_none());
    assert!(message["expires_at"].as_u64().is_some());
    let reset_token = message["token"].as_str().unwrap_or_default().to_string();

    // The reset token is no session token.
    assert_eq!(
        s.get("/auth/user/me", Some(&reset_token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A rejected new password leaves the token usable.
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": reset_token, "password": "short", "password_confirmation": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": reset_token, "password": "new password", "password_confirmation": "other password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["fields"]["password_confirmation"].is_array(),
        "{body}"
    );

    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": reset_token, "password": "new password", "password_confirmation": "new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        s.get("/auth/user/me", Some(&token_of(&body))).await.0,
        StatusCode::OK
    );

    // Single use.
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": reset_token, "password": "third password", "password_confirmation": "third password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "invalid_token");

    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.sign_in("ada@example.com", "new password").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_reset_token_dies_when_the_password_changes() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&util::user_resource(ARGON2, &hook.resettable())).await;
    s.register("ada@example.com", "correct horse").await;
    for _ in 0..2 {
        let (status, _) = s
            .post(
                "/auth/user/password/reset_request",
                json!({"email": "ada@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let first = hook.next().await["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let second = hook.next().await["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reset = |t: String| {
        s.post(
            "/auth/user/password/reset",
            json!({"token": t, "password": "new password", "password_confirmation": "new password"}),
        )
    };
    assert_eq!(reset(first).await.0, StatusCode::OK);
    // The second token was issued for the old password.
    let (status, body) = reset(second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
