//! The strategy against a real redb store in a temporary folder, with a clock the tests move
//! and a stand-in token service (unsigned: what is tested here is the strategy's use of
//! tokens; signatures are the daemon's and tested there). End-to-end tests over HTTP, with
//! codes from an independent implementation, are in the daemon's `tests/it/totp.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::{
    Claims, Clock, Credential, Error, Grant, HashPool, IssuedToken, Method, NewUser, NoEvents,
    PhaseRequest, Purpose, Rejection, ResourceSpec, Sealer, Sender, SenderSpec, Senders, Services,
    Session, Store, Strategy, StrategyFactory, TokenError, TokenSpec, Tokens, UniqueKey,
    UpdateOutcome, UserRecord, Verdict,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Factory;
use crate::code::{self, CodeRules};
use crate::stored::TotpState;

/// Tokens as unsigned JSON, with expiry by the test clock.
struct TestTokens {
    clock: Clock,
}

impl Tokens for TestTokens {
    fn issue(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, Error> {
        let now = self.clock.now_secs();
        let claims = Claims {
            sub: Claims::subject_claim(spec.subject, spec.user.id),
            jti: code::base32(&code::random_bytes(16)),
            iat: now,
            nbf: now,
            exp: now + spec.lifetime.as_secs(),
            iss: "test".into(),
            aud: Vec::new(),
            purpose: spec.purpose,
            act: spec.act,
            bnd: spec.bnd,
            sep: Some(spec.user.session_epoch),
        };
        Ok(IssuedToken {
            token: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
            claims,
        })
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)?;
        if claims.exp <= self.clock.now_secs() {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    fn session_lifetime(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// A sealer that is not the clear one, to see that the strategy seals and opens through it.
struct TestSealer;

impl Sealer for TestSealer {
    fn seal(&self, plaintext: &[u8]) -> Result<String, Error> {
        let xored: Vec<u8> = plaintext.iter().map(|b| b ^ 0x5a).collect();
        Ok(format!("test:{}", URL_SAFE_NO_PAD.encode(xored)))
    }

    fn open(&self, sealed: &str) -> Result<Vec<u8>, Error> {
        let text = sealed
            .strip_prefix("test:")
            .ok_or_else(|| Error::Internal("not sealed here".into()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(bytes.iter().map(|b| b ^ 0x5a).collect())
    }
}

struct NoSenders;

impl Senders for NoSenders {
    fn build(&self, _: &SenderSpec) -> Arc<dyn Sender> {
        panic!("the TOTP strategy sends no message")
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    services: Services,
    clock: Clock,
    strategy: Arc<dyn Strategy>,
    user: UserRecord,
    rules: CodeRules,
}

const IP: &str = "192.0.2.7";

fn resource() -> ResourceSpec {
    ResourceSpec {
        name: "user".into(),
        attributes: vec![authd_strategy_api::AttributeSpec {
            name: "email".into(),
            ty: authd_strategy_api::AttributeType::CiString,
            unique: true,
            required: true,
            max_length: None,
        }],
        confirmation: None,
    }
}

async fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = authd_store_redb::open(&dir.path().join("t.redb")).unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = Clock::system();
    // Start each test 1 s into a period, so that no period ends in the middle of it unless
    // the test moves the clock.
    let now = clock.now_ms();
    clock.advance_ms(i64::try_from(30_000 - now % 30_000 + 1_000).unwrap());
    let services = Services {
        store: store.clone(),
        tokens: Arc::new(TestTokens {
            clock: clock.clone(),
        }),
        pool: HashPool::new(1, 4).unwrap(),
        senders: Arc::new(NoSenders),
        clock: clock.clone(),
        events: Arc::new(NoEvents),
        sealer: Arc::new(TestSealer),
    };
    let brute_force = if extra.contains("brute_force") {
        ""
    } else {
        "brute_force = { max_failures = 3, window = \"5m\" }\n"
    };
    let text = format!(
        "type = \"totp\"\nissuer = \"Example\"\nrequired_after = [\"password\"]\n\
         {brute_force}{extra}"
    );
    let validated = Factory
        .validate(
            "resources.user.strategies.totp",
            "totp",
            &resource(),
            toml_table(&text),
        )
        .unwrap();
    let live = validated.instantiate("user", "totp", &services);
    let user = store
        .insert(
            "user",
            NewUser {
                attributes: [("email".to_string(), json!("ada@example.com"))]
                    .into_iter()
                    .collect(),
                unique: vec![UniqueKey::new("email", "ada@example.com")],
                created_at: clock.now_secs(),
                ..NewUser::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        services,
        clock,
        strategy: live,
        user,
        rules: CodeRules {
            period: 30,
            digits: 6,
            grace: 1,
        },
    }
}

fn toml_table(text: &str) -> authd_strategy_api::toml::Table {
    authd_strategy_api::toml::from_str(text).unwrap()
}

impl Fixture {
    fn request(&self, params: Value, session: bool) -> PhaseRequest {
        let Value::Object(params) = params else {
            panic!("params must be an object")
        };
        PhaseRequest {
            method: Method::Post,
            params,
            client_ip: Some(IP.parse::<IpAddr>().unwrap()),
            param: None,
            session: session.then(|| Session {
                user: self.user.clone(),
                credential: Credential::Token(self.session_claims()),
            }),
        }
    }

    fn session_claims(&self) -> Claims {
        self.services
            .tokens
            .issue(TokenSpec {
                subject: "user",
                user: &self.user,
                purpose: Purpose::SESSION,
                lifetime: Duration::from_secs(60),
                act: None,
                bnd: None,
            })
            .unwrap()
            .claims
    }

    async fn refresh(&mut self) {
        self.user = self.store.get("user", self.user.id).await.unwrap().unwrap();
    }

    async fn handle(&self, phase: &str, params: Value, session: bool) -> Verdict {
        self.strategy
            .handle(phase, self.request(params, session))
            .await
            .unwrap()
    }

    /// Sets TOTP up and on; returns the seed and the recovery codes.
    async fn turn_on(&mut self) -> (Vec<u8>, Vec<String>) {
        let Verdict::Json { status: 200, body } = self.handle("setup", json!({}), true).await
        else {
            panic!("setup failed")
        };
        let seed = base32_decode(body["secret"].as_str().unwrap());
        self.refresh().await;
        let code = self.code(&seed, 0);
        let verdict = self
            .handle(
                "confirm_setup",
                json!({"setup_token": body["setup_token"], "code": code}),
                true,
            )
            .await;
        let Verdict::Json { status: 200, body } = verdict else {
            panic!("confirm_setup: {verdict:?}")
        };
        self.refresh().await;
        let codes = body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        (seed, codes)
    }

    /// The code of the period `offset` periods from now.
    fn code(&self, seed: &[u8], offset: i64) -> String {
        let counter = self.rules.counter(self.clock.now_secs());
        self.rules
            .code_at(seed, counter.checked_add_signed(offset).unwrap())
    }

    fn begin(&self) -> String {
        self.strategy
            .second_factor()
            .unwrap()
            .begin(&self.user, "password")
            .unwrap()
            .token
    }

    async fn verify(&self, token: &str, field: &str, value: &str) -> Verdict {
        self.handle("verify", json!({"token": token, field: value}), false)
            .await
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    totp_rs::Secret::Encoded(text.to_string())
        .to_bytes()
        .unwrap()
}

fn rejection(v: &Verdict) -> Option<&Rejection> {
    match v {
        Verdict::Rejected(r) => Some(r),
        _ => None,
    }
}

fn is_session(v: &Verdict) -> bool {
    matches!(
        v,
        Verdict::Authenticated {
            grant: Grant::Session,
            created: false,
            ..
        }
    )
}

#[tokio::test]
async fn setup_confirm_turns_on_and_stores_the_seed_sealed_and_the_recovery_codes_hashed() {
    let mut f = fixture("").await;
    let mut view = serde_json::Map::new();
    f.strategy.describe_user(&f.user, &mut view);
    assert_eq!(view["totp"], false);

    let Verdict::Json { status: 200, body } = f.handle("setup", json!({}), true).await else {
        panic!("setup")
    };
    let secret = body["secret"].as_str().unwrap();
    let seed = base32_decode(secret);
    assert_eq!(seed.len(), 20, "secret_length bytes");
    assert_eq!(
        body["otpauth_uri"],
        format!("otpauth://totp/Example:ada%40example.com?secret={secret}&issuer=Example")
    );
    f.refresh().await;
    let stored = &f.user.secrets["totp_secret"];
    let Ok(TotpState::Pending { seed: sealed }) = TotpState::read(stored) else {
        panic!("{stored}")
    };
    assert_eq!(
        TestSealer.open(&sealed).unwrap(),
        seed,
        "stored through the sealer"
    );
    assert!(
        !f.strategy.second_factor().unwrap().is_on(&f.user),
        "nothing enabled before confirm_setup"
    );

    // A wrong code does not turn it on; the right one does.
    let wrong = f
        .handle(
            "confirm_setup",
            json!({"setup_token": body["setup_token"], "code": "000000"}),
            true,
        )
        .await;
    let wrong = if f.code(&seed, 0) == "000000" {
        // One chance in a million: the right code.
        return;
    } else {
        wrong
    };
    assert_eq!(rejection(&wrong), Some(&Rejection::AuthenticationFailed));
    let code = f.code(&seed, 0);
    let Verdict::Json {
        status: 200,
        body: on,
    } = f
        .handle(
            "confirm_setup",
            json!({"setup_token": body["setup_token"], "code": code}),
            true,
        )
        .await
    else {
        panic!("confirm_setup")
    };
    let codes = on["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    f.refresh().await;
    let stored = &f.user.secrets["totp_secret"];
    let Ok(TotpState::On {
        recovery,
        last_counter,
        ..
    }) = TotpState::read(stored)
    else {
        panic!("{stored}")
    };
    assert_eq!(recovery.len(), 10);
    assert_eq!(last_counter, f.rules.counter(f.clock.now_secs()));
    for c in codes {
        assert!(
            !stored.contains(c.as_str().unwrap()),
            "hashed, never in clear"
        );
    }
    let mut view = serde_json::Map::new();
    f.strategy.describe_user(&f.user, &mut view);
    assert_eq!(view["totp"], true);
    assert_eq!(
        f.strategy.credential_info(&f.user).unwrap()["recovery_codes_left"],
        10
    );

    // The setup token was single-use, and setup is refused while TOTP is on.
    let again = f
        .handle(
            "confirm_setup",
            json!({"setup_token": body["setup_token"], "code": f.code(&seed, 1)}),
            true,
        )
        .await;
    assert_eq!(rejection(&again), Some(&Rejection::InvalidToken));
    let setup = f.handle("setup", json!({}), true).await;
    assert!(
        matches!(rejection(&setup), Some(Rejection::Invalid(e)) if e.has("totp")),
        "{setup:?}"
    );
}

#[tokio::test]
async fn a_later_setup_kills_the_earlier_setup_token() {
    let mut f = fixture("").await;
    let Verdict::Json { body: first, .. } = f.handle("setup", json!({}), true).await else {
        panic!()
    };
    f.refresh().await;
    let Verdict::Json { body: second, .. } = f.handle("setup", json!({}), true).await else {
        panic!()
    };
    f.refresh().await;
    let seed1 = base32_decode(first["secret"].as_str().unwrap());
    let seed2 = base32_decode(second["secret"].as_str().unwrap());
    let v = f
        .handle(
            "confirm_setup",
            json!({"setup_token": first["setup_token"], "code": f.code(&seed1, 0)}),
            true,
        )
        .await;
    assert_eq!(rejection(&v), Some(&Rejection::InvalidToken));
    let v = f
        .handle(
            "confirm_setup",
            json!({"setup_token": second["setup_token"], "code": f.code(&seed2, 0)}),
            true,
        )
        .await;
    assert!(matches!(v, Verdict::Json { status: 200, .. }), "{v:?}");
}

#[tokio::test]
async fn verify_accepts_each_code_once_within_the_grace_window() {
    let mut f = fixture("brute_force = { max_failures = 10, window = \"5m\" }\n").await;
    let (seed, _) = f.turn_on().await;
    // confirm_setup used the current period's code: it cannot sign in.
    let v = f.verify(&f.begin(), "code", &f.code(&seed, 0)).await;
    assert_eq!(rejection(&v), Some(&Rejection::AuthenticationFailed));

    // The next period's code (clock drift of one period) signs in, once.
    let next = f.code(&seed, 1);
    let token = f.begin();
    let v = f.verify(&token, "code", &next).await;
    assert!(is_session(&v), "{v:?}");
    let v = f.verify(&f.begin(), "code", &next).await;
    assert_eq!(
        rejection(&v),
        Some(&Rejection::AuthenticationFailed),
        "replayed"
    );
    // The continue token was consumed by the success.
    f.clock.advance_ms(60_000);
    let v = f.verify(&token, "code", &f.code(&seed, 0)).await;
    assert_eq!(rejection(&v), Some(&Rejection::InvalidToken));

    // Two periods ago is outside the window; the previous period is inside it.
    f.clock.advance_ms(120_000);
    let v = f.verify(&f.begin(), "code", &f.code(&seed, -2)).await;
    assert_eq!(rejection(&v), Some(&Rejection::AuthenticationFailed));
    let v = f.verify(&f.begin(), "code", &f.code(&seed, -1)).await;
    assert!(is_session(&v), "the previous period is within grace: {v:?}");
    // An older code after a newer one is refused even within the window.
    f.refresh().await;
    let v = f.verify(&f.begin(), "code", &f.code(&seed, 0)).await;
    assert!(is_session(&v), "{v:?}");
    f.refresh().await;
    let v = f.verify(&f.begin(), "code", &f.code(&seed, -1)).await;
    assert_eq!(rejection(&v), Some(&Rejection::AuthenticationFailed));
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let mut f = fixture("").await;
    let (_, codes) = f.turn_on().await;
    let v = f.verify(&f.begin(), "recovery_code", &codes[3]).await;
    assert!(is_session(&v), "{v:?}");
    f.refresh().await;
    let v = f.verify(&f.begin(), "recovery_code", &codes[3]).await;
    assert_eq!(rejection(&v), Some(&Rejection::AuthenticationFailed));
    // As typed by a person: upper case, spaces instead of dashes.
    let typed = codes[4].to_uppercase().replace('-', " ");
    let v = f.verify(&f.begin(), "recovery_code", &typed).await;
    assert!(is_session(&v), "{v:?}");
    f.refresh().await;
    assert_eq!(
        f.strategy.credential_info(&f.user).unwrap()["recovery_codes_left"],
        8
    );
}

#[tokio::test]
async fn the_same_code_raced_twice_signs_in_once() {
    let mut f = fixture("").await;
    let (seed, codes) = f.turn_on().await;
    let code = f.code(&seed, 1);
    let (t1, t2) = (f.begin(), f.begin());
    let (a, b) = tokio::join!(f.verify(&t1, "code", &code), f.verify(&t2, "code", &code));
    assert_eq!(
        [is_session(&a), is_session(&b)]
            .iter()
            .filter(|x| **x)
            .count(),
        1,
        "{a:?} {b:?}"
    );
    // Two different recovery codes at once both work (the loser of the swap looks again).
    f.refresh().await;
    let (t1, t2) = (f.begin(), f.begin());
    let (a, b) = tokio::join!(
        f.verify(&t1, "recovery_code", &codes[0]),
        f.verify(&t2, "recovery_code", &codes[1])
    );
    assert!(is_session(&a) && is_session(&b), "{a:?} {b:?}");
}

#[tokio::test]
async fn continue_tokens_are_bound_to_a_first_factor_it_continues_and_to_the_seed() {
    let mut f = fixture("").await;
    let (seed, codes) = f.turn_on().await;
    let factor = f.strategy.second_factor().unwrap();
    assert_eq!(factor.required_after(), ["password".to_string()]);
    assert!(factor.is_on(&f.user));
    let token = factor.begin(&f.user, "magic_link").unwrap();
    assert_eq!(token.claims.purpose, crate::VERIFY);
    assert_ne!(token.claims.purpose, Purpose::SESSION);
    assert!(token.claims.exp - token.claims.iat <= 600);
    let v = f.verify(&token.token, "code", &f.code(&seed, 1)).await;
    assert_eq!(
        rejection(&v),
        Some(&Rejection::InvalidToken),
        "magic_link is not in required_after"
    );
    // Turned off and on again: the earlier continue token dies.
    let old = f.begin();
    let v = f.handle("", json!({"recovery_code": codes[0]}), true).await;
    assert!(matches!(v, Verdict::NoContent), "{v:?}");
    f.refresh().await;
    let (seed, _) = f.turn_on().await;
    let v = f.verify(&old, "code", &f.code(&seed, 1)).await;
    assert_eq!(rejection(&v), Some(&Rejection::InvalidToken));
}

#[tokio::test]
async fn continue_tokens_expire_after_setup_token_lifetime() {
    let mut f = fixture("setup_token_lifetime = \"2m\"\n").await;
    let (seed, _) = f.turn_on().await;
    let token = f.begin();
    f.clock.advance_ms(121_000);
    let v = f.verify(&token, "code", &f.code(&seed, 0)).await;
    assert_eq!(rejection(&v), Some(&Rejection::InvalidToken));
}

#[tokio::test]
async fn brute_force_locks_the_user_after_max_failures() {
    let mut f = fixture("").await;
    let (seed, _) = f.turn_on().await;
    let good = f.code(&seed, 1);
    let wrong = if good == "111111" { "222222" } else { "111111" };
    let token = f.begin();
    for _ in 0..3 {
        let v = f.verify(&token, "code", wrong).await;
        assert_eq!(rejection(&v), Some(&Rejection::AuthenticationFailed));
    }
    let v = f.verify(&token, "code", &good).await;
    assert!(
        matches!(rejection(&v), Some(Rejection::RateLimited { retry_after_secs }) if *retry_after_secs > 0),
        "the right code too, while locked: {v:?}"
    );
    let key = f.strategy.identity_throttle_key(&f.user).unwrap();
    assert!(
        f.services
            .throttle()
            .locked_for(&key)
            .await
            .unwrap()
            .is_some(),
        "operators see the lock by the strategy's identity key"
    );
    // The lock is the user's: turning off is refused as well.
    let v = f.handle("", json!({"code": good}), true).await;
    assert!(
        matches!(rejection(&v), Some(Rejection::RateLimited { .. })),
        "{v:?}"
    );
    f.clock.advance_ms(301_000);
    let v = f.verify(&token, "code", &f.code(&seed, 0)).await;
    assert!(is_session(&v), "after the window: {v:?}");
}

#[tokio::test]
async fn turning_off_needs_a_current_code_or_a_recovery_code() {
    let mut f = fixture("").await;
    let (seed, _) = f.turn_on().await;
    let v = f.handle("", json!({}), true).await;
    assert!(
        matches!(rejection(&v), Some(Rejection::Invalid(e)) if e.has("code")),
        "{v:?}"
    );
    let v = f
        .handle("", json!({"password": "correct horse"}), true)
        .await;
    assert!(
        matches!(rejection(&v), Some(Rejection::Invalid(_))),
        "{v:?}"
    );
    let v = f.handle("", json!({"code": f.code(&seed, 0)}), true).await;
    assert_eq!(
        rejection(&v),
        Some(&Rejection::AuthenticationFailed),
        "the code confirm_setup used"
    );
    let v = f.handle("", json!({"code": f.code(&seed, 1)}), true).await;
    assert!(matches!(v, Verdict::NoContent), "{v:?}");
    f.refresh().await;
    assert!(!f.user.secrets.contains_key("totp_secret"));
    assert!(!f.strategy.second_factor().unwrap().is_on(&f.user));
    let v = f.handle("", json!({"code": f.code(&seed, 1)}), true).await;
    assert_eq!(rejection(&v), Some(&Rejection::NotFound));
}

#[tokio::test]
async fn bad_parameters_are_422_naming_the_field() {
    let mut f = fixture("").await;
    let (_, codes) = f.turn_on().await;
    let token = f.begin();
    for (params, field) in [
        (json!({"code": "123456"}), "token"),
        (json!({"token": token}), "code"),
        (json!({"token": token, "code": "12345"}), "code"),
        (json!({"token": token, "code": 123456}), "code"),
        (
            json!({"token": token, "code": "123456", "recovery_code": codes[0]}),
            "recovery_code",
        ),
        (
            json!({"token": token, "recovery_code": "nope"}),
            "recovery_code",
        ),
    ] {
        let v = f.handle("verify", params.clone(), false).await;
        assert!(
            matches!(rejection(&v), Some(Rejection::Invalid(e)) if e.has(field)),
            "{params}: {v:?}"
        );
    }
    // confirm_setup takes no recovery code.
    let v = f
        .handle(
            "confirm_setup",
            json!({"setup_token": "x", "recovery_code": codes[0]}),
            true,
        )
        .await;
    assert!(
        matches!(rejection(&v), Some(Rejection::Invalid(e)) if e.has("code")),
        "{v:?}"
    );
}

#[tokio::test]
async fn remove_credential_is_the_update_that_turns_totp_off() {
    let mut f = fixture("").await;
    assert!(f.strategy.remove_credential(&f.user).is_none());
    f.turn_on().await;
    let update = f.strategy.remove_credential(&f.user).unwrap();
    let outcome = f.store.update("user", f.user.id, update).await.unwrap();
    let UpdateOutcome::Updated(user) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!f.strategy.second_factor().unwrap().is_on(&user));
}

#[tokio::test]
async fn an_unreadable_stored_state_fails_closed() {
    let f = fixture("").await;
    let mut user = f.user.clone();
    user.secrets
        .insert("totp_secret".into(), "{\"v\":9}".into());
    assert!(f.strategy.second_factor().unwrap().is_on(&user));
}

#[test]
fn the_config_schema_documents_every_key() {
    let schema = Factory.config_schema();
    let props = &schema["properties"];
    for key in [
        "type",
        "issuer",
        "period",
        "digits",
        "secret_length",
        "grace_period",
        "required_after",
        "recovery_codes",
        "brute_force",
        "setup_token_lifetime",
        "secret_field",
        "identity_field",
    ] {
        assert!(
            props[key]["description"].is_string()
                || props[key]["$ref"].is_string()
                || props[key]["allOf"].is_array(),
            "{key}: {}",
            props[key]
        );
    }
    assert_eq!(props["period"]["default"], 30);
    assert_eq!(props["type"]["const"], "totp");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for key in ["issuer", "required_after", "brute_force"] {
        assert!(required.contains(&key), "{required:?}");
    }
}

#[test]
fn docs_cover_every_phase() {
    let text = "type = \"totp\"\nissuer = \"E\"\nrequired_after = [\"password\"]\n\
                brute_force = { max_failures = 5, window = \"5m\" }\n";
    let v = Factory
        .validate("p", "totp", &resource(), toml_table(text))
        .unwrap();
    let docs = v.docs();
    let phases: Vec<_> = v.phases().iter().map(|p| p.name).collect();
    assert_eq!(phases, ["setup", "confirm_setup", "", "verify"]);
    for p in &v.phases() {
        for m in p.methods {
            assert!(
                docs.iter().any(|d| d.phase == p.name && d.method == *m),
                "{} {}",
                m.as_str(),
                p.name
            );
        }
    }
    assert_eq!(v.continues_after(), ["password".to_string()]);
    assert_eq!(v.secret_fields(), ["totp_secret".to_string()]);
}
