//! `register`: a new user with a password. Limited per client address (`request_limit`);
//! unique values are checked before the password is hashed, so that re-registering a taken
//! identity costs the daemon no hash (the answer says "taken" anyway, so timing tells nothing
//! more).

use authd_strategy_api::{
    Event, FieldErrors, Grant, InsertError, NewUser, Outcome, PhaseRequest, Verdict, event_names,
};

use crate::rules::{busy, invalid, rate_limited};
use crate::{Inner, Pooled};

impl Inner {
    pub(crate) async fn register(&self, request: &PhaseRequest) -> Outcome {
        let c = &self.config;
        let params = &request.params;
        if self.services.pool.is_full() {
            // Refused at once, before the request is counted (a durable write).
            return busy();
        }
        if let (Some(limit), Some(ip)) = (&c.request_limit, request.client_ip) {
            let keys = vec![limit.address(&format!("{}/register", self.scope), ip)];
            if let Err(retry_after) = self.throttle.count(keys).await? {
                return rate_limited(retry_after);
            }
        }
        let (attributes, unique) = match self
            .resource
            .check_new(params, &[c.identity_field.as_str()])
        {
            Ok(checked) => checked,
            Err(errors) => {
                // Report password problems too, in one answer.
                let mut errors = errors;
                self.check_new_password(params, &mut errors);
                return invalid(errors);
            }
        };
        let mut errors = FieldErrors::default();
        let password = self.check_new_password(params, &mut errors);
        let identity = attributes.get(&c.identity_field).and_then(|v| v.as_str());
        if let Some(p) = password
            && self.equals_identity(p, identity)
        {
            errors.add(
                &c.password_field,
                format!("must not be the same as {}", c.identity_field),
            );
        }
        let Some(password) = password.filter(|_| errors.is_empty()) else {
            return invalid(errors);
        };
        for key in &unique {
            if self
                .services
                .store
                .find_by_unique(&self.subject, key)
                .await?
                .is_some()
            {
                return invalid(FieldErrors::one(&key.field, "has already been taken"));
            }
        }
        let hashed = match self.hash(password).await? {
            Pooled::Done(h) => h,
            Pooled::Busy => return busy(),
        };
        let user = NewUser {
            attributes,
            secrets: [(c.hashed_password_field.clone(), hashed)].into(),
            unique,
            created_at: self.services.clock.now_secs(),
            ..NewUser::default()
        };
        match self.services.store.insert(&self.subject, user).await? {
            Ok(user) => {
                self.services.events.emit(Event::Account {
                    name: event_names::USER_REGISTERED,
                    subject: &self.subject,
                    strategy: Some(&self.name),
                    user: Some(&user),
                });
                let grant = if c.require_confirmed && !self.resource.is_confirmed(&user) {
                    Grant::None
                } else {
                    Grant::Session
                };
                Ok(Verdict::Authenticated {
                    user,
                    created: true,
                    grant,
                })
            }
            Err(InsertError::Taken(field)) => {
                invalid(FieldErrors::one(&field, "has already been taken"))
            }
            Err(InsertError::IdTaken) => Err(authd_strategy_api::Error::Internal(
                "a fresh user id was taken".into(),
            )),
        }
    }
}
