//! The token service: signing and verifying with each algorithm, the refusals (unknown
//! `kid`, another key's algorithm, `alg: none`, HS256 over a public key), `aud`, times on
//! authd's clock, and the key set shared by two daemons on one store.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use authd_strategy_api::{ClearSealer, NoEvents, Purpose, UserRecord};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};

/// A meta store in memory, with the compare-and-swap of the contract.
#[derive(Default)]
pub(crate) struct MemoryMeta(Mutex<HashMap<String, Vec<u8>>>);

#[async_trait::async_trait]
impl MetaStore for MemoryMeta {
    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn meta_put_if_absent(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_insert(value)
            .clone())
    }
    async fn meta_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let mut map = self.0.lock().unwrap();
        if map.get(key) != expected.as_ref() {
            return Ok(false);
        }
        match new {
            Some(v) => map.insert(key.to_string(), v),
            None => map.remove(key),
        };
        Ok(true)
    }
}

fn user() -> UserRecord {
    UserRecord {
        id: Uuid::new_v4(),
        attributes: Default::default(),
        secrets: Default::default(),
        meta: Default::default(),
        session_epoch: 3,
        created_at: 0,
    }
}

fn issue(s: &TokenService) -> IssuedToken {
    issue_for(s, 60)
}

fn issue_for(s: &TokenService, secs: u64) -> IssuedToken {
    s.issue(TokenSpec {
        subject: "user",
        user: &user(),
        purpose: Purpose::SESSION,
        lifetime: Duration::from_secs(secs),
        act: None,
        bnd: None,
    })
    .unwrap()
}

fn ephemeral(alg: SigningAlgorithm, issuer: &str, clock: &Clock) -> TokenService {
    TokenService::ephemeral(
        &TokensConfig::with(alg, issuer),
        clock.clone(),
        Arc::new(NoEvents),
    )
    .unwrap()
}

fn header(token: &str) -> serde_json::Value {
    let first = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap()
}

/// `token` with its header replaced by `header` (signature kept).
fn with_header(token: &str, header: &serde_json::Value) -> String {
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        parts.next().unwrap()
    )
}

