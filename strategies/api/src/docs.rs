//! What a strategy tells about itself for documents generated from the config: its phases'
//! requests and answers (the OpenAPI document), and the JSON Schema of its TOML table (the
//! config schema). Data only: the daemon assembles the documents.

use serde_json::Value;

use crate::Method;

/// One request field of a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDoc {
    pub name: String,
    /// The field's JSON Schema (`{"type": "string", "maxLength": 256}`).
    pub schema: Value,
    pub required: bool,
    pub description: String,
}

impl FieldDoc {
    /// A string field.
    pub fn string(name: impl Into<String>, required: bool, description: impl Into<String>) -> Self {
        FieldDoc {
            name: name.into(),
            schema: serde_json::json!({ "type": "string" }),
            required,
            description: description.into(),
        }
    }
}

/// What a phase answers on success.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `200` (or `201` when `created`) `{"user", "token"}`, or `200 {"continue", "token"}`
    /// when a second factor follows.
    SignedIn { created: bool },
    /// `202 {"status": "accepted"}`.
    Accepted,
    /// `204`.
    NoContent,
    /// A JSON answer of the phase's own.
    Json { status: u16, schema: Value },
}

/// One method of one phase, as the documents show it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseDoc {
    /// The phase's name (as in [`crate::PhaseSpec`]); with `param` for a path parameter.
    pub phase: &'static str,
    pub param: Option<&'static str>,
    pub method: Method,
    pub summary: String,
    /// Body fields (query parameters for `GET`).
    pub fields: Vec<FieldDoc>,
    pub answer: Answer,
    /// The error statuses besides the generic ones (`400`, `413`, `415`, `500`, `503`).
    pub errors: Vec<u16>,
}

/// The JSON Schema of a strategy's raw table type (its doc comments become descriptions), for
/// [`crate::StrategyFactory::config_schema`].
pub fn table_schema<T: schemars::JsonSchema>() -> Value {
    schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{RequestLimitSetting, SenderSpec};

    #[test]
    fn shared_config_types_describe_themselves() {
        let sender = table_schema::<SenderSpec>().to_string();
        for needle in [
            "\"webhook\"",
            "\"smtp\"",
            "\"log\"",
            "magic_link_url",
            "secret_file",
        ] {
            assert!(sender.contains(needle), "{needle} missing from {sender}");
        }
        assert!(sender.contains("Link of magic-link messages"), "{sender}");
        let limit = table_schema::<RequestLimitSetting>().to_string();
        for needle in ["boolean", "per_address", "per_identity", "window"] {
            assert!(limit.contains(needle), "{needle} missing from {limit}");
        }
    }
}
