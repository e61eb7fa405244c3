//! The store conformance suite: one set of checks, generic over the contract, that every
//! backend runs against a real store (a temporary redb file, a PostgreSQL schema of its own).
//! A backend is done when [`run_all`] passes on it.
//!
//! Each check takes a fresh, empty store and panics on the first thing that is not as the
//! contract says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::outbox::NewJob;
use crate::throttle::{ThrottleKey, ThrottleOp, ThrottleOutcome};
use crate::{InsertError, NewUser, Store, UniqueKey, UpdateOutcome, UserUpdate};

/// Makes a fresh, empty store for one check.
pub type MakeStore<'a> =
    &'a (dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Sync);

/// How many tasks race in the concurrency checks.
const RACERS: usize = 16;

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all(make: MakeStore<'_>) {
    racing_inserts_of_one_unique_value(make().await).await;
    users_get_find_update_delete(make().await).await;
    compare_and_swap_secret_changes(make().await).await;
    single_use_consumption_under_concurrency(make().await).await;
    session_epochs_and_dead_tokens(make().await).await;
    unique_values_move_with_updates(make().await).await;
    throttle_windows_and_concurrent_reservations(make().await).await;
    outbox_claim_complete_retry_and_lease(make().await).await;
    iteration_and_paging(make().await).await;
    rebuild_reports_collisions(make().await).await;
    meta_put_if_absent_and_swap(make().await).await;
    purge_removes_only_what_expired(make().await).await;
    backup_pages_and_puts(make().await, make().await).await;
    batch_inserts_refuse_items_not_the_batch(make().await).await;
}

/// A batch keeps going past a refused user, and refuses values taken within the batch too.
pub async fn batch_inserts_refuse_items_not_the_batch(store: Arc<dyn Store>) {
    insert(&store, "user", "taken@x").await;
    let batch = vec![user("a@x"), user("taken@x"), user("b@x"), user("A@x")];
    let out = store.insert_batch("user", batch).await.unwrap();
    assert_eq!(out.len(), 4);
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    assert_eq!(out[1], Err(InsertError::Taken("email".into())));
    assert_eq!(out[3], Err(InsertError::Taken("email".into())));
    let mut after = None;
    let mut n = 0;
    loop {
        let page = store.users_page("user", after, 10).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        n += page.len();
    }
    assert_eq!(n, 3);
}

fn user(email: &str) -> NewUser {
    NewUser {
        attributes: attrs(&[("email", json!(email))]),
        secrets: [("hashed_password".to_string(), "h0".to_string())].into(),
        unique: vec![UniqueKey::new("email", email.to_lowercase())],
        created_at: 1_700_000_000,
        ..NewUser::default()
    }
}

fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

async fn insert(store: &Arc<dyn Store>, subject: &str, email: &str) -> crate::UserRecord {
    store.insert(subject, user(email)).await.unwrap().unwrap()
}

