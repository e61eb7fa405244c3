//! The strategy plugin contract: a factory validates a table, the validated strategy is
//! instantiated over [`Services`], and the live [`Strategy`] answers the phases it declares.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    Claims, Clock, Events, FieldDoc, HashPool, IssuedToken, PhaseDoc, Problems, Sealer, Senders,
    Store, StoreError, Throttle, Tokens, UniqueKey, UserRecord, UserUpdate, precis,
};

/// An HTTP method a phase answers to. (Named here so that this crate needs no HTTP library.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Who may call a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in, registration, token exchanges).
    Public,
    /// A signed-in user: the daemon checks `Authorization: Bearer <session token>` (or an API
    /// key) and hands the phase the [`Session`].
    Session,
}

/// One phase of a strategy: `/auth/<subject>/<strategy>/<name>[/<param>]`, or the strategy's
/// own path when `name` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSpec {
    pub name: &'static str,
    pub methods: &'static [Method],
    pub access: Access,
    /// A last path segment the phase takes (`keys/{id}`), named for documents.
    pub param: Option<&'static str>,
}

impl PhaseSpec {
    /// A public phase without a path parameter.
    pub const fn public(name: &'static str, methods: &'static [Method]) -> PhaseSpec {
        PhaseSpec {
            name,
            methods,
            access: Access::Public,
            param: None,
        }
    }

    /// A phase for signed-in users.
    pub const fn session(name: &'static str, methods: &'static [Method]) -> PhaseSpec {
        PhaseSpec {
            name,
            methods,
            access: Access::Session,
            param: None,
        }
    }

    /// The same phase with a path parameter.
    pub const fn with_param(mut self, param: &'static str) -> PhaseSpec {
        self.param = Some(param);
        self
    }

    /// The route pattern under `/auth/<subject>/<strategy>`.
    pub fn pattern(&self) -> String {
        match (self.name, self.param) {
            ("", _) => String::new(),
            (name, None) => format!("/{name}"),
            (name, Some(p)) => format!("/{name}/{{{p}}}"),
        }
    }
}

/// A request's parameters: one JSON object (query parameters become string values), already
/// taken out of the `{"<subject>": {...}}` envelope when the client used one.
pub type Params = Map<String, Value>;

/// How the caller of a [`Access::Session`] phase proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A session token, with its claims.
    Token(Claims),
    /// An API key of a strategy (its name, the key's id).
    ApiKey { strategy: String, key_id: String },
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: UserRecord,
    pub credential: Credential,
}

/// What a phase is given.
#[derive(Debug, Clone)]
pub struct PhaseRequest {
    pub method: Method,
    pub params: Params,
    /// The client's address, where known (the socket's peer, or behind trusted proxies the
    /// address they saw).
    pub client_ip: Option<IpAddr>,
    /// The path parameter of a phase that takes one.
    pub param: Option<String>,
    /// The caller, for [`Access::Session`] phases.
    pub session: Option<Session>,
}

/// Per-field messages for a 422 answer, e.g. `{"password": ["is too short (minimum 8)"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// One field, one message.
    pub fn one(field: &str, message: impl Into<String>) -> FieldErrors {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        errors
    }
}

/// Why a request was refused: the answer of a working system, not a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Wrong identity or password; one generic answer whichever it was.
    AuthenticationFailed,
    /// A token that is malformed, expired, revoked, used, or for another purpose.
    InvalidToken,
    /// Parameters that fail validation, by field.
    Invalid(FieldErrors),
    /// Too much work queued: try again after this many seconds.
    Busy { retry_after_secs: u32 },
    /// Too many attempts for this identity or client: try again after this many seconds.
    RateLimited { retry_after_secs: u64 },
    /// The credentials were right, but the user has not confirmed their address yet.
    Unconfirmed,
    /// The thing named in the path does not exist (for this user).
    NotFound,
}

/// How an authenticated user is let in.
// One per verdict, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Grant {
    /// The daemon issues a session token (or asks for a second factor first).
    Session,
    /// The strategy issued a token of its own (a sign-in token to exchange later).
    Token(IssuedToken),
    /// No token: the user exists but may not sign in yet (registered, not confirmed).
    None,
}

