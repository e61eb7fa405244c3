//! Unit tests of each phase and of bearer checks against a real redb store on a temporary
//! file, wrapped to count the calls that reach it (no HTTP). End-to-end tests are in
//! `tests/it/api_keys.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use authd_strategy_api::store::{
    Claimed, Job, JobKey, NewJob, OutboxFull, OutboxStats, PurgeCounts, ThrottleKey, ThrottleOp,
    ThrottleOutcome, ThrottleRecord,
};
use authd_strategy_api::toml;
use authd_strategy_api::{
    Backup, Claims, ClearSealer, Clock, Collision, Credential, Error, HashPool, InsertError,
    IssuedToken, Maintenance, Message, MetaStore, Method, NewUser, NoEvents, OutboxStore,
    PhaseRequest, Purpose, Rejection, Sender, SenderSpec, Senders, Services, Session, StoreError,
    Strategy, StrategyFactory, ThrottleStore, TokenError, TokenSpec, TokenStore, Tokens, UniqueKey,
    UpdateOutcome, UserRecord, UserStore, UserUpdate, Verdict,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Factory;

type R<T> = Result<T, StoreError>;

/// The redb store, counting every call that reaches it.
struct Counting {
    inner: authd_store_redb::RedbStore,
    calls: AtomicUsize,
}

impl Counting {
    fn hit(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl UserStore for Counting {
    async fn get(&self, s: &str, id: Uuid) -> R<Option<UserRecord>> {
        self.hit();
        self.inner.get(s, id).await
    }
    async fn find_by_unique(&self, s: &str, k: &UniqueKey) -> R<Option<UserRecord>> {
        self.hit();
        self.inner.find_by_unique(s, k).await
    }
    async fn insert(&self, s: &str, u: NewUser) -> R<Result<UserRecord, InsertError>> {
        self.hit();
        self.inner.insert(s, u).await
    }
    async fn update(&self, s: &str, id: Uuid, u: UserUpdate) -> R<UpdateOutcome> {
        self.hit();
        self.inner.update(s, id, u).await
    }
    async fn delete(&self, s: &str, id: Uuid) -> R<Option<UserRecord>> {
        self.hit();
        self.inner.delete(s, id).await
    }
    async fn users_page(&self, s: &str, a: Option<Uuid>, l: usize) -> R<Vec<UserRecord>> {
        self.hit();
        self.inner.users_page(s, a, l).await
    }
    async fn session_user(&self, s: &str, id: Uuid, jti: &str) -> R<Option<UserRecord>> {
        self.hit();
        self.inner.session_user(s, id, jti).await
    }
    async fn unique_of(&self, s: &str, id: Uuid) -> R<Vec<UniqueKey>> {
        self.hit();
        self.inner.unique_of(s, id).await
    }
    async fn rebuild_unique(&self, s: &str, e: Vec<(UniqueKey, Uuid)>) -> R<Vec<Collision>> {
        self.hit();
        self.inner.rebuild_unique(s, e).await
    }
    async fn subjects(&self) -> R<Vec<String>> {
        self.hit();
        self.inner.subjects().await
    }
}

#[async_trait]
impl TokenStore for Counting {
    async fn is_dead(&self, jti: &str) -> R<bool> {
        self.hit();
        self.inner.is_dead(jti).await
    }
    async fn kill(&self, jti: &str, e: u64) -> R<()> {
        self.hit();
        self.inner.kill(jti, e).await
    }
    async fn consume(&self, jti: &str, e: u64) -> R<bool> {
        self.hit();
        self.inner.consume(jti, e).await
    }
}

#[async_trait]
impl ThrottleStore for Counting {
    async fn throttle_get(&self, k: &ThrottleKey) -> R<Option<ThrottleRecord>> {
        self.hit();
        self.inner.throttle_get(k).await
    }
    async fn throttle_apply(
        &self,
        ops: Vec<(ThrottleKey, ThrottleOp)>,
        now: u64,
    ) -> R<Vec<ThrottleOutcome>> {
        self.hit();
        self.inner.throttle_apply(ops, now).await
    }
}

#[async_trait]
impl MetaStore for Counting {
    async fn meta_get(&self, k: &str) -> R<Option<Vec<u8>>> {
        self.hit();
        self.inner.meta_get(k).await
    }
    async fn meta_put_if_absent(&self, k: &str, v: Vec<u8>) -> R<Vec<u8>> {
        self.hit();
        self.inner.meta_put_if_absent(k, v).await
    }
    async fn meta_swap(&self, k: &str, e: Option<Vec<u8>>, n: Option<Vec<u8>>) -> R<bool> {
        self.hit();
        self.inner.meta_swap(k, e, n).await
    }
}

#[async_trait]
impl OutboxStore for Counting {
    async fn outbox_enqueue(&self, j: NewJob, m: u64, n: u64) -> R<Result<JobKey, OutboxFull>> {
        self.hit();
        self.inner.outbox_enqueue(j, m, n).await
    }
    async fn outbox_claim(&self, n: u64, l: usize) -> R<Claimed> {
        self.hit();
        self.inner.outbox_claim(n, l).await
    }
    async fn outbox_complete(&self, k: JobKey) -> R<()> {
        self.hit();
        self.inner.outbox_complete(k).await
    }
    async fn outbox_retry(&self, k: JobKey, n: u64, a: u32, e: String) -> R<()> {
        self.hit();
        self.inner.outbox_retry(k, n, a, e).await
    }
    async fn outbox_stats(&self, n: u64) -> R<OutboxStats> {
        self.hit();
        self.inner.outbox_stats(n).await
    }
}

#[async_trait]
impl Maintenance for Counting {
    async fn purge(&self, now: u64) -> R<PurgeCounts> {
        self.hit();
        self.inner.purge(now).await
    }
    async fn health(&self) -> R<()> {
        self.hit();
        self.inner.health().await
    }
    fn backend(&self) -> &'static str {
        "counting redb"
    }
}

#[async_trait]
impl Backup for Counting {
    async fn dead_tokens_page(&self, a: Option<[u8; 32]>, l: usize) -> R<Vec<([u8; 32], u64)>> {
        self.hit();
        self.inner.dead_tokens_page(a, l).await
    }
    async fn put_dead_token(&self, k: [u8; 32], e: u64) -> R<()> {
        self.hit();
        self.inner.put_dead_token(k, e).await
    }
    async fn throttles_page(
        &self,
        a: Option<ThrottleKey>,
        l: usize,
    ) -> R<Vec<(ThrottleKey, ThrottleRecord)>> {
        self.hit();
        self.inner.throttles_page(a, l).await
    }
    async fn put_throttle(&self, k: ThrottleKey, r: ThrottleRecord) -> R<()> {
        self.hit();
        self.inner.put_throttle(k, r).await
    }
    async fn meta_all(&self) -> R<Vec<(String, Vec<u8>)>> {
        self.hit();
        self.inner.meta_all().await
    }
    async fn outbox_page(&self, a: Option<JobKey>, l: usize) -> R<Vec<Job>> {
        self.hit();
        self.inner.outbox_page(a, l).await
    }
    async fn put_job(&self, j: Job) -> R<()> {
        self.hit();
        self.inner.put_job(j).await
    }
    async fn is_empty(&self) -> R<bool> {
        self.hit();
        self.inner.is_empty().await
    }
}

/// API keys issue no tokens.
struct NoTokens;

impl Tokens for NoTokens {
    fn issue(&self, _: TokenSpec<'_>) -> Result<IssuedToken, Error> {
        Err(Error::Internal("no tokens here".into()))
    }
    fn verify(&self, _: &str) -> Result<Claims, TokenError> {
        Err(TokenError::Invalid)
    }
    fn session_lifetime(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// API keys send no messages.
struct NoSenders;

#[async_trait]
impl Sender for NoSenders {
    async fn send(&self, _: Message) -> Result<(), String> {
        Err("no messages here".into())
    }
}

impl Senders for NoSenders {
    fn build(&self, _: &SenderSpec) -> Arc<dyn Sender> {
        Arc::new(NoSenders)
    }
}

struct Env {
    strategy: Arc<dyn Strategy>,
    services: Services,
    store: Arc<Counting>,
    clock: Clock,
    _dir: tempfile::TempDir,
}

fn build(services: &Services, extra: &str) -> Arc<dyn Strategy> {
    let table: toml::Table = toml::from_str(&format!("type = \"api_key\"\n{extra}")).unwrap();
    let resource = authd_strategy_api::ResourceSpec {
        name: "user".into(),
        attributes: Vec::new(),
        confirmation: None,
    };
    Factory
        .validate("s", "api", &resource, table)
        .unwrap_or_else(|p| panic!("{p}"))
        .instantiate("user", "api", services)
}

async fn env(extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (inner, _) = authd_store_redb::open(&dir.path().join("t.redb")).unwrap();
    let store = Arc::new(Counting {
        inner,
        calls: AtomicUsize::new(0),
    });
    let clock = Clock::system();
    let services = Services {
        store: store.clone(),
        tokens: Arc::new(NoTokens),
        pool: HashPool::new(1, 1).unwrap(),
        senders: Arc::new(NoSenders),
        clock: clock.clone(),
        events: Arc::new(NoEvents),
        sealer: Arc::new(ClearSealer),
    };
    Env {
        strategy: build(&services, extra),
        services,
        store,
        clock,
        _dir: dir,
    }
}

fn claims(user: &UserRecord) -> Claims {
    Claims {
        sub: Claims::subject_claim("user", user.id),
        jti: Uuid::new_v4().to_string(),
        iat: 0,
        nbf: 0,
        exp: u64::MAX,
        iss: "authd".into(),
        aud: Vec::new(),
        purpose: Purpose::SESSION,
        act: None,
        bnd: None,
        sep: Some(user.session_epoch),
    }
}

impl Env {
    async fn user(&self, name: &str) -> UserRecord {
        let new = NewUser {
            attributes: [("name".to_string(), json!(name))].into_iter().collect(),
            ..NewUser::default()
        };
        self.store.insert("user", new).await.unwrap().unwrap()
    }

    async fn fresh(&self, user: &UserRecord) -> UserRecord {
        self.store.get("user", user.id).await.unwrap().unwrap()
    }

    async fn call(
        &self,
        user: &UserRecord,
        method: Method,
        param: Option<&str>,
        params: Value,
    ) -> Verdict {
        let Value::Object(params) = params else {
            panic!()
        };
        let user = self.fresh(user).await;
        let request = PhaseRequest {
            method,
            params,
            client_ip: None,
            param: param.map(str::to_string),
            session: Some(Session {
                credential: Credential::Token(claims(&user)),
                user,
            }),
        };
        self.strategy.handle("keys", request).await.unwrap()
    }

    async fn create(&self, user: &UserRecord, params: Value) -> Value {
        match self.call(user, Method::Post, None, params).await {
            Verdict::Json { status: 201, body } => body,
            other => panic!("{other:?}"),
        }
    }

    async fn list(&self, user: &UserRecord) -> Vec<Value> {
        match self.call(user, Method::Get, None, json!({})).await {
            Verdict::Json { status: 200, body } => body["keys"].as_array().unwrap().clone(),
            other => panic!("{other:?}"),
        }
    }

    async fn who(&self, key: &str) -> Option<Uuid> {
        assert!(self.strategy.recognizes_bearer(key));
        self.strategy
            .authenticate_bearer(key)
            .await
            .unwrap()
            .map(|b| b.user.id)
    }
}

fn key_of(body: &Value) -> String {
    body["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_key_is_made_listed_without_its_secret_used_and_deleted() {
    let e = env("prefix = \"tst\"").await;
    let ada = e.user("ada").await;
    let body = e.create(&ada, json!({ "name": "ci" })).await;
    let key = key_of(&body);
    assert!(key.starts_with("tst_"), "{key}");
    assert_eq!(body["name"], "ci");
    assert!(body["expires_at"].is_null());
    let id = body["id"].as_str().unwrap().to_string();
    assert!(key.contains(&id));

    let stored = e.fresh(&ada).await;
    let record = &stored.secrets["api_keys:api"];
    assert!(!record.contains(&key[4..]), "only a hash is stored");

    let listed = e.list(&ada).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id);
    assert!(listed[0].get("key").is_none() && listed[0].get("hash").is_none());
    assert!(listed[0]["last_used_at"].is_null());
    assert!(!listed[0].to_string().contains(&key[4..]));

    assert_eq!(e.who(&key).await, Some(ada.id));
    let listed = e.list(&ada).await;
    assert!(listed[0]["last_used_at"].is_string(), "{listed:?}");
    assert!(listed[0]["created_at"].as_str().unwrap().ends_with('Z'));

    let gone = e.call(&ada, Method::Delete, Some(&id), json!({})).await;
    assert!(matches!(gone, Verdict::NoContent), "{gone:?}");
    assert_eq!(e.who(&key).await, None);
    assert!(e.list(&ada).await.is_empty());
    let again = e.call(&ada, Method::Delete, Some(&id), json!({})).await;
    assert!(matches!(again, Verdict::Rejected(Rejection::NotFound)));
    let fresh = e.fresh(&ada).await;
    assert!(
        !fresh.secrets.contains_key("api_keys:api"),
        "no empty record left"
    );
    let unique = e.store.unique_of("user", ada.id).await.unwrap();
    assert!(unique.is_empty(), "{unique:?}");
}

#[tokio::test]
async fn a_key_with_one_changed_character_is_refused_without_touching_the_store() {
    let e = env("").await;
    let ada = e.user("ada").await;
    let key = key_of(&e.create(&ada, json!({ "name": "ci" })).await);
    assert_eq!(e.who(&key).await, Some(ada.id), "the good key works");
    let before = e.store.calls.load(Ordering::SeqCst);
    let mut tried = 0;
    for i in "authd_".len()..key.len() {
        let mut bytes = key.clone().into_bytes();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(e.who(&changed).await, None, "{changed}");
        tried += 1;
    }
    assert_eq!(tried, 16 + 32 + 1 + 7);
    assert_eq!(
        e.store.calls.load(Ordering::SeqCst),
        before,
        "a refused checksum made a store call"
    );
    // The same count moves for a well-formed key of an unknown id: the check can fail.
    let other = crate::key::Format::new("authd").generate();
    assert_eq!(e.who(&other.text).await, None);
    assert!(e.store.calls.load(Ordering::SeqCst) > before);
    assert!(!e.strategy.recognizes_bearer("eyJhbGciOi.x.y"));
}

#[tokio::test]
async fn the_key_past_max_keys_per_user_is_refused() {
    let e = env("max_keys_per_user = 3").await;
    let ada = e.user("ada").await;
    let bob = e.user("bob").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(e.create(&ada, json!({ "name": format!("k{i}") })).await["id"].clone());
    }
    match e
        .call(&ada, Method::Post, None, json!({ "name": "k3" }))
        .await
    {
        Verdict::Rejected(Rejection::Invalid(f)) => assert!(f.has("keys"), "{f:?}"),
        other => panic!("{other:?}"),
    }
    // Per user: bob still may.
    e.create(&bob, json!({ "name": "b" })).await;
    let id = ids[0].as_str().unwrap();
    assert!(matches!(
        e.call(&ada, Method::Delete, Some(id), json!({})).await,
        Verdict::NoContent
    ));
    e.create(&ada, json!({ "name": "k3" })).await;
}

#[tokio::test]
async fn concurrent_creations_cannot_pass_the_limit() {
    let e = Arc::new(env("max_keys_per_user = 2").await);
    let ada = e.user("ada").await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let e = Arc::clone(&e);
        let ada = ada.clone();
        tasks.push(tokio::spawn(async move {
            e.call(&ada, Method::Post, None, json!({ "name": format!("k{i}") }))
                .await
        }));
    }
    let mut made = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Verdict::Json { status: 201, .. }) {
            made += 1;
        }
    }
    assert_eq!(made, 2);
    assert_eq!(e.list(&ada).await.len(), 2);
}

