//! Unit tests of each phase against a real redb store on a temporary file, with tokens and
//! senders that stand in for the daemon's (no HTTP). End-to-end tests are in `tests/it`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{
    AttributeSpec, AttributeType, Claims, ClearSealer, Clock, ConfirmationSpec, Error, HashPool,
    IssuedToken, Message, Method, NewUser, NoEvents, PhaseRequest, Purpose, Rejection,
    ResourceSpec, Sender, SenderSpec, Senders, Services, Strategy, StrategyFactory, TokenError,
    TokenSpec, Tokens, UniqueKey, UserStore, UserUpdate, Verdict,
};
use serde_json::{Value, json};

use crate::Factory;

/// Tokens as the daemon's would be, without the signature: a token is good while this
/// service remembers issuing it and it has not expired by the shared clock.
struct FakeTokens {
    clock: Clock,
    issued: Mutex<HashMap<String, Claims>>,
}

impl Tokens for FakeTokens {
    fn issue(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, Error> {
        let now = self.clock.now_secs();
        let claims = Claims {
            sub: Claims::subject_claim(spec.subject, spec.user.id),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + spec.lifetime.as_secs(),
            iss: "authd".into(),
            aud: Vec::new(),
            purpose: spec.purpose,
            act: spec.act,
            bnd: spec.bnd,
            sep: Some(spec.user.session_epoch),
        };
        let token = format!("tok.{}", claims.jti);
        self.issued
            .lock()
            .unwrap()
            .insert(token.clone(), claims.clone());
        Ok(IssuedToken { token, claims })
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.issued.lock().unwrap().get(token).cloned();
        match claims {
            Some(c) if c.exp > self.clock.now_secs() => Ok(c),
            _ => Err(TokenError::Invalid),
        }
    }

    fn session_lifetime(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Records every message instead of delivering it.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<Message>>>);

#[async_trait::async_trait]
impl Sender for Outbox {
    async fn send(&self, message: Message) -> Result<(), String> {
        self.0.lock().unwrap().push(message);
        Ok(())
    }
}

impl Senders for Outbox {
    fn build(&self, _: &SenderSpec) -> Arc<dyn Sender> {
        Arc::new(self.clone())
    }
}

struct Env {
    strategy: Arc<dyn Strategy>,
    services: Services,
    resource: ResourceSpec,
    store: Arc<authd_store_redb::RedbStore>,
    outbox: Outbox,
    clock: Clock,
    _dir: tempfile::TempDir,
}

fn resource(confirmation: bool, required_name: bool) -> ResourceSpec {
    ResourceSpec {
        name: "user".into(),
        attributes: vec![
            AttributeSpec {
                name: "email".into(),
                ty: AttributeType::CiString,
                unique: true,
                required: false,
                max_length: None,
            },
            AttributeSpec {
                name: "name".into(),
                ty: AttributeType::String,
                unique: false,
                required: required_name,
                max_length: None,
            },
        ],
        confirmation: confirmation.then(|| ConfirmationSpec {
            monitor_fields: vec!["email".into()],
            confirmed_at_field: "confirmed_at".into(),
        }),
    }
}

const BASE: &str =
    "type = \"magic_link\"\nidentity_field = \"email\"\nsender = { type = \"log\" }\n";

fn validate(extra: &str, resource: &ResourceSpec) -> Result<(), Vec<String>> {
    let table: toml::Table = toml::from_str(&format!("{BASE}{extra}")).unwrap();
    Factory
        .validate("s", "magic", resource, table)
        .map(|_| ())
        .map_err(|p| p.0.into_iter().map(|p| p.to_string()).collect())
}

async fn env_with(extra: &str, resource: ResourceSpec) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = authd_store_redb::open(&dir.path().join("t.redb")).unwrap();
    let store = Arc::new(store);
    let clock = Clock::system();
    let outbox = Outbox::default();
    let services = Services {
        store: store.clone(),
        tokens: Arc::new(FakeTokens {
            clock: clock.clone(),
            issued: Mutex::default(),
        }),
        pool: HashPool::new(1, 1).unwrap(),
        senders: Arc::new(outbox.clone()),
        clock: clock.clone(),
        events: Arc::new(NoEvents),
        sealer: Arc::new(ClearSealer),
    };
    Env {
        strategy: build(&services, &resource, extra),
        services,
        resource,
        store,
        outbox,
        clock,
        _dir: dir,
    }
}

async fn env(extra: &str) -> Env {
    env_with(extra, resource(false, false)).await
}

fn build(services: &Services, resource: &ResourceSpec, extra: &str) -> Arc<dyn Strategy> {
    let table: toml::Table = toml::from_str(&format!("{BASE}{extra}")).unwrap();
    Factory
        .validate("s", "magic", resource, table)
        .unwrap_or_else(|p| panic!("{p}"))
        .instantiate("user", "magic", services)
}

fn request(method: Method, params: Value) -> PhaseRequest {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    PhaseRequest {
        method,
        params,
        client_ip: Some("192.0.2.1".parse().unwrap()),
        param: None,
        session: None,
    }
}

impl Env {
    /// The strategy again with `extra`, over the same services (a reload).
    fn rebuild(&self, extra: &str) -> Arc<dyn Strategy> {
        build(&self.services, &self.resource, extra)
    }

