//! What survives a restart, and what a second daemon on the same file gets.

use authd_strategy_api::UserStore;
use hyper::StatusCode;

use crate::util::{self, ARGON2, BCRYPT, TestServer};

#[tokio::test]
async fn a_restart_keeps_users_and_the_generated_signing_key() {
    let body = util::user_resource(ARGON2, "");
    let mut s = TestServer::start(&body).await;
    let token = s.register("ada@example.com", "correct horse").await;
    s.stop().await;
    s.boot(&body, "").await;
    let (status, me) = s.get("/auth/user/me", Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a token from before the restart: {me}"
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_second_daemon_on_the_same_file_fails_clearly() {
    let body = util::user_resource(ARGON2, "");
    let s = TestServer::start(&body).await;
    let text = util::config_text(&s.db, "", &body);
    let config = authd::parse_config(&text).unwrap_or_else(|p| panic!("{p}"));
    let err = authd::Daemon::start(config, &text)
        .await
        .err()
        .unwrap_or_else(|| panic!("a second daemon started on the same file"));
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[tokio::test]
async fn a_hash_of_other_parameters_verifies_and_is_upgraded_on_sign_in() {
    let mut s = TestServer::start(&util::user_resource(BCRYPT, "")).await;
    s.register("ada@example.com", "correct horse").await;
    s.stop().await;

    // Same database, the configured algorithm is now argon2id.
    let body = util::user_resource(ARGON2, "");
    s.boot(&body, "").await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("ada@example.com", "wrong horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;

    let (store, _) = authd_store_redb::open(&s.db).unwrap();
    let key = authd_strategy_api::UniqueKey {
        field: "email".into(),
        value: "ada@example.com".into(),
    };
    let user = store
        .find_by_unique("user", &key)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("user gone"));
    let hash = user
        .secrets
        .get("hashed_password")
        .cloned()
        .unwrap_or_default();
    assert!(
        hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "not rehashed: {hash}"
    );
}

#[tokio::test]
async fn rehash_on_sign_in_can_be_turned_off() {
    let mut s = TestServer::start(&util::user_resource(BCRYPT, "")).await;
    s.register("ada@example.com", "correct horse").await;
    s.stop().await;
    s.boot(
        &util::user_resource(ARGON2, "rehash_on_sign_in = false"),
        "",
    )
    .await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    s.stop().await;
    let (store, _) = authd_store_redb::open(&s.db).unwrap();
    let key = authd_strategy_api::UniqueKey {
        field: "email".into(),
        value: "ada@example.com".into(),
    };
    let user = store.find_by_unique("user", &key).await.ok().flatten();
    let hash = user
        .and_then(|u| u.secrets.get("hashed_password").cloned())
        .unwrap_or_default();
    assert!(hash.starts_with("$2b$04$"), "{hash}");
}
