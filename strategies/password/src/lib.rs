//! authd's password strategy, after AshAuthentication's (`AshAuthentication.Strategy.Password`):
//! `register`, `sign_in`, `sign_in_with_token`, `reset_request` and `reset`, with its later
//! security fixes (single-use reset tokens, equal cost for unknown identities).
//!
//! Hashing runs on the daemon's hashing pool; storage and tokens come through the traits of
//! `authd-strategy-api`. This crate knows nothing of HTTP or of the storage engine.

mod config;
pub mod hash;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{
    Error, FieldErrors, IssuedToken, Method, Outcome, PhaseRequest, PhaseSpec, Problems, Purpose,
    Rejection, ResetMessage, ResourceSpec, SecretChange, Sender, Services, Strategy,
    StrategyFactory, TokenError, TokenSpec, UniqueKey, UserRecord, ValidatedStrategy, Verdict,
    now_secs,
};
use serde_json::Value;
use tokio::sync::Semaphore;

pub use config::{PasswordConfig, Resettable};
pub use hash::HashParams;

const POST: &[Method] = &[Method::Post];
const GET_POST: &[Method] = &[Method::Get, Method::Post];

/// How long after a reset request its look-up starts, at least, plus up to
/// [`RESET_JITTER_MS`] at random.
const RESET_DELAY: Duration = Duration::from_millis(20);
const RESET_JITTER_MS: u64 = 30;

/// Most reset requests being looked up and sent at once, per strategy.
const MAX_RESETS_IN_FLIGHT: usize = 256;

/// The factory the registry lists: `type = "password"`.
pub struct Factory;

impl StrategyFactory for Factory {
    fn type_name(&self) -> &'static str {
        "password"
    }

    fn validate(
        &self,
        path: &str,
        _name: &str,
        resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<Box<dyn ValidatedStrategy>, Problems> {
        let config = PasswordConfig::from_table(path, resource, table)?;
        Ok(Box::new(Validated {
            config,
            resource: resource.clone(),
        }))
    }
}

/// A checked password strategy, not yet running.
#[derive(Debug)]
pub struct Validated {
    pub config: PasswordConfig,
    resource: ResourceSpec,
}

impl ValidatedStrategy for Validated {
    fn phases(&self) -> Vec<PhaseSpec> {
        let c = &self.config;
        let mut phases = Vec::new();
        if c.registration_enabled {
            phases.push(PhaseSpec {
                name: "register",
                methods: POST,
            });
        }
        if c.sign_in_enabled {
            phases.push(PhaseSpec {
                name: "sign_in",
                methods: POST,
            });
            if c.sign_in_tokens_enabled {
                phases.push(PhaseSpec {
                    name: "sign_in_with_token",
                    methods: GET_POST,
                });
            }
        }
        if c.resettable.is_some() {
            phases.push(PhaseSpec {
                name: "reset_request",
                methods: POST,
            });
            phases.push(PhaseSpec {
                name: "reset",
                methods: POST,
            });
        }
        phases
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "password (identity `{}`, hash {}{})",
            c.identity_field,
            c.hash,
            if c.resettable.is_some() {
                ", resettable"
            } else {
                ""
            }
        )
    }

    fn secret_fields(&self) -> Vec<String> {
        vec![self.config.hashed_password_field.clone()]
    }

    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy> {
        let sender = self
            .config
            .resettable
            .as_ref()
            .map(|r| services.senders.build(&r.sender));
        Arc::new(PasswordStrategy(Arc::new(Inner {
            subject: subject.to_string(),
            name: name.to_string(),
            phases: self.phases(),
            dummy_hash: self.config.hash.dummy(),
            config: self.config.clone(),
            resource: self.resource.clone(),
            services: services.clone(),
            sender,
            resets: Arc::new(Semaphore::new(MAX_RESETS_IN_FLIGHT)),
        })))
    }
}

