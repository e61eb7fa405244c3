//! The API key strategy end to end: keys made, listed and deleted over HTTP with a session
//! token, used as bearer credentials at `/me`, expired by the daemon's clock, revoked by a
//! password reset when configured. That a key with a bad checksum costs no store look-up is
//! proven in the crate's unit tests (a store wrapper counts calls); here it is refused.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{self, ARGON2, TestServer, error_code, token_of};

fn config(extra: &str, password_extra: &str) -> String {
    format!(
        "{}\n[resources.user.strategies.api]\ntype = \"api_key\"\n{extra}\n",
        util::user_resource(ARGON2, password_extra)
    )
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let auth = format!("Bearer {bearer}");
    let mut headers = vec![("authorization", auth.as_str())];
    let body = match body {
        Some(v) => {
            headers.push(("content-type", "application/json"));
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let (status, _, value) = s.raw(method, path, &headers, body).await;
    (status, value)
}

async fn create(s: &TestServer, session: &str, body: Value) -> (StatusCode, Value) {
    call(s, Method::POST, "/auth/user/api/keys", session, Some(body)).await
}

async fn me(s: &TestServer, bearer: &str) -> StatusCode {
    s.get("/auth/user/me", Some(bearer)).await.0
}

#[tokio::test]
async fn an_api_key_is_created_listed_without_its_secret_used_deleted_and_refused_after() {
    let s = TestServer::start(&config("prefix = \"acme\"", "")).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (status, body) = create(&s, &session, json!({ "name": "deploy bot" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    let id = body["id"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("acme_") && key.len() == 5 + 48 + 1 + 7,
        "{key}"
    );
    assert_eq!(body["name"], "deploy bot");
    assert!(body["expires_at"].is_null());

    let (status, listed) = call(&s, Method::GET, "/auth/user/api/keys", &session, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], id.as_str());
    assert_eq!(keys[0]["name"], "deploy bot");
    assert!(keys[0]["created_at"].is_string());
    assert!(keys[0]["last_used_at"].is_null());
    assert!(
        !listed.to_string().contains(&key[5..]),
        "the secret is shown once"
    );

    let (status, who) = s.get("/auth/user/me", Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["user"]["email"], "ada@example.com");
    let (_, listed) = call(&s, Method::GET, "/auth/user/api/keys", &session, None).await;
    assert!(listed["keys"][0]["last_used_at"].is_string(), "{listed}");

    // A key cannot manage keys, nor be signed out.
    let (status, body) = create(&s, &key, json!({ "name": "successor" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let (status, _) = call(&s, Method::POST, "/auth/user/sign_out", &key, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let path = format!("/auth/user/api/keys/{id}");
    let (status, body) = call(&s, Method::DELETE, &path, &session, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(me(&s, &key).await, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&s, Method::DELETE, &path, &session, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, listed) = call(&s, Method::GET, "/auth/user/api/keys", &session, None).await;
    assert_eq!(listed["keys"], json!([]));
}

#[tokio::test]
async fn keys_need_a_session_and_another_users_key_is_not_found() {
    let s = TestServer::start(&config("", "")).await;
    let ada = s.register("ada@example.com", "correct horse").await;
    let eve = s.register("eve@example.com", "correct horse").await;
    let (_, body) = create(&s, &ada, json!({ "name": "ci" })).await;
    let id = body["id"].as_str().unwrap();
    let (status, _, _) = s
        .raw(Method::GET, "/auth/user/api/keys", &[], Bytes::new())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let path = format!("/auth/user/api/keys/{id}");
    let (status, _) = call(&s, Method::DELETE, &path, &eve, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&s, Method::DELETE, "/auth/user/api/keys/x", &eve, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(me(&s, body["key"].as_str().unwrap()).await, StatusCode::OK);
    let (status, _) = call(&s, Method::PATCH, "/auth/user/api/keys", &ada, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = create(&s, &ada, json!({ "name": "" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["name"].is_array(), "{body}");
}

#[tokio::test]
async fn a_key_with_one_changed_character_is_refused() {
    let s = TestServer::start(&config("", "")).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (_, body) = create(&s, &session, json!({ "name": "ci" })).await;
    let key = body["key"].as_str().unwrap();
    assert_eq!(me(&s, key).await, StatusCode::OK);
    for i in [6, 20, 40, key.len() - 9, key.len() - 1] {
        let mut bytes = key.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        let (status, body) = s.get("/auth/user/me", Some(&changed)).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_token")
        );
    }
}

#[tokio::test]
async fn keys_expire_by_the_daemons_clock() {
    let s = TestServer::start(&config("default_lifetime = \"90d\"", "")).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (_, long) = create(&s, &session, json!({ "name": "default" })).await;
    let (status, short) =
        create(&s, &session, json!({ "name": "short", "expires_in": "1h" })).await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    assert!(long["expires_at"].as_str().unwrap() > short["expires_at"].as_str().unwrap());
    let (status, body) = create(&s, &session, json!({ "name": "x", "expires_in": "91d" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["expires_in"].is_array(), "{body}");

    let clock = s.daemon.as_ref().unwrap().clock();
    clock.advance_ms(3_601_000);
    assert_eq!(
        me(&s, short["key"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(&s, long["key"].as_str().unwrap()).await, StatusCode::OK);
    clock.advance_ms(90 * 86_400_000);
    assert_eq!(
        me(&s, long["key"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_eleventh_key_is_refused() {
    let s = TestServer::start(&config("max_keys_per_user = 10", "")).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let mut first = Value::Null;
    for i in 0..10 {
        let (status, body) = create(&s, &session, json!({ "name": format!("k{i}") })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if i == 0 {
            first = body;
        }
    }
    let (status, body) = create(&s, &session, json!({ "name": "k10" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["fields"]["keys"].is_array(), "{body}");
    let path = format!("/auth/user/api/keys/{}", first["id"].as_str().unwrap());
    assert_eq!(
        call(&s, Method::DELETE, &path, &session, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        create(&s, &session, json!({ "name": "k10" })).await.0,
        StatusCode::CREATED
    );
}

/// A reset through the password strategy's webhook; returns the new session token.
async fn reset(s: &TestServer, r: &mut util::Receiver) -> String {
    let (status, _) = s
        .post(
            "/auth/user/password/reset_request",
            json!({ "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let message = r.next().await;
    let token = message["token"].as_str().unwrap();
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({ "reset_token": token, "password": "another horse", "password_confirmation": "another horse" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    token_of(&body)
}

#[tokio::test]
async fn a_reset_revokes_keys_only_with_revoke_on_reset() {
    for (revoke, survives) in [("", true), ("revoke_on_reset = true", false)] {
        let mut r = util::receiver().await;
        let s = TestServer::start(&config(revoke, &r.resettable())).await;
        let session = s.register("ada@example.com", "correct horse").await;
        let (_, old) = create(&s, &session, json!({ "name": "old" })).await;
        let session = reset(&s, &mut r).await;
        let expected = if survives {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(
            me(&s, old["key"].as_str().unwrap()).await,
            expected,
            "{revoke}"
        );
        let (_, new) = create(&s, &session, json!({ "name": "new" })).await;
        assert_eq!(me(&s, new["key"].as_str().unwrap()).await, StatusCode::OK);
    }
}

/// A second resource (`admin`) with an API key strategy of `prefix`.
fn admin_with_keys(prefix: &str) -> String {
    format!(
        "[resources.admin]\nattributes.email = {{ type = \"ci_string\", unique = true }}\n\
         [resources.admin.strategies.password]\ntype = \"password\"\nidentity_field = \"email\"\n\
         hash = {ARGON2}\n[resources.admin.strategies.keys]\ntype = \"api_key\"\nprefix = \"{prefix}\"\n"
    )
}

#[test]
fn check_refuses_two_api_key_strategies_of_one_prefix_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clash.toml");
    let text = format!(
        "version = 1\n{}\n{}",
        config("prefix = \"acme\"", ""),
        admin_with_keys("acme")
    );
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resources.user.strategies.api.prefix")
            && stderr.contains("resources.admin.strategies.keys.prefix"),
        "{stderr}"
    );
    // Distinct prefixes pass.
    std::fs::write(
        &path,
        text.replacen("prefix = \"acme\"", "prefix = \"acme2\"", 1),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_reload_adding_a_clashing_prefix_is_refused_and_the_keys_keep_working() {
    let body = config("prefix = \"acme\"", "");
    let s = TestServer::start_watching(&body).await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (status, created) = create(&s, &session, json!({ "name": "bot" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_string();

    s.save_by_rename(&s.text_for(&format!("{body}\n{}", admin_with_keys("acme"))));
    let h = s
        .wait_health("the prefix refusal", |h| !h["last_reload_error"].is_null())
        .await;
    let problems = h["last_reload_error"]["problems"].to_string();
    assert!(
        problems.contains("resources.admin.strategies.keys.prefix")
            && problems.contains("resources.user.strategies.api.prefix"),
        "{problems}"
    );
    assert_eq!(h["config"]["generation"], 1, "the old config stays");
    assert_eq!(me(&s, &key).await, StatusCode::OK);
    let (status, _) = s.get("/auth/admin/me", Some(&key)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no admin resource: {status}");
}
