//! authd's TOTP strategy, after AshAuthentication 5.0's `totp`: a second factor of RFC 6238
//! codes (what authenticator apps show) with single-use recovery codes. It is the first
//! strategy that does not finish a sign-in by itself but continues one: it is a
//! [`SecondFactor`] whose `required_after` strategies answer `{"continue", "token"}` instead
//! of a session when the user has TOTP on, and its `verify` phase turns that token and a code
//! into the session.
//!
//! Phases (all under `/auth/<subject>/<name>`): `setup` and `confirm_setup` (signed in) turn
//! it on, `DELETE` on the strategy's own path (signed in, with a code or a recovery code)
//! turns it off, `verify` (public, with the continue token) finishes a sign-in.
//!
//! The seed is sealed with the daemon's [`authd_strategy_api::Sealer`] before it is stored;
//! everything else of the user's TOTP lives beside it in one secret field ([`stored`]), so
//! that each use is one compare-and-swap. Codes are computed by `totp-rs` ([`code`]); the
//! phases are in [`phases`]. This crate knows nothing of HTTP or of the storage engine.

pub mod code;
mod config;
mod phases;
pub mod stored;

use std::net::IpAddr;
use std::sync::Arc;

use authd_strategy_api::toml;
use authd_strategy_api::{
    Answer, Counted, Error, FieldDoc, IssuedToken, Limit, Method, Outcome, Params, PhaseDoc,
    PhaseRequest, PhaseSpec, Problems, Purpose, Rejection, ResourceSpec, SecondFactor, Services,
    Strategy, StrategyFactory, Throttle, TokenSpec, UserRecord, UserUpdate, ValidatedStrategy,
    Verdict,
};
use serde_json::{Map, Value, json};

use crate::code::CodeRules;
pub use crate::config::{BruteForce, RawBruteForce, RawTotpConfig, TotpConfig};
use crate::stored::TotpState;

/// The purpose of setup tokens (from `setup`, taken by `confirm_setup`).
pub const SETUP: Purpose = Purpose::new("totp_setup");
/// The purpose of the token that continues a sign-in at `verify`. Not `user`: `/me` and every
/// session route refuse it.
pub const VERIFY: Purpose = Purpose::new("totp_verify");

const POST: &[Method] = &[Method::Post];
const DELETE: &[Method] = &[Method::Delete];

/// The phases of the TOTP strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    ConfirmSetup,
    /// `DELETE /auth/<subject>/<name>`: turn TOTP off.
    TurnOff,
    Verify,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Setup,
        Phase::ConfirmSetup,
        Phase::TurnOff,
        Phase::Verify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::ConfirmSetup => "confirm_setup",
            Phase::TurnOff => "",
            Phase::Verify => "verify",
        }
    }

    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    fn spec(self) -> PhaseSpec {
        match self {
            Phase::Setup | Phase::ConfirmSetup => PhaseSpec::session(self.name(), POST),
            Phase::TurnOff => PhaseSpec::session(self.name(), DELETE),
            Phase::Verify => PhaseSpec::public(self.name(), POST),
        }
    }
}

/// The factory the registry lists: `type = "totp"`.
pub struct Factory;

impl StrategyFactory for Factory {
    fn type_name(&self) -> &'static str {
        "totp"
    }

    fn validate(
        &self,
        path: &str,
        name: &str,
        resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<Box<dyn ValidatedStrategy>, Problems> {
        let config = TotpConfig::from_table(path, name, resource, table)?;
        Ok(Box::new(Validated { config }))
    }

    fn config_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(RawTotpConfig)).unwrap_or(Value::Null)
    }
}

/// A checked TOTP strategy, not yet running.
#[derive(Debug)]
pub struct Validated {
    pub config: TotpConfig,
}

