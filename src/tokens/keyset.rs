//! The key set and its lifecycle: pending -> active -> retired -> gone.
//!
//! What persists is one meta record ([`StoredKeysetV1`], JSON under [`META_KEY`]), shared by
//! every daemon on the store: the generated keys (sealed PKCS#8, with when each starts signing
//! and stops), when each operator key and HMAC algorithm was first seen retired, and which
//! HMAC algorithm signs. [`plan`] is the policy, pure and on an injected time: given the
//! record, the config and `now`, the record as it should be. [`sync`] applies it under the
//! store's compare-and-swap, so that of several daemons one makes a rotation and the others
//! read it. [`KeySet`] is the live form: which key signs at a time, which keys verify.
//!
//! States follow from times, not flags: a generated key is pending before `activates_at`,
//! active until `retired_at`, retired after, and gone once `retired_at` + the longest token
//! lifetime has passed (every token it signed has expired). An operator key is in the state
//! the config gives; removing it from the list makes it gone at once.
//!
//! This module must not read files (the caller reads PEM files) nor log secrets.

use std::collections::BTreeMap;

use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use authd_strategy_api::{MetaStore, Sealer};

use super::Error;
use super::keys::{KeyPair, jwt_algorithm};
use crate::config::{KeyState, SigningAlgorithm};

/// The meta key of the record.
pub const META_KEY: &str = "tokens.keyset";
/// Compare-and-swap attempts before giving up (another daemon keeps writing).
const SWAP_ATTEMPTS: usize = 8;

/// The persisted key set, version 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKeysetV1 {
    pub v: u32,
    /// Keys authd generated.
    #[serde(default)]
    pub generated: Vec<StoredKeyV1>,
    /// Operator key ids and `hmac:<alg>`: when each was first seen retired (Unix seconds).
    #[serde(default)]
    pub retired_since: BTreeMap<String, u64>,
    /// The HMAC algorithm that signs, when one does.
    #[serde(default)]
    pub hmac_signing: Option<String>,
}

/// A generated key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKeyV1 {
    pub kid: String,
    pub alg: String,
    pub created_at: u64,
    /// When it starts signing (pending before).
    pub activates_at: u64,
    /// When it stops signing; it verifies until this + the longest token lifetime.
    #[serde(default)]
    pub retired_at: Option<u64>,
    /// PKCS#8 DER of the private key, as the [`Sealer`] made it.
    pub private: String,
}

/// What the config asks of the key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub algorithm: SigningAlgorithm,
    /// The operator's keys `(kid, state)`; empty: keys are generated.
    pub operator: Vec<(String, KeyState)>,
    /// Seconds between generated keys.
    pub rotate_every: Option<u64>,
    /// Seconds a new generated key is published before it signs.
    pub publish_ahead: u64,
    /// Seconds a retired key keeps verifying: the longest token lifetime.
    pub overlap: u64,
    /// An HMAC secret exists (in the store or configured): when no record exists yet (a store
    /// of a version before key sets), it signed the tokens out there, with an HMAC algorithm
    /// not recorded, so every HMAC algorithm is taken as retired now.
    pub adopt_hmac: bool,
}

impl Policy {
    /// The algorithm of the keys to generate, if keys are generated.
    fn generated_alg(&self) -> Option<SigningAlgorithm> {
        (!self.algorithm.is_hmac() && self.operator.is_empty()).then_some(self.algorithm)
    }
}

/// The `retired_since` name of an HMAC algorithm.
pub fn hmac_label(alg: SigningAlgorithm) -> String {
    format!("hmac:{}", alg.name())
}

fn signs_at(k: &StoredKeyV1, now: u64) -> bool {
    k.activates_at <= now && k.retired_at.is_none_or(|r| r > now)
}

