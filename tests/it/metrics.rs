//! Metrics and logs, end to end: `GET /metrics` scraped over HTTP from a real daemon and read
//! by an independent parser (Python's `prometheus_client`, both its Prometheus and its
//! OpenMetrics parsers); counters and histograms move as requests are made; 1,000 sign-ins of
//! unknown identities add no series; the JSON log of the real binary parses and holds no
//! password or token.
//!
//! `.ci/run` makes `tests/python/.venv` and sets `AUTHD_TEST_PYTHON`; without either, the
//! parser checks print one line and are skipped, and with it set they fail if that Python
//! cannot import `prometheus_client`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::util::{self, ARGON2, TestServer, token_of};

/// Python with `module`, or `None` when there is none and none is required.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let (python, required) = match std::env::var_os("AUTHD_TEST_PYTHON") {
        Some(p) => (PathBuf::from(p), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv/bin/python"),
            false,
        ),
    };
    let works = Command::new(&python)
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
            println!("skipped: no Python with {module} (.ci/run makes tests/python/.venv)");
            None
        }
    }
}

/// One sample: name, labels, value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses an exposition with `prometheus_client`'s two parsers; they must agree.
fn parse(python: &Path, text: &str) -> Samples {
    const SCRIPT: &str = r"import json, sys
from prometheus_client.parser import text_string_to_metric_families as prom
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
text = sys.stdin.read()
out = {}
for name, parse in (('prometheus', prom), ('openmetrics', om)):
    out[name] = [[s.name, s.labels, s.value] for f in parse(text) for s in f.samples]
print(json.dumps(out))";
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let read = |which: &str| -> Samples {
        v[which]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (
                    (s[0].as_str().unwrap().to_string(), labels),
                    s[2].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let prometheus = read("prometheus");
    assert_eq!(prometheus, read("openmetrics"), "the two parsers disagree");
    prometheus
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    samples
        .get(&(name.to_string(), labels.clone()))
        .copied()
        .unwrap_or(0.0)
}

/// `GET /metrics` of the server's metrics listener: status, content type, text.
async fn scrape(s: &TestServer) -> (StatusCode, String, String) {
    let addr = s.daemon.as_ref().unwrap().metrics_addr().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{addr}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(text.to_vec()).unwrap(),
    )
}

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test]
async fn counters_and_hash_histograms_move_as_sign_ins_succeed_and_fail() {
    let body = format!(
        "{METRICS}{}",
        util::user_resource(
            ARGON2,
            r#"rate_limit = { identity_failures = 3, window = "1h" }"#
        )
    );
    let s = TestServer::start(&body).await;
    let (status, content_type, text) = scrape(&s).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let Some(python) = python_with("prometheus_client") else {
        return;
    };
    let before = parse(&python, &text);
    let sign_in = |outcome: &'static str| {
        move |m: &Samples| {
            value(
                m,
                "authd_sign_in_total",
                &[
                    ("resource", "user"),
                    ("strategy", "password"),
                    ("outcome", outcome),
                ],
            )
        }
    };
    assert_eq!(
        sign_in("ok")(&before),
        0.0,
        "declared from the config, at zero"
    );
    assert_eq!(value(&before, "authd_config_generation", &[]), 1.0);

    let token = s.register("ada@example.com", "correct horse").await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("ada@example.com", "wrong horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.get("/auth/user/me", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(s.get("/no/such/path", None).await.0, StatusCode::NOT_FOUND);

    let after = parse(&python, &scrape(&s).await.2);
    assert_eq!(sign_in("ok")(&after), 1.0);
    assert_eq!(sign_in("failed")(&after), 1.0);
    let argon = [("algorithm", "argon2id")];
    assert_eq!(
        value(&after, "authd_password_hash_seconds_count", &argon),
        1.0,
        "the registration"
    );
    assert_eq!(
        value(&after, "authd_password_verify_seconds_count", &argon),
        2.0
    );
    assert!(value(&after, "authd_password_verify_seconds_sum", &argon) > 0.0);
    assert_eq!(
        value(
            &after,
            "authd_password_verify_seconds_bucket",
            &[("algorithm", "argon2id"), ("le", "+Inf")]
        ),
        2.0
    );
    assert_eq!(
        value(&after, "authd_tokens_issued_total", &[("purpose", "user")]),
        2.0
    );
    let route = |r: &str, status: &str| {
        value(
            &after,
            "authd_http_requests_total",
            &[("route", r), ("status", status)],
        )
    };
    assert_eq!(route("/auth/user/password/sign_in", "200"), 1.0);
    assert_eq!(route("/auth/user/password/sign_in", "401"), 1.0);
    assert_eq!(route("/auth/user/password/register", "201"), 1.0);
    assert_eq!(route("/auth/user/me", "200"), 1.0);
    assert_eq!(route("unmatched", "404"), 1.0);
    assert_eq!(
        value(
            &after,
            "authd_http_request_duration_seconds_count",
            &[("route", "/auth/user/me")]
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "authd_store_operation_seconds_count",
            &[("op", "find_by_unique")]
        ) >= 2.0
    );
    assert!(
        value(
            &after,
            "authd_store_operation_seconds_count",
            &[("op", "session_user")]
        ) >= 1.0
    );

    // Two more failures: the third locks the identity; the next attempt is refused as locked.
    s.sign_in("ada@example.com", "wrong horse").await;
    s.sign_in("ada@example.com", "wrong horse").await;
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let locked = parse(&python, &scrape(&s).await.2);
    assert_eq!(
        value(&locked, "authd_lockouts_total", &[("kind", "identity")]),
        1.0
    );
    assert_eq!(sign_in("failed")(&locked), 3.0);
    assert_eq!(sign_in("locked")(&locked), 1.0);
    // No label anywhere holds the identity or the token.
    for (name, labels) in locked.keys() {
        for v in labels.values() {
            assert!(
                !v.contains("ada") && !v.contains(&token),
                "{name} {labels:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_thousand_unknown_identities_add_no_series() {
    let body = format!(
        "{METRICS}{}",
        util::user_resource(ARGON2, "rate_limit = false")
    );
    let s = TestServer::start(&body).await;
    let Some(python) = python_with("prometheus_client") else {
        return;
    };
    // Every kind of answer the loop gives, once, before the first look.
    assert_eq!(
        s.sign_in("first@example.com", "some password").await.0,
        StatusCode::UNAUTHORIZED
    );
    let series = |m: &Samples| -> BTreeSet<(String, BTreeMap<String, String>)> {
        m.keys().cloned().collect()
    };
    let before = parse(&python, &scrape(&s).await.2);
    for i in 0..1000 {
        let (status, _) = s
            .post(
                "/auth/user/password/sign_in",
                json!({"email": format!("nobody{i}@example.com"), "password": format!("password {i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let after = parse(&python, &scrape(&s).await.2);
    assert_eq!(series(&before), series(&after), "no series was added");
    assert_eq!(
        value(
            &after,
            "authd_sign_in_total",
            &[
                ("resource", "user"),
                ("strategy", "password"),
                ("outcome", "failed")
            ]
        ),
        1001.0
    );
    for (name, labels) in after.keys() {
        for v in labels.values() {
            assert!(
                !v.contains("nobody") && !v.contains('@'),
                "{name} {labels:?}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_listener_answers_only_get_metrics() {
    let s = TestServer::start(&format!("{METRICS}{}", util::user_resource(ARGON2, ""))).await;
    let addr = s.daemon.as_ref().unwrap().metrics_addr().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (method, path, want) in [
        (Method::GET, "/", StatusCode::NOT_FOUND),
        (Method::POST, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.request(req).await.unwrap().status(), want);
    }
    // Without [metrics], no listener.
    let plain = TestServer::start(&util::user_resource(ARGON2, "")).await;
    assert!(plain.daemon.as_ref().unwrap().metrics_addr().is_none());
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_made_otherwise() {
    let s = TestServer::start(&util::user_resource(ARGON2, "")).await;
    let (_, headers, _) = s
        .raw(
            Method::GET,
            "/healthz",
            &[("x-request-id", "abc-123")],
            Bytes::new(),
        )
        .await;
    assert_eq!(headers["x-request-id"], "abc-123");
    let long = "a".repeat(129);
    for bad in [long.as_str(), "has space", ""] {
        let (_, headers, _) = s
            .raw(
                Method::GET,
                "/healthz",
                &[("x-request-id", bad)],
                Bytes::new(),
            )
            .await;
        let id = headers["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(
            uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4),
            "{id}"
        );
    }
}

/// The real binary with `--log-format json`: every line of its standard error is a JSON
/// object; each request has one `request` event with route, status, duration and request id;
/// neither the password, nor the session token, nor the reset token appears anywhere.
#[tokio::test]
async fn json_logs_parse_and_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut hook = util::receiver().await;
    let binary = util::Binary::new(dir.path(), &util::user_resource(ARGON2, &hook.resettable()));
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&binary.config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let probe = util::Probe::new(&binary.base);
    assert!(probe.wait_health(|h| h["status"] == "ok").await.is_some());

    let password = "correct horse battery";
    let (status, body) = probe
        .post(
            "/auth/user/password/register",
            &json!({"user": {"email": "ada@example.com", "password": password, "password_confirmation": password}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let session = token_of(&body);
    let (status, body) = probe
        .post(
            "/auth/user/password/sign_in",
            &json!({"email": "ada@example.com", "password": password}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let second = token_of(&body);
    let (status, _) = probe
        .post(
            "/auth/user/password/reset_request",
            &json!({"email": "ada@example.com"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 202);
    let reset_token = hook.next().await["token"].as_str().unwrap().to_string();
    let new_password = "a new password here";
    let (status, body) = probe
        .post(
            "/auth/user/password/reset",
            &json!({"reset_token": reset_token, "password": new_password, "password_confirmation": new_password}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let third = token_of(&body);
    // A request with its own id, and /me with a token.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("{}/auth/user/me", binary.base))
        .header("authorization", format!("Bearer {third}"))
        .header("x-request-id", "trace-me-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");

    // SIGTERM, then read what it wrote.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut requests = Vec::new();
    for line in text.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for secret in [
            password,
            new_password,
            &session,
            &second,
            &third,
            &reset_token,
        ] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
        if event["target"] == "authd::request" {
            requests.push(event);
        }
    }
    let me = requests
        .iter()
        .find(|e| e["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no request event for trace-me-42 in\n{text}"));
    assert_eq!(me["route"], "/auth/user/me");
    assert_eq!(me["status"], 200);
    assert!(me["duration_ms"].as_f64().is_some(), "{me}");
    for route in [
        "/auth/user/password/register",
        "/auth/user/password/sign_in",
        "/auth/user/password/reset",
    ] {
        let event = requests
            .iter()
            .find(|e| e["route"] == route)
            .unwrap_or_else(|| panic!("no request event for {route} in\n{text}"));
        assert!(
            event["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{event}"
        );
    }
}