impl ValidatedStrategy for Validated {
    fn phases(&self) -> Vec<PhaseSpec> {
        Phase::ALL.into_iter().map(Phase::spec).collect()
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "totp (after {}; {} digits every {}s, ±{} period{}, {} recovery codes, {} failures per {}s)",
            c.required_after.join(", "),
            c.digits,
            c.period,
            c.grace_period,
            if c.grace_period == 1 { "" } else { "s" },
            c.recovery_codes,
            c.brute_force.max_failures,
            c.brute_force.window.as_secs(),
        )
    }

    fn secret_fields(&self) -> Vec<String> {
        vec![self.config.secret_field.clone()]
    }

    fn continues_after(&self) -> Vec<String> {
        self.config.required_after.clone()
    }

    fn docs(&self) -> Vec<PhaseDoc> {
        let code = || {
            FieldDoc::string(
                "code",
                false,
                format!(
                    "A current code of the authenticator app ({} digits).",
                    self.config.digits
                ),
            )
        };
        let recovery = || {
            FieldDoc::string(
                "recovery_code",
                false,
                "One of the recovery codes, instead of `code`; each works once.",
            )
        };
        vec![
            PhaseDoc {
                phase: Phase::Setup.name(),
                param: None,
                method: Method::Post,
                summary: "Makes a new TOTP secret for the signed-in user; TOTP stays off until \
                          confirm_setup proves the app has it."
                    .into(),
                fields: Vec::new(),
                answer: Answer::Json {
                    status: 200,
                    schema: json!({
                        "type": "object",
                        "required": ["secret", "otpauth_uri", "setup_token"],
                        "properties": {
                            "secret": { "type": "string", "description": "The secret in base32, to type into an app." },
                            "otpauth_uri": { "type": "string", "description": "The key URI (otpauth://totp/...), for a QR code." },
                            "setup_token": { "type": "string", "description": "For confirm_setup; lives setup_token_lifetime." },
                        },
                    }),
                },
                errors: vec![401, 422],
            },
            PhaseDoc {
                phase: Phase::ConfirmSetup.name(),
                param: None,
                method: Method::Post,
                summary: "Turns TOTP on with the setup token and a current code; answers the \
                          recovery codes, shown this once."
                    .into(),
                fields: vec![
                    FieldDoc::string("setup_token", true, "The token `setup` answered."),
                    FieldDoc {
                        required: true,
                        ..code()
                    },
                ],
                answer: Answer::Json {
                    status: 200,
                    schema: json!({
                        "type": "object",
                        "required": ["recovery_codes"],
                        "properties": {
                            "recovery_codes": { "type": "array", "items": { "type": "string" } },
                        },
                    }),
                },
                errors: vec![401, 422, 429],
            },
            PhaseDoc {
                phase: Phase::TurnOff.name(),
                param: None,
                method: Method::Delete,
                summary: "Turns TOTP off for the signed-in user, who proves it with a current \
                          code or a recovery code."
                    .into(),
                fields: vec![code(), recovery()],
                answer: Answer::NoContent,
                errors: vec![401, 404, 422, 429],
            },
            PhaseDoc {
                phase: Phase::Verify.name(),
                param: None,
                method: Method::Post,
                summary: "Finishes a sign-in that answered {\"continue\": ...}: the continue \
                          token and a code (or a recovery code) for a session."
                    .into(),
                fields: vec![
                    FieldDoc::string("token", true, "The token of the `continue` answer."),
                    code(),
                    recovery(),
                ],
                answer: Answer::SignedIn { created: false },
                errors: vec![401, 422, 429],
            },
        ]
    }

    fn reauthenticate_docs(&self) -> Vec<FieldDoc> {
        vec![
            FieldDoc::string(
                "code",
                false,
                format!(
                    "When the user has TOTP on: a current code of the authenticator app ({} \
                     digits), asked besides the password; each code works once.",
                    self.config.digits
                ),
            ),
            FieldDoc::string(
                "recovery_code",
                false,
                "When the user has TOTP on: one of the recovery codes, instead of `code`.",
            ),
        ]
    }

    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy> {
        let c = &self.config;
        Arc::new(TotpStrategy(Arc::new(Inner {
            subject: subject.to_string(),
            name: name.to_string(),
            scope: format!("{subject}/{name}"),
            act_setup: format!("totp_setup_with_{name}"),
            act_verify: format!("totp_verify_with_{name}"),
            phases: self.phases(),
            rules: CodeRules {
                period: c.period,
                digits: c.digits,
                grace: c.grace_period,
            },
            config: c.clone(),
            throttle: services.throttle(),
            services: services.clone(),
        })))
    }
}

/// A live TOTP strategy.
#[derive(Clone)]
pub struct TotpStrategy(Arc<Inner>);

struct Inner {
    subject: String,
    name: String,
    /// `<subject>/<name>`: the scope of this strategy's throttle keys.
    scope: String,
    /// The `act` of this strategy's setup and continue tokens.
    act_setup: String,
    act_verify: String,
    phases: Vec<PhaseSpec>,
    rules: CodeRules,
    config: TotpConfig,
    services: Services,
    throttle: Throttle,
}

#[async_trait::async_trait]
impl Strategy for TotpStrategy {
    fn phases(&self) -> &[PhaseSpec] {
        &self.0.phases
    }

    async fn handle(&self, phase: &str, request: PhaseRequest) -> Outcome {
        let inner = &self.0;
        match Phase::parse(phase) {
            Some(Phase::Setup) => inner.setup(&request).await,
            Some(Phase::ConfirmSetup) => inner.confirm_setup(&request).await,
            Some(Phase::TurnOff) => inner.turn_off(&request).await,
            Some(Phase::Verify) => inner.verify(&request).await,
            // The server routes only declared phases here.
            None => Ok(Verdict::Rejected(Rejection::NotFound)),
        }
    }

