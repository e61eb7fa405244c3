//! The outbox worker: delivers queued messages at least once, across restarts, while the
//! receiver is down, and with several daemons on one database (each job is leased to one
//! worker at a time by the store; a job whose daemon died comes back after its lease).
//!
//! A failed attempt is retried after an exponential back-off with jitter until the job's
//! deadline, then the job is dropped and the drop logged. Attempts in flight are bounded. This
//! module knows nothing of HTTP or SMTP (the senders carry attempts out) and never logs a
//! payload (it holds tokens).

use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::store::Job;
use authd_strategy_api::{Clock, OutboxStore};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{DaemonSenders, Failure};

/// Even with nothing due, the worker looks again this often (a changed clock, a job enqueued
/// by another daemon, a lost wake-up).
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// After a store failure, the worker waits this long before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

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

/// The worker.
pub struct Worker {
    pub store: Arc<dyn OutboxStore>,
    pub senders: Arc<DaemonSenders>,
    pub wake: Arc<Notify>,
    pub limits: Limits,
    pub clock: Clock,
    /// With `[metrics]`: counts each attempt's result.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The channel of a job (`webhook`, `smtp`), as a label.
fn channel_of(job: &Job) -> &'static str {
    match job.channel.get("type").and_then(serde_json::Value::as_str) {
        Some("webhook") => "webhook",
        Some("smtp") => "smtp",
        _ => "other",
    }
}

impl Worker {
    fn count(&self, job: &Job, result: &'static str) {
        if let Some(m) = &self.metrics {
            m.delivery(&job.kind, channel_of(job), result);
        }
    }

    /// Records the outcome of one attempt: removes the job, or schedules the next attempt, or
    /// gives up at the deadline.
    async fn settle(&self, job: Job, outcome: Result<(), Failure>) {
        let id = job.message_id();
        let attempts = job.attempts + 1;
        let result = match outcome {
            Ok(()) => {
                self.count(&job, "ok");
                tracing::info!(id = %id, kind = %job.kind, attempts, "OB0100 message delivered");
                self.store.outbox_complete(job.key).await
            }
            Err(Failure::Permanent(error)) => {
                self.count(&job, "dropped");
                tracing::error!(id = %id, kind = %job.kind, attempts, error = %error, "OB0004 message cannot be delivered; dropped");
                self.store.outbox_complete(job.key).await
            }
            Err(Failure::Retry(error)) => {
                let now = self.clock.now_ms();
                let wait = backoff(
                    job.retry_base_ms,
                    attempts,
                    self.limits.max_backoff,
                    rand::random::<f64>(),
                );
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                let next = now.saturating_add(wait_ms);
                if next > job.deadline_ms {
                    self.count(&job, "expired");
                    tracing::error!(id = %id, kind = %job.kind, attempts, error = %error, "OB0003 message not delivered before its deadline; given up");
                    self.store.outbox_complete(job.key).await
                } else {
                    self.count(&job, "retry");
                    tracing::warn!(id = %id, kind = %job.kind, attempts, error = %error, retry_in_ms = wait_ms, "OB0002 delivery attempt failed; will retry");
                    self.store
                        .outbox_retry(job.key, next, attempts, error)
                        .await
                }
            }
        };
        if let Err(e) = result {
            // The job stays leased as it was: it is attempted again after its lease.
            tracing::warn!(id = %id, error = %e, "OB0005 outbox store failed");
        }
    }

    /// Delivers jobs until `stop`: pending jobs from before a restart first, then each job as
    /// it is enqueued (the worker is woken) or falls due again.
    ///
    /// At a stop, attempts in flight are cancelled; their jobs come back after their lease
    /// (the receiver may then see a message twice, with the same id).
    pub async fn run(self, stop: CancellationToken) {
        match self.store.outbox_stats(self.clock.now_ms()).await {
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
        let mut running: JoinSet<(Job, Result<(), Failure>)> = JoinSet::new();
        loop {
            let mut wait = IDLE_RECHECK;
            let free = self.limits.max_in_flight.saturating_sub(running.len());
            if free > 0 {
                let now = self.clock.now_ms();
                match self.store.outbox_claim(now, free).await {
                    Ok(claim) => {
                        for id in claim.unreadable {
                            tracing::error!(id = %format!("msg_{}", id.simple()), "OB0007 unreadable outbox record; dropped");
                        }
                        for job in claim.expired {
                            self.count(&job, "expired");
                            tracing::error!(id = %job.message_id(), kind = %job.kind, attempts = job.attempts, error = job.last_error.as_deref().unwrap_or("no attempt was made in time"), "OB0003 message not delivered before its deadline; given up");
                            if let Err(e) = self.store.outbox_complete(job.key).await {
                                tracing::warn!(error = %e, "OB0005 outbox store failed");
                            }
                        }
                        for job in claim.due {
                            let senders = Arc::clone(&self.senders);
                            // An attempt never outlives its lease.
                            let limit =
                                Duration::from_millis(job.lease_ms.saturating_sub(1_000).max(1));
                            running.spawn(async move {
                                let outcome = tokio::time::timeout(limit, senders.deliver(&job))
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(Failure::Retry("the attempt timed out".into()))
                                    });
                                (job, outcome)
                            });
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
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok((job, outcome)) = done {
                        self.settle(job, outcome).await;
                    }
                }
                () = stop.cancelled() => break,
            }
        }
        // Attempts that finished are recorded; the others are cancelled and come back later.
        running.abort_all();
        while let Some(done) = running.join_next().await {
            if let Ok((job, outcome)) = done {
                self.settle(job, outcome).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
}