/// The record as `policy` wants it at `now`. `make` generates and seals a key of an algorithm
/// when one is needed. Unchanged when nothing is due.
///
/// # Errors
/// `make`'s.
pub fn plan(
    record: &StoredKeysetV1,
    policy: &Policy,
    now: u64,
    make: &mut dyn FnMut(SigningAlgorithm, u64, u64) -> Result<StoredKeyV1, Error>,
) -> Result<StoredKeysetV1, Error> {
    let mut r = record.clone();
    if r.v == 0 && policy.adopt_hmac && !policy.algorithm.is_hmac() {
        for alg in SigningAlgorithm::ALL.into_iter().filter(|a| a.is_hmac()) {
            r.retired_since.insert(hmac_label(alg), now);
        }
    }
    r.v = 1;
    let overlap = policy.overlap;
    // Gone: every token they signed has expired. An operator key still listed as retired
    // keeps its date, so that it stays gone instead of starting a new overlap.
    r.generated
        .retain(|k| k.retired_at.is_none_or(|t| t.saturating_add(overlap) > now));
    let listed: Vec<&str> = policy.operator.iter().map(|(k, _)| k.as_str()).collect();
    r.retired_since
        .retain(|k, t| listed.contains(&k.as_str()) || t.saturating_add(overlap) > now);

    // HMAC: the algorithm that signed is retired when another takes over.
    let hmac_now = policy.algorithm.is_hmac().then(|| policy.algorithm.name());
    if r.hmac_signing.as_deref() != hmac_now {
        if let Some(previous) = r.hmac_signing.take()
            && let Some(alg) = SigningAlgorithm::from_name(&previous)
        {
            r.retired_since.insert(hmac_label(alg), now);
        }
        r.hmac_signing = hmac_now.map(str::to_string);
    }
    if policy.algorithm.is_hmac() {
        r.retired_since.remove(&hmac_label(policy.algorithm));
    }

    // The operator's keys: retired ones get a date once; others (rolled back) lose it.
    for (kid, state) in &policy.operator {
        if *state == KeyState::Retired {
            r.retired_since.entry(kid.clone()).or_insert(now);
        } else {
            r.retired_since.remove(kid);
        }
    }

    // Generated keys.
    let target = policy.generated_alg();
    let live_target = |r: &StoredKeysetV1| {
        r.generated
            .iter()
            .filter(|k| k.retired_at.is_none() && Some(k.alg.as_str()) == target.map(|a| a.name()))
            .map(|k| k.activates_at)
            .max()
    };
    let mut activation = None;
    if let Some(alg) = target {
        match live_target(&r) {
            None => {
                // A switch of algorithm (or the first key): publish ahead while another
                // generated key still signs, so that verifiers have the new key in time.
                let another_signs = r.generated.iter().any(|k| signs_at(k, now));
                let at = if another_signs {
                    now.saturating_add(policy.publish_ahead)
                } else {
                    now
                };
                activation = Some(at);
                r.generated.push(make(alg, now, at)?);
            }
            Some(newest) => {
                if let Some(every) = policy.rotate_every
                    && newest <= now
                    && now.saturating_add(policy.publish_ahead) >= newest.saturating_add(every)
                {
                    let at = newest
                        .saturating_add(every)
                        .max(now.saturating_add(policy.publish_ahead));
                    activation = Some(at);
                    r.generated.push(make(alg, now, at)?);
                }
            }
        }
    }
    // Every other key still unretired stops signing when the new one starts (now, when there
    // is none); one that never signed is retired at once.
    if target.is_none() {
        // No generated key signs any more (HMAC, or the operator's keys): a retirement
        // scheduled for later (a key still signing until its successor) happens now.
        for k in &mut r.generated {
            if let Some(at) = k.retired_at
                && at > now
            {
                k.retired_at = Some(now);
            }
        }
    }
    let newest_kid = activation.and_then(|_| r.generated.last().map(|k| k.kid.clone()));
    for k in &mut r.generated {
        if k.retired_at.is_some() || Some(&k.kid) == newest_kid.as_ref() {
            continue;
        }
        let same_alg_kept =
            activation.is_none() && Some(k.alg.as_str()) == target.map(|a| a.name());
        if same_alg_kept {
            continue;
        }
        k.retired_at = Some(if k.activates_at > now {
            now
        } else {
            activation.unwrap_or(now)
        });
    }
    Ok(r)
}