/// Signs `claims` with HMAC-SHA256 under `secret`, with `header`.
fn hs256(header: &serde_json::Value, claims: &Claims, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn every_algorithm_round_trips_and_asymmetric_tokens_carry_a_kid() {
    let clock = Clock::system();
    for alg in SigningAlgorithm::ALL {
        let s = ephemeral(alg, "authd", &clock);
        let t = issue(&s);
        assert_eq!(s.verify(&t.token).ok(), Some(t.claims.clone()), "{alg:?}");
        let h = header(&t.token);
        assert_eq!(h["alg"], alg.name());
        assert_eq!(h["kid"].is_string(), !alg.is_hmac(), "{h}");
        // The cached answer is the same, and a changed byte is not a hit.
        assert_eq!(s.verify(&t.token).ok(), Some(t.claims));
        assert!(s.verify(&format!("{}x", t.token)).is_err());
    }
}

#[test]
fn other_keys_algorithms_issuers_and_alg_none_are_refused() {
    let clock = Clock::system();
    let ed = ephemeral(SigningAlgorithm::EdDsa, "authd", &clock);
    let ed2 = ephemeral(SigningAlgorithm::EdDsa, "authd", &clock);
    let es = ephemeral(SigningAlgorithm::Es256, "authd", &clock);
    let hs = ephemeral(SigningAlgorithm::Hs256, "authd", &clock);
    let other_iss = ephemeral(SigningAlgorithm::EdDsa, "someone-else", &clock);
    // Another key (unknown kid), another algorithm, another issuer.
    assert!(ed.verify(&issue(&ed2).token).is_err());
    assert!(ed.verify(&issue(&es).token).is_err());
    assert!(ed.verify(&issue(&hs).token).is_err());
    assert!(hs.verify(&issue(&ed).token).is_err());

    let t = issue(&ed);
    let h = header(&t.token);
    let kid = h["kid"].as_str().unwrap();
    // A known kid under another algorithm's name: the signature is not even tried.
    let es_named = with_header(&t.token, &serde_json::json!({"alg": "ES256", "kid": kid}));
    assert!(ed.verify(&es_named).is_err());
    // Without the kid.
    assert!(
        ed.verify(&with_header(&t.token, &serde_json::json!({"alg": "EdDSA"})))
            .is_err()
    );
    // An unknown kid.
    assert!(
        ed.verify(&with_header(
            &t.token,
            &serde_json::json!({"alg": "EdDSA", "kid": "nope"})
        ))
        .is_err()
    );
    // alg: none, unsigned.
    let payload = t.token.split('.').nth(1).unwrap();
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    assert!(ed.verify(&none).is_err());
    // HS256 with the public key as the secret (the JWKS's `x`, raw or as text), with and
    // without the kid.
    let jwks: serde_json::Value = serde_json::from_slice(&ed.jwks().0).unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let raw = URL_SAFE_NO_PAD.decode(x).unwrap();
    for secret in [raw.as_slice(), x.as_bytes()] {
        for h in [
            serde_json::json!({"alg": "HS256", "kid": kid}),
            serde_json::json!({"alg": "HS256"}),
        ] {
            assert!(ed.verify(&hs256(&h, &t.claims, secret)).is_err(), "{h}");
        }
    }
    assert!(ed.verify(&issue(&other_iss).token).is_err());
}

#[test]
fn expiry_follows_authds_clock_even_for_cached_tokens() {
    let clock = Clock::system();
    let s = ephemeral(SigningAlgorithm::EdDsa, "authd", &clock);
    let t = issue(&s);
    assert_eq!(t.claims.sep, Some(3));
    assert!(s.verify(&t.token).is_ok());
    assert_eq!(s.cached(), 1);
    clock.advance_ms(61_000);
    assert!(s.verify(&t.token).is_err(), "expired by authd's clock");
    // A token signed with a past expiry is refused on first sight too.
    let hs = ephemeral(SigningAlgorithm::Hs256, "authd", &clock);
    let mut claims = issue(&hs).claims;
    claims.exp = clock.now_secs() - 1;
    let keys = hs.keys.load();
    let key = &keys.keys[0];
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key.encoding).unwrap();
    assert!(hs.verify(&token).is_err());
    let _unused: Option<EncodingKey> = None;
}

#[test]
fn audiences_are_written_and_required() {
    let clock = Clock::system();
    let mut config = TokensConfig::with(SigningAlgorithm::EdDsa, "authd");
    config.audience = vec!["orders-api".into()];
    let s = TokenService::ephemeral(&config, clock.clone(), Arc::new(NoEvents)).unwrap();
    let t = issue(&s);
    assert_eq!(t.claims.aud, vec!["orders-api".to_string()]);
    assert!(s.verify(&t.token).is_ok());
    // The same key, another audience wanted: refused.
    let mut other = TokenService::ephemeral(&config, clock, Arc::new(NoEvents)).unwrap();
    other.keys = ArcSwap::new(s.keys.load_full());
    other.audiences.default = vec!["billing-api".into()];
    assert!(other.verify(&t.token).is_err());
    other.audiences.default.clear();
    assert!(
        other.verify(&t.token).is_ok(),
        "no audience configured: not checked"
    );
}

fn config(tokens: &str) -> Config {
    crate::registry::parse_config(&format!(
        "version = 1\n[tokens]\n{tokens}\n[resources.user]\nattributes.email = {{ type = \"string\" }}\n"
    ))
    .unwrap()
}

async fn build(
    c: &Config,
    store: &MemoryMeta,
    clock: &Clock,
    sealer: Arc<dyn Sealer>,
) -> TokenService {
    TokenService::build(c, store, sealer, clock.clone(), Arc::new(NoEvents))
        .await
        .unwrap()
}

