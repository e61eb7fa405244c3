//! The OpenAPI 3.1 document of a validated config: one operation per route it serves (the
//! daemon's own routes, and each strategy's phases as the strategy documents them through
//! [`ValidatedStrategy::docs`]), with the configured field names, attribute types and limits,
//! the user object, the sign-in answers, the error envelope with its codes per status, and
//! the bearer scheme. Built with each `Generation` (so a reload changes it) and served
//! pre-serialized at `GET /openapi.json`; `authd openapi` prints it.
//!
//! Pure: it reads the config only. It must not know HTTP (the router serves the bytes) or any
//! strategy type (strategies describe themselves).

use std::collections::BTreeMap;

use authd_strategy_api::{
    Access, Answer, AttributeSpec, AttributeType, FieldDoc, Method, PhaseDoc, ValidatedStrategy,
};
use serde_json::{Map, Value, json};

use crate::config::{Config, Resource};

/// Every error code of the error table, by status (`http::error` is the one place that makes
/// them; a test there keeps the two in step).
pub const ERROR_CODES: &[(u16, &[&str])] = &[
    (400, &["malformed"]),
    (
        401,
        &["authentication_failed", "invalid_token", "invalid_client"],
    ),
    (403, &["unconfirmed"]),
    (404, &["not_found"]),
    (405, &["method_not_allowed"]),
    (408, &["request_timeout"]),
    (413, &["payload_too_large"]),
    (415, &["unsupported_media_type"]),
    (422, &["invalid"]),
    (429, &["rate_limited"]),
    (500, &["internal"]),
    (501, &["not_implemented"]),
    (503, &["busy", "unavailable"]),
];

/// The statuses any operation may answer besides its own: a broken body or coding, a body
/// past the limit or too slow, the machinery failing, the store or the hashing queue full.
const GENERIC_ERRORS: &[u16] = &[400, 408, 413, 415, 500, 501, 503];

/// The document of `config`, as JSON.
pub fn document(config: &Config) -> Value {
    let mut doc = Document::default();
    doc.health();
    doc.keys(config);
    for resource in &config.resources {
        doc.resource(resource);
    }
    doc.finish()
}

/// The document of `config`, serialized once (what `GET /openapi.json` answers).
pub fn to_bytes(config: &Config) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(&document(config)).unwrap_or_default())
}

#[derive(Default)]
struct Document {
    /// path -> method (lower case) -> operation.
    paths: BTreeMap<String, Map<String, Value>>,
    schemas: Map<String, Value>,
}

/// One operation, before it becomes JSON.
struct Operation<'a> {
    id: String,
    tag: &'a str,
    summary: String,
    method: Method,
    session: bool,
    fields: Vec<FieldDoc>,
    /// A path parameter.
    param: Option<&'a str>,
    /// Success statuses and their response objects.
    success: Vec<(u16, Value)>,
    errors: Vec<u16>,
}

