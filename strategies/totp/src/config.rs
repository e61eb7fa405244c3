//! The TOTP strategy's own table: `[resources.<subject>.strategies.<name>]` with
//! `type = "totp"`. [`RawTotpConfig`] mirrors the file (and is the source of the JSON Schema
//! through its doc comments); [`TotpConfig`] is what is left once every value has been checked.
//! Option names follow AshAuthentication 5.0's `totp` strategy.
//!
//! Validation is pure: whether the strategies named in `required_after` exist is checked by
//! the daemon, which sees the whole resource ([`authd_strategy_api::ValidatedStrategy::continues_after`]).

use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{AttributeType, Problems, ResourceSpec, TableReader, parse_lifetime};
use schemars::JsonSchema;
use serde::Deserialize;

/// A TOTP second factor (RFC 6238, the codes of authenticator apps) with single-use recovery
/// codes. A successful sign-in by a strategy named in `required_after` answers
/// `{"continue": "<this strategy>", "token": ...}` instead of a session when the user has
/// TOTP on; `POST .../verify` with that token and a code finishes it.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(title = "totp strategy")]
pub struct RawTotpConfig {
    /// Always `"totp"`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "totp"))]
    pub kind: String,
    /// The name authenticator apps show beside the account (the key URI's `issuer`). It must
    /// not contain `:`, which separates the issuer from the account in the URI's label.
    pub issuer: String,
    /// Seconds each code lasts (RFC 6238's time step), 10 to 300. Most apps only do 30.
    #[serde(default = "default_period")]
    pub period: u64,
    /// Digits per code, 6 to 8. Most apps only do 6.
    #[serde(default = "default_digits")]
    pub digits: u32,
    /// Bytes of the shared secret, 16 to 64 (RFC 4226 asks for at least 16 and recommends 20).
    #[serde(default = "default_secret_length")]
    pub secret_length: usize,
    /// Periods of clock drift accepted on either side of the current one, 0 to 5: with 1, the
    /// previous, current and next codes are accepted (each at most once).
    #[serde(default = "default_grace_period")]
    pub grace_period: u32,
    /// Strategies of the same resource whose successful sign-in continues here when the user
    /// has TOTP on, e.g. `["password"]`. At least one; each must exist.
    pub required_after: Vec<String>,
    /// Recovery codes made when TOTP is turned on (shown once, stored hashed, each usable
    /// once instead of a code), 0 to 100.
    #[serde(default = "default_recovery_codes")]
    pub recovery_codes: u32,
    /// Failed codes allowed per user (and per client address) before a lockout. Required, as
    /// in AshAuthentication: six digits fall to a few hundred thousand guesses.
    pub brute_force: RawBruteForce,
    /// How long the setup token of `setup`, and the token that continues a sign-in, live
    /// (whole seconds, at most 1h).
    #[serde(default = "default_setup_token_lifetime")]
    pub setup_token_lifetime: String,
    /// The stored secret field holding the user's TOTP state (the sealed seed, the last code
    /// used, the hashed recovery codes); never returned by the API.
    #[serde(default = "default_secret_field")]
    pub secret_field: String,
    /// The attribute that names the account in authenticator apps (the key URI's label).
    /// Defaults to the resource's first unique string attribute, or the user's id.
    #[serde(default)]
    pub identity_field: Option<String>,
}

/// `brute_force = { max_failures = 5, window = "5m" }`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RawBruteForce {
    /// Failed attempts per user within `window` that lock further attempts (for a window,
    /// doubling while failures go on). At least 1.
    pub max_failures: u32,
    /// The counting window, e.g. `"5m"`.
    pub window: String,
    /// Failed attempts per client address within `window` (every user together); ten times
    /// `max_failures` when left out.
    #[serde(default)]
    pub max_failures_per_address: Option<u32>,
}

fn default_period() -> u64 {
    30
}
fn default_digits() -> u32 {
    6
}
fn default_secret_length() -> usize {
    20
}
fn default_grace_period() -> u32 {
    1
}
fn default_recovery_codes() -> u32 {
    10
}
fn default_setup_token_lifetime() -> String {
    "10m".into()
}
fn default_secret_field() -> String {
    "totp_secret".into()
}

/// The longest `setup_token_lifetime`: the continue token lives as long, and it stands for a
/// half-finished sign-in.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Failed attempts allowed before a lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BruteForce {
    pub max_failures: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
}

