//! What the phases share: the password rules of `register`, `reset` and `change_password`,
//! reading parameters, identity keys, throttle keys and the common answers.

use std::net::IpAddr;

use authd_strategy_api::{
    Counted, FieldErrors, Limit, Outcome, Params, Rejection, UniqueKey, UserRecord, Verdict,
};
use serde_json::Value;

use crate::Inner;

pub(crate) fn invalid(errors: FieldErrors) -> Outcome {
    Ok(Verdict::Rejected(Rejection::Invalid(errors)))
}

pub(crate) fn rejected(r: Rejection) -> Outcome {
    Ok(Verdict::Rejected(r))
}

pub(crate) fn busy() -> Outcome {
    rejected(Rejection::Busy {
        retry_after_secs: 1,
    })
}

pub(crate) fn rate_limited(retry_after_secs: u64) -> Outcome {
    rejected(Rejection::RateLimited { retry_after_secs })
}

/// Reads a required string parameter, recording a field error if it is missing or not a string.
pub(crate) fn string_param<'a>(
    params: &'a Params,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<&'a str> {
    match params.get(field) {
        None | Some(Value::Null) => {
            errors.add(field, "is required");
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            errors.add(field, "is required");
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.add(field, "must be a string");
            None
        }
    }
}

impl Inner {
    /// The unique key of an identity as submitted; `None` when it cannot be an identity at all
    /// (characters an identifier may not hold): no user has it.
    pub(crate) fn identity_key(&self, value: &str) -> Option<UniqueKey> {
        self.identity
            .unique_key(&Value::String(value.to_string()))
            .ok()
    }

    /// The user's own identity key, from their stored attribute.
    pub(crate) fn identity_key_of(&self, user: &UserRecord) -> Option<UniqueKey> {
        self.identity
            .unique_key(user.attributes.get(&self.config.identity_field)?)
            .ok()
    }

    /// The brute-force keys of a password attempt: the identity (the prepared value, or the
    /// raw one lower-cased when it cannot be prepared) and the client's address.
    pub(crate) fn attempt_keys(&self, identity: Option<&str>, ip: Option<IpAddr>) -> Vec<Counted> {
        let Some(limit) = &self.config.rate_limit else {
            return Vec::new();
        };
        let mut keys = Vec::with_capacity(2);
        if let Some(value) = identity {
            keys.push(Counted::identity(
                &self.scope,
                value,
                Limit {
                    max: limit.identity_failures,
                    window: limit.window,
                },
            ));
        }
        if let Some(ip) = ip {
            keys.push(Counted::address(
                &self.scope,
                ip,
                Limit {
                    max: limit.ip_failures,
                    window: limit.window,
                },
            ));
        }
        keys
    }

    /// The value a throttle key counts for an identity as submitted.
    pub(crate) fn identity_throttle_value(&self, submitted: &str) -> String {
        self.identity_key(submitted)
            .map_or_else(|| submitted.trim().to_lowercase(), |k| k.value)
    }

    /// Password rules shared by register, reset and change: length, bcrypt's 72 bytes,
    /// confirmation.
    pub(crate) fn check_new_password<'a>(
        &self,
        params: &'a Params,
        errors: &mut FieldErrors,
    ) -> Option<&'a str> {
        let c = &self.config;
        let password = string_param(params, &c.password_field, errors);
        if let Some(p) = password {
            let chars = p.chars().count();
            if chars < c.password_min_length {
                errors.add(
                    &c.password_field,
                    format!(
                        "is too short (minimum {} characters)",
                        c.password_min_length
                    ),
                );
            } else if chars > c.password_max_length {
                errors.add(
                    &c.password_field,
                    format!("is too long (maximum {} characters)", c.password_max_length),
                );
            } else if let Some(max) = c.hash.max_password_bytes()
                && p.len() > max
            {
                errors.add(
                    &c.password_field,
                    format!("is too long (this hash algorithm uses at most {max} bytes)"),
                );
            }
            if p.contains('\0') {
                errors.add(&c.password_field, "must not contain null bytes");
            }
        }
        if c.confirmation_required {
            let confirmation = string_param(params, &c.password_confirmation_field, errors);
            if let (Some(p), Some(conf)) = (password, confirmation)
                && p != conf
            {
                errors.add(&c.password_confirmation_field, "does not match password");
            }
        }
        password
    }

    /// Whether a password submitted at sign-in could never be stored: longer than the rules
    /// allow. Such an attempt is refused without hashing anything.
    pub(crate) fn impossible_password(&self, password: &str) -> bool {
        password.chars().count() > self.config.password_max_length
            || self
                .config
                .hash
                .max_password_bytes()
                .is_some_and(|max| password.len() > max)
    }

    /// A password equal to the identity (compared as the identity is).
    pub(crate) fn equals_identity(&self, password: &str, identity: Option<&str>) -> bool {
        identity.is_some_and(
            |id| match (self.identity_key(id), self.identity_key(password)) {
                (Some(a), Some(b)) => a.value == b.value,
                _ => id == password,
            },
        )
    }

    /// The fingerprint of the user's password hash that reset and sign-in tokens are bound to.
    pub(crate) fn fingerprint(&self, user: &UserRecord) -> String {
        crate::hash::fingerprint(self.stored_hash(user))
    }
}
