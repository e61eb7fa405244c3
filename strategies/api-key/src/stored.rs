//! How a user's keys of one strategy are kept: one JSON record in the user's secrets
//! (`api_keys:<strategy>`), versioned apart from the domain, changed only by compare-and-swap
//! on the whole record (so that two creations racing cannot pass `max_keys_per_user`, and a
//! flush of last uses cannot bring back a deleted key). Each key id is also a unique value
//! of the user (`api_key:<strategy>`), which is how a presented key finds its user.
//!
//! Must not hold a key in clear: only its keyed hash.

use std::collections::BTreeMap;

use authd_strategy_api::{Error, UserRecord};
use serde::{Deserialize, Serialize};

/// One key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredKeyV1 {
    pub name: String,
    /// Hex of HMAC-SHA-256 (see `key::digest`).
    pub hash: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The user's count of password resets when the key was made (`revoke_on_reset`).
    #[serde(default)]
    pub resets: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
}

/// Every key of one user for one strategy, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredKeysV1 {
    pub v: u32,
    pub keys: BTreeMap<String, StoredKeyV1>,
}

impl StoredKeysV1 {
    /// The record of `user` under `field` (empty when there is none).
    ///
    /// # Errors
    /// When the stored text is not a record of this version (damaged, or written by a newer
    /// authd).
    pub fn of(user: &UserRecord, field: &str) -> Result<StoredKeysV1, Error> {
        match user.secrets.get(field) {
            None => Ok(StoredKeysV1 {
                v: 1,
                keys: BTreeMap::new(),
            }),
            Some(text) => match serde_json::from_str::<StoredKeysV1>(text) {
                Ok(record) if record.v == 1 => Ok(record),
                _ => Err(Error::Internal(format!(
                    "AK0001 the API keys of a user under `{field}` are unreadable"
                ))),
            },
        }
    }

    /// The text to store; `None` when no key is left (the secret is removed).
    pub fn to_text(&self) -> Option<String> {
        if self.keys.is_empty() {
            return None;
        }
        serde_json::to_string(self).ok()
    }
}
