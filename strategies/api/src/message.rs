//! How a strategy hands a message (a reset token, a magic link, a confirmation, an event) to
//! the outside world.
//!
//! The strategy declares *which* sender it wants as data ([`SenderSpec`], read from its TOML
//! table) and builds a [`Message`] of a kind of its own with its template variables; the daemon
//! owns the implementations ([`Senders`]) because they speak HTTP or SMTP, and delivers through
//! a durable outbox. A new kind of message needs no change to the daemon. Validation here is
//! pure: no environment variable or file is read (secrets are read when a message is
//! delivered), no socket is opened.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{AttributeType, Problem, Problems, ResourceSpec, parse_duration};

/// First retry delay when `retry_base` is not set.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
/// How long one delivery attempt may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The attribute holding the address when an `smtp` sender has no `to_field`.
pub const DEFAULT_TO_FIELD: &str = "email";

/// The placeholders every template may use, besides the user's attributes and the message's
/// own variables.
const BUILTIN_PLACEHOLDERS: &[&str] = &["token", "url", "expires_at", "strategy", "id"];

/// A duration written as text in the file (`"2s"`, `"30m"`) and kept as a [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl schemars::JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as \"50ms\", \"60s\", \"15m\" or \"3d\".",
        })
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(DurationText)
            .map_err(serde::de::Error::custom)
    }
}

/// The `sender` table of a strategy.
///
/// `webhook` and `smtp` messages go through the daemon's durable outbox: a request is
/// answered at once, and the message is delivered (at least once) by a background worker that
/// retries with exponential back-off and jitter until it succeeds or its deadline passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SenderSpec {
    /// Writes the message, token included, to the daemon's log at once. For development only:
    /// whoever reads the log can use the token.
    Log {},
    /// POSTs the message as JSON, signed as the Standard Webhooks specification says.
    Webhook(WebhookSpec),
    /// Sends an email through an SMTP relay.
    Smtp(SmtpSpec),
}

/// When to retry and when to give up, resolved from the `retry_base`, `give_up_after` and
/// `timeout` keys of the outbox-backed senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The first retry delay (default [`DEFAULT_RETRY_BASE`]).
    pub retry_base: Duration,
    /// The longest time to keep trying (default: until the token expires).
    pub give_up_after: Option<Duration>,
    /// The longest one attempt may take (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            retry_base: DEFAULT_RETRY_BASE,
            give_up_after: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `sender = { type = "webhook", url = "...", secret_file = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to POST, e.g. `http://127.0.0.1:9000/password-reset` (plain `http://`; put a TLS
    /// proxy in front for https). 2xx is success; any other answer, or none, is retried.
    pub url: String,
    /// Name of an environment variable holding the signing secret, `whsec_<base64>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Path of a file holding the signing secret, `whsec_<base64>` (surrounding whitespace
    /// ignored). Without `secret_env` or `secret_file`, requests are not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// First retry delay; each further retry waits twice as long (with jitter, at most 30
    /// minutes). Default `"2s"`, at most `"1h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base: Option<DurationText>,
    /// Give up this long after the request at the latest. Default (and upper bound): when the
    /// token expires, since a late token is useless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up_after: Option<DurationText>,
    /// How long one attempt may take (connect, send, answer). Default `"10s"`, at most `"5m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationText>,
}