/// The answer of a phase.
// One verdict per request, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The user is authenticated (`created` for a registration).
    Authenticated {
        user: UserRecord,
        created: bool,
        grant: Grant,
    },
    /// The first factor passed and a second step is required: strategy `step` continues the
    /// sign-in with this short-lived token (`200 {"continue": step, "token": ...}`).
    Continue {
        step: String,
        token: IssuedToken,
    },
    /// The request was taken and its effect, if any, happens in the background (the same
    /// answer whether or not the identity exists): `202`.
    Accepted,
    /// A JSON answer of the phase's own (`200` or `201`).
    Json {
        status: u16,
        body: Value,
    },
    /// Done, nothing to say: `204`.
    NoContent,
    Rejected(Rejection),
}

/// What a strategy has, in common with every other phase, to return early.
pub type Outcome = Result<Verdict, Error>;

/// The machinery failed. Clients see a generic answer (`503` when the store is unavailable,
/// `500` otherwise); the log sees this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tokens: {0}")]
    Tokens(String),
    #[error("hashing: {0}")]
    Hash(String),
    #[error("{0}")]
    Internal(String),
}

/// The value type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// Text compared exactly; when `unique`, prepared as RFC 8265's `UsernameCasePreserved`
    /// (width-mapped, NFC, no spaces or invisible characters).
    String,
    /// Text compared without regard to case and form: prepared as RFC 8265's
    /// `UsernameCaseMapped` (plus full case folding), and stored as given (trimmed).
    CiString,
    Integer,
    Boolean,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::CiString => "ci_string",
            AttributeType::Integer => "integer",
            AttributeType::Boolean => "boolean",
        }
    }
}

/// A declared attribute of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeSpec {
    pub name: String,
    pub ty: AttributeType,
    pub unique: bool,
    pub required: bool,
    /// Maximum length in characters, for string types.
    pub max_length: Option<usize>,
}

impl AttributeSpec {
    /// Whether values are prepared (PRECIS) before they are compared.
    fn prepared(&self) -> bool {
        self.ty == AttributeType::CiString || (self.ty == AttributeType::String && self.unique)
    }

    /// Checks a submitted value; returns the value to store, or a message for the client.
    ///
    /// # Errors
    /// A message naming what is wrong with the value (never echoing it).
    pub fn check(&self, value: &Value) -> Result<Value, String> {
        match (self.ty, value) {
            (AttributeType::String | AttributeType::CiString, Value::String(s)) => {
                if s.contains('\0') {
                    return Err("must not contain null bytes".into());
                }
                if let Some(max) = self.max_length
                    && s.chars().count() > max
                {
                    return Err(format!("is too long (maximum {max} characters)"));
                }
                if self.required && s.trim().is_empty() {
                    return Err("is required".into());
                }
                if self.prepared() {
                    self.prepare(s)?;
                    return Ok(Value::String(s.trim().to_string()));
                }
                Ok(value.clone())
            }
            (AttributeType::Integer, Value::Number(n)) if n.is_i64() => Ok(value.clone()),
            (AttributeType::Integer, Value::Number(_)) => {
                Err("must be an integer between -2^63 and 2^63-1".into())
            }
            (AttributeType::Boolean, Value::Bool(_)) => Ok(value.clone()),
            _ => Err(format!("must be {}", type_phrase(self.ty))),
        }
    }

    fn prepare(&self, s: &str) -> Result<String, String> {
        let prepared = if self.ty == AttributeType::CiString {
            precis::prepare_ci(s)
        } else {
            precis::prepare_exact(s)
        };
        prepared.map_err(|e| e.to_string())
    }

    /// The form of a value under which uniqueness and look-ups work: PRECIS-prepared for
    /// `ci_string` and unique `string` attributes, the value itself otherwise.
    ///
    /// # Errors
    /// A message for the client when the value cannot be prepared (it holds characters that
    /// are not allowed in an identifier).
    pub fn normalize(&self, value: &Value) -> Result<String, String> {
        match value {
            Value::String(s) if self.prepared() => self.prepare(s),
            Value::String(s) => Ok(s.clone()),
            other => Ok(other.to_string()),
        }
    }

    /// The unique key of `value` for this attribute.
    ///
    /// # Errors
    /// As [`AttributeSpec::normalize`].
    pub fn unique_key(&self, value: &Value) -> Result<UniqueKey, String> {
        Ok(UniqueKey::new(self.name.clone(), self.normalize(value)?))
    }
}