/// A live password strategy. Cheap to clone (background reset work holds a clone).
#[derive(Clone)]
pub struct PasswordStrategy(Arc<Inner>);

struct Inner {
    subject: String,
    name: String,
    phases: Vec<PhaseSpec>,
    config: PasswordConfig,
    resource: ResourceSpec,
    services: Services,
    /// Verified against when the identity is unknown, so that it costs one real verify.
    dummy_hash: String,
    sender: Option<Arc<dyn Sender>>,
    resets: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Strategy for PasswordStrategy {
    fn phases(&self) -> &[PhaseSpec] {
        &self.0.phases
    }

    async fn handle(&self, phase: &str, request: PhaseRequest) -> Outcome {
        let params = request.params;
        match phase {
            "register" => self.0.register(&params).await,
            "sign_in" => self.0.sign_in(&params, request.client_ip).await,
            "sign_in_with_token" => self.0.sign_in_with_token(&params, request.client_ip).await,
            "reset_request" => self.reset_request(&params).await,
            "reset" => self.0.reset(&params, request.client_ip).await,
            // The server routes only declared phases here.
            _ => Ok(Verdict::Rejected(Rejection::InvalidToken)),
        }
    }

    fn credential_is_stale(&self, user: &UserRecord) -> Option<bool> {
        let stored = user.secrets.get(&self.0.config.hashed_password_field)?;
        Some(self.0.config.hash.is_stale(stored))
    }
}

fn invalid(errors: FieldErrors) -> Outcome {
    Ok(Verdict::Rejected(Rejection::Invalid(errors)))
}

fn rejected(r: Rejection) -> Outcome {
    Ok(Verdict::Rejected(r))
}

fn busy() -> Outcome {
    rejected(Rejection::Busy {
        retry_after_secs: 1,
    })
}

/// Reads a required string parameter, recording a field error if it is missing or not a string.
fn string_param<'a>(
    params: &'a authd_strategy_api::Params,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<&'a str> {
    match params.get(field) {
        None | Some(Value::Null) => {
            errors.add(field, "is required");
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            errors.add(field, "is required");
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.add(field, "must be a string");
            None
        }
    }
}

impl Inner {
    fn identity_key(&self, value: &str) -> UniqueKey {
        UniqueKey {
            field: self.config.identity_field.clone(),
            value: if self.config.identity_ci {
                value.to_lowercase()
            } else {
                value.to_string()
            },
        }
    }