/// Reads the record, applies [`plan`] and writes it back under compare-and-swap (again from
/// a fresh read when another daemon wrote first). Keys sealed under an older key-encryption
/// key (or in clear) are sealed again on the way.
///
/// # Errors
/// The store's, a record of an unknown version, or endless contention.
pub async fn sync(
    store: &dyn MetaStore,
    policy: &Policy,
    now: u64,
    sealer: &dyn Sealer,
) -> Result<StoredKeysetV1, Error> {
    let mut make = |alg: SigningAlgorithm, created_at: u64, activates_at: u64| {
        let key = KeyPair::generate(alg).map_err(|e| Error::Keyset(e.to_string()))?;
        let private = sealer
            .seal(key.pkcs8())
            .map_err(|e| Error::Keyset(e.to_string()))?;
        tracing::info!(kid = %key.kid, alg = alg.name(), activates_at, "TK0001 signing key generated");
        Ok(StoredKeyV1 {
            kid: key.kid.clone(),
            alg: alg.name().to_string(),
            created_at,
            activates_at,
            retired_at: None,
            private,
        })
    };
    for _ in 0..SWAP_ATTEMPTS {
        let bytes = store.meta_get(META_KEY).await?;
        let record = decode(bytes.as_deref())?;
        let mut next = plan(&record, policy, now, &mut make)?;
        for k in &mut next.generated {
            if sealer.needs_reseal(&k.private) {
                let plain = zeroize::Zeroizing::new(
                    sealer
                        .open(&k.private)
                        .map_err(|e| Error::Keyset(e.to_string()))?,
                );
                k.private = sealer
                    .seal(&plain)
                    .map_err(|e| Error::Keyset(e.to_string()))?;
            }
        }
        if next == record {
            return Ok(record);
        }
        let encoded =
            serde_json::to_vec(&next).map_err(|e| Error::Keyset(format!("encoding: {e}")))?;
        if store.meta_swap(META_KEY, bytes, Some(encoded)).await? {
            return Ok(next);
        }
    }
    Err(Error::Keyset(
        "TK0002 the key set kept changing under this daemon; retrying at the next refresh".into(),
    ))
}

/// Decodes a stored record (absent: empty).
///
/// # Errors
/// A record this version cannot read.
pub fn decode(bytes: Option<&[u8]>) -> Result<StoredKeysetV1, Error> {
    match bytes {
        None => Ok(StoredKeysetV1::default()),
        Some(bytes) => {
            let record: StoredKeysetV1 = serde_json::from_slice(bytes).map_err(|e| {
                Error::Keyset(format!("TK0003 the stored key set is unreadable: {e}"))
            })?;
            if record.v > 1 {
                return Err(Error::Keyset(format!(
                    "TK0004 the stored key set is of version {}, newer than this authd",
                    record.v
                )));
            }
            Ok(record)
        }
    }
}

/// Where a live key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Generated,
    /// `tokens.keys[i]`.
    Operator(usize),
    Hmac,
}

/// A key that signs or verifies.
pub struct LiveKey {
    /// `None` for HMAC (its tokens carry no `kid`).
    pub kid: Option<String>,
    pub alg: SigningAlgorithm,
    pub origin: Origin,
    /// Signs from then on (`u64::MAX`: never, a pending operator key).
    pub activates_at: u64,
    /// Signs until then; verifies until then + the overlap.
    pub retired_at: Option<u64>,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public JWK (asymmetric keys only).
    pub jwk: Option<Value>,
}

/// The state of a key at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    Pending,
    Active,
    Retired,
    Gone,
}

impl LiveKey {
    /// An asymmetric key.
    pub fn from_pair(
        pair: &KeyPair,
        origin: Origin,
        activates_at: u64,
        retired_at: Option<u64>,
    ) -> LiveKey {
        LiveKey {
            kid: Some(pair.kid.clone()),
            alg: pair.alg,
            origin,
            activates_at,
            retired_at,
            encoding: pair.encoding().clone(),
            decoding: pair.decoding().clone(),
            jwk: Some(pair.jwk().clone()),
        }
    }

    /// The HMAC secret for `alg`.
    pub fn hmac(alg: SigningAlgorithm, secret: &[u8], retired_at: Option<u64>) -> LiveKey {
        LiveKey {
            kid: None,
            alg,
            origin: Origin::Hmac,
            activates_at: 0,
            retired_at,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            jwk: None,
        }
    }

