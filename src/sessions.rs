//! Sessions, as a domain: who a bearer credential is, what a successful sign-in is given (a
//! session token, or first a second factor), signing out. The rules of `/me` and `/sign_out`
//! live here; the HTTP layer only extracts the bearer and maps results to responses.
//!
//! A session token is accepted only when its signature and times are good, its purpose is
//! `user`, its subject is the resource asked for, it has not been signed out, its user exists,
//! and its session epoch is the user's (a reset or "sign out everywhere" bumps the epoch).

use authd_strategy_api::{
    Credential, Error, Grant, IssuedToken, Purpose, Rejection, Session, TokenError, TokenSpec,
    Tokens, UpdateOutcome, UserRecord, UserUpdate,
};
use serde_json::{Map, Value, json};

use crate::state::Generation;

/// Finds the caller of `subject` by a bearer credential: a session token, or a credential a
/// strategy of the resource recognizes (an API key). `None` when it is not good.
///
/// # Errors
/// When the machinery fails (the store is down), never for a bad credential.
pub async fn authenticate(
    generation: &Generation,
    subject: &str,
    bearer: &str,
) -> Result<Option<Session>, Error> {
    for (name, strategy) in generation.registry.strategies_of(subject) {
        if strategy.recognizes_bearer(bearer) {
            return Ok(strategy
                .authenticate_bearer(bearer)
                .await?
                .map(|found| Session {
                    user: found.user,
                    credential: Credential::ApiKey {
                        strategy: name.to_string(),
                        key_id: found.key_id,
                    },
                }));
        }
    }
    let claims = match generation.tokens.verify(bearer) {
        Ok(claims) => claims,
        Err(TokenError::Invalid) => return Ok(None),
        Err(TokenError::Internal(e)) => return Err(e),
    };
    if claims.purpose != Purpose::SESSION {
        return Ok(None);
    }
    let Some(id) = claims.user_id(subject) else {
        return Ok(None);
    };
    let user = generation
        .services
        .store
        .session_user(subject, id, &claims.jti)
        .await?
        .filter(|user| claims.sep.unwrap_or(0) == user.session_epoch);
    Ok(user.map(|user| Session {
        user,
        credential: Credential::Token(claims),
    }))
}

/// RFC 7662's answer for `token`, by the same rules as [`authenticate`]: a live session token
/// (signature, times, purpose, not signed out, the user's session epoch) or an API key of a
/// resource's strategy is `{"active": true, ...}`; anything else is `{"active": false}`,
/// whatever the reason.
///
/// # Errors
/// When the machinery fails (the store is down), never for a bad token.
pub async fn introspect(generation: &Generation, token: &str) -> Result<Value, Error> {
    let inactive = json!({ "active": false });
    // An API key: the resources with a strategy that recognizes its form.
    for resource in generation.registry.resources() {
        let subject = resource.name.as_str();
        let recognized = generation
            .registry
            .strategies_of(subject)
            .any(|(_, s)| s.recognizes_bearer(token));
        if !recognized {
            continue;
        }
        // Several resources may take keys of one form: the one that knows the key answers.
        if let Some(Session {
            user,
            credential: Credential::ApiKey { strategy, key_id },
        }) = authenticate(generation, subject, token).await?
        {
            return Ok(json!({
                "active": true,
                "sub": authd_strategy_api::Claims::subject_claim(subject, user.id),
                "iss": generation.tokens.issuer(),
                "token_type": "api_key",
                "strategy": strategy,
                "key_id": key_id,
            }));
        }
    }
    // A session token: its subject is in its `sub`, checked again by `authenticate`.
    let claims = match generation.tokens.verify(token) {
        Ok(claims) => claims,
        Err(TokenError::Invalid) => return Ok(inactive),
        Err(TokenError::Internal(e)) => return Err(e),
    };
    let Some((subject, _)) = claims.sub.split_once('?') else {
        return Ok(inactive);
    };
    if !generation.registry.has_subject(subject) {
        return Ok(inactive);
    }
    Ok(match authenticate(generation, subject, token).await? {
        Some(Session {
            credential: Credential::Token(claims),
            ..
        }) => {
            let mut answer = json!({
                "active": true,
                "sub": claims.sub,
                "exp": claims.exp,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "iss": claims.iss,
                "jti": claims.jti,
                "purpose": claims.purpose.as_str(),
                "token_type": "session",
            });
            match claims.aud.as_slice() {
                [] => {}
                [one] => answer["aud"] = json!(one),
                many => answer["aud"] = json!(many),
            }
            answer
        }
        _ => inactive,
    })
}