    fn credential_info(&self, user: &UserRecord) -> Option<Value> {
        let text = user.secrets.get(&self.0.config.secret_field)?;
        Some(match TotpState::read(text) {
            Ok(TotpState::On {
                recovery, since, ..
            }) => json!({
                "on": true,
                "since": since,
                "recovery_codes_left": recovery.len(),
            }),
            Ok(TotpState::Pending { .. }) => json!({ "on": false, "setup_pending": true }),
            Err(_) => json!({ "on": true, "unreadable": true }),
        })
    }

    fn describe_user(&self, user: &UserRecord, view: &mut Map<String, Value>) {
        view.insert(self.0.name.clone(), Value::Bool(self.0.is_on(user)));
    }

    fn second_factor(&self) -> Option<&dyn SecondFactor> {
        Some(self)
    }

    async fn reauthenticate(
        &self,
        user: &UserRecord,
        params: &Params,
    ) -> Result<Option<bool>, Error> {
        self.0.reauthenticate(user, params).await
    }

    fn identity_throttle_key(
        &self,
        user: &UserRecord,
    ) -> Option<authd_strategy_api::store::ThrottleKey> {
        self.0
            .attempt_keys(Some(user), None)
            .into_iter()
            .next()
            .map(|k| k.key)
    }

    fn remove_credential(&self, user: &UserRecord) -> Option<UserUpdate> {
        let field = &self.0.config.secret_field;
        let current = user.secrets.get(field)?;
        Some(UserUpdate {
            expect_secrets: vec![(field.clone(), Some(current.clone()))],
            secrets: [(field.clone(), None)].into(),
            ..UserUpdate::default()
        })
    }
}

impl SecondFactor for TotpStrategy {
    fn required_after(&self) -> &[String] {
        &self.0.config.required_after
    }

    fn is_on(&self, user: &UserRecord) -> bool {
        self.0.is_on(user)
    }

    fn begin(&self, user: &UserRecord, first_factor: &str) -> Result<IssuedToken, Error> {
        let inner = &self.0;
        // A user whose state cannot be read gets a token all the same (and cannot use it):
        // failing closed, without telling the client why.
        let bnd = inner
            .continue_binding(user, first_factor)
            .unwrap_or_else(|| format!("{first_factor}:unreadable"));
        inner.services.tokens.issue(TokenSpec {
            subject: &inner.subject,
            user,
            purpose: VERIFY,
            lifetime: inner.config.setup_token_lifetime,
            act: Some(inner.act_verify.clone()),
            bnd: Some(bnd),
        })
    }
}

impl Inner {
    /// The user's TOTP state; `Err` when a value is stored that cannot be read.
    fn state(&self, user: &UserRecord) -> Option<Result<TotpState, stored::Unreadable>> {
        let text = user.secrets.get(&self.config.secret_field)?;
        Some(TotpState::read(text))
    }

    /// Whether the user has TOTP on. A stored value that cannot be read counts as on, so that
    /// a sign-in fails closed (an operator can remove it).
    fn is_on(&self, user: &UserRecord) -> bool {
        match self.state(user) {
            None => false,
            Some(Ok(state)) => state.is_on(),
            Some(Err(_)) => {
                tracing::warn!(subject = %self.subject, strategy = %self.name, user = %user.id, "TO0001 stored TOTP state unreadable; counted as on");
                true
            }
        }
    }

    /// The binding of a continue token: the first factor's name and a fingerprint of the
    /// sealed seed, so that the token dies when TOTP is turned off (and on again) meanwhile.
    /// `None` when the user has no readable TOTP on.
    fn continue_binding(&self, user: &UserRecord, first_factor: &str) -> Option<String> {
        match self.state(user)? {
            Ok(TotpState::On { seed, .. }) => {
                Some(format!("{first_factor}:{}", code::fingerprint(&seed)))
            }
            _ => None,
        }
    }

    /// The name of the account in authenticator apps.
    fn label(&self, user: &UserRecord) -> String {
        self.config
            .label_field
            .as_ref()
            .and_then(|f| user.attributes.get(f))
            .and_then(Value::as_str)
            .map_or_else(|| user.id.to_string(), str::to_string)
    }

    /// The brute-force keys of an attempt: the user (when known) and the client's address.
    fn attempt_keys(&self, user: Option<&UserRecord>, ip: Option<IpAddr>) -> Vec<Counted> {
        let b = &self.config.brute_force;
        let mut keys = Vec::with_capacity(2);
        if let Some(user) = user {
            keys.push(Counted::identity(
                &self.scope,
                &user.id.to_string(),
                Limit {
                    max: b.max_failures,
                    window: b.window,
                },
            ));
        }
        if let Some(ip) = ip {
            keys.push(Counted::address(
                &self.scope,
                ip,
                Limit {
                    max: b.max_failures_per_address,
                    window: b.window,
                },
            ));
        }
        keys
    }
}

#[cfg(test)]
mod tests;
