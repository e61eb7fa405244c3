//! The red-team findings of the second round, each as a test that failed before its fix:
//! private store files, what `/healthz` tells, concurrent guesses, registration floods, one
//! client holding connections, look-alike identities, weak secrets, proxies writing ports,
//! unbounded config reads, damaged stores, a reset lifting the lockout, and the small ones
//! (HEAD, long passwords at sign-in, unsupported transfer codings).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{self, ARGON2, TestServer, error_code, token_of};

async fn hashes_done(s: &TestServer) -> u64 {
    s.status().await["hash_pool"]["completed"].as_u64().unwrap()
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_file_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let mode = std::fs::metadata(&s.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store holds hashes and the signing key");
}

#[tokio::test]
async fn public_health_tells_nothing_about_accounts_or_settings() {
    let mut hook = util::receiver().await;
    let s = TestServer::start_watching(&util::user_resource(ARGON2, &hook.resettable())).await;
    s.register("ada@example.com", "correct horse").await;
    let before = s.health().await;
    let (status, _) = s
        .post(
            "/auth/user/password/reset_request",
            json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    hook.next().await;
    let after = s.health().await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&after),
        ["config", "last_reload_error", "status", "store"]
    );
    assert_eq!(
        before, after,
        "nothing in /healthz moves with account activity"
    );

    // A reload error shows as a count; its problems (never the values) are for operators.
    let pasted = "sk_live_0123456789abcdefghijklmnopqrstuv";
    let broken = util::user_resource(ARGON2, &hook.resettable())
        + &format!("[tokens]\nsigning_secret_env = \"{pasted}\"\nissuer = \"\"\n");
    s.save_by_rename(&s.text_for(&broken));
    let status = s
        .wait_health("the reload error", |h| !h["last_reload_error"].is_null())
        .await;
    let public = s.health().await;
    assert_eq!(public["last_reload_error"]["problems"], 1);
    assert!(public["last_reload_error"]["at"].is_u64());
    let text = status.to_string() + &public.to_string();
    assert!(!text.contains(pasted), "a config value was echoed: {text}");
    assert!(
        status["last_reload_error"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("tokens.issuer")
    );
}

#[tokio::test]
async fn a_second_factor_of_status_needs_the_admin_token() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    for auth in [None, Some("Bearer wrong"), Some("Basic x")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, _, body) = s
            .raw_at(&s.admin, Method::GET, "/admin/status", &headers, "")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    // The public listener has no admin routes.
    let (status, _) = s.get("/admin/status", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_never_run_more_verifications_than_the_limit() {
    let s = TestServer::start_with(
        &util::user_resource(
            ARGON2,
            r#"rate_limit = { identity_failures = 10, ip_failures = 100000, window = "1h" }"#,
        ),
        "hash_queue = 1000",
    )
    .await;
    s.register("ada@example.com", "correct horse").await;
    let before = hashes_done(&s).await;
    let mut tasks = Vec::new();
    let s = std::sync::Arc::new(s);
    // All wrong: a right password inside the burst may run first (tasks start in no set
    // order) and its success rightly clears the count. The right one is tried after.
    for _ in 0..60 {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.sign_in("ada@example.com", "wrong horse").await.0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let verified = hashes_done(&s).await - before;
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        verified <= 10,
        "{verified} verifications ran for a limit of 10: {statuses:?}"
    );
    assert!(limited >= 50, "{limited} answers were 429");
    // The burst locked the identity: the right password is refused too, without a hash.
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn re_registering_a_taken_identity_hashes_nothing_and_registration_is_limited() {
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        r#"request_limit = { per_address = 5, window = "1h" }"#,
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    let before = hashes_done(&s).await;
    let body = json!({"email": "ADA@example.com", "password": "another horse", "password_confirmation": "another horse"});
    for _ in 0..4 {
        let (status, body) = s.post("/auth/user/password/register", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body["error"]["fields"]["email"][0],
            "has already been taken"
        );
    }
    assert_eq!(
        hashes_done(&s).await,
        before,
        "a taken identity costs no hash"
    );
    // The address has used its 5 registrations of the window.
    let (status, headers, body) = s
        .raw(
            Method::POST,
            "/auth/user/password/register",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.get("retry-after").is_some());
}

#[tokio::test]
async fn reset_requests_are_limited_per_identity() {
    let hook = util::receiver().await;
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        &format!(
            "request_limit = {{ per_identity = 3, per_address = 1000, window = \"1h\" }}\n{}",
            hook.resettable()
        ),
    ))
    .await;
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let (status, _) = s
                .post("/auth/user/password/reset_request", json!({"email": email}))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let (status, _) = s
            .post("/auth/user/password/reset_request", json!({"email": email}))
            .await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "known or not, a flood of messages to one identity is refused"
        );
    }
}