#[tokio::test]
async fn another_users_key_cannot_be_deleted() {
    let e = env("").await;
    let ada = e.user("ada").await;
    let eve = e.user("eve").await;
    let body = e.create(&ada, json!({ "name": "ci" })).await;
    let id = body["id"].as_str().unwrap();
    for param in [id, "nonsense", "aaaaaaaaaaaaaaaa"] {
        let v = e.call(&eve, Method::Delete, Some(param), json!({})).await;
        assert!(matches!(v, Verdict::Rejected(Rejection::NotFound)), "{v:?}");
    }
    assert_eq!(e.who(&key_of(&body)).await, Some(ada.id));
}

#[tokio::test]
async fn keys_expire_by_default_lifetime_or_their_own() {
    let e = env("default_lifetime = \"1d\"").await;
    let ada = e.user("ada").await;
    let default = e.create(&ada, json!({ "name": "a" })).await;
    let short = e
        .create(&ada, json!({ "name": "b", "expires_in": "1h" }))
        .await;
    let secs = e
        .create(&ada, json!({ "name": "c", "expires_in": 60 }))
        .await;
    assert!(default["expires_at"].is_string());
    match e
        .call(
            &ada,
            Method::Post,
            None,
            json!({ "name": "d", "expires_in": "2d" }),
        )
        .await
    {
        Verdict::Rejected(Rejection::Invalid(f)) => assert!(f.has("expires_in"), "{f:?}"),
        other => panic!("{other:?}"),
    }
    e.clock.advance_ms(61_000);
    assert_eq!(e.who(&key_of(&secs)).await, None);
    assert_eq!(e.who(&key_of(&short)).await, Some(ada.id));
    e.clock.advance_ms(3_600_000);
    assert_eq!(e.who(&key_of(&short)).await, None);
    assert_eq!(e.who(&key_of(&default)).await, Some(ada.id));
    e.clock.advance_ms(86_400_000);
    assert_eq!(e.who(&key_of(&default)).await, None);
    assert!(e.list(&ada).await.is_empty(), "dead keys are not listed");
    // A creation drops the dead keys from the record and the index.
    e.create(&ada, json!({ "name": "e" })).await;
    assert_eq!(e.store.unique_of("user", ada.id).await.unwrap().len(), 1);
}

