//! Every record as it is, page by page in key order, for `authd store copy`.

use async_trait::async_trait;
use authd_store_api::{Backup, Job, JobKey, StoreError, ThrottleKey, ThrottleRecord};

use crate::throttle::{COLUMNS as THROTTLE_COLUMNS, Columns};
use crate::{PgStore, db_u64, from_db};

fn page_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl Backup for PgStore {
    async fn dead_tokens_page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let after = after.map(|k| k.to_vec());
        self.with(|conn| async move {
            let rows = conn
                .client()
                .query(
                    "SELECT key, expires_at FROM authd_dead_tokens \
                     WHERE $1::bytea IS NULL OR key > $1 ORDER BY key LIMIT $2",
                    &[&after, &page_limit(limit)],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let key: Vec<u8> = row.try_get(0)?;
                let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) else {
                    continue;
                };
                out.push((key, from_db(row.try_get(1)?)));
            }
            Ok((out, conn))
        })
        .await
    }

    async fn put_dead_token(&self, key: [u8; 32], expires_at: u64) -> Result<(), StoreError> {
        self.with(|conn| async move {
            conn.client()
                .execute(
                    "INSERT INTO authd_dead_tokens (key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                    &[&key.to_vec(), &db_u64(expires_at)],
                )
                .await?;
            Ok(((), conn))
        })
        .await
    }

    async fn throttles_page(
        &self,
        after: Option<ThrottleKey>,
        limit: usize,
    ) -> Result<Vec<(ThrottleKey, ThrottleRecord)>, StoreError> {
        let after = after.map(|k| k.0.to_vec());
        self.with(|conn| async move {
            let rows = conn
                .client()
                .query(
                    &format!(
                        "SELECT {THROTTLE_COLUMNS} FROM authd_throttle \
                         WHERE $1::bytea IS NULL OR key > $1 ORDER BY key LIMIT $2"
                    ),
                    &[&after, &page_limit(limit)],
                )
                .await?;
            let out = rows
                .iter()
                .map(crate::throttle::decode)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((out, conn))
        })
        .await
    }

    async fn put_throttle(
        &self,
        key: ThrottleKey,
        record: ThrottleRecord,
    ) -> Result<(), StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let mut columns = Columns::default();
            columns.push(&key, &record);
            let stmt = c.prepare_cached(crate::throttle::UPSERT).await?;
            columns.upsert(c, &stmt).await?;
            Ok(((), conn))
        })
        .await
    }

    async fn meta_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with(|conn| async move {
            let rows = conn
                .client()
                .query("SELECT key, value FROM authd_meta ORDER BY key", &[])
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((row.try_get(0)?, row.try_get(1)?));
            }
            Ok((out, conn))
        })
        .await
    }

    async fn outbox_page(
        &self,
        after: Option<JobKey>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let (created, id) = match after {
            Some(k) => (Some(db_u64(k.created_ms)), Some(k.id)),
            None => (None, None),
        };
        self.with(|conn| async move {
            let rows = conn
                .client()
                .query(
                    &format!(
                        "SELECT {} FROM authd_outbox \
                         WHERE $1::bigint IS NULL OR (created_ms, id) > ($1, $2::uuid) \
                         ORDER BY created_ms, id LIMIT $3",
                        crate::outbox::COLUMNS
                    ),
                    &[&created, &id, &page_limit(limit)],
                )
                .await?;
            let out = rows
                .iter()
                .map(crate::outbox::decode)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((out, conn))
        })
        .await
    }

    async fn put_job(&self, job: Job) -> Result<(), StoreError> {
        self.with(|conn| async move {
            crate::outbox::put(conn.client(), &job).await?;
            Ok(((), conn))
        })
        .await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.with(|conn| async move {
            let row = conn
                .client()
                .query_one(
                    "SELECT NOT EXISTS (SELECT 1 FROM authd_users) \
                     AND NOT EXISTS (SELECT 1 FROM authd_unique) \
                     AND NOT EXISTS (SELECT 1 FROM authd_dead_tokens) \
                     AND NOT EXISTS (SELECT 1 FROM authd_throttle) \
                     AND NOT EXISTS (SELECT 1 FROM authd_meta) \
                     AND NOT EXISTS (SELECT 1 FROM authd_outbox)",
                    &[],
                )
                .await?;
            Ok((row.try_get(0)?, conn))
        })
        .await
    }
}