#[tokio::test]
async fn two_daemons_on_one_store_share_keys_and_one_rotates() {
    let store = MemoryMeta::default();
    let clock = Clock::system();
    let c = config("rotate_every = \"30d\"\npublish_ahead = \"1h\"\ntoken_lifetime = \"1d\"");
    let sealer: Arc<dyn Sealer> = Arc::new(ClearSealer);
    let a = build(&c, &store, &clock, sealer.clone()).await;
    let b = build(&c, &store, &clock, sealer.clone()).await;
    let (kid_a, _) = a.signing_key().unwrap();
    assert_eq!(b.signing_key().unwrap().0, kid_a, "one key for both");
    let old = issue(&a);
    assert!(b.verify(&old.token).is_ok());

    // An hour before 30 days: A refreshes first and makes the next key; B reads it.
    clock.advance_ms((30 * 86_400 - 3600) * 1000);
    assert!(a.refresh(&store).await.unwrap());
    assert!(b.refresh(&store).await.unwrap());
    assert!(
        !b.refresh(&store).await.unwrap(),
        "nothing new the second time"
    );
    let jwks: serde_json::Value = serde_json::from_slice(&b.jwks().0).unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "the new key is published ahead"
    );
    assert_eq!(a.signing_key().unwrap().0, kid_a, "the old key still signs");
    let last_old = issue_for(&a, 2 * 3600);
    assert_eq!(header(&last_old.token)["kid"], kid_a.clone().unwrap());

    // At 30 days both sign with the new key; the old key's tokens still verify.
    clock.advance_ms(3600 * 1000);
    let (kid_new, _) = b.signing_key().unwrap();
    assert_ne!(kid_new, kid_a);
    assert_eq!(a.signing_key().unwrap().0, kid_new);
    let fresh = issue(&a);
    assert_eq!(header(&fresh.token)["kid"], kid_new.clone().unwrap());
    assert!(b.verify(&fresh.token).is_ok());
    let kept = issue(&b);
    // A token of the old key, made before it retired, still verifies (until the overlap ends).
    assert!(b.verify(&last_old.token).is_ok());
    assert!(a.verify(&kept.token).is_ok());
}

