//! The phases: `setup` (a new seed, pending), `confirm_setup` (a code of it turns TOTP on and
//! makes the recovery codes), turning off (`DELETE`, with a code or a recovery code) and
//! `verify` (the continue token and a code for a session).
//!
//! Every code is counted before it is checked (per user and per client address, with
//! `brute_force`), and every accepted code or recovery code is recorded with a
//! compare-and-swap on the user's TOTP field, in the same write that consumes the token: of
//! two requests with the same code, one wins; a code of a period at or before the last one
//! used is refused (a replay, or an older code after a newer one).
//!
//! Turning off asks for a code or a recovery code, not the password: a plugin cannot reach
//! the user's other strategies, and proving the second factor is what makes a stolen session
//! (or a stolen password) unable to remove it. A user without their app uses a recovery code;
//! a user without either asks an operator (`Strategy::remove_credential`).

use authd_strategy_api::{
    Claims, Error, Event, Expect, FieldErrors, Grant, Outcome, Params, PhaseRequest, Rejection,
    TokenSpec, UpdateOutcome, UserRecord, UserUpdate, Verdict, event_names,
};
use serde_json::{Value, json};

use crate::code::{self, find_recovery, fingerprint, hash_recovery, normalize_recovery};
use crate::stored::TotpState;
use crate::{Inner, SETUP, VERIFY};

/// Tries of a compare-and-swap that lost to another change of the same user before the
/// request is refused.
const MAX_RACES: usize = 3;

/// How the user proves the second factor.
#[derive(Debug, Clone)]
pub(crate) enum Proof {
    Code(String),
    Recovery(String),
}

/// What to write once the proof is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Record the code's period (or spend the recovery code).
    Record,
    /// Remove the user's TOTP.
    TurnOff,
}

/// What became of a proof.
#[derive(Debug)]
enum Proved {
    /// Good, and written: the user as it is now.
    Yes(UserRecord),
    /// Wrong, replayed, or lost every race.
    No,
    /// The token to consume was used already.
    TokenUsed,
    /// The user has no TOTP on (any more), or is gone.
    Off,
}

fn invalid(errors: FieldErrors) -> Outcome {
    Ok(Verdict::Rejected(Rejection::Invalid(errors)))
}

fn rejected(r: Rejection) -> Outcome {
    Ok(Verdict::Rejected(r))
}

