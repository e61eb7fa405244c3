//! Several resources, and several password strategies on one resource.

use hyper::StatusCode;
use serde_json::json;

use crate::util::{TestServer, error_code, token_of};

const TWO_RESOURCES: &str = r#"
[resources.user]
attributes.email = { type = "ci_string", unique = true }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = { algorithm = "argon2id", memory_kib = 64, iterations = 1, parallelism = 1 }

[resources.admin]
attributes.username = { type = "string", unique = true, max_length = 32 }
[resources.admin.strategies.password]
type = "password"
identity_field = "username"
confirmation_required = false
hash = { algorithm = "scrypt", log_n = 4, r = 8, p = 1 }
"#;

#[tokio::test]
async fn two_resources_with_different_identity_fields() {
    let s = TestServer::start(TWO_RESOURCES).await;
    let user = s.register("ada@example.com", "correct horse").await;
    let (status, body) = s
        .post(
            "/auth/admin/password/register",
            json!({"admin": {"username": "Root", "password": "hunter2hunter2"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let admin = token_of(&body);

    // `string` identities are case-sensitive.
    let sign_in = |name: &'static str| {
        s.post(
            "/auth/admin/password/sign_in",
            json!({"username": name, "password": "hunter2hunter2"}),
        )
    };
    assert_eq!(sign_in("Root").await.0, StatusCode::OK);
    assert_eq!(sign_in("root").await.0, StatusCode::UNAUTHORIZED);

    // Each subject's token works on its own /me only.
    assert_eq!(
        s.get("/auth/admin/me", Some(&admin)).await.0,
        StatusCode::OK
    );
    assert_eq!(s.get("/auth/user/me", Some(&user)).await.0, StatusCode::OK);
    let (status, body) = s.get("/auth/user/me", Some(&admin)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert_eq!(
        s.get("/auth/admin/me", Some(&user)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Users of one resource are not users of the other.
    let (status, _) = s
        .post(
            "/auth/admin/password/sign_in",
            json!({"username": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

const TWO_STRATEGIES: &str = r#"
[resources.user]
attributes.email = { type = "ci_string", unique = true }
attributes.username = { type = "string", unique = true }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = { algorithm = "argon2id", memory_kib = 64, iterations = 1, parallelism = 1 }
[resources.user.strategies.pin]
type = "password"
identity_field = "username"
password_field = "pin"
password_confirmation_field = "pin_confirmation"
hashed_password_field = "hashed_pin"
password_min_length = 4
confirmation_required = false
hash = { algorithm = "bcrypt", cost = 4 }
"#;

#[tokio::test]
async fn two_password_strategies_on_one_resource() {
    let s = TestServer::start(TWO_STRATEGIES).await;
    let (status, body) = s
        .post(
            "/auth/user/password/register",
            json!({"email": "ada@example.com", "username": "ada", "password": "correct horse", "password_confirmation": "correct horse"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .post(
            "/auth/user/pin/register",
            json!({"email": "bob@example.com", "username": "bob", "pin": "4321"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Each strategy checks its own field against its own hash.
    let pin = |user: &'static str, pin: &'static str| {
        s.post(
            "/auth/user/pin/sign_in",
            json!({"username": user, "pin": pin}),
        )
    };
    let (status, body) = pin("bob", "4321").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        s.get("/auth/user/me", Some(&token_of(&body))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.sign_in("bob@example.com", "4321").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Ada has no pin: the pin strategy refuses her like an unknown user.
    assert_eq!(
        pin("ada", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.sign_in("ada@example.com", "correct horse").await.0,
        StatusCode::OK
    );

    // The unique username is shared by both strategies' registrations.
    let (status, body) = s
        .post(
            "/auth/user/pin/register",
            json!({"email": "c@example.com", "username": "ada", "pin": "1111"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["fields"]["username"][0],
        "has already been taken"
    );
}