impl Document {
    fn add(&mut self, path: &str, op: Operation<'_>) {
        let mut o = Map::new();
        o.insert("operationId".into(), json!(op.id));
        o.insert("tags".into(), json!([op.tag]));
        o.insert("summary".into(), json!(op.summary));
        let mut parameters = Vec::new();
        if let Some(p) = op.param {
            parameters.push(json!({
                "name": p, "in": "path", "required": true, "schema": { "type": "string" }
            }));
        }
        if op.method == Method::Get {
            // Query parameters arrive as strings whatever their type in a body.
            for f in &op.fields {
                parameters.push(json!({
                    "name": f.name,
                    "in": "query",
                    "required": f.required,
                    "description": f.description,
                    "schema": query_schema(&f.schema),
                }));
            }
        } else if !op.fields.is_empty() {
            o.insert(
                "requestBody".into(),
                json!({
                    "required": op.fields.iter().any(|f| f.required),
                    "content": { "application/json": { "schema": object_schema(&op.fields) } }
                }),
            );
        }
        if !parameters.is_empty() {
            o.insert("parameters".into(), Value::Array(parameters));
        }
        if op.session {
            o.insert("security".into(), json!([{ "bearer": [] }]));
        }
        let mut responses = Map::new();
        for (status, response) in op.success {
            responses.insert(status.to_string(), response);
        }
        let mut errors = op.errors;
        if op.session {
            errors.push(401);
        }
        errors.extend_from_slice(GENERIC_ERRORS);
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            responses.insert(
                status.to_string(),
                json!({ "$ref": format!("#/components/responses/Error{status}") }),
            );
        }
        o.insert("responses".into(), Value::Object(responses));
        self.paths
            .entry(path.to_string())
            .or_default()
            .insert(op.method.as_str().to_ascii_lowercase(), Value::Object(o));
    }

    fn health(&mut self) {
        let health = json!({
            "type": "object",
            "required": ["status", "store", "config"],
            "properties": {
                "status": { "enum": ["ok", "unavailable"] },
                "store": { "enum": ["ok", "unavailable"] },
                "config": {
                    "type": "object",
                    "required": ["generation", "file_hash", "loaded_at"],
                    "properties": {
                        "generation": { "type": "integer", "minimum": 1 },
                        "file_hash": { "type": "string" },
                        "loaded_at": { "type": "integer" }
                    }
                },
                "last_reload_error": {
                    "oneOf": [
                        { "type": "null" },
                        {
                            "type": "object",
                            "properties": {
                                "at": { "type": "integer" },
                                "file_hash": { "type": ["string", "null"] },
                                "problems": { "type": "integer" }
                            }
                        }
                    ]
                }
            }
        });
        self.add(
            "/healthz",
            Operation {
                id: "healthz".into(),
                tag: "daemon",
                summary: "Health: 200 when the store serves, 503 when it cannot.".into(),
                method: Method::Get,
                session: false,
                fields: Vec::new(),
                param: None,
                success: vec![(200, json_response("Healthy.", health.clone()))],
                errors: Vec::new(),
            },
        );
        self.add(
            "/openapi.json",
            Operation {
                id: "openapi".into(),
                tag: "daemon",
                summary: "This document, for the config in force.".into(),
                method: Method::Get,
                session: false,
                fields: Vec::new(),
                param: None,
                success: vec![(
                    200,
                    json_response("An OpenAPI 3.1 document.", json!({ "type": "object" })),
                )],
                errors: Vec::new(),
            },
        );
    }

    /// `/.well-known/jwks.json` and, with clients configured, `/auth/introspect`.
    fn keys(&mut self, config: &Config) {
        self.add(
            "/.well-known/jwks.json",
            Operation {
                id: "jwks".into(),
                tag: "daemon",
                summary: "The public keys that verify authd's tokens (RFC 7517).".into(),
                method: Method::Get,
                session: false,
                fields: Vec::new(),
                param: None,
                success: vec![(
                    200,
                    json_response(
                        "A JWK set.",
                        json!({
                            "type": "object",
                            "required": ["keys"],
                            "properties": { "keys": { "type": "array", "items": { "type": "object" } } }
                        }),
                    ),
                )],
                errors: Vec::new(),
            },
        );
        if config.introspection.clients.is_empty() {
            return;
        }
        self.add(
            "/auth/introspect",
            Operation {
                id: "introspect".into(),
                tag: "daemon",
                summary:
                    "Token introspection (RFC 7662), for clients of `[introspection.clients]` \
                          with HTTP Basic."
                        .into(),
                method: Method::Post,
                session: false,
                fields: vec![FieldDoc::string("token", true, "The token to introspect.")],
                param: None,
                success: vec![(
                    200,
                    json_response(
                        "Whether the token is active, and its claims when it is.",
                        json!({
                            "type": "object",
                            "required": ["active"],
                            "properties": { "active": { "type": "boolean" } }
                        }),
                    ),
                )],
                errors: vec![401, 422],
            },
        );
    }

    fn resource(&mut self, resource: &Resource) {
        let subject = resource.spec.name.as_str();
        let user_ref = format!("#/components/schemas/{}", schema_name(subject, "User"));
        let signed_in_ref = format!("#/components/schemas/{}", schema_name(subject, "SignedIn"));
        self.schemas
            .insert(schema_name(subject, "User"), user_schema(resource));
        self.schemas.insert(
            schema_name(subject, "SignedIn"),
            signed_in_schema(&user_ref),
        );
        let user_answer = |what: &str| {
            json_response(
                what,
                json!({
                    "type": "object",
                    "required": ["user"],
                    "properties": { "user": { "$ref": user_ref } }
                }),
            )
        };
        let base = format!("/auth/{subject}");
        let no_content = |what: &str| json!({ "description": what });

        self.add(
            &format!("{base}/me"),
            Operation {
                id: format!("{subject}_me_get"),
                tag: subject,
                summary: "The signed-in user.".into(),
                method: Method::Get,
                session: true,
                fields: Vec::new(),
                param: None,
                success: vec![(200, user_answer("The user."))],
                errors: Vec::new(),
            },
        );
        let attribute_fields: Vec<FieldDoc> = resource
            .spec
            .attributes
            .iter()
            .map(|a| FieldDoc {
                name: a.name.clone(),
                schema: if a.required || a.unique {
                    attribute_schema(a)
                } else {
                    nullable(attribute_schema(a))
                },
                required: false,
                description: format!(
                    "Attribute `{}` ({}{}{}); null removes an attribute that is neither required nor unique.",
                    a.name,
                    a.ty.as_str(),
                    if a.unique { ", unique" } else { "" },
                    if a.required { ", required" } else { "" },
                ),
            })
            .collect();
        self.add(
            &format!("{base}/me"),
            Operation {
                id: format!("{subject}_me_patch"),
                tag: subject,
                summary: "Change the signed-in user's attributes (checked as at registration; \
                          monitored fields wait for their confirmation)."
                    .into(),
                method: Method::Patch,
                session: true,
                fields: attribute_fields,
                param: None,
                success: vec![(200, user_answer("The user as changed."))],
                errors: vec![422],
            },
        );
        let reauth: Vec<FieldDoc> = dedup(
            resource
                .strategies
                .iter()
                .flat_map(|s| s.validated.reauthenticate_docs())
                .collect(),
        );
        self.add(
            &format!("{base}/me"),
            Operation {
                id: format!("{subject}_me_delete"),
                tag: subject,
                summary: "Delete the signed-in user, who proves it is them with a password \
                          (without any, with a session from the last five minutes) and, with \
                          a second factor on, its code."
                    .into(),
                method: Method::Delete,
                session: true,
                fields: reauth,
                param: None,
                success: vec![(204, no_content("Deleted."))],
                errors: Vec::new(),
            },
        );
        for (name, summary) in [
            ("sign_out", "Sign this session token out."),
            (
                "sign_out_all",
                "Sign the user out everywhere: every token of the user dies.",
            ),
        ] {
            self.add(
                &format!("{base}/{name}"),
                Operation {
                    id: format!("{subject}_{name}"),
                    tag: subject,
                    summary: summary.into(),
                    method: Method::Post,
                    session: true,
                    fields: Vec::new(),
                    param: None,
                    success: vec![(204, no_content("Signed out."))],
                    errors: Vec::new(),
                },
            );
        }
        if let (Some(confirmation), Some(spec)) =
            (&resource.confirmation, &resource.spec.confirmation)
        {
            let token = || {
                FieldDoc::string(
                    "confirm",
                    true,
                    "The token of the confirmation message (`token` is accepted too).",
                )
            };
            let get_success = if confirmation.require_interaction {
                json_response(
                    "Nothing changed: POST the token to confirm.",
                    json!({
                        "type": "object",
                        "required": ["status", "message"],
                        "properties": {
                            "status": { "const": "confirmation_required" },
                            "message": { "type": "string" }
                        }
                    }),
                )
            } else {
                user_answer("Confirmed.")
            };
            self.add(
                &format!("{base}/confirm"),
                Operation {
                    id: format!("{subject}_confirm_get"),
                    tag: subject,
                    summary: "The confirmation link as opened.".into(),
                    method: Method::Get,
                    session: false,
                    fields: if confirmation.require_interaction {
                        Vec::new()
                    } else {
                        vec![token()]
                    },
                    param: None,
                    success: vec![(200, get_success)],
                    errors: if confirmation.require_interaction {
                        Vec::new()
                    } else {
                        vec![401, 404, 422]
                    },
                },
            );
            self.add(
                &format!("{base}/confirm"),
                Operation {
                    id: format!("{subject}_confirm_post"),
                    tag: subject,
                    summary: "Confirm the address the token was sent to.".into(),
                    method: Method::Post,
                    session: false,
                    fields: vec![token()],
                    param: None,
                    success: vec![(200, user_answer("Confirmed."))],
                    errors: vec![401, 404, 422],
                },
            );
            let identity = spec
                .monitor_fields
                .iter()
                .filter_map(|f| resource.spec.attribute(f))
                .find(|a| a.unique);
            if let Some(attr) = identity {
                self.add(
                    &format!("{base}/confirm/resend"),
                    Operation {
                        id: format!("{subject}_confirm_resend"),
                        tag: subject,
                        summary: "Send the confirmation again: 202 whether or not the user \
                                  exists or needs it."
                            .into(),
                        method: Method::Post,
                        session: false,
                        fields: vec![FieldDoc {
                            name: attr.name.clone(),
                            schema: attribute_schema(attr),
                            required: true,
                            description: "The address to confirm.".into(),
                        }],
                        param: None,
                        success: vec![(202, accepted())],
                        errors: vec![422, 429],
                    },
                );
            }
        }
        for strategy in &resource.strategies {
            self.strategy(
                subject,
                &strategy.name,
                strategy.validated.as_ref(),
                &signed_in_ref,
            );
        }
    }

    fn strategy(
        &mut self,
        subject: &str,
        name: &str,
        validated: &dyn ValidatedStrategy,
        signed_in_ref: &str,
    ) {
        let phases = validated.phases();
        for doc in validated.docs() {
            let Some(spec) = phases
                .iter()
                .find(|p| p.name == doc.phase && p.param == doc.param)
            else {
                continue;
            };
            if !spec.methods.contains(&doc.method) {
                continue;
            }
            let path = format!("/auth/{subject}/{name}{}", spec.pattern());
            let op = phase_operation(subject, name, &doc, spec.access, signed_in_ref);
            self.add(&path, op);
        }
    }

    fn finish(self) -> Value {
        let mut responses = Map::new();
        for (status, codes) in ERROR_CODES {
            let mut response = json!({
                "description": format!("Error ({}).", codes.join(", ")),
                "content": { "application/json": { "schema": error_schema(codes) } }
            });
            if matches!(status, 429 | 503) {
                response["headers"] = json!({
                    "Retry-After": {
                        "description": "Seconds to wait before trying again.",
                        "schema": { "type": "integer" }
                    }
                });
            }
            responses.insert(format!("Error{status}"), response);
        }
        let paths: Map<String, Value> = self
            .paths
            .into_iter()
            .map(|(k, v)| (k, Value::Object(v)))
            .collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "authd",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "The routes of this authd configuration. Request bodies are JSON \
                    objects, flat or nested under the resource name ({\"user\": {...}}). \
                    Every failure answers {\"error\": {\"code\", \"message\", \"fields\"?}}."
            },
            "paths": paths,
            "components": {
                "schemas": self.schemas,
                "responses": responses,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A session token (or an API key where a strategy accepts them)."
                    }
                }
            }
        })
    }
}