#[tokio::test]
async fn with_a_kek_private_keys_are_stored_sealed_and_resealed_after_a_kek_rotation() {
    let store = MemoryMeta::default();
    let clock = Clock::system();
    let c = config("signing_algorithm = \"ES256\"");
    let k1 = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let k2 = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let first: Arc<dyn Sealer> = Arc::new(kek::KekSealer(kek::Kek::parse(&k1, "K").unwrap()));
    let a = build(&c, &store, &clock, first).await;
    let t = issue(&a);
    let stored = store.meta_get(keyset::META_KEY).await.unwrap().unwrap();
    let record: StoredKeysetV1 = serde_json::from_slice(&stored).unwrap();
    let id1 = kek::Kek::parse(&k1, "K").unwrap().ids()[0].to_string();
    assert!(
        record.generated[0]
            .private
            .starts_with(&format!("v1:{id1}:"))
    );
    // The KEK is rotated: new first, old kept. The key opens, and is sealed again.
    let both: Arc<dyn Sealer> = Arc::new(kek::KekSealer(
        kek::Kek::parse(&format!("{k2},{k1}"), "K").unwrap(),
    ));
    let b = build(&c, &store, &clock, both).await;
    assert!(b.verify(&t.token).is_ok());
    let record: StoredKeysetV1 =
        serde_json::from_slice(&store.meta_get(keyset::META_KEY).await.unwrap().unwrap()).unwrap();
    let id2 = kek::Kek::parse(&k2, "K").unwrap().ids()[0].to_string();
    assert!(
        record.generated[0]
            .private
            .starts_with(&format!("v1:{id2}:"))
    );
    // Now the old KEK can go.
    let only_new: Arc<dyn Sealer> = Arc::new(kek::KekSealer(kek::Kek::parse(&k2, "K").unwrap()));
    let c2 = build(&c, &store, &clock, only_new).await;
    assert!(c2.verify(&t.token).is_ok());
    // Without any KEK the sealed keys cannot be opened: a build error, not a new key.
    let clear: Arc<dyn Sealer> = Arc::new(ClearSealer);
    assert!(
        TokenService::build(&c, &store, clear, clock.clone(), Arc::new(NoEvents))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hmac_to_eddsa_keeps_hmac_tokens_until_they_expire() {
    let store = MemoryMeta::default();
    let clock = Clock::system();
    let sealer: Arc<dyn Sealer> = Arc::new(ClearSealer);
    let hs = config("signing_algorithm = \"HS256\"\ntoken_lifetime = \"1h\"");
    let a = build(&hs, &store, &clock, sealer.clone()).await;
    let jwks: serde_json::Value = serde_json::from_slice(&a.jwks().0).unwrap();
    assert_eq!(
        jwks,
        serde_json::json!({"keys": []}),
        "HMAC is never published"
    );
    let old = issue(&a);
    let ed = config("signing_algorithm = \"EdDSA\"\ntoken_lifetime = \"1h\"");
    let b = build(&ed, &store, &clock, sealer.clone()).await;
    assert!(
        b.verify(&old.token).is_ok(),
        "an HS256 token after the switch"
    );
    let new = issue(&b);
    assert_eq!(header(&new.token)["alg"], "EdDSA");
    let jwks: serde_json::Value = serde_json::from_slice(&b.jwks().0).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    // The HS256 secret verifies for the longest token lifetime after the switch, no more:
    // a token forged with it later is refused.
    clock.advance_ms(3600 * 1000);
    let hmac_key = EncodingKey::from_secret(&store.meta_get(SIGNING_KEY).await.unwrap().unwrap());
    let mut claims = old.claims.clone();
    claims.exp = clock.now_secs() + 60;
    let late = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &hmac_key).unwrap();
    assert!(b.verify(&late).is_err());
}

#[tokio::test]
async fn operator_keys_rotate_by_editing_the_list_and_removal_revokes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, alg| {
        let pair = KeyPair::generate(alg).unwrap();
        let pem =
            pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, pair.pkcs8())
                .unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (f1, f2) = (
        write("1.pem", SigningAlgorithm::EdDsa),
        write("2.pem", SigningAlgorithm::EdDsa),
    );
    let store = MemoryMeta::default();
    let clock = Clock::system();
    let sealer: Arc<dyn Sealer> = Arc::new(ClearSealer);
    let v1 = config(&format!(
        "token_lifetime = \"1h\"\n[[tokens.keys]]\nid = \"k1\"\nfile = {f1:?}\n[[tokens.keys]]\nid = \"k2\"\nfile = {f2:?}\nstate = \"pending\""
    ));
    let a = build(&v1, &store, &clock, sealer.clone()).await;
    let t1 = issue(&a);
    assert_eq!(header(&t1.token)["kid"], "k1");
    let v2 = config(&format!(
        "token_lifetime = \"1h\"\n[[tokens.keys]]\nid = \"k1\"\nfile = {f1:?}\nstate = \"retired\"\n[[tokens.keys]]\nid = \"k2\"\nfile = {f2:?}"
    ));
    let b = build(&v2, &store, &clock, sealer.clone()).await;
    assert_eq!(header(&issue(&b).token)["kid"], "k2");
    assert!(b.verify(&t1.token).is_ok(), "retired: still verifies");
    let since = |bytes: Option<Vec<u8>>| {
        serde_json::from_slice::<StoredKeysetV1>(&bytes.unwrap())
            .unwrap()
            .retired_since["k1"]
    };
    let first = since(store.meta_get(keyset::META_KEY).await.unwrap());
    clock.advance_ms(30 * 1000);
    let b = build(&v2, &store, &clock, sealer.clone()).await;
    assert!(b.verify(&t1.token).is_ok());
    let again = since(store.meta_get(keyset::META_KEY).await.unwrap());
    assert_eq!(first, again, "the retirement date is kept across reloads");
    let v3 = config(&format!(
        "token_lifetime = \"1h\"\n[[tokens.keys]]\nid = \"k2\"\nfile = {f2:?}"
    ));
    let c = build(&v3, &store, &clock, sealer.clone()).await;
    assert!(c.verify(&t1.token).is_err(), "removed: refused at once");

    // The active key must be of the signing algorithm; files are named in errors.
    let f3 = write("3.pem", SigningAlgorithm::Es256);
    let wrong = config(&format!("[[tokens.keys]]\nfile = {f3:?}"));
    let e = TokenService::build(
        &wrong,
        &store,
        sealer.clone(),
        clock.clone(),
        Arc::new(NoEvents),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with("tokens.keys[0]: ") && e.contains("ES256"),
        "{e}"
    );
    let missing = config("[[tokens.keys]]\nfile = \"/nonexistent/k.pem\"");
    let e = TokenService::build(&missing, &store, sealer, clock, Arc::new(NoEvents))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("tokens.keys[0].file: cannot read"), "{e}");
}

