//! The admin API over real HTTP on its own listener, and `authd users ...` against a running
//! daemon and a stopped one: every route, the token, imports of the hashes other systems
//! store (made by those systems' own libraries), bounds, and export -> import round trips.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{self, ARGON2, TestServer, error_code};

async fn admin(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let auth = format!("Bearer {}", s.admin_token);
    let (status, _, body) = s
        .raw_at(
            &s.admin,
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .await;
    (status, body)
}

/// Posts NDJSON to the import route; returns the answer lines.
async fn import(s: &TestServer, lines: &str, dry_run: bool) -> Vec<Value> {
    let auth = format!("Bearer {}", s.admin_token);
    let path = format!(
        "/admin/user/users/import{}",
        if dry_run { "?dry_run=true" } else { "" }
    );
    let (status, headers, body) = raw_text(s, Method::POST, &path, &auth, lines.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers.get("content-type").unwrap(), "application/x-ndjson");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn raw_text(
    s: &TestServer,
    method: Method,
    path: &str,
    auth: &str,
    body: String,
) -> (StatusCode, hyper::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.admin))
        .header("authorization", auth)
        .header("content-type", "application/x-ndjson")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn every_route_needs_the_admin_token_and_the_api_is_absent_without_admin() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    for (method, path) in [
        (Method::GET, "/admin/user/users"),
        (Method::POST, "/admin/user/users"),
        (Method::GET, "/admin/user/users/export"),
        (Method::POST, "/admin/user/users/import"),
        (Method::GET, "/admin/status"),
    ] {
        for auth in ["", "Bearer not-the-token"] {
            let headers: Vec<(&str, &str)> = if auth.is_empty() {
                vec![]
            } else {
                vec![("authorization", auth)]
            };
            let (status, _, body) = s.raw_at(&s.admin, method.clone(), path, &headers, "").await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{method} {path}"
            );
        }
    }
    // Without [admin], no listener is bound.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = {:?}\n{}",
        dir.path().join("a.redb").display().to_string(),
        util::user_resource(ARGON2, "")
    );
    let daemon = authd::Daemon::start(authd::parse_config(&text).unwrap(), &text)
        .await
        .unwrap();
    assert!(daemon.admin_addr().is_none());
    daemon.shutdown().await;
}

