//! The strategy plugin contract: a factory validates a table, the validated strategy is
//! instantiated over [`Services`], and the live [`Strategy`] answers its phases.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    HashPool, IssuedToken, Problems, Senders, ThrottleStore, TokenStore, Tokens, UserRecord,
    UserStore,
};

/// An HTTP method a phase answers to. (Named here so that this crate needs no HTTP library.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One phase of a strategy: `/auth/<subject>/<strategy>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSpec {
    pub name: &'static str,
    pub methods: &'static [Method],
}

/// A request's parameters: one JSON object (query parameters become string values), already
/// taken out of the `{"<subject>": {...}}` envelope when the client used one.
pub type Params = Map<String, Value>;

/// What a phase is given.
#[derive(Debug, Clone)]
pub struct PhaseRequest {
    pub params: Params,
    /// The client's address, where known.
    pub client_ip: Option<IpAddr>,
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
    /// Too many failures for this identity or client: locked out for this many seconds.
    RateLimited { retry_after_secs: u64 },
}

/// The answer of a phase.
// One verdict per request, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The user is authenticated and gets a token (`created` for a registration).
    Authenticated {
        user: UserRecord,
        token: IssuedToken,
        created: bool,
    },
    /// The request was taken and its effect, if any, happens in the background
    /// (`reset_request`: the same answer whether or not the identity exists).
    Accepted,
    Rejected(Rejection),
}

/// What a strategy has, in common with every other phase, to return early.
pub type Outcome = Result<Verdict, Error>;

/// The machinery failed. Clients see a generic 500; the log sees this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("store: {0}")]
    Store(String),
    #[error("tokens: {0}")]
    Tokens(String),
    #[error("hashing: {0}")]
    Hash(String),
}

/// The value type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    /// A string compared case-insensitively and stored as given.
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
    /// Checks a submitted value; returns the value to store, or a message for the client.
    ///
    /// # Errors
    /// A message naming what is wrong with the value.
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

    /// The form of a value under which uniqueness and look-ups work.
    pub fn normalize(&self, value: &Value) -> String {
        match (self.ty, value) {
            (AttributeType::CiString, Value::String(s)) => s.to_lowercase(),
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        }
    }
}

fn type_phrase(ty: AttributeType) -> &'static str {
    match ty {
        AttributeType::String | AttributeType::CiString => "a string",
        AttributeType::Integer => "an integer",
        AttributeType::Boolean => "a boolean",
    }
}

/// A resource (a kind of user) as the strategies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The subject name, e.g. `user`.
    pub name: String,
    pub attributes: Vec<AttributeSpec>,
}

impl ResourceSpec {
    pub fn attribute(&self, name: &str) -> Option<&AttributeSpec> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

/// What the daemon lends a strategy.
#[derive(Clone)]
pub struct Services {
    pub users: Arc<dyn UserStore>,
    pub token_store: Arc<dyn TokenStore>,
    pub throttle: Arc<dyn ThrottleStore>,
    pub tokens: Arc<dyn Tokens>,
    pub pool: HashPool,
    pub senders: Arc<dyn Senders>,
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
}

/// A strategy whose configuration is known good, ready to be instantiated.
pub trait ValidatedStrategy: Send + Sync + fmt::Debug {
    /// The phases it will answer, in a stable order.
    fn phases(&self) -> Vec<PhaseSpec>;

    /// One line for `authd check`, e.g. `password (identity email, argon2id m=19456 t=2 p=1)`.
    fn describe(&self) -> String;

    /// The stored secret fields it writes (so that two strategies never share one).
    fn secret_fields(&self) -> Vec<String>;

    /// Builds the live strategy.
    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy>;
}

/// A live strategy.
///
/// # Example
/// ```ignore
/// match strategy.handle("sign_in", request).await? {
///     Verdict::Authenticated { user, token, .. } => { /* 200 with the token */ }
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
    /// credential of this strategy. Used for the stale-hash census in `/healthz`.
    fn credential_is_stale(&self, user: &UserRecord) -> Option<bool> {
        let _ = user;
        None
    }
}
