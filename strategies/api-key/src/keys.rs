//! The `keys` phases of a signed-in user: `POST keys` makes a key (shown in that answer
//! only), `GET keys` lists the live ones without secrets, `DELETE keys/{id}` deletes one.
//!
//! Managing keys needs a session token: a key cannot make, list or delete keys, so that a
//! leaked key cannot make itself a successor. Every change is a compare-and-swap of the
//! user's record (retried a few times), which keeps `max_keys_per_user` under concurrency;
//! dead keys (expired, revoked by a reset) are dropped from the record by any change.

use std::time::Duration;

use authd_strategy_api::{
    Credential, Error, FieldErrors, Outcome, PhaseRequest, Rejection, UpdateOutcome, UserRecord,
    UserUpdate, Verdict, parse_lifetime,
};
use serde_json::{Value, json};

use crate::Inner;
use crate::config::MAX_LIFETIME;
use crate::key;
use crate::stored::{StoredKeyV1, StoredKeysV1};

/// The longest name of a key, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 100;
/// Attempts at a change when the record changes under it.
const ATTEMPTS: usize = 5;

fn rejected(r: Rejection) -> Outcome {
    Ok(Verdict::Rejected(r))
}

fn invalid(field: &str, message: impl Into<String>) -> Outcome {
    rejected(Rejection::Invalid(FieldErrors::one(field, message)))
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn time(secs: Option<u64>) -> Value {
    secs.map_or(Value::Null, |s| Value::String(rfc3339(s)))
}

impl Inner {
    /// The caller, if it signed in with a session token.
    fn session_user<'a>(&self, request: &'a PhaseRequest) -> Option<&'a UserRecord> {
        let session = request.session.as_ref()?;
        matches!(session.credential, Credential::Token(_)).then_some(&session.user)
    }

    /// The record of `user` with its dead keys taken out (returned apart, for their unique
    /// values to be removed).
    fn live_record(
        &self,
        user: &UserRecord,
        now: u64,
    ) -> Result<(StoredKeysV1, Vec<String>), Error> {
        let mut record = StoredKeysV1::of(user, &self.field)?;
        let dead: Vec<String> = record
            .keys
            .iter()
            .filter(|(_, k)| !self.is_live(k, user, now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            record.keys.remove(id);
        }
        Ok((record, dead))
    }

    /// The update that writes `record` over the one `user` has, removing `dead` keys' ids.
    fn swap(&self, user: &UserRecord, record: &StoredKeysV1, dead: &[String]) -> UserUpdate {
        UserUpdate {
            expect_secrets: vec![(self.field.clone(), user.secrets.get(&self.field).cloned())],
            secrets: [(self.field.clone(), record.to_text())].into(),
            unique_remove: dead.iter().map(|id| self.unique_key(id)).collect(),
            ..UserUpdate::default()
        }
    }

    /// How long the new key lives: `expires_in` (at most the default lifetime), else the
    /// default lifetime, else for ever.
    fn lifetime(&self, value: Option<&Value>) -> Result<Option<Duration>, String> {
        let asked = match value {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(parse_lifetime(text)?),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(secs) if secs > 0 => Some(Duration::from_secs(secs)),
                _ => return Err("must be a positive number of seconds".into()),
            },
            Some(_) => return Err("must be a duration such as \"30d\" or seconds".into()),
        };
        let most = self.config.default_lifetime.unwrap_or(MAX_LIFETIME);
        match asked {
            Some(d) if d > most => Err(format!(
                "must be at most {}",
                humantime::format_duration(most)
            )),
            Some(d) => Ok(Some(d)),
            None => Ok(self.config.default_lifetime),
        }
    }

    pub(crate) async fn create(&self, request: &PhaseRequest) -> Outcome {
        let Some(caller) = self.session_user(request) else {
            return rejected(Rejection::InvalidToken);
        };
        let params = &request.params;
        let mut errors = FieldErrors::default();
        let name = match params.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let s = s.trim();
                if s.chars().count() > MAX_NAME_CHARS {
                    errors.add(
                        "name",
                        format!("is too long (maximum {MAX_NAME_CHARS} characters)"),
                    );
                } else if s.chars().any(char::is_control) {
                    errors.add("name", "must not contain control characters");
                }
                s.to_string()
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {
                errors.add("name", "is required");
                String::new()
            }
            Some(_) => {
                errors.add("name", "must be a string");
                String::new()
            }
        };
        let lifetime = self.lifetime(params.get("expires_in")).unwrap_or_else(|m| {
            errors.add("expires_in", m);
            None
        });
        if !errors.is_empty() {
            return rejected(Rejection::Invalid(errors));
        }
        let hash_key = *self.hash_key().await?;
        for _ in 0..ATTEMPTS {
            let Some(user) = self.services.store.get(&self.subject, caller.id).await? else {
                return rejected(Rejection::InvalidToken);
            };
            let now = self.services.clock.now_secs();
            let (mut record, dead) = self.live_record(&user, now)?;
            let max = self.config.max_keys_per_user;
            if record.keys.len() >= max as usize {
                return invalid(
                    "keys",
                    format!("at most {max} keys per user: delete one first"),
                );
            }
            let new = self.format.generate();
            let expires_at = lifetime.map(|d| now.saturating_add(d.as_secs()));
            record.keys.insert(
                new.id.clone(),
                StoredKeyV1 {
                    name: name.clone(),
                    hash: key::to_hex(&key::digest(&hash_key, &new.id, &new.secret)),
                    created_at: now,
                    expires_at,
                    resets: Inner::resets(&user),
                    last_used_at: None,
                },
            );
            let mut update = self.swap(&user, &record, &dead);
            update.unique_add = vec![self.unique_key(&new.id)];
            match self
                .services
                .store
                .update(&self.subject, user.id, update)
                .await?
            {
                UpdateOutcome::Updated(_) => {
                    return Ok(Verdict::Json {
                        status: 201,
                        body: json!({
                            "id": new.id,
                            "name": name,
                            "key": new.text,
                            "created_at": rfc3339(now),
                            "expires_at": time(expires_at),
                        }),
                    });
                }
                UpdateOutcome::NotFound => return rejected(Rejection::InvalidToken),
                // Another change of the user's keys went first (or, never in practice, the
                // random id is taken): read again.
                UpdateOutcome::Conflict | UpdateOutcome::Taken(_) | UpdateOutcome::TokenUsed => {}
            }
        }
        Err(Error::Internal(
            "AK0004 the user's API keys kept changing during a creation".into(),
        ))
    }

    pub(crate) fn list(&self, request: &PhaseRequest) -> Outcome {
        let Some(user) = self.session_user(request) else {
            return rejected(Rejection::InvalidToken);
        };
        let now = self.services.clock.now_secs();
        let (record, _) = self.live_record(user, now)?;
        let mut keys: Vec<(&String, &StoredKeyV1)> = record.keys.iter().collect();
        keys.sort_by_key(|(id, k)| (k.created_at, *id));
        let keys: Vec<Value> = keys
            .into_iter()
            .map(|(id, k)| {
                // Uses noted since the last flush are newer than the stored one.
                let last = k.last_used_at.max(self.usage.noted(user.id, id));
                json!({
                    "id": id,
                    "name": k.name,
                    "created_at": rfc3339(k.created_at),
                    "expires_at": time(k.expires_at),
                    "last_used_at": time(last),
                })
            })
            .collect();
        Ok(Verdict::Json {
            status: 200,
            body: json!({ "keys": keys }),
        })
    }

    pub(crate) async fn delete(&self, request: &PhaseRequest) -> Outcome {
        let Some(caller) = self.session_user(request) else {
            return rejected(Rejection::InvalidToken);
        };
        let Some(id) = request.param.as_deref().filter(|id| self.format.is_id(id)) else {
            return rejected(Rejection::NotFound);
        };
        for _ in 0..ATTEMPTS {
            let Some(user) = self.services.store.get(&self.subject, caller.id).await? else {
                return rejected(Rejection::InvalidToken);
            };
            let now = self.services.clock.now_secs();
            let (mut record, mut dead) = self.live_record(&user, now)?;
            // Another user's key, an unknown id, or a dead key: not found here.
            if record.keys.remove(id).is_none() {
                return rejected(Rejection::NotFound);
            }
            dead.push(id.to_string());
            let update = self.swap(&user, &record, &dead);
            match self
                .services
                .store
                .update(&self.subject, user.id, update)
                .await?
            {
                UpdateOutcome::Updated(_) => return Ok(Verdict::NoContent),
                UpdateOutcome::NotFound => return rejected(Rejection::InvalidToken),
                UpdateOutcome::Conflict | UpdateOutcome::Taken(_) | UpdateOutcome::TokenUsed => {}
            }
        }
        Err(Error::Internal(
            "AK0005 the user's API keys kept changing during a deletion".into(),
        ))
    }
}
