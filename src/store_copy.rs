//! `authd store copy`: every record of one store written into another, through the store
//! contract only, so that it works between any two backends (redb to PostgreSQL, back, or
//! redb to redb). Users keep their ids, hashes, unique values and session epochs (old
//! session tokens still verify); dead tokens, throttles, meta (the generated signing key)
//! and queued outbox jobs (with their ids, attempts and schedule) come along.
//!
//! Both daemons must be stopped: the copy reads a consistent store only if no one writes it.
//! The target must be empty; a copy is refused otherwise, so that it never merges two
//! stores. What this module must not do: name a backend, or print (the caller reports).

use authd_strategy_api::store::NewUser;
use authd_strategy_api::{InsertError, Store, StoreError};

/// Records read per page.
const PAGE: usize = 500;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    #[error(
        "the target store is not empty: a copy only goes into an empty store (nothing was written)"
    )]
    TargetNotEmpty,
    #[error("the {side} store failed: {source}")]
    Store {
        side: &'static str,
        source: StoreError,
    },
    #[error("user {id} of {subject} could not be written to the target: {why}")]
    User {
        subject: String,
        id: uuid::Uuid,
        why: String,
    },
}

/// How many records were copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: u64,
    pub unique_values: u64,
    pub dead_tokens: u64,
    pub throttles: u64,
    pub meta: u64,
    pub jobs: u64,
}

/// Where the copy is, for a progress display.
pub trait Progress {
    /// A new kind of record starts (`users`, `dead tokens`, ...).
    fn stage(&self, what: &'static str);
    /// `n` more records of the current kind were copied.
    fn advance(&self, n: u64);
}

/// No display.
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &'static str) {}
    fn advance(&self, _: u64) {}
}

fn source(e: StoreError) -> CopyError {
    CopyError::Store {
        side: "source",
        source: e,
    }
}

fn target(e: StoreError) -> CopyError {
    CopyError::Store {
        side: "target",
        source: e,
    }
}

