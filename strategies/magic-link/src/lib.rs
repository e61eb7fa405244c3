//! authd's magic link strategy, after AshAuthentication's (`AshAuthentication.Strategy.MagicLink`):
//! `request` sends a link to the identity (answered at once, the same whether or not it
//! exists), and `sign_in` exchanges the link's token for a session.
//!
//! What it takes from the known failures of others: a `GET` of the link changes nothing by
//! default (`require_interaction`, after Ash's GHSA-3988-q8q7-p787: mail scanners used links
//! up), a link works once (its `jti` is consumed), and a newer link makes older unused ones
//! invalid (better-auth#5116): each link is bound to a random value kept in the user's meta,
//! replaced whenever a link is sent.
//!
//! Storage, tokens and messages come through the contract of `authd-strategy-api`; this crate
//! knows nothing of HTTP or of the storage engine. Phases live in [`request`] and
//! [`sign_in`].

mod config;
mod request;
mod sign_in;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use authd_strategy_api::toml;
use authd_strategy_api::{
    Answer, AttributeSpec, AttributeType, FieldDoc, Method, Outcome, Params, PhaseDoc,
    PhaseRequest, PhaseSpec, Problems, Purpose, Rejection, ResourceSpec, Sender, Services,
    Strategy, StrategyFactory, Throttle, UniqueKey, ValidatedStrategy, Verdict,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use config::{MagicLinkConfig, RawMagicLinkConfig};

/// The purpose of magic link tokens.
pub const MAGIC_LINK: Purpose = Purpose::new("magic_link");

/// Most link requests being looked up and sent at once, per strategy.
const MAX_REQUESTS_IN_FLIGHT: usize = 256;

const POST: &[Method] = &[Method::Post];
const GET_POST: &[Method] = &[Method::Get, Method::Post];

/// The phases of the magic link strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    SignIn,
}

impl Phase {
    pub const ALL: [Phase; 2] = [Phase::Request, Phase::SignIn];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::SignIn => "sign_in",
        }
    }

    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    fn spec(self) -> PhaseSpec {
        match self {
            Phase::Request => PhaseSpec::public(self.name(), POST),
            Phase::SignIn => PhaseSpec::public(self.name(), GET_POST),
        }
    }
}

/// The factory the registry lists: `type = "magic_link"`.
pub struct Factory;

impl StrategyFactory for Factory {
    fn type_name(&self) -> &'static str {
        "magic_link"
    }

    fn validate(
        &self,
        path: &str,
        _name: &str,
        resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<Box<dyn ValidatedStrategy>, Problems> {
        let config = MagicLinkConfig::from_table(path, resource, table)?;
        Ok(Box::new(Validated {
            config,
            resource: resource.clone(),
        }))
    }

    fn config_schema(&self) -> Value {
        authd_strategy_api::table_schema::<RawMagicLinkConfig>()
    }
}

/// A checked magic link strategy, not yet running.
#[derive(Debug)]
pub struct Validated {
    pub config: MagicLinkConfig,
    resource: ResourceSpec,
}

impl ValidatedStrategy for Validated {
    fn phases(&self) -> Vec<PhaseSpec> {
        Phase::ALL.into_iter().map(Phase::spec).collect()
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let mut flags = Vec::new();
        if c.registration_enabled {
            flags.push("registration");
        }
        if c.require_interaction {
            flags.push("interaction required");
        }
        if !c.single_use_token {
            flags.push("reusable links");
        }
        format!(
            "magic_link (identity `{}`, links for {}, sender {}{}{})",
            c.identity_field,
            humanize(c.token_lifetime),
            c.sender.type_name(),
            if flags.is_empty() { "" } else { ", " },
            flags.join(", ")
        )
    }

    fn secret_fields(&self) -> Vec<String> {
        // The link binding is kept in meta, not among the secrets.
        Vec::new()
    }

