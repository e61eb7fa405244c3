//! The conformance suite and the behaviours only a shared database has, against the real
//! PostgreSQL of `AUTHD_TEST_DATABASE_URL` (skipped without it). Each check runs on a schema
//! of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authd_store_api::{Maintenance, MetaStore, Store, StoreError, UserStore};

use super::*;
use crate::testing::{Proxy, TestSchema, database_url, upstream_of};

fn settings() -> Settings {
    Settings {
        pool_size: 8,
        ..Settings::default()
    }
}

async fn open_fresh(url: &str) -> (TestSchema, PgStore) {
    let schema = TestSchema::create(url).await.unwrap();
    let (store, applied) = open(&schema.url, settings(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(applied, vec![1]);
    (schema, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let Some(url) = database_url() else { return };
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::clone(&schemas);
    let make = move || {
        let made = Arc::clone(&made);
        let url = url.clone();
        Box::pin(async move {
            let (schema, store) = open_fresh(&url).await;
            made.lock().unwrap().push(schema);
            Arc::new(store) as Arc<dyn Store>
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Store>> + Send>>
    };
    authd_store_api::conformance::run_all(&make).await;
    let schemas: Vec<TestSchema> = std::mem::take(&mut *schemas.lock().unwrap());
    for schema in schemas {
        schema.drop_schema().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemons_opening_an_empty_database_at_once_migrate_it_once_and_share_one_key() {
    let Some(url) = database_url() else { return };
    let schema = TestSchema::create(&url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let url = schema.url.clone();
        tasks.push(tokio::spawn(async move {
            let (store, applied) = open(&url, settings(), Duration::from_secs(10))
                .await
                .unwrap();
            let key = store
                .meta_put_if_absent("signing_key", vec![i; 32])
                .await
                .unwrap();
            (applied, key)
        }));
    }
    let mut applied = Vec::new();
    let mut keys = Vec::new();
    for task in tasks {
        let (a, k) = task.await.unwrap();
        applied.extend(a);
        keys.push(k);
    }
    assert_eq!(
        applied,
        vec![1],
        "one daemon migrated; the others found nothing to do"
    );
    keys.dedup();
    assert_eq!(keys.len(), 1, "every daemon reads the one key that won");
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_database_from_a_newer_authd_is_refused() {
    let Some(url) = database_url() else { return };
    let (schema, store) = open_fresh(&url).await;
    drop(store);
    crate::testing::run(
        &schema.url,
        "INSERT INTO authd_schema_migrations (version, name) VALUES (99, 'future')",
    )
    .await
    .unwrap();
    let err = open(&schema.url, settings(), Duration::from_secs(2))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::Schema { .. }), "{err}");
    assert!(err.to_string().contains("newer authd"), "{err}");
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_fails_the_open_in_time_without_showing_the_password() {
    // A port nothing listens on: no PostgreSQL needed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://authd:hunter2-secret@127.0.0.1:{port}/authd");
    let started = Instant::now();
    let err = open(&url, settings(), Duration::from_millis(1500))
        .await
        .err()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, OpenError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}/authd")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_cut_off_calls_fail_fast_as_unavailable_and_then_recover() {
    let Some(url) = database_url() else { return };
    let schema = TestSchema::create(&url).await.unwrap();
    let proxy = Proxy::start(upstream_of(&url)).await.unwrap();
    let (store, _) = open(
        &proxy.url_through(&schema.url),
        settings(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let user = store
        .insert(
            "user",
            authd_store_api::NewUser {
                unique: vec![authd_store_api::UniqueKey::new("email", "a@x")],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();

    proxy.cut();
    for _ in 0..20 {
        let started = Instant::now();
        let outcome = store.get("user", user.id).await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(store.health().await.is_err());

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get("user", user.id).await {
            Ok(found) => {
                assert_eq!(found.map(|u| u.id), Some(user.id));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.health().await.unwrap();
    drop(store);
    schema.drop_schema().await.unwrap();
}

/// The machine's PostgreSQL serves TLS with Debian's self-signed "snakeoil" certificate for
/// `localhost`: trusted through `sslrootcert`, the connection is TLS and verified; with the
/// public roots only, it is refused (the certificate is verified, never just accepted).
#[tokio::test]
async fn tls_is_used_and_the_server_certificate_is_verified() {
    const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    let Some(url) = database_url() else { return };
    if !std::path::Path::new(SNAKEOIL).exists() || !url.contains("127.0.0.1") {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"TLS test skipped: no snakeoil certificate or not a local database\n",
        );
        return;
    }
    let schema = TestSchema::create(&url).await.unwrap();
    // The schema's URL has a query already (its search_path).
    let local = schema.url.replacen("127.0.0.1", "localhost", 1);
    let verified = format!("{local}&sslmode=verify-full&sslrootcert={SNAKEOIL}");
    let (store, _) = open(&verified, settings(), Duration::from_secs(5))
        .await
        .unwrap();
    let on_tls = store
        .with(|conn| async move {
            let row = conn
                .client()
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            Ok((row.get::<_, bool>(0), conn))
        })
        .await
        .unwrap();
    assert!(on_tls, "the connection is not TLS");

    drop(store);
    let public_roots = format!("{local}&sslmode=require");
    let err = open(&public_roots, settings(), Duration::from_millis(500))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