async fn reset(e: &Env, user: &UserRecord) {
    let resets = e
        .fresh(user)
        .await
        .meta
        .get("resets")
        .and_then(Value::as_u64);
    let update = UserUpdate {
        meta: [("resets".to_string(), json!(resets.unwrap_or(0) + 1))]
            .into_iter()
            .collect(),
        ..UserUpdate::default()
    };
    e.store.update("user", user.id, update).await.unwrap();
}

#[tokio::test]
async fn a_reset_kills_older_keys_only_with_revoke_on_reset() {
    let off = env("").await;
    let ada = off.user("ada").await;
    let key = key_of(&off.create(&ada, json!({ "name": "a" })).await);
    reset(&off, &ada).await;
    assert_eq!(
        off.who(&key).await,
        Some(ada.id),
        "default: keys outlive resets"
    );

    let on = env("revoke_on_reset = true").await;
    let ada = on.user("ada").await;
    let old = key_of(&on.create(&ada, json!({ "name": "a" })).await);
    reset(&on, &ada).await;
    let new = key_of(&on.create(&ada, json!({ "name": "b" })).await);
    assert_eq!(on.who(&old).await, None);
    assert_eq!(on.who(&new).await, Some(ada.id));
}

#[tokio::test]
async fn keys_die_with_their_user() {
    let e = env("").await;
    let ada = e.user("ada").await;
    let key = key_of(&e.create(&ada, json!({ "name": "a" })).await);
    e.store.delete("user", ada.id).await.unwrap();
    assert_eq!(e.who(&key).await, None);
}

