//! The throttling service strategies use: per-identity and per-address limits in the store,
//! counted before the expensive work (reserve) and settled after it, so that concurrency
//! cannot run more attempts than the limit. The policy itself is
//! `authd_store_api::throttle::apply`; this module names keys and keeps the bookkeeping.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use authd_store_api::{ThrottleKey, ThrottleOp, ThrottleOutcome, ThrottleStore};

use crate::{Clock, Error, Event, Events, NoEvents};

/// A limit: `max` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// The address a per-address limit counts: IPv6 by its /64 (one host usually holds a whole
/// /64), IPv4-mapped IPv6 as the IPv4 address.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let host_bits = u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !host_bits))
        }
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
///
/// A reservation dropped without being settled (the attempt ended early on an error, a
/// database outage say) gives its counts back in the background, retrying for a while: an
/// outage must not lock users out for attempts that never happened.
#[must_use = "settle the reservation after the attempt"]
pub struct Reservation {
    keys: Vec<Counted>,
    throttle: Option<Throttle>,
    /// The kinds of the keys this reservation locked (it was their limit-th attempt).
    locked_now: Vec<KeyKind>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("keys", &self.keys)
            .finish()
    }
}

/// Attempts to give a dropped reservation back, and the first wait between them.
const RELEASE_TRIES: u32 = 6;
const RELEASE_FIRST_WAIT: Duration = Duration::from_millis(500);

impl Drop for Reservation {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let (Some(throttle), false) = (self.throttle.take(), keys.is_empty()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let ops: Vec<(ThrottleKey, ThrottleOp)> =
                keys.iter().map(|k| (k.key, ThrottleOp::Refund)).collect();
            let mut wait = RELEASE_FIRST_WAIT;
            for _ in 0..RELEASE_TRIES {
                let now = throttle.clock.now_secs();
                if throttle
                    .store
                    .throttle_apply(ops.clone(), now)
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            tracing::warn!("TH0001 the counts of an interrupted attempt could not be given back");
        });
    }
}

impl Reservation {
    /// Whether this attempt locked its identity: it was the limit-th of its window. The
    /// lockout stands if the attempt fails (a success clears the identity).
    pub fn locks_identity(&self) -> bool {
        self.locked_now.contains(&KeyKind::Identity)
    }
}

/// The throttling service.
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn ThrottleStore>,
    clock: Clock,
    events: Arc<dyn Events>,
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Identity => "identity",
        KeyKind::Address => "address",
    }
}

impl Throttle {
    pub fn new(store: Arc<dyn ThrottleStore>, clock: Clock) -> Throttle {
        Throttle {
            store,
            clock,
            events: Arc::new(NoEvents),
        }
    }

    /// Reports each lockout to `events` ([`Event::LockedOut`]).
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn Events>) -> Throttle {
        self.events = events;
        self
    }

    fn locked_out(&self, kind: KeyKind) {
        self.events.emit(Event::LockedOut {
            kind: kind_name(kind),
        });
    }

    /// Counts one attempt against every key, in one durable write. `Err(seconds)` when a key
    /// is locked: nothing may be attempted (the other keys have still counted it).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reserve(&self, keys: Vec<Counted>) -> Result<Result<Reservation, u64>, Error> {
        if keys.is_empty() {
            return Ok(Ok(Reservation {
                keys,
                throttle: None,
                locked_now: Vec::new(),
            }));
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
        let outcomes = self
            .store
            .throttle_apply(ops, self.clock.now_secs())
            .await?;
        let locked = outcomes
            .iter()
            .filter_map(|o| match o {
                ThrottleOutcome::Locked { retry_after } => Some(*retry_after),
                ThrottleOutcome::Done | ThrottleOutcome::LockedNow => None,
            })
            .max();
        let locked_now: Vec<KeyKind> = keys
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == ThrottleOutcome::LockedNow)
            .map(|(k, _)| k.kind)
            .collect();
        // An address stays locked whatever the attempt gives; an identity only if it fails
        // (counted when the reservation is settled).
        for kind in &locked_now {
            if *kind == KeyKind::Address {
                self.locked_out(*kind);
            }
        }
        Ok(match locked {
            Some(secs) => Err(secs.max(1)),
            None => Ok(Reservation {
                keys,
                throttle: Some(self.clone()),
                locked_now,
            }),
        })
    }

    /// Counts one request against every key for good (a request limit: what is counted is the
    /// request itself, success or not). `Err(seconds)` when a key is locked.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn count(&self, keys: Vec<Counted>) -> Result<Result<(), u64>, Error> {
        Ok(self.reserve(keys).await?.map(|mut kept| {
            // Counted for good: an identity locked by it stays locked.
            if kept.locks_identity() {
                self.locked_out(KeyKind::Identity);
            }
            kept.throttle = None;
            kept.keys.clear();
        }))
    }

    /// Settles attempts in one durable write, success or not (so both cost the same): a
    /// success clears its identities and gives back its addresses' counts; a failure keeps
    /// them counted.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn settle(&self, mut reservation: Reservation, success: bool) -> Result<(), Error> {
        reservation.throttle = None;
        if !success && reservation.locks_identity() {
            self.locked_out(KeyKind::Identity);
        }
        let keys = std::mem::take(&mut reservation.keys);
        if keys.is_empty() {
            return Ok(());
        }
        let ops = keys
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

    /// Gives every count of `reservation` back: the attempt was not made (the hashing queue
    /// was full). Unlike a success, it clears nothing.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn release(&self, mut reservation: Reservation) -> Result<(), Error> {
        reservation.throttle = None;
        let keys = std::mem::take(&mut reservation.keys);
        if keys.is_empty() {
            return Ok(());
        }
        let ops = keys.iter().map(|k| (k.key, ThrottleOp::Refund)).collect();
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

