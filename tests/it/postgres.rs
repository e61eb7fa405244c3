//! Several daemons on one PostgreSQL database: what they share (users, sessions, sign-outs,
//! single-use tokens, lockout counts, the generated signing key, the outbox), what happens
//! when the database goes away and comes back, and the move of a redb store to PostgreSQL.
//!
//! Every test reads `AUTHD_TEST_DATABASE_URL` and skips (one line on stderr) without it; each
//! works in a schema of its own, so they run in parallel. The daemons are real: in-process
//! `authd::Daemon`s on real ports, each with its own config file, or the real binary where a
//! daemon must die by SIGKILL.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authd::Daemon;
use authd_store_postgres::testing::{self, Proxy, TestSchema};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::{self, ARGON2, Probe, error_code, token_of};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request; the JSON body (or null) of the answer.
async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(
            body.map(Value::to_string).unwrap_or_default(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

/// A daemon of a cluster: its own config file and ports.
struct Node {
    daemon: Option<Daemon>,
    base: String,
}

/// N daemons on one schema.
struct Cluster {
    nodes: Vec<Node>,
    schema: Option<TestSchema>,
    /// Holds the config files for the life of the cluster.
    _dir: tempfile::TempDir,
    client: HttpClient,
}

/// The config of a daemon on the PostgreSQL database at `url`.
fn pg_config(url: &str, dir: &std::path::Path, body: &str) -> String {
    let token = dir.join("admin.token");
    if !token.exists() {
        util::write_admin_token(&dir.join("authd.redb"));
    }
    format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n\
         [store]\ntype = \"postgres\"\nurl = {url:?}\npool_size = 4\nconnect_timeout = \"10s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n{body}",
        token.display().to_string()
    )
}

/// Starts a daemon from its own config file `dir/name.toml`.
async fn start_node(dir: &std::path::Path, name: &str, url: &str, body: &str) -> Node {
    let text = pg_config(url, dir, body);
    let path: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&path, &text).unwrap();
    let config = authd::parse_config(&text).unwrap_or_else(|p| panic!("config: {p}\n{text}"));
    let daemon = Daemon::start(config, &text)
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    Node {
        base: format!("http://{}", daemon.addr()),
        daemon: Some(daemon),
    }
}

impl Cluster {
    /// `n` daemons started at once on a new schema (or on `url` as given, e.g. through a
    /// proxy); `None` when PostgreSQL tests are skipped.
    async fn start(n: usize, body: &str) -> Option<Cluster> {
        let url = testing::database_url()?;
        let schema = TestSchema::create(&url).await.unwrap();
        let url = schema.url.clone();
        Some(Self::start_on(n, body, &url, Some(schema)).await)
    }

    async fn start_on(n: usize, body: &str, url: &str, schema: Option<TestSchema>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // Started together: on an empty database they race to migrate and to generate the
        // signing key.
        let mut starting = Vec::new();
        for i in 0..n {
            let (dir, url, body) = (dir.path().to_path_buf(), url.to_string(), body.to_string());
            let name = ["a", "b", "c", "d"][i % 4].to_string();
            starting.push(tokio::spawn(async move {
                start_node(&dir, &name, &url, &body).await
            }));
        }
        let mut nodes = Vec::new();
        for s in starting {
            nodes.push(s.await.unwrap());
        }
        Cluster {
            nodes,
            schema,
            _dir: dir,
            client: client(),
        }
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("{}{path}", self.nodes[node].base)
    }

    async fn post(&self, node: usize, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = call(
            &self.client,
            Method::POST,
            &self.url(node, path),
            None,
            Some(&body),
        )
        .await;
        (s, v)
    }

    async fn get(&self, node: usize, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let (s, _, v) = call(
            &self.client,
            Method::GET,
            &self.url(node, path),
            bearer,
            None,
        )
        .await;
        (s, v)
    }

    async fn register(&self, node: usize, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            node,
            "/auth/user/password/register",
            json!({"user": {"email": email, "password": password, "password_confirmation": password}}),
        )
        .await
    }

    async fn sign_in(&self, node: usize, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            node,
            "/auth/user/password/sign_in",
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn stop(mut self) {
        for node in &mut self.nodes {
            if let Some(d) = node.daemon.take() {
                d.shutdown().await;
            }
        }
        if let Some(schema) = self.schema.take() {
            schema.drop_schema().await.unwrap();
        }
    }
}

