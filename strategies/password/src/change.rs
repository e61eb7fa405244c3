//! `change_password`: a signed-in user changes their password, proving the current one.
//!
//! A wrong current password counts as a failed sign-in of the identity (and the address); a
//! new password that breaks the rules is refused before anything is counted or changed. The
//! other sessions of the user are revoked by default; the daemon issues the new one.

use authd_strategy_api::{
    Event, FieldErrors, Grant, Outcome, PhaseRequest, Rejection, UpdateOutcome, UserUpdate,
    Verdict, event_names,
};

use crate::rules::{busy, invalid, rate_limited, rejected, string_param};
use crate::{Inner, Pooled};

/// The request field carrying the current password.
const CURRENT_PASSWORD: &str = "current_password";

impl Inner {
    pub(crate) async fn change_password(&self, request: &PhaseRequest) -> Outcome {
        let c = &self.config;
        let Some(session) = &request.session else {
            return rejected(Rejection::InvalidToken);
        };
        let user = &session.user;
        let params = &request.params;
        let mut errors = FieldErrors::default();
        let current = string_param(params, CURRENT_PASSWORD, &mut errors);
        let password = self.check_new_password(params, &mut errors);
        let identity = user
            .attributes
            .get(&c.identity_field)
            .and_then(|v| v.as_str());
        if let Some(p) = password
            && self.equals_identity(p, identity)
        {
            errors.add(
                &c.password_field,
                format!("must not be the same as {}", c.identity_field),
            );
        }
        let (Some(current), Some(password)) = (current, password) else {
            return invalid(errors);
        };
        if !errors.is_empty() {
            return invalid(errors);
        }
        let Some(stored) = self.stored_hash(user).map(str::to_string) else {
            // The user has no password of this strategy: nothing to prove it with.
            return rejected(Rejection::AuthenticationFailed);
        };
        if self.impossible_password(current) {
            return rejected(Rejection::AuthenticationFailed);
        }
        let value = self.identity_key_of(user).map(|k| k.value);
        let keys = self.attempt_keys(value.as_deref(), request.client_ip);
        let reservation = match self.throttle.reserve(keys).await? {
            Ok(r) => r,
            Err(retry_after) => return rate_limited(retry_after),
        };
        match self.verify(current, stored.clone()).await? {
            Pooled::Done(true) => {}
            Pooled::Done(false) => {
                self.throttle.settle(reservation, false).await?;
                return rejected(Rejection::AuthenticationFailed);
            }
            Pooled::Busy => {
                self.throttle.release(reservation).await?;
                return busy();
            }
        }
        let hashed = match self.hash(password).await? {
            Pooled::Done(h) => h,
            Pooled::Busy => {
                self.throttle.release(reservation).await?;
                return busy();
            }
        };
        self.throttle.settle(reservation, true).await?;
        let update = UserUpdate {
            expect_secrets: vec![(c.hashed_password_field.clone(), Some(stored))],
            secrets: [(c.hashed_password_field.clone(), Some(hashed))].into(),
            bump_sessions: c.revoke_sessions_on_change,
            ..UserUpdate::default()
        };
        match self
            .services
            .store
            .update(&self.subject, user.id, update)
            .await?
        {
            UpdateOutcome::Updated(user) => {
                self.services.events.emit(Event::Account {
                    name: event_names::PASSWORD_CHANGED,
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
            // Changed meanwhile by another request, or the user is gone.
            _ => rejected(Rejection::AuthenticationFailed),
        }
    }
}
