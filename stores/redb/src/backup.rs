//! Every record as it is, page by page, for `authd store copy`.

use async_trait::async_trait;
use authd_store_api::{Backup, Job, JobKey, StoreError, ThrottleKey, ThrottleRecord};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::RedbStore;
use crate::tables::*;

fn after_key<const N: usize>(after: Option<[u8; N]>) -> Vec<u8> {
    // The smallest key greater than `after` is `after` followed by a zero byte.
    match after {
        Some(k) => {
            let mut v = k.to_vec();
            v.push(0);
            v
        }
        None => Vec::new(),
    }
}

#[async_trait]
impl Backup for RedbStore {
    async fn dead_tokens_page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        self.write(move |db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(DEAD_TOKENS)?;
            let from = after_key(after);
            let mut out = Vec::new();
            for entry in table.range(from.as_slice()..)?.take(limit) {
                let (k, v) = entry?;
                let Ok(key) = <[u8; 32]>::try_from(k.value()) else {
                    continue;
                };
                out.push((key, v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn put_dead_token(&self, key: [u8; 32], expires_at: u64) -> Result<(), StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(DEAD_TOKENS)?
                .insert(key.as_slice(), expires_at)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn throttles_page(
        &self,
        after: Option<ThrottleKey>,
        limit: usize,
    ) -> Result<Vec<(ThrottleKey, ThrottleRecord)>, StoreError> {
        self.write(move |db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(THROTTLE)?;
            let from = after_key(after.map(|k| k.0));
            let mut out = Vec::new();
            for entry in table.range(from.as_slice()..)?.take(limit) {
                let (k, v) = entry?;
                let Ok(key) = <[u8; 32]>::try_from(k.value()) else {
                    continue;
                };
                out.push((ThrottleKey(key), throttle_from_tuple(v.value())));
            }
            Ok(out)
        })
        .await
    }

    async fn put_throttle(
        &self,
        key: ThrottleKey,
        record: ThrottleRecord,
    ) -> Result<(), StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(THROTTLE)?
                .insert(key.0.as_slice(), throttle_to_tuple(&record))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn meta_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            let mut out = Vec::new();
            for entry in meta.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    async fn outbox_page(
        &self,
        after: Option<JobKey>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.write(move |db| {
            let tx = db.begin_read()?;
            let jobs = tx.open_table(JOBS)?;
            let mut out = Vec::new();
            let start = after.map_or((0, 0), |k| (k.created_ms, k.id.as_u128()));
            for entry in jobs.range(start..)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = entry?;
                let key = k.value();
                if after.is_some() && key == start {
                    continue;
                }
                out.push(StoredJobV1::decode(key, v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_job(&self, job: Job) -> Result<(), StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            crate::outbox::put(&tx, &job)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.write(|db| {
            let users = crate::users::users_len(db)?;
            let tx = db.begin_read()?;
            Ok(users
                + tx.open_table(DEAD_TOKENS)?.len()?
                + tx.open_table(THROTTLE)?.len()?
                + tx.open_table(META)?.len()?
                + tx.open_table(JOBS)?.len()?
                == 0)
        })
        .await
    }
}
