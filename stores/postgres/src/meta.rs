//! Named values of the daemon. Put-if-absent is an insert that does nothing on a conflict,
//! then a read in a statement of its own (whose snapshot sees the winner's commit): of
//! daemons racing on an empty database, all read back the one signing key that won.

use async_trait::async_trait;
use authd_store_api::{MetaStore, StoreError};

use crate::PgStore;

#[async_trait]
impl MetaStore for PgStore {
    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached("SELECT value FROM authd_meta WHERE key = $1")
                .await?;
            let row = c.query_opt(&stmt, &[&key]).await?;
            let value = row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?;
            Ok((value, conn))
        })
        .await
    }

    async fn meta_put_if_absent(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let insert = c
                .prepare_cached(
                    "INSERT INTO authd_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .await?;
            let read = c
                .prepare_cached("SELECT value FROM authd_meta WHERE key = $1")
                .await?;
            // Two statements, two snapshots: the read starts after the insert has waited for
            // any racing insert of the key to commit.
            let (_, row) = futures_util::future::try_join(
                c.execute(&insert, &[&key, &value]),
                c.query_opt(&read, &[&key]),
            )
            .await?;
            let stored = match row {
                Some(row) => row.try_get::<_, Vec<u8>>(0)?,
                // Deleted between the two statements: what this call wrote is gone too.
                None => value,
            };
            Ok((stored, conn))
        })
        .await
    }

    async fn meta_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        self.with(|conn| async move {
            let c = conn.client();
            let written = match (&expected, &new) {
                (None, Some(new)) => {
                    c.execute(
                        "INSERT INTO authd_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&key, new],
                    )
                    .await?
                        == 1
                }
                (Some(old), Some(new)) => {
                    c.execute(
                        "UPDATE authd_meta SET value = $3 WHERE key = $1 AND value = $2",
                        &[&key, old, new],
                    )
                    .await?
                        == 1
                }
                (Some(old), None) => {
                    c.execute(
                        "DELETE FROM authd_meta WHERE key = $1 AND value = $2",
                        &[&key, old],
                    )
                    .await?
                        == 1
                }
                (None, None) => c
                    .query_opt("SELECT 1 FROM authd_meta WHERE key = $1", &[&key])
                    .await?
                    .is_none(),
            };
            Ok((written, conn))
        })
        .await
    }
}