/// A session token for `user`.
///
/// # Errors
/// When signing fails.
pub fn issue(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
) -> Result<IssuedToken, Error> {
    let tokens = &generation.tokens;
    tokens.issue(TokenSpec {
        subject,
        user,
        purpose: Purpose::SESSION,
        lifetime: tokens.session_lifetime(),
        act: None,
        bnd: None,
    })
}

/// What a sign-in ends in, once the daemon has applied its rules to a strategy's verdict.
pub enum SignedIn {
    /// The user and the token to hand over (none for an unconfirmed registration).
    Token {
        user: UserRecord,
        token: Option<IssuedToken>,
        created: bool,
    },
    /// A second factor is required: continue at `step` with `token`.
    Continue { step: String, token: IssuedToken },
}

/// How the user reached the grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A public phase (a sign-in, a reset): second factors apply.
    FirstFactor,
    /// A phase of a signed-in user (change password): the session already passed every
    /// factor, so the new session is granted at once.
    Session,
}

/// Applies the session rules to an `Authenticated` verdict of `strategy`: a session grant
/// becomes a session token, unless it comes from a first factor, a second factor of the
/// resource continues after this strategy and the user has it on (then a short-lived token
/// for that step, and no session).
///
/// # Errors
/// When signing fails.
pub fn sign_in(
    generation: &Generation,
    subject: &str,
    strategy: &str,
    (user, created, grant): (UserRecord, bool, Grant),
    via: Via,
) -> Result<SignedIn, Error> {
    match grant {
        Grant::None => Ok(SignedIn::Token {
            user,
            token: None,
            created,
        }),
        Grant::Token(token) => Ok(SignedIn::Token {
            user,
            token: Some(token),
            created,
        }),
        Grant::Session => {
            let factors = generation
                .registry
                .strategies_of(subject)
                .filter(|_| via == Via::FirstFactor);
            for (step, other) in factors {
                let Some(factor) = other.second_factor() else {
                    continue;
                };
                if step != strategy
                    && factor.required_after().iter().any(|s| s == strategy)
                    && factor.is_on(&user)
                {
                    return Ok(SignedIn::Continue {
                        step: step.to_string(),
                        token: factor.begin(&user, strategy)?,
                    });
                }
            }
            let token = issue(generation, subject, &user)?;
            Ok(SignedIn::Token {
                user,
                token: Some(token),
                created,
            })
        }
    }
}

/// Signs a session token out: it is refused from now on. API keys are deleted, not signed out.
///
/// # Errors
/// [`Rejection::InvalidToken`] for an API key; the store's failure.
pub async fn sign_out(
    generation: &Generation,
    session: &Session,
) -> Result<Result<(), Rejection>, Error> {
    match &session.credential {
        Credential::Token(claims) => {
            generation
                .services
                .store
                .kill(&claims.jti, claims.exp)
                .await?;
            Ok(Ok(()))
        }
        Credential::ApiKey { .. } => Ok(Err(Rejection::InvalidToken)),
    }
}

