//! The traits a backend implements. They are split by concern for readability; [`Store`]
//! is all of them, and is what the daemon holds (`Arc<dyn Store>`).

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::StoreError;
use crate::outbox::{Claimed, Job, JobKey, NewJob, OutboxFull, OutboxStats};
use crate::records::{
    Collision, InsertError, NewUser, UniqueKey, UpdateOutcome, UserRecord, UserUpdate,
};
use crate::throttle::{ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleRecord};

type Result<T> = std::result::Result<T, StoreError>;

/// How a token is kept by the token tables: SHA-256 of its `jti`, never the token itself.
pub fn token_key(jti: &str) -> [u8; 32] {
    Sha256::digest(jti.as_bytes()).into()
}

/// Users of every subject (resource), keyed by subject name and id, with the unique values
/// that identify them.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn get(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>>;

    /// The user holding a unique value.
    ///
    /// # Errors
    /// When the store fails.
    async fn find_by_unique(&self, subject: &str, key: &UniqueKey) -> Result<Option<UserRecord>>;

    /// Inserts a user atomically with its unique values.
    ///
    /// # Errors
    /// When the store fails; a taken value is the inner `Err`.
    async fn insert(
        &self,
        subject: &str,
        user: NewUser,
    ) -> Result<std::result::Result<UserRecord, InsertError>>;

    /// Inserts many users (an import), each atomically with its unique values; one refused
    /// user does not stop the others. Backends may do it in fewer durable writes than one per
    /// user; the default inserts them one by one.
    ///
    /// # Errors
    /// When the store fails (the users before the failure may be inserted).
    async fn insert_batch(
        &self,
        subject: &str,
        users: Vec<NewUser>,
    ) -> Result<Vec<std::result::Result<UserRecord, InsertError>>> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            out.push(self.insert(subject, user).await?);
        }
        Ok(out)
    }

    /// Applies `update` in one transaction, or nothing of it.
    ///
    /// # Errors
    /// When the store fails; an unmet expectation, a used token or a taken value is an
    /// [`UpdateOutcome`].
    async fn update(&self, subject: &str, id: Uuid, update: UserUpdate) -> Result<UpdateOutcome>;

    /// Deletes a user and every unique value it holds. Returns the user as it was.
    ///
    /// # Errors
    /// When the store fails.
    async fn delete(&self, subject: &str, id: Uuid) -> Result<Option<UserRecord>>;

    /// Up to `limit` users of `subject` with ids after `after`, in id order (a cursor).
    ///
    /// # Errors
    /// When the store fails.
    async fn users_page(
        &self,
        subject: &str,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<UserRecord>>;

    /// The user of a session token in one read: `None` if the token (by its `jti`) is dead or
    /// the user is gone. The hot path of `/me`.
    ///
    /// # Errors
    /// When the store fails.
    async fn session_user(&self, subject: &str, id: Uuid, jti: &str) -> Result<Option<UserRecord>>;

    /// The unique values a user holds.
    ///
    /// # Errors
    /// When the store fails.
    async fn unique_of(&self, subject: &str, id: Uuid) -> Result<Vec<UniqueKey>>;

    /// Replaces the whole unique index of `subject` with `entries`, in order; an entry whose
    /// value is already taken by an earlier one is left out and reported.
    ///
    /// # Errors
    /// When the store fails.
    async fn rebuild_unique(
        &self,
        subject: &str,
        entries: Vec<(UniqueKey, Uuid)>,
    ) -> Result<Vec<Collision>>;

    /// The subjects that have users.
    ///
    /// # Errors
    /// When the store fails.
    async fn subjects(&self) -> Result<Vec<String>>;
}

/// Server-side token state: dead tokens (signed out, or single-use and used), kept by
/// [`token_key`] until they would have expired anyway.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn is_dead(&self, jti: &str) -> Result<bool>;

    /// Marks a token dead until `expires_at` (Unix seconds).
    ///
    /// # Errors
    /// When the store fails.
    async fn kill(&self, jti: &str, expires_at: u64) -> Result<()>;

    /// Marks a single-use token used: `true` for the first call only, however many race.
    ///
    /// # Errors
    /// When the store fails.
    async fn consume(&self, jti: &str, expires_at: u64) -> Result<bool>;
}

