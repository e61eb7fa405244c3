//! The tables of the redb file and the on-disk form of their records.
//!
//! Table names carry a version (`_v1`, `_v2`): a change of key or meaning makes a new table,
//! migrated at open ([`crate::open`]). A field added with a serde default does not: records
//! written before it read as the default. These types are never shown outside this crate.

use std::collections::BTreeMap;

use authd_store_api::{Job, JobKey, StoreError, ThrottleRecord, UserRecord};
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// (subject, user id) -> JSON of [`StoredUserV1`].
pub const USERS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("users_v1");
/// Version 1 of the unique index, before values were kept per user too: migrated into
/// [`UNIQUE`] and [`UNIQUE_BY_USER`] at open, then deleted.
pub const UNIQUE_V1: TableDefinition<(&str, &str, &str), u128> = TableDefinition::new("unique_v1");
/// (subject, field, prepared value) -> user id.
pub const UNIQUE: TableDefinition<(&str, &str, &str), u128> = TableDefinition::new("unique_v2");
/// (subject, user id, field, prepared value): the values a user holds, to move and delete them.
pub const UNIQUE_BY_USER: TableDefinition<(&str, u128, &str, &str), ()> =
    TableDefinition::new("unique_by_user_v2");
/// SHA-256 of a token's `jti` -> its expiry (Unix seconds): revoked or used tokens.
pub const DEAD_TOKENS: TableDefinition<&[u8], u64> = TableDefinition::new("dead_tokens_v1");
/// SHA-256 of a throttle key -> (count, window start, locked until, lockouts in a row,
/// forget after).
pub const THROTTLE: TableDefinition<&[u8], (u64, u64, u64, u64, u64)> =
    TableDefinition::new("throttle_v1");
/// Daemon metadata: the generated signing key, key sets, versions.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");
/// (created at ms, job id) -> JSON of [`StoredJobV1`]; the first entry is the oldest job.
pub const JOBS: TableDefinition<(u64, u128), &[u8]> = TableDefinition::new("outbox_jobs_v1");
/// (next attempt at ms, created at ms, job id): the order in which jobs fall due.
pub const DUE: TableDefinition<(u64, u64, u128), ()> = TableDefinition::new("outbox_due_v1");

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// How a user is written to disk, version 1 (fields added later have defaults).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredUserV1 {
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub session_epoch: u64,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub created_at: u64,
}

impl StoredUserV1 {
    pub fn decode(id: u128, bytes: &[u8]) -> Result<UserRecord, StoreError> {
        let s: StoredUserV1 = serde_json::from_slice(bytes).map_err(|e| corrupt("user", e))?;
        Ok(UserRecord {
            id: Uuid::from_u128(id),
            attributes: s.attributes,
            secrets: s.secrets,
            meta: s.meta,
            session_epoch: s.session_epoch,
            created_at: s.created_at,
        })
    }

    pub fn encode(user: &UserRecord) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(&StoredUserV1 {
            attributes: user.attributes.clone(),
            secrets: user.secrets.clone(),
            session_epoch: user.session_epoch,
            meta: user.meta.clone(),
            created_at: user.created_at,
        })
        .map_err(|e| corrupt("user", e))
    }
}

/// How an outbox job is written to disk, version 1 (its id and creation time are the key).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredJobV1 {
    pub kind: String,
    pub channel: serde_json::Value,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub deadline_ms: u64,
    pub retry_base_ms: u64,
    /// Jobs from before leases were recorded get a minute.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

fn default_lease() -> u64 {
    60_000
}

impl StoredJobV1 {
    pub fn decode((created_ms, id): (u64, u128), bytes: &[u8]) -> Result<Job, StoreError> {
        let s: StoredJobV1 = serde_json::from_slice(bytes).map_err(|e| corrupt("outbox job", e))?;
        Ok(Job {
            key: JobKey {
                created_ms,
                id: Uuid::from_u128(id),
            },
            kind: s.kind,
            channel: s.channel,
            payload: s.payload,
            attempts: s.attempts,
            next_attempt_ms: s.next_attempt_ms,
            deadline_ms: s.deadline_ms,
            retry_base_ms: s.retry_base_ms,
            lease_ms: s.lease_ms,
            last_error: s.last_error,
        })
    }

    pub fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(&StoredJobV1 {
            kind: job.kind.clone(),
            channel: job.channel.clone(),
            payload: job.payload.clone(),
            attempts: job.attempts,
            next_attempt_ms: job.next_attempt_ms,
            deadline_ms: job.deadline_ms,
            retry_base_ms: job.retry_base_ms,
            lease_ms: job.lease_ms,
            last_error: job.last_error.clone(),
        })
        .map_err(|e| corrupt("outbox job", e))
    }
}

pub type ThrottleTuple = (u64, u64, u64, u64, u64);

pub fn throttle_to_tuple(r: &ThrottleRecord) -> ThrottleTuple {
    (
        r.count,
        r.window_start,
        r.locked_until,
        r.lockouts,
        r.forget_after,
    )
}

pub fn throttle_from_tuple(t: ThrottleTuple) -> ThrottleRecord {
    ThrottleRecord {
        count: t.0,
        window_start: t.1,
        locked_until: t.2,
        lockouts: t.3,
        forget_after: t.4,
    }
}
