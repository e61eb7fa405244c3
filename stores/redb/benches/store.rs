//! The redb store through the `UserStore` and `TokenStore` traits: a user looked up by id and
//! by unique value (the sign-in path), the revocation check of `/me`, and a durable insert
//! (registration: one fsync'd commit each).
//!
//! Run with `cargo bench -p authd-store-redb --bench store`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authd_store_api::{NewUser, TokenStore, UniqueKey, UserStore};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// Users in the database while lookups are measured.
const USERS: u64 = 2000;

fn new_user(n: u64) -> NewUser {
    let email = format!("user{n}@example.com");
    NewUser {
        attributes: [
            ("email".to_string(), json!(email)),
            ("name".to_string(), json!(format!("User {n}"))),
        ]
        .into_iter()
        .collect(),
        secrets: [(
            "hashed_password".to_string(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".to_string(),
        )]
        .into(),
        unique: vec![UniqueKey {
            field: "email".into(),
            value: email,
        }],
        ..NewUser::default()
    }
}

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, _) =
        authd_store_redb::open(&dir.path().join("bench.redb")).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<uuid::Uuid> = runtime.block_on(async {
        let mut ids = Vec::new();
        for n in 0..USERS {
            match store.insert("user", new_user(n)).await {
                Ok(Ok(user)) => ids.push(user.id),
                other => panic!("insert: {other:?}"),
            }
        }
        ids
    });
    let probe = ids[ids.len() / 2];
    let key = UniqueKey {
        field: "email".into(),
        value: format!("user{}@example.com", USERS / 3),
    };

    let mut group = c.benchmark_group("store");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("get_by_id", |b| {
        b.to_async(&runtime).iter(|| async {
            let user = store
                .get("user", black_box(probe))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(user.is_some());
        });
    });
    group.bench_function("find_by_unique", |b| {
        b.to_async(&runtime).iter(|| async {
            let user = store
                .find_by_unique("user", black_box(&key))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(user.is_some());
        });
    });
    group.bench_function("is_dead", |b| {
        b.to_async(&runtime).iter(|| async {
            let dead = store
                .is_dead(black_box("3f1c2b9e-0000-4000-8000-000000000000"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(!dead);
        });
    });
    // Durable commits are slow and vary with the disk: fewer, flat samples.
    group.sample_size(20);
    let next = AtomicU64::new(USERS);
    group.bench_function("insert_durable", |b| {
        b.to_async(&runtime).iter(|| async {
            let n = next.fetch_add(1, Ordering::Relaxed);
            match store.insert("user", new_user(n)).await {
                Ok(Ok(_)) => {}
                other => panic!("insert: {other:?}"),
            }
        });
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
