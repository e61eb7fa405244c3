//! The password strategy's own table: `[resources.<subject>.strategies.<name>]` with
//! `type = "password"`. Raw serde types mirror the file; [`PasswordConfig`] is what is left
//! once every value has been checked.

use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{
    AttributeType, Problems, RequestLimit, RequestLimitSetting, ResourceSpec, SenderSpec,
    TableReader, kinds, parse_lifetime,
};
use serde::Deserialize;

use crate::hash::bounds::{
    ARGON2_MAX_ITERATIONS, ARGON2_MAX_MEMORY_KIB, ARGON2_MAX_PARALLELISM, ARGON2_MAX_WORK_KIB,
    BCRYPT_MAX_COST, BCRYPT_MIN_COST, SCRYPT_MAX_LOG_N, SCRYPT_MAX_MEMORY_BYTES, SCRYPT_MAX_P,
    SCRYPT_MAX_WORK_BYTES,
};
use crate::hash::{Algorithm, HashParams};

/// The password strategy as written in TOML. Defaults follow AshAuthentication's password
/// strategy, except the hash (argon2id at OWASP's parameters instead of bcrypt).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(title = "password strategy")]
pub(crate) struct RawPasswordConfig {
    /// Always `"password"`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "password"))]
    _type: String,
    /// The attribute that identifies the user at sign-in and reset; must be a declared
    /// `unique` attribute of type string or ci_string (then sign-in is case-insensitive).
    #[serde(default = "default_identity")]
    identity_field: String,
    /// The request field carrying the password.
    #[serde(default = "default_password")]
    password_field: String,
    /// The request field carrying the confirmation (checked on register and reset); must
    /// differ from `password_field`.
    #[serde(default = "default_confirmation")]
    password_confirmation_field: String,
    /// Where the hash is stored; never returned by the API.
    #[serde(default = "default_hashed")]
    hashed_password_field: String,
    /// `register` and `reset` require the confirmation field, equal to the password.
    #[serde(default = "yes")]
    confirmation_required: bool,
    /// Serve `register`.
    #[serde(default = "yes")]
    registration_enabled: bool,
    /// Serve `sign_in` (and `sign_in_with_token`).
    #[serde(default = "yes")]
    sign_in_enabled: bool,
    /// Accept `"token_type": "sign_in"` at `sign_in` and serve `sign_in_with_token`.
    #[serde(default = "yes")]
    sign_in_tokens_enabled: bool,
    /// Lifetime of sign-in tokens, in whole seconds.
    #[serde(default = "default_sign_in_token_lifetime")]
    sign_in_token_lifetime: String,
    /// The algorithm and cost of new hashes. Default: argon2id at OWASP's parameters.
    /// (Read on its own so that a mistake in it does not hide the others.)
    #[serde(default)]
    #[schemars(with = "Option<RawHash>")]
    hash: Option<toml::Value>,
    /// Shortest password, in characters, at `register`, `reset` and `change_password`. At
    /// least 1.
    #[serde(default = "default_min_length")]
    password_min_length: usize,
    /// Longest password, in characters; at least `password_min_length`, at most 4096.
    #[serde(default = "default_max_length")]
    password_max_length: usize,
    /// At a successful sign-in, hash the password again when the stored hash was made with
    /// another algorithm or other parameters than `hash`.
    #[serde(default = "yes")]
    rehash_on_sign_in: bool,
    /// A successful `reset` revokes every session token of the user issued before it.
    #[serde(default = "yes")]
    revoke_sessions_on_reset: bool,
    /// Brute-force protection, kept in the store: `true` (10 failures per identity and 100
    /// per address every 15 minutes), `false`, or
    /// `{ identity_failures, ip_failures, window }`.
    #[serde(default)]
    #[schemars(with = "Option<RateLimitSetting>")]
    rate_limit: Option<toml::Value>,
    /// Enables `reset_request` and `reset`. Without it, passwords cannot be reset.
    #[serde(default)]
    resettable: Option<RawResettable>,
    /// Limits on `register` and `reset_request` per client address and identity: `true`
    /// (30 per address and 5 per identity every 15 minutes), `false`, or
    /// `{ per_address, per_identity, window }`.
    #[serde(default)]
    #[schemars(with = "Option<RequestLimitSetting>")]
    request_limit: Option<toml::Value>,
    /// A user of a resource with confirmation must have confirmed to sign in (`403
    /// unconfirmed`, only after the password was verified).
    #[serde(default)]
    require_confirmed: bool,
    /// A password change revokes the user's other sessions.
    #[serde(default = "yes")]
    revoke_sessions_on_change: bool,
}

