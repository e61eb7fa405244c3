//! The redb store: users, unique-value index, dead tokens (revoked or used) and metadata.
//!
//! What is persisted is kept apart from domain types and versioned ([`StoredUserV1`]), so the
//! layout can evolve and a second store can share the domain. Writes are durable when their
//! call returns. This module knows nothing of HTTP or strategies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use authd_strategy_api::{
    Error as ApiError, InsertError, NewUser, SecretChange, ThrottleStore, TokenStore, UniqueKey,
    UserRecord, UserStore, now_secs,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// (subject, user id) -> JSON of [`StoredUserV1`].
const USERS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("users_v1");
/// (subject, field, normalized value) -> user id.
const UNIQUE: TableDefinition<(&str, &str, &str), u128> = TableDefinition::new("unique_v1");
/// SHA-256 of a token's `jti` -> its expiry (Unix seconds). A token listed here is dead:
/// revoked, or single-use and used. Never the token itself.
const DEAD_TOKENS: TableDefinition<&[u8], u64> = TableDefinition::new("dead_tokens_v1");
/// SHA-256 of a throttle key -> (failures in window, window start, locked until, lockouts in a
/// row, forget after). Keys are hashed so that identities are not kept in clear.
const THROTTLE: TableDefinition<&[u8], (u64, u64, u64, u64, u64)> =
    TableDefinition::new("throttle_v1");
/// The longest lockout, however many came before.
const MAX_LOCKOUT_SECS: u64 = 86_400;
/// Daemon metadata (the generated signing key).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

const SIGNING_KEY: &str = "signing_key";

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the database {0} is in use by another process (is another authd running on it?)")]
    Locked(PathBuf),
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("ST0001 redb: {0}")]
    Redb(String),
    #[error("ST0002 stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("ST0003 blocking task failed: {0}")]
    Join(String),
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Redb(e.to_string())
            }
        }
    )*};
}
impl_from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Store(e.to_string())
    }
}

/// How a user is written to disk, version 1.
#[derive(Debug, Serialize, Deserialize)]
struct StoredUserV1 {
    attributes: serde_json::Map<String, serde_json::Value>,
    secrets: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    session_epoch: u64,
}

impl StoredUserV1 {
    fn decode(id: u128, bytes: &[u8]) -> Result<UserRecord, Error> {
        let stored: StoredUserV1 =
            serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(UserRecord {
            id: Uuid::from_u128(id),
            attributes: stored.attributes,
            secrets: stored.secrets,
            session_epoch: stored.session_epoch,
        })
    }

    fn encode(user: &UserRecord) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&StoredUserV1 {
            attributes: user.attributes.clone(),
            secrets: user.secrets.clone(),
            session_epoch: user.session_epoch,
        })
        .map_err(|e| Error::Corrupt(e.to_string()))
    }
}

/// The redb database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<Database>,
}

fn token_key(jti: &str) -> [u8; 32] {
    Sha256::digest(jti.as_bytes()).into()
}

