//! The one clock of authd. Every time that a policy or a token depends on is read from a
//! [`Clock`], which tests can move forward (lockouts, expiries and TOTP periods become exact).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The system clock, plus an offset that only tests change. Cheap to clone; clones share the
/// offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        real.saturating_add_signed(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Unix seconds: the unit of token times, lockouts and status.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Moves this clock (and its clones) forward by `ms` milliseconds. For tests.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together() {
        let a = Clock::system();
        let b = a.clone();
        let before = b.now_secs();
        a.advance_ms(3_600_000);
        assert!(b.now_secs() >= before + 3600);
    }
}