    fn docs(&self) -> Vec<PhaseDoc> {
        let c = &self.config;
        let token = || FieldDoc::string("token", true, "The token of the link.");
        let get_answer = if c.require_interaction {
            Answer::Json {
                status: 200,
                schema: json!({
                    "type": "object",
                    "properties": {
                        "status": { "const": "interaction_required" },
                        "method": { "const": "POST" },
                        "message": { "type": "string" }
                    },
                    "required": ["status", "method", "message"]
                }),
            }
        } else {
            Answer::SignedIn {
                created: c.registration_enabled,
            }
        };
        vec![
            PhaseDoc {
                phase: "request",
                param: None,
                method: Method::Post,
                summary: format!(
                    "Send a sign-in link to `{}`: 202 whether or not it exists{}.",
                    c.identity_field,
                    if c.registration_enabled {
                        " (an unknown identity gets a link that creates the account)"
                    } else {
                        ""
                    }
                ),
                fields: vec![FieldDoc::string(
                    &c.identity_field,
                    true,
                    "The identity to send the link to.",
                )],
                answer: Answer::Accepted,
                errors: vec![422, 429],
            },
            PhaseDoc {
                phase: "sign_in",
                param: None,
                method: Method::Get,
                summary: if c.require_interaction {
                    "The link as opened: changes nothing and says that a POST is needed.".into()
                } else {
                    "The link as opened: signs in.".into()
                },
                fields: vec![token()],
                answer: get_answer,
                errors: if c.require_interaction {
                    vec![422]
                } else {
                    vec![401, 422]
                },
            },
            PhaseDoc {
                phase: "sign_in",
                param: None,
                method: Method::Post,
                summary: "Sign in with the token of a link; 401 invalid_token when it is expired, used or superseded by a newer link.".into(),
                fields: vec![token()],
                answer: Answer::SignedIn {
                    created: c.registration_enabled,
                },
                errors: vec![401, 422],
            },
        ]
    }

    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy> {
        let identity = self
            .resource
            .attribute(&self.config.identity_field)
            .cloned()
            .unwrap_or_else(|| AttributeSpec {
                // Validation guarantees the attribute; this only keeps the type total.
                name: self.config.identity_field.clone(),
                ty: AttributeType::String,
                unique: true,
                required: true,
                max_length: None,
            });
        Arc::new(MagicLinkStrategy(Arc::new(Inner {
            subject: subject.to_string(),
            name: name.to_string(),
            scope: format!("{subject}/{name}"),
            act: format!("magic_link_with_{name}"),
            binding_key: format!("magic_link:{name}"),
            phases: self.phases(),
            config: self.config.clone(),
            resource: self.resource.clone(),
            identity,
            throttle: services.throttle(),
            sender: services.senders.build(&self.config.sender),
            services: services.clone(),
            requests: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
        })))
    }
}

/// `600s` as `10m`, for `describe`.
fn humanize(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A live magic link strategy. Cheap to clone (background sends hold a clone).
#[derive(Clone)]
pub struct MagicLinkStrategy(Arc<Inner>);

struct Inner {
    subject: String,
    name: String,
    /// `<subject>/<name>`: the scope of this strategy's throttle keys.
    scope: String,
    /// The `act` of this strategy's tokens.
    act: String,
    /// The meta key of the value the user's current link is bound to.
    binding_key: String,
    phases: Vec<PhaseSpec>,
    config: MagicLinkConfig,
    resource: ResourceSpec,
    identity: AttributeSpec,
    services: Services,
    throttle: Throttle,
    sender: Arc<dyn Sender>,
    requests: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Strategy for MagicLinkStrategy {
    fn phases(&self) -> &[PhaseSpec] {
        &self.0.phases
    }

    async fn handle(&self, phase: &str, request: PhaseRequest) -> Outcome {
        match Phase::parse(phase) {
            Some(Phase::Request) => self.request(&request).await,
            Some(Phase::SignIn) => self.0.sign_in(&request).await,
            // The server routes only declared phases here.
            None => Ok(Verdict::Rejected(Rejection::NotFound)),
        }
    }
}

impl Inner {
    /// The unique key of an identity as submitted; `None` when it cannot be an identity.
    fn identity_key(&self, value: &str) -> Option<UniqueKey> {
        self.identity
            .unique_key(&Value::String(value.to_string()))
            .ok()
    }
}

/// Reads a required, non-empty string parameter.
fn string_param<'a>(params: &'a Params, field: &str) -> Result<&'a str, Rejection> {
    match params.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(Rejection::Invalid(
            authd_strategy_api::FieldErrors::one(field, "is required"),
        )),
        Some(_) => Err(Rejection::Invalid(authd_strategy_api::FieldErrors::one(
            field,
            "must be a string",
        ))),
    }
}

/// A fresh random value to bind links to (128 bits).
fn new_binding() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
