//! `reset_request` (answered at once; the look-up and the message happen in the background,
//! so that the answer and its timing are the same whether or not the identity exists) and
//! `reset` (a single-use token and a new password).

use std::time::Duration;

use authd_strategy_api::{
    Event, Expect, FieldErrors, Grant, Message, Outcome, PhaseRequest, Rejection, Templates,
    TokenSpec, UniqueKey, UpdateOutcome, UserUpdate, Verdict, event_names, kinds,
};
use serde_json::json;

use crate::rules::{busy, invalid, rate_limited, rejected, string_param};
use crate::{Inner, PASSWORD_RESET, PasswordStrategy, Pooled};

/// How long after a reset request its look-up starts, at least, plus up to
/// [`RESET_JITTER_MS`] at random.
const RESET_DELAY: Duration = Duration::from_millis(20);
const RESET_JITTER_MS: u64 = 30;

/// The default texts of the reset email.
fn templates() -> Templates {
    Templates {
        subject: "Reset your password".into(),
        body_with_url: "Someone asked to reset the password of your account.\n\n\
To choose a new password, open this link:\n\n{{url}}\n\n\
The link works once and expires at {{expires_at}}. If you did not ask for this, ignore this \
email: your password stays as it is.\n"
            .into(),
        body_with_token: "Someone asked to reset the password of your account.\n\n\
To choose a new password, use this reset token:\n\n{{token}}\n\n\
It works once and expires at {{expires_at}}. If you did not ask for this, ignore this email: \
your password stays as it is.\n"
            .into(),
    }
}

impl PasswordStrategy {
    pub(crate) async fn reset_request(&self, request: &PhaseRequest) -> Outcome {
        let inner = &self.0;
        let mut errors = FieldErrors::default();
        let Some(identity) =
            string_param(&request.params, &inner.config.identity_field, &mut errors)
        else {
            return invalid(errors);
        };
        if let Some(limit) = &inner.config.request_limit {
            // Per identity (whether or not it exists, so nothing is told) and per address: a
            // flood of messages to one mailbox, or from one client, is refused.
            let scope = format!("{}/reset_request", inner.scope);
            let mut keys = vec![limit.identity(&scope, &inner.identity_throttle_value(identity))];
            if let Some(ip) = request.client_ip {
                keys.push(limit.address(&scope, ip));
            }
            if let Err(retry_after) = inner.throttle.count(keys).await? {
                return rate_limited(retry_after);
            }
        }
        let Ok(permit) = std::sync::Arc::clone(&inner.resets).try_acquire_owned() else {
            return busy();
        };
        let key = inner.identity_key(identity);
        let this = self.clone();
        // The work starts only after the answer has left, and at a random moment, so that
        // it cannot slow this answer (or show in the timing of the next one) differently for
        // identities that exist.
        let delay = RESET_DELAY + Duration::from_millis(rand::random_range(0..RESET_JITTER_MS));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::time::sleep(delay).await;
            let Some(key) = key else { return };
            if let Err(e) = this.0.send_reset(key).await {
                tracing::warn!(subject = %this.0.subject, strategy = %this.0.name, error = %e, "AU0103 reset request not sent");
            }
        });
        Ok(Verdict::Accepted)
    }
}

impl Inner {
    async fn send_reset(&self, key: UniqueKey) -> Result<(), String> {
        let (Some(resettable), Some(sender)) = (&self.config.resettable, &self.sender) else {
            return Ok(());
        };
        let Some(user) = self
            .services
            .store
            .find_by_unique(&self.subject, &key)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if self.stored_hash(&user).is_none() {
            // The user signs in otherwise (a magic link): this strategy has nothing to reset.
            return Ok(());
        }
        let token = self
            .services
            .tokens
            .issue(TokenSpec {
                subject: &self.subject,
                user: &user,
                purpose: PASSWORD_RESET,
                lifetime: resettable.token_lifetime,
                act: Some(self.act_reset.clone()),
                bnd: Some(self.fingerprint(&user)),
            })
            .map_err(|e| e.to_string())?;
        sender
            .send(Message {
                kind: kinds::PASSWORD_RESET.into(),
                subject: self.subject.clone(),
                strategy: self.name.clone(),
                user: user.public_view(),
                token: Some(token.token),
                expires_at: token.claims.exp,
                data: serde_json::Map::new(),
                templates: templates(),
            })
            .await
    }

