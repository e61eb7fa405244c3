//! Dead tokens: revoked or used, kept by the SHA-256 of their `jti`.

use async_trait::async_trait;
use authd_store_api::{StoreError, TokenStore, token_key};
use redb::{ReadableDatabase, ReadableTable};

use crate::RedbStore;
use crate::tables::DEAD_TOKENS;

#[async_trait]
impl TokenStore for RedbStore {
    async fn is_dead(&self, jti: &str) -> Result<bool, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            Ok(tx
                .open_table(DEAD_TOKENS)?
                .get(token_key(jti).as_slice())?
                .is_some())
        })
    }

    async fn kill(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let key = token_key(jti);
        self.write(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(DEAD_TOKENS)?
                .insert(key.as_slice(), expires_at)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn consume(&self, jti: &str, expires_at: u64) -> Result<bool, StoreError> {
        let key = token_key(jti);
        self.write(move |db| {
            let tx = db.begin_write()?;
            {
                let mut dead = tx.open_table(DEAD_TOKENS)?;
                if dead.get(key.as_slice())?.is_some() {
                    return Ok(false);
                }
                dead.insert(key.as_slice(), expires_at)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}
