//! Signing keys end to end: the JWKS over HTTP checked by an independent JOSE library (PyJWT
//! with PyJWKClient, from the venv `.ci/run` makes; see `util::python_with`), rotation by editing the config file (the
//! real watcher), an HMAC -> EdDSA switch, introspection of live and dead tokens, and forged
//! headers refused.

use std::path::{Path, PathBuf};

use authd::config::SigningAlgorithm;
use authd::tokens::keys::KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{self, ARGON2, TestServer, token_of};

/// Python with PyJWT (see `util::python_with`).
fn python() -> Option<PathBuf> {
    util::python_with("jwt")
}

/// PyJWT's verdict on each token, fetching the JWKS from `s`.
async fn pyjwt(
    s: &TestServer,
    issuer: &str,
    audience: Option<&str>,
    tokens: &[&str],
) -> Vec<Value> {
    let Some(python) = python() else {
        return Vec::new();
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_jwks.py");
    let mut args = vec![
        script.display().to_string(),
        format!("{}/.well-known/jwks.json", s.base),
        issuer.to_string(),
        audience.unwrap_or("-").to_string(),
    ];
    args.extend(tokens.iter().map(|t| t.to_string()));
    // The daemon runs on this test's runtime: wait for Python off it.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "verify_jwks.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), tokens.len());
    lines
}

/// The `kid`s of the JWKS, operator keys first (sorted), then generated ones.
async fn published(s: &TestServer) -> Vec<String> {
    let (_, jwks) = s.get("/.well-known/jwks.json", None).await;
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort_by_key(|k| (!k.starts_with("2026"), k.clone()));
    kids
}

fn header_of(token: &str) -> Value {
    let first = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap()
}

/// Writes a new PEM key of `alg` at `dir/name`; returns its path as TOML text.
fn pem_key(dir: &Path, name: &str, alg: SigningAlgorithm) -> String {
    let pair = KeyPair::generate(alg).unwrap();
    let pem = pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, pair.pkcs8())
        .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    format!("{:?}", path.display().to_string())
}

/// The introspection client of these tests: its secret in a file next to the database.
fn introspection_table(s_db: &Path) -> (String, String) {
    let secret = STANDARD.encode(rand::random::<[u8; 32]>());
    let path = s_db.with_file_name("introspect.secret");
    std::fs::write(&path, &secret).unwrap();
    (
        format!(
            "[introspection.clients.orders]\nsecret_file = {:?}\n",
            path.display().to_string()
        ),
        secret,
    )
}

async fn introspect(
    s: &TestServer,
    client: &str,
    secret: &str,
    token: &str,
) -> (StatusCode, Value) {
    let basic = format!("Basic {}", STANDARD.encode(format!("{client}:{secret}")));
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let (status, headers, value) = s
        .raw(
            Method::POST,
            "/auth/introspect",
            &[
                ("authorization", &basic),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
        .await;
    if status == StatusCode::UNAUTHORIZED {
        assert!(
            headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")),
            "{headers:?}"
        );
    }
    (status, value)
}

#[tokio::test]
async fn session_tokens_of_each_algorithm_verify_with_pyjwt_and_the_jwks() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let body = format!(
            "[tokens]\nsigning_algorithm = \"{alg}\"\nissuer = \"https://auth.example.com\"\n\
             audience = [\"orders-api\"]\npublish_ahead = \"10m\"\n{}",
            util::user_resource(ARGON2, "")
        );
        let s = TestServer::start(&body).await;
        let token = s.register("ada@example.com", "correct horse").await;
        let h = header_of(&token);
        assert_eq!(h["alg"], alg);
        let claims = util::claims_of(&token);
        assert_eq!(claims["aud"], "orders-api");

        let (status, headers, jwks) = s.raw(Method::GET, "/.well-known/jwks.json", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers.get("cache-control").unwrap(),
            "public, max-age=300",
            "half of publish_ahead"
        );
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        let key = &keys[0];
        assert_eq!(key["kid"], h["kid"]);
        assert_eq!((&key["alg"], &key["use"]), (&json!(alg), &json!("sig")));
        for private in ["d", "p", "q", "k"] {
            assert!(key.get(private).is_none(), "{key}");
        }
        match alg {
            "EdDSA" => assert_eq!(
                (&key["kty"], &key["crv"]),
                (&json!("OKP"), &json!("Ed25519"))
            ),
            "ES256" => assert_eq!((&key["kty"], &key["crv"]), (&json!("EC"), &json!("P-256"))),
            _ => assert!(key["n"].is_string() && key["e"] == "AQAB"),
        }

        let verdicts = pyjwt(
            &s,
            "https://auth.example.com",
            Some("orders-api"),
            &[&token],
        )
        .await;
        if let Some(v) = verdicts.first() {
            assert_eq!(v["ok"], true, "{alg}: {v}");
            assert_eq!(v["claims"]["sub"], claims["sub"]);
            // Another audience or issuer fails there too: the check is not a formality.
            let wrong = pyjwt(
                &s,
                "https://auth.example.com",
                Some("billing-api"),
                &[&token],
            )
            .await;
            assert_eq!(wrong[0]["ok"], false, "{}", wrong[0]);
            let wrong = pyjwt(
                &s,
                "https://evil.example.com",
                Some("orders-api"),
                &[&token],
            )
            .await;
            assert_eq!(wrong[0]["ok"], false, "{}", wrong[0]);
        }
    }
}

