//! `sign_in`: the token of a link for a session. With `require_interaction` a `GET` (a mail
//! scanner following the link, or the user's browser) changes nothing and answers that a
//! `POST` is needed; the `POST` signs in.
//!
//! A token is accepted when it is signed, unexpired, of this strategy, of the user's current
//! session epoch, bound to the user's current link value (a newer link replaced it otherwise)
//! and, with `single_use_token`, not used before. A registration link (for an identity that
//! had no account) creates the account with the id the token names. Every refusal is the same
//! `invalid_token`.

use authd_strategy_api::{
    Event, Grant, InsertError, Method, NewUser, Outcome, PhaseRequest, Rejection, TokenError,
    UserRecord, Verdict, event_names,
};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::request::REGISTER;
use crate::{Inner, MAGIC_LINK, new_binding, string_param};

fn invalid_token() -> Outcome {
    Ok(Verdict::Rejected(Rejection::InvalidToken))
}

impl Inner {
    pub(crate) async fn sign_in(&self, request: &PhaseRequest) -> Outcome {
        let token = match string_param(&request.params, "token") {
            Ok(token) => token,
            Err(r) => return Ok(Verdict::Rejected(r)),
        };
        if request.method == Method::Get && self.config.require_interaction {
            // Nothing is looked at, let alone consumed: a link scanner gets this answer too.
            return Ok(Verdict::Json {
                status: 200,
                body: json!({
                    "status": "interaction_required",
                    "method": "POST",
                    "message": "POST the token to this URL to sign in",
                }),
            });
        }
        let claims = match self.services.tokens.verify(token) {
            Ok(claims) => claims,
            Err(TokenError::Invalid) => return invalid_token(),
            Err(TokenError::Internal(e)) => return Err(e),
        };
        if claims.purpose != MAGIC_LINK || claims.act.as_deref() != Some(self.act.as_str()) {
            return invalid_token();
        }
        let (Some(id), Some(bound)) = (claims.user_id(&self.subject), claims.bnd.as_deref()) else {
            return invalid_token();
        };
        let Some(user) = self.services.store.get(&self.subject, id).await? else {
            return self.register(id, bound, &claims.jti, claims.exp).await;
        };
        let current = user
            .meta
            .get(&self.binding_key)
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bound_ok: bool = current.as_bytes().ct_eq(bound.as_bytes()).into();
        if !bound_ok || claims.sep.unwrap_or(0) != user.session_epoch || current.is_empty() {
            return invalid_token();
        }
        if self.config.single_use_token
            && !self.services.store.consume(&claims.jti, claims.exp).await?
        {
            return invalid_token();
        }
        Ok(Verdict::Authenticated {
            user,
            created: false,
            grant: Grant::Session,
        })
    }

    /// A registration link: creates the account it names, once.
    async fn register(&self, id: uuid::Uuid, bound: &str, jti: &str, exp: u64) -> Outcome {
        let Some(value) = bound.strip_prefix(REGISTER) else {
            return invalid_token();
        };
        if !self.config.registration_enabled {
            return invalid_token();
        }
        let Some(key) = self.identity_key(value) else {
            return invalid_token();
        };
        // Consumed before the insert, so that two racing uses cannot both get in; without
        // `single_use_token` the id the token names is taken after the first use anyway.
        if self.config.single_use_token && !self.services.store.consume(jti, exp).await? {
            return invalid_token();
        }
        let now = self.services.clock.now_secs();
        let mut meta = Map::new();
        // No link sent before the account existed matches this value: the first registration
        // link used kills the others.
        meta.insert(self.binding_key.clone(), Value::String(new_binding()));
        if self.resource.confirmation.is_some() {
            // The link reached the identity: that is what confirmation proves.
            meta.insert(authd_strategy_api::META_CONFIRMED_AT.into(), json!(now));
        }
        let new = NewUser {
            id: Some(id),
            attributes: [(
                self.config.identity_field.clone(),
                Value::String(value.to_string()),
            )]
            .into_iter()
            .collect(),
            secrets: Default::default(),
            meta,
            unique: vec![key],
            created_at: now,
            session_epoch: 0,
        };
        let user: UserRecord = match self.services.store.insert(&self.subject, new).await? {
            Ok(user) => user,
            // The identity got an account meanwhile (by another link or strategy), or this
            // link was used already: it asks for a new link.
            Err(InsertError::Taken(_) | InsertError::IdTaken) => return invalid_token(),
        };
        self.services.events.emit(Event::Account {
            name: event_names::USER_REGISTERED,
            subject: &self.subject,
            strategy: Some(&self.name),
            user: Some(&user),
        });
        Ok(Verdict::Authenticated {
            user,
            created: true,
            grant: Grant::Session,
        })
    }
}
