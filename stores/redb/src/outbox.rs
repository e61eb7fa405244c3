//! The outbox: jobs keyed by (created, id), and the due index they are claimed from. A claim
//! moves a job's due time to the end of its lease, in the same transaction.

use async_trait::async_trait;
use authd_store_api::{
    Claimed, Job, JobKey, NewJob, OutboxFull, OutboxStats, OutboxStore, StoreError,
};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use crate::tables::*;
use crate::{Outcome, RedbStore};

/// Writes `job` (and its due entry at `next_attempt_ms`).
pub(crate) fn put(tx: &WriteTransaction, job: &Job) -> Outcome<()> {
    let (created, id) = (job.key.created_ms, job.key.id.as_u128());
    tx.open_table(JOBS)?
        .insert((created, id), StoredJobV1::encode(job)?.as_slice())?;
    tx.open_table(DUE)?
        .insert((job.next_attempt_ms, created, id), ())?;
    Ok(())
}

fn get(tx: &WriteTransaction, key: JobKey) -> Outcome<Option<Job>> {
    let k = (key.created_ms, key.id.as_u128());
    let found = tx.open_table(JOBS)?.get(k)?.map(|g| g.value().to_vec());
    Ok(found.map(|b| StoredJobV1::decode(k, &b)).transpose()?)
}

fn remove(tx: &WriteTransaction, job: &Job) -> Outcome<()> {
    let (created, id) = (job.key.created_ms, job.key.id.as_u128());
    tx.open_table(JOBS)?.remove((created, id))?;
    tx.open_table(DUE)?
        .remove((job.next_attempt_ms, created, id))?;
    Ok(())
}

#[async_trait]
impl OutboxStore for RedbStore {
    async fn outbox_enqueue(
        &self,
        job: NewJob,
        max_jobs: u64,
        now_ms: u64,
    ) -> Result<Result<JobKey, OutboxFull>, StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            let depth = tx.open_table(JOBS)?.len()?;
            if depth >= max_jobs {
                return Ok(Err(OutboxFull { depth }));
            }
            let key = JobKey {
                created_ms: now_ms,
                id: Uuid::new_v4(),
            };
            put(
                &tx,
                &Job {
                    key,
                    kind: job.kind,
                    channel: job.channel,
                    payload: job.payload,
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    deadline_ms: job.deadline_ms,
                    retry_base_ms: job.retry_base_ms.max(1),
                    lease_ms: job.lease_ms.max(1),
                    last_error: None,
                },
            )?;
            tx.commit()?;
            Ok(Ok(key))
        })
        .await
    }

    async fn outbox_claim(&self, now_ms: u64, limit: usize) -> Result<Claimed, StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            let mut claimed = Claimed::default();
            // Due entries first (expired ones do not count against the limit, but are
            // bounded too), then leases, in one transaction.
            let mut due_keys = Vec::new();
            {
                let due = tx.open_table(DUE)?;
                for entry in due.iter()? {
                    let (key, _) = entry?;
                    let (next, created, id) = key.value();
                    if next > now_ms || due_keys.len() >= limit.saturating_mul(4).max(16) {
                        break;
                    }
                    due_keys.push((next, created, id));
                }
            }
            let mut taken = 0;
            for (next, created, id) in due_keys {
                let key = JobKey {
                    created_ms: created,
                    id: Uuid::from_u128(id),
                };
                let job = match get(&tx, key) {
                    Ok(Some(job)) if job.next_attempt_ms == next => job,
                    Ok(_) | Err(_) => {
                        // Missing, stale or unreadable: one bad record cannot stop the queue.
                        tx.open_table(DUE)?.remove((next, created, id))?;
                        if get(&tx, key).is_err() {
                            tx.open_table(JOBS)?.remove((created, id))?;
                        }
                        claimed.unreadable.push(key.id);
                        continue;
                    }
                };
                let expired = job.deadline_ms < now_ms;
                if !expired && taken >= limit {
                    continue;
                }
                remove(&tx, &job)?;
                let leased = Job {
                    next_attempt_ms: now_ms.saturating_add(job.lease_ms),
                    ..job
                };
                put(&tx, &leased)?;
                if expired {
                    claimed.expired.push(leased);
                } else {
                    taken += 1;
                    claimed.due.push(leased);
                }
            }
            claimed.next_due_ms = {
                let due = tx.open_table(DUE)?;
                due.first()?.map(|(k, _)| k.value().0)
            };
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn outbox_complete(&self, key: JobKey) -> Result<(), StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            if let Some(job) = get(&tx, key)? {
                remove(&tx, &job)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn outbox_retry(
        &self,
        key: JobKey,
        next_attempt_ms: u64,
        attempts: u32,
        last_error: String,
    ) -> Result<(), StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            // A job removed meanwhile stays removed.
            if let Some(job) = get(&tx, key)? {
                remove(&tx, &job)?;
                put(
                    &tx,
                    &Job {
                        next_attempt_ms,
                        attempts,
                        last_error: Some(last_error),
                        ..job
                    },
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn outbox_stats(&self, now_ms: u64) -> Result<OutboxStats, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let jobs = tx.open_table(JOBS)?;
            let oldest = jobs.first()?.map(|(k, _)| k.value().0);
            Ok(OutboxStats {
                depth: jobs.len()?,
                oldest_age_secs: oldest.map(|created| now_ms.saturating_sub(created) / 1000),
            })
        })
    }
}
