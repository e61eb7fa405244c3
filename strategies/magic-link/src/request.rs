//! `request`: answered `202` at once; the look-up, the new binding and the message happen in
//! the background 20 to 50 ms later, so that the answer and its timing are the same whether
//! or not the identity exists (as the password strategy's `reset_request`).
//!
//! Must not tell, by answer or timing, whether an identity exists, nor send anything for an
//! unknown identity unless `registration_enabled`.

use std::time::Duration;

use authd_strategy_api::{
    Message, Outcome, PhaseRequest, Rejection, Templates, TokenSpec, UniqueKey, UpdateOutcome,
    UserRecord, UserUpdate, Verdict, kinds,
};
use serde_json::{Map, Value, json};

use crate::{Inner, MAGIC_LINK, MagicLinkStrategy, new_binding, string_param};

/// How long after a request its look-up starts, at least, plus up to [`JITTER_MS`] at
/// random.
const DELAY: Duration = Duration::from_millis(20);
const JITTER_MS: u64 = 30;

/// What the `bnd` claim of a link that creates its account starts with; the identity follows.
pub(crate) const REGISTER: &str = "register:";

/// The default texts of the magic link email.
fn templates() -> Templates {
    Templates {
        subject: "Your sign-in link".into(),
        body_with_url: "Someone asked to sign in to your account with this address.\n\n\
To sign in, open this link:\n\n{{url}}\n\n\
The link works once and expires at {{expires_at}}. If you did not ask for it, ignore this \
email: nobody can sign in without the link.\n"
            .into(),
        body_with_token: "Someone asked to sign in to your account with this address.\n\n\
To sign in, use this token:\n\n{{token}}\n\n\
It works once and expires at {{expires_at}}. If you did not ask for it, ignore this email: \
nobody can sign in without it.\n"
            .into(),
    }
}

impl MagicLinkStrategy {
    pub(crate) async fn request(&self, request: &PhaseRequest) -> Outcome {
        let inner = &self.0;
        let identity = match string_param(&request.params, &inner.config.identity_field) {
            Ok(identity) => identity,
            Err(r) => return Ok(Verdict::Rejected(r)),
        };
        if let Some(limit) = &inner.config.request_limit {
            // Per identity (whether or not it exists, so nothing is told) and per address: a
            // flood of links to one mailbox, or from one client, is refused.
            let scope = format!("{}/request", inner.scope);
            let value = inner
                .identity_key(identity)
                .map_or_else(|| identity.trim().to_lowercase(), |k| k.value);
            let mut keys = vec![limit.identity(&scope, &value)];
            if let Some(ip) = request.client_ip {
                keys.push(limit.address(&scope, ip));
            }
            if let Err(retry_after_secs) = inner.throttle.count(keys).await? {
                return Ok(Verdict::Rejected(Rejection::RateLimited {
                    retry_after_secs,
                }));
            }
        }
        let Ok(permit) = std::sync::Arc::clone(&inner.requests).try_acquire_owned() else {
            return Ok(Verdict::Rejected(Rejection::Busy {
                retry_after_secs: 1,
            }));
        };
        let identity = identity.to_string();
        let this = self.clone();
        // The work starts only after the answer has left, and at a random moment, so that it
        // cannot slow this answer (or show in the timing of the next one) differently for
        // identities that exist.
        let delay = DELAY + Duration::from_millis(rand::random_range(0..JITTER_MS));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::time::sleep(delay).await;
            if let Err(e) = this.0.send_link(&identity).await {
                tracing::warn!(subject = %this.0.subject, strategy = %this.0.name, error = %e, "ML0001 magic link not sent");
            }
        });
        Ok(Verdict::Accepted)
    }
}

impl Inner {
    /// Looks the identity up and sends its link: to a known user, bound to a new value that
    /// kills the user's older links; to an unknown identity only with registration, as a link
    /// that creates the account.
    pub(crate) async fn send_link(&self, identity: &str) -> Result<(), String> {
        let Some(key) = self.identity_key(identity) else {
            return Ok(());
        };
        let found = self
            .services
            .store
            .find_by_unique(&self.subject, &key)
            .await
            .map_err(|e| e.to_string())?;
        let (user, binding, registration) = match found {
            Some(user) => {
                let binding = new_binding();
                let update = UserUpdate {
                    meta: [(self.binding_key.clone(), Value::String(binding.clone()))]
                        .into_iter()
                        .collect(),
                    ..UserUpdate::default()
                };
                match self
                    .services
                    .store
                    .update(&self.subject, user.id, update)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    UpdateOutcome::Updated(user) => (user, binding, false),
                    // Deleted meanwhile: nobody to send to.
                    _ => return Ok(()),
                }
            }
            None if self.config.registration_enabled => {
                let Some(value) = self.registration_value(identity, &key) else {
                    return Ok(());
                };
                // The account does not exist yet: the token names the id it will have and
                // carries the identity it will be created with.
                let user = UserRecord {
                    id: uuid::Uuid::new_v4(),
                    attributes: [(
                        self.config.identity_field.clone(),
                        Value::String(value.clone()),
                    )]
                    .into_iter()
                    .collect(),
                    secrets: Default::default(),
                    meta: Map::new(),
                    session_epoch: 0,
                    created_at: 0,
                };
                (user, format!("{REGISTER}{value}"), true)
            }
            None => return Ok(()),
        };
        let token = self
            .services
            .tokens
            .issue(TokenSpec {
                subject: &self.subject,
                user: &user,
                purpose: MAGIC_LINK,
                lifetime: self.config.token_lifetime,
                act: Some(self.act.clone()),
                bnd: Some(binding),
            })
            .map_err(|e| e.to_string())?;
        let mut data = Map::new();
        data.insert("registration".into(), json!(registration));
        self.sender
            .send(Message {
                kind: kinds::MAGIC_LINK.into(),
                subject: self.subject.clone(),
                strategy: self.name.clone(),
                user: user.public_view(),
                token: Some(token.token),
                expires_at: token.claims.exp,
                data,
                templates: templates(),
            })
            .await
    }

    /// The identity as a new account would store it, if it is a valid value of the
    /// attribute whose key is `key`.
    fn registration_value(&self, identity: &str, key: &UniqueKey) -> Option<String> {
        let value = self
            .identity
            .check(&Value::String(identity.to_string()))
            .ok()?;
        let value = value.as_str()?.to_string();
        // The stored form must prepare to the key that was looked up.
        (self.identity_key(&value).as_ref() == Some(key)).then_some(value)
    }
}