fn type_phrase(ty: AttributeType) -> &'static str {
    match ty {
        AttributeType::String | AttributeType::CiString => "a string",
        AttributeType::Integer => "an integer",
        AttributeType::Boolean => "a boolean",
    }
}

/// Email confirmation of a resource (AshAuthentication's confirmation add-on), as the
/// strategies see it: which fields need confirming and where the time of it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationSpec {
    pub monitor_fields: Vec<String>,
    /// The name under which the user object shows when it was confirmed (`confirmed_at`).
    pub confirmed_at_field: String,
}

/// The key of [`UserRecord::meta`] holding when a user was confirmed (Unix seconds).
pub const META_CONFIRMED_AT: &str = "confirmed_at";
/// The key of [`UserRecord::meta`] counting the user's password resets: strategies whose
/// credentials die with a reset (`revoke_on_reset`) compare against it.
pub const META_RESETS: &str = "resets";

/// A resource (a kind of user) as the strategies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The subject name, e.g. `user`.
    pub name: String,
    pub attributes: Vec<AttributeSpec>,
    pub confirmation: Option<ConfirmationSpec>,
}

impl ResourceSpec {
    pub fn attribute(&self, name: &str) -> Option<&AttributeSpec> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Whether `user` has confirmed (always true when the resource has no confirmation).
    pub fn is_confirmed(&self, user: &UserRecord) -> bool {
        self.confirmation.is_none() || user.meta.contains_key(META_CONFIRMED_AT)
    }

    /// Checks submitted attributes as a registration does: every declared attribute present
    /// in `params` is checked, required ones must be there (and `also_required`), others are
    /// ignored. Returns the values to store and their unique keys.
    ///
    /// # Errors
    /// Every field in error.
    pub fn check_new(
        &self,
        params: &Params,
        also_required: &[&str],
    ) -> Result<(Map<String, Value>, Vec<UniqueKey>), FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut attributes = Map::new();
        let mut unique = Vec::new();
        for attr in &self.attributes {
            match params.get(&attr.name) {
                None | Some(Value::Null) => {
                    if attr.required || also_required.contains(&attr.name.as_str()) {
                        errors.add(&attr.name, "is required");
                    }
                }
                Some(value) => match attr.check(value) {
                    Ok(v) => {
                        if also_required.contains(&attr.name.as_str())
                            && v.as_str().is_some_and(|s| s.trim().is_empty())
                        {
                            errors.add(&attr.name, "is required");
                            continue;
                        }
                        if attr.unique {
                            match attr.unique_key(&v) {
                                Ok(key) => unique.push(key),
                                Err(m) => {
                                    errors.add(&attr.name, m);
                                    continue;
                                }
                            }
                        }
                        attributes.insert(attr.name.clone(), v);
                    }
                    Err(message) => errors.add(&attr.name, message),
                },
            }
        }
        if errors.is_empty() {
            Ok((attributes, unique))
        } else {
            Err(errors)
        }
    }

    /// The unique keys `user`'s attributes give today.
    pub fn unique_keys_of(&self, user: &UserRecord) -> Vec<UniqueKey> {
        self.attributes
            .iter()
            .filter(|a| a.unique)
            .filter_map(|a| a.unique_key(user.attributes.get(&a.name)?).ok())
            .collect()
    }
}

/// What the daemon lends a strategy.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<dyn Tokens>,
    pub pool: HashPool,
    pub senders: Arc<dyn Senders>,
    pub clock: Clock,
    pub events: Arc<dyn Events>,
    /// Seals secrets that must be read back (TOTP seeds).
    pub sealer: Arc<dyn Sealer>,
}

impl Services {
    /// The throttling service over this store and clock.
    pub fn throttle(&self) -> Throttle {
        Throttle::new(self.store.clone(), self.clock.clone()).with_events(self.events.clone())
    }
}

/// Builds strategies of one `type` from their TOML tables.
pub trait StrategyFactory: Sync {
    /// The `type` value this factory answers to, e.g. `"password"`.
    fn type_name(&self) -> &'static str;

