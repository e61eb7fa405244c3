//! Time from a config file's rename to the new config serving requests, debounce included:
//! a real file, real `notify` events, and `/healthz` polled over loopback HTTP.
//!
//! `cargo bench --bench reload`

use std::time::{Duration, Instant};

use authd::Daemon;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

fn config(db: &std::path::Path, cost: u32) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
[store]
path = {:?}
[resources.user]
attributes.email = {{ type = "ci_string", unique = true }}
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = {{ algorithm = "bcrypt", cost = {cost} }}
"#,
        db.display().to_string()
    )
}

async fn generation(client: &Client<HttpConnector, Empty<Bytes>>, uri: &hyper::Uri) -> Option<u64> {
    let resp = client.get(uri.clone()).await.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["config"]["generation"].as_u64()
}

fn reload(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let db = dir.path().join("bench.redb");
    let path = dir.path().join("authd.toml");
    let tmp = dir.path().join(".authd.toml.tmp");
    let first = config(&db, 4);
    if std::fs::write(&path, &first).is_err() {
        return;
    }
    let Some((daemon, uri)) = rt.block_on(async {
        let parsed = authd::parse_config(&first).ok()?;
        let mut daemon = Daemon::start(parsed, &first).await.ok()?;
        daemon.watch(&path).ok()?;
        let uri: hyper::Uri = format!("http://{}/healthz", daemon.addr()).parse().ok()?;
        Some((daemon, uri))
    }) else {
        eprintln!("could not start the daemon");
        return;
    };
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    let mut group = c.benchmark_group("reload");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut cost = 4;
    group.bench_function("rename_to_serving", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let before = generation(&client, &uri).await.unwrap_or(0);
                    cost = if cost == 4 { 5 } else { 4 };
                    let _ = std::fs::write(&tmp, config(&db, cost));
                    let start = Instant::now();
                    let _ = std::fs::rename(&tmp, &path);
                    // Poll until the new generation answers (give up after 5 s).
                    while generation(&client, &uri).await.unwrap_or(0) <= before
                        && start.elapsed() < Duration::from_secs(5)
                    {
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
    rt.block_on(daemon.shutdown());
}

criterion_group!(benches, reload);
criterion_main!(benches);
