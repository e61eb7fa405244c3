//! What each password phase takes and answers, for the OpenAPI document
//! (`ValidatedStrategy::docs`), with the field names and rules of this configuration. Data
//! only: the daemon assembles the document.

use authd_strategy_api::{
    Answer, AttributeSpec, AttributeType, FieldDoc, Method, PhaseDoc, ResourceSpec,
};
use serde_json::{Value, json};

use crate::PasswordConfig;

/// The JSON Schema of an attribute's values.
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

/// Every phase's documents, enabled or not (the caller keeps the enabled ones).
pub(crate) fn phase_docs(c: &PasswordConfig, resource: &ResourceSpec) -> Vec<PhaseDoc> {
    let password = |required: bool| FieldDoc {
        name: c.password_field.clone(),
        schema: json!({
            "type": "string",
            "minLength": c.password_min_length,
            "maxLength": c.password_max_length
        }),
        required,
        description: "The new password.".into(),
    };
    let confirmation = || {
        c.confirmation_required.then(|| {
            FieldDoc::string(
                &c.password_confirmation_field,
                true,
                "The password again; must be equal to it.",
            )
        })
    };
    let identity = || {
        FieldDoc::string(
            &c.identity_field,
            true,
            "The identity of the user (compared as the attribute is prepared).",
        )
    };
    let mut register_fields: Vec<FieldDoc> = resource
        .attributes
        .iter()
        .map(|a| FieldDoc {
            name: a.name.clone(),
            schema: attribute_schema(a),
            required: a.required || a.name == c.identity_field,
            description: format!("Attribute `{}` of the user.", a.name),
        })
        .collect();
    register_fields.push(password(true));
    register_fields.extend(confirmation());

    let mut reset_fields = vec![FieldDoc::string(
        "reset_token",
        true,
        "The token of the reset message (`token` is accepted too).",
    )];
    reset_fields.push(password(true));
    reset_fields.extend(confirmation());

    let mut change_fields = vec![FieldDoc::string(
        "current_password",
        true,
        "The password the user has now.",
    )];
    change_fields.push(password(true));
    change_fields.extend(confirmation());

    let token = || FieldDoc::string("token", true, "A sign-in token from `sign_in`.");
    let sign_in_with_token = |method| PhaseDoc {
        phase: "sign_in_with_token",
        param: None,
        method,
        summary: "Exchange a single-use sign-in token for a session.".into(),
        fields: vec![token()],
        answer: Answer::SignedIn { created: false },
        errors: vec![401, 403, 422, 429],
    };
    vec![
        PhaseDoc {
            phase: "register",
            param: None,
            method: Method::Post,
            summary: "Create a user with a password; signs in.".into(),
            fields: register_fields,
            answer: Answer::SignedIn { created: true },
            errors: vec![422, 429],
        },
        PhaseDoc {
            phase: "sign_in",
            param: None,
            method: Method::Post,
            summary: "Sign in with the identity and the password.".into(),
            fields: vec![
                identity(),
                FieldDoc::string(&c.password_field, true, "The password."),
                FieldDoc {
                    name: "token_type".into(),
                    schema: json!({ "enum": ["user", "session", "sign_in"] }),
                    required: false,
                    description: "`user` (a session, the default) or `sign_in` (a short-lived sign-in token for `sign_in_with_token`).".into(),
                },
            ],
            answer: Answer::SignedIn { created: false },
            errors: vec![401, 403, 422, 429],
        },
        sign_in_with_token(Method::Get),
        sign_in_with_token(Method::Post),
        PhaseDoc {
            phase: "reset_request",
            param: None,
            method: Method::Post,
            summary: "Send a reset token to the identity: 202 whether or not it exists.".into(),
            fields: vec![identity()],
            answer: Answer::Accepted,
            errors: vec![422, 429],
        },
        PhaseDoc {
            phase: "reset",
            param: None,
            method: Method::Post,
            summary: "Set a new password with a reset token; signs in.".into(),
            fields: reset_fields,
            answer: Answer::SignedIn { created: false },
            errors: vec![401, 422, 429],
        },
        PhaseDoc {
            phase: "change_password",
            param: None,
            method: Method::Post,
            summary: "Change the signed-in user's password, proving the current one.".into(),
            fields: change_fields,
            answer: Answer::SignedIn { created: false },
            errors: vec![401, 422, 429],
        },
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use authd_strategy_api::{StrategyFactory, ValidatedStrategy, toml};

    use super::*;
    use crate::Factory;

    fn validated(text: &str) -> Box<dyn ValidatedStrategy> {
        let resource = ResourceSpec {
            name: "user".into(),
            attributes: vec![AttributeSpec {
                name: "email".into(),
                ty: AttributeType::CiString,
                unique: true,
                required: false,
                max_length: Some(100),
            }],
            confirmation: None,
        };
        let table: toml::Table = toml::from_str(&format!(
            "type = \"password\"\nidentity_field = \"email\"\n{text}"
        ))
        .unwrap();
        Factory.validate("s", "password", &resource, table).unwrap()
    }

    type Pairs = Vec<(&'static str, &'static str)>;

    /// The (phase, method) pairs documented, and those declared.
    fn pairs(v: &dyn ValidatedStrategy) -> (Pairs, Pairs) {
        let mut docs: Vec<_> = v
            .docs()
            .iter()
            .map(|d| (d.phase, d.method.as_str()))
            .collect();
        let mut declared: Vec<_> = v
            .phases()
            .iter()
            .flat_map(|p| p.methods.iter().map(move |m| (p.name, m.as_str())))
            .collect();
        docs.sort_unstable();
        declared.sort_unstable();
        (docs, declared)
    }

    #[test]
    fn docs_cover_exactly_the_enabled_phases() {
        let all = validated("[resettable]\nsender = { type = \"log\" }");
        let (docs, declared) = pairs(all.as_ref());
        assert_eq!(docs, declared);
        assert_eq!(docs.len(), 7);
        let few = validated("registration_enabled = false\nsign_in_tokens_enabled = false");
        let (docs, declared) = pairs(few.as_ref());
        assert_eq!(docs, declared);
        assert!(!docs.iter().any(|(p, _)| *p == "register" || *p == "reset"));
        let register = all
            .docs()
            .into_iter()
            .find(|d| d.phase == "register")
            .unwrap();
        let names: Vec<&str> = register.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["email", "password", "password_confirmation"]);
        assert_eq!(register.fields[0].schema["maxLength"], 100);
        assert!(register.fields[0].required);
    }

    #[test]
    fn the_table_describes_itself() {
        let schema = Factory.config_schema();
        let props = &schema["properties"];
        for key in [
            "identity_field",
            "password_field",
            "password_confirmation_field",
            "hashed_password_field",
            "confirmation_required",
            "registration_enabled",
            "sign_in_enabled",
            "sign_in_tokens_enabled",
            "sign_in_token_lifetime",
            "hash",
            "password_min_length",
            "password_max_length",
            "rehash_on_sign_in",
            "revoke_sessions_on_reset",
            "rate_limit",
            "resettable",
            "request_limit",
            "require_confirmed",
            "revoke_sessions_on_change",
        ] {
            assert!(props[key]["description"].is_string(), "{key}: {schema}");
        }
        assert_eq!(props["identity_field"]["default"], "username");
        assert_eq!(props["password_min_length"]["default"], 8);
        let text = schema.to_string();
        for needle in [
            "argon2id",
            "scrypt",
            "bcrypt",
            "memory_kib",
            "identity_failures",
            "reset_url",
        ] {
            assert!(text.contains(needle), "{needle} missing");
        }
    }
}
