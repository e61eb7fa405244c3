//! Abuse resistance: brute-force limits, client addresses, token misuse, password rules and
//! hostile input.

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::util::{self, ARGON2, TestServer, error_code, token_of};

fn limited(limit: &str) -> String {
    util::user_resource(ARGON2, &format!("rate_limit = {limit}"))
}

async fn hashes_done(s: &TestServer) -> u64 {
    s.status().await["hash_pool"]["completed"]
        .as_u64()
        .unwrap_or(0)
}

async fn sign_in_from(
    s: &TestServer,
    email: &str,
    password: &str,
    xff: Option<&str>,
) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(x) = xff {
        headers.push(("x-forwarded-for", x));
    }
    s.raw(
        Method::POST,
        "/auth/user/password/sign_in",
        &headers,
        json!({"email": email, "password": password}).to_string(),
    )
    .await
}

#[tokio::test]
async fn an_identity_is_locked_out_after_its_failures_without_hashing() {
    let mut s = TestServer::start(&limited(r#"{ identity_failures = 3, window = "1h" }"#)).await;
    s.register("ada@example.com", "correct horse").await;
    for _ in 0..3 {
        assert_eq!(
            s.sign_in("ada@example.com", "wrong horse").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let before = hashes_done(&s).await;
    let (status, headers, body) = sign_in_from(&s, "ADA@example.com", "correct horse", None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{body}"
    );
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        hashes_done(&s).await,
        before,
        "a locked-out sign-in must not hash"
    );
    // Other identities are not locked.
    s.register("bob@example.com", "correct horse").await;
    assert_eq!(
        s.sign_in("bob@example.com", "correct horse").await.0,
        StatusCode::OK
    );

    // The lockout is kept in the database: it survives a restart.
    s.stop().await;
    s.boot(&limited(r#"{ identity_failures = 3, window = "1h" }"#), "")
        .await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_successful_sign_in_resets_the_identity_counter() {
    let s = TestServer::start(&limited(r#"{ identity_failures = 3, window = "1h" }"#)).await;
    s.register("ada@example.com", "correct horse").await;
    for _ in 0..2 {
        s.sign_in("ada@example.com", "wrong horse").await;
    }
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    for _ in 0..2 {
        assert_eq!(
            s.sign_in("ada@example.com", "wrong horse").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_identities_count_too_and_a_client_address_has_its_own_limit() {
    let s = TestServer::start(&limited(
        r#"{ identity_failures = 100, ip_failures = 4, window = "1h" }"#,
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    for i in 0..4 {
        let (status, _) = s
            .sign_in(&format!("nobody{i}@example.com"), "whatever1")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Same address, another identity, right password: refused while the address is locked.
    let (status, _) = s.sign_in("ada@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // X-Forwarded-For from an untrusted peer changes nothing.
    let (status, _, _) =
        sign_in_from(&s, "ada@example.com", "correct horse", Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let s = TestServer::start_with(
        &limited(r#"{ identity_failures = 100, ip_failures = 2, window = "1h" }"#),
        "trusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    s.register("ada@example.com", "correct horse").await;
    for _ in 0..2 {
        sign_in_from(&s, "nobody@example.com", "whatever1", Some("198.51.100.1")).await;
    }
    let (status, _, _) =
        sign_in_from(&s, "ada@example.com", "correct horse", Some("198.51.100.1")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's address is locked"
    );
    let (status, _, _) =
        sign_in_from(&s, "ada@example.com", "correct horse", Some("198.51.100.2")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another client behind the same proxy is not"
    );
}

#[tokio::test]
async fn rate_limit_false_turns_it_off() {
    let s = TestServer::start(&limited("false")).await;
    s.register("ada@example.com", "correct horse").await;
    for _ in 0..12 {
        assert_eq!(
            s.sign_in("ada@example.com", "wrong horse").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_reset_revokes_sessions_and_sign_in_tokens_issued_before() {
    for revoke in [true, false] {
        let mut hook = util::receiver().await;
        let extra = format!("revoke_sessions_on_reset = {revoke}\n{}", hook.resettable());
        let s = TestServer::start(&util::user_resource(ARGON2, &extra)).await;
        let old_session = s.register("ada@example.com", "correct horse").await;
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
        let reset = hook.next().await["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (status, body) = s
            .post(
                "/auth/user/password/reset",
                json!({"reset_token": reset, "password": "new password", "password_confirmation": "new password"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let new_session = token_of(&body);
        assert_eq!(
            s.get("/auth/user/me", Some(&new_session)).await.0,
            StatusCode::OK
        );
        let old = s.get("/auth/user/me", Some(&old_session)).await.0;
        if revoke {
            assert_eq!(
                old,
                StatusCode::UNAUTHORIZED,
                "sessions from before the reset are revoked"
            );
        } else {
            assert_eq!(
                old,
                StatusCode::OK,
                "revoke_sessions_on_reset = false keeps them"
            );
        }
        let (status, _) = s
            .get(
                &format!("/auth/user/password/sign_in_with_token?token={sign_in_token}"),
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "sign-in tokens die with the old password"
        );
    }
}

#[tokio::test]
async fn password_rules() {
    let s = TestServer::start(&util::user_resource(ARGON2, "password_max_length = 20")).await;
    let register = |email: &'static str, password: &'static str| {
        s.post(
            "/auth/user/password/register",
            json!({"email": email, "password": password, "password_confirmation": password}),
        )
    };
    let (status, body) = register("Ada@Example.com", "ada@example.COM").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["fields"]["password"][0],
        "must not be the same as email"
    );
    let (status, body) = register("a@b.c", "123456789012345678901").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["fields"]["password"][0]
            .as_str()
            .unwrap_or("")
            .contains("too long")
    );

    // Unicode, compared as given: no trimming, no normalization.
    let (status, _) = register("u@b.c", " pässwörd 密码 ").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        s.sign_in("u@b.c", " pässwörd 密码 ").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("u@b.c", "pässwörd 密码").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    let payload = token.split('.').nth(1).unwrap_or_default().to_string();
    let none = format!(
        "{}.{payload}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    let hs512 = format!(
        "{}.{payload}.{}",
        B64.encode(br#"{"alg":"HS512","typ":"JWT"}"#),
        B64.encode([0u8; 64])
    );
    // A token signed with another key, with the same claims.
    let other = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &util::claims_of(&token),
        &jsonwebtoken::EncodingKey::from_secret(&[1u8; 32]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for forged in [none, hs512, other] {
        let (status, body) = s.get("/auth/user/me", Some(&forged)).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "{forged}"
        );
    }
}

#[tokio::test]
async fn hostile_input_gets_4xx_never_5xx() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let long_query = format!(
        "/auth/user/password/sign_in_with_token?token={}",
        "a".repeat(60_000)
    );
    let json_ct = [("content-type", "application/json")];
    let bodies: Vec<String> = vec![
        "null".into(),
        "\"string\"".into(),
        "1e999999".into(),
        json!({"user": "not an object", "email": ["a"], "password": {"x": 1}}).to_string(),
        json!({"email": "a@b.c", "password": 12345678901234567890u64}).to_string(),
        json!({"email": "\u{0}", "password": "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}"})
            .to_string(),
        format!("{{\"email\": \"{}\", \"password\": \"x\"}}", "\\ud800"),
        "{\"email\": \"a\", \"email\": \"b\", \"password\": \"cccccccc\"}".into(),
    ];
    for body in bodies {
        for path in [
            "/auth/user/password/sign_in",
            "/auth/user/password/register",
        ] {
            let (status, _, reply) = s.raw(Method::POST, path, &json_ct, body.clone()).await;
            assert!(status.is_client_error(), "{path} {body}: {status} {reply}");
        }
    }
    let (status, _, _) = s.raw(Method::GET, &long_query, &[], "").await;
    assert!(status.is_client_error(), "{status}");
    let big_header = "x".repeat(100_000);
    let (status, _, _) = s
        .raw(
            Method::GET,
            "/auth/user/me",
            &[("authorization", &big_header)],
            "",
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    // The daemon is still fine.
    assert_eq!(s.get("/healthz", None).await.0, StatusCode::OK);
}