/// Copies everything in `from` into `to`, which must be empty.
///
/// # Errors
/// When the target is not empty, either store fails, or a user cannot be written.
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    progress: &dyn Progress,
) -> Result<Counts, CopyError> {
    if !to.is_empty().await.map_err(target)? {
        return Err(CopyError::TargetNotEmpty);
    }
    let mut counts = Counts::default();

    progress.stage("meta entries");
    for (key, value) in from.meta_all().await.map_err(source)? {
        to.meta_put_if_absent(&key, value).await.map_err(target)?;
        counts.meta += 1;
        progress.advance(1);
    }

    progress.stage("users");
    for subject in from.subjects().await.map_err(source)? {
        let mut after = None;
        loop {
            let page = from
                .users_page(&subject, after, PAGE)
                .await
                .map_err(source)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for user in page {
                let unique = from.unique_of(&subject, user.id).await.map_err(source)?;
                counts.unique_values += unique.len() as u64;
                let copy = NewUser {
                    id: Some(user.id),
                    attributes: user.attributes,
                    secrets: user.secrets,
                    meta: user.meta,
                    unique,
                    created_at: user.created_at,
                    session_epoch: user.session_epoch,
                };
                match to.insert(&subject, copy).await.map_err(target)? {
                    Ok(_) => {}
                    Err(InsertError::IdTaken) => {
                        return Err(CopyError::User {
                            subject,
                            id: user.id,
                            why: "its id is taken".into(),
                        });
                    }
                    Err(InsertError::Taken(field)) => {
                        return Err(CopyError::User {
                            subject,
                            id: user.id,
                            why: format!("its {field} is held by another user"),
                        });
                    }
                }
                counts.users += 1;
                progress.advance(1);
            }
        }
    }

    progress.stage("dead tokens");
    let mut after = None;
    loop {
        let page = from.dead_tokens_page(after, PAGE).await.map_err(source)?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (key, expires_at) in page {
            to.put_dead_token(key, expires_at).await.map_err(target)?;
            counts.dead_tokens += 1;
            progress.advance(1);
        }
    }

    progress.stage("throttles");
    let mut after = None;
    loop {
        let page = from.throttles_page(after, PAGE).await.map_err(source)?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (key, record) in page {
            to.put_throttle(key, record).await.map_err(target)?;
            counts.throttles += 1;
            progress.advance(1);
        }
    }

    progress.stage("outbox jobs");
    let mut after = None;
    loop {
        let page = from.outbox_page(after, PAGE).await.map_err(source)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key);
        for job in page {
            to.put_job(job).await.map_err(target)?;
            counts.jobs += 1;
            progress.advance(1);
        }
    }
    Ok(counts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use authd_strategy_api::store::{NewJob, ThrottleKey, ThrottleOp, UniqueKey, UserUpdate};
    use serde_json::json;

    use super::*;

    fn redb(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Store> {
        let (store, _) = authd_store_redb::open(&dir.path().join(name)).unwrap();
        Arc::new(store)
    }

    #[tokio::test]
    async fn everything_is_copied_between_two_redb_files_and_a_full_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = redb(&dir, "from.redb");
        let to = redb(&dir, "to.redb");
        let mut ids = Vec::new();
        for i in 0..1_203 {
            let user = NewUser {
                attributes: [("email".to_string(), json!(format!("u{i}@x")))]
                    .into_iter()
                    .collect(),
                secrets: [("hashed_password".to_string(), format!("$argon2id$h{i}"))].into(),
                unique: vec![UniqueKey::new("email", format!("u{i}@x"))],
                created_at: 1_700_000_000 + i,
                ..NewUser::default()
            };
            ids.push(from.insert("user", user).await.unwrap().unwrap().id);
        }
        let admin = NewUser {
            unique: vec![
                UniqueKey::new("username", "root"),
                UniqueKey::new("api_key:api", "k1"),
            ],
            ..NewUser::default()
        };
        let admin = from.insert("admin", admin).await.unwrap().unwrap();
        let bump = UserUpdate {
            bump_sessions: true,
            ..UserUpdate::default()
        };
        from.update("user", ids[7], bump).await.unwrap();
        from.kill("signed-out", u64::MAX).await.unwrap();
        let throttle = ThrottleKey::of("identity:user/password:u1@x");
        from.throttle_apply(
            vec![(
                throttle,
                ThrottleOp::Reserve {
                    limit: 5,
                    window: 60,
                },
            )],
            1_000,
        )
        .await
        .unwrap();
        from.meta_put_if_absent("signing_key", vec![9; 32])
            .await
            .unwrap();
        let job = NewJob {
            kind: "password_reset".into(),
            channel: json!({"type": "webhook", "url": "http://127.0.0.1:9/"}),
            payload: json!({"token": "t"}),
            deadline_ms: u64::MAX,
            retry_base_ms: 100,
            lease_ms: 5_000,
        };
        from.outbox_enqueue(job, 10, 5).await.unwrap().unwrap();

        let counts = copy(from.as_ref(), to.as_ref(), &Silent).await.unwrap();
        assert_eq!(
            counts,
            Counts {
                users: 1_204,
                unique_values: 1_205,
                dead_tokens: 1,
                throttles: 1,
                meta: 1,
                jobs: 1,
            }
        );
        for id in [ids[0], ids[7], ids[1_202]] {
            assert_eq!(
                to.get("user", id).await.unwrap(),
                from.get("user", id).await.unwrap()
            );
        }
        assert_eq!(
            to.get("user", ids[7]).await.unwrap().unwrap().session_epoch,
            1
        );
        assert_eq!(
            to.unique_of("admin", admin.id).await.unwrap(),
            from.unique_of("admin", admin.id).await.unwrap()
        );
        assert!(to.is_dead("signed-out").await.unwrap());
        assert_eq!(
            to.throttle_get(&throttle).await.unwrap(),
            from.throttle_get(&throttle).await.unwrap()
        );
        assert_eq!(to.meta_get("signing_key").await.unwrap(), Some(vec![9; 32]));
        assert_eq!(
            to.outbox_page(None, 10).await.unwrap(),
            from.outbox_page(None, 10).await.unwrap()
        );

        // A second copy into the now full target is refused and writes nothing.
        let again = copy(from.as_ref(), to.as_ref(), &Silent).await;
        assert!(matches!(again, Err(CopyError::TargetNotEmpty)), "{again:?}");
        assert_eq!(to.subjects().await.unwrap().len(), 2);
    }
}
