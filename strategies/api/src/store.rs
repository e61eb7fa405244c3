//! The storage a strategy may use. The daemon's redb store implements these traits; a
//! PostgreSQL store can implement the same ones without any strategy changing.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::Error;

/// A user as stored: public attributes and secrets (password hashes) kept apart, so that a
/// secret can never leak into a response by accident.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: Uuid,
    /// Declared attributes, stored as the user gave them.
    pub attributes: Map<String, Value>,
    /// Secret fields by name (e.g. `hashed_password`): never shown.
    pub secrets: BTreeMap<String, String>,
    /// Session tokens carry the epoch they were issued in; a bump revokes older ones.
    pub session_epoch: u64,
}

impl UserRecord {
    /// The user as the API shows it: `{"id": ..., <attributes>}`; secrets are not included.
    pub fn public_view(&self) -> Value {
        let mut out = Map::with_capacity(self.attributes.len() + 1);
        out.insert("id".into(), Value::String(self.id.to_string()));
        for (k, v) in &self.attributes {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }
}

/// A value that must be unique among the users of one subject, already normalized
/// (lower-cased for `ci_string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    pub field: String,
    pub value: String,
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub attributes: Map<String, Value>,
    pub secrets: BTreeMap<String, String>,
    /// Every unique attribute the user has; the insert fails if any is taken.
    pub unique: Vec<UniqueKey>,
}

/// A change of one secret, applied in one transaction.
#[derive(Debug, Clone)]
pub struct SecretChange<'a> {
    pub field: &'a str,
    pub value: String,
    /// Write only if the field still holds this value (`Some(None)`: if it is absent), so that
    /// two changes racing from the same state cannot both win.
    pub expect: Option<Option<&'a str>>,
    /// A single-use token (`jti`, expiry in Unix seconds) to mark used; nothing is written if
    /// it was used already.
    pub consume: Option<(&'a str, u64)>,
    /// Bump the user's session epoch: every session issued before is revoked.
    pub bump_sessions: bool,
}

/// Why an insert did not happen (a verdict for the caller, not a failure of the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// This unique field's value belongs to another user already.
    Taken(String),
}

/// Counters of failed attempts, for brute-force protection. Keys are opaque strings chosen by
/// the caller (the store may hash them); times are Unix seconds, passed in so that tests are
/// exact.
#[async_trait::async_trait]
pub trait ThrottleStore: Send + Sync {
    /// `Some(seconds)` while `key` is locked out.
    ///
    /// # Errors
    /// When the store fails.
    async fn locked_for(&self, key: &str, now: u64) -> Result<Option<u64>, Error>;

    /// Counts one failure of each `(key, limit)` in one durable write, in a fixed window of
    /// `window` seconds; at `limit` failures a key is locked out for `window` seconds,
    /// doubling at each lockout that follows (capped at a day, or one window if that is
    /// longer) until a window passes without one.
    ///
    /// # Errors
    /// When the store fails.
    async fn record_failures(
        &self,
        keys: &[(String, u32)],
        window: u64,
        now: u64,
    ) -> Result<(), Error>;

    /// Forgets `key`'s failures (after a successful sign-in), in one durable write whether or
    /// not there were any, so that it costs what recording a failure costs.
    ///
    /// # Errors
    /// When the store fails.
    async fn clear(&self, key: &str) -> Result<(), Error>;
}

/// Users of every subject (resource), keyed by subject name and id.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn find_by_unique(
        &self,
        subject: &str,
        key: &UniqueKey,
    ) -> Result<Option<UserRecord>, Error>;

    /// # Errors
    /// When the store fails.
    async fn get(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>, Error>;

    /// Inserts a new user with a fresh id, atomically with its unique keys.
    ///
    /// # Errors
    /// When the store fails; a taken unique value is the inner `Err`.
    async fn insert(
        &self,
        subject: &str,
        user: NewUser,
    ) -> Result<Result<UserRecord, InsertError>, Error>;

    /// Changes one secret of a user, atomically with what [`SecretChange`] asks for.
    ///
    /// # Errors
    /// When the store fails. `Ok(None)` when nothing was written: the token was already used,
    /// the secret was no longer the expected one, or the user is gone. The updated user
    /// otherwise.
    async fn set_secret(
        &self,
        subject: &str,
        id: Uuid,
        change: SecretChange<'_>,
    ) -> Result<Option<UserRecord>, Error>;
}
