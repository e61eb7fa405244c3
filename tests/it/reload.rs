//! Hot reload: real files, real `notify` events, a real signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use authd_strategy_api::UserStore;
use hyper::StatusCode;
use serde_json::json;

use crate::util::{self, ARGON2, BCRYPT, TestServer, token_of};

async fn stored_hash(db: &std::path::Path, email: &str) -> String {
    let (store, _) = authd_store_redb::open(db).unwrap();
    let key = authd_strategy_api::UniqueKey {
        field: "email".into(),
        value: email.into(),
    };
    let user = store.find_by_unique("user", &key).await.ok().flatten();
    user.and_then(|u| u.secrets.get("hashed_password").cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_hash_algorithm_change_applies_live_and_old_users_are_rehashed() {
    let mut s = TestServer::start_watching(&util::user_resource(BCRYPT, "")).await;
    s.register("old@example.com", "correct horse").await;

    s.save_by_rename(&s.text_for(&util::user_resource(ARGON2, "")));
    let health = s.wait_generation(2).await;
    assert!(health["last_reload_error"].is_null(), "{health}");
    // The census after the reload counts the bcrypt user as stale.
    s.wait_health("the census of generation 2", |h| {
        let census = &h["stale_hashes"]["strategies"]["user/password"];
        census["users"] == 1 && census["stale"] == 1
    })
    .await;

    s.register("new@example.com", "correct horse").await;
    assert_eq!(
        s.sign_in("old@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    s.stop().await;
    assert!(
        stored_hash(&s.db, "new@example.com")
            .await
            .starts_with("$argon2id$")
    );
    assert!(
        stored_hash(&s.db, "old@example.com")
            .await
            .starts_with("$argon2id$"),
        "old user not rehashed"
    );
}

#[tokio::test]
async fn resources_added_live_get_routes_and_removed_ones_404() {
    let s = TestServer::start_watching(&util::user_resource(ARGON2, "")).await;
    let admin = r#"
[resources.admin]
attributes.username = { type = "string", unique = true }
[resources.admin.strategies.password]
type = "password"
identity_field = "username"
confirmation_required = false
hash = { algorithm = "bcrypt", cost = 4 }
"#;
    let register_admin = || {
        s.post(
            "/auth/admin/password/register",
            json!({"username": "root", "password": "hunter2hunter2"}),
        )
    };
    assert_eq!(register_admin().await.0, StatusCode::NOT_FOUND);
    let both = format!("{}{admin}", util::user_resource(ARGON2, ""));
    s.save_in_place(&s.text_for(&both));
    s.wait_generation(2).await;
    let (status, body) = register_admin().await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let admin_token = token_of(&body);
    assert_eq!(
        s.get("/auth/admin/me", Some(&admin_token)).await.0,
        StatusCode::OK
    );

    s.save_in_place(&s.text_for(&util::user_resource(ARGON2, "")));
    s.wait_generation(3).await;
    assert_eq!(register_admin().await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/auth/admin/me", Some(&admin_token)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn broken_files_and_restart_only_changes_are_refused_and_the_old_config_serves() {
    let s = TestServer::start_watching(&util::user_resource(ARGON2, "")).await;
    s.register("ada@example.com", "correct horse").await;
    let good = s.text_for(&util::user_resource(ARGON2, ""));

    // A syntax error.
    s.save_by_rename("version = 1\n[server\n");
    let h = s
        .wait_health("a reload error", |h| !h["last_reload_error"].is_null())
        .await;
    assert_eq!(h["config"]["generation"], 1);
    assert!(
        h["last_reload_error"]["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains("line 2"),
        "{h}"
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );

    // A valid file again clears the error.
    s.save_by_rename(&good.replace("max_length = 20", "max_length = 30"));
    let h = s.wait_generation(2).await;
    assert!(h["last_reload_error"].is_null(), "{h}");

    // An unknown key and a bad value: every problem, with its path.
    let bad = good
        .replace(
            "identity_field = \"email\"",
            "identity_field = \"email\"\ncolour = \"blue\"",
        )
        .replace("version = 1", "version = 1\nflavour = 1");
    s.save_by_rename(&bad);
    let h = s
        .wait_health("a reload error", |h| !h["last_reload_error"].is_null())
        .await;
    let problems = h["last_reload_error"]["problems"].to_string();
    assert!(problems.contains("flavour"), "{problems}");
    assert!(
        problems.contains("resources.user.strategies.password"),
        "{problems}"
    );
    assert_eq!(h["config"]["generation"], 2);

    // A listen change needs a restart: refused, and the log/health say which key.
    s.save_by_rename(&good.replacen("127.0.0.1:0", "127.0.0.1:1", 1));
    let h = s
        .wait_health("the listen refusal", |h| {
            h["last_reload_error"]["problems"]
                .to_string()
                .contains("server.listen")
        })
        .await;
    assert!(
        h["last_reload_error"]["problems"]
            .to_string()
            .contains("needs a restart"),
        "{h}"
    );
    assert_eq!(h["config"]["generation"], 2);
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
}

/// Polls `/healthz` at `base` as fast as it can (a fresh connection each time, no pause) and
/// sends `signal` to `pid` the moment one answers 200: the earliest that a supervisor waiting
/// for readiness could. `false` when no 200 came within 10 s.
fn signal_at_first_healthz(base: &str, pid: u32, signal: libc::c_int) -> bool {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            std::thread::yield_now();
            continue;
        };
        let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut head = [0u8; 12];
        if stream.write_all(request.as_bytes()).is_ok()
            && stream.read_exact(&mut head).is_ok()
            && &head == b"HTTP/1.1 200"
        {
            let pid = libc::pid_t::try_from(pid).unwrap();
            assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
            return true;
        }
    }
    false
}

/// Waits up to 10 s for `child` to exit; kills it and fails if it does not.
fn exit_within_10s(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not stop within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A SIGHUP sent the moment `/healthz` first answers reloads the config: the handler is in
/// place before the listener accepts, so the signal is neither lost nor met with its default
/// action (which ends the process).
/// A SIGHUP sent the moment `/healthz` first answers reloads the config: the handler is in
/// place before the listener accepts, so the signal is neither lost nor met with its default
/// action (which ends the process). Three daemons, since the moment is a race.
#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let binary = util::Binary::new(dir.path(), &util::user_resource(ARGON2, ""));
        let mut child = binary.spawn();
        assert!(
            signal_at_first_healthz(&binary.base, child.id(), libc::SIGHUP),
            "the daemon did not come up"
        );
        let client = crate::util::Probe::new(&binary.base);
        let second = client.wait_health(|h| h["config"]["generation"] == 2).await;
        let alive = child.try_wait().unwrap().is_none();
        unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGTERM) };
        let exit = exit_within_10s(&mut child);
        assert!(alive, "SIGHUP ended the daemon: {exit}");
        assert!(second.is_some(), "SIGHUP did not reload");
        assert!(
            exit.success(),
            "SIGTERM should stop the daemon cleanly: {exit}"
        );
    }
}

/// SIGTERM and SIGINT sent the moment `/healthz` first answers stop the daemon cleanly (exit
/// status 0 after the shutdown), not by their default action.
#[tokio::test]
async fn sigterm_and_sigint_right_after_readiness_stop_the_daemon_cleanly() {
    for (name, signal) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let binary = util::Binary::new(dir.path(), &util::user_resource(ARGON2, ""));
        let mut child = binary.spawn();
        assert!(
            signal_at_first_healthz(&binary.base, child.id(), signal),
            "the daemon did not come up"
        );
        let exit = exit_within_10s(&mut child);
        assert!(
            exit.success(),
            "{name} should stop the daemon cleanly: {exit}"
        );
    }
}