/// N tasks insert users holding one email: exactly one wins, the others see `Taken`.
pub async fn racing_inserts_of_one_unique_value(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.insert("user", user("Race@x")).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Ok(_) => won += 1,
            Err(InsertError::Taken(field)) => assert_eq!(field, "email"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one insert wins");
    // Per subject: another subject may hold the same value.
    assert!(store.insert("admin", user("race@x")).await.unwrap().is_ok());
}

/// The basic round trip of a user, and what delete frees.
pub async fn users_get_find_update_delete(store: Arc<dyn Store>) {
    let u = insert(&store, "user", "a@x").await;
    assert_eq!(u.session_epoch, 0);
    assert_eq!(u.created_at, 1_700_000_000);
    assert_eq!(store.get("user", u.id).await.unwrap().as_ref(), Some(&u));
    assert_eq!(store.get("admin", u.id).await.unwrap(), None);
    let key = UniqueKey::new("email", "a@x");
    assert_eq!(
        store
            .find_by_unique("user", &key)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(u.id)
    );
    assert_eq!(
        store.unique_of("user", u.id).await.unwrap(),
        vec![key.clone()]
    );

    // An id given by the caller is kept; a second user with it is refused.
    let id = Uuid::new_v4();
    let with_id = NewUser {
        id: Some(id),
        ..user("b@x")
    };
    assert_eq!(
        store
            .insert("user", with_id.clone())
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    let again = NewUser {
        unique: vec![UniqueKey::new("email", "c@x")],
        ..with_id
    };
    assert_eq!(
        store.insert("user", again).await.unwrap(),
        Err(InsertError::IdTaken)
    );
    assert_eq!(
        store
            .find_by_unique("user", &UniqueKey::new("email", "c@x"))
            .await
            .unwrap(),
        None,
        "a refused insert leaves nothing behind"
    );

    let update = UserUpdate {
        attributes: attrs(&[("name", json!("Ada")), ("email", json!("a@x"))]),
        meta: attrs(&[("confirmed_at", json!(5))]),
        secrets: [("other".to_string(), Some("s".to_string()))].into(),
        ..UserUpdate::default()
    };
    let UpdateOutcome::Updated(updated) = store.update("user", u.id, update).await.unwrap() else {
        panic!("not updated")
    };
    assert_eq!(updated.attributes["name"], "Ada");
    assert_eq!(updated.meta["confirmed_at"], 5);
    assert_eq!(updated.secrets["other"], "s");
    let removal = UserUpdate {
        attributes: attrs(&[("name", Value::Null)]),
        meta: attrs(&[("confirmed_at", Value::Null)]),
        secrets: [("other".to_string(), None)].into(),
        ..UserUpdate::default()
    };
    let UpdateOutcome::Updated(back) = store.update("user", u.id, removal).await.unwrap() else {
        panic!("not updated")
    };
    assert!(!back.attributes.contains_key("name") && back.meta.is_empty());
    assert!(!back.secrets.contains_key("other"));
    assert_eq!(
        store
            .update("user", Uuid::new_v4(), UserUpdate::default())
            .await
            .unwrap(),
        UpdateOutcome::NotFound
    );

    assert_eq!(
        store.delete("user", u.id).await.unwrap().map(|d| d.id),
        Some(u.id)
    );
    assert_eq!(store.delete("user", u.id).await.unwrap(), None);
    assert_eq!(store.get("user", u.id).await.unwrap(), None);
    assert!(store.unique_of("user", u.id).await.unwrap().is_empty());
    // The value is free again.
    assert!(store.insert("user", user("a@x")).await.unwrap().is_ok());
}

/// Two changes expecting the same current secret: one wins.
pub async fn compare_and_swap_secret_changes(store: Arc<dyn Store>) {
    let u = insert(&store, "user", "a@x").await;
    let change = |value: &str| UserUpdate {
        expect_secrets: vec![("hashed_password".into(), Some("h0".into()))],
        secrets: [("hashed_password".to_string(), Some(value.to_string()))].into(),
        ..UserUpdate::default()
    };
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = Arc::clone(&store);
        let update = change(&format!("h{}", i + 1));
        tasks.push(tokio::spawn(async move {
            store.update("user", u.id, update).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            UpdateOutcome::Updated(_) => won += 1,
            UpdateOutcome::Conflict => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    // Expecting absence, and an epoch.
    let absent = UserUpdate {
        expect_secrets: vec![("totp".into(), None)],
        expect_epoch: Some(0),
        secrets: [("totp".to_string(), Some("t".to_string()))].into(),
        ..UserUpdate::default()
    };
    assert!(matches!(
        store.update("user", u.id, absent.clone()).await.unwrap(),
        UpdateOutcome::Updated(_)
    ));
    assert_eq!(
        store.update("user", u.id, absent).await.unwrap(),
        UpdateOutcome::Conflict
    );
    let stale_epoch = UserUpdate {
        expect_epoch: Some(7),
        bump_sessions: true,
        ..UserUpdate::default()
    };
    assert_eq!(
        store.update("user", u.id, stale_epoch).await.unwrap(),
        UpdateOutcome::Conflict
    );
}

/// N tasks consume one token: one succeeds. A secret change consuming a used token writes
/// nothing.
pub async fn single_use_consumption_under_concurrency(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.consume("jti-1", u64::MAX).await
        }));
    }
    let mut first = 0;
    for t in tasks {
        first += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(first, 1);
    assert!(store.is_dead("jti-1").await.unwrap());

    let u = insert(&store, "user", "a@x").await;
    let reset = |jti: &str| UserUpdate {
        consume: Some((jti.to_string(), u64::MAX)),
        secrets: [("hashed_password".to_string(), Some("new".to_string()))].into(),
        bump_sessions: true,
        ..UserUpdate::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = Arc::clone(&store);
        let update = reset("jti-2");
        tasks.push(tokio::spawn(async move {
            store.update("user", u.id, update).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            UpdateOutcome::Updated(_) => won += 1,
            UpdateOutcome::TokenUsed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        store
            .get("user", u.id)
            .await
            .unwrap()
            .unwrap()
            .session_epoch,
        1
    );
    assert_eq!(
        store.update("user", u.id, reset("jti-2")).await.unwrap(),
        UpdateOutcome::TokenUsed
    );
}

/// The session look-up sees dead tokens and epoch bumps.
pub async fn session_epochs_and_dead_tokens(store: Arc<dyn Store>) {
    let u = insert(&store, "user", "a@x").await;
    let live = store.session_user("user", u.id, "s1").await.unwrap();
    assert_eq!(live.map(|u| u.session_epoch), Some(0));
    store.kill("s1", u64::MAX).await.unwrap();
    assert_eq!(store.session_user("user", u.id, "s1").await.unwrap(), None);
    assert_eq!(
        store
            .session_user("user", Uuid::new_v4(), "s2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.session_user("admin", u.id, "s2").await.unwrap(), None);
    let bump = UserUpdate {
        bump_sessions: true,
        ..UserUpdate::default()
    };
    for expected in 1..=3 {
        let UpdateOutcome::Updated(after) = store.update("user", u.id, bump.clone()).await.unwrap()
        else {
            panic!("not updated")
        };
        assert_eq!(after.session_epoch, expected);
    }
    let seen = store.session_user("user", u.id, "s2").await.unwrap();
    assert_eq!(seen.map(|u| u.session_epoch), Some(3));
    // Killing twice is fine.
    store.kill("s1", u64::MAX).await.unwrap();
}

/// Unique values added and removed by updates: a taken value fails the whole update.
pub async fn unique_values_move_with_updates(store: Arc<dyn Store>) {
    let a = insert(&store, "user", "a@x").await;
    let b = insert(&store, "user", "b@x").await;
    let key = |v: &str| UniqueKey::new("email", v);
    let rename = |from: &str, to: &str| UserUpdate {
        attributes: attrs(&[("email", json!(to))]),
        unique_remove: vec![key(from)],
        unique_add: vec![key(to)],
        ..UserUpdate::default()
    };
    assert_eq!(
        store
            .update("user", a.id, rename("a@x", "b@x"))
            .await
            .unwrap(),
        UpdateOutcome::Taken("email".into())
    );
    let still = store.get("user", a.id).await.unwrap().unwrap();
    assert_eq!(
        still.attributes["email"], "a@x",
        "nothing of a failed update is written"
    );
    assert!(matches!(
        store
            .update("user", a.id, rename("a@x", "c@x"))
            .await
            .unwrap(),
        UpdateOutcome::Updated(_)
    ));
    assert_eq!(
        store.find_by_unique("user", &key("a@x")).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .find_by_unique("user", &key("c@x"))
            .await
            .unwrap()
            .map(|u| u.id),
        Some(a.id)
    );
    // Removing a value another user holds does nothing to it.
    let steal = UserUpdate {
        unique_remove: vec![key("b@x")],
        ..UserUpdate::default()
    };
    assert!(matches!(
        store.update("user", a.id, steal).await.unwrap(),
        UpdateOutcome::Updated(_)
    ));
    assert_eq!(
        store
            .find_by_unique("user", &key("b@x"))
            .await
            .unwrap()
            .map(|u| u.id),
        Some(b.id)
    );
    // Adding a value the user holds already is fine; strategy-owned values live beside.
    let api_key = UserUpdate {
        unique_add: vec![key("c@x"), UniqueKey::new("api_key:api", "k1")],
        ..UserUpdate::default()
    };
    assert!(matches!(
        store.update("user", a.id, api_key).await.unwrap(),
        UpdateOutcome::Updated(_)
    ));
    let mut held = store.unique_of("user", a.id).await.unwrap();
    held.sort();
    assert_eq!(held, vec![UniqueKey::new("api_key:api", "k1"), key("c@x")]);
}

/// Reservations under concurrency never exceed the limit; locks and refunds behave.
pub async fn throttle_windows_and_concurrent_reservations(store: Arc<dyn Store>) {
    let key = ThrottleKey::of("identity:user/password:a@x");
    let ip = ThrottleKey::of("ip:user/password:127.0.0.1");
    let now = 1_000_000;
    let limit = 5;
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .throttle_apply(vec![(key, ThrottleOp::Reserve { limit, window: 60 })], now)
                .await
        }));
    }
    let mut done = 0;
    for t in tasks {
        match t.await.unwrap().unwrap()[0] {
            ThrottleOutcome::Done | ThrottleOutcome::LockedNow => done += 1,
            ThrottleOutcome::Locked { retry_after } => assert_eq!(retry_after, 60),
        }
    }
    assert_eq!(
        done, limit,
        "at most `limit` attempts per window, whatever the concurrency"
    );
    let record = store.throttle_get(&key).await.unwrap().unwrap();
    assert_eq!(record.locked_until, now + 60);
    assert_eq!(record.lockouts, 1);

    // Several keys in one call; refund and clear.
    let out = store
        .throttle_apply(
            vec![
                (
                    ip,
                    ThrottleOp::Reserve {
                        limit: 100,
                        window: 60,
                    },
                ),
                (key, ThrottleOp::Reserve { limit, window: 60 }),
            ],
            now + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            ThrottleOutcome::Done,
            ThrottleOutcome::Locked { retry_after: 59 }
        ]
    );
    store
        .throttle_apply(vec![(ip, ThrottleOp::Refund)], now + 1)
        .await
        .unwrap();
    assert_eq!(store.throttle_get(&ip).await.unwrap().unwrap().count, 0);
    store
        .throttle_apply(vec![(key, ThrottleOp::Clear)], now + 1)
        .await
        .unwrap();
    assert_eq!(store.throttle_get(&key).await.unwrap(), None);
    // After the window, a key counts again from zero.
    store
        .throttle_apply(
            vec![(
                ip,
                ThrottleOp::Reserve {
                    limit: 100,
                    window: 60,
                },
            )],
            now + 200,
        )
        .await
        .unwrap();
    let r = store.throttle_get(&ip).await.unwrap().unwrap();
    assert_eq!((r.count, r.window_start), (1, now + 200));
}

fn job(n: u64, lease_ms: u64) -> NewJob {
    NewJob {
        kind: "password_reset".into(),
        channel: json!({"type": "webhook", "url": "http://127.0.0.1:9/"}),
        payload: json!({ "n": n }),
        deadline_ms: u64::MAX,
        retry_base_ms: 50,
        lease_ms,
    }
}

/// Claims lease jobs to one worker at a time; a lease that expires gives the job back.
pub async fn outbox_claim_complete_retry_and_lease(store: Arc<dyn Store>) {
    let t = 1_000_000_000;
    let first = store
        .outbox_enqueue(job(1, 1_000), 2, t)
        .await
        .unwrap()
        .unwrap();
    let second = store
        .outbox_enqueue(job(2, 1_000), 2, t + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.outbox_enqueue(job(3, 1_000), 2, t + 2).await.unwrap(),
        Err(crate::OutboxFull { depth: 2 })
    );
    let stats = store.outbox_stats(t + 5_000).await.unwrap();
    assert_eq!((stats.depth, stats.oldest_age_secs), (2, Some(5)));

    // Racing claims: each job goes to one claimant.
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(
            async move { store.outbox_claim(t + 10, 16).await },
        ));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap().unwrap().due);
    }
    claimed.sort_by_key(|j| j.key);
    assert_eq!(
        claimed.iter().map(|j| j.key).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert_eq!(claimed[0].payload["n"], 1);
    assert_eq!(claimed[0].message_id().len(), 36);

    // While leased, nothing is due; the next due time is the lease's end.
    let during = store.outbox_claim(t + 20, 16).await.unwrap();
    assert!(during.due.is_empty());
    assert_eq!(during.next_due_ms, Some(t + 10 + 1_000));

    // A failed attempt is rescheduled; the completed job is gone.
    store.outbox_complete(first).await.unwrap();
    store
        .outbox_retry(second, t + 5_000, 1, "down".into())
        .await
        .unwrap();
    assert!(
        store
            .outbox_claim(t + 4_999, 16)
            .await
            .unwrap()
            .due
            .is_empty()
    );
    let again = store.outbox_claim(t + 5_000, 16).await.unwrap();
    assert_eq!(again.due.len(), 1);
    assert_eq!(again.due[0].attempts, 1);
    assert_eq!(again.due[0].last_error.as_deref(), Some("down"));
    // The worker dies here: after the lease, another claim gets the job again.
    let after_lease = store.outbox_claim(t + 6_001, 16).await.unwrap();
    assert_eq!(after_lease.due.len(), 1);
    assert_eq!(after_lease.due[0].key, second);

    // Past its deadline a job is handed out as expired.
    let late = NewJob {
        deadline_ms: t + 100,
        ..job(4, 1_000)
    };
    store
        .outbox_enqueue(late, 10, t + 50)
        .await
        .unwrap()
        .unwrap();
    let claim = store.outbox_claim(t + 10_000, 16).await.unwrap();
    assert_eq!(claim.expired.len(), 1);
    store.outbox_complete(claim.expired[0].key).await.unwrap();
    // Retrying a job removed meanwhile leaves it removed.
    store.outbox_complete(second).await.unwrap();
    store.outbox_retry(second, t, 2, "x".into()).await.unwrap();
    assert_eq!(store.outbox_stats(t).await.unwrap().depth, 0);
}