fn phase_operation<'a>(
    subject: &'a str,
    strategy: &str,
    doc: &'a PhaseDoc,
    access: Access,
    signed_in_ref: &str,
) -> Operation<'a> {
    let signed_in = |what: &str| json_response(what, json!({ "$ref": signed_in_ref }));
    let success = match &doc.answer {
        Answer::SignedIn { created: true } => vec![
            (
                200,
                signed_in("Signed in: a session token, or a second factor to continue."),
            ),
            (
                201,
                signed_in("Created (and signed in unless a confirmation is required first)."),
            ),
        ],
        Answer::SignedIn { created: false } => vec![(
            200,
            signed_in("Signed in: a session token, or a second factor to continue."),
        )],
        Answer::Accepted => vec![(202, accepted())],
        Answer::NoContent => vec![(204, json!({ "description": "Done." }))],
        Answer::Json { status, schema } => vec![(*status, json_response("Done.", schema.clone()))],
    };
    let phase = if doc.phase.is_empty() {
        "root"
    } else {
        doc.phase
    };
    let param = doc.param.map(|p| format!("_by_{p}")).unwrap_or_default();
    Operation {
        id: format!(
            "{subject}_{strategy}_{phase}{param}_{}",
            doc.method.as_str().to_ascii_lowercase()
        ),
        tag: subject,
        summary: doc.summary.clone(),
        method: doc.method,
        session: access == Access::Session,
        fields: doc.fields.clone(),
        param: doc.param,
        success,
        errors: doc.errors.clone(),
    }
}