/// `rate_limit = { ... }`; a key left out keeps [`RateLimit::DEFAULT`]'s value.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RawRateLimit {
    /// Failed sign-ins per window for one identity value, known or not. At least 1.
    identity_failures: Option<u32>,
    /// Failed sign-ins and refused tokens per window from one client address. At least 1.
    ip_failures: Option<u32>,
    /// The window, e.g. `"15m"`; a lockout lasts one window, doubling while they go on.
    window: Option<String>,
}

/// How `rate_limit` is written (for the config schema).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RateLimitSetting {
    /// `true`: the default limits; `false`: none.
    Switch(bool),
    Table(RawRateLimit),
}

/// `hash = { algorithm = "...", ... }`. A parameter left out takes its value from
/// [`Algorithm::owasp`], the one place for the defaults.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
enum RawHash {
    /// Argon2id (the default).
    Argon2id {
        /// Memory in KiB: default 19456, from 8 x parallelism to 4194304.
        memory_kib: Option<u32>,
        /// Passes: default 2, 1 to 1000.
        iterations: Option<u32>,
        /// Lanes: default 1, 1 to 64.
        parallelism: Option<u32>,
    },
    /// scrypt.
    Scrypt {
        /// log2 of N: default 17, 1 to 30.
        log_n: Option<u8>,
        /// Block size: default 8, 1 to 64.
        r: Option<u32>,
        /// Parallelism: default 1, 1 to 64.
        p: Option<u32>,
    },
    /// bcrypt (passwords longer than 72 bytes are refused).
    Bcrypt {
        /// Cost: default 12, 4 to 31.
        cost: Option<u32>,
    },
}

impl RawHash {
    /// OWASP's parameters for the algorithm, with those written in the file in their place.
    fn with_defaults(self) -> HashParams {
        let algorithm = match self {
            RawHash::Argon2id { .. } => Algorithm::Argon2id,
            RawHash::Scrypt { .. } => Algorithm::Scrypt,
            RawHash::Bcrypt { .. } => Algorithm::Bcrypt,
        };
        let mut params = algorithm.owasp();
        match (self, &mut params) {
            (
                RawHash::Argon2id {
                    memory_kib,
                    iterations,
                    parallelism,
                },
                HashParams::Argon2id {
                    memory_kib: m,
                    iterations: t,
                    parallelism: p,
                },
            ) => {
                *m = memory_kib.unwrap_or(*m);
                *t = iterations.unwrap_or(*t);
                *p = parallelism.unwrap_or(*p);
            }
            (
                RawHash::Scrypt { log_n, r, p },
                HashParams::Scrypt {
                    log_n: ln0,
                    r: r0,
                    p: p0,
                },
            ) => {
                *ln0 = log_n.unwrap_or(*ln0);
                *r0 = r.unwrap_or(*r0);
                *p0 = p.unwrap_or(*p0);
            }
            (RawHash::Bcrypt { cost }, HashParams::Bcrypt { cost: c }) => {
                *c = cost.unwrap_or(*c);
            }
            // `owasp()` of the algorithm just matched: the pairs above are the only ones.
            _ => {}
        }
        params
    }
}

/// `resettable = { token_lifetime, sender }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RawResettable {
    /// Lifetime of reset tokens, in whole seconds.
    #[serde(default = "default_reset_lifetime")]
    token_lifetime: String,
    /// How the reset token reaches the user. Required: a reset is useless without a way to
    /// reach the user, and defaulting to the `log` sender would put working reset tokens in
    /// production logs.
    #[schemars(with = "SenderSpec")]
    sender: toml::Value,
}

fn default_identity() -> String {
    "username".into()
}
fn default_password() -> String {
    "password".into()
}
fn default_confirmation() -> String {
    "password_confirmation".into()
}
fn default_hashed() -> String {
    "hashed_password".into()
}
fn yes() -> bool {
    true
}
fn default_sign_in_token_lifetime() -> String {
    "60s".into()
}
fn default_reset_lifetime() -> String {
    "3d".into()
}
fn default_min_length() -> usize {
    8
}
fn default_max_length() -> usize {
    256
}

