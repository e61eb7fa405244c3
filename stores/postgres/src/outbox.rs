//! The outbox. A claim takes due jobs with `FOR UPDATE SKIP LOCKED` (a job another daemon is
//! claiming at the same moment is skipped, never waited for, never taken twice) and moves each
//! one's next attempt to the end of its lease in the same statement: the job is invisible to
//! every other worker until then, and comes back by itself if its daemon dies.

use async_trait::async_trait;
use authd_store_api::{
    Claimed, Job, JobKey, NewJob, OutboxFull, OutboxStats, OutboxStore, StoreError,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{Failure, PgStore, db_u64, from_db};

pub(crate) const COLUMNS: &str = "created_ms, id, kind, channel, payload, attempts, \
     next_attempt_ms, deadline_ms, retry_base_ms, lease_ms, last_error";

pub(crate) fn decode(row: &Row) -> Result<Job, Failure> {
    let attempts: i32 = row.try_get(5)?;
    Ok(Job {
        key: JobKey {
            created_ms: from_db(row.try_get(0)?),
            id: row.try_get(1)?,
        },
        kind: row.try_get(2)?,
        channel: row.try_get(3)?,
        payload: row.try_get(4)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_ms: from_db(row.try_get(6)?),
        deadline_ms: from_db(row.try_get(7)?),
        retry_base_ms: from_db(row.try_get(8)?),
        lease_ms: from_db(row.try_get(9)?),
        last_error: row.try_get(10)?,
    })
}

/// Writes a job as it is (a copy keeps attempts, schedule and id).
pub(crate) const PUT: &str = "INSERT INTO authd_outbox (created_ms, id, kind, channel, payload, \
     attempts, next_attempt_ms, deadline_ms, retry_base_ms, lease_ms, last_error) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (created_ms, id) DO UPDATE SET kind = EXCLUDED.kind, channel = EXCLUDED.channel, \
     payload = EXCLUDED.payload, attempts = EXCLUDED.attempts, \
     next_attempt_ms = EXCLUDED.next_attempt_ms, deadline_ms = EXCLUDED.deadline_ms, \
     retry_base_ms = EXCLUDED.retry_base_ms, lease_ms = EXCLUDED.lease_ms, \
     last_error = EXCLUDED.last_error";

pub(crate) async fn put(c: &deadpool_postgres::ClientWrapper, job: &Job) -> Result<(), Failure> {
    let stmt = c.prepare_cached(PUT).await?;
    c.execute(
        &stmt,
        &[
            &db_u64(job.key.created_ms),
            &job.key.id,
            &job.kind,
            &job.channel,
            &job.payload,
            &i32::try_from(job.attempts).unwrap_or(i32::MAX),
            &db_u64(job.next_attempt_ms),
            &db_u64(job.deadline_ms),
            &db_u64(job.retry_base_ms),
            &db_u64(job.lease_ms),
            &job.last_error,
        ],
    )
    .await?;
    Ok(())
}

const CLAIM: &str = "WITH due AS ( \
         SELECT created_ms, id FROM authd_outbox \
         WHERE next_attempt_ms <= $1 AND deadline_ms >= $1 \
         ORDER BY next_attempt_ms, created_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED \
     ), expired AS ( \
         SELECT created_ms, id FROM authd_outbox \
         WHERE next_attempt_ms <= $1 AND deadline_ms < $1 \
         ORDER BY next_attempt_ms, created_ms, id LIMIT $3 FOR UPDATE SKIP LOCKED \
     ) \
     UPDATE authd_outbox o SET next_attempt_ms = \
         CASE WHEN o.lease_ms > 9223372036854775807 - $1 THEN 9223372036854775807 \
         ELSE $1 + o.lease_ms END \
     FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) p \
     WHERE o.created_ms = p.created_ms AND o.id = p.id \
     RETURNING o.created_ms, o.id, o.kind, o.channel, o.payload, o.attempts, \
         o.next_attempt_ms, o.deadline_ms, o.retry_base_ms, o.lease_ms, o.last_error";

#[async_trait]
impl OutboxStore for PgStore {
    async fn outbox_enqueue(
        &self,
        job: NewJob,
        max_jobs: u64,
        now_ms: u64,
    ) -> Result<Result<JobKey, OutboxFull>, StoreError> {
        let key = JobKey {
            created_ms: now_ms,
            id: Uuid::new_v4(),
        };
        self.with(|conn| async move {
            let c = conn.client();
            // The bound is checked in the statement; daemons enqueueing at the very same
            // moment may each pass it (the queue is then over by at most one per daemon).
            let stmt = c
                .prepare_cached(
                    "INSERT INTO authd_outbox (created_ms, id, kind, channel, payload, attempts, \
                     next_attempt_ms, deadline_ms, retry_base_ms, lease_ms, last_error) \
                     SELECT $1, $2, $3, $4, $5, 0, $1, $6, $7, $8, NULL \
                     WHERE (SELECT count(*) FROM (SELECT 1 FROM authd_outbox LIMIT $9) s) < $9",
                )
                .await?;
            let max = db_u64(max_jobs);
            let inserted = c
                .execute(
                    &stmt,
                    &[
                        &db_u64(now_ms),
                        &key.id,
                        &job.kind,
                        &job.channel,
                        &job.payload,
                        &db_u64(job.deadline_ms),
                        &db_u64(job.retry_base_ms.max(1)),
                        &db_u64(job.lease_ms.max(1)),
                        &max,
                    ],
                )
                .await?;
            if inserted == 1 {
                return Ok((Ok(key), conn));
            }
            let depth: i64 = c
                .query_one("SELECT count(*) FROM authd_outbox", &[])
                .await?
                .try_get(0)?;
            Ok((
                Err(OutboxFull {
                    depth: from_db(depth),
                }),
                conn,
            ))
        })
        .await
    }

    async fn outbox_claim(&self, now_ms: u64, limit: usize) -> Result<Claimed, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let claim = c.prepare_cached(CLAIM).await?;
            let next = c
                .prepare_cached("SELECT min(next_attempt_ms) FROM authd_outbox")
                .await?;
            let now = db_u64(now_ms);
            let limit_due = i64::try_from(limit).unwrap_or(i64::MAX);
            // Expired jobs do not count against the limit, but are bounded too.
            let limit_expired = limit_due.saturating_mul(4).max(16);
            // The claim commits on its own; the next due time is read after it (pipelined).
            let (rows, next) = futures_util::future::try_join(
                c.query(&claim, &[&now, &limit_due, &limit_expired]),
                c.query_one(&next, &[]),
            )
            .await?;
            let mut claimed = Claimed::default();
            for row in &rows {
                let job = decode(row)?;
                if job.deadline_ms < now_ms {
                    claimed.expired.push(job);
                } else {
                    claimed.due.push(job);
                }
            }
            claimed.due.sort_by_key(|j| j.key);
            claimed.expired.sort_by_key(|j| j.key);
            claimed.next_due_ms = next.try_get::<_, Option<i64>>(0)?.map(from_db);
            Ok((claimed, conn))
        })
        .await
    }

    async fn outbox_complete(&self, key: JobKey) -> Result<(), StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached("DELETE FROM authd_outbox WHERE created_ms = $1 AND id = $2")
                .await?;
            c.execute(&stmt, &[&db_u64(key.created_ms), &key.id])
                .await?;
            Ok(((), conn))
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
        self.with(|conn| async move {
            let c = conn.client();
            // A job removed meanwhile stays removed: nothing to update.
            let stmt = c
                .prepare_cached(
                    "UPDATE authd_outbox SET next_attempt_ms = $3, attempts = $4, last_error = $5 \
                     WHERE created_ms = $1 AND id = $2",
                )
                .await?;
            c.execute(
                &stmt,
                &[
                    &db_u64(key.created_ms),
                    &key.id,
                    &db_u64(next_attempt_ms),
                    &i32::try_from(attempts).unwrap_or(i32::MAX),
                    &last_error,
                ],
            )
            .await?;
            Ok(((), conn))
        })
        .await
    }

    async fn outbox_stats(&self, now_ms: u64) -> Result<OutboxStats, StoreError> {
        self.with(|conn| async move {
            let row = conn
                .client()
                .query_one("SELECT count(*), min(created_ms) FROM authd_outbox", &[])
                .await?;
            let depth: i64 = row.try_get(0)?;
            let oldest: Option<i64> = row.try_get(1)?;
            Ok((
                OutboxStats {
                    depth: from_db(depth),
                    oldest_age_secs: oldest
                        .map(|created| now_ms.saturating_sub(from_db(created)) / 1000),
                },
                conn,
            ))
        })
        .await
    }
}
