//! Signed tokens (JWTs): the claims authd writes, the purposes strategies declare, and the
//! checks every token acceptance makes (signature, purpose, subject, action, session epoch).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::{Error, UserRecord, UserStore};

/// What a token is for; a token is refused everywhere but for its own purpose. Strategies
/// declare their own (`Purpose::new("magic_link")`); [`Purpose::SESSION`] is the daemon's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Purpose(Cow<'static, str>);

impl Purpose {
    /// A session token (AshAuthentication's `user` purpose): the only one `/me` accepts.
    pub const SESSION: Purpose = Purpose(Cow::Borrowed("user"));

    pub const fn new(name: &'static str) -> Purpose {
        Purpose(Cow::Borrowed(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The claims authd puts in every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `"<subject>?id=<uuid>"`.
    pub sub: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub iss: String,
    /// Audiences, when configured (written as a string for one).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "one_or_many_out",
        deserialize_with = "one_or_many_in"
    )]
    pub aud: Vec<String>,
    pub purpose: Purpose,
    /// The action a token allows, naming its strategy (`password_reset_with_password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<String>,
    /// A binding chosen by the issuing strategy: the token dies when what it was bound to
    /// changes (a fingerprint of the password hash for a reset token, of the monitored value
    /// for a confirmation). Read from `pwd` in tokens of earlier versions.
    #[serde(default, alias = "pwd", skip_serializing_if = "Option::is_none")]
    pub bnd: Option<String>,
    /// The user's session epoch when the token was issued; bumping the epoch (a reset, sign
    /// out everywhere) kills every token issued before. Absent in old tokens: epoch 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<u64>,
}

fn one_or_many_out<S: serde::Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn one_or_many_in<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Claims {
    /// Builds the `sub` claim.
    pub fn subject_claim(subject: &str, id: Uuid) -> String {
        format!("{subject}?id={id}")
    }

    /// The user id, if this token's `sub` is for `subject`.
    pub fn user_id(&self, subject: &str) -> Option<Uuid> {
        let rest = self.sub.strip_prefix(subject)?.strip_prefix("?id=")?;
        Uuid::parse_str(rest).ok()
    }
}

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub subject: &'a str,
    pub user: &'a UserRecord,
    pub purpose: Purpose,
    pub lifetime: Duration,
    pub act: Option<String>,
    pub bnd: Option<String>,
}

/// A token and the claims it carries.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

/// Why a token was refused. Deliberately coarse: clients get one `invalid_token` answer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error(transparent)]
    Internal(#[from] Error),
}

/// Issues and verifies signed tokens. Verification checks the signature (with a key and
/// algorithm authd holds), `exp`, `nbf`, `iss` and `aud`; what a token is for is checked by
/// [`check`].
pub trait Tokens: Send + Sync {
    /// Signs a token for `spec`; the session epoch is the user's.
    ///
    /// # Errors
    /// When signing fails.
    fn issue(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, Error>;

    /// # Errors
    /// [`TokenError::Invalid`] for any token that is not good.
    fn verify(&self, token: &str) -> Result<Claims, TokenError>;

    /// The lifetime of session tokens (`tokens.token_lifetime`).
    fn session_lifetime(&self) -> Duration;
}

/// What a token must be to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub subject: &'a str,
    pub purpose: &'a Purpose,
    /// The action, when the purpose has one per strategy.
    pub act: Option<&'a str>,
}

/// Checks a token for `expect`: signature and times, purpose, action, subject, that its user
/// exists, and its session epoch. `None` for any refusal; the binding (`bnd`) is the caller's
/// to compare, as only it knows what the token was bound to.
///
/// # Errors
/// When the machinery fails (not for a bad token).
pub async fn check(
    tokens: &dyn Tokens,
    users: &dyn UserStore,
    token: &str,
    expect: Expect<'_>,
) -> Result<Option<(UserRecord, Claims)>, Error> {
    let claims = match tokens.verify(token) {
        Ok(claims) => claims,
        Err(TokenError::Invalid) => return Ok(None),
        Err(TokenError::Internal(e)) => return Err(e),
    };
    if &claims.purpose != expect.purpose || claims.act.as_deref() != expect.act {
        return Ok(None);
    }
    let Some(id) = claims.user_id(expect.subject) else {
        return Ok(None);
    };
    let Some(user) = users.get(expect.subject, id).await? else {
        return Ok(None);
    };
    if claims.sep.unwrap_or(0) != user.session_epoch {
        return Ok(None);
    }
    Ok(Some((user, claims)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn claims_read_tokens_of_earlier_versions_and_one_or_many_audiences() {
        let old = r#"{"sub":"user?id=6f1c9a52-8d3e-4b0a-9a52-6f1c9a528d3e","jti":"j","iat":1,"nbf":1,"exp":2,"iss":"authd","purpose":"password_reset","act":"password_reset_with_password","pwd":"fp"}"#;
        let c: Claims = serde_json::from_str(old).unwrap();
        assert_eq!(c.bnd.as_deref(), Some("fp"));
        assert_eq!(c.purpose, Purpose::new("password_reset"));
        assert!(c.aud.is_empty() && c.sep.is_none());
        let one: Claims =
            serde_json::from_str(&old.replace("\"pwd\":\"fp\"", "\"aud\":\"api\"")).unwrap();
        assert_eq!(one.aud, vec!["api".to_string()]);
        let json = serde_json::to_value(&one).unwrap();
        assert_eq!(json["aud"], "api", "one audience is written as a string");
        let many: Claims =
            serde_json::from_str(&old.replace("\"pwd\":\"fp\"", "\"aud\":[\"a\",\"b\"]")).unwrap();
        assert_eq!(many.aud.len(), 2);
        assert_eq!(serde_json::to_value(&many).unwrap()["aud"][1], "b");
        assert_eq!(
            c.user_id("user").map(|u| u.to_string()).as_deref(),
            Some("6f1c9a52-8d3e-4b0a-9a52-6f1c9a528d3e")
        );
        assert_eq!(c.user_id("admin"), None);
        assert_eq!(c.user_id("use"), None);
    }
}
