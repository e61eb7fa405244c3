//! The OpenAPI document and the config schema, end to end: the document fetched from a real
//! daemon is checked by an independent validator (Python's `openapi-spec-validator`, against
//! the OpenAPI 3.1 schema), names the configured fields, matches `authd openapi` and the routes
//! `authd check` lists, and follows hot reloads; the config schema printed by `authd
//! config-schema` is checked by Python's `jsonschema` against `config.example.toml` and every
//! TOML block of README.md (tests/python/check_config_schema.py says how fragments are read).
//!
//! `.ci/run` makes the virtualenv (`tests/python/.venv`) and sets `AUTHD_TEST_PYTHON`; without
//! either these tests print one line and pass without the Python checks, and with
//! `AUTHD_TEST_PYTHON` set they fail if that Python cannot import the validators.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::util::{self, ARGON2, TestServer};

/// Python with the validators, or `None` when there is none and none is required.
fn python() -> Option<PathBuf> {
    let (python, required) = match std::env::var_os("AUTHD_TEST_PYTHON") {
        Some(p) => (PathBuf::from(p), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv/bin/python"),
            false,
        ),
    };
    let works = Command::new(&python)
        .args(["-c", "import openapi_spec_validator, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, required) {
        (true, _) => Some(python),
        (false, true) => panic!(
            "AUTHD_TEST_PYTHON={} cannot import openapi_spec_validator and jsonschema",
            python.display()
        ),
        (false, false) => {
            println!(
                "skipped the Python checks: no Python with openapi-spec-validator (.ci/run makes tests/python/.venv; or set AUTHD_TEST_PYTHON)"
            );
            None
        }
    }
}

/// Validates `doc` with openapi-spec-validator (it picks the OpenAPI 3.1 schema from the
/// document's `openapi` field); panics with its message when invalid.
fn validate_openapi(doc: &Value) {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    const SCRIPT: &str = "import json, sys\n\
        from openapi_spec_validator import validate, OpenAPIV31SpecValidator\n\
        doc = json.load(open(sys.argv[1]))\n\
        assert doc['openapi'].startswith('3.1'), doc['openapi']\n\
        validate(doc, cls=OpenAPIV31SpecValidator)\n\
        print('valid')";
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("valid"),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(METHOD, path)` of every operation of a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

async fn fetch(s: &TestServer) -> Value {
    let (status, headers, doc) = s.raw(Method::GET, "/openapi.json", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    doc
}

const BODY: &str = r#"
[resources.user]
attributes.email = { type = "ci_string", unique = true, max_length = 254 }
attributes.nickname = { type = "string", max_length = 20, required = true }
attributes.age = { type = "integer" }
[resources.user.confirmation]
monitor_fields = ["email"]
sender = { type = "log" }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
password_field = "passphrase"
password_confirmation_field = "passphrase_again"
password_min_length = 12
hash = HASH
[resources.user.strategies.password.resettable]
sender = { type = "log" }
[resources.user.strategies.keys]
type = "api_key"
prefix = "tk"
"#;

const MAGIC: &str = r#"
[resources.user.strategies.link]
type = "magic_link"
identity_field = "email"
sender = { type = "log" }
[resources.user.strategies.otp]
type = "totp"
issuer = "authd test"
required_after = ["password", "link"]
brute_force = { max_failures = 5, window = "5m" }
"#;

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_with_the_configured_fields_and_every_route() {
    let body = format!("{}{MAGIC}", BODY.replace("HASH", ARGON2));
    let s = TestServer::start_watching(&body).await;
    let doc = fetch(&s).await;
    validate_openapi(&doc);

    let register = &doc["paths"]["/auth/user/password/register"]["post"];
    let schema = &register["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["properties"]["passphrase"]["minLength"], 12);
    assert!(schema["properties"]["passphrase_again"].is_object());
    assert_eq!(schema["properties"]["email"]["maxLength"], 254);
    assert_eq!(schema["properties"]["age"]["type"], "integer");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in ["email", "nickname", "passphrase", "passphrase_again"] {
        assert!(required.contains(&field), "{field} not required: {schema}");
    }
    assert!(!required.contains(&"age"));
    // Deleting the user asks for the configured password field.
    let delete = &doc["paths"]["/auth/user/me"]["delete"];
    assert!(
        delete["requestBody"]["content"]["application/json"]["schema"]["properties"]["passphrase"]
            .is_object()
    );
    assert_eq!(delete["security"][0]["bearer"], serde_json::json!([]));
    // The user object and the error envelope.
    let user = &doc["components"]["schemas"]["user_User"]["properties"];
    for field in ["id", "email", "nickname", "age", "confirmed_at"] {
        assert!(user[field].is_object(), "{field} missing from the user");
    }
    let codes = |status: u16| {
        doc["components"]["responses"][format!("Error{status}")]["content"]["application/json"]
            ["schema"]["properties"]["error"]["properties"]["code"]["enum"]
            .clone()
    };
    assert_eq!(codes(422), serde_json::json!(["invalid"]));
    assert_eq!(codes(503), serde_json::json!(["busy", "unavailable"]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // One operation per route and method that the config serves, and no other.
    let text = std::fs::read_to_string(s.config_path()).unwrap();
    let config = authd::parse_config(&text).unwrap();
    let mut served = BTreeSet::new();
    for route in authd::registry::routes(&config) {
        for method in route.methods {
            served.insert((method.to_string(), route.path.clone()));
        }
    }
    served.insert(("GET".into(), "/openapi.json".into()));
    assert_eq!(operations(&doc), served);

    // `authd openapi` prints the same document for the same file.
    let out = Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["openapi", "--config"])
        .arg(s.config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, doc);
}

#[tokio::test]
async fn a_reload_that_removes_a_strategy_removes_its_operations() {
    let base = BODY.replace("HASH", util::BCRYPT);
    let s = TestServer::start_watching(&format!("{base}{MAGIC}")).await;
    let before = operations(&fetch(&s).await);
    for path in [
        "/auth/user/link/request",
        "/auth/user/link/sign_in",
        "/auth/user/otp/verify",
    ] {
        assert!(before.iter().any(|(_, p)| p == path), "{path} missing");
    }

    s.save_by_rename(&s.text_for(&base));
    s.wait_generation(2).await;
    let doc = fetch(&s).await;
    validate_openapi(&doc);
    let after = operations(&doc);
    let gone: Vec<_> = before.difference(&after).collect();
    assert!(
        !after
            .iter()
            .any(|(_, p)| p.starts_with("/auth/user/link") || p.starts_with("/auth/user/otp")),
        "{after:?}"
    );
    assert_eq!(gone.len(), 7, "{gone:?}");
    assert!(after.contains(&("POST".into(), "/auth/user/password/register".into())));
    // And the routes are gone with them.
    let (status, _) = s
        .post(
            "/auth/user/link/request",
            serde_json::json!({"email": "a@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn the_config_schema_accepts_the_example_and_every_readme_block() {
    let out = Command::new(env!("CARGO_BIN_EXE_authd"))
        .arg("config-schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |extra: &[&Path]| {
        Command::new(&python)
            .arg(root.join("tests/python/check_config_schema.py"))
            .arg(&path)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[&root.join("config.example.toml"), &root.join("README.md")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("README.md: "), "{stdout}");

    // The check can fail: a misspelt key and a wrong type are refused.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[server]\nlisten = 4000\n[resources.user.strategies.password]\n\
         type = \"password\"\nidentity_feld = \"email\"\n",
    )
    .unwrap();
    let out = run(&[&bad]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("identity_feld"), "{stdout}");
    assert!(stdout.contains("server.listen"), "{stdout}");
}