/// `User` of resource `user` is `user.User`-like but must be a valid component name.
fn schema_name(subject: &str, what: &str) -> String {
    format!("{subject}_{what}")
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema } }
    })
}

fn accepted() -> Value {
    json_response(
        "Taken; the effect, if any, happens in the background.",
        json!({
            "type": "object",
            "required": ["status"],
            "properties": { "status": { "const": "accepted" } }
        }),
    )
}

fn nullable(mut schema: Value) -> Value {
    if let Some(Value::String(t)) = schema.get("type").cloned() {
        schema["type"] = json!([t, "null"]);
    }
    schema
}

/// A field's schema as a query parameter: query values are strings.
fn query_schema(schema: &Value) -> Value {
    match schema.get("type") {
        Some(Value::String(t)) if t == "string" => schema.clone(),
        _ => json!({ "type": "string" }),
    }
}

/// The values of an attribute.
fn attribute_schema(a: &AttributeSpec) -> Value {
    match a.ty {
        AttributeType::String | AttributeType::CiString => match a.max_length {
            Some(max) => json!({ "type": "string", "maxLength": max }),
            None => json!({ "type": "string" }),
        },
        AttributeType::Integer => json!({ "type": "integer" }),
        AttributeType::Boolean => json!({ "type": "boolean" }),
    }
}