/// Paging visits every user of a subject once, in id order.
pub async fn iteration_and_paging(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(insert(&store, "user", &format!("u{i}@x")).await.id);
    }
    insert(&store, "admin", "boss@x").await;
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.users_page("user", after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().map(|u| u.id);
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, ids);
    let mut subjects = store.subjects().await.unwrap();
    subjects.sort();
    assert_eq!(subjects, vec!["admin".to_string(), "user".to_string()]);
}

/// A rebuild keeps the first holder of a value and reports the others.
pub async fn rebuild_reports_collisions(store: Arc<dyn Store>) {
    let a = insert(&store, "user", "Strasse@x").await;
    let b = insert(&store, "user", "Straße@x").await;
    let key = UniqueKey::new("email", "strasse@x");
    let collisions = store
        .rebuild_unique("user", vec![(key.clone(), a.id), (key.clone(), b.id)])
        .await
        .unwrap();
    assert_eq!(collisions.len(), 1);
    assert_eq!((collisions[0].kept, collisions[0].left_out), (a.id, b.id));
    assert_eq!(
        store
            .find_by_unique("user", &key)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(a.id)
    );
    // The old values are gone from the index; both users are still there.
    let old = UniqueKey::new("email", "straße@x");
    assert_eq!(store.find_by_unique("user", &old).await.unwrap(), None);
    assert!(store.get("user", b.id).await.unwrap().is_some());
    assert!(store.unique_of("user", b.id).await.unwrap().is_empty());
}

