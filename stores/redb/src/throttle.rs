//! Throttle records, changed only through `authd_store_api::throttle::apply`.
//!
//! A write that locks a key is durable (a lockout survives a crash). The others (counting an
//! attempt, refunding it, clearing an identity that proved itself) are committed without
//! waiting for the disk, at most [`ThrottlePace::EVERY`] in a row and for at most
//! [`ThrottlePace::WITHIN`]: a crash can lose that much counting, never a lockout, and the
//! sign-in path saves two disk flushes per attempt.

use async_trait::async_trait;
use authd_store_api::throttle::apply;
use authd_store_api::{
    StoreError, ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleRecord, ThrottleStore,
};
use redb::{Durability, ReadableDatabase, ReadableTable};

use crate::tables::{THROTTLE, throttle_from_tuple, throttle_to_tuple};
use crate::{Failure, RedbStore};

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
        let pace = std::sync::Arc::clone(&self.inner.throttle_pace);
        self.write(move |db| {
            let mut tx = db.begin_write()?;
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
            let locks_a_key = outcomes
                .iter()
                .any(|o| matches!(o, ThrottleOutcome::LockedNow));
            if !locks_a_key && !pace.durable_due() {
                // Kept in memory until the next durable commit (this store's next write of
                // anything else, or the next throttle write once the pace says so).
                tx.set_durability(Durability::None)
                    .map_err(|e| Failure::from(redb::Error::from(e)))?;
            }
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }
}

/// When the next throttle write must be durable anyway: after [`ThrottlePace::EVERY`]
/// non-durable ones, or [`ThrottlePace::WITHIN`] after the last durable one, so that what a
/// crash can lose stays bounded (and redb, which cannot reuse the pages of non-durable commits,
/// gets its durable commit).
#[derive(Debug, Default)]
pub(crate) struct ThrottlePace {
    since_durable: std::sync::atomic::AtomicU32,
    /// Milliseconds since the Unix epoch of the last durable throttle write.
    last_durable_ms: std::sync::atomic::AtomicU64,
}

impl ThrottlePace {
    const EVERY: u32 = 64;
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

    /// Whether this write must be durable; if so, the pace starts again from it.
    fn durable_due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let count = self.since_durable.fetch_add(1, Relaxed);
        let last = self.last_durable_ms.load(Relaxed);
        let window = u64::try_from(Self::WITHIN.as_millis()).unwrap_or(u64::MAX);
        if count >= Self::EVERY || now.saturating_sub(last) >= window {
            self.since_durable.store(0, Relaxed);
            self.last_durable_ms.store(now, Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod pace_tests {
    use super::ThrottlePace;

    #[test]
    fn a_durable_write_comes_at_least_every_so_many() {
        let pace = ThrottlePace::default();
        // The first is durable (nothing was, ever), then EVERY non-durable ones at most.
        assert!(pace.durable_due());
        let mut in_a_row = 0;
        for _ in 0..1000 {
            if pace.durable_due() {
                assert!(in_a_row <= ThrottlePace::EVERY, "{in_a_row}");
                in_a_row = 0;
            } else {
                in_a_row += 1;
            }
        }
        assert!(in_a_row <= ThrottlePace::EVERY);
    }
}
