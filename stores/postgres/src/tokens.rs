//! Dead tokens: revoked or used, kept by the SHA-256 of their `jti`. Consuming is one insert
//! that only the first of any number of racing callers (on any daemon) gets to make.

use async_trait::async_trait;
use authd_store_api::{StoreError, TokenStore, token_key};

use crate::{PgStore, db_u64};

#[async_trait]
impl TokenStore for PgStore {
    async fn is_dead(&self, jti: &str) -> Result<bool, StoreError> {
        let key = token_key(jti).to_vec();
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached("SELECT 1 FROM authd_dead_tokens WHERE key = $1")
                .await?;
            let dead = c.query_opt(&stmt, &[&key]).await?.is_some();
            Ok((dead, conn))
        })
        .await
    }

    async fn kill(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let key = token_key(jti).to_vec();
        let exp = db_u64(expires_at);
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(
                    "INSERT INTO authd_dead_tokens (key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                )
                .await?;
            c.execute(&stmt, &[&key, &exp]).await?;
            Ok(((), conn))
        })
        .await
    }

    async fn consume(&self, jti: &str, expires_at: u64) -> Result<bool, StoreError> {
        let key = token_key(jti).to_vec();
        let exp = db_u64(expires_at);
        self.with(|conn| async move {
            let c = conn.client();
            let stmt = c
                .prepare_cached(
                    "INSERT INTO authd_dead_tokens (key, expires_at) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            let first = c.execute(&stmt, &[&key, &exp]).await? == 1;
            Ok((first, conn))
        })
        .await
    }
}
