//! Test helpers: start the daemon from a config string, talk to it over HTTP.

use std::path::PathBuf;

use authd::Daemon;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Cheap hash parameters for tests, per algorithm.
pub const ARGON2: &str =
    r#"{ algorithm = "argon2id", memory_kib = 64, iterations = 1, parallelism = 1 }"#;
pub const SCRYPT: &str = r#"{ algorithm = "scrypt", log_n = 4, r = 8, p = 1 }"#;
pub const BCRYPT: &str = r#"{ algorithm = "bcrypt", cost = 4 }"#;

/// The usual test resource: `user` with email + name and a resettable password strategy.
pub fn user_resource(hash: &str, extra: &str) -> String {
    format!(
        r#"
[resources.user]
attributes.email = {{ type = "ci_string", unique = true }}
attributes.name = {{ type = "string", max_length = 20 }}
attributes.age = {{ type = "integer" }}
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = {hash}
{extra}
"#
    )
}

pub struct TestServer {
    pub daemon: Option<Daemon>,
    pub base: String,
    /// The admin listener's base URL.
    pub admin: String,
    pub admin_token: String,
    pub db: PathBuf,
    /// Holds the temporary folder (and the database in it) for the life of the server.
    _dir: tempfile::TempDir,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The admin token of every test server (random, written next to the database).
pub fn admin_token_path(db: &std::path::Path) -> PathBuf {
    db.with_file_name("admin.token")
}

/// Writes a fresh admin token next to `db`; returns it.
pub fn write_admin_token(db: &std::path::Path) -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::STANDARD.encode(bytes);
    std::fs::write(admin_token_path(db), &token).unwrap();
    token
}

/// The whole file for `body` (resources and anything else), with a port of 0 and `db`, and
/// an admin listener on port 0 whose token is in the file next to `db`.
pub fn config_text(db: &std::path::Path, server_extra: &str, body: &str) -> String {
    format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\
         [store]\npath = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n{body}",
        db.display().to_string(),
        admin_token_path(db).display().to_string(),
    )
}

impl TestServer {
    pub async fn start(body: &str) -> TestServer {
        Self::start_with(body, "").await
    }

    pub async fn start_with(body: &str, server_extra: &str) -> TestServer {
        let mut server = Self::unstarted();
        server.boot(body, server_extra).await;
        server
    }

