//! The API key strategy's own table: `[resources.<subject>.strategies.<name>]` with
//! `type = "api_key"`. The raw serde type mirrors the file (and is the config schema);
//! [`ApiKeyConfig`] is what is left once every value has been checked. Pure.

use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{Problems, TableReader, parse_lifetime};
use serde::Deserialize;

/// The longest lifetime a key may have (`default_lifetime`, `expires_in`): ten years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);
/// The most `max_keys_per_user` may be: a user's keys are kept in one record.
pub const MAX_KEYS_LIMIT: u32 = 100;

/// An API key strategy as written in TOML.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(title = "api_key strategy")]
pub struct RawApiKeyConfig {
    /// Always `"api_key"`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "api_key"))]
    pub _type: String,
    /// The start of every key, 1 to 16 of `a-z` and `0-9`: keys look like
    /// `<prefix>_<random>_<checksum>`, easy for secret scanners to find. Each API key
    /// strategy of the config (of every resource) needs its own: a bearer goes to the strategy
    /// whose prefix it starts with, so a prefix used twice is refused. Default `"authd"`.
    #[serde(default = "default_prefix")]
    #[schemars(regex(pattern = r"^[a-z0-9]{1,16}$"))]
    pub prefix: String,
    /// How many live keys a user may hold (1 to 100). Default `10`.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 1, max = 100))]
    pub max_keys_per_user: u32,
    /// The lifetime of a key that asks for none, and the longest one may ask for
    /// (`expires_in`), e.g. `"90d"`, at most ten years. Default: none (keys live until
    /// deleted).
    #[serde(default)]
    pub default_lifetime: Option<String>,
    /// A password reset of the user (which counts up the user's resets) kills the keys made
    /// before it. Default `false`: keys outlive resets, as machines hold them.
    #[serde(default)]
    pub revoke_on_reset: bool,
}

fn default_prefix() -> String {
    "authd".into()
}
fn default_max_keys() -> u32 {
    10
}

/// A validated API key configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    pub prefix: String,
    pub max_keys_per_user: u32,
    pub default_lifetime: Option<Duration>,
    pub revoke_on_reset: bool,
}

impl ApiKeyConfig {
    /// Reads and checks the table at `path`, reporting every problem.
    ///
    /// # Errors
    /// Every problem found, with its TOML path.
    pub fn from_table(path: &str, table: toml::Table) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        let Some(raw) =
            TableReader::read::<RawApiKeyConfig>(path, toml::Value::Table(table), &mut problems)
        else {
            return Err(problems);
        };
        let at = |key: &str| format!("{path}.{key}");
        let prefix_ok = (1..=16).contains(&raw.prefix.len())
            && raw
                .prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !prefix_ok {
            problems.push(at("prefix"), "must be 1 to 16 of a-z and 0-9");
        }
        if !(1..=MAX_KEYS_LIMIT).contains(&raw.max_keys_per_user) {
            problems.push(
                at("max_keys_per_user"),
                format!("must be between 1 and {MAX_KEYS_LIMIT}"),
            );
        }
        let default_lifetime = raw
            .default_lifetime
            .and_then(|text| match parse_lifetime(&text) {
                Ok(d) if d > MAX_LIFETIME => {
                    problems.push(at("default_lifetime"), "must be at most 3650d");
                    None
                }
                Ok(d) => Some(d),
                Err(m) => {
                    problems.push(at("default_lifetime"), m);
                    None
                }
            });
        problems.into_result(ApiKeyConfig {
            prefix: raw.prefix,
            max_keys_per_user: raw.max_keys_per_user,
            default_lifetime,
            revoke_on_reset: raw.revoke_on_reset,
        })
    }
}
