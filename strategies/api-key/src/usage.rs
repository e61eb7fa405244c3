//! `last_used_at` without a durable write per request: uses are noted in memory and written
//! in batches (at most one write per user per flush, every [`FLUSH_EVERY`], and when the
//! strategy is dropped by a reload). Bounded: at most [`MAX_PENDING`] keys wait; past that a
//! use is not noted until the next flush (the time shown is then a little older than the
//! truth), and a flush is asked for at once.
//!
//! Uses not yet written are lost if the daemon is killed: `last_used_at` is a hint for people
//! deciding which keys to delete, never a security decision.
//!
//! Must not: write per request; grow without bound; bring back a key deleted meanwhile (each
//! write is a compare-and-swap of the user's record).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authd_strategy_api::{Error, Store, UpdateOutcome, UserUpdate};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::stored::StoredKeysV1;

/// How often noted uses are written.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// The most keys whose use may wait in memory.
pub(crate) const MAX_PENDING: usize = 10_000;
/// Attempts at one user's write when its record changes under it.
const ATTEMPTS: usize = 3;

/// Uses noted and not yet written: user -> key id -> Unix seconds.
pub(crate) type Uses = HashMap<Uuid, HashMap<String, u64>>;

#[derive(Default)]
pub(crate) struct Pending {
    uses: Uses,
    entries: usize,
}

/// The noted uses of one strategy.
#[derive(Default)]
pub(crate) struct Usage {
    pending: Mutex<Pending>,
    pub(crate) wake: Notify,
    started: std::sync::atomic::AtomicBool,
}

impl Usage {
    /// Notes a use of `key` of `user` at `now`. Returns whether a flusher must be started
    /// (the first use).
    pub fn note(&self, user: Uuid, key: &str, now: u64) -> bool {
        let full = {
            let Ok(mut p) = self.pending.lock() else {
                return false;
            };
            let known = p.uses.get(&user).is_some_and(|k| k.contains_key(key));
            if !known && p.entries >= MAX_PENDING {
                true
            } else {
                if !known {
                    p.entries += 1;
                }
                p.uses.entry(user).or_default().insert(key.to_string(), now);
                false
            }
        };
        if full {
            self.wake.notify_one();
        }
        !self
            .started
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// The noted, unwritten use of `key` of `user`.
    pub fn noted(&self, user: Uuid, key: &str) -> Option<u64> {
        let p = self.pending.lock().ok()?;
        p.uses.get(&user)?.get(key).copied()
    }

    /// Takes every noted use, leaving none.
    pub fn take(&self) -> Uses {
        match self.pending.lock() {
            Ok(mut p) => {
                p.entries = 0;
                std::mem::take(&mut p.uses)
            }
            Err(_) => Uses::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.lock().map_or(true, |p| p.entries == 0)
    }
}

/// Where a flush writes.
#[derive(Clone)]
pub(crate) struct Target {
    pub store: Arc<dyn Store>,
    pub subject: String,
    /// The secret field of the strategy's records.
    pub field: String,
}

/// Writes `uses`: per user, one compare-and-swap of the record that moves `last_used_at`
/// forward for the keys still there.
pub(crate) async fn write(target: &Target, uses: Uses) {
    for (user, keys) in uses {
        if let Err(e) = write_one(target, user, &keys).await {
            tracing::warn!(subject = %target.subject, error = %e, "AK0002 last use of API keys not written");
        }
    }
}

async fn write_one(target: &Target, id: Uuid, keys: &HashMap<String, u64>) -> Result<(), Error> {
    for _ in 0..ATTEMPTS {
        let Some(user) = target.store.get(&target.subject, id).await? else {
            return Ok(());
        };
        let mut record = StoredKeysV1::of(&user, &target.field)?;
        let mut changed = false;
        for (key, at) in keys {
            if let Some(stored) = record.keys.get_mut(key)
                && stored.last_used_at.is_none_or(|t| t < *at)
            {
                stored.last_used_at = Some(*at);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let update = UserUpdate {
            expect_secrets: vec![(
                target.field.clone(),
                user.secrets.get(&target.field).cloned(),
            )],
            secrets: [(target.field.clone(), record.to_text())].into(),
            ..UserUpdate::default()
        };
        match target.store.update(&target.subject, id, update).await? {
            UpdateOutcome::Conflict => continue,
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Flushes every [`FLUSH_EVERY`] (or at once when the pending uses are full) while the
/// strategy lives; it ends at the first wake after the strategy was dropped (whose `Drop`
/// writes what was left). Needs a tokio runtime; without one nothing is flushed.
pub(crate) fn start_flusher(usage: &Arc<Usage>, target: Target) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let usage = Arc::clone(usage);
    runtime.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = usage.wake.notified() => {}
            }
            if Arc::strong_count(&usage) == 1 {
                return;
            }
            let uses = usage.take();
            if !uses.is_empty() {
                write(&target, uses).await;
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn noted_uses_are_bounded() {
        let usage = Usage::default();
        let user = Uuid::new_v4();
        assert!(
            usage.note(user, "k0", 1),
            "the first use starts the flusher"
        );
        assert!(!usage.note(user, "k0", 2), "once");
        for i in 1..MAX_PENDING {
            usage.note(user, &format!("k{i}"), 3);
        }
        usage.note(user, "one too many", 4);
        assert_eq!(usage.noted(user, "one too many"), None);
        // A key already waiting still moves forward.
        usage.note(user, "k0", 5);
        assert_eq!(usage.noted(user, "k0"), Some(5));
        assert_eq!(usage.take()[&user].len(), MAX_PENDING);
        assert!(usage.is_empty());
    }
}