    async fn add_user(&self, email: &str) -> uuid::Uuid {
        let new = NewUser {
            attributes: [("email".to_string(), json!(email))].into_iter().collect(),
            unique: vec![UniqueKey::new("email", email.to_lowercase())],
            ..NewUser::default()
        };
        self.store.insert("user", new).await.unwrap().unwrap().id
    }

    async fn ask(&self, email: &str) -> Verdict {
        self.strategy
            .handle("request", request(Method::Post, json!({ "email": email })))
            .await
            .unwrap()
    }

    /// Asks for a link and waits for its message (up to 2 s).
    async fn link(&self, email: &str) -> Message {
        let before = self.sent();
        assert!(matches!(self.ask(email).await, Verdict::Accepted));
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let sent = self.outbox.0.lock().unwrap().clone();
            if sent.len() > before {
                return sent[before].clone();
            }
        }
        panic!("no message for {email}");
    }

    fn sent(&self) -> usize {
        self.outbox.0.lock().unwrap().len()
    }

    async fn sign_in(&self, method: Method, token: &str) -> Verdict {
        self.strategy
            .handle("sign_in", request(method, json!({ "token": token })))
            .await
            .unwrap()
    }
}

fn token(message: &Message) -> String {
    message.token.clone().unwrap()
}

fn signed_in(v: &Verdict) -> Option<(uuid::Uuid, bool)> {
    match v {
        Verdict::Authenticated { user, created, .. } => Some((user.id, *created)),
        _ => None,
    }
}

fn refused(v: &Verdict) -> bool {
    matches!(v, Verdict::Rejected(Rejection::InvalidToken))
}

#[tokio::test]
async fn the_link_of_a_known_user_signs_in_once() {
    let e = env("").await;
    let id = e.add_user("ada@example.com").await;
    let message = e.link("ADA@example.com").await;
    assert_eq!(message.kind, "magic_link");
    assert_eq!(message.user["email"], "ada@example.com");
    assert!(message.templates.body_with_url.contains("{{url}}"));
    let t = token(&message);
    assert_eq!(
        signed_in(&e.sign_in(Method::Post, &t).await),
        Some((id, false))
    );
    assert!(refused(&e.sign_in(Method::Post, &t).await), "used");
}

#[tokio::test]
async fn an_unknown_identity_gets_no_link_and_the_same_answer() {
    let e = env("").await;
    e.add_user("ada@example.com").await;
    assert!(matches!(
        e.ask("nobody@example.com").await,
        Verdict::Accepted
    ));
    assert!(matches!(
        e.ask("not an email at all \u{0}").await,
        Verdict::Accepted
    ));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(e.sent(), 0);
    let users = e.store.users_page("user", None, 10).await.unwrap();
    assert_eq!(
        users.len(),
        1,
        "nothing created without registration_enabled"
    );
}

#[tokio::test]
async fn a_get_with_require_interaction_leaves_the_token_usable() {
    let e = env("").await;
    let id = e.add_user("ada@example.com").await;
    let t = token(&e.link("ada@example.com").await);
    for _ in 0..3 {
        match e.sign_in(Method::Get, &t).await {
            Verdict::Json { status: 200, body } => {
                assert_eq!(body["status"], "interaction_required");
                assert_eq!(body["method"], "POST");
            }
            other => panic!("{other:?}"),
        }
    }
    // Even a bad token: a GET looks at nothing.
    assert!(matches!(
        e.sign_in(Method::Get, "garbage").await,
        Verdict::Json { status: 200, .. }
    ));
    assert_eq!(
        signed_in(&e.sign_in(Method::Post, &t).await),
        Some((id, false))
    );
}

#[tokio::test]
async fn without_require_interaction_a_get_signs_in() {
    let e = env("require_interaction = false").await;
    let id = e.add_user("ada@example.com").await;
    let t = token(&e.link("ada@example.com").await);
    assert_eq!(
        signed_in(&e.sign_in(Method::Get, &t).await),
        Some((id, false))
    );
    assert!(refused(&e.sign_in(Method::Get, &t).await));
    assert!(refused(&e.sign_in(Method::Get, "garbage").await));
}

