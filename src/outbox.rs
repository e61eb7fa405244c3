//! The durable outbox: messages that must leave authd (password-reset tokens now; confirmation
//! emails and magic links later) are written to redb, then delivered by one background worker,
//! at least once, across restarts and while the receiver is down.
//!
//! A job is generic: a `kind` (`password_reset`), a channel (the sender's spec, as JSON), a
//! JSON payload, and its schedule (attempts, next attempt, deadline, retry base) under a
//! stable message id. A failed attempt is retried after an exponential back-off with jitter
//! until the deadline, then the job is dropped and the drop logged. Everything is bounded: the
//! number of jobs kept (enqueueing past it is refused) and the attempts in flight.
//!
//! This module knows nothing of HTTP or SMTP: a [`Deliver`] implementation (the senders)
//! carries one attempt out; the outbox decides when, how often and until when. It never logs a
//! payload (it holds tokens).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::store::{Error, Store};

/// (created at, id) -> JSON of [`StoredJobV1`]. Times in Unix milliseconds; the first entry is
/// the oldest job.
const JOBS: TableDefinition<(u64, u128), &[u8]> = TableDefinition::new("outbox_jobs_v1");
/// (next attempt at, created at, id): the order in which jobs fall due.
const DUE: TableDefinition<(u64, u64, u128), ()> = TableDefinition::new("outbox_due_v1");

/// Even with nothing due, the worker looks again this often (a changed clock, a lost wake-up).
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// After a store failure, the worker waits this long before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// A hard bound on one attempt, whatever the sender's own timeouts (at most 5 minutes).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(330);

/// The outbox's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most jobs kept; enqueueing past it is refused (and logged by the caller).
    pub max_jobs: u64,
    /// Most attempts running at once.
    pub max_in_flight: usize,
    /// The longest wait between two attempts, however many failed.
    pub max_backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs: 10_000,
            max_in_flight: 16,
            max_backoff: Duration::from_secs(30 * 60),
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What the payload is, e.g. `password_reset`.
    pub kind: String,
    /// Where and how to deliver: the sender's spec, as JSON (names of secrets, never secrets).
    pub channel: serde_json::Value,
    pub payload: serde_json::Value,
    /// Give up after this time (Unix milliseconds).
    pub deadline_ms: u64,
    /// The first retry delay; it doubles with each failed attempt.
    pub retry_base: Duration,
}

/// A queued job, as the deliverer sees it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub kind: String,
    pub channel: serde_json::Value,
    pub payload: serde_json::Value,
    /// Attempts made before this one.
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub deadline_ms: u64,
    pub retry_base_ms: u64,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
}

impl Job {
    /// The message id, the same on every attempt: `msg_<32 hex digits>`. Receivers use it to
    /// drop duplicates (delivery is at least once).
    pub fn message_id(&self) -> String {
        format!("msg_{}", self.id.simple())
    }
}

/// How a job is written to disk, version 1 (its id and creation time are the key).
#[derive(Debug, Serialize, Deserialize)]
struct StoredJobV1 {
    kind: String,
    channel: serde_json::Value,
    payload: serde_json::Value,
    attempts: u32,
    next_attempt_ms: u64,
    deadline_ms: u64,
    retry_base_ms: u64,
    #[serde(default)]
    last_error: Option<String>,
}

impl StoredJobV1 {
    fn decode((created_ms, id): (u64, u128), bytes: &[u8]) -> Result<Job, Error> {
        let s: StoredJobV1 =
            serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(Job {
            id: Uuid::from_u128(id),
            created_ms,
            kind: s.kind,
            channel: s.channel,
            payload: s.payload,
            attempts: s.attempts,
            next_attempt_ms: s.next_attempt_ms,
            deadline_ms: s.deadline_ms,
            retry_base_ms: s.retry_base_ms,
            last_error: s.last_error,
        })
    }

    fn encode(job: &Job) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&StoredJobV1 {
            kind: job.kind.clone(),
            channel: job.channel.clone(),
            payload: job.payload.clone(),
            attempts: job.attempts,
            next_attempt_ms: job.next_attempt_ms,
            deadline_ms: job.deadline_ms,
            retry_base_ms: job.retry_base_ms,
            last_error: job.last_error.clone(),
        })
        .map_err(|e| Error::Corrupt(e.to_string()))
    }
}

