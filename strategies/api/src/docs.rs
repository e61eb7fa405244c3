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