#[tokio::test]
async fn operators_list_find_show_edit_and_delete_users() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(
            s.register(&format!("u{i}@example.com"), "correct horse")
                .await,
        );
    }
    // Pages of 2 with a cursor visit everyone once.
    let mut seen = Vec::new();
    let mut path = "/admin/user/users?limit=2".to_string();
    loop {
        let (status, body) = admin(&s, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for u in body["users"].as_array().unwrap() {
            assert!(u.get("hashed_password").is_none());
            seen.push(u["email"].as_str().unwrap().to_string());
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/admin/user/users?limit=2&after={next}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let (status, body) = admin(&s, Method::GET, "/admin/user/users?limit=0", None).await;
    assert_eq!(
        (status, body["error"]["fields"]["limit"].is_array()),
        (StatusCode::UNPROCESSABLE_ENTITY, true)
    );

    let (_, found) = admin(
        &s,
        Method::GET,
        "/admin/user/users?identity=U3%40EXAMPLE.COM",
        None,
    )
    .await;
    let user = found["users"][0].clone();
    assert_eq!(user["email"], "u3@example.com");
    let id = user["id"].as_str().unwrap().to_string();
    let (status, shown) = admin(&s, Method::GET, &format!("/admin/user/users/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let password = &shown["user"]["strategies"]["password"];
    assert_eq!(password["algorithm"], "argon2id");
    assert_eq!(password["stale"], false);
    assert_eq!(password["locked_for"], Value::Null);
    assert!(shown["user"]["created_at"].is_string());
    assert!(!shown.to_string().contains("$argon2id$"), "never a hash");

    let (status, body) = admin(
        &s,
        Method::PATCH,
        &format!("/admin/user/users/{id}"),
        Some(json!({"name": "Three"})),
    )
    .await;
    assert_eq!(
        (status, body["user"]["name"].clone()),
        (StatusCode::OK, json!("Three"))
    );
    let (status, _) = admin(
        &s,
        Method::PATCH,
        &format!("/admin/user/users/{id}"),
        Some(json!({"email": "u1@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, _) = admin(&s, Method::DELETE, &format!("/admin/user/users/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/auth/user/me", Some(&tokens[3])).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = admin(&s, Method::GET, &format!("/admin/user/users/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.register("u3@example.com", "another horse").await;
}

#[tokio::test]
async fn operators_revoke_sessions_unlock_and_send_resets() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        &format!(
            "rate_limit = {{ identity_failures = 2, window = \"1h\" }}\n{}",
            hook.resettable()
        ),
    ))
    .await;
    let token = s.register("ada@example.com", "correct horse").await;
    let id = util::claims_of(&token)["sub"]
        .as_str()
        .unwrap()
        .trim_start_matches("user?id=")
        .to_string();

    let (status, _) = admin(
        &s,
        Method::POST,
        &format!("/admin/user/users/{id}/revoke_sessions"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/auth/user/me", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );

    for _ in 0..2 {
        s.sign_in("ada@example.com", "wrong horse").await;
    }
    let (_, shown) = admin(&s, Method::GET, &format!("/admin/user/users/{id}"), None).await;
    assert!(
        shown["user"]["strategies"]["password"]["locked_for"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (status, _) = admin(
        &s,
        Method::POST,
        &format!("/admin/user/users/{id}/unlock"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );

    let (status, body) = admin(
        &s,
        Method::POST,
        &format!("/admin/user/users/{id}/send_reset"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::ACCEPTED, json!("accepted"))
    );
    assert_eq!(hook.next().await["user"]["email"], "ada@example.com");
}

#[tokio::test]
async fn operators_create_users_with_a_password_or_a_hash() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let (status, body) = admin(
        &s,
        Method::POST,
        "/admin/user/users",
        Some(json!({"attributes": {"email": "ada@example.com"}, "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    let bcrypt = "$2b$04$4gVrd.7nBlyYwj0ofWMHWeXr/GkqcyR5/jBc0qxmEr4EsclTFunOW";
    let (status, body) = admin(&s, Method::POST, "/admin/user/users", Some(json!({"attributes": {"email": "bob@example.com"}, "hashed_password": bcrypt, "strategy": "password"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["user"]["strategies"]["password"]["algorithm"],
        "bcrypt"
    );
    assert_eq!(body["user"]["strategies"]["password"]["stale"], true);
    for (input, field) in [
        (
            json!({"attributes": {"email": "c@example.com"}, "hashed_password": "md5:abc"}),
            "hashed_password",
        ),
        (
            json!({"attributes": {"email": "c@example.com"}, "hashed_password": "$2b$17$4gVrd.7nBlyYwj0ofWMHWeXr/GkqcyR5/jBc0qxmEr4EsclTFunOW"}),
            "hashed_password",
        ),
        (
            json!({"attributes": {"email": "c@example.com"}, "password": "short"}),
            "password",
        ),
        (
            json!({"attributes": {"email": "ada@example.com"}, "password": "correct horse"}),
            "email",
        ),
        (
            json!({"attributes": {"email": "c@example.com", "nickname": "c"}}),
            "nickname",
        ),
        (
            json!({"attributes": {"email": "c@example.com"}, "strategy": "nope", "password": "correct horse"}),
            "strategy",
        ),
    ] {
        let (status, body) =
            admin(&s, Method::POST, "/admin/user/users", Some(input.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{input}: {body}");
        assert!(body["error"]["fields"][field].is_array(), "{input}: {body}");
    }
    let (_, body) = admin(&s, Method::POST, "/admin/user/users", Some(json!({"attributes": {"email": "c@example.com"}, "hashed_password": "$2b$17$4gVrd.7nBlyYwj0ofWMHWeXr/GkqcyR5/jBc0qxmEr4EsclTFunOW"}))).await;
    assert!(
        body.to_string().contains("above the import limit of 16"),
        "{body}"
    );
}

/// The vectors made by each ecosystem's own library (argon2-cffi, bcrypt, passlib, Django,
/// hashlib, better-auth's scrypt through Node): see strategies/password/testdata.
fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/strategies/password/testdata/vectors.json"
    ))
    .unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    file["vectors"].as_array().unwrap().clone()
}

#[tokio::test]
async fn imported_hashes_of_every_ecosystem_sign_in_and_are_upgraded() {
    let s = TestServer::start(&util::user_resource(ARGON2, "rate_limit = false")).await;
    let vectors = vectors();
    let mut lines = String::new();
    for (i, v) in vectors.iter().enumerate() {
        let line = json!({"attributes": {"email": format!("v{i}@example.com")}, "hashed_password": v["hash"], "strategy": "password"});
        lines.push_str(&format!("{line}\n"));
    }
    // A bad line in the middle stops nothing.
    lines.push_str("{not json\n");
    lines.push_str(&format!("{}\n", json!({"attributes": {"email": "bound@example.com"}, "hashed_password": "$2b$20$4gVrd.7nBlyYwj0ofWMHWeXr/GkqcyR5/jBc0qxmEr4EsclTFunOW"})));
    let answers = import(&s, &lines, false).await;
    let summary = answers.last().unwrap();
    assert_eq!(summary["summary"]["imported"], vectors.len(), "{summary}");
    assert_eq!(summary["summary"]["failed"], 2);
    let errors: Vec<&Value> = answers
        .iter()
        .filter(|a| a.get("error").is_some())
        .collect();
    assert_eq!(errors[0]["line"], vectors.len() + 1);
    assert!(
        errors[1]["error"]["message"].as_str().is_some()
            || errors[1]["error"]["fields"].is_object()
    );
    assert!(
        errors[1].to_string().contains("limit"),
        "the bound is named: {}",
        errors[1]
    );

    for (i, v) in vectors.iter().enumerate() {
        let email = format!("v{i}@example.com");
        let password = v["password"].as_str().unwrap();
        let (status, body) = s.sign_in(&email, password).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{} ({}): {body}",
            v["format"],
            v["generator"]
        );
        let id = body["user"]["id"].as_str().unwrap();
        let (_, shown) = admin(&s, Method::GET, &format!("/admin/user/users/{id}"), None).await;
        assert_eq!(
            shown["user"]["strategies"]["password"]["algorithm"], "argon2id",
            "rehashed: {}",
            v["format"]
        );
        assert_eq!(shown["user"]["strategies"]["password"]["stale"], false);
        assert_eq!(
            s.sign_in(&email, &format!("{password}x")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_finds_duplicates_within_the_file() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    s.register("taken@example.com", "correct horse").await;
    let bcrypt = "$2b$04$4gVrd.7nBlyYwj0ofWMHWeXr/GkqcyR5/jBc0qxmEr4EsclTFunOW";
    let lines: String = [
        "a@example.com",
        "A@example.com",
        "taken@example.com",
        "b@example.com",
    ]
    .iter()
    .map(|e| {
        format!(
            "{}\n",
            json!({"attributes": {"email": e}, "hashed_password": bcrypt})
        )
    })
    .collect();
    let answers = import(&s, &lines, true).await;
    assert_eq!(answers[0]["valid"], true);
    assert!(
        answers[1]["error"]["fields"]["email"].is_array(),
        "{:?}",
        answers
    );
    assert!(answers[2]["error"]["fields"]["email"].is_array());
    assert_eq!(answers[4]["summary"]["dry_run"], true);
    let (_, page) = admin(&s, Method::GET, "/admin/user/users", None).await;
    assert_eq!(
        page["users"].as_array().unwrap().len(),
        1,
        "nothing written"
    );
    // The real run gives the same refusals.
    let answers = import(&s, &lines, false).await;
    assert_eq!(answers.last().unwrap()["summary"]["imported"], 2);
    assert_eq!(answers.last().unwrap()["summary"]["failed"], 2);
}

#[tokio::test]
async fn export_then_import_into_an_empty_store_gives_the_same_users() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let mut before = Vec::new();
    for i in 0..20 {
        let t = s
            .register(&format!("u{i}@example.com"), &format!("password {i}"))
            .await;
        before.push(t);
    }
    let auth = format!("Bearer {}", s.admin_token);
    let (status, _, exported) = raw_text(
        &s,
        Method::GET,
        "/admin/user/users/export",
        &auth,
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exported.lines().count(), 20);
    assert!(exported.contains("$argon2id$"), "hashes are exported");

    let other = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let answers = import(&other, &exported, false).await;
    assert_eq!(
        answers.last().unwrap()["summary"]["imported"],
        20,
        "{:?}",
        answers.last()
    );
    for (i, token) in before.iter().enumerate() {
        let (status, body) = other
            .sign_in(&format!("u{i}@example.com"), &format!("password {i}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        // Same ids.
        let original: Value = util::claims_of(token);
        assert_eq!(
            format!("user?id={}", body["user"]["id"].as_str().unwrap()),
            original["sub"]
        );
    }
}

#[test]
fn the_command_line_works_against_a_running_daemon_and_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    util::write_admin_token(&dir.path().join("authd.redb"));
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = util::Binary::new(
        dir.path(),
        &(util::user_resource(ARGON2, "")
            + &format!(
                "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = {:?}\n",
                token_file.display().to_string()
            )),
    );
    let ndjson = dir.path().join("users.ndjson");
    let bcrypt = "$2b$04$4gVrd.7nBlyYwj0ofWMHWeXr/GkqcyR5/jBc0qxmEr4EsclTFunOW";
    std::fs::write(
        &ndjson,
        format!(
            "{}\n{}\n",
            json!({"attributes": {"email": "a@example.com"}, "hashed_password": bcrypt}),
            json!({"attributes": {"email": "b@example.com"}, "hashed_password": "garbage"})
        ),
    )
    .unwrap();
    let users = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
            .arg("users")
            .args(args)
            .arg("--config")
            .arg(&binary.config)
            .output()
            .unwrap()
    };
    // Stopped: directly on the store.
    let out = users(&["import", ndjson.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed line makes the exit status 1"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"line\":1") && stdout.contains("\"line\":2"),
        "{stdout}"
    );
    let out = users(&["export"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);

    // Running: through the admin listener (the store is held by the daemon).
    let mut child = binary.spawn();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        rt.block_on(util::Probe::new(&binary.base).wait_health(|_| true))
            .is_some()
    );
    let out = users(&["list", "--identity", "A@example.com"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        listed["users"][0]["email"],
        "a@example.com",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = listed["users"][0]["id"].as_str().unwrap().to_string();
    let out = users(&["show", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bcrypt"));
    std::fs::write(
        &ndjson,
        format!(
            "{}\n",
            json!({"attributes": {"email": "c@example.com"}, "hashed_password": bcrypt})
        ),
    )
    .unwrap();
    let out = users(&["import", ndjson.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = users(&["delete", &id]);
    assert!(out.status.success());
    let out = users(&["export"]);
    let exported = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        exported.contains("c@example.com") && !exported.contains("a@example.com"),
        "{exported}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