/// Sign-ins and `/me` from concurrent clients while the file is rewritten many times,
/// alternating valid and invalid versions: no request may fail for any other reason than its
/// own credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_fail_because_of_a_reload() {
    // Wrong passwords are part of the stream: brute-force limits would (rightly) lock them out.
    let unlimited = "rate_limit = false";
    let s = Arc::new(TestServer::start_watching(&util::user_resource(ARGON2, unlimited)).await);
    let mut sessions = Vec::new();
    for i in 0..4 {
        sessions.push(
            s.register(&format!("u{i}@example.com"), "correct horse")
                .await,
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let (s, stop, done) = (Arc::clone(&s), Arc::clone(&stop), Arc::clone(&done));
        clients.push(tokio::spawn(async move {
            let email = format!("u{i}@example.com");
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = s.sign_in(&email, "correct horse").await;
                if status != StatusCode::OK {
                    failures.push(format!("sign_in {status}: {body}"));
                }
                let (status, body) = s.get("/auth/user/me", Some(&session)).await;
                if status != StatusCode::OK {
                    failures.push(format!("me {status}: {body}"));
                }
                let (status, _) = s.sign_in(&email, "wrong horse").await;
                if status != StatusCode::UNAUTHORIZED {
                    failures.push(format!("wrong password got {status}"));
                }
                done.fetch_add(3, Ordering::Relaxed);
            }
            failures
        }));
    }

    let valid = [
        util::user_resource(ARGON2, unlimited),
        util::user_resource(
            BCRYPT,
            "rate_limit = false\nsign_in_token_lifetime = \"2m\"",
        ),
        util::user_resource(util::SCRYPT, unlimited),
    ];
    let mut generation = 1;
    for round in 0..12 {
        if round % 2 == 0 {
            // Each valid version differs from the one in force (an identical file is skipped).
            s.save_by_rename(&s.text_for(&valid[(round / 2 + 1) % valid.len()]));
            generation += 1;
            s.wait_generation(generation).await;
        } else {
            let broken = if round % 4 == 1 {
                "version = 1\n[[["
            } else {
                "version = 2\n"
            };
            s.save_by_rename(broken);
            s.wait_health("a reload error", |h| !h["last_reload_error"].is_null())
                .await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(done.load(Ordering::Relaxed) > 50, "too few requests ran");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
}