/// How the SMTP connection is secured.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or network namespace.
    None,
    /// Connect in plain text, then upgrade with STARTTLS; refuse a server that cannot.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port for this mode: 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// `sender = { type = "smtp", host = "...", from = "...", reset_url = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpSpec {
    /// The relay's host name or address.
    pub host: String,
    /// The relay's port. Default: 25 for `tls = "none"`, 587 for `"starttls"`, 465 for `"tls"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `"none"`, `"starttls"` (default) or `"tls"`. Certificates are checked against the
    /// Mozilla roots (webpki-roots).
    #[serde(default)]
    pub tls: SmtpTls,
    /// Environment variable holding the SMTP user name (with `password_env`; read when
    /// sending). Without both, no AUTH is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_env: Option<String>,
    /// Environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The `From:` address, e.g. `authd@example.com` or `Example <authd@example.com>`.
    pub from: String,
    /// The user attribute holding the recipient's address. Default `email`, which the
    /// resource must then declare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_field: Option<String>,
    /// Template of the `Subject:` line. Default: the message kind's own subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Template of the plain-text body. Default: the message kind's own text, with `{{url}}`
    /// when the kind's link template is set, else with `{{token}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Link of password-reset messages, `{{url}}` in templates; must use `{{token}}`, e.g.
    /// `https://app.example/reset?token={{token}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_url: Option<String>,
    /// Link of magic-link messages, e.g. `https://app.example/magic?token={{token}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub magic_link_url: Option<String>,
    /// Link of confirmation messages, e.g. `https://app.example/confirm?confirm={{token}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_url: Option<String>,
    /// First retry delay; each further retry waits twice as long (with jitter, at most 30
    /// minutes). Default `"2s"`, at most `"1h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_base: Option<DurationText>,
    /// Give up this long after the request at the latest. Default (and upper bound): when the
    /// token expires, since a late token is useless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub give_up_after: Option<DurationText>,
    /// How long one attempt may take (connect, send, answer). Default `"10s"`, at most `"5m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationText>,
}

fn delivery_of(
    retry_base: Option<DurationText>,
    give_up_after: Option<DurationText>,
    timeout: Option<DurationText>,
) -> Delivery {
    Delivery {
        retry_base: retry_base.map_or(DEFAULT_RETRY_BASE, |d| d.0),
        give_up_after: give_up_after.map(|d| d.0),
        timeout: timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
    }
}

/// The link-template keys of an `smtp` sender, by message kind.
const URL_KEYS: &[(&str, &str)] = &[
    (kinds::PASSWORD_RESET, "reset_url"),
    (kinds::MAGIC_LINK, "magic_link_url"),
    (kinds::CONFIRMATION, "confirm_url"),
];

impl SmtpSpec {
    /// `port`, or the usual port of the `tls` mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    /// The attribute holding the recipient's address.
    pub fn to_field(&self) -> &str {
        self.to_field.as_deref().unwrap_or(DEFAULT_TO_FIELD)
    }

    /// The link template of messages of `kind`, if set.
    pub fn url_template(&self, kind: &str) -> Option<&str> {
        match kind {
            kinds::PASSWORD_RESET => self.reset_url.as_deref(),
            kinds::MAGIC_LINK => self.magic_link_url.as_deref(),
            kinds::CONFIRMATION => self.confirm_url.as_deref(),
            _ => None,
        }
    }

    fn url_field(&self, key: &str) -> Option<&String> {
        match key {
            "reset_url" => self.reset_url.as_ref(),
            "magic_link_url" => self.magic_link_url.as_ref(),
            "confirm_url" => self.confirm_url.as_ref(),
            _ => None,
        }
    }

    /// `subject`, or the message's own.
    pub fn subject_template<'a>(&'a self, message: &'a Message) -> &'a str {
        self.subject
            .as_deref()
            .unwrap_or(&message.templates.subject)
    }

    /// `body`, or the message's own (with `{{url}}` when the kind's link is set).
    pub fn body_template<'a>(&'a self, message: &'a Message) -> &'a str {
        match (&self.body, self.url_template(&message.kind)) {
            (Some(body), _) => body,
            (None, Some(_)) => &message.templates.body_with_url,
            (None, None) => &message.templates.body_with_token,
        }
    }
}

impl Delivery {
    fn validate(path: &str, fields: [(&str, Option<DurationText>); 3], problems: &mut Problems) {
        let max = |key: &str| match key {
            "retry_base" => Duration::from_secs(3600),
            "timeout" => Duration::from_secs(300),
            _ => Duration::MAX,
        };
        for (key, value) in fields {
            let Some(DurationText(d)) = value else {
                continue;
            };
            if d > max(key) {
                problems.push(
                    format!("{path}.{key}"),
                    format!("must be at most {}", humantime::format_duration(max(key))),
                );
            } else if d < Duration::from_millis(1) {
                problems.push(format!("{path}.{key}"), "must be at least 1ms");
            }
        }
    }
}

