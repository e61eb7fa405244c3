//! The password strategy's phases against the store contract (a temporary redb file), real
//! HS256 tokens and the real hashing pool, without HTTP: milliseconds each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authd_strategy_api::toml;
use authd_strategy_api::{
    AttributeSpec, AttributeType, Claims, Clock, ConfirmationSpec, Credential, Error, Grant,
    HashPool, IssuedToken, Message, Method, NoEvents, PhaseRequest, Purpose, Rejection,
    ResourceSpec, Sender, SenderSpec, Senders, Services, Session, Strategy, StrategyFactory,
    TokenError, TokenSpec, Tokens, UserRecord, Verdict,
};
use serde_json::{Value, json};

use crate::Factory;

const SECRET: &[u8] = b"test secret of the phase tests, 32+ bytes long";

/// Real HS256 JWTs on the given clock.
struct TestTokens(Clock);

impl Tokens for TestTokens {
    fn issue(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, Error> {
        let now = self.0.now_secs();
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
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .map_err(|e| Error::Tokens(e.to_string()))?;
        Ok(IssuedToken { token, claims })
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<Claims>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(SECRET),
            &v,
        )
        .map_err(|_| TokenError::Invalid)?
        .claims;
        if claims.exp <= self.0.now_secs() {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    fn session_lifetime(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Keeps the messages it is handed.
#[derive(Default)]
struct Outbox(Mutex<Vec<Message>>);

struct Keep(Arc<Outbox>);

#[async_trait::async_trait]
impl Sender for Keep {
    async fn send(&self, message: Message) -> Result<(), String> {
        self.0.0.lock().unwrap().push(message);
        Ok(())
    }
}

struct KeepAll(Arc<Outbox>);

impl Senders for KeepAll {
    fn build(&self, _: &SenderSpec) -> Arc<dyn Sender> {
        Arc::new(Keep(Arc::clone(&self.0)))
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    strategy: Arc<dyn Strategy>,
    services: Services,
    outbox: Arc<Outbox>,
}

fn resource(confirmation: bool) -> ResourceSpec {
    ResourceSpec {
        name: "user".into(),
        attributes: vec![AttributeSpec {
            name: "email".into(),
            ty: AttributeType::CiString,
            unique: true,
            required: true,
            max_length: None,
        }],
        confirmation: confirmation.then(|| ConfirmationSpec {
            monitor_fields: vec!["email".into()],
            confirmed_at_field: "confirmed_at".into(),
        }),
    }
}

fn fixture_with(extra: &str, confirmation: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = authd_store_redb::open(&dir.path().join("t.redb")).unwrap();
    let clock = Clock::system();
    let outbox = Arc::new(Outbox::default());
    let services = Services {
        store: Arc::new(store),
        tokens: Arc::new(TestTokens(clock.clone())),
        pool: HashPool::new(1, 16).unwrap(),
        senders: Arc::new(KeepAll(Arc::clone(&outbox))),
        clock,
        events: Arc::new(NoEvents),
        sealer: Arc::new(authd_strategy_api::ClearSealer),
    };
    let table: toml::Table = toml::from_str(&format!(
        "type = \"password\"\nidentity_field = \"email\"\n\
         hash = {{ algorithm = \"argon2id\", memory_kib = 64, iterations = 1, parallelism = 1 }}\n\
         {extra}"
    ))
    .unwrap();
    let validated = Factory
        .validate("s", "password", &resource(confirmation), table)
        .unwrap();
    Fixture {
        _dir: dir,
        strategy: validated.instantiate("user", "password", &services),
        services,
        outbox,
    }
}

fn fixture(extra: &str) -> Fixture {
    fixture_with(extra, false)
}

fn request(params: Value) -> PhaseRequest {
    PhaseRequest {
        method: Method::Post,
        params: params.as_object().unwrap().clone(),
        client_ip: Some("192.0.2.1".parse().unwrap()),
        param: None,
        session: None,
    }
}

impl Fixture {
    async fn run(&self, phase: &str, params: Value) -> Verdict {
        self.strategy.handle(phase, request(params)).await.unwrap()
    }

    async fn register(&self, email: &str, password: &str) -> UserRecord {
        match self
            .run(
                "register",
                json!({"email": email, "password": password, "password_confirmation": password}),
            )
            .await
        {
            Verdict::Authenticated {
                user,
                created: true,
                grant: Grant::Session,
            } => user,
            other => panic!("{other:?}"),
        }
    }

    async fn sign_in(&self, email: &str, password: &str) -> Verdict {
        self.run("sign_in", json!({"email": email, "password": password}))
            .await
    }

    fn hashes(&self) -> u64 {
        self.services.pool.completed()
    }
}

fn rejection(v: Verdict) -> Rejection {
    match v {
        Verdict::Rejected(r) => r,
        other => panic!("not a rejection: {other:?}"),
    }
}

#[tokio::test]
async fn register_checks_rules_and_uniqueness_before_hashing() {
    let f = fixture("");
    f.register("Ada@Example.com", "correct horse").await;
    let before = f.hashes();
    let taken = f
        .run(
            "register",
            json!({"email": " ada@example.COM", "password": "other horse", "password_confirmation": "other horse"}),
        )
        .await;
    let Rejection::Invalid(fields) = rejection(taken) else {
        panic!()
    };
    assert!(fields.has("email"));
    let bad = f
        .run(
            "register",
            json!({"email": "b@example.com", "password": "short", "password_confirmation": "shorter"}),
        )
        .await;
    let Rejection::Invalid(fields) = rejection(bad) else {
        panic!()
    };
    assert!(fields.has("password") && fields.has("password_confirmation"));
    let same = f
        .run(
            "register",
            json!({"email": "c@example.com", "password": "C@example.com", "password_confirmation": "C@example.com"}),
        )
        .await;
    let Rejection::Invalid(fields) = rejection(same) else {
        panic!()
    };
    assert!(fields.has("password"));
    assert_eq!(f.hashes(), before, "refusals cost no hash");
}

#[tokio::test]
async fn sign_in_verifies_and_counts_failures_per_identity() {
    let f = fixture(r#"rate_limit = { identity_failures = 3, window = "1h" }"#);
    f.register("ada@example.com", "correct horse").await;
    assert!(matches!(
        f.sign_in("ADA@example.com", "correct horse").await,
        Verdict::Authenticated {
            grant: Grant::Session,
            created: false,
            ..
        }
    ));
    for _ in 0..2 {
        assert_eq!(
            rejection(f.sign_in("ada@example.com", "wrong horse").await),
            Rejection::AuthenticationFailed
        );
    }
    // A success clears the identity's count: two more failures do not lock.
    assert!(matches!(
        f.sign_in("ada@example.com", "correct horse").await,
        Verdict::Authenticated { .. }
    ));
    for _ in 0..2 {
        f.sign_in("ada@example.com", "wrong horse").await;
    }
    assert!(matches!(
        f.sign_in("ada@example.com", "correct horse").await,
        Verdict::Authenticated { .. }
    ));
    // Three failures in a row lock, even the right password, without hashing.
    for _ in 0..3 {
        f.sign_in("ada@example.com", "wrong horse").await;
    }
    let before = f.hashes();
    assert!(matches!(
        rejection(f.sign_in("ada@example.com", "correct horse").await),
        Rejection::RateLimited { .. }
    ));
    assert_eq!(f.hashes(), before);
    // Unknown identities cost one verification, like known ones.
    let before = f.hashes();
    assert_eq!(
        rejection(f.sign_in("nobody@example.com", "whatever1").await),
        Rejection::AuthenticationFailed
    );
    assert_eq!(f.hashes(), before + 1);
}

#[tokio::test]
async fn sign_in_tokens_are_exchanged_once() {
    let f = fixture("");
    f.register("ada@example.com", "correct horse").await;
    let Verdict::Authenticated { grant: Grant::Token(token), .. } = f
        .run(
            "sign_in",
            json!({"email": "ada@example.com", "password": "correct horse", "token_type": "sign_in"}),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(token.claims.purpose, Purpose::new("sign_in"));
    let exchange = || f.run("sign_in_with_token", json!({"token": token.token}));
    assert!(matches!(
        exchange().await,
        Verdict::Authenticated {
            grant: Grant::Session,
            ..
        }
    ));
    assert_eq!(rejection(exchange().await), Rejection::InvalidToken);
}

async fn reset_token(f: &Fixture, email: &str) -> String {
    let before = f.outbox.0.lock().unwrap().len();
    assert!(matches!(
        f.run("reset_request", json!({"email": email})).await,
        Verdict::Accepted
    ));
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let sent = f.outbox.0.lock().unwrap();
        if sent.len() > before {
            return sent.last().unwrap().token.clone().unwrap();
        }
    }
    panic!("no reset message")
}

#[tokio::test]
async fn a_reset_changes_the_password_once_and_revokes_sessions() {
    let f = fixture("[resettable]\nsender = { type = \"log\" }");
    let user = f.register("ada@example.com", "correct horse").await;
    let token = reset_token(&f, "ada@example.com").await;
    let message = f.outbox.0.lock().unwrap()[0].clone();
    assert_eq!(message.kind, "password_reset");
    assert!(message.user.get("hashed_password").is_none());
    // A rejected new password leaves the token usable.
    let weak = f
        .run(
            "reset",
            json!({"reset_token": token, "password": "x", "password_confirmation": "x"}),
        )
        .await;
    assert!(matches!(rejection(weak), Rejection::Invalid(_)));
    let reset = json!({"reset_token": token, "password": "new horse!", "password_confirmation": "new horse!"});
    let Verdict::Authenticated { user: after, .. } = f.run("reset", reset.clone()).await else {
        panic!()
    };
    assert_eq!(after.session_epoch, user.session_epoch + 1);
    assert_eq!(after.meta[authd_strategy_api::META_RESETS], 1);
    assert_eq!(
        rejection(f.run("reset", reset).await),
        Rejection::InvalidToken
    );
    assert!(matches!(
        f.sign_in("ada@example.com", "new horse!").await,
        Verdict::Authenticated { .. }
    ));
    // Nothing is sent for an unknown identity.
    f.run("reset_request", json!({"email": "nobody@example.com"}))
        .await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(f.outbox.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_revokes_other_sessions() {
    let f = fixture(r#"rate_limit = { identity_failures = 2, window = "1h" }"#);
    let user = f.register("ada@example.com", "correct horse").await;
    let change = |current: &str, new: &str| {
        let mut r = request(
            json!({"current_password": current, "password": new, "password_confirmation": new}),
        );
        r.session = Some(Session {
            user: user.clone(),
            credential: Credential::ApiKey {
                strategy: "test".into(),
                key_id: "k".into(),
            },
        });
        f.strategy.handle("change_password", r)
    };
    // A rejected new password counts nothing and changes nothing.
    assert!(matches!(
        rejection(change("correct horse", "x").await.unwrap()),
        Rejection::Invalid(_)
    ));
    assert_eq!(
        rejection(change("wrong horse", "new horse!").await.unwrap()),
        Rejection::AuthenticationFailed
    );
    let Verdict::Authenticated { user: after, .. } =
        change("correct horse", "new horse!").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(after.session_epoch, user.session_epoch + 1);
    assert!(matches!(
        f.sign_in("ada@example.com", "new horse!").await,
        Verdict::Authenticated { .. }
    ));
}

#[tokio::test]
async fn a_stale_hash_is_replaced_at_sign_in() {
    let old = fixture("");
    let f = Fixture {
        strategy: {
            let table: toml::Table = toml::from_str(
                "type = \"password\"\nidentity_field = \"email\"\n\
                 hash = { algorithm = \"argon2id\", memory_kib = 64, iterations = 1, parallelism = 1 }",
            )
            .unwrap();
            Factory
                .validate("s", "password", &resource(false), table)
                .unwrap()
                .instantiate("user", "password", &old.services)
        },
        ..old
    };
    let bcrypt = {
        let table: toml::Table =
            toml::from_str("type = \"password\"\nidentity_field = \"email\"\nhash = { algorithm = \"bcrypt\", cost = 4 }").unwrap();
        Factory
            .validate("s", "password", &resource(false), table)
            .unwrap()
            .instantiate("user", "password", &f.services)
    };
    let made = bcrypt
        .handle(
            "register",
            request(json!({"email": "ada@example.com", "password": "correct horse", "password_confirmation": "correct horse"})),
        )
        .await
        .unwrap();
    let Verdict::Authenticated { user, .. } = made else {
        panic!()
    };
    assert_eq!(f.strategy.credential_is_stale(&user), Some(true));
    let Verdict::Authenticated { user, .. } = f.sign_in("ada@example.com", "correct horse").await
    else {
        panic!()
    };
    assert!(user.secrets["hashed_password"].starts_with("$argon2id$"));
    assert_eq!(f.strategy.credential_is_stale(&user), Some(false));
    assert_eq!(
        f.strategy.credential_info(&user).unwrap()["algorithm"],
        "argon2id"
    );
}

#[tokio::test]
async fn require_confirmed_refuses_only_after_the_right_password() {
    let f = fixture_with("require_confirmed = true", true);
    let made = f
        .run(
            "register",
            json!({"email": "ada@example.com", "password": "correct horse", "password_confirmation": "correct horse"}),
        )
        .await;
    assert!(
        matches!(
            made,
            Verdict::Authenticated {
                grant: Grant::None,
                created: true,
                ..
            }
        ),
        "no session before confirmation"
    );
    assert_eq!(
        rejection(f.sign_in("ada@example.com", "wrong horse").await),
        Rejection::AuthenticationFailed
    );
    assert_eq!(
        rejection(f.sign_in("ada@example.com", "correct horse").await),
        Rejection::Unconfirmed
    );
}
