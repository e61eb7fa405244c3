//! The throttling service strategies use: per-identity and per-address limits in the store,
//! counted before the expensive work (reserve) and settled after it, so that concurrency
//! cannot run more attempts than the limit. The policy itself is
//! `authd_store_api::throttle::apply`; this module names keys and keeps the bookkeeping.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use authd_store_api::{ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleStore};

use crate::{Clock, Error};

/// A limit: `max` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// The address a per-address limit counts: IPv6 by its /64 (one host usually holds a whole
/// /64), IPv4-mapped IPv6 as the IPv4 address.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What a counted key is: an identity (given back and cleared on success) or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Identity,
    Address,
}

/// One key to count against.
#[derive(Debug, Clone)]
pub struct Counted {
    pub key: ThrottleKey,
    pub kind: KeyKind,
    pub limit: Limit,
}

impl Counted {
    /// `identity:<scope>:<value>`, e.g. scope `user/password`.
    pub fn identity(scope: &str, value: &str, limit: Limit) -> Counted {
        Counted {
            key: ThrottleKey::of(&format!("identity:{scope}:{value}")),
            kind: KeyKind::Identity,
            limit,
        }
    }

    /// `ip:<scope>:<address>` with the address as [`rate_key`] gives it.
    pub fn address(scope: &str, ip: IpAddr, limit: Limit) -> Counted {
        Counted {
            key: ThrottleKey::of(&format!("ip:{scope}:{}", rate_key(ip))),
            kind: KeyKind::Address,
            limit,
        }
    }
}

/// Attempts counted and not settled yet.
#[must_use = "settle the reservation after the attempt"]
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<Counted>,
}

/// The throttling service.
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn ThrottleStore>,
    clock: Clock,
}

impl Throttle {
    pub fn new(store: Arc<dyn ThrottleStore>, clock: Clock) -> Throttle {
        Throttle { store, clock }
    }

    /// Counts one attempt against every key, in one durable write. `Err(seconds)` when a key
    /// is locked: nothing may be attempted (the other keys have still counted it).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reserve(&self, keys: Vec<Counted>) -> Result<Result<Reservation, u64>, Error> {
        if keys.is_empty() {
            return Ok(Ok(Reservation { keys }));
        }
        let ops = keys
            .iter()
            .map(|k| {
                (
                    k.key,
                    ThrottleOp::Reserve {
                        limit: u64::from(k.limit.max),
                        window: k.limit.window.as_secs().max(1),
                    },
                )
            })
            .collect();
        let outcomes = self.store.throttle_apply(ops, self.clock.now_secs()).await?;
        let locked = outcomes
            .iter()
            .filter_map(|o| match o {
                ThrottleOutcome::Locked { retry_after } => Some(*retry_after),
                ThrottleOutcome::Done => None,
            })
            .max();
        Ok(match locked {
            Some(secs) => Err(secs.max(1)),
            None => Ok(Reservation { keys }),
        })
    }

    /// Settles attempts in one durable write, success or not (so both cost the same): a
    /// success clears its identities and gives back its addresses' counts; a failure keeps
    /// them counted.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn settle(&self, reservation: Reservation, success: bool) -> Result<(), Error> {
        if reservation.keys.is_empty() {
            return Ok(());
        }
        let ops = reservation
            .keys
            .iter()
            .map(|k| {
                let op = match (success, k.kind) {
                    (false, _) => ThrottleOp::Touch,
                    (true, KeyKind::Identity) => ThrottleOp::Clear,
                    (true, KeyKind::Address) => ThrottleOp::Refund,
                };
                (k.key, op)
            })
            .collect();
        self.store
            .throttle_apply(ops, self.clock.now_secs())
            .await?;
        Ok(())
    }

    /// Forgets a key's attempts and lockout (a reset proved control of the mailbox; an
    /// operator unlocked the user).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn clear(&self, key: ThrottleKey) -> Result<(), Error> {
        self.store
            .throttle_apply(vec![(key, ThrottleOp::Clear)], self.clock.now_secs())
            .await?;
        Ok(())
    }

    /// Seconds `key` is still locked, if it is.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn locked_for(&self, key: &ThrottleKey) -> Result<Option<u64>, Error> {
        let record = self.store.throttle_get(key).await?;
        Ok(authd_store_api::throttle::locked_for(
            record.as_ref(),
            self.clock.now_secs(),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_v4_or_v6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(rate_key(ip("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(rate_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(rate_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            rate_key(ip("2001:db8:1:2:ffff::1")),
            rate_key(ip("2001:db8:1:2::9"))
        );
        let limit = Limit {
            max: 1,
            window: Duration::from_secs(1),
        };
        assert_eq!(
            Counted::address("s", ip("2001:db8:1:2::1"), limit).key,
            Counted::address("s", ip("2001:db8:1:2::2"), limit).key
        );
    }
}