    pub(crate) async fn reset(&self, request: &PhaseRequest) -> Outcome {
        let c = &self.config;
        let params = &request.params;
        let mut errors = FieldErrors::default();
        // AshAuthentication's name is `reset_token`; `token` is accepted too.
        let token_field = if params.contains_key("token") && !params.contains_key("reset_token") {
            "token"
        } else {
            "reset_token"
        };
        let token = string_param(params, token_field, &mut errors);
        // The new password is checked in full before the token is looked at, so that a
        // rejected password leaves the token usable.
        let password = self.check_new_password(params, &mut errors);
        let (Some(token), Some(password)) = (token, password) else {
            return invalid(errors);
        };
        if !errors.is_empty() {
            return invalid(errors);
        }
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
                purpose: &PASSWORD_RESET,
                act: Some(&self.act_reset),
            },
        )
        .await?
        .filter(|(user, claims)| claims.bnd.as_deref() == Some(self.fingerprint(user).as_str()));
        let Some((user, claims)) = checked else {
            self.throttle.settle(reservation, false).await?;
            return rejected(Rejection::InvalidToken);
        };
        // Rules that need the user are checked before the token is consumed, too.
        let identity = user
            .attributes
            .get(&c.identity_field)
            .and_then(|v| v.as_str());
        if self.equals_identity(password, identity) {
            self.throttle.release(reservation).await?;
            return invalid(FieldErrors::one(
                &c.password_field,
                format!("must not be the same as {}", c.identity_field),
            ));
        }
        let hashed = match self.hash(password).await? {
            Pooled::Done(h) => h,
            Pooled::Busy => {
                self.throttle.release(reservation).await?;
                return busy();
            }
        };
        let resets = user
            .meta
            .get(authd_strategy_api::META_RESETS)
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        // The token is consumed in the same transaction that stores the new hash (and, by
        // default, revokes every session of the user). The password the token was checked
        // against must still be the one stored: of two resets racing with two tokens, one
        // wins.
        let update = UserUpdate {
            expect_secrets: vec![(
                c.hashed_password_field.clone(),
                self.stored_hash(&user).map(str::to_string),
            )],
            consume: Some((claims.jti.clone(), claims.exp)),
            secrets: [(c.hashed_password_field.clone(), Some(hashed))].into(),
            meta: [(
                authd_strategy_api::META_RESETS.to_string(),
                json!(resets + 1),
            )]
            .into_iter()
            .collect(),
            bump_sessions: c.revoke_sessions_on_reset,
            ..UserUpdate::default()
        };
        let user = match self
            .services
            .store
            .update(&self.subject, user.id, update)
            .await?
        {
            UpdateOutcome::Updated(user) => user,
            // Used already, or another reset won the race: a refused token, like any other.
            _ => {
                self.throttle.settle(reservation, false).await?;
                return rejected(Rejection::InvalidToken);
            }
        };
        self.throttle.settle(reservation, true).await?;
        // The owner just proved control of the mailbox: lift the identity's lockout.
        if let Some(key) = self.identity_key_of(&user) {
            for counted in self.attempt_keys(Some(&key.value), None) {
                self.throttle.clear(counted.key).await?;
            }
        }
        self.services.events.emit(Event::Account {
            name: event_names::PASSWORD_RESET,
            subject: &self.subject,
            strategy: Some(&self.name),
            user: Some(&user),
        });
        Ok(Verdict::Authenticated {
            user,
            created: false,
            grant: Grant::Session,
        })
    }
}