    /// Validates the table found at `path` for the strategy `name` of `resource`, without
    /// opening files or sockets.
    ///
    /// # Errors
    /// Every problem found, each with its TOML path.
    fn validate(
        &self,
        path: &str,
        name: &str,
        resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<Box<dyn ValidatedStrategy>, Problems>;

    /// The JSON Schema of this type's table (every key with its doc comment, type, default
    /// and allowed values), for the config schema (`authd config-schema`). `Null` when the
    /// type does not describe itself.
    fn config_schema(&self) -> Value {
        Value::Null
    }
}

/// Something a strategy takes for itself in the whole config, across every resource, which no
/// other strategy may take too: an API key strategy takes the start of the bearer credentials
/// it recognizes (`<prefix>_`), since a bearer is offered to the strategy that recognizes it.
/// The daemon checks every pair of claims of one namespace ([`ValidatedStrategy::claims`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What is claimed, in words, for the problem: `"bearer credentials"`. Claims clash only
    /// within one namespace.
    pub namespace: &'static str,
    /// The key of the strategy's table that sets it (`prefix`), for the problem's TOML path.
    pub key: &'static str,
    /// What is claimed: two claims of one namespace clash when one value starts with the
    /// other (equal values included), as prefixes do.
    pub value: String,
}

impl Claim {
    /// Whether `self` and `other` claim overlapping parts of one namespace.
    pub fn clashes_with(&self, other: &Claim) -> bool {
        self.namespace == other.namespace
            && (self.value.starts_with(&other.value) || other.value.starts_with(&self.value))
    }
}

/// A credential an operator hands in for a user (admin API, import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialInput {
    /// A password, to be hashed with the strategy's settings.
    Password(String),
    /// A hash made elsewhere, in a format the strategy accepts (`format` names it when it
    /// cannot be detected).
    Hashed {
        format: Option<String>,
        value: String,
    },
}

/// A strategy whose configuration is known good, ready to be instantiated.
pub trait ValidatedStrategy: Send + Sync + fmt::Debug {
    /// The phases it will answer, in a stable order.
    fn phases(&self) -> Vec<PhaseSpec>;

    /// One line for `authd check`, e.g. `password (identity email, argon2id m=19456 t=2 p=1)`.
    fn describe(&self) -> String;

    /// The stored secret fields it writes (so that two strategies never share one).
    fn secret_fields(&self) -> Vec<String>;

    /// What it takes for itself in the whole config (an API key prefix), so that the daemon
    /// refuses two strategies taking overlapping parts of one namespace.
    fn claims(&self) -> Vec<Claim> {
        Vec::new()
    }

    /// The strategies of the same resource this one continues as a second factor
    /// (`required_after`), so that the config can check they exist.
    fn continues_after(&self) -> Vec<String> {
        Vec::new()
    }

    /// The longest lifetime of the tokens it issues (sign-in, reset, confirmation...), so
    /// that a retired signing key keeps verifying them until they have expired. `None` when
    /// it issues none.
    fn longest_token_lifetime(&self) -> Option<std::time::Duration> {
        None
    }

    /// What each phase takes and answers, for the OpenAPI document.
    fn docs(&self) -> Vec<PhaseDoc> {
        Vec::new()
    }

    /// The request fields [`Strategy::reauthenticate`] reads (`DELETE /me`), for the OpenAPI
    /// document; none when the strategy cannot re-authenticate.
    fn reauthenticate_docs(&self) -> Vec<FieldDoc> {
        Vec::new()
    }

    /// Builds the live strategy.
    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy>;
}

/// A strategy that continues a sign-in (a second factor).
pub trait SecondFactor: Send + Sync {
    /// The strategies whose successful sign-in continues here when [`Self::is_on`].
    fn required_after(&self) -> &[String];

    /// Whether `user` has this factor turned on.
    fn is_on(&self, user: &UserRecord) -> bool;

    /// The short-lived token that lets the user continue at this strategy, bound to the user
    /// and to the first factor.
    ///
    /// # Errors
    /// When signing fails.
    fn begin(&self, user: &UserRecord, first_factor: &str) -> Result<IssuedToken, Error>;
}

/// A user found by a bearer credential that is not a session token (an API key).
#[derive(Debug, Clone)]
pub struct BearerUser {
    pub user: UserRecord,
    pub key_id: String,
}

