//! authd's API key strategy: long-lived keys a signed-in user makes for machines, used as
//! `Authorization: Bearer <key>` wherever a session is accepted (`/auth/<subject>/me` and
//! `Access::Session` phases), through the contract's bearer hooks.
//!
//! Option names follow AshAuthentication's `api_key` strategy where it has them; the key form
//! (`<prefix>_<random>_<checksum>`) follows GitHub's tokens, so that secret scanners find
//! them. [`key`] says how a key is made and kept (a keyed hash only), [`stored`] how a user's
//! keys are stored, [`keys`] the phases (`keys`: create, list, delete), [`usage`] how
//! `last_used_at` is kept without a write per request.
//!
//! Keys die with their user (the store drops a deleted user's unique values, through which
//! keys are found), at their expiry, when deleted, and at a password reset with
//! `revoke_on_reset`. This crate knows nothing of HTTP or of the storage engine.

mod config;
mod key;
mod keys;
mod stored;
#[cfg(test)]
mod tests;
mod usage;

use std::sync::Arc;

use authd_strategy_api::toml;
use authd_strategy_api::{
    Answer, BearerUser, Claim, Error, FieldDoc, Method, Outcome, PhaseDoc, PhaseRequest, PhaseSpec,
    Problems, Rejection, ResourceSpec, Services, Strategy, StrategyFactory, UniqueKey, UserRecord,
    UserUpdate, ValidatedStrategy, Verdict,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub use config::{ApiKeyConfig, RawApiKeyConfig};

use key::{Format, HASH_KEY_BYTES};
use stored::StoredKeysV1;
use usage::{Target, Usage};

const GET_POST: &[Method] = &[Method::Get, Method::Post];
const DELETE: &[Method] = &[Method::Delete];

/// The factory the registry lists: `type = "api_key"`.
pub struct Factory;

impl StrategyFactory for Factory {
    fn type_name(&self) -> &'static str {
        "api_key"
    }

    fn validate(
        &self,
        path: &str,
        name: &str,
        _resource: &ResourceSpec,
        table: toml::Table,
    ) -> Result<Box<dyn ValidatedStrategy>, Problems> {
        let config = ApiKeyConfig::from_table(path, table)?;
        Ok(Box::new(Validated {
            config,
            name: name.to_string(),
        }))
    }

    fn config_schema(&self) -> Value {
        authd_strategy_api::table_schema::<RawApiKeyConfig>()
    }
}

/// A checked API key strategy, not yet running.
#[derive(Debug)]
pub struct Validated {
    pub config: ApiKeyConfig,
    name: String,
}

/// The secret field holding a user's keys of strategy `name`.
fn secret_field(name: &str) -> String {
    format!("api_keys:{name}")
}