#[tokio::test]
async fn a_newer_link_makes_the_older_one_invalid() {
    let e = env("").await;
    let id = e.add_user("ada@example.com").await;
    let first = token(&e.link("ada@example.com").await);
    let second = token(&e.link("ada@example.com").await);
    assert!(refused(&e.sign_in(Method::Post, &first).await));
    assert_eq!(
        signed_in(&e.sign_in(Method::Post, &second).await),
        Some((id, false))
    );
}

#[tokio::test]
async fn reusable_links_work_until_a_newer_one_or_expiry() {
    let e = env("single_use_token = false\ntoken_lifetime = \"2m\"").await;
    let id = e.add_user("ada@example.com").await;
    let first = token(&e.link("ada@example.com").await);
    for _ in 0..2 {
        assert_eq!(
            signed_in(&e.sign_in(Method::Post, &first).await),
            Some((id, false))
        );
    }
    let second = token(&e.link("ada@example.com").await);
    assert!(refused(&e.sign_in(Method::Post, &first).await));
    e.clock.advance_ms(121_000);
    assert!(refused(&e.sign_in(Method::Post, &second).await), "expired");
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let e = env("").await;
    e.add_user("ada@example.com").await;
    let t = token(&e.link("ada@example.com").await);
    e.clock.advance_ms(10 * 60 * 1000 + 1000);
    assert!(refused(&e.sign_in(Method::Post, &t).await));
}

#[tokio::test]
async fn signing_out_everywhere_kills_outstanding_links() {
    let e = env("").await;
    let id = e.add_user("ada@example.com").await;
    let t = token(&e.link("ada@example.com").await);
    let bump = UserUpdate {
        bump_sessions: true,
        ..UserUpdate::default()
    };
    e.store.update("user", id, bump).await.unwrap();
    assert!(refused(&e.sign_in(Method::Post, &t).await));
}

