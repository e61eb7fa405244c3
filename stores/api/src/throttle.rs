//! Brute-force throttling: the record a backend stores per key, and the one policy that says
//! what a record becomes. Backends call [`apply`] inside their own transaction and store its
//! result; they never decide anything themselves.
//!
//! Attempts are counted when they start ([`ThrottleOp::Reserve`]), not when they fail, so that
//! a burst of simultaneous guesses cannot run more verifications than the limit: the
//! `limit`-th reservation in a window locks the key, every later one is refused until the lock
//! ends. A success gives its reservation back ([`ThrottleOp::Refund`], or
//! [`ThrottleOp::Clear`] for the identity that just proved itself).
//!
//! Lockouts last one window, doubling for each one that follows within a window of the
//! last, capped at [`MAX_LOCKOUT_SECS`] (or one window, if that is longer).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest lockout, however many came before.
pub const MAX_LOCKOUT_SECS: u64 = 86_400;

/// A throttle key as stored: SHA-256 of the key text (`identity:user/password:ada@example.com`),
/// so that identities and addresses are not kept in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ThrottleKey(pub [u8; 32]);

impl ThrottleKey {
    pub fn of(text: &str) -> ThrottleKey {
        ThrottleKey(Sha256::digest(text.as_bytes()).into())
    }
}

/// One key's state. Times in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ThrottleRecord {
    /// Attempts counted in the current window (reservations not given back).
    pub count: u64,
    pub window_start: u64,
    /// Locked while `now < locked_until`.
    pub locked_until: u64,
    /// Lockouts in a row: each doubles the next.
    pub lockouts: u64,
    /// The record can be deleted after this time: it no longer changes any answer.
    pub forget_after: u64,
}

/// What to do to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleOp {
    /// Count one attempt in a window of `window` seconds, refused while the key is locked;
    /// the `limit`-th attempt of a window locks the key.
    Reserve { limit: u64, window: u64 },
    /// Give one counted attempt back (it succeeded); a lock already set stays.
    Refund,
    /// Forget the key (the identity proved itself).
    Clear,
    /// Write the record back as it is: the failure path's write, so that a failure costs what
    /// a success costs.
    Touch,
}

/// What [`apply`] decided for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleOutcome {
    /// Done (a reservation was counted, or the record updated).
    Done,
    /// The reservation was counted and was the limit-th of its window: the key is locked
    /// from now on (this attempt itself runs). Reported so that lockouts can be counted.
    LockedNow,
    /// Refused: the key is locked for this many more seconds. Nothing was counted.
    Locked { retry_after: u64 },
}

/// The policy: what `op` makes of `record` at `now`. `None` in the result means "delete".
pub fn apply(
    op: ThrottleOp,
    record: Option<ThrottleRecord>,
    now: u64,
) -> (Option<ThrottleRecord>, ThrottleOutcome) {
    match op {
        ThrottleOp::Clear => (None, ThrottleOutcome::Done),
        ThrottleOp::Touch => (record, ThrottleOutcome::Done),
        ThrottleOp::Refund => {
            let record = record.map(|mut r| {
                r.count = r.count.saturating_sub(1);
                r
            });
            (record, ThrottleOutcome::Done)
        }
        ThrottleOp::Reserve { limit, window } => {
            let limit = limit.max(1);
            let window = window.max(1);
            let mut r = record.unwrap_or(ThrottleRecord {
                window_start: now,
                ..ThrottleRecord::default()
            });
            if r.locked_until > now {
                let retry_after = r.locked_until - now;
                return (Some(r), ThrottleOutcome::Locked { retry_after });
            }
            if now >= r.window_start.saturating_add(window) {
                // A new window. Lockouts in a row end once a whole window has passed since
                // the last lockout ended.
                if now >= r.locked_until.saturating_add(window) {
                    r.lockouts = 0;
                }
                r.count = 0;
                r.window_start = now;
            }
            r.count += 1;
            let locks = r.count >= limit;
            if locks {
                let lock = window
                    .saturating_mul(1u64 << r.lockouts.min(20))
                    .min(MAX_LOCKOUT_SECS.max(window));
                r.locked_until = now.saturating_add(lock);
                r.lockouts += 1;
                r.count = 0;
                r.window_start = now;
            }
            r.forget_after = r
                .locked_until
                .max(r.window_start.saturating_add(window))
                .saturating_add(window);
            let outcome = if locks {
                ThrottleOutcome::LockedNow
            } else {
                ThrottleOutcome::Done
            };
            (Some(r), outcome)
        }
    }
}

