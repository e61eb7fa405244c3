//! `sign_in` (identity and password), `sign_in_with_token` (a sign-in token for a session),
//! and the re-authentication that destructive account actions ask for.
//!
//! Every attempt is counted before the password is verified (per identity and per address),
//! so that simultaneous guesses cannot run more verifications than `rate_limit` allows; an
//! unknown identity is verified against a dummy hash of the same parameters, and success and
//! failure each make one more durable write, so that timing tells nothing.

use authd_strategy_api::{
    Error, Event, Expect, FieldErrors, Grant, Outcome, Params, PhaseRequest, Rejection, TokenSpec,
    UpdateOutcome, UserRecord, UserUpdate, Verdict, event_names,
};
use serde_json::Value;

use crate::rules::{busy, invalid, rate_limited, rejected, string_param};
use crate::{Inner, Pooled, SIGN_IN};

impl Inner {
    pub(crate) async fn sign_in(&self, request: &PhaseRequest) -> Outcome {
        let c = &self.config;
        let params = &request.params;
        let mut errors = FieldErrors::default();
        let identity = string_param(params, &c.identity_field, &mut errors);
        let password = string_param(params, &c.password_field, &mut errors);
        let want_sign_in_token = match params.get("token_type") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == "user" || s == "session" => false,
            Some(Value::String(s)) if s == "sign_in" && c.sign_in_tokens_enabled => true,
            Some(Value::String(s)) if s == "sign_in" => {
                errors.add(
                    "token_type",
                    "sign-in tokens are not enabled for this strategy",
                );
                false
            }
            Some(_) => {
                errors.add("token_type", "must be \"user\" or \"sign_in\"");
                false
            }
        };
        let (Some(identity), Some(password)) = (identity, password) else {
            return invalid(errors);
        };
        if !errors.is_empty() {
            return invalid(errors);
        }
        if self.impossible_password(password) {
            // No stored password can match: refused as any wrong password, without hashing.
            return rejected(Rejection::AuthenticationFailed);
        }

        if self.services.pool.is_full() {
            // Refused at once, before the attempt is counted (a durable write) or the identity
            // looked up: under a flood of sign-ins a refusal costs a counter's read. Nothing
            // about the identity shows, since nothing about it was read.
            return busy();
        }
        let throttle_value = self.identity_throttle_value(identity);
        let keys = self.attempt_keys(Some(&throttle_value), request.client_ip);
        let reservation = match self.throttle.reserve(keys).await? {
            Ok(r) => r,
            Err(retry_after) => return rate_limited(retry_after),
        };
        let user = match self.identity_key(identity) {
            Some(key) => {
                self.services
                    .store
                    .find_by_unique(&self.subject, &key)
                    .await?
            }
            None => None,
        };
        let stored = user
            .as_ref()
            .and_then(|u| self.stored_hash(u))
            .map(str::to_string);
        // Unknown identity (or a user without this strategy's password): verify against a
        // dummy hash of the same parameters, so that both cost one verify.
        let known = stored.is_some();
        let target = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let verified = match self.verify(password, target.clone()).await? {
            Pooled::Done(ok) => ok,
            Pooled::Busy => {
                // Not attempted: give the reservation back.
                self.throttle.release(reservation).await?;
                return busy();
            }
        };
        let user = match user {
            Some(user) if known && verified => Ok(user),
            other => Err(other),
        };
        let Ok(mut user) = user else {
            let locks = reservation.locks_identity();
            self.throttle.settle(reservation, false).await?;
            // Only a user that exists; an unknown identity is never named.
            let existing = user
                .as_ref()
                .err()
                .and_then(Option::as_ref)
                .filter(|_| known);
            self.services.events.emit(Event::Account {
                name: event_names::USER_SIGN_IN_FAILED,
                subject: &self.subject,
                strategy: Some(&self.name),
                user: existing,
            });
            if locks {
                self.services.events.emit(Event::Account {
                    name: event_names::USER_LOCKED_OUT,
                    subject: &self.subject,
                    strategy: Some(&self.name),
                    user: existing,
                });
            }
            return rejected(Rejection::AuthenticationFailed);
        };
        // The identity proved itself: its count is cleared, the address's given back.
        self.throttle.settle(reservation, true).await?;
        if c.require_confirmed && !self.resource.is_confirmed(&user) {
            return rejected(Rejection::Unconfirmed);
        }