#[tokio::test]
async fn a_key_cannot_manage_keys() {
    let e = env("").await;
    let ada = e.user("ada").await;
    let body = e.create(&ada, json!({ "name": "a" })).await;
    let user = e.fresh(&ada).await;
    for (method, param) in [
        (Method::Post, None),
        (Method::Get, None),
        (Method::Delete, body["id"].as_str()),
    ] {
        let request = PhaseRequest {
            method,
            params: json!({ "name": "x" }).as_object().unwrap().clone(),
            client_ip: None,
            param: param.map(str::to_string),
            session: Some(Session {
                user: user.clone(),
                credential: Credential::ApiKey {
                    strategy: "api".into(),
                    key_id: body["id"].as_str().unwrap().into(),
                },
            }),
        };
        let v = e.strategy.handle("keys", request).await.unwrap();
        assert!(
            matches!(v, Verdict::Rejected(Rejection::InvalidToken)),
            "{v:?}"
        );
    }
}

#[tokio::test]
async fn names_are_checked() {
    let e = env("").await;
    let ada = e.user("ada").await;
    for bad in [
        json!({}),
        json!({ "name": " " }),
        json!({ "name": 7 }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": "a\nb" }),
    ] {
        match e.call(&ada, Method::Post, None, bad.clone()).await {
            Verdict::Rejected(Rejection::Invalid(f)) => assert!(f.has("name"), "{bad}: {f:?}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn last_uses_are_written_in_batches_and_at_drop() {
    let mut e = env("").await;
    let ada = e.user("ada").await;
    let body = e.create(&ada, json!({ "name": "a" })).await;
    let key = key_of(&body);
    let writes_before = e.store.calls.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(e.who(&key).await, Some(ada.id));
    }
    // Each use reads (the hashing key once, then find_by_unique): no write.
    let calls = e.store.calls.load(Ordering::SeqCst) - writes_before;
    assert!(calls <= 21, "{calls} store calls for 20 uses");
    let stored = e.fresh(&ada).await;
    assert!(!stored.secrets["api_keys:api"].contains("last_used_at"));
    // A reload drops the strategy: what was noted is written.
    let old = std::mem::replace(&mut e.strategy, build(&e.services, ""));
    drop(old);
    let mut written = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let user = e.store.get("user", ada.id).await.unwrap().unwrap();
        if user.secrets["api_keys:api"].contains("last_used_at") {
            written = true;
            break;
        }
    }
    assert!(
        written,
        "the last use was not written when the strategy was dropped"
    );
}

#[test]
fn config_problems_name_their_keys() {
    let resource = authd_strategy_api::ResourceSpec {
        name: "user".into(),
        attributes: Vec::new(),
        confirmation: None,
    };
    let check = |text: &str| {
        let table: toml::Table = toml::from_str(&format!("type = \"api_key\"\n{text}")).unwrap();
        Factory
            .validate("s", "api", &resource, table)
            .map(|v| v.describe())
            .map_err(|p| p.to_string())
    };
    let ok = check("prefix = \"ci2\"\nmax_keys_per_user = 10\ndefault_lifetime = \"90d\"\nrevoke_on_reset = true").unwrap();
    assert!(
        ok.contains("`ci2`") && ok.contains("revoked on reset"),
        "{ok}"
    );
    for (text, path) in [
        ("prefix = \"Authd\"", "s.prefix"),
        ("prefix = \"\"", "s.prefix"),
        ("prefix = \"a_b\"", "s.prefix"),
        ("prefix = \"abcdefghijklmnopq\"", "s.prefix"),
        ("max_keys_per_user = 0", "s.max_keys_per_user"),
        ("max_keys_per_user = 101", "s.max_keys_per_user"),
        ("default_lifetime = \"soon\"", "s.default_lifetime"),
        ("default_lifetime = \"3651d\"", "s.default_lifetime"),
        ("colour = 1", "s.colour"),
    ] {
        let p = check(text).unwrap_err();
        assert!(p.contains(path), "{text}: {p}");
    }
}

#[test]
fn the_table_and_the_phases_describe_themselves() {
    let schema = Factory.config_schema();
    let props = &schema["properties"];
    for key in [
        "prefix",
        "max_keys_per_user",
        "default_lifetime",
        "revoke_on_reset",
    ] {
        assert!(props[key]["description"].is_string(), "{key}: {schema}");
    }
    assert_eq!(props["prefix"]["default"], "authd");
    assert_eq!(props["max_keys_per_user"]["default"], 10);
    assert_eq!(props["revoke_on_reset"]["default"], false);
    assert_eq!(props["type"]["const"], "api_key");
    let resource = authd_strategy_api::ResourceSpec {
        name: "user".into(),
        attributes: Vec::new(),
        confirmation: None,
    };
    let v = Factory
        .validate(
            "s",
            "api",
            &resource,
            toml::from_str("type = \"api_key\"").unwrap(),
        )
        .unwrap();
    let docs: Vec<_> = v
        .docs()
        .iter()
        .map(|d| (d.phase, d.param, d.method.as_str()))
        .collect();
    assert_eq!(
        docs,
        vec![
            ("keys", None, "POST"),
            ("keys", None, "GET"),
            ("keys", Some("id"), "DELETE")
        ]
    );
    let patterns: Vec<String> = v.phases().iter().map(|p| p.pattern()).collect();
    assert_eq!(patterns, ["/keys", "/keys/{id}"]);
    assert_eq!(v.secret_fields(), ["api_keys:api"]);
}