impl SenderSpec {
    /// The sender's name as written in `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            SenderSpec::Log {} => "log",
            SenderSpec::Webhook(_) => "webhook",
            SenderSpec::Smtp(_) => "smtp",
        }
    }

    /// Retry and deadline settings; `None` for the `log` sender, which does not retry.
    pub fn delivery(&self) -> Option<Delivery> {
        match self {
            SenderSpec::Log {} => None,
            SenderSpec::Webhook(w) => Some(delivery_of(w.retry_base, w.give_up_after, w.timeout)),
            SenderSpec::Smtp(s) => Some(delivery_of(s.retry_base, s.give_up_after, s.timeout)),
        }
    }

    /// Checks what can be checked without the network, the environment or files: URLs,
    /// durations, addresses, and that templates name only known placeholders (`resource`'s
    /// attributes among them) for messages of `kinds`, the kinds this sender will carry.
    ///
    /// # Errors
    /// Every problem found, each at `path` + its key.
    pub fn validate(
        &self,
        path: &str,
        resource: &ResourceSpec,
        kinds: &[&str],
    ) -> Result<(), Problems> {
        let mut problems = Problems::default();
        match self {
            SenderSpec::Log {} => {}
            SenderSpec::Webhook(w) => {
                if let Err(p) = check_http_url(&format!("{path}.url"), &w.url) {
                    problems.0.push(p);
                }
                match (&w.secret_env, &w.secret_file) {
                    (Some(_), Some(_)) => problems.push(
                        format!("{path}.secret_env"),
                        "set secret_env or secret_file, not both",
                    ),
                    (Some(var), None) if var.is_empty() => problems.push(
                        format!("{path}.secret_env"),
                        "must name an environment variable",
                    ),
                    (None, Some(file)) if file.as_os_str().is_empty() => {
                        problems.push(format!("{path}.secret_file"), "must not be empty");
                    }
                    _ => {}
                }
                Delivery::validate(
                    path,
                    [
                        ("retry_base", w.retry_base),
                        ("give_up_after", w.give_up_after),
                        ("timeout", w.timeout),
                    ],
                    &mut problems,
                );
            }
            SenderSpec::Smtp(s) => {
                s.validate(path, resource, kinds, &mut problems);
                Delivery::validate(
                    path,
                    [
                        ("retry_base", s.retry_base),
                        ("give_up_after", s.give_up_after),
                        ("timeout", s.timeout),
                    ],
                    &mut problems,
                );
            }
        }
        problems.into_result(())
    }
}

fn check_http_url(path: &str, url: &str) -> Result<(), Problem> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Problem::new(
            path,
            "must start with http:// (https is not supported yet: use a local TLS proxy)",
        )
    })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(char::is_whitespace) {
        return Err(Problem::new(path, "is not a valid URL"));
    }
    Ok(())
}

