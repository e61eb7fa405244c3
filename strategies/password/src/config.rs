//! The password strategy's own table: `[resources.<subject>.strategies.<name>]` with
//! `type = "password"`. Raw serde types mirror the file; [`PasswordConfig`] is what is left
//! once every value has been checked.

use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{
    AttributeType, Problems, ResourceSpec, SenderSpec, TableReader, parse_lifetime,
};
use serde::Deserialize;

use crate::hash::HashParams;

/// The password strategy as written in TOML. Defaults follow AshAuthentication's password
/// strategy, except the hash (argon2id at OWASP's parameters instead of bcrypt).
#[derive(Debug, Deserialize)]
struct RawPasswordConfig {
    /// Always `"password"` here; read by the registry to pick this factory.
    #[serde(rename = "type")]
    _type: String,
    /// The attribute that identifies the user; must be a declared `unique` string attribute.
    #[serde(default = "default_identity")]
    identity_field: String,
    /// The request field carrying the password.
    #[serde(default = "default_password")]
    password_field: String,
    /// The request field carrying the confirmation (checked on register and reset).
    #[serde(default = "default_confirmation")]
    password_confirmation_field: String,
    /// Where the hash is stored; never returned by the API.
    #[serde(default = "default_hashed")]
    hashed_password_field: String,
    #[serde(default = "yes")]
    confirmation_required: bool,
    #[serde(default = "yes")]
    registration_enabled: bool,
    #[serde(default = "yes")]
    sign_in_enabled: bool,
    #[serde(default = "yes")]
    sign_in_tokens_enabled: bool,
    #[serde(default = "default_sign_in_token_lifetime")]
    sign_in_token_lifetime: String,
    #[serde(default)]
    /// Read on its own (see [`RawHash`]) so that a mistake in it does not hide the others.
    hash: Option<toml::Value>,
    #[serde(default = "default_min_length")]
    password_min_length: usize,
    #[serde(default = "default_max_length")]
    password_max_length: usize,
    #[serde(default = "yes")]
    rehash_on_sign_in: bool,
    #[serde(default = "yes")]
    revoke_sessions_on_reset: bool,
    /// `false`, `true` (the defaults) or a table; read by hand for clear errors.
    #[serde(default)]
    rate_limit: Option<toml::Value>,
    #[serde(default)]
    resettable: Option<RawResettable>,
}

/// `rate_limit = { ... }`.
#[derive(Debug, Deserialize)]
struct RawRateLimit {
    #[serde(default = "default_identity_failures")]
    identity_failures: u32,
    #[serde(default = "default_ip_failures")]
    ip_failures: u32,
    #[serde(default = "default_window")]
    window: String,
}

fn default_identity_failures() -> u32 {
    10
}
fn default_ip_failures() -> u32 {
    100
}
fn default_window() -> String {
    "15m".into()
}

#[derive(Debug, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
enum RawHash {
    Argon2id {
        #[serde(default = "default_memory")]
        memory_kib: u32,
        #[serde(default = "default_iterations")]
        iterations: u32,
        #[serde(default = "one")]
        parallelism: u32,
    },
    Scrypt {
        #[serde(default = "default_log_n")]
        log_n: u8,
        #[serde(default = "default_r")]
        r: u32,
        #[serde(default = "one")]
        p: u32,
    },
    Bcrypt {
        #[serde(default = "default_cost")]
        cost: u32,
    },
}

#[derive(Debug, Deserialize)]
struct RawResettable {
    #[serde(default = "default_reset_lifetime")]
    token_lifetime: String,
    /// Required: a reset is useless without a way to reach the user, and defaulting to the
    /// `log` sender would put working reset tokens in production logs.
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
fn one() -> u32 {
    1
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
fn default_memory() -> u32 {
    19456
}
fn default_iterations() -> u32 {
    2
}
fn default_log_n() -> u8 {
    17
}
fn default_r() -> u32 {
    8
}
fn default_cost() -> u32 {
    12
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
}

/// Failed attempts allowed per window before a lockout (which doubles while they go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub identity_failures: u32,
    pub ip_failures: u32,
    pub window: Duration,
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
            && let Err(p) = r.sender.validate(&at("resettable.sender"), resource)
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
            None | Some(toml::Value::Boolean(true)) => Some(RateLimit {
                identity_failures: default_identity_failures(),
                ip_failures: default_ip_failures(),
                window: Duration::from_secs(15 * 60),
            }),
            Some(value @ toml::Value::Table(_)) => {
                match TableReader::read::<RawRateLimit>(&at("rate_limit"), value, &mut problems) {
                    Some(r) => {
                        if r.identity_failures == 0 {
                            problems.push(at("rate_limit.identity_failures"), "must be at least 1");
                        }
                        if r.ip_failures == 0 {
                            problems.push(at("rate_limit.ip_failures"), "must be at least 1");
                        }
                        Some(RateLimit {
                            identity_failures: r.identity_failures,
                            ip_failures: r.ip_failures,
                            window: read_duration(
                                &mut problems,
                                at("rate_limit.window"),
                                &r.window,
                            ),
                        })
                    }
                    None => None,
                }
            }
            Some(_) => {
                problems.push(
                    at("rate_limit"),
                    "must be false, true or a table { identity_failures, ip_failures, window }",
                );
                None
            }
        };

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
        })
    }
}

fn read_duration(problems: &mut Problems, key: String, text: &str) -> Duration {
    parse_lifetime(text).unwrap_or_else(|message| {
        problems.push(key, message);
        Duration::ZERO
    })
}

fn check_hash(path: &str, raw: RawHash, problems: &mut Problems) -> HashParams {
    let at = |key: &str| format!("{path}.{key}");
    match raw {
        RawHash::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            if !(1..=64).contains(&parallelism) {
                problems.push(at("parallelism"), "must be between 1 and 64");
            }
            if memory_kib < 8 * parallelism.max(1) || memory_kib > 4 * 1024 * 1024 {
                problems.push(
                    at("memory_kib"),
                    "must be between 8 x parallelism and 4194304 (4 GiB)",
                );
            }
            if !(1..=1000).contains(&iterations) {
                problems.push(at("iterations"), "must be between 1 and 1000");
            }
            HashParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            }
        }
        RawHash::Scrypt { log_n, r, p } => {
            if !(1..=30).contains(&log_n) {
                problems.push(at("log_n"), "must be between 1 and 30");
            }
            if !(1..=64).contains(&r) {
                problems.push(at("r"), "must be between 1 and 64");
            }
            if !(1..=64).contains(&p) {
                problems.push(at("p"), "must be between 1 and 64");
            }
            // scrypt needs 128 * r * N bytes per hash.
            let memory = 128u64 * u64::from(r) * (1u64 << log_n.min(40));
            if memory > 4 << 30 {
                problems.push(
                    path.to_string(),
                    format!(
                        "needs {} MiB per hash; at most 4096 MiB is allowed",
                        memory >> 20
                    ),
                );
            }
            HashParams::Scrypt { log_n, r, p }
        }
        RawHash::Bcrypt { cost } => {
            if !(4..=31).contains(&cost) {
                problems.push(at("cost"), "must be between 4 and 31");
            }
            HashParams::Bcrypt { cost }
        }
    }
}

#[cfg(test)]
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
            assert_eq!(params.to_json()["algorithm"], params.algorithm());
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
}