/// Throttle records, changed only through the policy of [`crate::throttle::apply`].
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn throttle_get(&self, key: &ThrottleKey) -> Result<Option<ThrottleRecord>>;

    /// Applies each `(key, op)` with [`crate::throttle::apply`] in one transaction (one
    /// durable write), atomically with any other daemon doing the same: counts made on several
    /// daemons add up. Outcomes are in the order of `ops`.
    ///
    /// # Errors
    /// When the store fails.
    async fn throttle_apply(
        &self,
        ops: Vec<(ThrottleKey, ThrottleOp)>,
        now: u64,
    ) -> Result<Vec<ThrottleOutcome>>;
}

/// Small named values of the daemon: the generated signing key, key sets, versions.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` unless `key` has one; returns the value now stored (of two daemons
    /// racing, both get the winner's).
    ///
    /// # Errors
    /// When the store fails.
    async fn meta_put_if_absent(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>>;

    /// Sets `key` to `new` (`None`: deletes it) only if it holds `expected` (`None`: absent).
    /// `true` when written.
    ///
    /// # Errors
    /// When the store fails.
    async fn meta_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool>;
}

/// The durable outbox (see [`crate::outbox`]).
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Writes `job` durably, due at once, unless `max_jobs` are waiting.
    ///
    /// # Errors
    /// When the store fails; a full queue is the inner `Err`.
    async fn outbox_enqueue(
        &self,
        job: NewJob,
        max_jobs: u64,
        now_ms: u64,
    ) -> Result<std::result::Result<JobKey, OutboxFull>>;

    /// Leases up to `limit` due jobs (oldest due first) to the caller: each one's next attempt
    /// moves to `now_ms + lease_ms` of the job.
    ///
    /// # Errors
    /// When the store fails.
    async fn outbox_claim(&self, now_ms: u64, limit: usize) -> Result<Claimed>;

    /// Removes a job (delivered, dropped or given up).
    ///
    /// # Errors
    /// When the store fails.
    async fn outbox_complete(&self, key: JobKey) -> Result<()>;

    /// Schedules the next attempt of a job after a failed one. A job removed meanwhile stays
    /// removed.
    ///
    /// # Errors
    /// When the store fails.
    async fn outbox_retry(
        &self,
        key: JobKey,
        next_attempt_ms: u64,
        attempts: u32,
        last_error: String,
    ) -> Result<()>;

    /// # Errors
    /// When the store fails.
    async fn outbox_stats(&self, now_ms: u64) -> Result<OutboxStats>;
}

/// How many records a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub dead_tokens: u64,
    pub throttles: u64,
}

/// Upkeep.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Deletes dead-token records whose token has expired anyway and throttle records past
    /// their `forget_after`. Idempotent: several daemons may run it.
    ///
    /// # Errors
    /// When the store fails.
    async fn purge(&self, now: u64) -> Result<PurgeCounts>;

    /// Whether the store serves now (a cheap read).
    ///
    /// # Errors
    /// Why it does not.
    async fn health(&self) -> Result<()>;

    /// A short name for logs and status: `redb` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Reading and writing every record as it is, for `authd store copy` (with the daemons
/// stopped). Pages go in key order; `after` is the last key of the previous page.
#[async_trait]
pub trait Backup: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn dead_tokens_page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<([u8; 32], u64)>>;

    /// # Errors
    /// When the store fails.
    async fn put_dead_token(&self, key: [u8; 32], expires_at: u64) -> Result<()>;

    /// # Errors
    /// When the store fails.
    async fn throttles_page(
        &self,
        after: Option<ThrottleKey>,
        limit: usize,
    ) -> Result<Vec<(ThrottleKey, ThrottleRecord)>>;

    /// # Errors
    /// When the store fails.
    async fn put_throttle(&self, key: ThrottleKey, record: ThrottleRecord) -> Result<()>;

    /// Every meta entry.
    ///
    /// # Errors
    /// When the store fails.
    async fn meta_all(&self) -> Result<Vec<(String, Vec<u8>)>>;

    /// # Errors
    /// When the store fails.
    async fn outbox_page(&self, after: Option<JobKey>, limit: usize) -> Result<Vec<Job>>;

    /// Writes a job as it is (attempts, schedule and id kept).
    ///
    /// # Errors
    /// When the store fails.
    async fn put_job(&self, job: Job) -> Result<()>;

    /// Whether nothing at all is stored (the target of a copy must be empty).
    ///
    /// # Errors
    /// When the store fails.
    async fn is_empty(&self) -> Result<bool>;
}

/// Everything a backend is.
pub trait Store:
    UserStore + TokenStore + ThrottleStore + MetaStore + OutboxStore + Maintenance + Backup
{
}

impl<T> Store for T where
    T: UserStore + TokenStore + ThrottleStore + MetaStore + OutboxStore + Maintenance + Backup
{
}
