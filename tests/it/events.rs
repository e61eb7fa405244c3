//! Account events end to end: every event type reaches a real webhook receiver through the
//! durable outbox, signed per Standard Webhooks. The signature is checked by an independent
//! implementation (Python's `standardwebhooks`, when `.ci/run`'s virtualenv is there; and the
//! HMAC written out in `delivery.rs`), the `webhook-id` is the event's id, and no body holds
//! the password, a token or the identity.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::delivery::{Hit, Hook, verify_signature};
use crate::metrics::python_with;
use crate::util::{self, ARGON2, TestServer, token_of};

/// Checks `hit` with the `standardwebhooks` package.
fn python_verifies(python: &Path, secret: &str, hit: &Hit) -> bool {
    const SCRIPT: &str = "import sys\n\
        from standardwebhooks.webhooks import Webhook\n\
        secret, wid, ts, sig, body = sys.argv[1:6]\n\
        Webhook(secret).verify(body.encode(), {'webhook-id': wid, 'webhook-timestamp': ts, 'webhook-signature': sig})\n\
        print('verified')";
    let out = Command::new(python)
        .args(["-c", SCRIPT, secret])
        .arg(hit.header("webhook-id"))
        .arg(hit.header("webhook-timestamp"))
        .arg(hit.header("webhook-signature"))
        .arg(String::from_utf8(hit.body.to_vec()).unwrap())
        .output()
        .unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified")
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (status, _, body) = s.raw(method, path, &headers, body.to_string()).await;
    (status, body)
}

#[tokio::test]
async fn every_event_type_is_delivered_signed_with_its_own_id() {
    let key: [u8; 32] = rand::random();
    let secret = format!("whsec_{}", STANDARD.encode(key));
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("events.secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let mut events = Hook::start(0, Duration::ZERO).await;
    let mut resets = util::receiver().await;
    let body = format!(
        "[events]\nsender = {{ type = \"webhook\", url = \"{}\", secret_file = {:?}, retry_base = \"50ms\" }}\n{}",
        events.url,
        secret_file.display().to_string(),
        util::user_resource(
            ARGON2,
            &format!(
                "rate_limit = {{ identity_failures = 2, window = \"1h\" }}\n{}",
                resets.resettable()
            )
        ),
    );
    let s = TestServer::start(&body).await;
    let password = "correct horse";

    // user.registered, user.signed_in, user.sign_in_failed and user.locked_out (the 2nd).
    s.register("ada@example.com", password).await;
    assert_eq!(
        s.sign_in("ada@example.com", password).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("ada@example.com", "wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.sign_in("ada@example.com", "wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    // password.reset (which lifts the lockout, and signs in: user.signed_in again).
    let (status, _) = s
        .post(
            "/auth/user/password/reset_request",
            json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let reset_token = resets.next().await["token"].as_str().unwrap().to_string();
    let reset_password = "reset horse";
    let (status, body) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": reset_token, "password": reset_password, "password_confirmation": reset_password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = token_of(&body);
    // password.changed.
    let changed = "changed horse";
    let (status, body) = call(
        &s,
        Method::POST,
        "/auth/user/password/change_password",
        Some(&session),
        json!({"current_password": reset_password, "password": changed, "password_confirmation": changed}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = token_of(&body);
    // user.deleted.
    let (status, body) = call(
        &s,
        Method::DELETE,
        "/auth/user/me",
        Some(&session),
        json!({"password": changed}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let want: BTreeMap<&str, usize> = [
        ("user.registered", 1),
        ("user.signed_in", 2),
        ("user.sign_in_failed", 2),
        ("user.locked_out", 1),
        ("password.reset", 1),
        ("password.changed", 1),
        ("user.deleted", 1),
    ]
    .into();
    let total: usize = want.values().sum();
    let mut hits = Vec::new();
    for _ in 0..total {
        hits.push(events.next_success().await);
    }
    let python = python_with("standardwebhooks");
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut user_id = None;
    for hit in &hits {
        assert!(verify_signature(&key, hit), "bad signature: {hit:?}");
        if let Some(python) = &python {
            assert!(
                python_verifies(python, &secret, hit),
                "standardwebhooks refused {hit:?}"
            );
        }
        let event = hit.json();
        let text = String::from_utf8(hit.body.to_vec()).unwrap();
        for secret in [
            password,
            reset_password,
            changed,
            &reset_token,
            &session,
            "ada@example.com",
        ] {
            assert!(!text.contains(secret), "a secret in {text}");
        }
        assert_eq!(
            hit.header("webhook-id"),
            event["id"].as_str().unwrap(),
            "{event}"
        );
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_string()),
            "ids are unique"
        );
        assert!(
            event["timestamp"].as_str().unwrap().ends_with('Z'),
            "{event}"
        );
        assert_eq!(event["data"]["resource"], "user");
        if event["type"] != "user.deleted" {
            assert_eq!(event["data"]["strategy"], "password", "{event}");
        }
        let id = event["data"]["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no user id: {event}"));
        assert_eq!(
            *user_id.get_or_insert_with(|| id.to_string()),
            id,
            "one user throughout"
        );
        *got.entry(event["type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let got: BTreeMap<&str, usize> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn only_the_listed_types_are_sent_and_none_without_the_table() {
    let mut events = Hook::start(0, Duration::ZERO).await;
    let body = format!(
        "[events]\nsender = {{ type = \"webhook\", url = \"{}\" }}\ntypes = [\"user.sign_in_failed\"]\n{}",
        events.url,
        util::user_resource(ARGON2, ""),
    );
    let s = TestServer::start(&body).await;
    s.register("ada@example.com", "correct horse").await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("nobody@example.com", "wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    let hit = events.next_success().await;
    let event = hit.json();
    assert_eq!(event["type"], "user.sign_in_failed");
    assert_eq!(
        event["data"]["user_id"],
        Value::Null,
        "an unknown identity names no user"
    );
    events.no_success_for(300).await;

    // An unknown type is refused with its path.
    let bad = format!(
        "version = 1\n[events]\nsender = {{ type = \"webhook\", url = \"{}\" }}\ntypes = [\"user.exploded\"]\n",
        events.url
    );
    let problems = authd::parse_config(&bad).err().unwrap();
    assert_eq!(problems.0[0].path, "events.types[0]", "{problems}");
}