/// Seconds a key is still locked at `now`, if it is.
pub fn locked_for(record: Option<&ThrottleRecord>, now: u64) -> Option<u64> {
    record
        .filter(|r| r.locked_until > now)
        .map(|r| r.locked_until - now)
}

/// Whether a record may be deleted at `now` (the purge rule).
pub fn forgettable(record: &ThrottleRecord, now: u64) -> bool {
    record.forget_after < now
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn reserve(r: Option<ThrottleRecord>, now: u64) -> (Option<ThrottleRecord>, ThrottleOutcome) {
        apply(
            ThrottleOp::Reserve {
                limit: 3,
                window: 60,
            },
            r,
            now,
        )
    }

    #[test]
    fn the_limit_th_reservation_locks_and_later_ones_are_refused() {
        let t0 = 1_000_000;
        let (r, o) = reserve(None, t0);
        assert_eq!(o, ThrottleOutcome::Done);
        let (r, _) = reserve(r, t0 + 1);
        let (r, o) = reserve(r, t0 + 2);
        assert_eq!(o, ThrottleOutcome::LockedNow, "the 3rd attempt itself runs");
        assert_eq!(locked_for(r.as_ref(), t0 + 2), Some(60));
        let (r, o) = reserve(r, t0 + 3);
        assert_eq!(o, ThrottleOutcome::Locked { retry_after: 59 });
        // The next lockout, right after the first, lasts twice as long.
        let (r, _) = reserve(r, t0 + 62);
        let (r, _) = reserve(r, t0 + 63);
        let (r, _) = reserve(r, t0 + 64);
        assert_eq!(locked_for(r.as_ref(), t0 + 64), Some(120));
    }

    #[test]
    fn refunds_give_attempts_back_and_clear_forgets() {
        let t0 = 50;
        let (r, _) = reserve(None, t0);
        let (r, _) = reserve(r, t0);
        let (r, _) = apply(ThrottleOp::Refund, r, t0);
        let (r, _) = apply(ThrottleOp::Refund, r, t0);
        assert_eq!(r.unwrap().count, 0);
        let (r, _) = reserve(r, t0);
        let (r, _) = reserve(r, t0);
        assert_eq!(locked_for(r.as_ref(), t0), None, "2 of 3 after the refunds");
        assert_eq!(apply(ThrottleOp::Clear, r, t0).0, None);
    }

    #[test]
    fn lockouts_are_capped_and_forgotten() {
        let mut r = None;
        let mut now = 0;
        for _ in 0..40 {
            for _ in 0..3 {
                r = reserve(r, now).0;
            }
            now = r.unwrap().locked_until;
        }
        let rec = r.unwrap();
        assert!(rec.locked_until - rec.window_start <= MAX_LOCKOUT_SECS);
        assert!(!forgettable(&rec, rec.locked_until));
        assert!(forgettable(&rec, rec.forget_after + 1));
    }

    #[test]
    fn a_new_window_starts_the_count_again() {
        let (r, _) = reserve(None, 0);
        let (r, _) = reserve(r, 1);
        let (r, _) = reserve(r, 61);
        assert_eq!(r.unwrap().count, 1);
        assert_eq!(locked_for(r.as_ref(), 61), None);
    }
}