/// A JSON object of `fields`.
fn object_schema(fields: &[FieldDoc]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields {
        let mut schema = f.schema.clone();
        if !f.description.is_empty()
            && let Some(o) = schema.as_object_mut()
        {
            o.insert("description".into(), json!(f.description));
        }
        properties.insert(f.name.clone(), schema);
        if f.required {
            required.push(json!(f.name));
        }
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

/// The first field of each name.
fn dedup(fields: Vec<FieldDoc>) -> Vec<FieldDoc> {
    let mut seen = std::collections::BTreeSet::new();
    fields
        .into_iter()
        .filter(|f| seen.insert(f.name.clone()))
        .collect()
}

/// The user object: `id`, the attributes (present when set), `confirmed_at` with
/// confirmation, and what strategies add (booleans such as `"totp": true`).
fn user_schema(resource: &Resource) -> Value {
    let mut properties = Map::new();
    properties.insert("id".into(), json!({ "type": "string" }));
    for a in &resource.spec.attributes {
        properties.insert(a.name.clone(), nullable(attribute_schema(a)));
    }
    if let Some(c) = &resource.spec.confirmation {
        properties.insert(
            c.confirmed_at_field.clone(),
            json!({ "type": ["string", "null"], "format": "date-time",
                    "description": "When the user confirmed their address (null: not yet)." }),
        );
    }
    json!({
        "type": "object",
        "required": ["id"],
        "properties": properties,
        "description": format!(
            "A user of `{}`. Strategies may add what they show of the user (a second factor: \
             its name, true when it is on).",
            resource.spec.name
        )
    })
}

/// A sign-in's answer: the user with a session token (no token while a confirmation is
/// required first), or a second factor's `continue` with its token.
fn signed_in_schema(user_ref: &str) -> Value {
    json!({
        "oneOf": [
            {
                "type": "object",
                "required": ["user"],
                "properties": {
                    "user": { "$ref": user_ref },
                    "token": { "type": "string", "description": "A session token (JWT)." }
                }
            },
            {
                "type": "object",
                "required": ["continue", "token"],
                "properties": {
                    "continue": { "type": "string", "description": "The strategy that continues the sign-in." },
                    "token": { "type": "string", "description": "The short-lived token for it." }
                }
            }
        ]
    })
}

/// The error envelope with the codes of one status.
fn error_schema(codes: &[&str]) -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": { "enum": codes },
                    "message": { "type": "string" },
                    "fields": {
                        "type": "object",
                        "description": "422: messages by field.",
                        "additionalProperties": { "type": "array", "items": { "type": "string" } }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(body: &str) -> Config {
        crate::registry::parse_config(&format!("version = 1\n{body}")).unwrap()
    }

    const TWO: &str = r#"
[resources.user]
attributes.email = { type = "ci_string", unique = true, max_length = 254 }
attributes.age = { type = "integer" }
[resources.user.confirmation]
monitor_fields = ["email"]
sender = { type = "log" }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
password_field = "secret_word"
hash = { algorithm = "bcrypt", cost = 4 }
[resources.user.strategies.keys]
type = "api_key"
prefix = "ak"
"#;

    #[test]
    fn operations_follow_the_config() {
        let doc = document(&config(TWO));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/healthz",
            "/auth/user/me",
            "/auth/user/sign_out",
            "/auth/user/confirm",
            "/auth/user/confirm/resend",
            "/auth/user/password/register",
            "/auth/user/keys/keys/{id}",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let register = &paths["/auth/user/password/register"]["post"];
        let body = &register["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["properties"]["email"]["maxLength"], 254);
        assert!(body["properties"]["secret_word"].is_object());
        assert!(
            body["required"]
                .as_array()
                .unwrap()
                .contains(&json!("secret_word"))
        );
        assert!(register["responses"]["201"].is_object());
        let delete = &paths["/auth/user/me"]["delete"];
        assert_eq!(delete["security"], json!([{ "bearer": [] }]));
        assert!(
            delete["requestBody"]["content"]["application/json"]["schema"]["properties"]
                ["secret_word"]
                .is_object()
        );
        assert!(paths["/auth/user/keys/keys"]["get"]["security"].is_array());
        assert_eq!(
            doc["components"]["responses"]["Error401"]["content"]["application/json"]["schema"]["properties"]
                ["error"]["properties"]["code"]["enum"],
            json!(["authentication_failed", "invalid_token", "invalid_client"])
        );
        // Operation ids are unique.
        let mut ids = std::collections::BTreeSet::new();
        for item in paths.values() {
            for op in item.as_object().unwrap().values() {
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
            }
        }
    }

    #[test]
    fn no_resources_no_auth_routes() {
        let doc = document(&config(""));
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            ["/.well-known/jwks.json", "/healthz", "/openapi.json"]
        );
    }
}
