//! Throttle records, changed only through `authd_store_api::throttle::apply`.

use async_trait::async_trait;
use authd_store_api::throttle::apply;
use authd_store_api::{
    StoreError, ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleRecord, ThrottleStore,
};
use redb::{ReadableDatabase, ReadableTable};

use crate::RedbStore;
use crate::tables::{THROTTLE, throttle_from_tuple, throttle_to_tuple};

#[async_trait]
impl ThrottleStore for RedbStore {
    async fn throttle_get(&self, key: &ThrottleKey) -> Result<Option<ThrottleRecord>, StoreError> {
        self.read(|db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(THROTTLE)?;
            Ok(table
                .get(key.0.as_slice())?
                .map(|g| throttle_from_tuple(g.value())))
        })
    }

    async fn throttle_apply(
        &self,
        ops: Vec<(ThrottleKey, ThrottleOp)>,
        now: u64,
    ) -> Result<Vec<ThrottleOutcome>, StoreError> {
        self.write(move |db| {
            let tx = db.begin_write()?;
            let mut outcomes = Vec::with_capacity(ops.len());
            {
                let mut table = tx.open_table(THROTTLE)?;
                for (key, op) in ops {
                    let old = table
                        .get(key.0.as_slice())?
                        .map(|g| throttle_from_tuple(g.value()));
                    let (new, outcome) = apply(op, old, now);
                    match new {
                        Some(record) => {
                            table.insert(key.0.as_slice(), throttle_to_tuple(&record))?;
                        }
                        None => {
                            table.remove(key.0.as_slice())?;
                        }
                    }
                    outcomes.push(outcome);
                }
            }
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }
}
