//! Named values of the daemon.

use async_trait::async_trait;
use authd_store_api::{MetaStore, StoreError};
use redb::{ReadableDatabase, ReadableTable};

use crate::RedbStore;
use crate::tables::META;

#[async_trait]
impl MetaStore for RedbStore {
    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            Ok(tx.open_table(META)?.get(key)?.map(|g| g.value().to_vec()))
        })
    }

    async fn meta_put_if_absent(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let key = key.to_string();
        self.write(move |db| {
            let tx = db.begin_write()?;
            let stored = {
                let mut meta = tx.open_table(META)?;
                let existing = meta.get(key.as_str())?.map(|g| g.value().to_vec());
                match existing {
                    Some(v) => v,
                    None => {
                        meta.insert(key.as_str(), value.as_slice())?;
                        value
                    }
                }
            };
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn meta_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.write(move |db| {
            let tx = db.begin_write()?;
            {
                let mut meta = tx.open_table(META)?;
                let current = meta.get(key.as_str())?.map(|g| g.value().to_vec());
                if current != expected {
                    return Ok(false);
                }
                match new {
                    Some(v) => {
                        meta.insert(key.as_str(), v.as_slice())?;
                    }
                    None => {
                        meta.remove(key.as_str())?;
                    }
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}