impl Store {
    /// Opens (or creates) the database at `path` and its tables.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process has it open; other errors when it cannot be
    /// opened or created.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::Locked(path.to_path_buf()));
            }
            Err(source) => {
                return Err(Error::Open {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let tx = db.begin_write()?;
        tx.open_table(USERS)?;
        tx.open_table(UNIQUE)?;
        tx.open_table(DEAD_TOKENS)?;
        tx.open_table(META)?;
        tx.open_table(THROTTLE)?;
        tx.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    /// Runs blocking store work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Join(e.to_string()))?
    }

    /// The signing key kept in the store, generated (256 random bits) on first use.
    ///
    /// # Errors
    /// When the store fails.
    pub fn signing_key(&self) -> Result<Vec<u8>, Error> {
        let tx = self.db.begin_write()?;
        let key = {
            let mut meta = tx.open_table(META)?;
            let existing = meta.get(SIGNING_KEY)?.map(|g| g.value().to_vec());
            match existing {
                Some(key) => key,
                None => {
                    let mut key = vec![0u8; 32];
                    rand::Rng::fill(&mut rand::rng(), key.as_mut_slice());
                    meta.insert(SIGNING_KEY, key.as_slice())?;
                    key
                }
            }
        };
        tx.commit()?;
        Ok(key)
    }

    /// Deletes dead-token records whose token has expired anyway, and throttle records past
    /// their memory. Returns how many went.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn purge_expired_tokens(&self) -> Result<u64, Error> {
        let now = now_secs();
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let removed = {
                let mut table = tx.open_table(DEAD_TOKENS)?;
                let before = table.len()?;
                table.retain(|_, exp| exp >= now)?;
                let mut throttle = tx.open_table(THROTTLE)?;
                let before_throttle = throttle.len()?;
                throttle.retain(|_, (_, _, _, _, forget_after)| forget_after >= now)?;
                before - table.len()? + before_throttle - throttle.len()?
            };
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    fn find_by_unique_sync(
        &self,
        subject: &str,
        key: &UniqueKey,
    ) -> Result<Option<UserRecord>, Error> {
        let tx = self.db.begin_read()?;
        let unique = tx.open_table(UNIQUE)?;
        let Some(id) = unique
            .get((subject, key.field.as_str(), key.value.as_str()))?
            .map(|g| g.value())
        else {
            return Ok(None);
        };
        let users = tx.open_table(USERS)?;
        let found = users.get((subject, id))?;
        found
            .map(|g| StoredUserV1::decode(id, g.value()))
            .transpose()
    }

    /// Calls `f` with every user of `subject`, from one read snapshot. Blocking: O(users).
    ///
    /// # Errors
    /// When the store fails or a record is unreadable.
    pub fn for_each_user(
        &self,
        subject: &str,
        mut f: impl FnMut(&UserRecord),
    ) -> Result<(), Error> {
        let tx = self.db.begin_read()?;
        let users = tx.open_table(USERS)?;
        for entry in users.range((subject, 0u128)..=(subject, u128::MAX))? {
            let (key, value) = entry?;
            f(&StoredUserV1::decode(key.value().1, value.value())?);
        }
        Ok(())
    }

    /// The user of a session token, from one read transaction: `None` if the token (by its
    /// `jti`) is dead or the user is gone. The hot path of `/me`.
    ///
    /// # Errors
    /// When the store fails or the record is unreadable.
    pub fn live_session_user(
        &self,
        subject: &str,
        id: Uuid,
        jti: &str,
    ) -> Result<Option<UserRecord>, Error> {
        let tx = self.db.begin_read()?;
        if tx
            .open_table(DEAD_TOKENS)?
            .get(token_key(jti).as_slice())?
            .is_some()
        {
            return Ok(None);
        }
        let users = tx.open_table(USERS)?;
        let found = users.get((subject, id.as_u128()))?;
        found
            .map(|g| StoredUserV1::decode(id.as_u128(), g.value()))
            .transpose()
    }

    fn get_sync(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, Error> {
        let tx = self.db.begin_read()?;
        let users = tx.open_table(USERS)?;
        let found = users.get((subject, id.as_u128()))?;
        found
            .map(|g| StoredUserV1::decode(id.as_u128(), g.value()))
            .transpose()
    }

    fn is_dead_sync(&self, jti: &str) -> Result<bool, Error> {
        let tx = self.db.begin_read()?;
        let dead = tx.open_table(DEAD_TOKENS)?;
        Ok(dead.get(token_key(jti).as_slice())?.is_some())
    }
}

// Reads run inline: redb reads are microseconds and never wait for a lock. Writes (a durable
// commit is about a third of a millisecond) go to the blocking pool.
#[async_trait]
impl UserStore for Store {
    async fn find_by_unique(
        &self,
        subject: &str,
        key: &UniqueKey,
    ) -> Result<Option<UserRecord>, ApiError> {
        Ok(self.find_by_unique_sync(subject, key)?)
    }

    async fn get(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, ApiError> {
        Ok(self.get_sync(subject, id)?)
    }

    async fn insert(
        &self,
        subject: &str,
        user: NewUser,
    ) -> Result<Result<UserRecord, InsertError>, ApiError> {
        let subject = subject.to_string();
        let out = self
            .blocking(move |db| {
                let record = UserRecord {
                    id: Uuid::new_v4(),
                    attributes: user.attributes,
                    secrets: user.secrets,
                    session_epoch: 0,
                };
                let tx = db.begin_write()?;
                {
                    let mut unique = tx.open_table(UNIQUE)?;
                    for key in &user.unique {
                        let k = (subject.as_str(), key.field.as_str(), key.value.as_str());
                        if unique.get(k)?.is_some() {
                            // Dropping the transaction aborts it.
                            return Ok(Err(InsertError::Taken(key.field.clone())));
                        }
                        unique.insert(k, record.id.as_u128())?;
                    }
                    let mut users = tx.open_table(USERS)?;
                    users.insert(
                        (subject.as_str(), record.id.as_u128()),
                        StoredUserV1::encode(&record)?.as_slice(),
                    )?;
                }
                tx.commit()?;
                Ok(Ok(record))
            })
            .await?;
        Ok(out)
    }

    async fn set_secret(
        &self,
        subject: &str,
        id: Uuid,
        change: SecretChange<'_>,
    ) -> Result<Option<UserRecord>, ApiError> {
        let subject = subject.to_string();
        let field = change.field.to_string();
        let value = change.value;
        let expect = change.expect.map(|e| e.map(str::to_string));
        let consume = change.consume.map(|(jti, exp)| (token_key(jti), exp));
        let bump_sessions = change.bump_sessions;
        let out = self
            .blocking(move |db| {
                let tx = db.begin_write()?;
                let user = {
                    let mut users = tx.open_table(USERS)?;
                    let existing = users
                        .get((subject.as_str(), id.as_u128()))?
                        .map(|g| StoredUserV1::decode(id.as_u128(), g.value()));
                    let Some(mut user) = existing.transpose()? else {
                        return Ok(None);
                    };
                    if let Some(expected) = &expect
                        && user.secrets.get(&field) != expected.as_ref()
                    {
                        return Ok(None);
                    }
                    if let Some((key, exp)) = consume {
                        let mut dead = tx.open_table(DEAD_TOKENS)?;
                        if dead.get(key.as_slice())?.is_some() {
                            return Ok(None);
                        }
                        dead.insert(key.as_slice(), exp)?;
                    }
                    user.secrets.insert(field, value);
                    if bump_sessions {
                        user.session_epoch += 1;
                    }
                    users.insert(
                        (subject.as_str(), id.as_u128()),
                        StoredUserV1::encode(&user)?.as_slice(),
                    )?;
                    user
                };
                tx.commit()?;
                Ok(Some(user))
            })
            .await?;
        Ok(out)
    }
}

#[async_trait]
impl ThrottleStore for Store {
    async fn locked_for(&self, key: &str, now: u64) -> Result<Option<u64>, ApiError> {
        let tx = self.db.begin_read().map_err(Error::from)?;
        let table = tx.open_table(THROTTLE).map_err(Error::from)?;
        let record = table
            .get(token_key(key).as_slice())
            .map_err(Error::from)?
            .map(|g| g.value());
        Ok(record.and_then(|(_, _, locked_until, _, _)| {
            (locked_until > now).then(|| locked_until - now)
        }))
    }

    async fn record_failures(
        &self,
        keys: &[(String, u32)],
        window: u64,
        now: u64,
    ) -> Result<(), ApiError> {
        let keys: Vec<([u8; 32], u64)> = keys
            .iter()
            .map(|(k, limit)| (token_key(k), u64::from((*limit).max(1))))
            .collect();
        let window = window.max(1);
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(THROTTLE)?;
                for (key, limit) in keys {
                    let existing = table.get(key.as_slice())?.map(|g| g.value());
                    let record = next_throttle(existing, limit, window, now);
                    table.insert(key.as_slice(), record)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn clear(&self, key: &str) -> Result<(), ApiError> {
        let key = token_key(key);
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(THROTTLE)?.remove(key.as_slice())?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

#[async_trait]
impl TokenStore for Store {
    async fn is_revoked(&self, jti: &str) -> Result<bool, ApiError> {
        Ok(self.is_dead_sync(jti)?)
    }

    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), ApiError> {
        let key = token_key(jti);
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(DEAD_TOKENS)?
                .insert(key.as_slice(), expires_at)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn consume(&self, jti: &str, expires_at: u64) -> Result<bool, ApiError> {
        let key = token_key(jti);
        let first = self
            .blocking(move |db| {
                let tx = db.begin_write()?;
                {
                    let mut dead = tx.open_table(DEAD_TOKENS)?;
                    if dead.get(key.as_slice())?.is_some() {
                        return Ok(false);
                    }
                    dead.insert(key.as_slice(), expires_at)?;
                }
                tx.commit()?;
                Ok(true)
            })
            .await?;
        Ok(first)
    }
}

/// A throttle record after one more failure: (failures in window, window start, locked
/// until, lockouts in a row, forget after).
fn next_throttle(
    existing: Option<(u64, u64, u64, u64, u64)>,
    limit: u64,
    window: u64,
    now: u64,
) -> (u64, u64, u64, u64, u64) {
    let (mut count, mut start, mut locked_until, mut lockouts, _) =
        existing.unwrap_or((0, now, 0, 0, 0));
    if now >= start.saturating_add(window) {
        // A new window. Lockouts in a row end once a whole window has passed since the last
        // lockout ended.
        if now >= locked_until.saturating_add(window) {
            lockouts = 0;
        }
        count = 0;
        start = now;
    }
    count += 1;
    if count >= limit {
        let lock = window
            .saturating_mul(1u64 << lockouts.min(20))
            .min(MAX_LOCKOUT_SECS.max(window));
        locked_until = now.saturating_add(lock);
        lockouts += 1;
        count = 0;
        start = now;
    }
    let forget_after = locked_until
        .max(start.saturating_add(window))
        .saturating_add(window);
    (count, start, locked_until, lockouts, forget_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("t.redb")).unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    fn new_user(email: &str) -> NewUser {
        NewUser {
            attributes: [("email".to_string(), serde_json::json!(email))]
                .into_iter()
                .collect(),
            secrets: [("hashed_password".to_string(), "h".to_string())].into(),
            unique: vec![UniqueKey {
                field: "email".into(),
                value: email.to_lowercase(),
            }],
        }
    }

    #[tokio::test]
    async fn unique_values_are_enforced_per_subject() {
        let (_dir, store) = store();
        assert!(matches!(
            store.insert("user", new_user("A@x")).await,
            Ok(Ok(_))
        ));
        assert_eq!(
            store.insert("user", new_user("a@x")).await.ok(),
            Some(Err(InsertError::Taken("email".into())))
        );
        assert!(matches!(
            store.insert("admin", new_user("a@x")).await,
            Ok(Ok(_))
        ));
    }

    #[tokio::test]
    async fn a_token_is_consumed_once_and_a_secret_set_with_it_once() {
        let (_dir, store) = store();
        let Ok(Ok(user)) = store.insert("user", new_user("a@x")).await else {
            panic!("insert failed")
        };
        assert_eq!(store.consume("j1", u64::MAX).await.ok(), Some(true));
        assert_eq!(store.consume("j1", u64::MAX).await.ok(), Some(false));
        let set = |v: &str, jti: &'static str| {
            let store = store.clone();
            let v = v.to_string();
            async move {
                store
                    .set_secret(
                        "user",
                        user.id,
                        SecretChange {
                            field: "hashed_password",
                            value: v,
                            expect: None,
                            consume: Some((jti, u64::MAX)),
                            bump_sessions: true,
                        },
                    )
                    .await
                    .ok()
                    .map(|u| u.map(|u| u.session_epoch))
            }
        };
        assert_eq!(
            set("h2", "j2").await,
            Some(Some(1)),
            "stored, sessions bumped"
        );
        assert_eq!(set("h3", "j2").await, Some(None), "the token was used");
        // A change that expects another current value writes nothing.
        let stale = store
            .set_secret(
                "user",
                user.id,
                SecretChange {
                    field: "hashed_password",
                    value: "h4".into(),
                    expect: Some(Some("h")),
                    consume: None,
                    bump_sessions: false,
                },
            )
            .await
            .ok();
        assert!(matches!(stale, Some(None)), "{stale:?}");
        let stored = store.get("user", user.id).await.ok().flatten();
        assert_eq!(
            stored.and_then(|u| u.secrets.get("hashed_password").cloned()),
            Some("h2".into())
        );
    }

    #[tokio::test]
    async fn for_each_user_visits_the_users_of_one_subject() {
        let (_dir, store) = store();
        for (subject, email) in [("user", "a@x"), ("user", "b@x"), ("admin", "c@x")] {
            assert!(matches!(
                store.insert(subject, new_user(email)).await,
                Ok(Ok(_))
            ));
        }
        let mut seen = Vec::new();
        let r = store.for_each_user("user", |u| seen.push(u.attributes["email"].clone()));
        assert!(r.is_ok(), "{r:?}");
        seen.sort_by_key(ToString::to_string);
        assert_eq!(
            seen,
            vec![serde_json::json!("a@x"), serde_json::json!("b@x")]
        );
    }

    #[tokio::test]
    async fn tokens_are_kept_by_hash_only() {
        let (_dir, store) = store();
        let jti = "6f1c9a52-secret-jti";
        assert!(store.revoke(jti, u64::MAX).await.is_ok());
        let tx = store.db.begin_read().unwrap_or_else(|e| panic!("{e}"));
        let table = tx.open_table(DEAD_TOKENS).unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<Vec<u8>> = table
            .iter()
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|(k, _)| k.value().to_vec())
            .collect();
        assert_eq!(keys, vec![token_key(jti).to_vec()]);
        assert!(!keys[0].windows(jti.len()).any(|w| w == jti.as_bytes()));
    }

    fn keys(k: &str) -> Vec<(String, u32)> {
        vec![(k.to_string(), 3)]
    }

    #[tokio::test]
    async fn failures_lock_out_at_the_limit_and_lockouts_grow() {
        let (_dir, store) = store();
        let t0 = 1_000_000;
        for i in 0..2 {
            assert!(store.record_failures(&keys("k"), 60, t0 + i).await.is_ok());
        }
        assert_eq!(store.locked_for("k", t0 + 2).await.ok(), Some(None));
        assert!(store.record_failures(&keys("k"), 60, t0 + 2).await.is_ok());
        assert_eq!(store.locked_for("k", t0 + 2).await.ok(), Some(Some(60)));
        assert_eq!(store.locked_for("k", t0 + 62).await.ok(), Some(None));
        // The next lockout, right after the first, lasts twice as long.
        for i in 0..3 {
            assert!(
                store
                    .record_failures(&keys("k"), 60, t0 + 62 + i)
                    .await
                    .is_ok()
            );
        }
        assert_eq!(store.locked_for("k", t0 + 64).await.ok(), Some(Some(120)));
        // Other keys are not affected, and clearing forgets.
        assert_eq!(store.locked_for("other", t0 + 64).await.ok(), Some(None));
        assert!(store.clear("k").await.is_ok());
        assert_eq!(store.locked_for("k", t0 + 64).await.ok(), Some(None));
    }

    #[tokio::test]
    async fn expired_dead_tokens_are_purged() {
        let (_dir, store) = store();
        assert!(store.revoke("old", 1).await.is_ok());
        assert!(store.revoke("new", u64::MAX).await.is_ok());
        assert_eq!(store.purge_expired_tokens().await.ok(), Some(1));
        assert_eq!(store.is_revoked("new").await.ok(), Some(true));
        assert_eq!(store.is_revoked("old").await.ok(), Some(false));
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_clearly() {
        let (dir, _store) = store();
        let second = Store::open(&dir.path().join("t.redb"));
        assert!(
            matches!(second, Err(Error::Locked(_))),
            "{:?}",
            second.err()
        );
    }
}