/// Every token of the user dies: session, sign-in and reset tokens alike.
///
/// # Errors
/// The store's failure.
pub async fn sign_out_everywhere(
    generation: &Generation,
    subject: &str,
    user: &UserRecord,
) -> Result<(), Error> {
    let update = UserUpdate {
        bump_sessions: true,
        ..UserUpdate::default()
    };
    match generation
        .services
        .store
        .update(subject, user.id, update)
        .await?
    {
        UpdateOutcome::Updated(_) | UpdateOutcome::NotFound => Ok(()),
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// The user as the API shows it: id, attributes, what each strategy adds (`totp`), and
/// `confirmed_at` when the resource has confirmation.
pub fn view(generation: &Generation, subject: &str, user: &UserRecord) -> Value {
    let mut out = Map::with_capacity(user.attributes.len() + 2);
    for (k, v) in &user.attributes {
        out.insert(k.clone(), v.clone());
    }
    out.extend(view_fields(generation, subject, user));
    Value::Object(out)
}

/// The fields of a user's view that are not attributes: `id`, the confirmation time, what
/// strategies add. They win over an attribute of the same name.
fn view_fields(generation: &Generation, subject: &str, user: &UserRecord) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(user.id.to_string()));
    if let Some(resource) = generation.registry.resource(subject)
        && let Some(confirmation) = &resource.confirmation
    {
        let at = user
            .meta
            .get(authd_strategy_api::META_CONFIRMED_AT)
            .and_then(Value::as_u64)
            .map_or(Value::Null, |secs| json!(rfc3339(secs)));
        out.insert(confirmation.confirmed_at_field.clone(), at);
    }
    for (_, strategy) in generation.registry.strategies_of(subject) {
        strategy.describe_user(user, &mut out);
    }
    out
}

/// [`view`] written as it is serialized, without building the tree of its values first:
/// what `GET /me` answers on every call. The same keys, values and order (both maps are
/// sorted; they are merged).
pub struct View<'a> {
    user: &'a UserRecord,
    fields: Map<String, Value>,
}

impl<'a> View<'a> {
    pub fn new(generation: &Generation, subject: &str, user: &'a UserRecord) -> View<'a> {
        View {
            user,
            fields: view_fields(generation, subject, user),
        }
    }
}

impl serde::Serialize for View<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        merged(&self.user.attributes, &self.fields, |k, v| {
            map.serialize_entry(k, v)
        })?;
        map.end()
    }
}

/// Calls `f` on each entry of `a` and `b` (both sorted by key) in key order, as one map in
/// which `b` wins over `a` on a key both have.
fn merged<E>(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    mut f: impl FnMut(&String, &Value) -> Result<(), E>,
) -> Result<(), E> {
    use std::cmp::Ordering;
    let mut a = a.iter().peekable();
    let mut b = b.iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (Some((ka, _)), Some((kb, _))) => kb.cmp(ka),
        };
        if order == Ordering::Equal {
            a.next();
        }
        let next = if order == Ordering::Greater {
            a.next()
        } else {
            b.next()
        };
        if let Some((k, v)) = next {
            f(k, v)?;
        }
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// The body of a sign-in answer.
pub fn signed_in_body(generation: &Generation, subject: &str, signed_in: &SignedIn) -> Value {
    match signed_in {
        SignedIn::Token { user, token, .. } => {
            let mut body = json!({ "user": view(generation, subject, user) });
            if let Some(token) = token {
                body["token"] = json!(token.token);
            }
            body
        }
        SignedIn::Continue { step, token } => json!({ "continue": step, "token": token.token }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn merging_two_sorted_maps_gives_the_map_of_both_with_the_second_winning() {
        let a: Map<String, Value> =
            serde_json::from_str(r#"{"b": 1, "d": 2, "f": 3, "id": "attr"}"#).unwrap();
        let b: Map<String, Value> =
            serde_json::from_str(r#"{"a": 9, "d": 8, "id": "field", "z": 7}"#).unwrap();
        let mut out = Vec::new();
        merged::<()>(&a, &b, |k, v| {
            out.push((k.clone(), v.clone()));
            Ok(())
        })
        .unwrap();
        let mut expected = a.clone();
        expected.extend(b.clone());
        let expected: Vec<(String, Value)> = expected.into_iter().collect();
        assert_eq!(out, expected);
    }
}
