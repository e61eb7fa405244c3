//! The request path of `GET /auth/user/me` without a network: routing, bearer parsing, JWT
//! verification, the revocation check, the user lookup and the JSON answer, through
//! `Daemon::handle` exactly as the server runs it for a request read off a socket. Also
//! `/healthz` (routing and JSON only) and a refused token, for comparison. `/me` is measured
//! on two daemons in the same run: tokens signed with HS256 and with EdDSA (the default),
//! both verified through the verified-token cache as in production.
//!
//! Run with `cargo bench --bench me`.

use std::hint::black_box;
use std::time::Duration;

use authd::Daemon;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

/// Cheap hashing: registration is setup here, not what is measured.
const CONFIG: &str = r#"
[resources.user]
attributes.email = { type = "ci_string", unique = true }
attributes.name = { type = "string", max_length = 100 }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = { algorithm = "argon2id", memory_kib = 64, iterations = 1, parallelism = 1 }
"#;

fn request(method: Method, path: &str, bearer: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    req.body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A daemon signing with `alg`, and the session token of one registered user.
fn daemon(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, alg: &str) -> (Daemon, String) {
    let text = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = {:?}\n\
         [tokens]\nsigning_algorithm = \"{alg}\"\n{CONFIG}",
        dir.join(format!("bench-{alg}.redb")).display().to_string()
    );
    let config = authd::parse_config(&text).unwrap_or_else(|p| panic!("{p}"));
    let daemon = runtime
        .block_on(Daemon::start(config, &text))
        .unwrap_or_else(|e| panic!("{e}"));
    let token = runtime.block_on(async {
        let response = daemon
            .handle(request(
                Method::POST,
                "/auth/user/password/register",
                None,
                r#"{"email":"bench@example.com","name":"Bench","password":"correct horse battery","password_confirmation":"correct horse battery"}"#,
            ))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| match e {})
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_string()
    });
    (daemon, token)
}

fn me(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let daemons: Vec<(&str, Daemon, String)> = ["HS256", "EdDSA"]
        .into_iter()
        .map(|alg| {
            let (daemon, token) = daemon(&runtime, dir.path(), alg);
            (alg, daemon, token)
        })
        .collect();

    let mut group = c.benchmark_group("request_path");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (alg, daemon, token) in &daemons {
        group.bench_function(format!("me_{alg}"), |b| {
            b.to_async(&runtime).iter(|| async {
                let response = daemon
                    .handle(request(Method::GET, "/auth/user/me", Some(token), ""))
                    .await;
                assert_eq!(response.status(), StatusCode::OK);
                black_box(response)
            });
        });
    }
    let daemon = &daemons[1].1;
    group.bench_function("me_invalid_token", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = daemon
                .handle(request(
                    Method::GET,
                    "/auth/user/me",
                    Some("not.a.token"),
                    "",
                ))
                .await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            black_box(response)
        });
    });
    group.bench_function("healthz", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = daemon
                .handle(request(Method::GET, "/healthz", None, ""))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            black_box(response)
        });
    });
    group.finish();
    for (_, daemon, _) in daemons {
        runtime.block_on(daemon.shutdown());
    }
}

criterion_group!(benches, me);
criterion_main!(benches);