/// Why a job could not be enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    #[error("OB0001 the outbox is full ({0} jobs waiting): message dropped")]
    Full(u64),
    #[error("OB0006 the outbox could not store the message: {0}")]
    Store(#[from] Error),
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again later (the receiver is down, answered non-2xx, timed out; a secret
    /// is missing).
    Retry(String),
    /// Can never succeed (the user has no address): the job is dropped at once.
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(m) | Failure::Permanent(m) => f.write_str(m),
        }
    }
}

/// Carries out one attempt of a job. Must not log the payload.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    /// # Errors
    /// Why the attempt failed, and whether to retry.
    async fn deliver(&self, job: &Job) -> Result<(), Failure>;
}

/// What `/healthz` shows of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Jobs waiting (including those being attempted).
    pub depth: u64,
    /// Age of the oldest waiting job, in seconds.
    pub oldest_age_secs: Option<u64>,
}

/// The outbox's numbers, read from `store`; `None` if the store cannot be read.
pub fn stats(store: &Store) -> Option<Stats> {
    read_stats(&store.db, now_ms()).ok()
}

fn read_stats(db: &Database, now_ms: u64) -> Result<Stats, Error> {
    let tx = db.begin_read()?;
    let jobs = tx.open_table(JOBS)?;
    let oldest = jobs.first()?.map(|(k, _)| k.value().0);
    Ok(Stats {
        depth: jobs.len()?,
        oldest_age_secs: oldest.map(|created| now_ms.saturating_sub(created) / 1000),
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wait before the next attempt after `attempts` failed ones: `base * 2^(attempts-1)`,
/// at most `max`, of which the upper half is random (`jitter` in `0.0..=1.0`) so that jobs
/// that failed together do not all come back together.
pub fn backoff(base_ms: u64, attempts: u32, max: Duration, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(40);
    let full = base_ms
        .saturating_mul(1u64 << exponent)
        .min(u64::try_from(max.as_millis()).unwrap_or(u64::MAX));
    let half = full / 2;
    let random = ((full - half) as f64 * jitter.clamp(0.0, 1.0)) as u64;
    Duration::from_millis((half + random).max(1))
}

/// The durable queue and the handle that wakes its worker. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    wake: Arc<Notify>,
    limits: Limits,
}

/// What one look at the queue found.
struct Claim {
    /// Due now, not in flight, deadline not passed.
    due: Vec<Job>,
    /// Due, but their deadline has passed.
    expired: Vec<Job>,
    /// When the next job not taken falls due.
    next_due_ms: Option<u64>,
    /// Keys of due entries whose job is missing or cannot be read: removed, so that one bad
    /// record cannot stop the queue.
    unreadable: Vec<(u64, u64, u128)>,
}

impl Outbox {
    /// The outbox kept in `store`'s database (its tables are created if missing).
    ///
    /// # Errors
    /// When the store fails.
    pub fn open(store: &Store, limits: Limits) -> Result<Outbox, Error> {
        let db = Arc::clone(&store.db);
        let tx = db.begin_write()?;
        tx.open_table(JOBS)?;
        tx.open_table(DUE)?;
        tx.commit()?;
        Ok(Outbox {
            db,
            wake: Arc::new(Notify::new()),
            limits,
        })
    }

    /// Writes `job` durably (due at once) and wakes the worker. Returns its id.
    ///
    /// # Errors
    /// [`EnqueueError::Full`] past [`Limits::max_jobs`]; a store failure.
    pub async fn enqueue(&self, job: NewJob) -> Result<Uuid, EnqueueError> {
        let now = now_ms();
        let stored = Job {
            id: Uuid::new_v4(),
            created_ms: now,
            kind: job.kind,
            channel: job.channel,
            payload: job.payload,
            attempts: 0,
            next_attempt_ms: now,
            deadline_ms: job.deadline_ms,
            retry_base_ms: u64::try_from(job.retry_base.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            last_error: None,
        };
        let id = stored.id;
        let bytes = StoredJobV1::encode(&stored)?;
        let max = self.limits.max_jobs;
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(Error::from)?;
            {
                let mut jobs = tx.open_table(JOBS).map_err(Error::from)?;
                let depth = jobs.len().map_err(Error::from)?;
                if depth >= max {
                    return Err(EnqueueError::Full(depth));
                }
                let key = (stored.created_ms, stored.id.as_u128());
                jobs.insert(key, bytes.as_slice()).map_err(Error::from)?;
                let mut due = tx.open_table(DUE).map_err(Error::from)?;
                due.insert((stored.next_attempt_ms, key.0, key.1), ())
                    .map_err(Error::from)?;
            }
            tx.commit().map_err(Error::from)?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))??;
        self.wake.notify_one();
        Ok(id)
    }

    /// The outbox's numbers now.
    ///
    /// # Errors
    /// When the store fails.
    pub fn stats(&self) -> Result<Stats, Error> {
        read_stats(&self.db, now_ms())
    }

    /// Looks at the queue in due order: up to `limit` due jobs not in `busy`, the expired
    /// ones met on the way, and when the next one falls due.
    fn claim(&self, now: u64, busy: &[u128], limit: usize) -> Result<Claim, Error> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(DUE)?;
        let jobs = tx.open_table(JOBS)?;
        let mut claim = Claim {
            due: Vec::new(),
            expired: Vec::new(),
            next_due_ms: None,
            unreadable: Vec::new(),
        };
        for entry in due.iter()? {
            let (key, _) = entry?;
            let (next, created, id) = key.value();
            if busy.contains(&id) {
                continue;
            }
            if next > now || claim.due.len() >= limit {
                claim.next_due_ms = Some(next);
                break;
            }
            let job = jobs
                .get((created, id))?
                .map(|bytes| StoredJobV1::decode((created, id), bytes.value()));
            let Some(Ok(job)) = job else {
                claim.unreadable.push((next, created, id));
                continue;
            };
            if job.deadline_ms < now {
                claim.expired.push(job);
            } else {
                claim.due.push(job);
            }
        }
        Ok(claim)
    }

    /// Removes `job` (delivered, dropped or given up).
    async fn remove(&self, job: &Job) -> Result<(), Error> {
        self.remove_keys((job.next_attempt_ms, job.created_ms, job.id.as_u128()))
            .await
    }

    /// Removes the job and due entry of `keys` (next attempt, created, id).
    async fn remove_keys(&self, keys: (u64, u64, u128)) -> Result<(), Error> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write()?;
            {
                tx.open_table(JOBS)?.remove((keys.1, keys.2))?;
                tx.open_table(DUE)?.remove(keys)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))?
    }

    /// Stores `job`'s new schedule (`next_attempt_ms`, attempts, last error); `old_due` is the
    /// due time it was indexed under.
    async fn reschedule(&self, job: &Job, old_due: u64) -> Result<(), Error> {
        let bytes = StoredJobV1::encode(job)?;
        let (created, id, next) = (job.created_ms, job.id.as_u128(), job.next_attempt_ms);
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write()?;
            {
                let mut jobs = tx.open_table(JOBS)?;
                // A job removed meanwhile stays removed.
                if jobs.get((created, id))?.is_none() {
                    return Ok(());
                }
                jobs.insert((created, id), bytes.as_slice())?;
                let mut due = tx.open_table(DUE)?;
                due.remove((old_due, created, id))?;
                due.insert((next, created, id), ())?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))?
    }

    /// Drops `job`, whose deadline has come, and logs it (without its payload).
    async fn give_up(&self, job: &Job) -> Result<(), Error> {
        tracing::error!(
            id = %job.message_id(),
            kind = %job.kind,
            attempts = job.attempts,
            error = job.last_error.as_deref().unwrap_or("no attempt was made in time"),
            "OB0003 message not delivered before its deadline; given up"
        );
        self.remove(job).await
    }

    /// Records the outcome of one attempt: removes the job, or schedules the next attempt, or
    /// gives up at the deadline.
    async fn settle(&self, mut job: Job, outcome: Result<(), Failure>) {
        let id = job.message_id();
        let attempts = job.attempts + 1;
        let result = match outcome {
            Ok(()) => {
                tracing::info!(
                    id = %id,
                    kind = %job.kind,
                    attempts,
                    "OB0100 message delivered"
                );
                self.remove(&job).await
            }
            Err(Failure::Permanent(error)) => {
                tracing::error!(
                    id = %id,
                    kind = %job.kind,
                    attempts,
                    error = %error,
                    "OB0004 message cannot be delivered; dropped"
                );
                self.remove(&job).await
            }
            Err(Failure::Retry(error)) => {
                let now = now_ms();
                let wait = backoff(
                    job.retry_base_ms,
                    attempts,
                    self.limits.max_backoff,
                    rand::random::<f64>(),
                );
                let next = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                if next > job.deadline_ms {
                    job.attempts = attempts;
                    job.last_error = Some(error);
                    self.give_up(&job).await
                } else {
                    tracing::warn!(
                        id = %id,
                        kind = %job.kind,
                        attempts,
                        error = %error,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "OB0002 delivery attempt failed; will retry"
                    );
                    let old_due = job.next_attempt_ms;
                    job.attempts = attempts;
                    job.next_attempt_ms = next;
                    job.last_error = Some(error);
                    self.reschedule(&job, old_due).await
                }
            }
        };
        if let Err(e) = result {
            // The job stays as it was stored: it is attempted again (at least once).
            tracing::warn!(id = %id, error = %e, "OB0005 outbox store failed");
        }
    }

    /// Delivers jobs until `stopped`: pending jobs from before a restart first, then each job
    /// as it is enqueued (the worker is woken, not polling) or falls due again.
    ///
    /// At a stop, attempts in flight are cancelled; their jobs stay queued and are attempted
    /// again after the next start (the receiver may then see a message twice, with the same
    /// id).
    pub async fn run(self, deliverer: Arc<dyn Deliver>, mut stopped: watch::Receiver<bool>) {
        match self.stats() {
            Ok(s) if s.depth > 0 => {
                tracing::info!(
                    pending = s.depth,
                    oldest_age_secs = s.oldest_age_secs,
                    "OB0101 outbox has messages to deliver"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "OB0005 outbox store failed"),
        }
        let mut running: JoinSet<Result<(), Failure>> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, Job> = HashMap::new();
        loop {
            let mut wait = IDLE_RECHECK;
            let free = self.limits.max_in_flight.saturating_sub(running.len());
            if free > 0 {
                let busy: Vec<u128> = in_flight.values().map(|j| j.id.as_u128()).collect();
                let now = now_ms();
                match self.claim(now, &busy, free) {
                    Ok(claim) => {
                        for keys in claim.unreadable {
                            tracing::error!(
                                id = %format!("msg_{}", Uuid::from_u128(keys.2).simple()),
                                "OB0007 unreadable outbox record; dropped"
                            );
                            if let Err(e) = self.remove_keys(keys).await {
                                tracing::warn!(error = %e, "OB0005 outbox store failed");
                            }
                        }
                        for job in claim.expired {
                            if let Err(e) = self.give_up(&job).await {
                                tracing::warn!(error = %e, "OB0005 outbox store failed");
                            }
                        }
                        for job in claim.due {
                            let deliverer = Arc::clone(&deliverer);
                            let attempt = job.clone();
                            let handle = running.spawn(async move {
                                tokio::time::timeout(ATTEMPT_LIMIT, deliverer.deliver(&attempt))
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(Failure::Retry("the attempt timed out".into()))
                                    })
                            });
                            in_flight.insert(handle.id(), job);
                        }
                        if let Some(next) = claim.next_due_ms {
                            wait = wait.min(Duration::from_millis(next.saturating_sub(now)));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "OB0005 outbox store failed");
                        wait = STORE_RETRY;
                    }
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let (task, outcome) = match done {
                        Ok((task, outcome)) => (task, outcome),
                        Err(e) => (e.id(), Err(Failure::Retry(format!("the attempt failed: {e}")))),
                    };
                    if let Some(job) = in_flight.remove(&task) {
                        self.settle(job, outcome).await;
                    }
                }
                () = crate::server::stopped(&mut stopped) => break,
            }
        }
        // Attempts that finished are recorded; the others are cancelled and stay queued.
        running.abort_all();
        while let Some(done) = running.join_next_with_id().await {
            if let Ok((task, outcome)) = done
                && let Some(job) = in_flight.remove(&task)
            {
                self.settle(job, outcome).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(limits: Limits) -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("t.redb")).unwrap_or_else(|e| panic!("{e}"));
        let outbox = Outbox::open(&store, limits).unwrap_or_else(|e| panic!("{e}"));
        (dir, outbox)
    }

    fn new_job(n: u64) -> NewJob {
        NewJob {
            kind: "password_reset".into(),
            channel: serde_json::json!({"type": "webhook", "url": "http://127.0.0.1:9/"}),
            payload: serde_json::json!({ "n": n }),
            deadline_ms: u64::MAX,
            retry_base: Duration::from_millis(50),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(100, 1, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(100, 1, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(100, 3, max, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(100, 3, max, 0.5), Duration::from_millis(300));
        assert_eq!(backoff(100, 30, max, 1.0), max);
        assert_eq!(backoff(100, u32::MAX, max, 0.0), max / 2);
        assert_eq!(backoff(u64::MAX, 5, max, 2.0), max);
        assert_eq!(backoff(0, 1, max, 0.0), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn jobs_are_kept_in_order_and_past_the_limit_refused() {
        let (_dir, outbox) = outbox(Limits {
            max_jobs: 2,
            ..Limits::default()
        });
        let first = outbox.enqueue(new_job(1)).await;
        let second = outbox.enqueue(new_job(2)).await;
        assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
        let third = outbox.enqueue(new_job(3)).await;
        assert!(matches!(third, Err(EnqueueError::Full(2))), "{third:?}");
        assert_eq!(outbox.stats().ok().map(|s| s.depth), Some(2));

        let claim = outbox
            .claim(now_ms() + 10, &[], 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claim.due.len(), 1);
        assert_eq!(claim.due[0].payload["n"], 1, "oldest first");
        assert!(claim.next_due_ms.is_some(), "the second is due too");
        let busy = [claim.due[0].id.as_u128()];
        let claim = outbox
            .claim(now_ms() + 10, &busy, 16)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claim.due.len(), 1);
        assert_eq!(claim.due[0].payload["n"], 2, "jobs in flight are skipped");
        assert_eq!(claim.due[0].message_id().len(), 36);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_rescheduled_then_given_up_at_the_deadline() {
        let (_dir, outbox) = outbox(Limits::default());
        let deadline = now_ms() + 60_000;
        let enqueued = outbox
            .enqueue(NewJob {
                deadline_ms: deadline,
                ..new_job(1)
            })
            .await;
        assert!(enqueued.is_ok(), "{enqueued:?}");
        let job = outbox
            .claim(now_ms(), &[], 16)
            .unwrap_or_else(|e| panic!("{e}"))
            .due
            .remove(0);
        outbox.settle(job, Err(Failure::Retry("down".into()))).await;
        let claim = outbox
            .claim(now_ms(), &[], 16)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(claim.due.is_empty(), "not due before its back-off");
        let next = claim
            .next_due_ms
            .unwrap_or_else(|| panic!("not rescheduled"));
        let later = outbox
            .claim(next, &[], 16)
            .unwrap_or_else(|e| panic!("{e}"));
        let job = &later.due[0];
        assert_eq!(job.attempts, 1);
        assert_eq!(job.last_error.as_deref(), Some("down"));
        assert!(job.next_attempt_ms >= job.created_ms + 25, "{job:?}");

        // Past the deadline, the job is found expired, and settling it gives it up.
        let expired = outbox
            .claim(deadline + 1, &[], 16)
            .unwrap_or_else(|e| panic!("{e}"))
            .expired;
        assert_eq!(expired.len(), 1);
        assert!(outbox.give_up(&expired[0]).await.is_ok());
        assert_eq!(outbox.stats().ok().map(|s| s.depth), Some(0));
    }

    #[tokio::test]
    async fn an_unreadable_record_is_set_aside_without_stopping_the_queue() {
        let (_dir, outbox) = outbox(Limits::default());
        {
            let tx = outbox.db.begin_write().unwrap_or_else(|e| panic!("{e}"));
            {
                let mut jobs = tx.open_table(JOBS).unwrap_or_else(|e| panic!("{e}"));
                let mut due = tx.open_table(DUE).unwrap_or_else(|e| panic!("{e}"));
                // A job that is not JSON, and a due entry without its job.
                let ok = |r: Result<(), redb::StorageError>| r.unwrap_or_else(|e| panic!("{e}"));
                ok(jobs.insert((1, 7), b"not json".as_slice()).map(drop));
                ok(due.insert((1, 1, 7), ()).map(drop));
                ok(due.insert((2, 2, 8), ()).map(drop));
            }
            tx.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        let _ = outbox.enqueue(new_job(1)).await;
        let claim = outbox
            .claim(now_ms(), &[], 16)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claim.unreadable, vec![(1, 1, 7), (2, 2, 8)]);
        assert_eq!(claim.due.len(), 1);
        for keys in claim.unreadable {
            assert!(outbox.remove_keys(keys).await.is_ok());
        }
        assert_eq!(outbox.stats().ok().map(|s| s.depth), Some(1));
    }

    #[tokio::test]
    async fn stats_show_depth_and_the_oldest_job_age() {
        let (_dir, outbox) = outbox(Limits::default());
        assert_eq!(
            outbox.stats().ok(),
            Some(Stats {
                depth: 0,
                oldest_age_secs: None
            })
        );
        let _ = outbox.enqueue(new_job(1)).await;
        let later = read_stats(&outbox.db, now_ms() + 5_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(later.depth, 1);
        assert!(
            later.oldest_age_secs.is_some_and(|a| (4..=6).contains(&a)),
            "{later:?}"
        );
    }
}
