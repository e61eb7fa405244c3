//! The durable outbox as records: jobs that must leave authd (password-reset emails, magic
//! links, confirmations, events), claimed by workers under a lease.
//!
//! A claim moves a job's next attempt to `now + lease`: the job is invisible to other workers
//! until then, and comes back by itself if the worker that claimed it dies. Completing removes
//! it; a failed attempt schedules the next one. With several daemons on one database each
//! job is claimed by one worker at a time.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What the payload is: `password_reset`, `magic_link`, `confirmation`, `event`.
    pub kind: String,
    /// Where and how to deliver: the sender's spec as JSON (names of secrets, never secrets).
    pub channel: serde_json::Value,
    pub payload: serde_json::Value,
    /// Give up after this time (Unix milliseconds).
    pub deadline_ms: u64,
    /// The first retry delay in milliseconds; it doubles with each failed attempt.
    pub retry_base_ms: u64,
    /// How long a claim keeps the job from other workers (longer than one attempt may take).
    pub lease_ms: u64,
}

/// Where a job is: its creation time and id (the creation time orders the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    /// Unix milliseconds.
    pub created_ms: u64,
    pub id: Uuid,
}

/// A queued job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub key: JobKey,
    pub kind: String,
    pub channel: serde_json::Value,
    pub payload: serde_json::Value,
    /// Attempts made before the current one.
    pub attempts: u32,
    /// Unix milliseconds; during a claim, when the lease ends.
    pub next_attempt_ms: u64,
    pub deadline_ms: u64,
    pub retry_base_ms: u64,
    pub lease_ms: u64,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
}

impl Job {
    /// The message id, the same on every attempt and every daemon: `msg_<32 hex digits>`.
    /// Receivers use it to drop duplicates (delivery is at least once).
    pub fn message_id(&self) -> String {
        format!("msg_{}", self.key.id.simple())
    }
}

/// What one claim took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    /// Due jobs whose deadline has not passed, now leased to the caller.
    pub due: Vec<Job>,
    /// Due jobs past their deadline, leased too: the caller gives them up (logs and completes).
    pub expired: Vec<Job>,
    /// When the next job not taken falls due (Unix milliseconds).
    pub next_due_ms: Option<u64>,
    /// Records that could not be read: the backend removed them; their ids, for the log.
    pub unreadable: Vec<Uuid>,
}

/// The queue is full: the message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFull {
    pub depth: u64,
}

/// The outbox's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OutboxStats {
    /// Jobs waiting (including those being attempted).
    pub depth: u64,
    /// Age of the oldest waiting job, in seconds.
    pub oldest_age_secs: Option<u64>,
}
