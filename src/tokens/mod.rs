//! JWTs: issuing and verifying with `jsonwebtoken` ([`TokenService`]), with the keys of the
//! key set: asymmetric keys (EdDSA, ES256, RS256; generated and kept in the store, or the
//! operator's PEM files) published as a JWKS, and the HMAC secret (from the environment, a
//! file, or the store). Also the reading of other secrets from the same kinds of places (the
//! admin token, introspection clients).
//!
//! Verification picks the key by the header's `kid` and `alg` among the keys not gone, then
//! checks signature, `exp` and `nbf` on authd's clock, `iss` and `aud`; what a token is *for*
//! (purpose, action, revocation, session epoch) is checked by whoever accepts it, on every
//! request, never cached here.
//!
//! Files: `keys` (key pairs, PEM, JWK, thumbprints), `keyset` (lifecycle and the stored
//! record), `kek` (sealing at rest), `jwks`, `cache` (verified tokens), `diff` (key changes in
//! words for `authd check --against`), `secret_strength`.

pub mod cache;
pub mod diff;
pub mod jwks;
pub mod kek;
pub mod keys;
pub mod keyset;
pub mod secret_strength;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use authd_strategy_api::{
    Claims, ClearSealer, Clock, Error as ApiError, Event, Events, IssuedToken, MetaStore, Sealer,
    StoreError, TokenError, TokenSpec, Tokens,
};
use jsonwebtoken::{Header, Validation};
use uuid::Uuid;

use crate::config::{Config, KeyState, SecretSource, SigningAlgorithm, TokensConfig};
use cache::{Verified, VerifiedCache};
use keys::KeyPair;
use keyset::{KeySet, LiveKey, Origin, Policy, StoredKeysetV1};

/// The meta key of the generated signing key.
const SIGNING_KEY: &str = "signing_key";