/// Opens a connection from `local` (any 127.0.0.0/8 address is this host).
fn connect_from(local: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((local, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Whether the server closed `stream` within `wait` (a read ends instead of timing out).
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn get_healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection_and_idle_slots_are_freed() {
    let s = TestServer::start_with(
        &util::user_resource(ARGON2, ""),
        "max_connections_per_ip = 4\nidle_timeout = \"400ms\"",
    )
    .await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut idle: Vec<TcpStream> = (0..4).map(|_| connect_from([127, 0, 0, 1], addr)).collect();
        // Give the server time to accept them.
        std::thread::sleep(Duration::from_millis(100));
        let mut fifth = connect_from([127, 0, 0, 1], addr);
        let answer = get_healthz(&mut fifth);
        assert!(
            answer.is_empty(),
            "a fifth connection from one address was served"
        );
        // Another address is served at once.
        let started = std::time::Instant::now();
        let answer = get_healthz(&mut connect_from([127, 0, 0, 2], addr));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // Idle connections are closed after idle_timeout, and their slots freed.
        for stream in &mut idle {
            assert!(closed_within(stream, Duration::from_secs(3)));
        }
        let answer = get_healthz(&mut connect_from([127, 0, 0, 1], addr));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn identities_that_look_the_same_are_one_account() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let variants = [
        ("caf\u{e9}@example.com", "cafe\u{301}@example.com"),
        ("ada@example.com", "  ada@example.com "),
        ("strasse@example.com", "stra\u{df}e@example.com"),
        ("ada2@example.com", "\u{ff41}\u{ff44}\u{ff41}2@example.com"),
        (
            "\u{3c3}\u{3b1}\u{3c2}@example.com",
            "\u{3a3}\u{391}\u{3a3}@example.com",
        ),
    ];
    for (first, second) in variants {
        s.register(first, "correct horse").await;
        let (status, body) = s
            .post(
                "/auth/user/password/register",
                json!({"email": second, "password": "correct horse", "password_confirmation": "correct horse"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{first} / {second}: {body}"
        );
        assert_eq!(
            body["error"]["fields"]["email"][0],
            "has already been taken"
        );
        assert_eq!(
            s.sign_in(second, "correct horse").await.0,
            StatusCode::OK,
            "{second}"
        );
    }
    for invisible in [
        "\u{200b}",
        "a\u{200b}da@example.com",
        "a\u{ad}da@example.com",
    ] {
        let (status, body) = s
            .post(
                "/auth/user/password/register",
                json!({"email": invisible, "password": "correct horse", "password_confirmation": "correct horse"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["fields"]["email"].is_array(), "{body}");
        assert!(
            !body.to_string().contains(invisible),
            "the value is not echoed"
        );
    }
}

#[tokio::test]
async fn the_unique_index_is_migrated_and_collisions_reported_not_merged() {
    use authd_strategy_api::{NewUser, UniqueKey, UserStore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("authd.redb");
    // Two users stored under the old rule (lower-cased only), whose emails prepare alike now.
    {
        let (store, _) = authd_store_redb::open(&db).unwrap();
        for (email, created_at) in [("Strasse@example.com", 1), ("stra\u{df}e@example.com", 2)] {
            let user = NewUser {
                attributes: [("email".to_string(), json!(email))].into_iter().collect(),
                secrets: [(
                    "hashed_password".to_string(),
                    "$2b$04$abcdefghijklmnopqrstuu5Bd1rTEEGcgq3h4WcRvTUBC4uUiYH4e".to_string(),
                )]
                .into(),
                unique: vec![UniqueKey::new("email", email.to_lowercase())],
                created_at,
                ..NewUser::default()
            };
            store.insert("user", user).await.unwrap().unwrap();
        }
    }
    let mut s = TestServer::unstarted_at(dir);
    s.boot(&util::user_resource(ARGON2, ""), "").await;
    let status = s.status().await;
    let collisions = status["unique_collisions"].as_array().unwrap();
    assert_eq!(collisions.len(), 1, "{status}");
    assert_eq!(collisions[0]["key"]["value"], "strasse@example.com");
    // The older keeps the value; nobody was merged or deleted.
    let (store, _) = {
        s.stop().await;
        authd_store_redb::open(&db).unwrap()
    };
    let page = store.users_page("user", None, 10).await.unwrap();
    assert_eq!(page.len(), 2);
    let kept = store
        .find_by_unique("user", &UniqueKey::new("email", "strasse@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.attributes["email"], "Strasse@example.com");
}

#[tokio::test]
async fn weak_signing_secrets_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for weak in [" ".repeat(32), "\0".repeat(32), "password".repeat(4)] {
        let file = dir.path().join("secret");
        std::fs::write(&file, &weak).unwrap();
        let text = util::config_text(
            &dir.path().join("authd.redb"),
            "",
            &(util::user_resource(ARGON2, "")
                + &format!(
                    "[tokens]\nsigning_secret_file = {:?}\n",
                    file.display().to_string()
                )),
        );
        util::write_admin_token(&dir.path().join("authd.redb"));
        let config = authd::parse_config(&text).unwrap();
        let err = authd::Daemon::start(config, &text)
            .await
            .err()
            .map(|e| e.to_string());
        let err = err.expect("a weak secret was accepted");
        assert!(err.contains("tokens.signing_secret_file"), "{err}");
        assert!(err.contains("openssl rand"), "{err}");
    }
}

#[tokio::test]
async fn clients_behind_a_proxy_that_writes_ports_are_told_apart() {
    let s = TestServer::start_with(
        &util::user_resource(
            ARGON2,
            r#"rate_limit = { identity_failures = 1000, ip_failures = 2, window = "1h" }"#,
        ),
        "trusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    s.register("ada@example.com", "correct horse").await;
    let sign_in = |xff: &'static str, password: &'static str| {
        let s = &s;
        async move {
            s.raw(
                Method::POST,
                "/auth/user/password/sign_in",
                &[
                    ("content-type", "application/json"),
                    ("x-forwarded-for", xff),
                ],
                json!({"email": "ada@example.com", "password": password}).to_string(),
            )
            .await
            .0
        }
    };
    // The attacker locks their own address out...
    for _ in 0..2 {
        assert_eq!(
            sign_in("198.51.100.7:50001", "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        sign_in("198.51.100.7:50002", "wrong").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... and nobody else's, whatever port the proxy wrote.
    assert_eq!(
        sign_in("203.0.113.9:40000", "correct horse").await,
        StatusCode::OK
    );
    assert_eq!(
        sign_in("[2001:db8::1]:443", "correct horse").await,
        StatusCode::OK
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_fifo_or_a_huge_file_at_the_config_path_never_blocks_reloads() {
    let s = TestServer::start_watching(&util::user_resource(ARGON2, "")).await;
    // A FIFO in place of the file: the read is refused at once, the loop goes on.
    std::fs::remove_file(s.config_path()).unwrap();
    let path = std::ffi::CString::new(s.config_path().to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let h = s
        .wait_health("the FIFO refused", |h| {
            h["last_reload_error"]["problems"]
                .to_string()
                .contains("FIFO")
        })
        .await;
    assert_eq!(h["config"]["generation"], 1);
    std::fs::remove_file(s.config_path()).unwrap();
    // Over the size limit.
    let huge = s.text_for(&util::user_resource(ARGON2, "")) + &"# padding\n".repeat(120_000);
    s.save_by_rename(&huge);
    s.wait_health("the size refusal", |h| {
        h["last_reload_error"]["problems"]
            .to_string()
            .contains("limit")
    })
    .await;
    // A good file applies: the loop was never stuck.
    s.save_by_rename(&s.text_for(&util::user_resource(ARGON2, "")));
    s.wait_health("the good file", |h| {
        h["config"]["generation"] == 2 && h["last_reload_error"].is_null()
    })
    .await;
}

#[test]
fn a_damaged_store_is_a_clear_start_error_and_store_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let binary = util::Binary::new(dir.path(), &util::user_resource(ARGON2, ""));
    // A store with some users, then damaged.
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (store, _) = authd_store_redb::open(&dir.path().join("authd.redb")).unwrap();
            use authd_strategy_api::UserStore;
            for i in 0..300 {
                let user = authd_strategy_api::NewUser {
                    attributes: [("email".to_string(), json!(format!("u{i}@example.com")))]
                        .into_iter()
                        .collect(),
                    unique: vec![authd_strategy_api::UniqueKey::new(
                        "email",
                        format!("u{i}@example.com"),
                    )],
                    ..Default::default()
                };
                store.insert("user", user).await.unwrap().unwrap();
            }
        });
    }
    let path = dir.path().join("authd.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i as u8).wrapping_mul(97).wrapping_add(13);
    }
    std::fs::write(&path, &bytes).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["serve", "--config"])
        .arg(&binary.config)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(101), "a panic reached the user");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authd.redb"), "{stderr}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["store", "check", "--config"])
        .arg(&binary.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() || said.contains("repaired"),
        "{said}"
    );
    assert_ne!(check.status.code(), Some(101), "{said}");
}

#[tokio::test]
async fn a_successful_reset_lifts_the_identity_lockout() {
    let mut hook = util::receiver().await;
    let s = TestServer::start(&util::user_resource(
        ARGON2,
        &format!(
            "rate_limit = {{ identity_failures = 2, window = \"1h\" }}\n{}",
            hook.resettable()
        ),
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    for _ in 0..2 {
        s.sign_in("ada@example.com", "wrong horse").await;
    }
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    s.post(
        "/auth/user/password/reset_request",
        json!({"email": "ada@example.com"}),
    )
    .await;
    let token = hook.next().await["token"].as_str().unwrap().to_string();
    let (status, _) = s
        .post(
            "/auth/user/password/reset",
            json!({"reset_token": token, "password": "new horse!", "password_confirmation": "new horse!"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.sign_in("ada@example.com", "new horse!").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn head_is_answered_as_get_without_a_body() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "HEAD /auth/user/me HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.to_lowercase().contains("content-length"), "{head}");
    assert_eq!(body, "", "HEAD carries no body");
}

#[tokio::test]
async fn sign_in_refuses_an_overlong_password_without_hashing() {
    let s = TestServer::start(&util::user_resource(ARGON2, "password_max_length = 64")).await;
    s.register("ada@example.com", "correct horse").await;
    let before = hashes_done(&s).await;
    let (status, body) = s.sign_in("ada@example.com", &"x".repeat(10_000)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "authentication_failed");
    assert_eq!(hashes_done(&s).await, before);
}

#[tokio::test]
async fn transfer_and_content_codings_authd_does_not_decode_are_refused() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let body = r#"{"email":"a@b.c","password":"x"}"#;
        write!(
            stream,
            "POST /auth/user/password/sign_in HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             transfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    let (status, _, body) = s
        .raw(
            Method::POST,
            "/auth/user/password/sign_in",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            "\u{1f}\u{8b}",
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
}

#[tokio::test]
async fn a_session_token_survives_nothing_it_should_not() {
    // The session epoch now covers every token: sign out everywhere kills sessions.
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let token = s.register("ada@example.com", "correct horse").await;
    let (_, body) = s.sign_in("ada@example.com", "correct horse").await;
    let other = token_of(&body);
    let (status, _, _) = s
        .raw(
            Method::POST,
            "/auth/user/sign_out_all",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for t in [&token, &other] {
        assert_eq!(
            s.get("/auth/user/me", Some(t)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}
