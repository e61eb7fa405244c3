//! The magic link strategy's own table: `[resources.<subject>.strategies.<name>]` with
//! `type = "magic_link"`. The raw serde type mirrors the file (and is the config schema);
//! [`MagicLinkConfig`] is what is left once every value has been checked. Pure: no file,
//! socket or environment variable is touched.

use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{
    AttributeType, Problems, RequestLimit, RequestLimitSetting, ResourceSpec, SenderSpec,
    TableReader, kinds, parse_lifetime,
};
use serde::Deserialize;

/// The longest `token_lifetime`: a link in a mailbox is a credential.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A magic link strategy as written in TOML (AshAuthentication's `magic_link` strategy, with
/// `require_interaction` on by default).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(title = "magic_link strategy")]
pub struct RawMagicLinkConfig {
    /// Always `"magic_link"`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "magic_link"))]
    pub _type: String,
    /// The attribute that identifies the user and receives the link; must be a declared
    /// `unique` string or ci_string attribute. Default `"username"`.
    #[serde(default = "default_identity")]
    pub identity_field: String,
    /// How long a link works, in whole seconds (at most a day). Default `"10m"`.
    #[serde(default = "default_lifetime")]
    pub token_lifetime: String,
    /// A link signs in once: its token is marked used at the first sign-in. Default `true`.
    #[serde(default = "yes")]
    pub single_use_token: bool,
    /// Signing in with the link of an identity that has no account creates it (and confirms
    /// it when the resource has confirmation). Default `false`: a request for an unknown
    /// identity sends nothing.
    #[serde(default)]
    pub registration_enabled: bool,
    /// A `GET` of the link changes nothing and answers that a `POST` is needed, so that
    /// email scanners that follow links cannot use them up. Default `true` (AshAuthentication
    /// defaults to `false`).
    #[serde(default = "yes")]
    pub require_interaction: bool,
    /// How links reach the user: `{ type = "log" }`, `{ type = "webhook", url = ... }` or
    /// `{ type = "smtp", ..., magic_link_url = "https://app.example/magic?token={{token}}" }`.
    /// Required.
    #[schemars(with = "SenderSpec")]
    pub sender: Option<toml::Value>,
    /// Limits on `request` per client address and per identity: `true` (30 per address and 5
    /// per identity every 15 minutes, the default), `false`, or
    /// `{ per_address, per_identity, window }`.
    #[serde(default)]
    #[schemars(with = "Option<RequestLimitSetting>")]
    pub request_limit: Option<toml::Value>,
}

fn default_identity() -> String {
    "username".into()
}
fn default_lifetime() -> String {
    "10m".into()
}
fn yes() -> bool {
    true
}

/// A validated magic link configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicLinkConfig {
    pub identity_field: String,
    pub token_lifetime: Duration,
    pub single_use_token: bool,
    pub registration_enabled: bool,
    pub require_interaction: bool,
    pub sender: SenderSpec,
    /// `None` when turned off with `request_limit = false`.
    pub request_limit: Option<RequestLimit>,
}

impl MagicLinkConfig {
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
            TableReader::read::<RawMagicLinkConfig>(path, toml::Value::Table(table), &mut problems)
        else {
            return Err(problems);
        };
        let at = |key: &str| format!("{path}.{key}");

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
                if !matches!(attr.ty, AttributeType::String | AttributeType::CiString) {
                    problems.push(
                        at("identity_field"),
                        format!(
                            "attribute `{}` is of type {}; an identity must be a string or ci_string",
                            attr.name,
                            attr.ty.as_str()
                        ),
                    );
                }
            }
        }

        let token_lifetime = match parse_lifetime(&raw.token_lifetime) {
            Ok(d) if d > MAX_TOKEN_LIFETIME => {
                problems.push(at("token_lifetime"), "must be at most 1d");
                d
            }
            Ok(d) => d,
            Err(m) => {
                problems.push(at("token_lifetime"), m);
                Duration::ZERO
            }
        };

        let sender = match raw.sender {
            Some(value) => TableReader::read::<SenderSpec>(&at("sender"), value, &mut problems),
            None => {
                // Defaulting to the `log` sender would put working links in production logs.
                problems.push(
                    at("sender"),
                    "is required: how links reach the user ({ type = \"smtp\", ... }, \"webhook\" or \"log\")",
                );
                None
            }
        };
        if let Some(sender) = &sender {
            if let Err(p) = sender.validate(&at("sender"), resource, &[kinds::MAGIC_LINK]) {
                problems.extend(p);
            }
            // The link of a new identity can only go to the identity itself: the account
            // has no other attribute yet.
            if raw.registration_enabled
                && let SenderSpec::Smtp(smtp) = sender
                && smtp.to_field() != raw.identity_field
            {
                problems.push(
                    at("sender.to_field"),
                    format!(
                        "with registration_enabled the link goes to `{}` (a new account has nothing else): set to_field to it",
                        raw.identity_field
                    ),
                );
            }
        }

        if raw.registration_enabled {
            // Signing in creates the user from the identity alone.
            for attr in resource.attributes.iter().filter(|a| a.required) {
                if attr.name != raw.identity_field {
                    problems.push(
                        at("registration_enabled"),
                        format!(
                            "attribute `{}` is required, and a user created by a magic link has only `{}`",
                            attr.name, raw.identity_field
                        ),
                    );
                }
            }
        }

        let request_limit = RequestLimit::read(
            &at("request_limit"),
            raw.request_limit,
            RequestLimit::DEFAULT,
            &mut problems,
        );

        match sender {
            Some(sender) => problems.into_result(MagicLinkConfig {
                identity_field: raw.identity_field,
                token_lifetime,
                single_use_token: raw.single_use_token,
                registration_enabled: raw.registration_enabled,
                require_interaction: raw.require_interaction,
                sender,
                request_limit,
            }),
            None => Err(problems),
        }
    }
}