/// Of racing first writers, every one reads the same value back.
pub async fn meta_put_if_absent_and_swap(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .meta_put_if_absent("signing_key", vec![i as u8; 32])
                .await
        }));
    }
    let mut values = Vec::new();
    for t in tasks {
        values.push(t.await.unwrap().unwrap());
    }
    values.dedup();
    assert_eq!(values.len(), 1, "one key wins and everyone sees it");
    assert_eq!(
        store.meta_get("signing_key").await.unwrap(),
        Some(values[0].clone())
    );
    assert_eq!(store.meta_get("nothing").await.unwrap(), None);
    assert!(
        !store
            .meta_swap("k", Some(b"x".to_vec()), Some(b"y".to_vec()))
            .await
            .unwrap()
    );
    assert!(
        store
            .meta_swap("k", None, Some(b"x".to_vec()))
            .await
            .unwrap()
    );
    assert!(
        !store
            .meta_swap("k", None, Some(b"z".to_vec()))
            .await
            .unwrap()
    );
    assert!(
        store
            .meta_swap("k", Some(b"x".to_vec()), Some(b"y".to_vec()))
            .await
            .unwrap()
    );
    assert_eq!(store.meta_get("k").await.unwrap(), Some(b"y".to_vec()));
    assert!(
        store
            .meta_swap("k", Some(b"y".to_vec()), None)
            .await
            .unwrap()
    );
    assert_eq!(store.meta_get("k").await.unwrap(), None);
}