    /// Password rules shared by register and reset: length, bcrypt's 72 bytes, confirmation.
    fn check_new_password<'a>(
        &self,
        params: &'a authd_strategy_api::Params,
        errors: &mut FieldErrors,
    ) -> Option<&'a str> {
        let c = &self.config;
        let password = string_param(params, &c.password_field, errors);
        if let Some(p) = password {
            let chars = p.chars().count();
            if chars < c.password_min_length {
                errors.add(
                    &c.password_field,
                    format!(
                        "is too short (minimum {} characters)",
                        c.password_min_length
                    ),
                );
            } else if chars > c.password_max_length {
                errors.add(
                    &c.password_field,
                    format!("is too long (maximum {} characters)", c.password_max_length),
                );
            } else if let Some(max) = c.hash.max_password_bytes()
                && p.len() > max
            {
                errors.add(
                    &c.password_field,
                    format!("is too long (this hash algorithm uses at most {max} bytes)"),
                );
            }
            if p.contains('\0') {
                errors.add(&c.password_field, "must not contain null bytes");
            }
        }
        if c.confirmation_required {
            let confirmation = string_param(params, &c.password_confirmation_field, errors);
            if let (Some(p), Some(conf)) = (password, confirmation)
                && p != conf
            {
                errors.add(&c.password_confirmation_field, "does not match password");
            }
        }
        password
    }

    /// A password equal to the identity (case-insensitively for `ci_string` identities).
    fn equals_identity(&self, password: &str, identity: Option<&str>) -> bool {
        identity.is_some_and(|id| {
            if self.config.identity_ci {
                id.to_lowercase() == password.to_lowercase()
            } else {
                id == password
            }
        })
    }

    async fn hash(&self, password: &str) -> Result<Option<String>, Error> {
        let params = self.config.hash;
        let password = password.as_bytes().to_vec();
        match self.services.pool.run(move || params.hash(&password)).await {
            Ok(Ok(h)) => Ok(Some(h)),
            Ok(Err(e)) => Err(Error::Hash(e.to_string())),
            Err(authd_strategy_api::Busy::QueueFull) => Ok(None),
            Err(e) => Err(Error::Hash(e.to_string())),
        }
    }

    fn session(&self, user: &UserRecord) -> Result<IssuedToken, Error> {
        let tokens = &self.services.tokens;
        tokens.issue_spec(TokenSpec {
            subject: &self.subject,
            user: user.id,
            purpose: Purpose::User,
            lifetime: tokens.session_lifetime(),
            act: None,
            pwd: None,
            sep: Some(user.session_epoch),
        })
    }

    /// Throttle keys for an identity and a client address, scoped to this strategy.
    fn throttle_keys(
        &self,
        identity: Option<&UniqueKey>,
        ip: Option<IpAddr>,
    ) -> Vec<(String, u32)> {
        let Some(limit) = &self.config.rate_limit else {
            return Vec::new();
        };
        let mut keys = Vec::with_capacity(2);
        if let Some(key) = identity {
            keys.push((
                format!("identity:{}/{}:{}", self.subject, self.name, key.value),
                limit.identity_failures,
            ));
        }
        if let Some(ip) = ip {
            keys.push((
                format!("ip:{}/{}:{ip}", self.subject, self.name),
                limit.ip_failures,
            ));
        }
        keys
    }

    /// `Some(seconds)` when any of `keys` is locked out: answer 429 without hashing.
    async fn locked(&self, keys: &[(String, u32)]) -> Result<Option<u64>, Error> {
        let now = now_secs();
        let mut longest = None;
        for (key, _) in keys {
            if let Some(secs) = self.services.throttle.locked_for(key, now).await? {
                longest = Some(longest.map_or(secs, |l: u64| l.max(secs)));
            }
        }
        Ok(longest)
    }

    /// Counts a failure against `keys`, in one durable write (a success costs one too, see
    /// `sign_in`, so that failures and successes cost the same).
    async fn failed(&self, keys: &[(String, u32)]) -> Result<(), Error> {
        let Some(limit) = &self.config.rate_limit else {
            return Ok(());
        };
        if keys.is_empty() {
            return Ok(());
        }
        self.services
            .throttle
            .record_failures(keys, limit.window.as_secs(), now_secs())
            .await
    }

    fn fingerprint(&self, user: &UserRecord) -> String {
        hash::fingerprint(
            user.secrets
                .get(&self.config.hashed_password_field)
                .map(String::as_str),
        )
    }

    async fn register(&self, params: &authd_strategy_api::Params) -> Outcome {
        let c = &self.config;
        let mut errors = FieldErrors::default();
        let mut attributes = serde_json::Map::new();
        let mut unique = Vec::new();
        for attr in &self.resource.attributes {
            match params.get(&attr.name) {
                None | Some(Value::Null) => {
                    if attr.required || attr.name == c.identity_field {
                        errors.add(&attr.name, "is required");
                    }
                }
                Some(value) => match attr.check(value) {
                    Ok(v) => {
                        if attr.name == c.identity_field
                            && v.as_str().is_some_and(|s| s.trim().is_empty())
                        {
                            errors.add(&attr.name, "is required");
                            continue;
                        }
                        if attr.unique {
                            unique.push(UniqueKey {
                                field: attr.name.clone(),
                                value: attr.normalize(&v),
                            });
                        }
                        attributes.insert(attr.name.clone(), v);
                    }
                    Err(message) => errors.add(&attr.name, message),
                },
            }
        }
        let password = self.check_new_password(params, &mut errors);
        let identity = params.get(&c.identity_field).and_then(Value::as_str);
        if let Some(p) = password
            && self.equals_identity(p, identity)
        {
            errors.add(
                &c.password_field,
                format!("must not be the same as {}", c.identity_field),
            );
        }
        let Some(password) = password.filter(|_| errors.is_empty()) else {
            return invalid(errors);
        };
        let Some(hashed) = self.hash(password).await? else {
            return busy();
        };
        let user = authd_strategy_api::NewUser {
            attributes,
            secrets: [(c.hashed_password_field.clone(), hashed)].into(),
            unique,
        };
        match self.services.users.insert(&self.subject, user).await? {
            Ok(user) => {
                let token = self.session(&user)?;
                Ok(Verdict::Authenticated {
                    user,
                    token,
                    created: true,
                })
            }
            Err(authd_strategy_api::InsertError::Taken(field)) => {
                let mut errors = FieldErrors::default();
                errors.add(&field, "has already been taken");
                invalid(errors)
            }
        }
    }

    async fn sign_in(
        &self,
        params: &authd_strategy_api::Params,
        client_ip: Option<IpAddr>,
    ) -> Outcome {
        let c = &self.config;
        let mut errors = FieldErrors::default();
        let identity = string_param(params, &c.identity_field, &mut errors);
        let password = string_param(params, &c.password_field, &mut errors);
        let want_sign_in_token = match params.get("token_type") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == "user" || s == "session" => false,
            Some(Value::String(s)) if s == "sign_in" && c.sign_in_tokens_enabled => true,
            Some(Value::String(s)) if s == "sign_in" => {
                errors.add(
                    "token_type",
                    "sign-in tokens are not enabled for this strategy",
                );
                false
            }
            Some(_) => {
                errors.add("token_type", "must be \"user\" or \"sign_in\"");
                false
            }
        };
        let (Some(identity), Some(password)) = (identity, password) else {
            return invalid(errors);
        };
        if !errors.is_empty() {
            return invalid(errors);
        }

        let key = self.identity_key(identity);
        let throttle = self.throttle_keys(Some(&key), client_ip);
        if let Some(retry_after_secs) = self.locked(&throttle).await? {
            return rejected(Rejection::RateLimited { retry_after_secs });
        }
        let user = self
            .services
            .users
            .find_by_unique(&self.subject, &key)
            .await?;
        let stored = user
            .as_ref()
            .and_then(|u| u.secrets.get(&c.hashed_password_field))
            .cloned();
        // Unknown identity (or a user without this strategy's password): verify against a
        // dummy hash of the same parameters, so that both cost one verify.
        let known = stored.is_some();
        let target = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let password_bytes = password.as_bytes().to_vec();
        let check_target = target.clone();
        let verified = match self
            .services
            .pool
            .run(move || hash::verify(&password_bytes, &check_target))
            .await
        {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                // A corrupt stored hash is logged and treated as a failed sign-in.
                tracing::warn!(subject = %self.subject, strategy = %self.name, error = %e, "AU0101 stored hash cannot be verified");
                false
            }
            Err(authd_strategy_api::Busy::QueueFull) => return busy(),
            Err(e) => return Err(Error::Hash(e.to_string())),
        };
        let Some(mut user) = user.filter(|_| known && verified) else {
            self.failed(&throttle).await?;
            return rejected(Rejection::AuthenticationFailed);
        };
        // A successful sign-in forgets the identity's failures (not the address's). This is
        // one durable write, as a failure is: both outcomes cost the same.
        // (`throttle` is empty when `rate_limit = false`.)
        if let Some((identity_key, _)) = throttle.first() {
            self.services.throttle.clear(identity_key).await?;
        }

        if c.rehash_on_sign_in && c.hash.is_stale(&target) {
            // The hash was made with other parameters than the current ones: upgrade it now
            // that we hold the password. A failure here must not fail the sign-in.
            if let Ok(Some(new_hash)) = self.hash(password).await {
                match self
                    .services
                    .users
                    .set_secret(
                        &self.subject,
                        user.id,
                        SecretChange {
                            field: &c.hashed_password_field,
                            value: new_hash,
                            expect: Some(Some(&target)),
                            consume: None,
                            bump_sessions: false,
                        },
                    )
                    .await
                {
                    Ok(Some(updated)) => user = updated,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "AU0102 rehash on sign-in not stored"),
                }
            }
        }

        let token = if want_sign_in_token {
            self.services.tokens.issue(
                &self.subject,
                user.id,
                Purpose::SignIn,
                c.sign_in_token_lifetime,
                Some(format!("sign_in_with_{}", self.name)),
                Some(self.fingerprint(&user)),
            )?
        } else {
            self.session(&user)?
        };
        Ok(Verdict::Authenticated {
            user,
            token,
            created: false,
        })
    }

    /// Checks a reset or sign-in token: signature, purpose, action, subject, user and password
    /// fingerprint. `None` for any refusal.
    async fn check_token(
        &self,
        token: &str,
        purpose: Purpose,
        act: &str,
    ) -> Result<Option<(UserRecord, authd_strategy_api::Claims)>, Error> {
        let claims = match self.services.tokens.verify(token) {
            Ok(claims) => claims,
            Err(TokenError::Invalid) => return Ok(None),
            Err(TokenError::Internal(e)) => return Err(e),
        };
        if claims.purpose != purpose || claims.act.as_deref() != Some(act) {
            return Ok(None);
        }
        let Some(id) = claims.user_id(&self.subject) else {
            return Ok(None);
        };
        let Some(user) = self.services.users.get(&self.subject, id).await? else {
            return Ok(None);
        };
        if claims.pwd.as_deref() != Some(self.fingerprint(&user).as_str()) {
            return Ok(None);
        }
        Ok(Some((user, claims)))
    }

    async fn sign_in_with_token(
        &self,
        params: &authd_strategy_api::Params,
        client_ip: Option<IpAddr>,
    ) -> Outcome {
        let mut errors = FieldErrors::default();
        let Some(token) = string_param(params, "token", &mut errors) else {
            return invalid(errors);
        };
        // Guessing tokens counts against the client's address.
        let throttle = self.throttle_keys(None, client_ip);
        if let Some(retry_after_secs) = self.locked(&throttle).await? {
            return rejected(Rejection::RateLimited { retry_after_secs });
        }
        let act = format!("sign_in_with_{}", self.name);
        let checked = self.check_token(token, Purpose::SignIn, &act).await?;
        let consumed = match &checked {
            Some((_, claims)) => {
                self.services
                    .token_store
                    .consume(&claims.jti, claims.exp)
                    .await?
            }
            None => false,
        };
        let Some((user, _)) = checked.filter(|_| consumed) else {
            self.failed(&throttle).await?;
            return rejected(Rejection::InvalidToken);
        };
        let token = self.session(&user)?;
        Ok(Verdict::Authenticated {
            user,
            token,
            created: false,
        })
    }

    async fn reset(
        &self,
        params: &authd_strategy_api::Params,
        client_ip: Option<IpAddr>,
    ) -> Outcome {
        let c = &self.config;
        let mut errors = FieldErrors::default();
        // AshAuthentication's name is `reset_token`; `token` is accepted too.
        let token_field = if params.contains_key("token") && !params.contains_key("reset_token") {
            "token"
        } else {
            "reset_token"
        };
        let token = string_param(params, token_field, &mut errors);
        // The new password is checked in full before the token is looked at, so that a
        // rejected password leaves the token usable.
        let password = self.check_new_password(params, &mut errors);
        let (Some(token), Some(password)) = (token, password) else {
            return invalid(errors);
        };
        if !errors.is_empty() {
            return invalid(errors);
        }
        let throttle = self.throttle_keys(None, client_ip);
        if let Some(retry_after_secs) = self.locked(&throttle).await? {
            return rejected(Rejection::RateLimited { retry_after_secs });
        }
        let act = format!("password_reset_with_{}", self.name);
        let Some((user, claims)) = self
            .check_token(token, Purpose::PasswordReset, &act)
            .await?
        else {
            self.failed(&throttle).await?;
            return rejected(Rejection::InvalidToken);
        };
        // Rules that need the user are checked before the token is consumed, too.
        let identity = user
            .attributes
            .get(&c.identity_field)
            .and_then(Value::as_str);
        if self.equals_identity(password, identity) {
            errors.add(
                &c.password_field,
                format!("must not be the same as {}", c.identity_field),
            );
            return invalid(errors);
        }
        let Some(hashed) = self.hash(password).await? else {
            return busy();
        };
        // The token is consumed in the same transaction that stores the new hash (and, by
        // default, revokes every session of the user).
        let Some(user) = self
            .services
            .users
            .set_secret(
                &self.subject,
                user.id,
                SecretChange {
                    field: &c.hashed_password_field,
                    value: hashed,
                    // The password the token was checked against must still be the one stored:
                    // of two resets racing with two tokens, one wins.
                    expect: Some(
                        user.secrets
                            .get(&c.hashed_password_field)
                            .map(String::as_str),
                    ),
                    consume: Some((&claims.jti, claims.exp)),
                    bump_sessions: c.revoke_sessions_on_reset,
                },
            )
            .await?
        else {
            // Used already, or another reset won the race: a refused token, like any other.
            self.failed(&throttle).await?;
            return rejected(Rejection::InvalidToken);
        };
        let token = self.session(&user)?;
        Ok(Verdict::Authenticated {
            user,
            token,
            created: false,
        })
    }
}