#[tokio::test]
async fn registration_creates_and_confirms_the_user_at_first_sign_in_only() {
    let e = env_with("registration_enabled = true", resource(true, false)).await;
    let message = e.link("New@Example.com").await;
    assert_eq!(message.data["registration"], true);
    assert_eq!(message.user["email"], "New@Example.com");
    assert!(
        e.store
            .users_page("user", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is created by a request"
    );
    let other = token(&e.link("new@example.com").await);
    let t = token(&message);
    let (id, created) = signed_in(&e.sign_in(Method::Post, &t).await).unwrap();
    assert!(created);
    let user = e.store.get("user", id).await.unwrap().unwrap();
    assert_eq!(user.attributes["email"], "New@Example.com");
    assert!(
        user.meta
            .contains_key(authd_strategy_api::META_CONFIRMED_AT)
    );
    assert!(refused(&e.sign_in(Method::Post, &t).await), "used");
    assert!(
        refused(&e.sign_in(Method::Post, &other).await),
        "the first registration link used kills the others"
    );
    // Known now: an ordinary link.
    let again = e.link("new@example.com").await;
    assert_eq!(again.data["registration"], false);
    assert_eq!(
        signed_in(&e.sign_in(Method::Post, &token(&again)).await),
        Some((id, false))
    );
}

#[tokio::test]
async fn registration_without_confirmation_sets_no_confirmed_at() {
    let e = env("registration_enabled = true").await;
    let t = token(&e.link("new@example.com").await);
    let (id, created) = signed_in(&e.sign_in(Method::Post, &t).await).unwrap();
    assert!(created);
    let user = e.store.get("user", id).await.unwrap().unwrap();
    assert!(user.meta.get("confirmed_at").is_none());
}

#[tokio::test]
async fn a_registration_link_is_refused_once_registration_is_turned_off() {
    let mut e = env("registration_enabled = true").await;
    let t = token(&e.link("new@example.com").await);
    // The same store and tokens, with the option off (a reload).
    e.strategy = e.rebuild("");
    assert!(refused(&e.sign_in(Method::Post, &t).await));
    assert!(
        e.store
            .users_page("user", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn requests_are_limited_per_identity() {
    let e = env("request_limit = { per_identity = 2, per_address = 100 }").await;
    for _ in 0..2 {
        assert!(matches!(e.ask("x@example.com").await, Verdict::Accepted));
    }
    assert!(matches!(
        e.ask("X@example.com").await,
        Verdict::Rejected(Rejection::RateLimited { .. })
    ));
    assert!(matches!(e.ask("y@example.com").await, Verdict::Accepted));
}

#[tokio::test]
async fn missing_parameters_are_named() {
    let e = env("").await;
    for (phase, field) in [("request", "email"), ("sign_in", "token")] {
        match e
            .strategy
            .handle(phase, request(Method::Post, json!({})))
            .await
            .unwrap()
        {
            Verdict::Rejected(Rejection::Invalid(f)) => assert!(f.has(field), "{f:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_token_of_another_purpose_or_strategy_is_refused() {
    let e = env("").await;
    e.add_user("ada@example.com").await;
    let _ = e.link("ada@example.com").await;
    let user = e
        .store
        .find_by_unique("user", &UniqueKey::new("email", "ada@example.com"))
        .await
        .unwrap()
        .unwrap();
    let binding = user.meta["magic_link:magic"].as_str().unwrap().to_string();
    let forge = |purpose, act: &str| {
        e.services
            .tokens
            .issue(TokenSpec {
                subject: "user",
                user: &user,
                purpose,
                lifetime: Duration::from_secs(60),
                act: Some(act.to_string()),
                bnd: Some(binding.clone()),
            })
            .unwrap()
            .token
    };
    let good = forge(crate::MAGIC_LINK, "magic_link_with_magic");
    let other_strategy = forge(crate::MAGIC_LINK, "magic_link_with_other");
    let other_purpose = forge(Purpose::SESSION, "magic_link_with_magic");
    assert!(refused(&e.sign_in(Method::Post, &other_strategy).await));
    assert!(refused(&e.sign_in(Method::Post, &other_purpose).await));
    assert!(
        signed_in(&e.sign_in(Method::Post, &good).await).is_some(),
        "the check can pass"
    );
}

#[test]
fn config_problems_name_their_keys() {
    let users = resource(false, false);
    assert!(validate("", &users).is_ok());
    let problems = |extra: &str, r: &ResourceSpec| validate(extra, r).unwrap_err().join("\n");
    assert!(problems("token_lifetime = \"2d\"", &users).contains("s.token_lifetime"));
    assert!(problems("token_lifetime = \"500ms\"", &users).contains("s.token_lifetime"));
    assert!(problems("colour = 1", &users).contains("s.colour: unknown key"));
    let p = problems("registration_enabled = true", &resource(false, true));
    assert!(
        p.contains("s.registration_enabled") && p.contains("`name`"),
        "{p}"
    );
    let table: toml::Table =
        toml::from_str("type = \"magic_link\"\nidentity_field = \"name\"").unwrap();
    let p = Factory
        .validate("s", "m", &users, table)
        .unwrap_err()
        .to_string();
    assert!(
        p.contains("s.identity_field") && p.contains("sender"),
        "{p}"
    );
    let smtp = "type = \"magic_link\"\nidentity_field = \"email\"\nregistration_enabled = true\n\
                sender = { type = \"smtp\", host = \"h\", from = \"a@b\", to_field = \"name\" }";
    let p = Factory
        .validate("s", "m", &users, toml::from_str(smtp).unwrap())
        .unwrap_err()
        .to_string();
    assert!(p.contains("s.sender.to_field"), "{p}");
    let reset_url = "sender = { type = \"smtp\", host = \"h\", from = \"a@b\", reset_url = \"https://a/{{token}}\" }";
    let table: toml::Table = toml::from_str(&format!(
        "type = \"magic_link\"\nidentity_field = \"email\"\n{reset_url}"
    ))
    .unwrap();
    let p = Factory
        .validate("s", "m", &users, table)
        .unwrap_err()
        .to_string();
    assert!(p.contains("s.sender.reset_url"), "{p}");
}

#[test]
fn the_table_describes_itself() {
    let schema = Factory.config_schema();
    let props = &schema["properties"];
    for key in [
        "identity_field",
        "token_lifetime",
        "single_use_token",
        "registration_enabled",
        "require_interaction",
        "sender",
        "request_limit",
    ] {
        assert!(props.get(key).is_some(), "{key} missing: {schema}");
        assert!(
            props[key]["description"].is_string() || key == "sender" || key == "request_limit",
            "{key} has no description: {schema}"
        );
    }
    assert_eq!(props["token_lifetime"]["default"], "10m");
    assert_eq!(props["require_interaction"]["default"], true);
    assert_eq!(props["registration_enabled"]["default"], false);
    assert_eq!(schema["required"], json!(["type", "sender"]), "{schema}");
    assert_eq!(props["type"]["const"], "magic_link");
}

#[test]
fn docs_cover_every_phase_and_method() {
    let table: toml::Table = toml::from_str(BASE).unwrap();
    let v = Factory
        .validate("s", "m", &resource(false, false), table)
        .unwrap();
    let docs = v.docs();
    let mut seen: Vec<(&str, &str)> = docs.iter().map(|d| (d.phase, d.method.as_str())).collect();
    seen.sort_unstable();
    let mut declared: Vec<(&str, &str)> = v
        .phases()
        .iter()
        .flat_map(|p| p.methods.iter().map(move |m| (p.name, m.as_str())))
        .collect();
    declared.sort_unstable();
    assert_eq!(seen, declared);
}
