//! authd's password strategy, after AshAuthentication's (`AshAuthentication.Strategy.Password`):
//! `register`, `sign_in`, `sign_in_with_token`, `reset_request` and `reset`, with its later
//! security fixes (single-use reset tokens, equal cost for unknown identities), and
//! `change_password` for signed-in users.
//!
//! Hashing runs on the daemon's hashing pool; storage, tokens and messages come through the
//! contract of `authd-strategy-api`. This crate knows nothing of HTTP or of the storage engine.
//!
//! The phases live one module each: [`register`], [`sign_in`] (with `sign_in_with_token` and
//! re-authentication), [`reset`] (request and reset) and [`change`]; [`rules`] holds the
//! password rules and parameter helpers they share.

mod change;
mod config;
mod docs;
pub mod hash;
mod register;
mod reset;
mod rules;
mod sign_in;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use authd_strategy_api::toml;
use std::collections::BTreeMap;

use authd_strategy_api::{
    AttributeSpec, CredentialInput, Error, Event, FieldDoc, Method, Outcome, Params, PhaseDoc,
    PhaseRequest, PhaseSpec, Problems, Purpose, Rejection, ResourceSpec, Sender, Services,
    Strategy, StrategyFactory, Throttle, UserRecord, ValidatedStrategy, Verdict,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use config::{PasswordConfig, RateLimit, Resettable};
pub use hash::HashParams;

/// The purpose of sign-in tokens (exchanged at `sign_in_with_token`).
pub const SIGN_IN: Purpose = Purpose::new("sign_in");
/// The purpose of password-reset tokens.
pub const PASSWORD_RESET: Purpose = Purpose::new("password_reset");

/// Most reset requests being looked up and sent at once, per strategy.
const MAX_RESETS_IN_FLIGHT: usize = 256;

const POST: &[Method] = &[Method::Post];
const GET_POST: &[Method] = &[Method::Get, Method::Post];

/// The phases of the password strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Register,
    SignIn,
    SignInWithToken,
    ResetRequest,
    Reset,
    ChangePassword,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Register,
        Phase::SignIn,
        Phase::SignInWithToken,
        Phase::ResetRequest,
        Phase::Reset,
        Phase::ChangePassword,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Register => "register",
            Phase::SignIn => "sign_in",
            Phase::SignInWithToken => "sign_in_with_token",
            Phase::ResetRequest => "reset_request",
            Phase::Reset => "reset",
            Phase::ChangePassword => "change_password",
        }
    }

    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    fn spec(self) -> PhaseSpec {
        match self {
            Phase::SignInWithToken => PhaseSpec::public(self.name(), GET_POST),
            Phase::ChangePassword => PhaseSpec::session(self.name(), POST),
            _ => PhaseSpec::public(self.name(), POST),
        }
    }

    /// Whether `config` enables this phase.
    fn enabled(self, c: &PasswordConfig) -> bool {
        match self {
            Phase::Register => c.registration_enabled,
            Phase::SignIn => c.sign_in_enabled,
            Phase::SignInWithToken => c.sign_in_enabled && c.sign_in_tokens_enabled,
            Phase::ResetRequest | Phase::Reset => c.resettable.is_some(),
            Phase::ChangePassword => true,
        }
    }
}

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

    fn config_schema(&self) -> Value {
        authd_strategy_api::table_schema::<config::RawPasswordConfig>()
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
        Phase::ALL
            .into_iter()
            .filter(|p| p.enabled(&self.config))
            .map(Phase::spec)
            .collect()
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

    fn docs(&self) -> Vec<PhaseDoc> {
        docs::phase_docs(&self.config, &self.resource)
            .into_iter()
            .filter(|d| Phase::parse(d.phase).is_some_and(|p| p.enabled(&self.config)))
            .collect()
    }

    fn longest_token_lifetime(&self) -> Option<std::time::Duration> {
        let reset = self.config.resettable.as_ref().map(|r| r.token_lifetime);
        Some(reset.map_or(self.config.sign_in_token_lifetime, |r| {
            r.max(self.config.sign_in_token_lifetime)
        }))
    }

    fn reauthenticate_docs(&self) -> Vec<FieldDoc> {
        vec![FieldDoc::string(
            &self.config.password_field,
            false,
            "The user's password of this strategy, proving it is them.",
        )]
    }

    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy> {
        let sender = self
            .config
            .resettable
            .as_ref()
            .map(|r| services.senders.build(&r.sender));
        let identity = self
            .resource
            .attribute(&self.config.identity_field)
            .cloned()
            .unwrap_or_else(|| AttributeSpec {
                // Validation guarantees the attribute; this only keeps the type total.
                name: self.config.identity_field.clone(),
                ty: authd_strategy_api::AttributeType::String,
                unique: true,
                required: true,
                max_length: None,
            });
        Arc::new(PasswordStrategy(Arc::new(Inner {
            subject: subject.to_string(),
            name: name.to_string(),
            scope: format!("{subject}/{name}"),
            act_sign_in: format!("sign_in_with_{name}"),
            act_reset: format!("password_reset_with_{name}"),
            phases: self.phases(),
            dummy_hash: self.config.hash.dummy(),
            config: self.config.clone(),
            resource: self.resource.clone(),
            identity,
            throttle: services.throttle(),
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
    /// `<subject>/<name>`: the scope of this strategy's throttle keys.
    scope: String,
    /// The `act` of this strategy's sign-in and reset tokens.
    act_sign_in: String,
    act_reset: String,
    phases: Vec<PhaseSpec>,
    config: PasswordConfig,
    resource: ResourceSpec,
    /// The identity attribute.
    identity: AttributeSpec,
    services: Services,
    throttle: Throttle,
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
        let inner = &self.0;
        match Phase::parse(phase) {
            Some(Phase::Register) => inner.register(&request).await,
            Some(Phase::SignIn) => inner.sign_in(&request).await,
            Some(Phase::SignInWithToken) => inner.sign_in_with_token(&request).await,
            Some(Phase::ResetRequest) => self.reset_request(&request).await,
            Some(Phase::Reset) => inner.reset(&request).await,
            Some(Phase::ChangePassword) => inner.change_password(&request).await,
            // The server routes only declared phases here.
            None => Ok(Verdict::Rejected(Rejection::NotFound)),
        }
    }

    fn credential_is_stale(&self, user: &UserRecord) -> Option<bool> {
        let stored = self.0.stored_hash(user)?;
        Some(self.0.config.hash.is_stale(stored))
    }

    fn credential_info(&self, user: &UserRecord) -> Option<Value> {
        let stored = self.0.stored_hash(user)?;
        Some(json!({
            "algorithm": hash::identify(stored).map_or("unknown", hash::Format::name),
            "stale": self.0.config.hash.is_stale(stored),
        }))
    }

    async fn reauthenticate(
        &self,
        user: &UserRecord,
        params: &Params,
    ) -> Result<Option<bool>, Error> {
        self.0.reauthenticate(user, params).await
    }

    async fn credential_secrets(
        &self,
        input: &CredentialInput,
    ) -> Result<Result<BTreeMap<String, String>, String>, Error> {
        let inner = &self.0;
        let field = inner.config.hashed_password_field.clone();
        let stored = match input {
            CredentialInput::Password(password) => {
                let mut errors = authd_strategy_api::FieldErrors::default();
                let params: Params = [
                    (
                        inner.config.password_field.clone(),
                        Value::String(password.clone()),
                    ),
                    (
                        inner.config.password_confirmation_field.clone(),
                        Value::String(password.clone()),
                    ),
                ]
                .into_iter()
                .collect();
                inner.check_new_password(&params, &mut errors);
                if let Some(messages) = errors.0.values().next() {
                    return Ok(Err(format!("password {}", messages.join(", "))));
                }
                match inner.hash(password).await? {
                    Pooled::Done(h) => h,
                    Pooled::Busy => return Ok(Err("the hashing queue is full; retry".into())),
                }
            }
            CredentialInput::Hashed { format, value } => {
                match hash::import(format.as_deref(), value) {
                    Ok(stored) => stored,
                    Err(e) => return Ok(Err(e.to_string())),
                }
            }
        };
        Ok(Ok([(field, stored)].into()))
    }

    fn export_credential(&self, user: &UserRecord) -> Option<String> {
        self.0.stored_hash(user).map(str::to_string)
    }

    fn identity_throttle_key(
        &self,
        user: &UserRecord,
    ) -> Option<authd_strategy_api::store::ThrottleKey> {
        let value = self.0.identity_key_of(user)?.value;
        self.0
            .attempt_keys(Some(&value), None)
            .into_iter()
            .next()
            .map(|k| k.key)
    }
}

/// A pool answer: the value, or the queue was full.
enum Pooled<T> {
    Done(T),
    Busy,
}

impl Inner {
    fn stored_hash<'a>(&self, user: &'a UserRecord) -> Option<&'a str> {
        user.secrets
            .get(&self.config.hashed_password_field)
            .map(String::as_str)
    }

    /// Hashes a new password with the configured parameters on the pool.
    async fn hash(&self, password: &str) -> Result<Pooled<String>, Error> {
        let params = self.config.hash;
        let password = password.as_bytes().to_vec();
        let started = Instant::now();
        match self.services.pool.run(move || params.hash(&password)).await {
            Ok(Ok(h)) => {
                self.services.events.emit(Event::Hashed {
                    algorithm: params.algorithm().name(),
                    verify: false,
                    seconds: started.elapsed().as_secs_f64(),
                });
                Ok(Pooled::Done(h))
            }
            Ok(Err(e)) => Err(Error::Hash(e.to_string())),
            Err(authd_strategy_api::Busy::QueueFull) => Ok(Pooled::Busy),
            Err(e) => Err(Error::Hash(e.to_string())),
        }
    }

    /// Verifies `password` against `stored` on the pool. A stored hash that cannot be
    /// verified (corrupt, out of bounds) is logged and does not match.
    async fn verify(&self, password: &str, stored: String) -> Result<Pooled<bool>, Error> {
        let password = password.as_bytes().to_vec();
        let algorithm = hash::identify(&stored).map_or("unknown", hash::Format::name);
        let started = Instant::now();
        match self
            .services
            .pool
            .run(move || hash::verify(&password, &stored))
            .await
        {
            Ok(outcome) => {
                self.services.events.emit(Event::Hashed {
                    algorithm,
                    verify: true,
                    seconds: started.elapsed().as_secs_f64(),
                });
                Ok(Pooled::Done(outcome.unwrap_or_else(|e| {
                    tracing::warn!(subject = %self.subject, strategy = %self.name, error = %e, "AU0101 stored hash cannot be verified");
                    false
                })))
            }
            Err(authd_strategy_api::Busy::QueueFull) => Ok(Pooled::Busy),
            Err(e) => Err(Error::Hash(e.to_string())),
        }
    }
}