        if c.rehash_on_sign_in && c.hash.is_stale(&target) {
            // Made with other parameters than the current ones: upgrade it now that we hold
            // the password. A failure here must not fail the sign-in.
            if let Ok(Pooled::Done(new_hash)) = self.hash(password).await {
                let update = UserUpdate {
                    expect_secrets: vec![(c.hashed_password_field.clone(), Some(target.clone()))],
                    secrets: [(c.hashed_password_field.clone(), Some(new_hash))].into(),
                    ..UserUpdate::default()
                };
                match self
                    .services
                    .store
                    .update(&self.subject, user.id, update)
                    .await
                {
                    Ok(UpdateOutcome::Updated(updated)) => {
                        self.services.events.emit(Event::Rehashed {
                            from: crate::hash::identify(&target)
                                .map_or("unknown", crate::hash::Format::name),
                            to: c.hash.algorithm().name(),
                        });
                        user = updated;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "AU0102 rehash on sign-in not stored"),
                }
            }
        }

        let grant = if want_sign_in_token {
            Grant::Token(self.services.tokens.issue(TokenSpec {
                subject: &self.subject,
                user: &user,
                purpose: SIGN_IN,
                lifetime: c.sign_in_token_lifetime,
                act: Some(self.act_sign_in.clone()),
                bnd: Some(self.fingerprint(&user)),
            })?)
        } else {
            Grant::Session
        };
        Ok(Verdict::Authenticated {
            user,
            created: false,
            grant,
        })
    }

    pub(crate) async fn sign_in_with_token(&self, request: &PhaseRequest) -> Outcome {
        let mut errors = FieldErrors::default();
        let Some(token) = string_param(&request.params, "token", &mut errors) else {
            return invalid(errors);
        };
        // Guessing tokens counts against the client's address.
        let keys = self.attempt_keys(None, request.client_ip);
        let reservation = match self.throttle.reserve(keys).await? {
            Ok(r) => r,
            Err(retry_after) => return rate_limited(retry_after),
        };
        let checked = authd_strategy_api::check(
            self.services.tokens.as_ref(),
            self.services.store.as_ref(),
            token,
            Expect {
                subject: &self.subject,
                purpose: &SIGN_IN,
                act: Some(&self.act_sign_in),
            },
        )
        .await?
        .filter(|(user, claims)| claims.bnd.as_deref() == Some(self.fingerprint(user).as_str()));
        let consumed = match &checked {
            Some((_, claims)) => self.services.store.consume(&claims.jti, claims.exp).await?,
            None => false,
        };
        let Some((user, _)) = checked.filter(|_| consumed) else {
            self.throttle.settle(reservation, false).await?;
            return rejected(Rejection::InvalidToken);
        };
        self.throttle.settle(reservation, true).await?;
        if self.config.require_confirmed && !self.resource.is_confirmed(&user) {
            return rejected(Rejection::Unconfirmed);
        }
        Ok(Verdict::Authenticated {
            user,
            created: false,
            grant: Grant::Session,
        })
    }

    /// Checks `password` in `params` against the user's stored hash: `None` when the user
    /// has no password of this strategy. Counted like a sign-in attempt of the identity.
    pub(crate) async fn reauthenticate(
        &self,
        user: &UserRecord,
        params: &Params,
    ) -> Result<Option<bool>, Error> {
        let Some(stored) = self.stored_hash(user).map(str::to_string) else {
            return Ok(None);
        };
        let Some(Value::String(password)) = params.get(&self.config.password_field) else {
            return Ok(Some(false));
        };
        if self.impossible_password(password) {
            return Ok(Some(false));
        }
        let value = self.identity_key_of(user).map(|k| k.value);
        let keys = self.attempt_keys(value.as_deref(), None);
        let Ok(reservation) = self.throttle.reserve(keys).await? else {
            return Ok(Some(false));
        };
        let verified = match self.verify(password, stored).await? {
            Pooled::Done(ok) => ok,
            Pooled::Busy => {
                self.throttle.release(reservation).await?;
                return Ok(Some(false));
            }
        };
        self.throttle.settle(reservation, verified).await?;
        Ok(Some(verified))
    }
}
