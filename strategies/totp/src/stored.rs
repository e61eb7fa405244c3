//! What the strategy keeps of a user, in one secret field (`secret_field`), as versioned JSON:
//! the sealed seed, and once TOTP is on, the last period whose code was used and the hashes
//! of the recovery codes left. One field, so that every change (a code used, a recovery code
//! spent, TOTP turned off) is one compare-and-swap on it (`UserUpdate::expect_secrets`).
//!
//! This module knows the stored form only: it must not open seeds or read the clock.

use serde::{Deserialize, Serialize};

/// The state of a user's TOTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotpState {
    /// `setup` made a seed; `confirm_setup` has not proved it yet. TOTP is off.
    Pending { seed: String },
    /// On.
    On {
        /// The seed, as the sealer sealed it.
        seed: String,
        /// The period of the last code accepted: a code of it or an earlier one is refused.
        last_counter: u64,
        /// Hashes of the recovery codes not used yet.
        recovery: Vec<String>,
        /// Unix seconds when it was turned on.
        since: u64,
    },
}

/// The stored form, version 1: `{"v":1,"seed":"...","on":{"last":..,"recovery":[..],"since":..}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredV1 {
    v: u32,
    seed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<OnV1>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnV1 {
    last: u64,
    recovery: Vec<String>,
    since: u64,
}

/// A stored value this version cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

impl TotpState {
    /// Reads a stored value.
    ///
    /// # Errors
    /// [`Unreadable`] for anything but version 1.
    pub fn read(text: &str) -> Result<TotpState, Unreadable> {
        let stored: StoredV1 = serde_json::from_str(text).map_err(|_| Unreadable)?;
        if stored.v != 1 {
            return Err(Unreadable);
        }
        Ok(match stored.on {
            None => TotpState::Pending { seed: stored.seed },
            Some(on) => TotpState::On {
                seed: stored.seed,
                last_counter: on.last,
                recovery: on.recovery,
                since: on.since,
            },
        })
    }

    /// The stored form.
    pub fn write(&self) -> String {
        let stored = match self {
            TotpState::Pending { seed } => StoredV1 {
                v: 1,
                seed: seed.clone(),
                on: None,
            },
            TotpState::On {
                seed,
                last_counter,
                recovery,
                since,
            } => StoredV1 {
                v: 1,
                seed: seed.clone(),
                on: Some(OnV1 {
                    last: *last_counter,
                    recovery: recovery.clone(),
                    since: *since,
                }),
            },
        };
        // A struct of strings and integers always serializes.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub fn seed(&self) -> &str {
        match self {
            TotpState::Pending { seed } | TotpState::On { seed, .. } => seed,
        }
    }

    pub fn is_on(&self) -> bool {
        matches!(self, TotpState::On { .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let on = TotpState::On {
            seed: "clear:abc".into(),
            last_counter: 56_666_667,
            recovery: vec!["h1".into(), "h2".into()],
            since: 1_700_000_000,
        };
        let text = on.write();
        assert_eq!(
            text,
            r#"{"v":1,"seed":"clear:abc","on":{"last":56666667,"recovery":["h1","h2"],"since":1700000000}}"#
        );
        assert_eq!(TotpState::read(&text), Ok(on));
        let pending = TotpState::Pending {
            seed: "clear:abc".into(),
        };
        assert_eq!(TotpState::read(&pending.write()), Ok(pending.clone()));
        assert!(!pending.is_on());
        assert_eq!(TotpState::read(r#"{"v":2,"seed":"x"}"#), Err(Unreadable));
        assert_eq!(TotpState::read("JBSWY3DPEHPK3PXP"), Err(Unreadable));
    }
}