/// A live strategy.
///
/// # Example
/// ```ignore
/// match strategy.handle("sign_in", request).await? {
///     Verdict::Authenticated { user, .. } => { /* 200 with a session token */ }
///     Verdict::Rejected(Rejection::AuthenticationFailed) => { /* 401 */ }
///     _ => {}
/// }
/// ```
#[async_trait::async_trait]
pub trait Strategy: Send + Sync {
    fn phases(&self) -> &[PhaseSpec];

    /// Runs `phase` (one of [`Strategy::phases`]).
    ///
    /// # Errors
    /// Only when the machinery fails; every refusal is a [`Verdict::Rejected`].
    async fn handle(&self, phase: &str, request: PhaseRequest) -> Outcome;

    /// Whether `user`'s credential for this strategy was made with other settings than the
    /// current ones and will be upgraded at its next use; `None` when the user has no
    /// credential of this strategy. Used for the stale-hash census.
    fn credential_is_stale(&self, user: &UserRecord) -> Option<bool> {
        let _ = user;
        None
    }

    /// What the user's credential of this strategy is, for operators (never a secret):
    /// `{"algorithm": "argon2id", "stale": false}`; `None` when the user has none.
    fn credential_info(&self, user: &UserRecord) -> Option<Value> {
        let _ = user;
        None
    }

    /// Adds what this strategy shows of a user to the user object (`"totp": true`).
    fn describe_user(&self, user: &UserRecord, view: &mut Map<String, Value>) {
        let _ = (user, view);
    }

    /// Whether `bearer` has this strategy's form (an API key's prefix): a cheap test, no
    /// look-up.
    fn recognizes_bearer(&self, bearer: &str) -> bool {
        let _ = bearer;
        false
    }

    /// The user of a bearer credential this strategy recognizes, `None` if it is not good.
    ///
    /// # Errors
    /// When the machinery fails.
    async fn authenticate_bearer(&self, bearer: &str) -> Result<Option<BearerUser>, Error> {
        let _ = bearer;
        Ok(None)
    }

    /// Checks a re-authentication (`DELETE /me` asks for the password): `Some(true)` when
    /// `params` prove it is the user, `Some(false)` when they do not, `None` when this
    /// strategy cannot tell (the user has no credential of it). A second factor
    /// ([`Strategy::second_factor`]) the user has on is asked besides a first proof, never
    /// instead of one; a proof it accepts must not be accepted again (a code is spent).
    ///
    /// # Errors
    /// When the machinery fails.
    async fn reauthenticate(
        &self,
        user: &UserRecord,
        params: &Params,
    ) -> Result<Option<bool>, Error> {
        let _ = (user, params);
        Ok(None)
    }

    /// The strategy as a second factor, if it is one.
    fn second_factor(&self) -> Option<&dyn SecondFactor> {
        None
    }

    /// The secrets to write for a credential an operator hands in (hashed with the strategy's
    /// settings, or checked and kept as given). `Ok(Err(message))` when this strategy takes
    /// no such credential or the input is refused (the message names what is wrong, never
    /// the input).
    ///
    /// # Errors
    /// When the machinery fails (the hashing queue is full is an `Ok(Err)`).
    async fn credential_secrets(
        &self,
        input: &CredentialInput,
    ) -> Result<Result<std::collections::BTreeMap<String, String>, String>, Error> {
        let _ = input;
        Ok(Err(
            "this strategy takes no credential from an operator".into()
        ))
    }

    /// The stored credential of `user` as an import reads it back (a password hash), for
    /// exports; `None` when the strategy's credentials cannot be exported.
    fn export_credential(&self, user: &UserRecord) -> Option<String> {
        let _ = user;
        None
    }

    /// The throttle key that locks `user` out of this strategy (for operators: `locked_for`,
    /// `unlock`); `None` when the strategy does not lock users out.
    fn identity_throttle_key(&self, user: &UserRecord) -> Option<crate::store::ThrottleKey> {
        let _ = user;
        None
    }

    /// The update that removes this strategy's credential of `user` (an operator turns a
    /// second factor off), `None` when there is nothing to remove.
    fn remove_credential(&self, user: &UserRecord) -> Option<UserUpdate> {
        let _ = user;
        None
    }
}