impl ValidatedStrategy for Validated {
    fn phases(&self) -> Vec<PhaseSpec> {
        vec![
            PhaseSpec::session("keys", GET_POST),
            PhaseSpec::session("keys", DELETE).with_param("id"),
        ]
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "api_key (prefix `{}`, at most {} keys per user, {}{})",
            c.prefix,
            c.max_keys_per_user,
            c.default_lifetime.map_or_else(
                || "no default lifetime".to_string(),
                |d| format!("lifetime {}", humantime::format_duration(d))
            ),
            if c.revoke_on_reset {
                ", revoked on reset"
            } else {
                ""
            }
        )
    }

    fn secret_fields(&self) -> Vec<String> {
        vec![secret_field(&self.name)]
    }

    fn claims(&self) -> Vec<Claim> {
        // A bearer goes to the first strategy that recognizes its start: two strategies of
        // one start would make one's keys fail at the other (or be looked up there).
        vec![Claim {
            namespace: "bearer credentials",
            key: "prefix",
            value: Format::start_of(&self.config.prefix),
        }]
    }

    fn docs(&self) -> Vec<PhaseDoc> {
        let c = &self.config;
        let key_view = json!({
            "type": "object",
            "properties": {
                "id": { "type": "string" },
                "name": { "type": "string" },
                "created_at": { "type": "string", "format": "date-time" },
                "expires_at": { "type": ["string", "null"], "format": "date-time" },
                "last_used_at": { "type": ["string", "null"], "format": "date-time" }
            },
            "required": ["id", "name", "created_at", "expires_at", "last_used_at"]
        });
        let lifetime = c.default_lifetime.map_or_else(
            || "none".to_string(),
            |d| humantime::format_duration(d).to_string(),
        );
        vec![
            PhaseDoc {
                phase: "keys",
                param: None,
                method: Method::Post,
                summary: format!(
                    "Make an API key (needs a session token, not a key); the key is in this answer only. At most {} live keys per user.",
                    c.max_keys_per_user
                ),
                fields: vec![
                    FieldDoc {
                        name: "name".into(),
                        schema: json!({ "type": "string", "minLength": 1, "maxLength": keys::MAX_NAME_CHARS }),
                        required: true,
                        description: "What the key is for, shown in listings.".into(),
                    },
                    FieldDoc {
                        name: "expires_in".into(),
                        schema: json!({ "type": ["string", "integer"] }),
                        required: false,
                        description: format!(
                            "The key's lifetime, as a duration (\"30d\") or seconds; at most the default lifetime ({lifetime})."
                        ),
                    },
                ],
                answer: Answer::Json {
                    status: 201,
                    schema: json!({
                        "type": "object",
                        "properties": {
                            "id": { "type": "string" },
                            "name": { "type": "string" },
                            "key": { "type": "string", "pattern": format!("^{}_[a-z2-7]{{48}}_[a-z2-7]{{7}}$", c.prefix) },
                            "created_at": { "type": "string", "format": "date-time" },
                            "expires_at": { "type": ["string", "null"], "format": "date-time" }
                        },
                        "required": ["id", "name", "key", "created_at", "expires_at"]
                    }),
                },
                errors: vec![401, 422],
            },
            PhaseDoc {
                phase: "keys",
                param: None,
                method: Method::Get,
                summary: "The user's live keys, without their secrets.".into(),
                fields: Vec::new(),
                answer: Answer::Json {
                    status: 200,
                    schema: json!({
                        "type": "object",
                        "properties": { "keys": { "type": "array", "items": key_view } },
                        "required": ["keys"]
                    }),
                },
                errors: vec![401],
            },
            PhaseDoc {
                phase: "keys",
                param: Some("id"),
                method: Method::Delete,
                summary: "Delete one of the user's keys: it is refused at once.".into(),
                fields: Vec::new(),
                answer: Answer::NoContent,
                errors: vec![401, 404],
            },
        ]
    }

    fn instantiate(&self, subject: &str, name: &str, services: &Services) -> Arc<dyn Strategy> {
        let field = secret_field(name);
        Arc::new(ApiKeyStrategy(Arc::new(Inner {
            subject: subject.to_string(),
            unique_field: format!("api_key:{name}"),
            hash_key_name: format!("api_key_hash_key:{subject}/{name}"),
            format: Format::new(&self.config.prefix),
            phases: self.phases(),
            config: self.config.clone(),
            services: services.clone(),
            hash_key: OnceCell::new(),
            usage: Arc::new(Usage::default()),
            target: Target {
                store: Arc::clone(&services.store),
                subject: subject.to_string(),
                field: field.clone(),
            },
            field,
        })))
    }
}

/// A live API key strategy.
#[derive(Clone)]
pub struct ApiKeyStrategy(Arc<Inner>);

struct Inner {
    subject: String,
    /// The secret field of the users' key records.
    field: String,
    /// The unique field under which key ids find their user.
    unique_field: String,
    /// The meta key of the hashing key.
    hash_key_name: String,
    format: Format,
    phases: Vec<PhaseSpec>,
    config: ApiKeyConfig,
    services: Services,
    /// The hashing key, read (or made) once from the store's meta.
    hash_key: OnceCell<[u8; HASH_KEY_BYTES]>,
    usage: Arc<Usage>,
    target: Target,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A reload replaced this strategy: write the uses noted since the last flush.
        if self.usage.is_empty() {
            return;
        }
        let uses = self.usage.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let target = self.target.clone();
            runtime.spawn(async move { usage::write(&target, uses).await });
        }
    }
}

/// A digest nothing stored equals, compared against when a key id is unknown so that both
/// cases make one comparison.
const DUMMY_DIGEST: [u8; 32] = [0x5a; 32];

