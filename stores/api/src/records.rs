//! The records a backend stores: users and their unique values. Domain types shared by every
//! backend; each backend keeps its own versioned on-disk form of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A user as stored: public attributes, secrets (credentials: password hashes, key hashes)
/// and internal state kept apart, so that neither a secret nor internal state can leak into a
/// response by accident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: Uuid,
    /// Declared attributes, stored as the user gave them.
    pub attributes: Map<String, Value>,
    /// Credentials by field name (e.g. `hashed_password`): never shown.
    pub secrets: BTreeMap<String, String>,
    /// State that belongs to the daemon or a strategy and is not an attribute (for example
    /// `confirmed_at`, a pending change of a monitored field): never shown as such.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Every token of the user carries the epoch it was issued in; a bump revokes older ones.
    pub session_epoch: u64,
    /// Unix seconds (0 for users stored before it was recorded).
    #[serde(default)]
    pub created_at: u64,
}

impl UserRecord {
    /// The user as the API shows it: `{"id": ..., <attributes>}`; secrets and meta are not
    /// included.
    pub fn public_view(&self) -> Value {
        let mut out = Map::with_capacity(self.attributes.len() + 1);
        out.insert("id".into(), Value::String(self.id.to_string()));
        for (k, v) in &self.attributes {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }
}

/// A value that must be unique among the users of one subject, already prepared by the
/// domain (PRECIS-prepared for `ci_string`), e.g. `{field: "email", value: "ada@example.com"}`.
/// Strategies may keep values of their own here (an API key's id under `api_key:<strategy>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UniqueKey {
    pub field: String,
    pub value: String,
}

impl UniqueKey {
    pub fn new(field: impl Into<String>, value: impl Into<String>) -> Self {
        UniqueKey {
            field: field.into(),
            value: value.into(),
        }
    }
}

/// A user to insert.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// The id to use (an import keeping its ids); a fresh random one when `None`.
    pub id: Option<Uuid>,
    pub attributes: Map<String, Value>,
    pub secrets: BTreeMap<String, String>,
    pub meta: Map<String, Value>,
    /// Every unique value the user has; the insert fails if any is taken.
    pub unique: Vec<UniqueKey>,
    /// Unix seconds.
    pub created_at: u64,
    /// Normally 0; kept by a copy from another store.
    pub session_epoch: u64,
}

/// Why an insert did not happen (an answer, not a failure of the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// This unique field's value belongs to another user already.
    Taken(String),
    /// A user with this id exists already.
    IdTaken,
}

/// A change of one user, applied in one transaction, or not at all.
///
/// Every expectation is checked first; then the token is consumed, the unique values moved,
/// the fields written and the session epoch bumped, together.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// Write only if each secret still holds this value (`None`: is absent), so that two
    /// changes racing from the same state cannot both win.
    pub expect_secrets: Vec<(String, Option<String>)>,
    /// Write only if the session epoch is still this one.
    pub expect_epoch: Option<u64>,
    /// A single-use token (`jti`, expiry in Unix seconds) to mark used; nothing is written if
    /// it was used already.
    pub consume: Option<(String, u64)>,
    /// Attributes to set; `Value::Null` removes one.
    pub attributes: Map<String, Value>,
    /// Secrets to set; `None` removes one.
    pub secrets: BTreeMap<String, Option<String>>,
    /// Meta entries to set; `Value::Null` removes one.
    pub meta: Map<String, Value>,
    /// Unique values the user no longer holds (only removed if they are the user's).
    pub unique_remove: Vec<UniqueKey>,
    /// Unique values the user now holds; the whole update fails if one belongs to another.
    pub unique_add: Vec<UniqueKey>,
    /// Bump the session epoch: every token of the user issued before dies.
    pub bump_sessions: bool,
}

impl UserUpdate {
    /// Whether this update changes nothing stored (it may still consume a token).
    pub fn writes_nothing(&self) -> bool {
        self.attributes.is_empty()
            && self.secrets.is_empty()
            && self.meta.is_empty()
            && self.unique_remove.is_empty()
            && self.unique_add.is_empty()
            && !self.bump_sessions
    }
}

/// What became of a [`UserUpdate`].
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// Written; the user as it is now.
    Updated(UserRecord),
    /// No such user.
    NotFound,
    /// An expectation did not hold: someone else changed the user first.
    Conflict,
    /// The token to consume was used already.
    TokenUsed,
    /// A unique value to add belongs to another user (its field).
    Taken(String),
}

/// Two users whose values prepare to the same unique value, found while the unique index was
/// rebuilt: the first keeps the value, the other is reported, never merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collision {
    pub key: UniqueKey,
    /// Keeps the value in the index.
    pub kept: Uuid,
    /// Holds the same value and is left out of the index.
    pub left_out: Uuid,
}