/// A strategy's `request_limit`: how many requests that send a message or create an
/// account a client address, and an identity, may make per window. Every request counts,
/// success or not (they cost the daemon a hash or a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    pub per_address: u32,
    pub per_identity: u32,
    pub window: Duration,
}

/// `request_limit = { per_address, per_identity, window }`: a key left out keeps the
/// strategy's default.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestLimitTable {
    /// Requests per window from one client address (IPv6 counted by its /64). At least 1.
    pub per_address: Option<u32>,
    /// Requests per window for one identity, whether or not it exists. At least 1.
    pub per_identity: Option<u32>,
    /// The window, in whole seconds, e.g. `"15m"`.
    pub window: Option<String>,
}

/// How `request_limit` is written in a strategy table: `true` (the default limits), `false`
/// (none) or a table. For config schemas: [`RequestLimit::read`] reads the value itself.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RequestLimitSetting {
    /// `true`: the strategy's default limits; `false`: no limit.
    Switch(bool),
    Table(RequestLimitTable),
}

impl RequestLimit {
    /// The default of the strategies of this repository: 30 per address and 5 per identity
    /// every 15 minutes.
    pub const DEFAULT: RequestLimit = RequestLimit {
        per_address: 30,
        per_identity: 5,
        window: Duration::from_secs(15 * 60),
    };

    /// Reads `request_limit` at `path`: absent or `true` for `default`, `false` for none, or
    /// a table `{ per_address, per_identity, window }` whose missing keys keep the default.
    pub fn read(
        path: &str,
        value: Option<toml::Value>,
        default: RequestLimit,
        problems: &mut crate::Problems,
    ) -> Option<RequestLimit> {
        match value {
            None | Some(toml::Value::Boolean(true)) => Some(default),
            Some(toml::Value::Boolean(false)) => None,
            Some(value @ toml::Value::Table(_)) => {
                let raw = crate::TableReader::read::<RequestLimitTable>(path, value, problems)?;
                let mut limit = default;
                if let Some(n) = raw.per_address {
                    limit.per_address = n;
                }
                if let Some(n) = raw.per_identity {
                    limit.per_identity = n;
                }
                for (key, n) in [
                    ("per_address", limit.per_address),
                    ("per_identity", limit.per_identity),
                ] {
                    if n == 0 {
                        problems.push(format!("{path}.{key}"), "must be at least 1");
                    }
                }
                if let Some(text) = raw.window {
                    match crate::parse_lifetime(&text) {
                        Ok(d) => limit.window = d,
                        Err(m) => problems.push(format!("{path}.window"), m),
                    }
                }
                Some(limit)
            }
            Some(_) => {
                problems.push(
                    path,
                    "must be false, true or a table { per_address, per_identity, window }",
                );
                None
            }
        }
    }

    /// The per-address key of `scope` for `ip`.
    pub fn address(&self, scope: &str, ip: IpAddr) -> Counted {
        Counted::address(
            &format!("requests:{scope}"),
            ip,
            Limit {
                max: self.per_address,
                window: self.window,
            },
        )
    }

    /// The per-identity key of `scope` for a prepared identity `value`.
    pub fn identity(&self, scope: &str, value: &str) -> Counted {
        Counted::identity(
            &format!("requests:{scope}"),
            value,
            Limit {
                max: self.per_identity,
                window: self.window,
            },
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reservation_dropped_without_settling_gives_its_counts_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = authd_store_redb::open(&dir.path().join("t.redb")).unwrap();
        let store: Arc<dyn ThrottleStore> = Arc::new(store);
        let throttle = Throttle::new(Arc::clone(&store), Clock::system());
        let limit = Limit {
            max: 3,
            window: Duration::from_secs(60),
        };
        let key = Counted::identity("user/password", "ada@example.com", limit);
        for _ in 0..5 {
            // An attempt that ends on an error before it is settled.
            let reservation = throttle.reserve(vec![key.clone()]).await.unwrap().unwrap();
            drop(reservation);
            for _ in 0..100 {
                if store.throttle_get(&key.key).await.unwrap().unwrap().count == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        assert_eq!(throttle.locked_for(&key.key).await.unwrap(), None);
        // Requests counted for good stay counted.
        let other = Counted::address(
            "requests:user/password/register",
            "192.0.2.1".parse().unwrap(),
            limit,
        );
        for _ in 0..3 {
            assert_eq!(throttle.count(vec![other.clone()]).await.unwrap(), Ok(()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(throttle.count(vec![other.clone()]).await.unwrap().is_err());
        // Settled attempts do count.
        for _ in 0..3 {
            let r = throttle.reserve(vec![key.clone()]).await.unwrap().unwrap();
            throttle.settle(r, false).await.unwrap();
        }
        assert!(throttle.locked_for(&key.key).await.unwrap().is_some());
    }

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
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::1")), ip("::"));
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
