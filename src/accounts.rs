//! Accounts users look after themselves: editing their attributes, deleting their account,
//! and confirming an address (AshAuthentication's confirmation add-on). Domain rules only;
//! the HTTP layer extracts parameters and renders the answers.
//!
//! A confirmation token (purpose `confirm`) is bound to the values it confirms (`bnd`: a
//! fingerprint of the monitored fields as they will be once confirmed), so that it dies when
//! they change again; it is single-use. With `inhibit_updates`, a change of a monitored field
//! waits in the user's meta (`pending`) until it is confirmed: the old value stays in force.

use std::time::Duration;

use authd_strategy_api::{
    Credential, Error, Event, Expect, FieldErrors, META_CONFIRMED_AT, Message, Params, Purpose,
    Rejection, Session, Templates, TokenSpec, UpdateOutcome, UserRecord, UserUpdate, event_names,
    kinds,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::registry::LiveConfirmation;
use crate::state::Generation;

/// The purpose of confirmation tokens.
pub const CONFIRM: Purpose = Purpose::new("confirm");
/// Where a change waiting for confirmation is kept in the user's meta.
const META_PENDING: &str = "pending";
/// How long after a resend request its look-up starts, at least (plus up to 30 ms).
const RESEND_DELAY: Duration = Duration::from_millis(20);
/// How recent a session must be to delete an account that has no password to re-enter.
const RECENT_SESSION_SECS: u64 = 300;

fn invalid(errors: FieldErrors) -> Result<Result<UserRecord, Rejection>, Error> {
    Ok(Err(Rejection::Invalid(errors)))
}

/// `PATCH /auth/<subject>/me`: changes attributes with the validation and uniqueness of a
/// registration. Monitored fields under confirmation wait or lose their confirmation.
///
/// # Errors
/// When the machinery fails.
pub async fn update(
    generation: &Generation,
    subject: &str,
    session: &Session,
    params: &Params,
) -> Result<Result<UserRecord, Rejection>, Error> {
    update_user(generation, subject, &session.user, params, false).await
}

/// Changes `user`'s attributes as [`update`] does; an operator's change (`by_operator`)
/// applies at once, monitored fields included, and sends no confirmation.
///
/// # Errors
/// When the machinery fails.
pub async fn update_user(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
    params: &Params,
    by_operator: bool,
) -> Result<Result<UserRecord, Rejection>, Error> {
    let Some(resource) = generation.registry.resource(subject) else {
        return Ok(Err(Rejection::NotFound));
    };
    let confirmation = generation
        .registry
        .confirmation(subject)
        .filter(|_| !by_operator);
    let mut errors = FieldErrors::default();
    let mut update = UserUpdate {
        expect_epoch: Some(user.session_epoch),
        ..UserUpdate::default()
    };
    let mut pending = Map::new();
    let store = &generation.services.store;
    for (name, value) in params {
        let Some(attr) = resource.attribute(name) else {
            errors.add(name, "is not an attribute that can be changed");
            continue;
        };
        let new = if value.is_null() {
            // A unique value may identify the user to a strategy: it cannot be removed.
            if attr.required || attr.unique {
                errors.add(name, "is required");
                continue;
            }
            Value::Null
        } else {
            match attr.check(value) {
                Ok(v) => v,
                Err(m) => {
                    errors.add(name, m);
                    continue;
                }
            }
        };
        if user.attributes.get(name).unwrap_or(&Value::Null) == &new {
            continue;
        }
        if attr.unique {
            if let Some(old) = user.attributes.get(name)
                && let Ok(key) = attr.unique_key(old)
            {
                update.unique_remove.push(key);
            }
            if !new.is_null() {
                match attr.unique_key(&new) {
                    Ok(key) => {
                        if store
                            .find_by_unique(subject, &key)
                            .await?
                            .is_some_and(|other| other.id != user.id)
                        {
                            errors.add(name, "has already been taken");
                            continue;
                        }
                        update.unique_add.push(key);
                    }
                    Err(m) => {
                        errors.add(name, m);
                        continue;
                    }
                }
            }
        }
        let monitored = confirmation.is_some_and(|c| {
            c.config.confirm_on_update
                && resource
                    .confirmation
                    .as_ref()
                    .is_some_and(|s| s.monitor_fields.contains(name))
        });
        if monitored && confirmation.is_some_and(|c| c.config.inhibit_updates) {
            // Kept aside until confirmed; its unique value is not taken yet.
            if let Ok(key) = attr.unique_key(&new) {
                update.unique_add.retain(|k| k != &key);
            }
            update.unique_remove.retain(|k| k.field != *name);
            pending.insert(name.clone(), new);
            continue;
        }
        if monitored {
            update.meta.insert(META_CONFIRMED_AT.into(), Value::Null);
        }
        update.attributes.insert(name.clone(), new);
    }
    if !errors.is_empty() {
        return invalid(errors);
    }
    let sends = confirmation.is_some()
        && (!pending.is_empty() || update.meta.contains_key(META_CONFIRMED_AT));
    if !pending.is_empty() {
        update
            .meta
            .insert(META_PENDING.into(), Value::Object(pending));
    }
    let updated = match store.update(subject, user.id, update).await? {
        UpdateOutcome::Updated(u) => u,
        UpdateOutcome::Taken(field) => {
            return invalid(FieldErrors::one(&field, "has already been taken"));
        }
        UpdateOutcome::NotFound | UpdateOutcome::Conflict | UpdateOutcome::TokenUsed => {
            return Ok(Err(Rejection::InvalidToken));
        }
    };
    if sends && let Some(c) = confirmation {
        send_confirmation(generation, subject, c, &updated).await?;
    }
    Ok(Ok(updated))
}

/// `DELETE /auth/<subject>/me`: the user proves it is them again (a password of one of
/// their strategies; without any, a session from the last five minutes), and with a second
/// factor on, that too (a TOTP code); then the user, its unique values and credentials are
/// deleted: every token of the user is refused from then on (the user is gone), and the
/// identity can register again.
///
/// The second factor is asked only once the first proof is good, so that a wrong password
/// does not spend a code; its failures count against it like any other code's.
///
/// # Errors
/// When the machinery fails.
pub async fn delete(
    generation: &Generation,
    subject: &str,
    session: &Session,
    params: &Params,
) -> Result<Result<(), Rejection>, Error> {
    let user = &session.user;
    let mut answered = false;
    let mut proved = false;
    let (second_factors, first_factors): (Vec<_>, Vec<_>) = generation
        .registry
        .strategies_of(subject)
        .map(|(_, strategy)| strategy)
        .partition(|strategy| strategy.second_factor().is_some());
    for strategy in first_factors {
        match strategy.reauthenticate(user, params).await? {
            Some(true) => {
                proved = true;
                break;
            }
            Some(false) => answered = true,
            None => {}
        }
    }
    if !proved && !answered {
        let now = generation.services.clock.now_secs();
        proved = matches!(&session.credential, Credential::Token(c) if c.iat + RECENT_SESSION_SECS >= now);
    }
    if !proved {
        return Ok(Err(Rejection::AuthenticationFailed));
    }
    for strategy in second_factors {
        if !strategy.second_factor().is_some_and(|f| f.is_on(user)) {
            continue;
        }
        if strategy.reauthenticate(user, params).await? != Some(true) {
            return Ok(Err(Rejection::AuthenticationFailed));
        }
    }
    if let Some(gone) = generation.services.store.delete(subject, user.id).await? {
        generation.services.events.emit(Event::Account {
            name: event_names::USER_DELETED,
            subject,
            strategy: None,
            user: Some(&gone),
        });
    }
    Ok(Ok(()))
}

/// The values a confirmation confirms: the pending ones, else the current ones.
fn target_values(monitor: &[String], user: &UserRecord) -> Map<String, Value> {
    let pending = user.meta.get(META_PENDING).and_then(Value::as_object);
    monitor
        .iter()
        .map(|f| {
            let v = pending
                .and_then(|p| p.get(f))
                .or_else(|| user.attributes.get(f))
                .cloned()
                .unwrap_or(Value::Null);
            (f.clone(), v)
        })
        .collect()
}

fn fingerprint(values: &Map<String, Value>) -> String {
    use base64::Engine;
    let digest = Sha256::digest(Value::Object(values.clone()).to_string().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
}

fn act(subject: &str) -> String {
    format!("confirm_{subject}")
}

fn templates() -> Templates {
    Templates {
        subject: "Confirm your address".into(),
        body_with_url: "To confirm this address for your account, open this link:\n\n{{url}}\n\n\
The link works once and expires at {{expires_at}}. If you did not ask for this, ignore this email.\n"
            .into(),
        body_with_token: "To confirm this address for your account, use this token:\n\n{{token}}\n\n\
It works once and expires at {{expires_at}}. If you did not ask for this, ignore this email.\n"
            .into(),
    }
}

/// Issues a confirmation token for the user's target values and hands the message over.
async fn send_confirmation(
    generation: &Generation,
    subject: &str,
    confirmation: &LiveConfirmation,
    user: &UserRecord,
) -> Result<(), Error> {
    let Some(spec) = generation
        .registry
        .resource(subject)
        .and_then(|r| r.confirmation.as_ref())
    else {
        return Ok(());
    };
    let values = target_values(&spec.monitor_fields, user);
    let token = generation.services.tokens.issue(TokenSpec {
        subject,
        user,
        purpose: CONFIRM,
        lifetime: confirmation.config.token_lifetime,
        act: Some(act(subject)),
        bnd: Some(fingerprint(&values)),
    })?;
    // The message goes to the address being confirmed.
    let mut view = user.public_view();
    if let Value::Object(map) = &mut view {
        for (k, v) in &values {
            map.insert(k.clone(), v.clone());
        }
    }
    confirmation
        .sender
        .send(Message {
            kind: kinds::CONFIRMATION.into(),
            subject: subject.to_string(),
            strategy: String::new(),
            user: view,
            token: Some(token.token),
            expires_at: token.claims.exp,
            data: Map::new(),
            templates: templates(),
        })
        .await
        .map_err(Error::Internal)
}

/// After a registration: a confirmation when the resource asks for one on create.
///
/// # Errors
/// When the machinery fails (the message could not be queued).
pub async fn after_create(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
) -> Result<(), Error> {
    let Some(c) = generation.registry.confirmation(subject) else {
        return Ok(());
    };
    let confirmed = generation
        .registry
        .resource(subject)
        .is_some_and(|r| r.is_confirmed(user));
    if c.config.confirm_on_create && !confirmed {
        send_confirmation(generation, subject, c, user).await?;
    }
    Ok(())
}

/// `POST /auth/<subject>/confirm` (or the GET without `require_interaction`): applies a
/// pending change, if any, and marks the user confirmed.
///
/// # Errors
/// When the machinery fails.
pub async fn confirm(
    generation: &Generation,
    subject: &str,
    token: &str,
) -> Result<Result<UserRecord, Rejection>, Error> {
    let (Some(resource), Some(_)) = (
        generation.registry.resource(subject),
        generation.registry.confirmation(subject),
    ) else {
        return Ok(Err(Rejection::NotFound));
    };
    let Some(spec) = &resource.confirmation else {
        return Ok(Err(Rejection::NotFound));
    };
    let act = act(subject);
    let Some((user, claims)) = authd_strategy_api::check(
        generation.services.tokens.as_ref(),
        generation.services.store.as_ref(),
        token,
        Expect {
            subject,
            purpose: &CONFIRM,
            act: Some(&act),
        },
    )
    .await?
    .filter(|(user, claims)| {
        claims.bnd.as_deref()
            == Some(fingerprint(&target_values(&spec.monitor_fields, user)).as_str())
    }) else {
        return Ok(Err(Rejection::InvalidToken));
    };
    let mut update = UserUpdate {
        consume: Some((claims.jti.clone(), claims.exp)),
        meta: [
            (
                META_CONFIRMED_AT.to_string(),
                json!(generation.services.clock.now_secs()),
            ),
            (META_PENDING.to_string(), Value::Null),
        ]
        .into_iter()
        .collect(),
        ..UserUpdate::default()
    };
    if let Some(pending) = user.meta.get(META_PENDING).and_then(Value::as_object) {
        for (name, value) in pending {
            let Some(attr) = resource.attribute(name) else {
                continue;
            };
            if attr.unique {
                if let Some(key) = user
                    .attributes
                    .get(name)
                    .and_then(|v| attr.unique_key(v).ok())
                {
                    update.unique_remove.push(key);
                }
                if let Ok(key) = attr.unique_key(value) {
                    update.unique_add.push(key);
                }
            }
            update.attributes.insert(name.clone(), value.clone());
        }
    }
    match generation
        .services
        .store
        .update(subject, user.id, update)
        .await?
    {
        UpdateOutcome::Updated(user) => Ok(Ok(user)),
        UpdateOutcome::Taken(field) => Ok(Err(Rejection::Invalid(FieldErrors::one(
            &field,
            "has already been taken",
        )))),
        _ => Ok(Err(Rejection::InvalidToken)),
    }
}

/// `POST /auth/<subject>/confirm/resend`: answers at once; the look-up and the message happen
/// 20 to 50 ms later in the background, so that the answer and its timing are the same
/// whether or not the identity exists.
///
/// # Errors
/// When the machinery fails (the request limit cannot be counted).
pub async fn resend(
    generation: &std::sync::Arc<Generation>,
    subject: &str,
    params: &Params,
    client_ip: std::net::IpAddr,
) -> Result<Result<(), Rejection>, Error> {
    let (Some(resource), Some(confirmation)) = (
        generation.registry.resource(subject),
        generation.registry.confirmation(subject),
    ) else {
        return Ok(Err(Rejection::NotFound));
    };
    let Some(spec) = &resource.confirmation else {
        return Ok(Err(Rejection::NotFound));
    };
    // The identity: the first unique monitored field.
    let Some(attr) = spec
        .monitor_fields
        .iter()
        .filter_map(|f| resource.attribute(f))
        .find(|a| a.unique)
    else {
        return Ok(Err(Rejection::NotFound));
    };
    let identity = match params.get(&attr.name) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Ok(Err(Rejection::Invalid(FieldErrors::one(
                &attr.name,
                "is required",
            ))));
        }
        Some(_) => {
            return Ok(Err(Rejection::Invalid(FieldErrors::one(
                &attr.name,
                "must be a string",
            ))));
        }
    };
    let key = attr.unique_key(&Value::String(identity.clone())).ok();
    if let Some(limit) = &confirmation.config.request_limit {
        let scope = format!("{subject}/confirm/resend");
        let value = key
            .as_ref()
            .map_or_else(|| identity.to_lowercase(), |k| k.value.clone());
        let keys = vec![
            limit.identity(&scope, &value),
            limit.address(&scope, client_ip),
        ];
        if let Err(retry_after_secs) = generation.services.throttle().count(keys).await? {
            return Ok(Err(Rejection::RateLimited { retry_after_secs }));
        }
    }
    let Ok(permit) = std::sync::Arc::clone(&confirmation.in_flight).try_acquire_owned() else {
        return Ok(Err(Rejection::Busy {
            retry_after_secs: 1,
        }));
    };
    let generation = std::sync::Arc::clone(generation);
    let subject = subject.to_string();
    let delay = RESEND_DELAY + Duration::from_millis(rand::random_range(0..30));
    tokio::spawn(async move {
        let _permit = permit;
        tokio::time::sleep(delay).await;
        let Some(key) = key else { return };
        let Some(confirmation) = generation.registry.confirmation(&subject) else {
            return;
        };
        let outcome = async {
            let Some(user) = generation
                .services
                .store
                .find_by_unique(&subject, &key)
                .await?
            else {
                return Ok(());
            };
            let confirmed = generation
                .registry
                .resource(&subject)
                .is_some_and(|r| r.is_confirmed(&user));
            if confirmed && !user.meta.contains_key(META_PENDING) {
                return Ok(());
            }
            send_confirmation(&generation, &subject, confirmation, &user).await
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(subject = %subject, error = %e, "AC0001 confirmation not resent");
        }
    });
    Ok(Ok(()))
}