/// A webhook endpoint on `listener`: holds the first `hold` requests without answering
/// (a delivery in flight), answers 200 to the others. Reports each request as it arrives
/// (`arrived`) and each answered one with its `webhook-id` (`delivered`).
struct Hook {
    url: String,
    arrived: mpsc::UnboundedReceiver<String>,
    delivered: mpsc::UnboundedReceiver<(String, Value)>,
}

fn hook(listener: tokio::net::TcpListener, hold: usize) -> Hook {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let url = format!("http://{}/password-reset", listener.local_addr().unwrap());
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let (delivered_tx, delivered) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (arrived_tx, delivered_tx, seen) =
                (arrived_tx.clone(), delivered_tx.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (arrived_tx, delivered_tx, seen) =
                        (arrived_tx.clone(), delivered_tx.clone(), Arc::clone(&seen));
                    async move {
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body: Value = serde_json::from_slice(&body.unwrap_or_default())
                            .unwrap_or(Value::Null);
                        let _ = arrived_tx.send(id.clone());
                        if seen.fetch_add(1, Ordering::SeqCst) < hold {
                            // Held until the sender gives up or dies.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let _ = delivered_tx.send((id, body));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Hook {
        url,
        arrived,
        delivered,
    }
}

impl Hook {
    async fn start(hold: usize) -> Hook {
        hook(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            hold,
        )
    }

    async fn next_delivery(&mut self, within: Duration) -> (String, Value) {
        tokio::time::timeout(within, self.delivered.recv())
            .await
            .unwrap_or_else(|_| panic!("no delivery within {within:?}"))
            .unwrap()
    }

    async fn no_delivery_for(&mut self, wait: Duration) {
        let got = tokio::time::timeout(wait, self.delivered.recv()).await;
        assert!(got.is_err(), "an unexpected delivery: {got:?}");
    }

    /// The resettable table of the usual test strategy, sending here.
    fn resettable(&self, extra: &str) -> String {
        format!(
            "[resources.user.strategies.password.resettable]\n\
             sender = {{ type = \"webhook\", url = \"{}\", retry_base = \"100ms\"{extra} }}",
            self.url
        )
    }
}

fn users() -> String {
    util::user_resource(ARGON2, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_daemons_share_users_sessions_sign_outs_and_one_generated_key() {
    let Some(c) = Cluster::start(3, &users()).await else {
        return;
    };
    let (status, body) = c.register(0, "ada@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let signed_on_a = token_of(&body);
    // A token signed by A verifies on B and C: they started together on an empty database
    // and all read the one signing key that won.
    for node in [1, 2] {
        let (status, body) = c.get(node, "/auth/user/me", Some(&signed_on_a)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user"]["email"], "ada@example.com");
    }
    let (status, body) = c.sign_in(1, "ADA@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let on_b = token_of(&body);
    let (status, body) = c.get(2, "/auth/user/me", Some(&on_b)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Signed out on B: refused at A and C at once.
    let (status, _, _) = call(
        &c.client,
        Method::POST,
        &c.url(1, "/auth/user/sign_out"),
        Some(&on_b),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for node in [0, 2] {
        let (status, body) = c.get(node, "/auth/user/me", Some(&on_b)).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "node {node}"
        );
    }
    // The other session is untouched.
    assert_eq!(
        c.get(0, "/auth/user/me", Some(&signed_on_a)).await.0,
        StatusCode::OK
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_registrations_of_one_email_over_three_daemons_make_one_user() {
    let Some(c) = Cluster::start(3, &users()).await else {
        return;
    };
    let c = Arc::new(c);
    let mut racing = Vec::new();
    for i in 0..20 {
        let c = Arc::clone(&c);
        // Spelled differently: one identity once prepared.
        let email = if i % 2 == 0 {
            "Race@Example.com"
        } else {
            "race@example.com"
        };
        racing.push(tokio::spawn(async move {
            c.register(i % 3, email, "correct horse").await
        }));
    }
    let mut created = 0;
    for r in racing {
        let (status, body) = r.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(
                    body["error"]["fields"]["email"][0],
                    "has already been taken"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1, "exactly one registration wins");
    let Ok(c) = Arc::try_unwrap(c) else {
        panic!("cluster still shared")
    };
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_sign_in_token_presented_to_two_daemons_at_once_is_accepted_once() {
    let Some(c) = Cluster::start(3, &users()).await else {
        return;
    };
    c.register(0, "ada@example.com", "correct horse").await;
    for round in 0..5 {
        let (status, body) = c
            .post(
                round % 3,
                "/auth/user/password/sign_in",
                json!({"email": "ada@example.com", "password": "correct horse", "token_type": "sign_in"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = token_of(&body);
        let present = |node: usize| {
            c.post(
                node,
                "/auth/user/password/sign_in_with_token",
                json!({ "token": token }),
            )
        };
        let ((first, _), (second, _)) = tokio::join!(present(1), present(2));
        let mut statuses = [first, second];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::UNAUTHORIZED],
            "round {round}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_passwords_spread_over_three_daemons_lock_the_identity_after_the_total() {
    let body = util::user_resource(
        ARGON2,
        r#"rate_limit = { identity_failures = 4, window = "1h" }"#,
    );
    let Some(c) = Cluster::start(3, &body).await else {
        return;
    };
    c.register(0, "ada@example.com", "correct horse").await;
    // 4 failures in all; no daemon saw more than 2 of them.
    for node in [0, 1, 2, 0] {
        let (status, body) = c.sign_in(node, "ada@example.com", "wrong horse").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    for node in [1, 2] {
        let (status, body) = c.sign_in(node, "ada@example.com", "correct horse").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            "node {node}: {body}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_messages_are_delivered_once_while_three_daemons_run() {
    let mut hook = Hook::start(0).await;
    let body = util::user_resource(ARGON2, &hook.resettable(""));
    let Some(c) = Cluster::start(3, &body).await else {
        return;
    };
    let emails: Vec<String> = (0..6).map(|i| format!("u{i}@example.com")).collect();
    for (i, email) in emails.iter().enumerate() {
        assert_eq!(
            c.register(i % 3, email, "correct horse").await.0,
            StatusCode::CREATED
        );
    }
    for (i, email) in emails.iter().enumerate() {
        let (status, body) = c
            .post(
                i % 3,
                "/auth/user/password/reset_request",
                json!({ "email": email }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..emails.len() {
        let (id, body) = hook.next_delivery(Duration::from_secs(10)).await;
        assert!(body["token"].is_string(), "{body}");
        assert!(ids.insert(id), "a message was delivered twice");
    }
    // Longer than a worker's idle recheck: every daemon looked at the queue again.
    hook.no_delivery_for(Duration::from_secs(6)).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_held_by_a_daemon_killed_mid_delivery_is_delivered_by_another_after_its_lease() {
    let Some(url) = testing::database_url() else {
        return;
    };
    let schema = TestSchema::create(&url).await.unwrap();
    // Each attempt may take 1s: the lease is that plus 5s.
    let mut hook = Hook::start(1).await;
    let body = util::user_resource(ARGON2, &hook.resettable(", timeout = \"1s\""));

    // The real binary, with the URL in its environment.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [store]\ntype = \"postgres\"\nurl_env = \"AUTHD_DATABASE_URL\"\n{body}"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("AUTHD_DATABASE_URL", &schema.url)
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let a = Probe::new(&format!("http://127.0.0.1:{port}"));
    assert!(
        a.wait_health(|v| v["status"] == "ok").await.is_some(),
        "the binary did not start"
    );
    let register = json!({"user": {"email": "ada@example.com", "password": "correct horse", "password_confirmation": "correct horse"}});
    assert_eq!(
        a.post("/auth/user/password/register", &register)
            .await
            .map(|r| r.0),
        Some(201)
    );
    let accepted = a
        .post(
            "/auth/user/password/reset_request",
            &json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(accepted.map(|r| r.0), Some(202));

    // The binary's attempt reaches the receiver, which holds it: SIGKILL now.
    let held_id = tokio::time::timeout(Duration::from_secs(10), hook.arrived.recv())
        .await
        .expect("the binary never attempted the delivery")
        .unwrap();
    let killed_at = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();

    // Another daemon on the same database delivers it, once its lease has run out.
    let schema_url = schema.url.clone();
    let b = Cluster::start_on(1, &body, &schema_url, Some(schema)).await;
    let (id, message) = hook.next_delivery(Duration::from_secs(20)).await;
    let waited = killed_at.elapsed();
    assert_eq!(id, held_id, "the webhook-id stays the same across daemons");
    assert!(message["token"].is_string(), "{message}");
    assert!(
        waited >= Duration::from_secs(4),
        "delivered after {waited:?}: before the lease ran out"
    );
    hook.no_delivery_for(Duration::from_secs(2)).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_database_is_cut_off_only_503s_are_served_and_the_same_daemons_recover() {
    let Some(url) = testing::database_url() else {
        return;
    };
    let schema = TestSchema::create(&url).await.unwrap();
    let proxy = Proxy::start(testing::upstream_of(&url)).await.unwrap();
    let through = proxy.url_through(&schema.url);
    // Sign-ins cut off by the outage after their reservation are never given back (the store
    // is gone): with the default limits the load below would lock Ada out by itself.
    let body = util::user_resource(
        ARGON2,
        "rate_limit = { identity_failures = 100000, ip_failures = 100000 }",
    );
    let c = Arc::new(Cluster::start_on(3, &body, &through, Some(schema)).await);
    let (status, body) = c.register(0, "ada@example.com", "correct horse").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = token_of(&body);

    // Load: /me and sign-ins over the three daemons, until told to stop.
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut results) = mpsc::unbounded_channel();
    let mut load = Vec::new();
    for worker in 0..6usize {
        let (c, stop, tx, token) = (Arc::clone(&c), stop.clone(), tx.clone(), token.clone());
        load.push(tokio::spawn(async move {
            let mut n = worker;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.is_cancelled() && Instant::now() < deadline {
                let started = Instant::now();
                let node = n % 3;
                let (status, headers, body) = if n % 2 == 0 {
                    call(
                        &c.client,
                        Method::GET,
                        &c.url(node, "/auth/user/me"),
                        Some(&token),
                        None,
                    )
                    .await
                } else {
                    let body = json!({"email": "ada@example.com", "password": "correct horse"});
                    call(
                        &c.client,
                        Method::POST,
                        &c.url(node, "/auth/user/password/sign_in"),
                        None,
                        Some(&body),
                    )
                    .await
                };
                let retry_after = headers.contains_key("retry-after");
                let _ = tx.send((
                    started,
                    started.elapsed(),
                    status,
                    error_code(&body).to_string(),
                    retry_after,
                ));
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // While cut: /healthz says the store is down, on every daemon.
    for node in 0..3 {
        let (status, body) = c.get(node, "/healthz", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["store"], "unavailable", "{body}");
    }
    let restored_at = Instant::now();
    proxy.restore();
    // The same daemons serve again, without a restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    for node in 0..3 {
        loop {
            let (status, body) = c.get(node, "/auth/user/me", Some(&token)).await;
            if status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never recovered: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            c.sign_in(node, "ada@example.com", "correct horse").await.0,
            StatusCode::OK
        );
        assert_eq!(c.get(node, "/healthz", None).await.0, StatusCode::OK);
    }
    stop.cancel();
    for l in load {
        l.await.unwrap();
    }
    drop(tx);

    let (mut before, mut during, mut slowest) = (0, 0, Duration::ZERO);
    while let Some((started, took, status, code, retry_after)) = results.recv().await {
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "a 500 ({code})");
        slowest = slowest.max(took);
        if started < cut_at {
            before += usize::from(status == StatusCode::OK);
        } else if started > cut_at + Duration::from_millis(100) && started + took < restored_at {
            during += 1;
            assert_eq!(
                (status, code.as_str(), retry_after),
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", true),
                "while cut off"
            );
        }
    }
    assert!(before > 0, "no request succeeded before the cut");
    assert!(during > 10, "too few requests while cut off: {during}");
    assert!(
        slowest < Duration::from_secs(3),
        "a request took {slowest:?}"
    );
    let Ok(c) = Arc::try_unwrap(c) else {
        panic!("cluster still shared")
    };
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redb_store_copied_to_postgres_keeps_users_sessions_and_pending_messages() {
    let Some(url) = testing::database_url() else {
        return;
    };
    // The receiver is down while the redb daemon runs: the reset message waits in its outbox.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let hook_url = format!("http://127.0.0.1:{port}/password-reset");
    let body = util::user_resource(
        ARGON2,
        &format!(
            "[resources.user.strategies.password.resettable]\n\
             sender = {{ type = \"webhook\", url = \"{hook_url}\", retry_base = \"100ms\" }}"
        ),
    );
    let mut old = util::TestServer::start(&body).await;
    let mut sessions = Vec::new();
    for i in 0..3 {
        sessions.push(
            old.register(&format!("u{i}@example.com"), "correct horse")
                .await,
        );
    }
    // A second session of u1, signed out: it stays dead after the move.
    let (_, signed_in) = old.sign_in("u1@example.com", "correct horse").await;
    let signed_out = token_of(&signed_in);
    let (status, _, _) = old
        .raw(
            Method::POST,
            "/auth/user/sign_out",
            &[("authorization", &format!("Bearer {signed_out}"))],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = old
        .post(
            "/auth/user/password/reset_request",
            json!({"email": "u2@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    old.stop().await;

    // authd store copy, the real command.
    let schema = TestSchema::create(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("old.toml");
    std::fs::write(&from, util::config_text(&old.db, "", &body)).unwrap();
    let to = dir.path().join("new.toml");
    std::fs::write(&to, pg_config(&schema.url, dir.path(), &body)).unwrap();
    let copy = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
            .args(["store", "copy", "--from"])
            .arg(&from)
            .arg("--to")
            .arg(&to)
            .output()
            .unwrap()
    };
    // The stopped daemon's last tasks release the redb file a moment after `stop` returns.
    let mut out = copy();
    for _ in 0..50 {
        if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("in use") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        out = copy();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |what: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .and_then(|l| {
                l[l.find(what).unwrap_or(0) + what.len()..]
                    .split_whitespace()
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} in {stdout}"))
    };
    assert_eq!(count("users"), 3, "{stdout}");
    assert_eq!(count("dead tokens"), 1, "{stdout}");
    assert_eq!(count("outbox jobs"), 1, "{stdout}");
    assert!(count("meta entries") >= 1, "{stdout}");
    // Into a store that is no longer empty: refused.
    let again = copy();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The receiver comes up; a daemon starts on PostgreSQL.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut hook = hook(listener, 0);
    let schema_url = schema.url.clone();
    let c = Cluster::start_on(1, &body, &schema_url, Some(schema)).await;
    for (i, session) in sessions.iter().enumerate() {
        let (status, body) = c
            .sign_in(0, &format!("u{i}@example.com"), "correct horse")
            .await;
        assert_eq!(status, StatusCode::OK, "u{i}: {body}");
        // The session token issued by the redb daemon still verifies.
        let (status, body) = c.get(0, "/auth/user/me", Some(session)).await;
        assert_eq!(status, StatusCode::OK, "u{i}: {body}");
    }
    assert_eq!(
        c.get(0, "/auth/user/me", Some(&signed_out)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The pending reset message is delivered, and its token works here.
    let (_, message) = hook.next_delivery(Duration::from_secs(15)).await;
    let reset = message["token"].as_str().unwrap().to_string();
    let (status, body) = c
        .post(
            0,
            "/auth/user/password/reset",
            json!({"reset_token": reset, "password": "a new password", "password_confirmation": "a new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        c.sign_in(0, "u2@example.com", "a new password").await.0,
        StatusCode::OK
    );
    drop(dir);
    c.stop().await;
}

/// Round trips to PostgreSQL per request, counted through a proxy (one request at a time, a
/// pool of one connection whose statements are already prepared): what BENCHMARKS.md quotes,
/// and a guard against a change that adds a round trip to a hot route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_route_are_few_and_known() {
    let Some(url) = testing::database_url() else {
        return;
    };
    let schema = TestSchema::create(&url).await.unwrap();
    let proxy = Proxy::start(testing::upstream_of(&url)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = pg_config(&proxy.url_through(&schema.url), dir.path(), &users())
        .replace("pool_size = 4", "pool_size = 1");
    let config = authd::parse_config(&text).unwrap();
    let daemon = Daemon::start(config, &text).await.unwrap();
    let base = format!("http://{}", daemon.addr());
    let client = client();
    let register = |i: usize| json!({"user": {"email": format!("u{i}@example.com"), "password": "correct horse", "password_confirmation": "correct horse"}});
    let sign_in = |password: &str| json!({"email": "u0@example.com", "password": password});
    let post = |path: &'static str, body: Value| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move { call(&client, Method::POST, &url, None, Some(&body)).await }
    };
    // Warm-up: every statement of these routes prepared on the one connection.
    let (_, _, body) = post("/auth/user/password/register", register(0)).await;
    let token = token_of(&body);
    post("/auth/user/password/sign_in", sign_in("correct horse")).await;
    post("/auth/user/password/sign_in", sign_in("wrong horse")).await;
    post("/auth/user/password/sign_in", sign_in("correct horse")).await;
    let me = format!("{base}/auth/user/me");
    call(&client, Method::GET, &me, Some(&token), None).await;

    const N: u64 = 20;
    let mut measured: Vec<(&str, u64)> = Vec::new();
    // Per request, rounded: the outbox worker's idle check may fall into a run.
    let per_request =
        |sends_before: u64| (proxy.client_sends.load(Ordering::SeqCst) - sends_before + N / 2) / N;
    let before = proxy.client_sends.load(Ordering::SeqCst);
    for _ in 0..N {
        let (status, _, _) = call(&client, Method::GET, &me, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    measured.push(("GET /me", per_request(before)));
    let before = proxy.client_sends.load(Ordering::SeqCst);
    for _ in 0..N {
        let (status, _, _) = post("/auth/user/password/sign_in", sign_in("correct horse")).await;
        assert_eq!(status, StatusCode::OK);
    }
    measured.push(("sign_in", per_request(before)));
    let before = proxy.client_sends.load(Ordering::SeqCst);
    for _ in 0..N {
        let (status, _, _) = post("/auth/user/password/sign_in", sign_in("wrong horse")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Cleared again, so that the limit is never reached.
        post("/auth/user/password/sign_in", sign_in("correct horse")).await;
    }
    let wrong_and_right = proxy.client_sends.load(Ordering::SeqCst) - before;
    let right = measured[1].1;
    measured.push((
        "sign_in, wrong password",
        (wrong_and_right + N / 2) / N - right,
    ));
    let before = proxy.client_sends.load(Ordering::SeqCst);
    for i in 1..=N as usize {
        let (status, _, _) = post("/auth/user/password/register", register(i)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    measured.push(("register", per_request(before)));
    let before = proxy.client_sends.load(Ordering::SeqCst);
    for _ in 0..N {
        let (_, _, body) = post("/auth/user/password/sign_in", sign_in("correct horse")).await;
        let t = token_of(&body);
        let (status, _, _) = call(
            &client,
            Method::POST,
            &format!("{base}/auth/user/sign_out"),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let both = proxy.client_sends.load(Ordering::SeqCst) - before;
    measured.push(("sign_out", (both + N / 2) / N - right));

    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("PostgreSQL round trips per request: {measured:?}\n").as_bytes(),
    );
    let of = |label: &str| measured.iter().find(|(l, _)| *l == label).map(|(_, n)| *n);
    assert_eq!(of("GET /me"), Some(1), "{measured:?}");
    assert!(of("sign_in").unwrap() <= 5, "{measured:?}");
    assert!(of("sign_in, wrong password").unwrap() <= 5, "{measured:?}");
    assert!(of("register").unwrap() <= 6, "{measured:?}");
    assert!(of("sign_out").unwrap() <= 2, "{measured:?}");
    daemon.shutdown().await;
    drop(proxy);
    schema.drop_schema().await.unwrap();
}

/// `authd serve` on a database that does not answer waits `connect_timeout`, then exits
/// non-zero saying where it tried (never with the password). Needs no PostgreSQL.
#[test]
fn serve_gives_up_after_connect_timeout_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = dir.path().join("authd.toml");
    std::fs::write(
        &config,
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\ntype = \"postgres\"\n\
         url_env = \"AUTHD_DATABASE_URL\"\nconnect_timeout = \"1s\"\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "AUTHD_DATABASE_URL",
            format!("postgres://authd:hunter2-secret@127.0.0.1:{port}/authd"),
        )
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}/authd did not answer within 1s")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn migrate_brings_a_database_up_to_date_once() {
    let Some(url) = testing::database_url() else {
        return;
    };
    let schema = TestSchema::create(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authd.toml");
    std::fs::write(&config, pg_config(&schema.url, dir.path(), &users())).unwrap();
    let migrate = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
            .args(["migrate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = migrate();
    assert!(first.contains("applied migration 1"), "{first}");
    let second = migrate();
    assert!(second.contains("already at version 1"), "{second}");
    schema.drop_schema().await.unwrap();
}