/// Why a secret could not be loaded. Never holds the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The variable is not named in the message: a secret pasted in place of its name must
    /// not reach a log.
    #[error("{key}: the environment variable it names is not set")]
    EnvMissing { key: String },
    #[error("{key}: cannot read the file it names: {source}")]
    File {
        key: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {weakness}")]
    Weak {
        key: String,
        weakness: secret_strength::Weakness,
    },
    #[error("cannot load the signing key from the store: {0}")]
    Store(#[from] StoreError),
    /// A key of `[[tokens.keys]]`: `key` is its TOML path.
    #[error("{key}: {message}")]
    Key { key: String, message: String },
    #[error(transparent)]
    Kek(#[from] kek::KekError),
    #[error("signing keys: {0}")]
    Keyset(String),
}

/// Reads a secret from `source` (`key` names the config key, for messages) and checks that it
/// is strong enough to sign or authenticate with.
///
/// # Errors
/// When the variable or file is missing, or the secret is weak.
pub fn read_secret(key: &str, source: &SecretSource) -> Result<Vec<u8>, Error> {
    let secret = match source {
        SecretSource::Env(var) => std::env::var(var)
            .map_err(|_| Error::EnvMissing {
                key: key.to_string(),
            })?
            .into_bytes(),
        SecretSource::File(path) => read_secret_file(key, path)?,
        // Only signing keys are generated; the caller handles that case.
        SecretSource::Generated => Vec::new(),
    };
    secret_strength::check(&secret).map_err(|weakness| Error::Weak {
        key: key.to_string(),
        weakness,
    })?;
    Ok(secret)
}

/// Loads the signing secret named by the config: from the environment or a file (checked for
/// strength), or generated once (256 random bits) and kept in the store, sealed by `sealer`
/// (see [`generated_secret`]).
///
/// # Errors
/// When the variable or file is missing, the secret is weak, the stored secret cannot be
/// opened, or the store fails.
pub async fn load_secret(
    config: &TokensConfig,
    store: &dyn MetaStore,
    sealer: &dyn Sealer,
) -> Result<Vec<u8>, Error> {
    match &config.secret {
        SecretSource::Generated => generated_secret(store, sealer, true)
            .await?
            .map(|secret| secret.to_vec())
            .ok_or_else(|| Error::Keyset("TK0005 the generated HMAC secret vanished".into())),
        source @ SecretSource::Env(_) => read_secret("tokens.signing_secret_env", source),
        source @ SecretSource::File(_) => read_secret("tokens.signing_secret_file", source),
    }
}

/// Bytes of a generated HMAC secret. A stored value of exactly this length is the secret in
/// clear (as authd stores it without a key-encryption key, and as every authd did before
/// sealing it); a sealed text is always longer (`v1:<id>:` and an AEAD's nonce and tag).
const GENERATED_SECRET_BYTES: usize = 32;

/// Whether `sealer` seals secrets (holds a key-encryption key): it wants a clear text sealed.
fn seals(sealer: &dyn Sealer, secret: &[u8]) -> Result<bool, Error> {
    let clear = ClearSealer.seal(secret).map_err(sealing)?;
    Ok(sealer.needs_reseal(&clear))
}

fn sealing(e: ApiError) -> Error {
    Error::Keyset(format!("the generated HMAC secret: {e}"))
}

/// What is stored for a generated HMAC secret: sealed by `sealer` when it holds a
/// key-encryption key, the bytes themselves otherwise.
fn stored_form(sealer: &dyn Sealer, secret: &[u8]) -> Result<Vec<u8>, Error> {
    if seals(sealer, secret)? {
        Ok(sealer.seal(secret).map_err(sealing)?.into_bytes())
    } else {
        Ok(secret.to_vec())
    }
}

/// The secret of a stored value, and whether it should be stored again (sealed under the
/// current key-encryption key: it is in clear, or under an older key).
fn open_stored(
    sealer: &dyn Sealer,
    stored: &[u8],
) -> Result<(zeroize::Zeroizing<Vec<u8>>, bool), Error> {
    if stored.len() == GENERATED_SECRET_BYTES {
        let secret = zeroize::Zeroizing::new(stored.to_vec());
        let again = seals(sealer, &secret)?;
        return Ok((secret, again));
    }
    let text = std::str::from_utf8(stored)
        .map_err(|_| Error::Keyset("TK0006 the stored HMAC secret is unreadable".into()))?;
    let secret = zeroize::Zeroizing::new(sealer.open(text).map_err(sealing)?);
    Ok((secret, sealer.needs_reseal(text)))
}

/// The generated HMAC secret of the store (made first when `create` and there is none),
/// kept sealed under the key-encryption key when there is one: a secret stored in clear (by
/// an authd without a KEK, or of before sealing) or under an older KEK is sealed again under
/// the current one here, at each start and reload, with a compare-and-swap (another daemon
/// may do the same). `None` when there is none and `create` is false.
///
/// # Errors
/// When the stored value cannot be opened (sealed under a KEK this daemon does not hold), or
/// the store fails.
pub async fn generated_secret(
    store: &dyn MetaStore,
    sealer: &dyn Sealer,
    create: bool,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, Error> {
    let mut stored = if create {
        let mut key = zeroize::Zeroizing::new(vec![0u8; GENERATED_SECRET_BYTES]);
        rand::Rng::fill(&mut rand::rng(), key.as_mut_slice());
        store
            .meta_put_if_absent(SIGNING_KEY, stored_form(sealer, &key)?)
            .await?
    } else {
        match store.meta_get(SIGNING_KEY).await? {
            Some(stored) => stored,
            None => return Ok(None),
        }
    };
    for _ in 0..8 {
        let (secret, again) = open_stored(sealer, &stored)?;
        if !again {
            return Ok(Some(secret));
        }
        let sealed = stored_form(sealer, &secret)?;
        if store
            .meta_swap(SIGNING_KEY, Some(stored.clone()), Some(sealed))
            .await?
        {
            tracing::info!(
                "TK0007 the generated HMAC secret was sealed under the current key-encryption key"
            );
            return Ok(Some(secret));
        }
        // Another daemon changed it first: read what it wrote.
        match store.meta_get(SIGNING_KEY).await? {
            Some(now) => stored = now,
            None => return Ok(None),
        }
    }
    Err(Error::Keyset(
        "TK0008 the stored HMAC secret kept changing under this daemon".into(),
    ))
}

fn read_secret_file(key: &str, path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = std::fs::read(path).map_err(|source| Error::File {
        key: key.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// Largest PEM file read for a key.
const MAX_PEM_BYTES: u64 = 64 * 1024;

/// The audiences of tokens, per subject.
#[derive(Debug, Clone, Default)]
struct Audiences {
    default: Vec<String>,
    per_subject: HashMap<String, Vec<String>>,
}

impl Audiences {
    fn of(&self, subject: &str) -> &[String] {
        self.per_subject
            .get(subject)
            .map_or(self.default.as_slice(), Vec::as_slice)
    }
}

/// Issues and verifies tokens with the key set of one config.
pub struct TokenService {
    clock: Clock,
    events: Arc<dyn Events>,
    issuer: String,
    session_lifetime: Duration,
    publish_ahead: Duration,
    audiences: Audiences,
    policy: Policy,
    /// The operator's keys, in the order of `tokens.keys`, with their states.
    operator: Vec<(KeyPair, KeyState)>,
    /// The HMAC secret, when there is one (it signs, or verifies tokens of before a switch).
    hmac_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    sealer: Arc<dyn Sealer>,
    keys: ArcSwap<KeySet>,
    refreshing: tokio::sync::Mutex<()>,
    /// One validation per algorithm: the header's `alg` must be the key's.
    validations: HashMap<SigningAlgorithm, Validation>,
    cache: VerifiedCache,
}

fn validation(alg: SigningAlgorithm, issuer: &str) -> Validation {
    // Only this algorithm: `alg: none` and every other algorithm are refused.
    let mut v = Validation::new(keys::jwt_algorithm(alg));
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
    // Times are checked against authd's clock, and `aud` per subject, below.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

/// Reads an operator's PEM file (bounded) into a key pair.
fn read_pem(index: usize, key: &crate::config::KeyConfig) -> Result<KeyPair, Error> {
    use std::io::Read as _;
    let at = format!("tokens.keys[{index}].file");
    let fail = |message: String| Error::Key {
        key: at.clone(),
        message,
    };
    let file = std::fs::File::open(&key.file)
        .map_err(|e| fail(format!("cannot read {}: {e}", key.file.display())))?;
    let mut text = String::new();
    file.take(MAX_PEM_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot read {}: {e}", key.file.display())))?;
    KeyPair::from_pem(&text, key.id.clone()).map_err(|e| fail(e.to_string()))
}

impl TokenService {
    /// The token service of `config`: the HMAC secret loaded, the operator's PEM files read,
    /// the stored key set brought up to date (a key generated when one is due) and opened.
    ///
    /// # Errors
    /// A secret or key file missing, weak or unreadable; a stored key the sealer cannot open;
    /// the store's failure.
    pub async fn build(
        config: &Config,
        store: &dyn MetaStore,
        sealer: Arc<dyn Sealer>,
        clock: Clock,
        events: Arc<dyn Events>,
    ) -> Result<TokenService, Error> {
        let t = &config.tokens;
        let hmac_secret = if t.algorithm.is_hmac() {
            Some(load_secret(t, store, sealer.as_ref()).await?)
        } else {
            match &t.secret {
                // Verifies HMAC tokens of before a switch, if one was ever generated.
                SecretSource::Generated => generated_secret(store, sealer.as_ref(), false)
                    .await?
                    .map(|s| s.to_vec()),
                source @ SecretSource::Env(_) => {
                    Some(read_secret("tokens.signing_secret_env", source)?)
                }
                source @ SecretSource::File(_) => {
                    Some(read_secret("tokens.signing_secret_file", source)?)
                }
            }
        };
        let mut operator: Vec<(KeyPair, KeyState)> = Vec::with_capacity(t.keys.len());
        for (i, k) in t.keys.iter().enumerate() {
            let pair = read_pem(i, k)?;
            if k.state == KeyState::Active && pair.alg != t.algorithm {
                return Err(Error::Key {
                    key: format!("tokens.keys[{i}]"),
                    message: format!(
                        "is the active key but a {} key; tokens.signing_algorithm is {}",
                        pair.alg.name(),
                        t.algorithm.name()
                    ),
                });
            }
            if let Some(j) = operator.iter().position(|(p, _)| p.kid == pair.kid) {
                return Err(Error::Key {
                    key: format!("tokens.keys[{i}]"),
                    message: format!("has the same kid as tokens.keys[{j}]"),
                });
            }
            operator.push((pair, k.state));
        }
        let policy = Policy {
            algorithm: t.algorithm,
            operator: operator
                .iter()
                .map(|(p, state)| (p.kid.clone(), *state))
                .collect(),
            rotate_every: t.rotate_every.map(|d| d.as_secs()),
            publish_ahead: t.publish_ahead.as_secs(),
            overlap: config.longest_token_lifetime().as_secs(),
            adopt_hmac: hmac_secret.is_some(),
        };
        let audiences = Audiences {
            default: t.audience.clone(),
            per_subject: config
                .resources
                .iter()
                .filter_map(|r| Some((r.spec.name.clone(), r.audience.clone()?)))
                .collect(),
        };
        let service = TokenService::assemble(
            t,
            policy,
            audiences,
            operator,
            hmac_secret.map(zeroize::Zeroizing::new),
            sealer,
            clock,
            events,
        );
        service.refresh(store).await?;
        Ok(service)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        t: &TokensConfig,
        policy: Policy,
        audiences: Audiences,
        operator: Vec<(KeyPair, KeyState)>,
        hmac_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
        sealer: Arc<dyn Sealer>,
        clock: Clock,
        events: Arc<dyn Events>,
    ) -> TokenService {
        let validations = SigningAlgorithm::ALL
            .into_iter()
            .map(|alg| (alg, validation(alg, &t.issuer)))
            .collect();
        TokenService {
            clock,
            events,
            issuer: t.issuer.clone(),
            session_lifetime: t.token_lifetime,
            publish_ahead: t.publish_ahead,
            keys: ArcSwap::from_pointee(KeySet {
                keys: Vec::new(),
                overlap: policy.overlap,
                record: StoredKeysetV1::default(),
            }),
            audiences,
            policy,
            operator,
            hmac_secret,
            sealer,
            refreshing: tokio::sync::Mutex::new(()),
            validations,
            cache: VerifiedCache::default(),
        }
    }

    /// A service with one fresh key of `config.algorithm` (a random secret for HMAC), no store
    /// and no rotation: for benchmarks and tests.
    ///
    /// # Errors
    /// When the key cannot be generated.
    pub fn ephemeral(
        config: &TokensConfig,
        clock: Clock,
        events: Arc<dyn Events>,
    ) -> Result<TokenService, Error> {
        let overlap = config.token_lifetime.as_secs();
        let policy = Policy {
            algorithm: config.algorithm,
            operator: Vec::new(),
            rotate_every: None,
            publish_ahead: config.publish_ahead.as_secs(),
            overlap,
            adopt_hmac: false,
        };
        let key = if config.algorithm.is_hmac() {
            let secret: [u8; 32] = rand::random();
            LiveKey::hmac(config.algorithm, &secret, None)
        } else {
            let pair =
                KeyPair::generate(config.algorithm).map_err(|e| Error::Keyset(e.to_string()))?;
            LiveKey::from_pair(&pair, Origin::Generated, 0, None)
        };
        let service = TokenService::assemble(
            config,
            policy,
            Audiences {
                default: config.audience.clone(),
                per_subject: HashMap::new(),
            },
            Vec::new(),
            None,
            Arc::new(authd_strategy_api::ClearSealer),
            clock,
            events,
        );
        service.keys.store(Arc::new(KeySet {
            keys: vec![key],
            overlap,
            record: StoredKeysetV1::default(),
        }));
        Ok(service)
    }

    /// Brings the stored key set up to date (a rotation that is due is made, under the
    /// store's compare-and-swap) and, when it changed (here or by another daemon), swaps in
    /// the new keys. The daemon calls it every [`TokenService::refresh_every`].
    ///
    /// # Errors
    /// The store's failure, or a stored key that cannot be opened; the keys in force stay.
    pub async fn refresh(&self, store: &dyn MetaStore) -> Result<bool, Error> {
        let _one_at_a_time = self.refreshing.lock().await;
        let now = self.clock.now_secs();
        let record = keyset::sync(store, &self.policy, now, self.sealer.as_ref()).await?;
        let current = self.keys.load();
        if record == current.record && !current.keys.is_empty() {
            return Ok(false);
        }
        let set = self.live(record, now)?;
        self.keys.store(Arc::new(set));
        Ok(true)
    }

    /// How often the daemon refreshes the key set: a quarter of `publish_ahead`, between 1s
    /// and 60s, so that a key another daemon made is here long before it signs.
    pub fn refresh_every(&self) -> Duration {
        (self.publish_ahead / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// The live keys of `record`.
    fn live(&self, record: StoredKeysetV1, now: u64) -> Result<KeySet, Error> {
        let mut keys = Vec::new();
        for g in &record.generated {
            let alg = SigningAlgorithm::from_name(&g.alg)
                .ok_or_else(|| Error::Keyset(format!("TK0006 key {} has an unknown alg", g.kid)))?;
            let der = zeroize::Zeroizing::new(
                self.sealer
                    .open(&g.private)
                    .map_err(|e| Error::Keyset(format!("key {}: {e}", g.kid)))?,
            );
            let pair = KeyPair::from_pkcs8(alg, &der, g.kid.clone())
                .map_err(|e| Error::Keyset(format!("key {}: {e}", g.kid)))?;
            keys.push(LiveKey::from_pair(
                &pair,
                Origin::Generated,
                g.activates_at,
                g.retired_at,
            ));
        }
        for (i, (pair, state)) in self.operator.iter().enumerate() {
            let (activates_at, retired_at) = match state {
                KeyState::Active => (0, None),
                KeyState::Pending => (u64::MAX, None),
                KeyState::Retired => (
                    0,
                    Some(record.retired_since.get(&pair.kid).copied().unwrap_or(now)),
                ),
            };
            keys.push(LiveKey::from_pair(
                pair,
                Origin::Operator(i),
                activates_at,
                retired_at,
            ));
        }
        if let Some(secret) = &self.hmac_secret {
            if let Some(alg) = record
                .hmac_signing
                .as_deref()
                .and_then(SigningAlgorithm::from_name)
            {
                keys.push(LiveKey::hmac(alg, secret, None));
            }
            for (label, since) in &record.retired_since {
                if let Some(alg) = label
                    .strip_prefix("hmac:")
                    .and_then(SigningAlgorithm::from_name)
                {
                    keys.push(LiveKey::hmac(alg, secret, Some(*since)));
                }
            }
        }
        Ok(KeySet {
            keys,
            overlap: self.policy.overlap,
            record,
        })
    }

    /// The JWKS document at this moment and its `Cache-Control` value.
    pub fn jwks(&self) -> (Vec<u8>, String) {
        (
            jwks::document(&self.keys.load(), self.clock.now_secs()),
            jwks::cache_control(self.publish_ahead),
        )
    }

    /// The `kid` and algorithm that sign now (`None` for an HMAC key's `kid`).
    pub fn signing_key(&self) -> Option<(Option<String>, SigningAlgorithm)> {
        let keys = self.keys.load();
        keys.signer(self.clock.now_secs())
            .map(|k| (k.kid.clone(), k.alg))
    }

    /// Every key not gone, for operators (`/admin/status`): `kid` (`null` for HMAC), `alg`,
    /// `state`, `source` (`generated`, `tokens.keys[i]`, `hmac`), when it signs from and until,
    /// when it stops verifying, and for generated keys the key-encryption key it is sealed
    /// under (`clear` without one). Never key material.
    pub fn status(&self) -> serde_json::Value {
        let keys = self.keys.load();
        let now = self.clock.now_secs();
        let sealed_with = |kid: &Option<String>| {
            let stored = keys
                .record
                .generated
                .iter()
                .find(|g| Some(&g.kid) == kid.as_ref())?;
            Some(
                kek::Kek::id_of(&stored.private)
                    .unwrap_or("clear")
                    .to_string(),
            )
        };
        let list: Vec<serde_json::Value> = keys
            .keys
            .iter()
            .filter(|k| k.state(now, keys.overlap) != keyset::LiveState::Gone)
            .map(|k| {
                let state = match k.state(now, keys.overlap) {
                    keyset::LiveState::Pending => "pending",
                    keyset::LiveState::Active => "active",
                    _ => "retired",
                };
                let source = match k.origin {
                    Origin::Generated => "generated".to_string(),
                    Origin::Operator(i) => format!("tokens.keys[{i}]"),
                    Origin::Hmac => "hmac".to_string(),
                };
                serde_json::json!({
                    "kid": k.kid,
                    "alg": k.alg.name(),
                    "state": state,
                    "source": source,
                    "signs_from": (k.activates_at != u64::MAX).then_some(k.activates_at),
                    "signs_until": k.retired_at,
                    "verifies_until": k.retired_at.map(|r| r.saturating_add(keys.overlap)),
                    "sealed_with": sealed_with(&k.kid),
                })
            })
            .collect();
        serde_json::json!({ "keys": list, "cached_tokens": self.cache.len() })
    }

    /// The `iss` of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences tokens of `subject` carry.
    pub fn audience_of(&self, subject: &str) -> &[String] {
        self.audiences.of(subject)
    }

    /// Verified tokens held by the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Verifies `token` without the cache (what a first sight costs): picks the key, checks
    /// the signature, times, `iss` and `aud`. Returns the claims and the key's `kid` and
    /// algorithm.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] for any token that is not good.
    pub fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let keys = self.keys.load();
        self.verify_signature(token, &keys, self.clock.now_secs())
            .map(|(claims, _, _)| claims)
    }

    fn verify_signature(
        &self,
        token: &str,
        keys: &KeySet,
        now: u64,
    ) -> Result<(Claims, Option<String>, SigningAlgorithm), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let alg = keys::from_jwt_algorithm(header.alg).ok_or(TokenError::Invalid)?;
        // The key named by `kid` (none for HMAC), of the header's algorithm: a token cannot
        // pick another key's algorithm (HS256 over a public key), nor a key authd lacks.
        let key = keys
            .verifier(header.kid.as_deref(), alg, now)
            .ok_or(TokenError::Invalid)?;
        let validation = self.validations.get(&alg).ok_or(TokenError::Invalid)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)?;
        if claims.exp <= now || claims.nbf > now || !self.check_audience(&claims) {
            return Err(TokenError::Invalid);
        }
        Ok((claims, key.kid.clone(), alg))
    }

    fn check_audience(&self, claims: &Claims) -> bool {
        let subject = claims.sub.split_once('?').map_or("", |(s, _)| s);
        let wanted = self.audiences.of(subject);
        wanted.is_empty() || claims.aud.iter().any(|a| wanted.contains(a))
    }
}

impl Tokens for TokenService {
    fn issue(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, ApiError> {
        let now = self.clock.now_secs();
        let keys = self.keys.load();
        let signer = keys
            .signer(now)
            .ok_or_else(|| ApiError::Tokens("TK0005 no key signs at this time".into()))?;
        let claims = Claims {
            sub: Claims::subject_claim(spec.subject, spec.user.id),
            jti: Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(spec.lifetime.as_secs()),
            iss: self.issuer.clone(),
            aud: self.audiences.of(spec.subject).to_vec(),
            purpose: spec.purpose,
            act: spec.act,
            bnd: spec.bnd,
            sep: Some(spec.user.session_epoch),
        };
        let mut header = Header::new(signer.jwt_alg());
        header.kid = signer.kid.clone();
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding)
            .map_err(|e| ApiError::Tokens(e.to_string()))?;
        self.events.emit(Event::TokenIssued {
            purpose: claims.purpose.as_str(),
        });
        Ok(IssuedToken { token, claims })
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = self.clock.now_secs();
        let keys = self.keys.load();
        let cache_key = VerifiedCache::key(token);
        if let Some(hit) = self.cache.get(&cache_key, now) {
            // Verified before; its key must still be there (not removed, not gone).
            return match keys.verifier(hit.kid.as_deref(), hit.alg, now) {
                Some(_) => Ok(hit.claims.clone()),
                None => Err(TokenError::Invalid),
            };
        }
        let (claims, kid, alg) = self.verify_signature(token, &keys, now)?;
        self.cache.insert(
            cache_key,
            Verified {
                claims: claims.clone(),
                kid,
                alg,
            },
        );
        Ok(claims)
    }

    fn session_lifetime(&self) -> Duration {
        self.session_lifetime
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
