//! The slow group: timing equality and crash safety. Ignored by a plain `cargo test`; `.ci/run`
//! runs them with `cargo test --test it -- --ignored`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use crate::util::{self, Probe, TestServer};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn assert_within(label: &str, medians: &[(&str, Duration)], tolerance: f64) {
    let max = medians.iter().map(|m| m.1).max().unwrap_or_default();
    let min = medians.iter().map(|m| m.1).min().unwrap_or_default();
    let spread = max.as_secs_f64() / min.as_secs_f64().max(1e-9) - 1.0;
    assert!(
        spread <= tolerance,
        "{label}: medians differ by {:.1}% (> {:.0}%): {medians:?}",
        spread * 100.0,
        tolerance * 100.0
    );
    eprintln!(
        "{label}: medians within {:.1}%: {medians:?}",
        spread * 100.0
    );
}

/// sign_in with an unknown identity, a wrong password and the right one each cost one hash of
/// the current parameters: their medians are within 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: timing; run by .ci/run"]
async fn sign_in_costs_the_same_whether_the_identity_exists_or_not() {
    // OWASP's parameters, as in production.
    let hash = r#"{ algorithm = "argon2id", memory_kib = 19456, iterations = 2, parallelism = 1 }"#;
    let s = TestServer::start(&util::user_resource(
        hash,
        "rate_limit = { identity_failures = 100000, ip_failures = 100000 }",
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    let cases = [
        (
            "unknown identity",
            "nobody@example.com",
            "correct horse",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong password",
            "ada@example.com",
            "wrong horse!!",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "right password",
            "ada@example.com",
            "correct horse",
            StatusCode::OK,
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..65 {
        for k in 0..cases.len() {
            // Rotate the order each round so that no case always follows another.
            let i = (round + k) % cases.len();
            let (_, email, password, expected) = cases[i];
            let start = Instant::now();
            let (status, body) = s.sign_in(email, password).await;
            let took = start.elapsed();
            assert_eq!(status, expected, "{body}");
            if round >= 5 {
                samples[i].push(took);
            }
        }
    }
    let medians: Vec<(&str, Duration)> = cases
        .iter()
        .zip(samples)
        .map(|(c, s)| (c.0, median(s)))
        .collect();
    assert_within("sign_in", &medians, 0.10);
}

/// Times `path` for each of `identities` (interleaved), leaving 60 ms after each request for
/// the background work it starts 20 to 50 ms after answering; returns the medians.
async fn answer_medians(
    s: &TestServer,
    path: &str,
    field: &str,
    identities: &[(&'static str, &'static str)],
) -> Vec<(&'static str, Duration)> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); identities.len()];
    for round in 0..170 {
        for k in 0..identities.len() {
            let i = (round + k) % identities.len();
            let start = Instant::now();
            let (status, _) = s.post(path, json!({ field: identities[i].1 })).await;
            let took = start.elapsed();
            assert_eq!(status, StatusCode::ACCEPTED);
            if round >= 20 {
                samples[i].push(took);
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    identities
        .iter()
        .zip(samples)
        .map(|(c, s)| (c.0, median(s)))
        .collect()
}

const KNOWN_AND_UNKNOWN: &[(&str, &str)] = &[
    ("existing", "ada@example.com"),
    ("unknown", "nobody@example.com"),
];

/// reset_request answers before any look-up: the same whether or not the identity exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: timing; run by .ci/run"]
async fn reset_request_costs_the_same_whether_the_identity_exists_or_not() {
    let s = TestServer::start(&util::user_resource(
        util::ARGON2,
        "request_limit = false\n[resources.user.strategies.password.resettable]\nsender = { type = \"log\" }",
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    let medians = answer_medians(
        &s,
        "/auth/user/password/reset_request",
        "email",
        KNOWN_AND_UNKNOWN,
    )
    .await;
    assert_within("reset_request", &medians, 0.10);
}

/// confirm/resend answers before any look-up too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: timing; run by .ci/run"]
async fn confirm_resend_costs_the_same_whether_the_identity_exists_or_not() {
    let s = TestServer::start(
        &(util::user_resource(util::ARGON2, "")
            + "[resources.user.confirmation]\nmonitor_fields = [\"email\"]\nrequest_limit = false\n\
           sender = { type = \"log\" }\n"),
    )
    .await;
    s.register("ada@example.com", "correct horse").await;
    let medians = answer_medians(&s, "/auth/user/confirm/resend", "email", KNOWN_AND_UNKNOWN).await;
    assert_within("confirm/resend", &medians, 0.10);
}

/// SIGKILL in the middle of registrations and resets, a restart on the same file: every
/// request answered 2xx is there, and nothing is half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: crash safety; run by .ci/run"]
async fn a_sigkill_loses_no_acknowledged_write() {
    let mut hook = util::receiver().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let binary = util::Binary::new(
        dir.path(),
        &util::user_resource(
            util::ARGON2,
            &format!(
                "rate_limit = false\nrequest_limit = false\n{}",
                hook.resettable()
            ),
        ),
    );
    let spawn = || binary.spawn();
    let base = binary.base.clone();
    let mut child = spawn();
    assert!(
        Probe::new(&base).wait_health(|_| true).await.is_some(),
        "no daemon"
    );

    // Reset tokens, by email, as the webhook delivers them.
    let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let sink = Arc::clone(&tokens);
    let drain = tokio::spawn(async move {
        while let Some(m) = hook.rx.recv().await {
            let email = m["user"]["email"].as_str().unwrap_or_default().to_string();
            let token = m["token"].as_str().unwrap_or_default().to_string();
            if let Ok(mut t) = sink.lock() {
                t.insert(email, token);
            }
        }
    });

    // email -> passwords it may have (the first is the acknowledged one).
    type Ledger = Arc<Mutex<HashMap<String, (Vec<String>, bool)>>>;
    let ledger: Ledger = Arc::default();
    let client = Arc::new(Probe::new(&base));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (ledger, client) = (Arc::clone(&ledger), Arc::clone(&client));
        workers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let email = format!("w{w}-{i}@example.com");
                let password = format!("password-{w}-{i}");
                if let Ok(mut l) = ledger.lock() {
                    l.insert(email.clone(), (vec![password.clone()], false));
                }
                let body = json!({"email": email, "password": password, "password_confirmation": password});
                match client.post("/auth/user/password/register", &body).await {
                    Some((201, _)) => {
                        if let Ok(mut l) = ledger.lock()
                            && let Some(e) = l.get_mut(&email)
                        {
                            e.1 = true;
                        }
                    }
                    Some((status, body)) => panic!("register {status}: {body}"),
                    None => return, // the daemon is gone
                }
            }
        }));
    }
    {
        let (ledger, client, tokens) = (
            Arc::clone(&ledger),
            Arc::clone(&client),
            Arc::clone(&tokens),
        );
        workers.push(tokio::spawn(async move {
            for round in 0..10_000 {
                let email = format!("w0-{round}@example.com");
                let acknowledged = ledger
                    .lock()
                    .map(|l| l.get(&email).is_some_and(|e| e.1))
                    .unwrap_or(false);
                if !acknowledged {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                if client
                    .post(
                        "/auth/user/password/reset_request",
                        &json!({"email": email}),
                    )
                    .await
                    .is_none()
                {
                    return;
                }
                let mut token = None;
                for _ in 0..200 {
                    token = tokens.lock().ok().and_then(|t| t.get(&email).cloned());
                    if token.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let Some(token) = token else { return };
                let new = format!("reset-password-{round}");
                if let Ok(mut l) = ledger.lock()
                    && let Some(e) = l.get_mut(&email)
                {
                    e.0.push(new.clone());
                }
                let body =
                    json!({"reset_token": token, "password": new, "password_confirmation": new});
                match client.post("/auth/user/password/reset", &body).await {
                    Some((200, _)) => {
                        if let Ok(mut l) = ledger.lock()
                            && let Some(e) = l.get_mut(&email)
                        {
                            // Acknowledged: only the new password may work now.
                            e.0 = vec![new];
                        }
                    }
                    Some((status, body)) => panic!("reset {status}: {body}"),
                    None => return,
                }
            }
        }));
    }

    // At least 1.5 s of load, and until a reset has been answered (a loaded machine may need
    // longer for the first webhook to arrive), at most 15 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..135 {
        let reset_acked = ledger.lock().is_ok_and(|l| {
            l.values()
                .any(|e| e.1 && e.0.len() == 1 && e.0[0].starts_with("reset-password"))
        });
        if reset_acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    for w in workers {
        assert!(
            w.await.is_ok(),
            "a client task failed (see its panic above)"
        );
    }
    drain.abort();

    let mut child = spawn();
    assert!(
        Probe::new(&base).wait_health(|_| true).await.is_some(),
        "no daemon after the crash"
    );
    let ledger = ledger.lock().map(|l| l.clone()).unwrap_or_default();
    let acknowledged = ledger.values().filter(|e| e.1).count();
    assert!(
        acknowledged > 20,
        "too few writes before the kill: {acknowledged}"
    );
    let resets = ledger
        .values()
        .filter(|e| e.1 && e.0.len() == 1 && e.0[0].starts_with("reset-password"))
        .count();
    assert!(resets > 0, "no reset was acknowledged before the kill");
    let in_flight = ledger.values().filter(|e| !e.1 || e.0.len() > 1).count();
    eprintln!(
        "SIGKILL after {acknowledged} acknowledged registrations and {resets} acknowledged \
         resets; {in_flight} requests were unanswered at the kill"
    );
    for (email, (passwords, acked)) in &ledger {
        let mut signed_in = 0;
        for p in passwords {
            let (status, _) = client
                .post(
                    "/auth/user/password/sign_in",
                    &json!({"email": email, "password": p}),
                )
                .await
                .unwrap_or_else(|| panic!("daemon gone"));
            if status == 200 {
                signed_in += 1;
            }
        }
        // Whole or absent: the user exists exactly when its identity is taken.
        let again = json!({"email": email, "password": "another-one", "password_confirmation": "another-one"});
        let (status, _) = client
            .post("/auth/user/password/register", &again)
            .await
            .unwrap_or_else(|| panic!("daemon gone"));
        if *acked {
            assert_eq!(
                signed_in, 1,
                "{email}: acknowledged, must sign in with exactly one of {passwords:?}"
            );
            assert_eq!(
                status, 422,
                "{email}: acknowledged, its identity must be taken"
            );
        } else if signed_in == 0 {
            assert_eq!(
                status, 201,
                "{email}: absent, yet its identity is taken (half-written)"
            );
        } else {
            assert_eq!(
                status, 422,
                "{email}: present, yet its identity is free (half-written)"
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A full disk: every write fails while it lasts, with `503 unavailable` and `Retry-After`
/// (never a 500), health says so, and the store recovers by itself once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: mounts a small tmpfs (needs root); run by .ci/run"]
async fn a_full_disk_is_a_503_and_the_store_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // Lazy: a file still open (a panicking test leaves the daemon running) does not
            // keep the mount.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(dir.path().to_path_buf());
    let mut s = TestServer::unstarted_at(tempfile::TempDir::new_in(dir.path()).unwrap());
    util::write_admin_token(&s.db);
    s.boot(
        &util::user_resource(util::ARGON2, "request_limit = false"),
        "",
    )
    .await;
    s.register("ada@example.com", "correct horse").await;

    // Fill the disk.
    let filler = dir.path().join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (status, body) = s
            .post(
                "/auth/user/password/register",
                json!({"email": format!("u{i}@example.com"), "password": "correct horse", "password_confirmation": "correct horse"}),
            )
            .await;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        statuses.push(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
        }
    }
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "no write failed on a full disk: {statuses:?}"
    );
    let (status, _) = s.sign_in("ada@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (health, _) = s.get("/healthz", None).await;
    assert_eq!(health, StatusCode::SERVICE_UNAVAILABLE);

    // Space returns: the same daemon serves again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = s.sign_in("ada@example.com", "correct horse").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store did not recover: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.health().await["store"], "ok");
    s.register("after@example.com", "correct horse").await;
    s.stop().await;
}

/// The magic link `request` answers before any look-up: the same whether or not the identity
/// exists (the link is sent 20 to 50 ms later, in the background).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: timing; run by .ci/run"]
async fn magic_link_request_costs_the_same_whether_the_identity_exists_or_not() {
    let s = TestServer::start(&crate::magic_link::config(
        "{ type = \"log\" }",
        "request_limit = false",
    ))
    .await;
    s.register("ada@example.com", "correct horse").await;
    let medians = answer_medians(&s, "/auth/user/magic/request", "email", KNOWN_AND_UNKNOWN).await;
    assert_within("magic_link request", &medians, 0.10);
}