#[tokio::test]
async fn hmac_only_publishes_no_key() {
    let s = TestServer::start(&format!(
        "[tokens]\nsigning_algorithm = \"HS256\"\n{}",
        util::user_resource(ARGON2, "")
    ))
    .await;
    let token = s.register("ada@example.com", "correct horse").await;
    assert!(header_of(&token).get("kid").is_none());
    let (status, jwks) = s.get("/.well-known/jwks.json", None).await;
    assert_eq!((status, jwks), (StatusCode::OK, json!({"keys": []})));
    let (status, _, _) = s.raw(Method::POST, "/.well-known/jwks.json", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn rotation_by_editing_the_key_list_in_the_watched_file() {
    // The keys live beside the config, in the server's temporary folder.
    let s = TestServer::start_watching(&util::user_resource(ARGON2, "")).await;
    let dir_s = s.db.parent().unwrap();
    let (k1, k2) = (
        pem_key(dir_s, "k1.pem", SigningAlgorithm::EdDsa),
        pem_key(dir_s, "k2.pem", SigningAlgorithm::EdDsa),
    );
    let (clients, secret) = introspection_table(&s.db);
    let keys = |k1_state: Option<&str>, k2_state: &str| {
        let mut t = "[tokens]\nissuer = \"authd\"\ntoken_lifetime = \"1h\"\n".to_string();
        if let Some(state) = k1_state {
            t.push_str(&format!(
                "[[tokens.keys]]\nid = \"2026-11\"\nfile = {k1}\nstate = \"{state}\"\n"
            ));
        }
        t.push_str(&format!(
            "[[tokens.keys]]\nid = \"2026-12\"\nfile = {k2}\nstate = \"{k2_state}\"\n"
        ));
        format!("{t}{clients}{}", util::user_resource(ARGON2, ""))
    };
    // Generation 2: the operator's keys, 2026-12 published ahead.
    s.save_by_rename(&s.text_for(&keys(Some("active"), "pending")));
    s.wait_generation(2).await;
    let old = s.register("ada@example.com", "correct horse").await;
    assert_eq!(header_of(&old)["kid"], "2026-11");
    // Published: both of the operator's keys (and the key generated at start, retired now,
    // which may have signed tokens).
    assert_eq!(published(&s).await.len(), 3);
    assert!(
        published(&s)
            .await
            .starts_with(&["2026-11".into(), "2026-12".into()])
    );

    // Generation 3: 2026-12 signs, 2026-11 is retired.
    s.save_by_rename(&s.text_for(&keys(Some("retired"), "active")));
    s.wait_generation(3).await;
    assert_eq!(s.get("/auth/user/me", Some(&old)).await.0, StatusCode::OK);
    let (status, body) = introspect(&s, "orders", &secret, &old).await;
    assert_eq!(
        (status, &body["active"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    let new = token_of(&body);
    assert_eq!(header_of(&new)["kid"], "2026-12");
    // Operators see each key's state and until when it verifies.
    let status = s.status().await;
    let listed = status["signing"]["keys"].as_array().unwrap();
    let k11 = listed.iter().find(|k| k["kid"] == "2026-11").unwrap();
    assert_eq!(
        (&k11["state"], &k11["source"]),
        (&json!("retired"), &json!("tokens.keys[0]"))
    );
    assert_eq!(
        k11["verifies_until"].as_u64().unwrap(),
        k11["signs_until"].as_u64().unwrap() + 3600
    );
    let k12 = listed.iter().find(|k| k["kid"] == "2026-12").unwrap();
    assert_eq!(k12["state"], "active");
    let verdicts = pyjwt(&s, "authd", None, &[&old, &new]).await;
    for v in &verdicts {
        assert_eq!(v["ok"], true, "{v}");
    }
    if !verdicts.is_empty() {
        assert_eq!(verdicts[0]["kid"], "2026-11");
        assert_eq!(verdicts[1]["kid"], "2026-12");
    }

    // Generation 4: 2026-11 removed: its tokens stop verifying at once, everywhere.
    s.save_by_rename(&s.text_for(&keys(None, "active")));
    s.wait_generation(4).await;
    assert_eq!(
        s.get("/auth/user/me", Some(&old)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body) = introspect(&s, "orders", &secret, &old).await;
    assert_eq!(body, json!({"active": false}));
    assert_eq!(s.get("/auth/user/me", Some(&new)).await.0, StatusCode::OK);
    let kids = published(&s).await;
    assert!(!kids.contains(&"2026-11".to_string()) && kids.contains(&"2026-12".to_string()));
    let verdicts = pyjwt(&s, "authd", None, &[&old, &new]).await;
    if !verdicts.is_empty() {
        assert_eq!(verdicts[0]["ok"], false, "{}", verdicts[0]);
        assert_eq!(verdicts[1]["ok"], true, "{}", verdicts[1]);
    }
}

#[tokio::test]
async fn hmac_to_eddsa_by_reload_keeps_old_tokens_until_they_expire() {
    let hs = format!(
        "[tokens]\nsigning_algorithm = \"HS256\"\ntoken_lifetime = \"1h\"\n{}",
        util::user_resource(ARGON2, "")
    );
    let s = TestServer::start_watching(&hs).await;
    let old = s.register("ada@example.com", "correct horse").await;
    assert_eq!(header_of(&old)["alg"], "HS256");
    s.save_by_rename(&s.text_for(&hs.replace("HS256", "EdDSA")));
    s.wait_generation(2).await;
    assert_eq!(s.get("/auth/user/me", Some(&old)).await.0, StatusCode::OK);
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    let new = token_of(&body);
    assert_eq!(header_of(&new)["alg"], "EdDSA");
    let verdicts = pyjwt(&s, "authd", None, &[&new, &old]).await;
    if !verdicts.is_empty() {
        assert_eq!(verdicts[0]["ok"], true, "{}", verdicts[0]);
        assert_eq!(
            verdicts[1]["ok"], false,
            "HMAC tokens are not verifiable with the JWKS"
        );
    }
    // Past the old token's expiry (and the HMAC key's overlap): refused.
    s.daemon.as_ref().unwrap().clock().advance_ms(3601 * 1000);
    assert_eq!(
        s.get("/auth/user/me", Some(&old)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn introspection_answers_live_tokens_and_every_kind_of_dead_one() {
    let probe_dir = tempfile::tempdir().unwrap();
    let k1 = pem_key(probe_dir.path(), "k1.pem", SigningAlgorithm::EdDsa);
    let k2 = pem_key(probe_dir.path(), "k2.pem", SigningAlgorithm::EdDsa);
    let mut s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let (clients, secret) = introspection_table(&s.db);
    let body = |k1_state: &str, lifetime: &str| {
        format!(
            "[tokens]\naudience = [\"orders-api\"]\ntoken_lifetime = \"{lifetime}\"\n\
             [[tokens.keys]]\nid = \"k1\"\nfile = {k1}\nstate = \"{k1_state}\"\n\
             [[tokens.keys]]\nid = \"k2\"\nfile = {k2}\nstate = \"{}\"\n{clients}{}",
            if k1_state == "active" {
                "pending"
            } else {
                "active"
            },
            util::user_resource(ARGON2, "")
        )
    };
    s.stop().await;
    s.boot(&body("active", "1h"), "").await;
    let daemon_clock = s.daemon.as_ref().unwrap().clock();

    let live = s.register("ada@example.com", "correct horse").await;
    let (status, answer) = introspect(&s, "orders", &secret, &live).await;
    assert_eq!(status, StatusCode::OK);
    let claims = util::claims_of(&live);
    assert_eq!(answer["active"], true, "{answer}");
    for field in ["sub", "exp", "iat", "iss", "aud", "jti", "purpose"] {
        assert_eq!(answer[field], claims[field], "{field}: {answer}");
    }
    assert_eq!(answer["aud"], "orders-api");
    assert_eq!(answer["token_type"], "session");
    // JSON bodies too.
    let basic = format!("Basic {}", STANDARD.encode(format!("orders:{secret}")));
    let (status, _, answer) = s
        .raw(
            Method::POST,
            "/auth/introspect",
            &[
                ("authorization", &basic),
                ("content-type", "application/json"),
            ],
            json!({"token": live}).to_string(),
        )
        .await;
    assert_eq!((status, &answer["active"]), (StatusCode::OK, &json!(true)));

    // Without valid client credentials: 401, whatever the token.
    for (client, secret) in [("orders", "wrong"), ("other", secret.as_str()), ("", "")] {
        let (status, body) = introspect(&s, client, secret, &live).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{client}");
        assert_eq!(body["error"]["code"], "invalid_client");
    }
    let (status, _, _) = s
        .raw(
            Method::POST,
            "/auth/introspect",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={live}"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let inactive = json!({"active": false});
    // Malformed, unknown.
    for junk in ["garbage", "a.b.c", &format!("{live}x")] {
        assert_eq!(
            introspect(&s, "orders", &secret, junk).await.1,
            inactive,
            "{junk}"
        );
    }
    let other = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let foreign = other.register("ada@example.com", "correct horse").await;
    assert_eq!(
        introspect(&s, "orders", &secret, &foreign).await.1,
        inactive
    );
    // Signed out.
    let (_, b) = s.sign_in("ada@example.com", "correct horse").await;
    let signed_out = token_of(&b);
    let bearer = format!("Bearer {signed_out}");
    let (status, _, _) = s
        .raw(
            Method::POST,
            "/auth/user/sign_out",
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(&s, "orders", &secret, &signed_out).await.1,
        inactive
    );
    // A sign-in token (another purpose) is not a session.
    let (_, b) = s
        .post(
            "/auth/user/password/sign_in",
            json!({"email": "ada@example.com", "password": "correct horse", "token_type": "sign_in"}),
        )
        .await;
    assert_eq!(
        introspect(&s, "orders", &secret, &token_of(&b)).await.1,
        inactive
    );

    // Retired past its overlap: k1 retired, then the longest lifetime shortened to 10m; 10
    // minutes later k1 is gone although the token it signed has 50 minutes left.
    s.daemon
        .as_ref()
        .unwrap()
        .reload(&s.text_for(&body("retired", "1h")))
        .await
        .unwrap();
    assert_eq!(
        introspect(&s, "orders", &secret, &live).await.1["active"],
        true
    );
    s.daemon
        .as_ref()
        .unwrap()
        .reload(&s.text_for(&body("retired", "10m")))
        .await
        .unwrap();
    daemon_clock.advance_ms(601 * 1000);
    assert_eq!(introspect(&s, "orders", &secret, &live).await.1, inactive);
    assert_eq!(
        s.get("/auth/user/me", Some(&live)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Revoked by the session epoch ("sign out everywhere", as a reset does).
    let (_, b) = s.sign_in("ada@example.com", "correct horse").await;
    let (first, second) = (token_of(&b), {
        let (_, b) = s.sign_in("ada@example.com", "correct horse").await;
        token_of(&b)
    });
    assert_eq!(
        introspect(&s, "orders", &secret, &first).await.1["active"],
        true
    );
    let bearer = format!("Bearer {second}");
    let (status, _, _) = s
        .raw(
            Method::POST,
            "/auth/user/sign_out_all",
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(introspect(&s, "orders", &secret, &first).await.1, inactive);
    // Expired.
    let (_, b) = s.sign_in("ada@example.com", "correct horse").await;
    let fresh = token_of(&b);
    assert_eq!(
        introspect(&s, "orders", &secret, &fresh).await.1["active"],
        true
    );
    daemon_clock.advance_ms(601 * 1000);
    assert_eq!(introspect(&s, "orders", &secret, &fresh).await.1, inactive);
}

#[tokio::test]
async fn forged_headers_are_refused_at_me() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    assert_eq!(s.get("/auth/user/me", Some(&token)).await.0, StatusCode::OK);
    let h = header_of(&token);
    let kid = h["kid"].as_str().unwrap().to_string();
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    let rest = parts.next().unwrap();
    let payload = rest.split('.').next().unwrap();
    let with = |header: Value| {
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap())
        )
    };
    let (_, jwks) = s.get("/.well-known/jwks.json", None).await;
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_string();
    let hs256_with_public_key = {
        use hmac::{Hmac, Mac};
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        let input = format!("{header}.{payload}");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(x.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    for forged in [
        with(json!({"alg": "EdDSA", "kid": "unknown"})),
        with(json!({"alg": "EdDSA"})),
        with(json!({"alg": "ES256", "kid": kid})),
        with(json!({"alg": "HS256", "kid": kid})),
        format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)
        ),
        hs256_with_public_key,
    ] {
        assert_eq!(
            s.get("/auth/user/me", Some(&forged)).await.0,
            StatusCode::UNAUTHORIZED,
            "{forged}"
        );
    }
}

/// A strategy of API keys for the test: `testkey_<user id>` is that user's key. Stands for
/// the real API key plugin, through the same `Strategy` bearer hooks.
#[derive(Debug)]
struct TestKeys;

struct LiveTestKeys {
    subject: String,
    store: std::sync::Arc<dyn authd_strategy_api::Store>,
}

impl authd_strategy_api::ValidatedStrategy for TestKeys {
    fn phases(&self) -> Vec<authd_strategy_api::PhaseSpec> {
        Vec::new()
    }
    fn describe(&self) -> String {
        "test api keys".into()
    }
    fn secret_fields(&self) -> Vec<String> {
        Vec::new()
    }
    fn instantiate(
        &self,
        subject: &str,
        _name: &str,
        services: &authd_strategy_api::Services,
    ) -> std::sync::Arc<dyn authd_strategy_api::Strategy> {
        std::sync::Arc::new(LiveTestKeys {
            subject: subject.to_string(),
            store: services.store.clone(),
        })
    }
}

#[async_trait::async_trait]
impl authd_strategy_api::Strategy for LiveTestKeys {
    fn phases(&self) -> &[authd_strategy_api::PhaseSpec] {
        &[]
    }
    async fn handle(
        &self,
        _phase: &str,
        _request: authd_strategy_api::PhaseRequest,
    ) -> authd_strategy_api::Outcome {
        Ok(authd_strategy_api::Verdict::NoContent)
    }
    fn recognizes_bearer(&self, bearer: &str) -> bool {
        bearer.starts_with("testkey_")
    }
    async fn authenticate_bearer(
        &self,
        bearer: &str,
    ) -> Result<Option<authd_strategy_api::BearerUser>, authd_strategy_api::Error> {
        let Some(id) = bearer
            .strip_prefix("testkey_")
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
        else {
            return Ok(None);
        };
        Ok(self
            .store
            .get(&self.subject, id)
            .await?
            .map(|user| authd_strategy_api::BearerUser {
                user,
                key_id: "key-1".into(),
            }))
    }
}

#[tokio::test]
async fn api_keys_introspect_as_api_keys_through_the_session_rules() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = STANDARD.encode(rand::random::<[u8; 32]>());
    let secret_path = secrets.path().join("orders.secret");
    std::fs::write(&secret_path, &secret).unwrap();
    let s = TestServer::start_edited(&util::user_resource(ARGON2, ""), |config| {
        config.resources[0]
            .strategies
            .push(authd::config::StrategyConfig {
                name: "keys".into(),
                type_name: "test_keys".into(),
                validated: Box::new(TestKeys),
            });
        config.introspection.clients.push((
            "orders".into(),
            authd::config::SecretSource::File(secret_path.clone()),
        ));
    })
    .await;
    let session = s.register("ada@example.com", "correct horse").await;
    let (_, me) = s.get("/auth/user/me", Some(&session)).await;
    let id = me["user"]["id"].as_str().unwrap().to_string();
    let key = format!("testkey_{id}");
    assert_eq!(s.get("/auth/user/me", Some(&key)).await.0, StatusCode::OK);

    let (status, answer) = introspect(&s, "orders", &secret, &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "api_key");
    assert_eq!(answer["sub"], format!("user?id={id}"));
    assert_eq!(answer["key_id"], "key-1");
    let (_, answer) = introspect(&s, "orders", &secret, &session).await;
    assert_eq!(answer["token_type"], "session");
    // A key of no user, in the recognized form: inactive.
    let unknown = format!("testkey_{}", uuid::Uuid::new_v4());
    assert_eq!(
        introspect(&s, "orders", &secret, &unknown).await.1,
        json!({"active": false})
    );
}

#[tokio::test]
async fn the_daemon_rotates_generated_keys_by_itself_and_publishes_ahead() {
    let s = TestServer::start(&format!(
        "[tokens]\nrotate_every = \"1m\"\npublish_ahead = \"4s\"\ntoken_lifetime = \"1h\"\n{}",
        util::user_resource(ARGON2, "")
    ))
    .await;
    let first = s.register("ada@example.com", "correct horse").await;
    let first_kid = header_of(&first)["kid"].clone();
    assert_eq!(published(&s).await.len(), 1);
    // 56 s later the next key is due (60 s - publish_ahead): the key refresh (every second
    // with this publish_ahead) makes it, no reload involved.
    let clock = s.daemon.as_ref().unwrap().clock();
    clock.advance_ms(56_500);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while published(&s).await.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no key published ahead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    assert_eq!(
        header_of(&token_of(&body))["kid"],
        first_kid,
        "not signing yet"
    );
    // Once its time has come it signs; the first key's tokens still verify.
    clock.advance_ms(4_000);
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    let second = token_of(&body);
    assert_ne!(header_of(&second)["kid"], first_kid);
    assert_eq!(s.get("/auth/user/me", Some(&first)).await.0, StatusCode::OK);
    assert_eq!(
        s.get("/auth/user/me", Some(&second)).await.0,
        StatusCode::OK
    );
}

/// The stored `signing_key` meta value (the generated HMAC secret), read from the redb file.
async fn stored_hmac_secret(db: &Path) -> Vec<u8> {
    use authd_strategy_api::MetaStore;
    let (store, _) = authd_store_redb::open(db).unwrap();
    store.meta_get("signing_key").await.unwrap().unwrap()
}

#[tokio::test]
async fn a_generated_hmac_secret_is_sealed_under_the_kek_and_tokens_verify_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("authd.redb");
    let resource = util::user_resource(ARGON2, "");
    let hs = "[tokens]\nsigning_algorithm = \"HS256\"\n";
    let with_kek = format!("{hs}key_encryption_key_env = \"AUTHD_TEST_KEK\"\n{resource}");
    let (a, b) = (
        STANDARD.encode(rand::random::<[u8; 32]>()),
        STANDARD.encode(rand::random::<[u8; 32]>()),
    );
    let id = |keys: &str| authd::tokens::kek::Kek::parse(keys, "K").unwrap().ids()[0].to_string();
    let stop = |mut child: std::process::Child| {
        child.kill().unwrap();
        child.wait().unwrap();
    };
    let me = |p: util::Probe, token: String| async move {
        p.call(Method::GET, "/auth/user/me", Some(&token), &Value::Null)
            .await
    };

    // No KEK: the secret is kept in clear, as before.
    let bin = util::Binary::new(dir.path(), &format!("{hs}{resource}"));
    let (child, p) = bin.start_with_env(&[]).await;
    let (status, body) = p
        .call(
            Method::POST,
            "/auth/user/password/register",
            None,
            &json!({"user": {"email": "ada@example.com", "password": "correct horse",
                             "password_confirmation": "correct horse"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = token_of(&body);
    assert_eq!(util::claims_of(&token)["purpose"], "user");
    stop(child);
    let clear = stored_hmac_secret(&db).await;
    assert_eq!(clear.len(), 32);

    // A KEK set: sealed at start; the stored value no longer holds the secret.
    let bin = util::Binary::new(dir.path(), &with_kek);
    let (child, p) = bin.start_with_env(&[("AUTHD_TEST_KEK", &a)]).await;
    let (status, body) = me(p, token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    stop(child);
    let sealed = stored_hmac_secret(&db).await;
    assert!(sealed.starts_with(format!("v1:{}:", id(&a)).as_bytes()));
    assert!(!sealed.windows(clear.len()).any(|w| w == clear.as_slice()));

    // Rotated: sealed again under B at start.
    let (child, p) = bin
        .start_with_env(&[("AUTHD_TEST_KEK", &format!("{b},{a}"))])
        .await;
    let (status, body) = me(p, token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    stop(child);
    assert!(
        stored_hmac_secret(&db)
            .await
            .starts_with(format!("v1:{}:", id(&b)).as_bytes())
    );

    // A removed: the token of the first run still verifies, and new ones are issued.
    let (child, p) = bin.start_with_env(&[("AUTHD_TEST_KEK", &b)]).await;
    let (status, body) = me(p, token.clone()).await;
    let p = util::Probe::new(&bin.base);
    let (signed_in, fresh) = p
        .call(
            Method::POST,
            "/auth/user/password/sign_in",
            None,
            &json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    stop(child);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(signed_in, StatusCode::OK, "{fresh}");
}