/// A validated password strategy configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordConfig {
    pub identity_field: String,
    /// Whether identities compare case-insensitively (`ci_string`).
    pub identity_ci: bool,
    pub password_field: String,
    pub password_confirmation_field: String,
    pub hashed_password_field: String,
    pub confirmation_required: bool,
    pub registration_enabled: bool,
    pub sign_in_enabled: bool,
    pub sign_in_tokens_enabled: bool,
    pub sign_in_token_lifetime: Duration,
    pub hash: HashParams,
    pub password_min_length: usize,
    pub password_max_length: usize,
    pub rehash_on_sign_in: bool,
    /// A successful reset revokes every session token of the user.
    pub revoke_sessions_on_reset: bool,
    /// Brute-force protection; `None` when turned off with `rate_limit = false`.
    pub rate_limit: Option<RateLimit>,
    pub resettable: Option<Resettable>,
    /// Limits on `register` and `reset_request` per address and identity; `None` when turned
    /// off with `request_limit = false`.
    pub request_limit: Option<RequestLimit>,
    /// A user of a resource with confirmation must have confirmed to sign in (refused with
    /// `403 unconfirmed`, only after the password was verified).
    pub require_confirmed: bool,
    /// A password change revokes the user's other sessions.
    pub revoke_sessions_on_change: bool,
}

/// Failed attempts allowed per window before a lockout (which doubles while they go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub identity_failures: u32,
    pub ip_failures: u32,
    pub window: Duration,
}

