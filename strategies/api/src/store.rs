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

/// Why an insert did not happen (a verdict for the caller, not a failure of the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// This unique field's value belongs to another user already.
    Taken(String),
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

    /// Sets one secret of a user. When `consume` names a single-use token (by its `jti` and
    /// expiry in Unix seconds), the token is marked used in the same transaction, and nothing is
    /// written if it was used already.
    ///
    /// # Errors
    /// When the store fails. `Ok(false)` when the token was already used or the user is gone.
    async fn set_secret(
        &self,
        subject: &str,
        id: Uuid,
        field: &str,
        value: String,
        consume: Option<(&str, u64)>,
    ) -> Result<bool, Error>;
}