/// A loose check of an address as written in the file (`a@b` or `Name <a@b>`); the SMTP
/// library parses it fully when sending.
fn looks_like_mailbox(text: &str) -> bool {
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !address.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

impl SmtpSpec {
    fn validate(
        &self,
        path: &str,
        resource: &ResourceSpec,
        kinds: &[&str],
        problems: &mut Problems,
    ) {
        let at = |key: &str| format!("{path}.{key}");
        if self.host.is_empty() || self.host.contains(char::is_whitespace) {
            problems.push(at("host"), "must be a host name or address");
        }
        if self.port == Some(0) {
            problems.push(at("port"), "must be between 1 and 65535");
        }
        match (&self.username_env, &self.password_env) {
            (Some(u), Some(p)) => {
                for (key, var) in [("username_env", u), ("password_env", p)] {
                    if var.is_empty() {
                        problems.push(at(key), "must name an environment variable");
                    }
                }
            }
            (Some(_), None) => problems.push(at("password_env"), "is required with username_env"),
            (None, Some(_)) => problems.push(at("username_env"), "is required with password_env"),
            (None, None) => {}
        }
        if !looks_like_mailbox(&self.from) {
            problems.push(at("from"), "is not an address such as authd@example.com");
        }
        let to_field = self.to_field();
        let is_text = |ty| matches!(ty, AttributeType::String | AttributeType::CiString);
        match resource.attribute(to_field) {
            Some(attr) if is_text(attr.ty) => {}
            Some(attr) => problems.push(
                at("to_field"),
                format!(
                    "attribute `{to_field}` is of type {}; the address must be a string",
                    attr.ty.as_str()
                ),
            ),
            None if self.to_field.is_none() => problems.push(
                at("to_field"),
                format!(
                    "resource `{}` has no `{DEFAULT_TO_FIELD}` attribute: set to_field to the attribute that holds the address",
                    resource.name
                ),
            ),
            None => problems.push(
                at("to_field"),
                format!("is not an attribute of resource `{}`", resource.name),
            ),
        }
        for (kind, key) in URL_KEYS {
            let Some(url) = self.url_field(key) else {
                continue;
            };
            if !kinds.contains(kind) {
                problems.push(
                    at(key),
                    format!("this sender sends no {kind} messages: {key} has no effect here"),
                );
                continue;
            }
            match placeholders(url) {
                Err(m) => problems.push(at(key), m),
                Ok(names) => {
                    if !names.contains(&"token") {
                        problems.push(at(key), "must contain {{token}}");
                    }
                    if let Some(other) = names.iter().find(|n| **n != "token") {
                        problems.push(
                            at(key),
                            format!("only {{{{token}}}} may be used here, not {{{{{other}}}}}"),
                        );
                    }
                }
            }
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(at(key), "must start with https:// or http://");
            }
        }
        let every_kind_has_a_url = kinds.iter().all(|k| self.url_template(k).is_some());
        for (key, template) in [("subject", &self.subject), ("body", &self.body)] {
            let Some(template) = template else { continue };
            match placeholders(template) {
                Err(m) => problems.push(at(key), m),
                Ok(names) => {
                    for name in names {
                        let known = BUILTIN_PLACEHOLDERS.contains(&name)
                            || resource.attribute(name).is_some();
                        if name == "url" && !every_kind_has_a_url {
                            let keys: Vec<&str> = URL_KEYS
                                .iter()
                                .filter(|(k, _)| kinds.contains(k))
                                .map(|(_, key)| *key)
                                .collect();
                            problems.push(
                                at(key),
                                format!("{{{{url}}}} needs {} to be set", keys.join(" and ")),
                            );
                        } else if !known {
                            problems.push(
                                at(key),
                                format!(
                                    "unknown placeholder {{{{{name}}}}}: use token, url, expires_at, strategy, id or an attribute of `{}`",
                                    resource.name
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The placeholder names (`{{ name }}`, trimmed) in a template, in order.
///
/// # Errors
/// A message when a `{{` is not closed or a placeholder is empty.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a {{ is not closed by }}".to_string())?;
        let name = after[..end].trim();
        if name.is_empty() || name.contains('{') {
            return Err("a placeholder is empty or malformed".to_string());
        }
        names.push(name);
        rest = &after[end + 2..];
    }
    Ok(names)
}

/// Replaces each `{{ name }}` in `template` with `value(name)`, or with nothing when `value`
/// has none. No escaping is done: the result is plain text.
pub fn render_template(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            // Validation refuses this; render what is there rather than lose text.
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str(&value(after[..end].trim()).unwrap_or_default());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The message kinds the strategies of this repository send. A strategy may send others: a
/// kind is only a name, carried to the receiver.
pub mod kinds {
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const MAGIC_LINK: &str = "magic_link";
    pub const CONFIRMATION: &str = "confirmation";
    pub const EVENT: &str = "event";
}

/// The default texts of an email of one kind (an `smtp` sender's `subject` and `body`
/// override them). Placeholders as in [`render_template`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Templates {
    pub subject: String,
    /// The body when the sender has a link template for the kind (uses `{{url}}`).
    pub body_with_url: String,
    /// The body otherwise (uses `{{token}}`).
    pub body_with_token: String,
}

/// A message for a user: who, what kind, the token it carries, and template variables.
///
/// Webhook receivers get it as JSON without `templates`:
/// `{"kind", "subject", "strategy", "user", "token", "expires_at", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// What it is: one of [`kinds`], or a strategy's own.
    pub kind: String,
    /// The resource (`user`).
    pub subject: String,
    pub strategy: String,
    /// The user as the API shows it (id and attributes, never a hash).
    pub user: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the message stops being useful (the token's expiry), in Unix seconds: the
    /// delivery deadline.
    pub expires_at: u64,
    /// More template variables and data for the receiver.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    /// The default email texts of this kind.
    #[serde(default)]
    pub templates: Templates,
}

/// Hands messages over for delivery. Implementations must not log the token (except the `log`
/// sender, whose whole purpose is to).
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    /// Returns once the message is delivered (`log`) or durably queued for delivery
    /// (`webhook`, `smtp`: the daemon's outbox retries it until its deadline).
    ///
    /// # Errors
    /// A message describing why the message could not be handed over (for example, the outbox
    /// is full).
    async fn send(&self, message: Message) -> Result<(), String>;
}

/// Turns a [`SenderSpec`] into a live sender; implemented by the daemon.
pub trait Senders: Send + Sync {
    fn build(&self, spec: &SenderSpec) -> Arc<dyn Sender>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::AttributeSpec;

    const RESET: &[&str] = &[kinds::PASSWORD_RESET];

    fn resource(attrs: &[(&str, AttributeType)]) -> ResourceSpec {
        ResourceSpec {
            name: "user".into(),
            attributes: attrs
                .iter()
                .map(|(name, ty)| AttributeSpec {
                    name: (*name).into(),
                    ty: *ty,
                    unique: false,
                    required: false,
                    max_length: None,
                })
                .collect(),
            confirmation: None,
        }
    }

    fn spec(text: &str) -> SenderSpec {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problem_paths(spec: &SenderSpec, resource: &ResourceSpec) -> Vec<String> {
        match spec.validate("s", resource, RESET) {
            Ok(()) => Vec::new(),
            Err(p) => p.0.into_iter().map(|p| p.path).collect(),
        }
    }

    #[test]
    fn spec_reads_tagged_tables_and_refuses_unknown_keys() {
        let users = resource(&[("email", AttributeType::CiString)]);
        let ok = spec("type = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"");
        assert!(ok.validate("s", &users, RESET).is_ok());
        assert!(toml::from_str::<SenderSpec>("type = \"log\"\nurl = \"x\"").is_err());
        assert!(toml::from_str::<SenderSpec>("type = \"carrier_pigeon\"").is_err());
        assert!(
            toml::from_str::<SenderSpec>("type = \"webhook\"\nurl = \"http://h/\"\nsecret = \"x\"")
                .is_err()
        );
        let https = spec("type = \"webhook\"\nurl = \"https://x\"");
        assert_eq!(problem_paths(&https, &users), vec!["s.url".to_string()]);
    }

    #[test]
    fn webhook_secrets_and_durations_are_checked_without_reading_them() {
        let users = resource(&[("email", AttributeType::CiString)]);
        let w = spec(
            "type = \"webhook\"\nurl = \"http://h/x\"\nsecret_env = \"NOT_SET_ANYWHERE_42\"\n\
             retry_base = \"50ms\"\ngive_up_after = \"1h\"\ntimeout = \"2s\"",
        );
        assert!(w.validate("s", &users, RESET).is_ok());
        let d = w.delivery().unwrap_or_default();
        assert_eq!(d.retry_base, Duration::from_millis(50));
        assert_eq!(d.give_up_after, Some(Duration::from_secs(3600)));
        assert_eq!(d.timeout, Duration::from_secs(2));
        let both = spec(
            "type = \"webhook\"\nurl = \"http://h/x\"\nsecret_env = \"A\"\nsecret_file = \"/f\"\n\
             timeout = \"1h\"",
        );
        assert_eq!(
            problem_paths(&both, &users),
            vec!["s.secret_env", "s.timeout"]
        );
        assert!(
            toml::from_str::<SenderSpec>(
                "type = \"webhook\"\nurl = \"http://h/\"\nretry_base = \"soon\""
            )
            .is_err()
        );
        let defaults = Delivery::default();
        assert_eq!(defaults.retry_base, DEFAULT_RETRY_BASE);
        assert_eq!(defaults.give_up_after, None);
    }

    #[test]
    fn smtp_spec_round_trips_through_json() {
        let s = spec(
            "type = \"smtp\"\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n\
             from = \"authd@example.com\"\nreset_url = \"https://app/r?t={{token}}\"\n\
             retry_base = \"50ms\"",
        );
        let json = serde_json::to_value(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["type"], "smtp");
        assert_eq!(json["retry_base"], "50ms");
        let back: SenderSpec = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, s);
    }

    #[test]
    fn smtp_recipient_defaults_to_email_and_must_be_a_string_attribute() {
        let with_email = resource(&[
            ("email", AttributeType::CiString),
            ("name", AttributeType::String),
            ("age", AttributeType::Integer),
        ]);
        let without = resource(&[("username", AttributeType::String)]);
        let base = "type = \"smtp\"\nhost = \"mail\"\nfrom = \"Example <authd@example.com>\"\n";
        let s = spec(base);
        assert!(s.validate("s", &with_email, RESET).is_ok());
        let SenderSpec::Smtp(ref smtp) = s else {
            panic!("not smtp")
        };
        assert_eq!((smtp.port(), smtp.to_field()), (587, "email"));
        assert_eq!(problem_paths(&s, &without), vec!["s.to_field".to_string()]);
        let to_age = spec(&format!("{base}to_field = \"age\""));
        assert_eq!(
            problem_paths(&to_age, &with_email),
            vec!["s.to_field".to_string()]
        );
        let to_username = spec(&format!("{base}to_field = \"username\""));
        assert!(to_username.validate("s", &without, RESET).is_ok());
    }

    #[test]
    fn smtp_templates_name_only_known_placeholders() {
        let users = resource(&[
            ("email", AttributeType::CiString),
            ("name", AttributeType::String),
        ]);
        let base = "type = \"smtp\"\nhost = \"mail\"\nfrom = \"authd@example.com\"\n";
        let good = spec(&format!(
            "{base}subject = \"Hi {{{{ name }}}}\"\nbody = \"{{{{url}}}} {{{{expires_at}}}} {{{{id}}}}\"\n\
             reset_url = \"https://app/r?t={{{{token}}}}\""
        ));
        assert!(
            good.validate("s", &users, RESET).is_ok(),
            "{:?}",
            good.validate("s", &users, RESET)
        );
        let bad = spec(
            "type = \"smtp\"\nhost = \"mail\"\nfrom = \"nobody\"\nsubject = \"Hi {{nickname}}\"\n\
             body = \"{{url}}\"\nusername_env = \"U\"",
        );
        assert_eq!(
            problem_paths(&bad, &users),
            vec!["s.password_env", "s.from", "s.subject", "s.body"]
        );
        let url = spec(&format!("{base}reset_url = \"ftp://app/{{{{name}}}}\""));
        assert_eq!(
            problem_paths(&url, &users),
            vec!["s.reset_url", "s.reset_url", "s.reset_url"]
        );
    }

    #[test]
    fn templates_render_placeholders_and_leave_the_rest() {
        assert_eq!(placeholders("a {{ x }} b {{y}}"), Ok(vec!["x", "y"]));
        assert!(placeholders("a {{ x").is_err());
        assert!(placeholders("a {{}}").is_err());
        let value = |name: &str| (name == "x").then(|| "1".to_string());
        assert_eq!(render_template("a {{ x }} b {{y}} c", value), "a 1 b  c");
        assert_eq!(render_template("no placeholders", value), "no placeholders");
        assert_eq!(render_template("open {{x", value), "open {{x");
    }

    #[test]
    fn mailbox_check_is_loose_but_catches_mistakes() {
        for ok in ["a@b", "Example <a@b.c>", "\"A B\" <a@b>"] {
            assert!(looks_like_mailbox(ok), "{ok}");
        }
        for bad in ["", "a", "@b", "a@", "a b@c", "a@b@c", "Name <>"] {
            assert!(!looks_like_mailbox(bad), "{bad}");
        }
    }
}