    /// A temporary folder for the database (and config file), nothing running yet.
    fn unstarted() -> TestServer {
        Self::unstarted_at(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")))
    }

    /// Nothing running yet, over `dir` (which may hold a database already).
    pub fn unstarted_at(dir: tempfile::TempDir) -> TestServer {
        let db = dir.path().join("authd.redb");
        let admin_token = write_admin_token(&db);
        TestServer {
            daemon: None,
            base: String::new(),
            admin: String::new(),
            admin_token,
            db,
            _dir: dir,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Starts from a config file in the temporary folder, watched for changes like
    /// `authd serve` does.
    pub async fn start_watching(body: &str) -> TestServer {
        let mut server = Self::unstarted();
        let text = config_text(&server.db, "", body);
        std::fs::write(server.config_path(), &text).unwrap_or_else(|e| panic!("{e}"));
        let config = authd::parse_config(&text).unwrap_or_else(|p| panic!("config: {p}"));
        let mut daemon = Daemon::start(config, &text)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        daemon
            .watch(&server.config_path())
            .unwrap_or_else(|e| panic!("watch: {e}"));
        server.set_addresses(&daemon);
        server.daemon = Some(daemon);
        server
    }

    /// Starts on `clock` (the test moves it), with strategy tables validated by `validate`
    /// (the registry's, or one that adds a strategy type of the test's own).
    pub async fn start_custom(
        body: &str,
        validate: authd::config::StrategyValidator<'_>,
        clock: authd_strategy_api::Clock,
    ) -> TestServer {
        let mut server = Self::unstarted();
        let text = config_text(&server.db, "", body);
        let config = authd::config::Config::parse(&text, validate)
            .unwrap_or_else(|p| panic!("config: {p}\n{text}"));
        let daemon = Daemon::start_with_clock(config, &text, clock)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        server.set_addresses(&daemon);
        server.daemon = Some(daemon);
        server
    }

    fn set_addresses(&mut self, daemon: &Daemon) {
        self.base = format!("http://{}", daemon.addr());
        self.admin = daemon
            .admin_addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
    }

    pub fn config_path(&self) -> PathBuf {
        self.db.with_file_name("authd.toml")
    }

    /// The whole file for `body` on this server's database.
    pub fn text_for(&self, body: &str) -> String {
        config_text(&self.db, "", body)
    }

    /// Saves the config file the way editors do: write a temporary file, rename it over.
    pub fn save_by_rename(&self, text: &str) {
        let tmp = self.db.with_file_name(".authd.toml.tmp");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, self.config_path()).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Overwrites the config file in place.
    pub fn save_in_place(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The public `/healthz`.
    pub async fn health(&self) -> Value {
        let (status, body) = self.get("/healthz", None).await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    /// The operators' `GET /admin/status`.
    pub async fn status(&self) -> Value {
        let (status, _, body) = self
            .raw_at(
                &self.admin,
                Method::GET,
                "/admin/status",
                &[("authorization", &format!("Bearer {}", self.admin_token))],
                Bytes::new(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits (up to 5 s) until `/admin/status` shows `pred` true.
    pub async fn wait_health(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let h = self.status().await;
            if pred(&h) {
                return h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {h}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_generation(&self, n: u64) -> Value {
        self.wait_health(&format!("generation {n}"), |h| {
            h["config"]["generation"] == n
        })
        .await
    }

    /// Starts from `body` once `edit` has changed the validated config: for what a file
    /// cannot say, such as a strategy defined by the test.
    pub async fn start_edited(
        body: &str,
        edit: impl FnOnce(&mut authd::config::Config),
    ) -> TestServer {
        let mut server = Self::unstarted();
        let text = config_text(&server.db, "", body);
        let mut config = authd::parse_config(&text).unwrap_or_else(|p| panic!("config: {p}"));
        edit(&mut config);
        let daemon = Daemon::start(config, &text)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        server.set_addresses(&daemon);
        server.daemon = Some(daemon);
        server
    }

    /// Starts (again) on the same database file.
    pub async fn boot(&mut self, body: &str, server_extra: &str) {
        let text = config_text(&self.db, server_extra, body);
        let config = authd::parse_config(&text).unwrap_or_else(|p| panic!("config: {p}\n{text}"));
        let daemon = Daemon::start(config, &text)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        self.set_addresses(&daemon);
        self.daemon = Some(daemon);
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.raw_at(&self.base, method, path, headers, body).await
    }

    /// A request to `base` (the public or the admin listener).
    pub async fn raw_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.into()))
            .unwrap_or_else(|e| panic!("request: {e}"));
        let resp = self
            .client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("body: {e}"))
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {bytes:?}"))
        };
        (status, headers, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .raw(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        (s, v)
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let (s, _, v) = self.raw(Method::GET, path, &headers, Bytes::new()).await;
        (s, v)
    }

    /// Registers `email` with `password` on `/auth/user/password`; returns the session token.
    pub async fn register(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/auth/user/password/register",
                json!({"user": {"email": email, "password": password, "password_confirmation": password}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        token_of(&body)
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/auth/user/password/sign_in",
            json!({"email": email, "password": password}),
        )
        .await
    }
}

pub fn token_of(body: &Value) -> String {
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_string()
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A small HTTP receiver standing in for a webhook endpoint: records every JSON body POSTed.
pub struct Receiver {
    pub url: String,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

pub async fn receiver() -> Receiver {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let bytes = req.into_body().collect().await.map(|b| b.to_bytes());
                        if let Ok(v) = serde_json::from_slice::<Value>(&bytes.unwrap_or_default()) {
                            let _ = tx.send(v);
                        }
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
    Receiver {
        url: format!("http://{addr}/password-reset"),
        rx,
    }
}

impl Receiver {
    /// The `resettable` table of the usual test strategy, sending to this receiver.
    pub fn resettable(&self) -> String {
        format!(
            "[resources.user.strategies.password.resettable]\n\
             sender = {{ type = \"webhook\", url = \"{}\" }}",
            self.url
        )
    }

    /// The next delivery, waiting up to 5 s.
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no webhook delivery within 5 s"))
            .unwrap_or_else(|| panic!("receiver closed"))
    }

    /// Asserts nothing arrives for `ms` milliseconds.
    pub async fn nothing_for(&mut self, ms: u64) {
        let got = tokio::time::timeout(std::time::Duration::from_millis(ms), self.rx.recv()).await;
        assert!(got.is_err(), "unexpected delivery: {got:?}");
    }
}

/// The claims of a JWT, read without checking the signature.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("payload: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("claims: {e}"))
}

/// A client for a daemon that this test did not start in-process.
pub struct Probe {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Probe {
    pub fn new(base: &str) -> Probe {
        Probe {
            base: base.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Polls `/healthz` for up to 10 s until `pred` holds; `None` if it never did.
    pub async fn wait_health(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let uri = format!("{}/healthz", self.base);
            if let Ok(resp) = self.client.get(uri.parse().unwrap_or_default()).await
                && let Ok(body) = resp.into_body().collect().await
                && let Ok(v) = serde_json::from_slice::<Value>(&body.to_bytes())
                && pred(&v)
            {
                return Some(v);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

impl Probe {
    /// A request with a JSON body (none for `Value::Null`) and an optional bearer; panics when
    /// the daemon cannot be reached.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        // `Value::Null`: no body.
        let bytes = if body.is_null() {
            Bytes::new()
        } else {
            req = req.header("content-type", "application/json");
            Bytes::from(body.to_string())
        };
        let req = req.body(Full::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
        let resp = self
            .client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POSTs JSON; `None` when the daemon cannot be reached (it was killed).
    pub async fn post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        let req = Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .ok()?;
        let resp = self.client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// The real `authd serve` binary as a child process, on a free port, with a config of
/// `body` (resources) written into `dir`.
pub struct Binary {
    pub base: String,
    pub config: PathBuf,
}

impl Binary {
    pub fn new(dir: &std::path::Path, body: &str) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let config = dir.join("authd.toml");
        let text = format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = {:?}\n{body}",
            dir.join("authd.redb").display().to_string(),
        );
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
        Binary {
            base: format!("http://127.0.0.1:{port}"),
            config,
        }
    }

    pub fn spawn(&self) -> std::process::Child {
        self.spawn_with_env(&[])
    }

    /// Spawns with `vars` in its environment (a key-encryption key: the daemon reads it at
    /// start, so a test changes it by restarting the binary).
    pub fn spawn_with_env(&self, vars: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "error")
            .envs(vars.iter().copied())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Spawns with `vars` and waits until it answers `/healthz`.
    pub async fn start_with_env(&self, vars: &[(&str, &str)]) -> (std::process::Child, Probe) {
        let child = self.spawn_with_env(vars);
        let probe = Probe::new(&self.base);
        assert!(
            probe.wait_health(|v| v["status"] == "ok").await.is_some(),
            "the binary did not start"
        );
        (child, probe)
    }
}

/// The Python of the tests' independent implementations, if it can import `module`: the one
/// `AUTHD_TEST_PYTHON` names (as `.ci/run` sets it; then a Python that cannot import `module`
/// fails the test), else `tests/python/.venv` if it is there. `None` means skip: the caller
/// prints one line and checks nothing.
pub fn python_with(module: &str) -> Option<std::path::PathBuf> {
    let (python, required) = match std::env::var_os("AUTHD_TEST_PYTHON") {
        Some(p) => (std::path::PathBuf::from(p), true),
        None => (
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv/bin/python"),
            false,
        ),
    };
    let works = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, required) {
        (true, _) => Some(python),
        (false, true) => panic!(
            "AUTHD_TEST_PYTHON={} cannot import {module}",
            python.display()
        ),
        (false, false) => {
            println!(
                "skipped: no Python with {module} (.ci/run makes tests/python/.venv; or set AUTHD_TEST_PYTHON)"
            );
            None
        }
    }
}