/// The purge drops expired dead tokens and forgettable throttles, nothing else; twice is fine.
pub async fn purge_removes_only_what_expired(store: Arc<dyn Store>) {
    store.kill("old", 10).await.unwrap();
    store.kill("new", u64::MAX).await.unwrap();
    let key = ThrottleKey::of("k");
    store
        .throttle_apply(
            vec![(
                key,
                ThrottleOp::Reserve {
                    limit: 10,
                    window: 60,
                },
            )],
            100,
        )
        .await
        .unwrap();
    let counts = store.purge(1_000).await.unwrap();
    assert_eq!((counts.dead_tokens, counts.throttles), (1, 1));
    assert!(store.is_dead("new").await.unwrap());
    assert!(!store.is_dead("old").await.unwrap());
    assert_eq!(
        store.purge(1_000).await.unwrap(),
        crate::PurgeCounts::default()
    );
    store.health().await.unwrap();
}

/// Everything read from one store can be written into another.
pub async fn backup_pages_and_puts(from: Arc<dyn Store>, to: Arc<dyn Store>) {
    assert!(from.is_empty().await.unwrap());
    let u = insert(&from, "user", "a@x").await;
    from.kill("jti", u64::MAX).await.unwrap();
    let key = ThrottleKey::of("k");
    from.throttle_apply(
        vec![(
            key,
            ThrottleOp::Reserve {
                limit: 10,
                window: 60,
            },
        )],
        5,
    )
    .await
    .unwrap();
    from.meta_put_if_absent("signing_key", vec![1; 32])
        .await
        .unwrap();
    from.outbox_enqueue(job(1, 1_000), 10, 7)
        .await
        .unwrap()
        .unwrap();
    assert!(!from.is_empty().await.unwrap());

    let tokens = from.dead_tokens_page(None, 10).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(
        from.dead_tokens_page(Some(tokens[0].0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let throttles = from.throttles_page(None, 10).await.unwrap();
    let jobs = from.outbox_page(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(
        from.outbox_page(Some(jobs[0].key), 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(to.is_empty().await.unwrap());
    let unique = from.unique_of("user", u.id).await.unwrap();
    let copy = NewUser {
        id: Some(u.id),
        attributes: u.attributes.clone(),
        secrets: u.secrets.clone(),
        meta: u.meta.clone(),
        unique,
        created_at: u.created_at,
        session_epoch: u.session_epoch,
    };
    to.insert("user", copy).await.unwrap().unwrap();
    for (k, exp) in tokens {
        to.put_dead_token(k, exp).await.unwrap();
    }
    for (k, r) in throttles.clone() {
        to.put_throttle(k, r).await.unwrap();
    }
    for (k, v) in from.meta_all().await.unwrap() {
        to.meta_put_if_absent(&k, v).await.unwrap();
    }
    for j in jobs.clone() {
        to.put_job(j).await.unwrap();
    }
    assert_eq!(to.get("user", u.id).await.unwrap(), Some(u.clone()));
    assert!(to.is_dead("jti").await.unwrap());
    assert_eq!(to.throttle_get(&key).await.unwrap(), Some(throttles[0].1));
    assert_eq!(to.meta_get("signing_key").await.unwrap(), Some(vec![1; 32]));
    assert_eq!(to.outbox_page(None, 10).await.unwrap(), jobs);
    assert_eq!(
        to.find_by_unique("user", &UniqueKey::new("email", "a@x"))
            .await
            .unwrap()
            .map(|u| u.id),
        Some(u.id)
    );
}