impl RateLimit {
    /// 10 failures per identity and 100 per address every 15 minutes.
    pub const DEFAULT: RateLimit = RateLimit {
        identity_failures: 10,
        ip_failures: 100,
        window: Duration::from_secs(15 * 60),
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resettable {
    pub token_lifetime: Duration,
    pub sender: SenderSpec,
}

impl PasswordConfig {
    /// Reads and checks the table at `path`, reporting every problem.
    ///
    /// # Errors
    /// Every problem found, with its TOML path.
    pub fn from_table(
        path: &str,
        resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        let Some(raw) =
            TableReader::read::<RawPasswordConfig>(path, toml::Value::Table(table), &mut problems)
        else {
            return Err(problems);
        };
        let at = |key: &str| format!("{path}.{key}");

        let mut identity_ci = false;
        match resource.attribute(&raw.identity_field) {
            None => problems.push(
                at("identity_field"),
                format!(
                    "`{}` is not an attribute of resource `{}`",
                    raw.identity_field, resource.name
                ),
            ),
            Some(attr) => {
                if !attr.unique {
                    problems.push(
                        at("identity_field"),
                        format!(
                            "attribute `{}` must be declared with unique = true",
                            attr.name
                        ),
                    );
                }
                match attr.ty {
                    AttributeType::CiString => identity_ci = true,
                    AttributeType::String => {}
                    other => problems.push(
                        at("identity_field"),
                        format!(
                            "attribute `{}` is of type {}; an identity must be a string or ci_string",
                            attr.name,
                            other.as_str()
                        ),
                    ),
                }
            }
        }
        for (key, field) in [
            ("password_field", &raw.password_field),
            (
                "password_confirmation_field",
                &raw.password_confirmation_field,
            ),
            ("hashed_password_field", &raw.hashed_password_field),
        ] {
            if field.is_empty() {
                problems.push(at(key), "must not be empty");
            } else if resource.attribute(field).is_some() {
                problems.push(
                    at(key),
                    format!(
                        "`{field}` is also a declared attribute; a password field must not be one"
                    ),
                );
            } else if field == "id" {
                problems.push(at(key), "`id` is reserved");
            }
        }
        if raw.password_field == raw.password_confirmation_field {
            problems.push(
                at("password_confirmation_field"),
                "must differ from password_field",
            );
        }

        let sign_in_token_lifetime = read_duration(
            &mut problems,
            at("sign_in_token_lifetime"),
            &raw.sign_in_token_lifetime,
        );
        let resettable = raw.resettable.and_then(|r| {
            let token_lifetime = read_duration(
                &mut problems,
                at("resettable.token_lifetime"),
                &r.token_lifetime,
            );
            let sender =
                TableReader::read::<SenderSpec>(&at("resettable.sender"), r.sender, &mut problems)?;
            Some(Resettable {
                token_lifetime,
                sender,
            })
        });
        if let Some(r) = &resettable
            && let Err(p) =
                r.sender
                    .validate(&at("resettable.sender"), resource, &[kinds::PASSWORD_RESET])
        {
            problems.extend(p);
        }

        if raw.password_min_length == 0 {
            problems.push(at("password_min_length"), "must be at least 1");
        }
        if raw.password_max_length < raw.password_min_length {
            problems.push(
                at("password_max_length"),
                "must be at least password_min_length",
            );
        }
        if raw.password_max_length > 4096 {
            problems.push(at("password_max_length"), "must be at most 4096");
        }

        let rate_limit = match raw.rate_limit {
            Some(toml::Value::Boolean(false)) => None,
            None | Some(toml::Value::Boolean(true)) => Some(RateLimit::DEFAULT),
            Some(value @ toml::Value::Table(_)) => {
                TableReader::read::<RawRateLimit>(&at("rate_limit"), value, &mut problems).map(
                    |r| {
                        let d = RateLimit::DEFAULT;
                        let limit = RateLimit {
                            identity_failures: r.identity_failures.unwrap_or(d.identity_failures),
                            ip_failures: r.ip_failures.unwrap_or(d.ip_failures),
                            window: r.window.map_or(d.window, |w| {
                                read_duration(&mut problems, at("rate_limit.window"), &w)
                            }),
                        };
                        if limit.identity_failures == 0 {
                            problems.push(at("rate_limit.identity_failures"), "must be at least 1");
                        }
                        if limit.ip_failures == 0 {
                            problems.push(at("rate_limit.ip_failures"), "must be at least 1");
                        }
                        limit
                    },
                )
            }
            Some(_) => {
                problems.push(
                    at("rate_limit"),
                    "must be false, true or a table { identity_failures, ip_failures, window }",
                );
                None
            }
        };
        let request_limit = RequestLimit::read(
            &at("request_limit"),
            raw.request_limit,
            RequestLimit::DEFAULT,
            &mut problems,
        );
        if raw.require_confirmed && resource.confirmation.is_none() {
            problems.push(
                at("require_confirmed"),
                format!(
                    "resource `{}` has no [confirmation] table: nothing can confirm its users",
                    resource.name
                ),
            );
        }

        let hash = match raw.hash {
            None => HashParams::default(),
            Some(value) => match TableReader::read::<RawHash>(&at("hash"), value, &mut problems) {
                Some(h) => check_hash(&at("hash"), h, &mut problems),
                None => HashParams::default(),
            },
        };

        problems.into_result(PasswordConfig {
            identity_field: raw.identity_field,
            identity_ci,
            password_field: raw.password_field,
            password_confirmation_field: raw.password_confirmation_field,
            hashed_password_field: raw.hashed_password_field,
            confirmation_required: raw.confirmation_required,
            registration_enabled: raw.registration_enabled,
            sign_in_enabled: raw.sign_in_enabled,
            sign_in_tokens_enabled: raw.sign_in_tokens_enabled,
            sign_in_token_lifetime,
            hash,
            password_min_length: raw.password_min_length,
            password_max_length: raw.password_max_length,
            rehash_on_sign_in: raw.rehash_on_sign_in,
            revoke_sessions_on_reset: raw.revoke_sessions_on_reset,
            rate_limit,
            resettable,
            request_limit,
            require_confirmed: raw.require_confirmed,
            revoke_sessions_on_change: raw.revoke_sessions_on_change,
        })
    }
}

fn read_duration(problems: &mut Problems, key: String, text: &str) -> Duration {
    parse_lifetime(text).unwrap_or_else(|message| {
        problems.push(key, message);
        Duration::ZERO
    })
}

/// Holds the configured parameters to the bounds every stored hash is held to
/// (`hash::bounds`), so that authd never writes a hash it would then refuse to verify.
fn check_hash(path: &str, raw: RawHash, problems: &mut Problems) -> HashParams {
    let at = |key: &str| format!("{path}.{key}");
    let params = raw.with_defaults();
    match params {
        HashParams::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            if !(1..=ARGON2_MAX_PARALLELISM).contains(&parallelism) {
                problems.push(
                    at("parallelism"),
                    format!("must be between 1 and {ARGON2_MAX_PARALLELISM}"),
                );
            }
            if memory_kib < 8 * parallelism.max(1) || memory_kib > ARGON2_MAX_MEMORY_KIB {
                problems.push(
                    at("memory_kib"),
                    format!(
                        "must be between 8 x parallelism and {ARGON2_MAX_MEMORY_KIB} ({} GiB)",
                        ARGON2_MAX_MEMORY_KIB >> 20
                    ),
                );
            }
            if !(1..=ARGON2_MAX_ITERATIONS).contains(&iterations) {
                problems.push(
                    at("iterations"),
                    format!("must be between 1 and {ARGON2_MAX_ITERATIONS}"),
                );
            }
            let work = u64::from(memory_kib) * u64::from(iterations);
            if work > ARGON2_MAX_WORK_KIB {
                problems.push(
                    path.to_string(),
                    format!(
                        "memory_kib x iterations is {work}; at most {ARGON2_MAX_WORK_KIB} ({} GiB of passes) is allowed",
                        ARGON2_MAX_WORK_KIB >> 20
                    ),
                );
            }
        }
        HashParams::Scrypt { log_n, r, p } => {
            if !(1..=SCRYPT_MAX_LOG_N).contains(&log_n) {
                problems.push(
                    at("log_n"),
                    format!("must be between 1 and {SCRYPT_MAX_LOG_N}"),
                );
            }
            if !(1..=64).contains(&r) {
                problems.push(at("r"), "must be between 1 and 64");
            } else if usize::from(log_n) >= 16 * r as usize {
                problems.push(at("r"), "must be more than log_n / 16 (scrypt's own rule)");
            }
            if !(1..=SCRYPT_MAX_P).contains(&p) {
                problems.push(at("p"), format!("must be between 1 and {SCRYPT_MAX_P}"));
            }
            // scrypt needs 128 * r * N bytes per hash, and fills them p times.
            let memory = 128u64 * u64::from(r) * (1u64 << log_n.min(40));
            if memory > SCRYPT_MAX_MEMORY_BYTES {
                problems.push(
                    path.to_string(),
                    format!(
                        "needs {} MiB per hash; at most {} MiB is allowed",
                        memory >> 20,
                        SCRYPT_MAX_MEMORY_BYTES >> 20
                    ),
                );
            } else if memory * u64::from(p) > SCRYPT_MAX_WORK_BYTES {
                problems.push(
                    path.to_string(),
                    format!(
                        "fills {} MiB per hash (128 x r x N x p); at most {} MiB is allowed",
                        (memory * u64::from(p)) >> 20,
                        SCRYPT_MAX_WORK_BYTES >> 20
                    ),
                );
            }
        }
        HashParams::Bcrypt { cost } => {
            if !(BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&cost) {
                problems.push(
                    at("cost"),
                    format!("must be between {BCRYPT_MIN_COST} and {BCRYPT_MAX_COST}"),
                );
            }
        }
    }
    params
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use authd_strategy_api::AttributeSpec;

    fn resource() -> ResourceSpec {
        ResourceSpec {
            name: "user".into(),
            attributes: vec![
                AttributeSpec {
                    name: "email".into(),
                    ty: AttributeType::CiString,
                    unique: true,
                    required: false,
                    max_length: None,
                },
                AttributeSpec {
                    name: "age".into(),
                    ty: AttributeType::Integer,
                    unique: false,
                    required: false,
                    max_length: None,
                },
            ],
            confirmation: None,
        }
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_follow_ash_authentication() {
        let c = PasswordConfig::from_table(
            "p",
            &resource(),
            table("type = \"password\"\nidentity_field = \"email\""),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.confirmation_required && c.sign_in_tokens_enabled && c.registration_enabled);
        assert_eq!(c.sign_in_token_lifetime, Duration::from_secs(60));
        assert_eq!(c.hash, HashParams::default());
        assert!(c.identity_ci);
        assert_eq!(c.resettable, None);
        let c = PasswordConfig::from_table(
            "p",
            &resource(),
            table("type = \"password\"\nidentity_field = \"email\"\n[resettable]\nsender = { type = \"log\" }"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.resettable.map(|r| r.token_lifetime),
            Some(Duration::from_secs(3 * 86400))
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let err = PasswordConfig::from_table(
            "resources.user.strategies.pw",
            &resource(),
            table(
                "type = \"password\"\nidentity_field = \"age\"\nhashed_password_field = \"email\"\n\
                 sign_in_token_lifetime = \"soon\"\nhash = { algorithm = \"bcrypt\", cost = 3 }",
            ),
        )
        .err()
        .unwrap_or_else(|| panic!("should fail"));
        let paths: Vec<_> = err.0.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "resources.user.strategies.pw.identity_field",
            "resources.user.strategies.pw.hashed_password_field",
            "resources.user.strategies.pw.sign_in_token_lifetime",
            "resources.user.strategies.pw.hash.cost",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn written_hash_settings_read_back_as_themselves() {
        for params in HashParams::OWASP {
            let text = format!(
                "type = \"password\"\nidentity_field = \"email\"\nhash = {}",
                params.toml_value()
            );
            let c = PasswordConfig::from_table("p", &resource(), table(&text))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(c.hash, params, "{text}");
            assert_eq!(params.to_json()["algorithm"], params.algorithm().name());
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let err = PasswordConfig::from_table(
            "s",
            &resource(),
            table("type = \"password\"\nidentity_field = \"email\"\nhash = { algorithm = \"argon2id\", memory = 1 }"),
        )
        .err()
        .unwrap_or_else(|| panic!("should fail"));
        assert!(err.0[0].path.starts_with("s.hash"), "{err}");
        assert!(err.0[0].message.contains("memory"), "{err}");
    }

    fn hash_of(text: &str) -> Result<HashParams, Problems> {
        PasswordConfig::from_table(
            "s",
            &resource(),
            table(&format!(
                "type = \"password\"\nidentity_field = \"email\"\nhash = {text}"
            )),
        )
        .map(|c| c.hash)
    }

    #[test]
    fn hash_parameters_left_out_come_from_owasp() {
        for algorithm in Algorithm::ALL {
            let text = format!("{{ algorithm = \"{}\" }}", algorithm.name());
            assert_eq!(hash_of(&text).unwrap(), algorithm.owasp());
        }
        assert_eq!(
            hash_of("{ algorithm = \"argon2id\", iterations = 3 }").unwrap(),
            HashParams::Argon2id {
                memory_kib: 19456,
                iterations: 3,
                parallelism: 1
            }
        );
    }

    #[test]
    fn hash_parameters_are_held_to_the_verification_bounds() {
        // authd must not write a hash that `hash::verify` would refuse as out of bounds.
        for (text, key) in [
            ("{ algorithm = \"bcrypt\", cost = 17 }", "s.hash.cost"),
            (
                "{ algorithm = \"argon2id\", memory_kib = 1048577 }",
                "s.hash.memory_kib",
            ),
            (
                "{ algorithm = \"argon2id\", iterations = 33 }",
                "s.hash.iterations",
            ),
            (
                "{ algorithm = \"argon2id\", memory_kib = 1048576, iterations = 5 }",
                "s.hash",
            ),
            ("{ algorithm = \"scrypt\", log_n = 21 }", "s.hash.log_n"),
            ("{ algorithm = \"scrypt\", log_n = 20, r = 9 }", "s.hash"),
            ("{ algorithm = \"scrypt\", log_n = 20, p = 5 }", "s.hash"),
            ("{ algorithm = \"scrypt\", p = 17 }", "s.hash.p"),
            ("{ algorithm = \"scrypt\", log_n = 17, r = 1 }", "s.hash.r"),
        ] {
            let err = hash_of(text).unwrap_err();
            assert!(
                err.0.iter().any(|p| p.path == key),
                "{text}: {key} missing from {err}"
            );
        }
        // The limits themselves are accepted, and hash into strings `verify` reads.
        for text in [
            "{ algorithm = \"bcrypt\", cost = 16 }",
            "{ algorithm = \"argon2id\", memory_kib = 1048576, iterations = 4 }",
            "{ algorithm = \"scrypt\", log_n = 20, r = 8, p = 4 }",
        ] {
            let params = hash_of(text).unwrap();
            assert!(crate::hash::import(None, &params.dummy()).is_ok(), "{text}");
        }
    }
}