impl PasswordStrategy {
    /// Answers at once; the look-up and the sending happen in the background, so the answer
    /// and its timing are the same whether or not the identity exists.
    async fn reset_request(&self, params: &authd_strategy_api::Params) -> Outcome {
        let inner = &self.0;
        let mut errors = FieldErrors::default();
        let Some(identity) = string_param(params, &inner.config.identity_field, &mut errors) else {
            return invalid(errors);
        };
        let Ok(permit) = Arc::clone(&inner.resets).try_acquire_owned() else {
            return busy();
        };
        let key = inner.identity_key(identity);
        let this = self.clone();
        // The work starts only after the answer has left, and at a random moment, so that
        // it cannot slow this answer (or show in the timing of the next one) differently for
        // identities that exist.
        let delay = RESET_DELAY + Duration::from_millis(rand::random_range(0..RESET_JITTER_MS));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::time::sleep(delay).await;
            if let Err(e) = this.0.send_reset(key).await {
                tracing::warn!(subject = %this.0.subject, strategy = %this.0.name, error = %e, "AU0103 reset request not sent");
            }
        });
        Ok(Verdict::Accepted)
    }
}

impl Inner {
    async fn send_reset(&self, key: UniqueKey) -> Result<(), String> {
        let (Some(resettable), Some(sender)) = (&self.config.resettable, &self.sender) else {
            return Ok(());
        };
        let Some(user) = self
            .services
            .users
            .find_by_unique(&self.subject, &key)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let token = self
            .services
            .tokens
            .issue(
                &self.subject,
                user.id,
                Purpose::PasswordReset,
                resettable.token_lifetime,
                Some(format!("password_reset_with_{}", self.name)),
                Some(self.fingerprint(&user)),
            )
            .map_err(|e| e.to_string())?;
        sender
            .send_reset(ResetMessage {
                subject: self.subject.clone(),
                strategy: self.name.clone(),
                user: user.public_view(),
                expires_at: token.claims.exp,
                token: token.token,
            })
            .await
    }
}