/// Reads a required string parameter.
fn string_param<'a>(params: &'a Params, field: &str, errors: &mut FieldErrors) -> Option<&'a str> {
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
    /// Reads `code` or `recovery_code` (exactly one; `recovery_code` only where allowed).
    fn read_proof(
        &self,
        params: &Params,
        recovery_allowed: bool,
        errors: &mut FieldErrors,
    ) -> Option<Proof> {
        let present = |k: &str| !matches!(params.get(k), None | Some(Value::Null));
        match (
            present("code"),
            recovery_allowed && present("recovery_code"),
        ) {
            (true, true) => {
                errors.add(
                    "recovery_code",
                    "give either code or recovery_code, not both",
                );
                None
            }
            (false, true) => {
                let typed = string_param(params, "recovery_code", errors)?;
                let normalized = normalize_recovery(typed);
                if normalized.is_none() {
                    errors.add("recovery_code", "is not a recovery code");
                }
                normalized.map(Proof::Recovery)
            }
            (true, false) | (false, false) => {
                let typed = string_param(params, "code", errors)?;
                let normalized = self.rules.normalize(typed);
                if normalized.is_none() {
                    errors.add("code", format!("must be {} digits", self.config.digits));
                }
                normalized.map(Proof::Code)
            }
        }
    }

    fn open_seed(&self, sealed: &str) -> Result<Vec<u8>, Error> {
        self.services.sealer.open(sealed)
    }

    /// `seed` sealed again under the current key-encryption key when it was sealed under an
    /// older one (or in clear), so that the old key can be dropped once every seed has been
    /// used; `seed` itself otherwise. `plain` is the seed when the caller opened it already.
    ///
    /// The write that records a proof carries the new text, so it costs no extra write. A
    /// continue token issued before it (bound to the sealed text) dies with the old text: the
    /// sign-in that used it is done, and a second one started meanwhile starts again.
    fn resealed(&self, seed: String, plain: Option<&[u8]>) -> Result<String, Error> {
        let sealer = &self.services.sealer;
        if !sealer.needs_reseal(&seed) {
            return Ok(seed);
        }
        let resealed = match plain {
            Some(plain) => sealer.seal(plain)?,
            None => sealer.seal(&zeroize::Zeroizing::new(self.open_seed(&seed)?))?,
        };
        tracing::info!(subject = %self.subject, strategy = %self.name, "TO0003 a TOTP seed was sealed again under the current key-encryption key");
        Ok(resealed)
    }

    /// A checked token, unless it was used already (it is consumed by the write that
    /// accepts its code; this refuses it before any code is looked at).
    async fn unused(
        &self,
        checked: Option<(UserRecord, Claims)>,
    ) -> Result<Option<(UserRecord, Claims)>, Error> {
        match checked {
            Some((user, claims)) if !self.services.store.is_dead(&claims.jti).await? => {
                Ok(Some((user, claims)))
            }
            _ => Ok(None),
        }
    }

    async fn reload(&self, user: &UserRecord) -> Result<Option<UserRecord>, Error> {
        Ok(self.services.store.get(&self.subject, user.id).await?)
    }

    /// Checks `proof` against the user's TOTP (on) and, when it is good, writes `then` in one
    /// compare-and-swap that also consumes `consume`.
    async fn prove(
        &self,
        user: &UserRecord,
        proof: &Proof,
        then: Then,
        consume: Option<(String, u64)>,
    ) -> Result<Proved, Error> {
        let field = &self.config.secret_field;
        let mut user = user.clone();
        for _ in 0..MAX_RACES {
            let Some(text) = user.secrets.get(field).cloned() else {
                return Ok(Proved::Off);
            };
            let (seed, last_counter, mut recovery, since) = match TotpState::read(&text) {
                Ok(TotpState::On {
                    seed,
                    last_counter,
                    recovery,
                    since,
                }) => (seed, last_counter, recovery, since),
                Ok(TotpState::Pending { .. }) => return Ok(Proved::Off),
                Err(_) => {
                    tracing::warn!(subject = %self.subject, strategy = %self.name, user = %user.id, "TO0001 stored TOTP state unreadable; code refused");
                    return Ok(Proved::No);
                }
            };
            let mut plain = None;
            let last_counter = match proof {
                Proof::Code(code) => {
                    let opened = zeroize::Zeroizing::new(self.open_seed(&seed)?);
                    let now = self.services.clock.now_secs();
                    let counter = match self.rules.matching_counter(&opened, code, now) {
                        Some(counter) if counter > last_counter => counter,
                        // Wrong, or a period already used: a replay, or an older code.
                        _ => return Ok(Proved::No),
                    };
                    plain = Some(opened);
                    counter
                }
                Proof::Recovery(typed) => {
                    let hash = hash_recovery(user.id.as_bytes(), typed);
                    match find_recovery(&recovery, &hash) {
                        Some(i) => {
                            recovery.remove(i);
                            last_counter
                        }
                        None => return Ok(Proved::No),
                    }
                }
            };
            let value = match then {
                Then::Record => Some(
                    TotpState::On {
                        seed: self.resealed(seed, plain.as_ref().map(|p| p.as_slice()))?,
                        last_counter,
                        recovery,
                        since,
                    }
                    .write(),
                ),
                Then::TurnOff => None,
            };
            let update = UserUpdate {
                expect_secrets: vec![(field.clone(), Some(text))],
                consume: consume.clone(),
                secrets: [(field.clone(), value)].into(),
                ..UserUpdate::default()
            };
            match self
                .services
                .store
                .update(&self.subject, user.id, update)
                .await?
            {
                UpdateOutcome::Updated(updated) => return Ok(Proved::Yes(updated)),
                UpdateOutcome::TokenUsed => return Ok(Proved::TokenUsed),
                UpdateOutcome::NotFound => return Ok(Proved::Off),
                // Changed by another request first (the same code, another recovery code):
                // look again at what it wrote.
                UpdateOutcome::Conflict => match self.reload(&user).await? {
                    Some(now) => user = now,
                    None => return Ok(Proved::Off),
                },
                UpdateOutcome::Taken(field) => {
                    return Err(Error::Internal(format!(
                        "TO0002 an update that adds no unique value was refused for `{field}`"
                    )));
                }
            }
        }
        Ok(Proved::No)
    }

    /// `POST setup`: a new seed, stored sealed and pending, and a setup token bound to it.
    pub(crate) async fn setup(&self, request: &PhaseRequest) -> Outcome {
        let Some(session) = &request.session else {
            return rejected(Rejection::InvalidToken);
        };
        let field = &self.config.secret_field;
        let mut user = session.user.clone();
        for _ in 0..MAX_RACES {
            let current = user.secrets.get(field).cloned();
            if let Some(text) = &current
                && !matches!(TotpState::read(text), Ok(TotpState::Pending { .. }))
            {
                return invalid(FieldErrors::one(
                    &self.name,
                    "is on already; turn it off first",
                ));
            }
            let seed = code::random_bytes(self.config.secret_length);
            let sealed = self.services.sealer.seal(&seed)?;
            let pending = TotpState::Pending {
                seed: sealed.clone(),
            };
            let update = UserUpdate {
                expect_secrets: vec![(field.clone(), current)],
                secrets: [(field.clone(), Some(pending.write()))].into(),
                ..UserUpdate::default()
            };
            match self
                .services
                .store
                .update(&self.subject, user.id, update)
                .await?
            {
                UpdateOutcome::Updated(updated) => {
                    let token = self.services.tokens.issue(TokenSpec {
                        subject: &self.subject,
                        user: &updated,
                        purpose: SETUP,
                        lifetime: self.config.setup_token_lifetime,
                        act: Some(self.act_setup.clone()),
                        bnd: Some(fingerprint(&sealed)),
                    })?;
                    return Ok(Verdict::Json {
                        status: 200,
                        body: json!({
                            "secret": code::base32(&seed),
                            "otpauth_uri": self.rules.key_uri(&seed, &self.config.issuer, &self.label(&updated)),
                            "setup_token": token.token,
                        }),
                    });
                }
                UpdateOutcome::Conflict => match self.reload(&user).await? {
                    Some(now) => user = now,
                    None => return rejected(Rejection::InvalidToken),
                },
                UpdateOutcome::NotFound | UpdateOutcome::TokenUsed => {
                    return rejected(Rejection::InvalidToken);
                }
                UpdateOutcome::Taken(field) => {
                    return Err(Error::Internal(format!(
                        "TO0002 an update that adds no unique value was refused for `{field}`"
                    )));
                }
            }
        }
        Ok(Verdict::Rejected(Rejection::Busy {
            retry_after_secs: 1,
        }))
    }

    /// `POST confirm_setup`: the setup token and a code of the pending seed turn TOTP on; the
    /// recovery codes are answered once and stored hashed.
    pub(crate) async fn confirm_setup(&self, request: &PhaseRequest) -> Outcome {
        let Some(session) = &request.session else {
            return rejected(Rejection::InvalidToken);
        };
        let mut errors = FieldErrors::default();
        let token = string_param(&request.params, "setup_token", &mut errors);
        let proof = self.read_proof(&request.params, false, &mut errors);
        let (Some(token), Some(Proof::Code(code))) = (token, proof) else {
            return invalid(errors);
        };
        let checked = authd_strategy_api::check(
            self.services.tokens.as_ref(),
            self.services.store.as_ref(),
            token,
            Expect {
                subject: &self.subject,
                purpose: &SETUP,
                act: Some(&self.act_setup),
            },
        )
        .await?
        .filter(|(user, _)| user.id == session.user.id);
        let checked = self.unused(checked).await?;
        let keys = self.attempt_keys(Some(&session.user), request.client_ip);
        let reservation = match self.throttle.reserve(keys).await? {
            Ok(r) => r,
            Err(retry_after_secs) => {
                return rejected(Rejection::RateLimited { retry_after_secs });
            }
        };
        // The token must be bound to the seed pending now (a later `setup` replaced it).
        let pending = checked.and_then(|(user, claims)| {
            let text = user.secrets.get(&self.config.secret_field)?.clone();
            match TotpState::read(&text) {
                Ok(TotpState::Pending { seed })
                    if claims.bnd.as_deref() == Some(fingerprint(&seed).as_str()) =>
                {
                    Some((user, claims, text, seed))
                }
                _ => None,
            }
        });
        let Some((user, claims, text, seed)) = pending else {
            self.throttle.settle(reservation, false).await?;
            return rejected(Rejection::InvalidToken);
        };
        let plain = zeroize::Zeroizing::new(self.open_seed(&seed)?);
        let now = self.services.clock.now_secs();
        let Some(counter) = self.rules.matching_counter(&plain, &code, now) else {
            self.throttle.settle(reservation, false).await?;
            return rejected(Rejection::AuthenticationFailed);
        };
        let codes: Vec<String> = (0..self.config.recovery_codes)
            .map(|_| code::new_recovery_code())
            .collect();
        let hashes = codes
            .iter()
            .filter_map(|c| normalize_recovery(c))
            .map(|c| hash_recovery(user.id.as_bytes(), &c))
            .collect();
        let on = TotpState::On {
            seed: self.resealed(seed, Some(&plain))?,
            last_counter: counter,
            recovery: hashes,
            since: now,
        };
        let field = &self.config.secret_field;
        let update = UserUpdate {
            expect_secrets: vec![(field.clone(), Some(text))],
            consume: Some((claims.jti.clone(), claims.exp)),
            secrets: [(field.clone(), Some(on.write()))].into(),
            ..UserUpdate::default()
        };
        match self
            .services
            .store
            .update(&self.subject, user.id, update)
            .await?
        {
            UpdateOutcome::Updated(_) => {
                self.throttle.settle(reservation, true).await?;
                Ok(Verdict::Json {
                    status: 200,
                    body: json!({ "recovery_codes": codes }),
                })
            }
            // Used, replaced by another setup, or the user is gone meanwhile.
            _ => {
                self.throttle.settle(reservation, false).await?;
                rejected(Rejection::InvalidToken)
            }
        }
    }

    /// `DELETE` on the strategy's path: a current code or a recovery code turns TOTP off.
    pub(crate) async fn turn_off(&self, request: &PhaseRequest) -> Outcome {
        let Some(session) = &request.session else {
            return rejected(Rejection::InvalidToken);
        };
        let user = &session.user;
        let mut errors = FieldErrors::default();
        let Some(proof) = self.read_proof(&request.params, true, &mut errors) else {
            return invalid(errors);
        };
        if !self.is_on(user) {
            return rejected(Rejection::NotFound);
        }
        let keys = self.attempt_keys(Some(user), request.client_ip);
        let reservation = match self.throttle.reserve(keys).await? {
            Ok(r) => r,
            Err(retry_after_secs) => {
                return rejected(Rejection::RateLimited { retry_after_secs });
            }
        };
        match self.prove(user, &proof, Then::TurnOff, None).await? {
            Proved::Yes(_) => {
                self.throttle.settle(reservation, true).await?;
                Ok(Verdict::NoContent)
            }
            Proved::Off => {
                self.throttle.settle(reservation, false).await?;
                rejected(Rejection::NotFound)
            }
            Proved::No | Proved::TokenUsed => {
                self.throttle.settle(reservation, false).await?;
                rejected(Rejection::AuthenticationFailed)
            }
        }
    }

    /// `DELETE /me` with TOTP on: a current code (or a recovery code) of the user, counted
    /// like every other code (per user) and recorded like one, so that it cannot be used
    /// again. Anything but a good code (none, malformed, wrong, replayed, locked out) is
    /// `Some(false)`: the daemon answers it as it answers a wrong password. `None` when the
    /// user has no TOTP on.
    pub(crate) async fn reauthenticate(
        &self,
        user: &UserRecord,
        params: &Params,
    ) -> Result<Option<bool>, Error> {
        if !self.is_on(user) {
            return Ok(None);
        }
        let keys = self.attempt_keys(Some(user), None);
        let Ok(reservation) = self.throttle.reserve(keys).await? else {
            return Ok(Some(false));
        };
        let mut errors = FieldErrors::default();
        let proved = match self.read_proof(params, true, &mut errors) {
            Some(proof) => matches!(
                self.prove(user, &proof, Then::Record, None).await?,
                Proved::Yes(_)
            ),
            None => false,
        };
        self.throttle.settle(reservation, proved).await?;
        Ok(Some(proved))
    }

    /// `POST verify`: the continue token of a first factor and a code (or a recovery code)
    /// for a session. The token is consumed by the write that records the code.
    pub(crate) async fn verify(&self, request: &PhaseRequest) -> Outcome {
        let mut errors = FieldErrors::default();
        let token = string_param(&request.params, "token", &mut errors);
        let proof = self.read_proof(&request.params, true, &mut errors);
        let (Some(token), Some(proof)) = (token, proof) else {
            return invalid(errors);
        };
        let checked = authd_strategy_api::check(
            self.services.tokens.as_ref(),
            self.services.store.as_ref(),
            token,
            Expect {
                subject: &self.subject,
                purpose: &VERIFY,
                act: Some(&self.act_verify),
            },
        )
        .await?
        .filter(|(user, claims)| {
            // Bound to a first factor this strategy continues, and to the seed on now.
            let Some((first, _)) = claims.bnd.as_deref().and_then(|b| b.split_once(':')) else {
                return false;
            };
            self.config.required_after.iter().any(|s| s == first)
                && claims.bnd == self.continue_binding(user, first)
        });
        let checked = self.unused(checked).await?;
        // Token guesses count against the address; codes against the user too.
        let keys = self.attempt_keys(checked.as_ref().map(|(u, _)| u), request.client_ip);
        let reservation = match self.throttle.reserve(keys).await? {
            Ok(r) => r,
            Err(retry_after_secs) => {
                return rejected(Rejection::RateLimited { retry_after_secs });
            }
        };
        let Some((user, claims)) = checked else {
            self.throttle.settle(reservation, false).await?;
            return rejected(Rejection::InvalidToken);
        };
        match self
            .prove(&user, &proof, Then::Record, Some((claims.jti, claims.exp)))
            .await?
        {
            Proved::Yes(user) => {
                self.throttle.settle(reservation, true).await?;
                Ok(Verdict::Authenticated {
                    user,
                    created: false,
                    grant: Grant::Session,
                })
            }
            Proved::TokenUsed | Proved::Off => {
                self.throttle.settle(reservation, false).await?;
                rejected(Rejection::InvalidToken)
            }
            Proved::No => {
                self.throttle.settle(reservation, false).await?;
                self.services.events.emit(Event::Account {
                    name: event_names::USER_SIGN_IN_FAILED,
                    subject: &self.subject,
                    strategy: Some(&self.name),
                    user: Some(&user),
                });
                rejected(Rejection::AuthenticationFailed)
            }
        }
    }
}