impl Inner {
    /// The strategy's hashing key: made at random the first time, kept in the store's meta
    /// (of daemons racing, all get the first one written).
    async fn hash_key(&self) -> Result<&[u8; HASH_KEY_BYTES], Error> {
        self.hash_key
            .get_or_try_init(|| async {
                let fresh: [u8; HASH_KEY_BYTES] = std::array::from_fn(|_| rand::random());
                let stored = self
                    .services
                    .store
                    .meta_put_if_absent(&self.hash_key_name, fresh.to_vec())
                    .await?;
                stored.try_into().map_err(|_| {
                    Error::Internal(format!(
                        "AK0003 the API key hashing key `{}` in the store is damaged",
                        self.hash_key_name
                    ))
                })
            })
            .await
    }

    fn unique_key(&self, id: &str) -> UniqueKey {
        UniqueKey::new(self.unique_field.clone(), id.to_string())
    }

    /// The user's count of password resets.
    fn resets(user: &UserRecord) -> u64 {
        user.meta
            .get(authd_strategy_api::META_RESETS)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// Whether a stored key still works for `user` at `now`.
    fn is_live(&self, key: &stored::StoredKeyV1, user: &UserRecord, now: u64) -> bool {
        key.expires_at.is_none_or(|at| now < at)
            && !(self.config.revoke_on_reset && key.resets < Inner::resets(user))
    }

    async fn authenticate(&self, bearer: &str) -> Result<Option<BearerUser>, Error> {
        // The checksum first: a mistyped or made-up key costs no look-up at all.
        let Some(presented) = self.format.parse(bearer) else {
            return Ok(None);
        };
        let digest = key::digest(self.hash_key().await?, &presented.id, &presented.secret);
        let user = self
            .services
            .store
            .find_by_unique(&self.subject, &self.unique_key(&presented.id))
            .await?;
        let record = match &user {
            Some(user) => Some(StoredKeysV1::of(user, &self.field)?),
            None => None,
        };
        let stored = record
            .as_ref()
            .and_then(|r| r.keys.get(&presented.id))
            .cloned();
        let expected = stored
            .as_ref()
            .and_then(|k| key::from_hex(&k.hash))
            .unwrap_or(DUMMY_DIGEST);
        // One comparison whether or not the id is known.
        let equal = key::same(&digest, &expected);
        let (Some(user), Some(stored)) = (user, stored) else {
            return Ok(None);
        };
        let now = self.services.clock.now_secs();
        if !equal || !self.is_live(&stored, &user, now) {
            return Ok(None);
        }
        if self.usage.note(user.id, &presented.id, now) {
            usage::start_flusher(&self.usage, self.target.clone());
        }
        Ok(Some(BearerUser {
            user,
            key_id: presented.id,
        }))
    }
}

#[async_trait::async_trait]
impl Strategy for ApiKeyStrategy {
    fn phases(&self) -> &[PhaseSpec] {
        &self.0.phases
    }

    async fn handle(&self, phase: &str, request: PhaseRequest) -> Outcome {
        let inner = &self.0;
        match (phase, request.method, request.param.is_some()) {
            ("keys", Method::Post, false) => inner.create(&request).await,
            ("keys", Method::Get, false) => inner.list(&request),
            ("keys", Method::Delete, true) => inner.delete(&request).await,
            // The server routes only declared phases and methods here.
            _ => Ok(Verdict::Rejected(Rejection::NotFound)),
        }
    }

    fn recognizes_bearer(&self, bearer: &str) -> bool {
        self.0.format.recognizes(bearer)
    }

    async fn authenticate_bearer(&self, bearer: &str) -> Result<Option<BearerUser>, Error> {
        self.0.authenticate(bearer).await
    }

    fn credential_info(&self, user: &UserRecord) -> Option<Value> {
        let record = StoredKeysV1::of(user, &self.0.field).ok()?;
        let now = self.0.services.clock.now_secs();
        let live = record
            .keys
            .values()
            .filter(|k| self.0.is_live(k, user, now))
            .count();
        (!record.keys.is_empty()).then(|| json!({ "keys": live }))
    }

    fn remove_credential(&self, user: &UserRecord) -> Option<UserUpdate> {
        let record = StoredKeysV1::of(user, &self.0.field).ok()?;
        if record.keys.is_empty() {
            return None;
        }
        Some(UserUpdate {
            expect_secrets: vec![(
                self.0.field.clone(),
                user.secrets.get(&self.0.field).cloned(),
            )],
            secrets: [(self.0.field.clone(), None)].into(),
            unique_remove: record.keys.keys().map(|id| self.0.unique_key(id)).collect(),
            ..UserUpdate::default()
        })
    }
}