/// A validated TOTP strategy configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpConfig {
    pub issuer: String,
    pub period: u64,
    pub digits: u32,
    pub secret_length: usize,
    pub grace_period: u32,
    pub required_after: Vec<String>,
    pub recovery_codes: u32,
    pub brute_force: BruteForce,
    pub setup_token_lifetime: Duration,
    pub secret_field: String,
    /// The attribute naming the account in apps; `None`: the user's id.
    pub label_field: Option<String>,
}

impl TotpConfig {
    /// Reads and checks the table at `path` for the strategy `name`, reporting every problem.
    ///
    /// # Errors
    /// Every problem found, with its TOML path.
    pub fn from_table(
        path: &str,
        name: &str,
        resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<TotpConfig, Problems> {
        let mut problems = Problems::default();
        let Some(raw) =
            TableReader::read::<RawTotpConfig>(path, toml::Value::Table(table), &mut problems)
        else {
            return Err(problems);
        };
        let at = |key: &str| format!("{path}.{key}");

        if raw.issuer.trim().is_empty() {
            problems.push(at("issuer"), "must not be empty");
        } else if raw.issuer.contains(':') {
            problems.push(
                at("issuer"),
                "must not contain `:` (it separates issuer and account in the key URI)",
            );
        } else if raw.issuer.chars().count() > 64 {
            problems.push(at("issuer"), "must be at most 64 characters");
        }
        if !(10..=300).contains(&raw.period) {
            problems.push(at("period"), "must be between 10 and 300 seconds");
        }
        if !(6..=8).contains(&raw.digits) {
            problems.push(at("digits"), "must be 6, 7 or 8");
        }
        if !(16..=64).contains(&raw.secret_length) {
            problems.push(at("secret_length"), "must be between 16 and 64 bytes");
        }
        if raw.grace_period > 5 {
            problems.push(at("grace_period"), "must be between 0 and 5 periods");
        }
        if raw.required_after.is_empty() {
            problems.push(
                at("required_after"),
                "must name at least one strategy whose sign-in continues here",
            );
        }
        for (i, other) in raw.required_after.iter().enumerate() {
            if other == name {
                problems.push(at("required_after"), "must not name this strategy itself");
            } else if raw.required_after[..i].contains(other) {
                problems.push(at("required_after"), format!("names `{other}` twice"));
            }
        }
        if raw.recovery_codes > 100 {
            problems.push(at("recovery_codes"), "must be between 0 and 100");
        }

        let window = match parse_lifetime(&raw.brute_force.window) {
            Ok(d) => d,
            Err(m) => {
                problems.push(at("brute_force.window"), m);
                Duration::from_secs(300)
            }
        };
        let max_failures = raw.brute_force.max_failures;
        if !(1..=1000).contains(&max_failures) {
            problems.push(at("brute_force.max_failures"), "must be between 1 and 1000");
        }
        let max_failures_per_address = raw
            .brute_force
            .max_failures_per_address
            .unwrap_or_else(|| max_failures.saturating_mul(10));
        if max_failures_per_address == 0 {
            problems.push(
                at("brute_force.max_failures_per_address"),
                "must be at least 1",
            );
        }

        let setup_token_lifetime = match parse_lifetime(&raw.setup_token_lifetime) {
            Ok(d) if d <= MAX_TOKEN_LIFETIME => d,
            Ok(_) => {
                problems.push(at("setup_token_lifetime"), "must be at most 1h");
                MAX_TOKEN_LIFETIME
            }
            Err(m) => {
                problems.push(at("setup_token_lifetime"), m);
                MAX_TOKEN_LIFETIME
            }
        };

        if raw.secret_field.is_empty() {
            problems.push(at("secret_field"), "must not be empty");
        } else if raw.secret_field == "id" {
            problems.push(at("secret_field"), "`id` is reserved");
        } else if resource.attribute(&raw.secret_field).is_some() {
            problems.push(
                at("secret_field"),
                format!(
                    "`{}` is also a declared attribute; a secret field must not be one",
                    raw.secret_field
                ),
            );
        }

        let label_field = match raw.identity_field {
            Some(field) => {
                if resource.attribute(&field).is_none() {
                    problems.push(
                        at("identity_field"),
                        format!(
                            "`{field}` is not an attribute of resource `{}`",
                            resource.name
                        ),
                    );
                }
                Some(field)
            }
            None => resource
                .attributes
                .iter()
                .find(|a| {
                    a.unique && matches!(a.ty, AttributeType::String | AttributeType::CiString)
                })
                .map(|a| a.name.clone()),
        };

        problems.into_result(TotpConfig {
            issuer: raw.issuer,
            period: raw.period,
            digits: raw.digits,
            secret_length: raw.secret_length,
            grace_period: raw.grace_period,
            required_after: raw.required_after,
            recovery_codes: raw.recovery_codes,
            brute_force: BruteForce {
                max_failures,
                max_failures_per_address,
                window,
            },
            setup_token_lifetime,
            secret_field: raw.secret_field,
            label_field,
        })
    }
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
                    name: "age".into(),
                    ty: AttributeType::Integer,
                    unique: false,
                    required: false,
                    max_length: None,
                },
                AttributeSpec {
                    name: "email".into(),
                    ty: AttributeType::CiString,
                    unique: true,
                    required: true,
                    max_length: None,
                },
            ],
            confirmation: None,
        }
    }

    fn read(text: &str) -> Result<TotpConfig, Problems> {
        let table: toml::Table = toml::from_str(text).unwrap();
        TotpConfig::from_table("resources.user.strategies.totp", "totp", &resource(), table)
    }

    const MINIMAL: &str = "type = \"totp\"\nissuer = \"Example\"\nrequired_after = [\"password\"]\n\
                           brute_force = { max_failures = 5, window = \"5m\" }\n";

    #[test]
    fn defaults_are_ash_5s() {
        let c = read(MINIMAL).unwrap();
        assert_eq!(
            (c.period, c.digits, c.secret_length, c.grace_period),
            (30, 6, 20, 1)
        );
        assert_eq!(c.recovery_codes, 10);
        assert_eq!(c.setup_token_lifetime, Duration::from_secs(600));
        assert_eq!(c.secret_field, "totp_secret");
        assert_eq!(
            c.label_field.as_deref(),
            Some("email"),
            "first unique string"
        );
        assert_eq!(
            c.brute_force,
            BruteForce {
                max_failures: 5,
                max_failures_per_address: 50,
                window: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn brute_force_is_required() {
        let err =
            read("type = \"totp\"\nissuer = \"E\"\nrequired_after = [\"password\"]\n").unwrap_err();
        assert!(
            err.0.iter().any(|p| p.message.contains("brute_force")),
            "{err}"
        );
    }

    #[test]
    fn every_bad_value_is_reported_with_its_path() {
        let err = read(
            "type = \"totp\"\nissuer = \"Ex:ample\"\nperiod = 5\ndigits = 9\nsecret_length = 8\n\
             grace_period = 9\nrequired_after = [\"totp\", \"password\", \"password\"]\n\
             recovery_codes = 1000\nsetup_token_lifetime = \"2h\"\nsecret_field = \"email\"\n\
             identity_field = \"nope\"\n\
             brute_force = { max_failures = 0, window = \"soon\", max_failures_per_address = 0 }\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = err
            .0
            .iter()
            .map(|p| {
                p.path
                    .strip_prefix("resources.user.strategies.totp.")
                    .unwrap()
            })
            .collect();
        for key in [
            "issuer",
            "period",
            "digits",
            "secret_length",
            "grace_period",
            "required_after",
            "recovery_codes",
            "setup_token_lifetime",
            "secret_field",
            "identity_field",
            "brute_force.max_failures",
            "brute_force.window",
            "brute_force.max_failures_per_address",
        ] {
            assert!(paths.contains(&key), "{key} not reported: {err}");
        }
        assert_eq!(
            paths.iter().filter(|p| **p == "required_after").count(),
            2,
            "itself and the duplicate: {err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = read(&format!("{MINIMAL}brute_force_strategy = \"rate_limit\"\n")).unwrap_err();
        assert_eq!(
            err.0[0].path,
            "resources.user.strategies.totp.brute_force_strategy"
        );
        let err = read(
            "type = \"totp\"\nissuer = \"E\"\nrequired_after = [\"password\"]\n\
             brute_force = { max_failures = 5, window = \"5m\", per_ip = 3 }\n",
        )
        .unwrap_err();
        assert_eq!(
            err.0[0].path,
            "resources.user.strategies.totp.brute_force.per_ip"
        );
    }
}
