//! Sign-in tokens, and tokens used for the wrong purpose.

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::util::{self, ARGON2, TestServer, error_code, token_of};

#[tokio::test]
async fn sign_in_tokens_are_short_lived_single_use_and_no_session() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    s.register("ada@example.com", "correct horse").await;
    let (status, body) = s
        .post(
            "/auth/user/password/sign_in",
            json!({"user": {"email": "ada@example.com", "password": "correct horse"}, "token_type": "sign_in"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sign_in_token = token_of(&body);
    let claims = util::claims_of(&sign_in_token);
    assert_eq!(claims["purpose"], "sign_in");
    assert_eq!(claims["act"], "sign_in_with_password");
    assert_eq!(
        claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0),
        60
    );
    assert!(
        claims["sub"].as_str().unwrap_or("").starts_with("user?id="),
        "{claims}"
    );

    // Not a session token.
    assert_eq!(
        s.get("/auth/user/me", Some(&sign_in_token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let path = format!("/auth/user/password/sign_in_with_token?token={sign_in_token}");
    let (status, body) = s.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = token_of(&body);
    assert_eq!(
        s.get("/auth/user/me", Some(&session)).await.0,
        StatusCode::OK
    );

    // Used once: refused the second time, by GET or POST.
    let (status, body) = s.get(&path, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let (status, _) = s
        .post(
            "/auth/user/password/sign_in_with_token",
            json!({"token": sign_in_token}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A session token is refused where a sign-in token is expected.
    let (status, _) = s
        .post(
            "/auth/user/password/sign_in_with_token",
            json!({"token": session}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_token_is_refused_where_a_reset_token_is_expected() {
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        "[resources.user.strategies.password.resettable]\nsender = { type = \"log\" }",
    ))
    .await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": session, "password": "new horse!", "password_confirmation": "new horse!"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token"),
        "{body}"
    );
    // The password did not change.
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sign_in_with_token_by_post() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    s.register("ada@example.com", "correct horse").await;
    let (_, body) = s
        .post(
            "/auth/user/password/sign_in",
            json!({"email": "ada@example.com", "password": "correct horse", "token_type": "sign_in"}),
        )
        .await;
    let t = token_of(&body);
    // Token in the query of a POST with no body.
    let (status, _, body) = s
        .raw(
            Method::POST,
            &format!("/auth/user/password/sign_in_with_token?token={t}"),
            &[],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn session_tokens_are_refused_as_reset_tokens_and_garbage_is_refused() {
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        "[resources.user.strategies.password.resettable]\nsender = { type = \"log\" }",
    ))
    .await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": session, "password": "new password", "password_confirmation": "new password"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    for bad in ["", "garbage", "a.b.c", &format!("{session}x")] {
        let (status, _) = s.get("/auth/user/me", Some(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let (status, _) = s.get("/auth/user/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn disabled_sign_in_tokens_are_refused_with_a_field_error() {
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        "sign_in_tokens_enabled = false",
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    let (status, body) = s
        .post(
            "/auth/user/password/sign_in",
            json!({"email": "ada@example.com", "password": "correct horse", "token_type": "sign_in"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["token_type"].is_array());
    assert_eq!(
        s.get("/auth/user/password/sign_in_with_token?token=x", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