    pub fn state(&self, now: u64, overlap: u64) -> LiveState {
        match self.retired_at {
            Some(r) if r.saturating_add(overlap) <= now => LiveState::Gone,
            Some(r) if r <= now => LiveState::Retired,
            _ if self.activates_at > now => LiveState::Pending,
            _ => LiveState::Active,
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub fn jwt_alg(&self) -> jsonwebtoken::Algorithm {
        jwt_algorithm(self.alg)
    }
}

/// The keys of one moment of the record, on authd's clock.
pub struct KeySet {
    pub keys: Vec<LiveKey>,
    /// Seconds a retired key keeps verifying.
    pub overlap: u64,
    /// The record these keys were built from.
    pub record: StoredKeysetV1,
}

impl KeySet {
    /// The key that signs at `now`: of the keys active then, the one that started last.
    pub fn signer(&self, now: u64) -> Option<&LiveKey> {
        self.keys
            .iter()
            .filter(|k| k.state(now, self.overlap) == LiveState::Active)
            .max_by_key(|k| k.activates_at)
    }

    /// The key that verifies a token whose header says `kid` and `alg`: the same algorithm,
    /// the same `kid` (none for HMAC), not gone.
    pub fn verifier(&self, kid: Option<&str>, alg: SigningAlgorithm, now: u64) -> Option<&LiveKey> {
        self.keys.iter().find(|k| {
            k.alg == alg && k.kid.as_deref() == kid && k.state(now, self.overlap) != LiveState::Gone
        })
    }

    /// The public keys to publish at `now`: every asymmetric key not gone.
    pub fn jwks(&self, now: u64) -> Value {
        let keys: Vec<&Value> = self
            .keys
            .iter()
            .filter(|k| k.state(now, self.overlap) != LiveState::Gone)
            .filter_map(|k| k.jwk.as_ref())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use authd_strategy_api::Clock;

    const DAY: u64 = 86_400;

    fn policy(alg: SigningAlgorithm) -> Policy {
        Policy {
            algorithm: alg,
            operator: Vec::new(),
            rotate_every: Some(30 * DAY),
            publish_ahead: 3600,
            overlap: 14 * DAY,
            adopt_hmac: false,
        }
    }

    /// A key generator that makes no key material: the lifecycle is about times.
    fn fake() -> impl FnMut(SigningAlgorithm, u64, u64) -> Result<StoredKeyV1, Error> {
        let mut n = 0;
        move |alg, created_at, activates_at| {
            n += 1;
            Ok(StoredKeyV1 {
                kid: format!("k{n}"),
                alg: alg.name().into(),
                created_at,
                activates_at,
                retired_at: None,
                private: String::new(),
            })
        }
    }

    fn signer(r: &StoredKeysetV1, now: u64) -> Option<&str> {
        r.generated
            .iter()
            .filter(|k| signs_at(k, now))
            .max_by_key(|k| k.activates_at)
            .map(|k| k.kid.as_str())
    }

    #[test]
    fn rotation_publishes_ahead_then_retires_then_forgets() {
        let clock = Clock::system();
        let p = policy(SigningAlgorithm::EdDsa);
        let mut make = fake();
        let t0 = clock.now_secs();
        let r = plan(&StoredKeysetV1::default(), &p, t0, &mut make).unwrap();
        assert_eq!(r.generated.len(), 1);
        assert_eq!(
            r.generated[0].activates_at, t0,
            "the first key signs at once"
        );
        assert_eq!(signer(&r, t0), Some("k1"));
        // Nothing is due the next day: the record is unchanged.
        clock.advance_ms(DAY as i64 * 1000);
        assert_eq!(plan(&r, &p, clock.now_secs(), &mut make).unwrap(), r);

        // publish_ahead before 30 days: k2 is made, pending; k1 still signs.
        clock.advance_ms(((29 * DAY) - 3600) as i64 * 1000);
        let t1 = clock.now_secs();
        let r = plan(&r, &p, t1, &mut make).unwrap();
        assert_eq!(r.generated.len(), 2);
        let k2 = &r.generated[1];
        // At 30 days, or publish_ahead from now if this run was slow to get here.
        let at = (t0 + 30 * DAY).max(t1 + 3600);
        assert_eq!(k2.activates_at, at);
        assert!(
            at - t1 >= 3600,
            "published at least publish_ahead before it signs"
        );
        assert_eq!(r.generated[0].retired_at, Some(at));
        assert_eq!(signer(&r, t1), Some("k1"));
        // Planning again changes nothing (another daemon reading the same record).
        assert_eq!(plan(&r, &p, t1, &mut make).unwrap(), r);

        // An hour later k2 signs; k1 is retired but kept while its tokens live.
        clock.advance_ms(3600 * 1000);
        let t2 = clock.now_secs();
        assert_eq!(signer(&r, t2), Some("k2"));
        let r = plan(&r, &p, at + 14 * DAY - 1, &mut make).unwrap();
        assert!(r.generated.iter().any(|k| k.kid == "k1"));
        // Once its overlap (the longest token lifetime) has passed, k1 is gone.
        let r = plan(&r, &p, at + 14 * DAY, &mut make).unwrap();
        assert!(r.generated.iter().all(|k| k.kid != "k1"));
    }

    #[test]
    fn a_late_daemon_still_publishes_ahead() {
        let p = policy(SigningAlgorithm::Es256);
        let mut make = fake();
        let r = plan(&StoredKeysetV1::default(), &p, 1000, &mut make).unwrap();
        // Nobody refreshed until 40 days later: the new key still waits publish_ahead.
        let late = 1000 + 40 * DAY;
        let r = plan(&r, &p, late, &mut make).unwrap();
        assert_eq!(r.generated[1].activates_at, late + 3600);
        assert_eq!(signer(&r, late), Some("k1"));
    }

    #[test]
    fn switching_algorithms_is_a_rotation() {
        let mut make = fake();
        // HS256 signs first.
        let hs = policy(SigningAlgorithm::Hs256);
        let r = plan(&StoredKeysetV1::default(), &hs, 100, &mut make).unwrap();
        assert_eq!(r.hmac_signing.as_deref(), Some("HS256"));
        assert!(r.generated.is_empty());
        // HS256 -> EdDSA: EdDSA signs at once (HMAC tokens were never checked by others);
        // HS256 is retired from now and keeps verifying for the overlap.
        let ed = policy(SigningAlgorithm::EdDsa);
        let r = plan(&r, &ed, 200, &mut make).unwrap();
        assert_eq!(r.hmac_signing, None);
        assert_eq!(r.retired_since.get("hmac:HS256"), Some(&200));
        assert_eq!(signer(&r, 200), Some("k1"));
        // EdDSA -> ES256: the ES256 key is published ahead; EdDSA signs until then.
        let es = policy(SigningAlgorithm::Es256);
        let r = plan(&r, &es, 300, &mut make).unwrap();
        assert_eq!(signer(&r, 300), Some("k1"));
        assert_eq!(signer(&r, 300 + 3600), Some("k2"));
        assert_eq!(r.generated[0].retired_at, Some(300 + 3600));
        // Back to HS256: every generated key retires now, HMAC signs.
        let r = plan(&r, &hs, 400, &mut make).unwrap();
        assert!(r.generated.iter().all(|k| k.retired_at.is_some()));
        assert_eq!(signer(&r, 400), None);
        assert!(!r.retired_since.contains_key("hmac:HS256"));
    }

    #[test]
    fn operator_keys_get_a_retirement_date_once() {
        let mut make = fake();
        let mut p = policy(SigningAlgorithm::EdDsa);
        p.rotate_every = None;
        p.operator = vec![("a".into(), KeyState::Active)];
        let r = plan(&StoredKeysetV1::default(), &p, 10, &mut make).unwrap();
        assert!(r.generated.is_empty(), "operator keys: nothing generated");
        p.operator = vec![
            ("a".into(), KeyState::Retired),
            ("b".into(), KeyState::Active),
        ];
        let r = plan(&r, &p, 20, &mut make).unwrap();
        assert_eq!(r.retired_since.get("a"), Some(&20));
        let r = plan(&r, &p, 30, &mut make).unwrap();
        assert_eq!(r.retired_since.get("a"), Some(&20), "the first date stays");
        // Long after: still listed, so the date stays (the key stays gone).
        let r = plan(&r, &p, 20 + 15 * DAY, &mut make).unwrap();
        assert_eq!(r.retired_since.get("a"), Some(&20));
        // Unlisted and past its overlap: forgotten.
        p.operator.remove(0);
        let r = plan(&r, &p, 20 + 15 * DAY, &mut make).unwrap();
        assert!(r.retired_since.is_empty());
    }

    #[test]
    fn live_states_follow_the_clock() {
        let pair = KeyPair::generate(SigningAlgorithm::EdDsa).unwrap();
        let key = LiveKey::from_pair(&pair, Origin::Generated, 100, Some(200));
        assert_eq!(key.state(99, 50), LiveState::Pending);
        assert_eq!(key.state(100, 50), LiveState::Active);
        assert_eq!(key.state(200, 50), LiveState::Retired);
        assert_eq!(key.state(249, 50), LiveState::Retired);
        assert_eq!(key.state(250, 50), LiveState::Gone);
        let set = KeySet {
            keys: vec![key],
            overlap: 50,
            record: StoredKeysetV1::default(),
        };
        assert_eq!(set.jwks(99)["keys"].as_array().map(Vec::len), Some(1));
        assert_eq!(set.jwks(250)["keys"].as_array().map(Vec::len), Some(0));
        let kid = Some(pair.kid.as_str());
        assert!(set.verifier(kid, SigningAlgorithm::EdDsa, 99).is_some());
        assert!(set.verifier(kid, SigningAlgorithm::Es256, 99).is_none());
        assert!(set.verifier(None, SigningAlgorithm::EdDsa, 99).is_none());
        assert!(set.verifier(kid, SigningAlgorithm::EdDsa, 250).is_none());
    }
}