#[tokio::test]
async fn hmac_tokens_of_a_store_from_before_key_sets_verify_after_the_upgrade() {
    // A store written by an authd of before key sets: only the generated HMAC secret, and
    // HS256 tokens out there signed with it. The new default algorithm is EdDSA.
    let store = MemoryMeta::default();
    let clock = Clock::system();
    let secret = vec![42u8; 32];
    store
        .meta_put_if_absent(SIGNING_KEY, secret.clone())
        .await
        .unwrap();
    let mut claims = issue(&ephemeral(SigningAlgorithm::Hs256, "authd", &clock)).claims;
    claims.exp = clock.now_secs() + 3600;
    let old = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let s = build(&config(""), &store, &clock, Arc::new(ClearSealer)).await;
    assert_eq!(s.signing_key().unwrap().1, SigningAlgorithm::EdDsa);
    assert!(s.verify(&old).is_ok());
    // ...and keep doing so after a restart (the record now exists).
    let again = build(&config(""), &store, &clock, Arc::new(ClearSealer)).await;
    assert!(again.verify(&old).is_ok());
}

#[tokio::test]
async fn a_generated_hmac_secret_is_sealed_when_a_kek_comes_and_resealed_when_it_rotates() {
    let store = MemoryMeta::default();
    let clock = Clock::system();
    let hs = config("signing_algorithm = \"HS256\"");
    let key = || base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let (k1, k2) = (key(), key());
    let sealer = |text: &str| -> Arc<dyn Sealer> {
        Arc::new(kek::KekSealer(kek::Kek::parse(text, "K").unwrap()))
    };
    let id = |text: &str| kek::Kek::parse(text, "K").unwrap().ids()[0].to_string();
    let stored = || async { store.meta_get(SIGNING_KEY).await.unwrap().unwrap() };

    // Without a KEK: 32 bytes in clear, as before.
    let a = build(&hs, &store, &clock, Arc::new(ClearSealer)).await;
    let t = issue(&a);
    let clear = stored().await;
    assert_eq!(clear.len(), 32);
    // A KEK arrives: the secret is sealed at start, and is the same secret.
    let b = build(&hs, &store, &clock, sealer(&k1)).await;
    assert!(b.verify(&t.token).is_ok());
    let sealed = stored().await;
    assert!(sealed.starts_with(format!("v1:{}:", id(&k1)).as_bytes()));
    assert!(!sealed.windows(32).any(|w| w == clear.as_slice()));
    // Rotated (new first, old kept): sealed again under the new one.
    let c = build(&hs, &store, &clock, sealer(&format!("{k2},{k1}"))).await;
    assert!(c.verify(&t.token).is_ok());
    assert!(
        stored()
            .await
            .starts_with(format!("v1:{}:", id(&k2)).as_bytes())
    );
    // The old KEK can go; without any KEK the secret cannot be opened: an error, not a new
    // secret.
    let d = build(&hs, &store, &clock, sealer(&k2)).await;
    assert!(d.verify(&t.token).is_ok());
    assert!(
        TokenService::build(
            &hs,
            &store,
            Arc::new(ClearSealer),
            clock.clone(),
            Arc::new(NoEvents)
        )
        .await
        .is_err()
    );
    // After a switch to EdDSA the sealed secret still verifies the HMAC tokens.
    let ed = build(&config(""), &store, &clock, sealer(&k2)).await;
    assert!(ed.verify(&t.token).is_ok());

    // With a KEK from the start, the secret is generated sealed.
    let fresh = MemoryMeta::default();
    let e = build(&hs, &fresh, &clock, sealer(&k1)).await;
    let text = fresh.meta_get(SIGNING_KEY).await.unwrap().unwrap();
    assert!(text.starts_with(format!("v1:{}:", id(&k1)).as_bytes()));
    let again = build(&hs, &fresh, &clock, sealer(&k1)).await;
    assert!(again.verify(&issue(&e).token).is_ok());
    assert_eq!(
        fresh.meta_get(SIGNING_KEY).await.unwrap().unwrap(),
        text,
        "left as it is"
    );
}
