//! Signed tokens (JWTs) and their server-side state: revocations and single-use markers.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// Seconds since the Unix epoch: the unit of token times, lockouts and `/healthz`.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a token is for; a token is refused everywhere but for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A session token (AshAuthentication's `user` purpose).
    User,
    /// A short-lived, single-use token exchanged for a session at `sign_in_with_token`.
    SignIn,
    /// A single-use password-reset token.
    PasswordReset,
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
    pub purpose: Purpose,
    /// The action a reset or sign-in token allows, e.g. `password_reset_with_password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<String>,
    /// A fingerprint of the password hash the token was issued against; the token dies with
    /// that hash (a reset token is refused once the password has changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
    /// The user's session epoch when a session token was issued; bumping the epoch (at a
    /// password reset) revokes every session issued before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<u64>,
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
    pub user: Uuid,
    pub purpose: Purpose,
    pub lifetime: Duration,
    pub act: Option<String>,
    pub pwd: Option<String>,
    pub sep: Option<u64>,
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

/// Issues and verifies signed tokens. Verification checks signature (with the configured
/// algorithm only), `exp`, `nbf` and `iss`; purpose and revocation are the caller's to check.
pub trait Tokens: Send + Sync {
    /// # Errors
    /// When signing fails.
    fn issue_spec(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, Error>;

    /// Shorthand for [`Tokens::issue_spec`] without a session epoch.
    ///
    /// # Errors
    /// When signing fails.
    fn issue(
        &self,
        subject: &str,
        user: Uuid,
        purpose: Purpose,
        lifetime: Duration,
        act: Option<String>,
        pwd: Option<String>,
    ) -> Result<IssuedToken, Error> {
        self.issue_spec(TokenSpec {
            subject,
            user,
            purpose,
            lifetime,
            act,
            pwd,
            sep: None,
        })
    }

    /// # Errors
    /// [`TokenError::Invalid`] for any token that is not good.
    fn verify(&self, token: &str) -> Result<Claims, TokenError>;

    /// The lifetime of session tokens (`tokens.token_lifetime`).
    fn session_lifetime(&self) -> Duration;
}

/// Server-side token state. Tokens are recorded by a hash of their `jti`, never in a form
/// that could be replayed.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// # Errors
    /// When the store fails.
    async fn is_revoked(&self, jti: &str) -> Result<bool, Error>;

    /// Revokes a token until `expires_at` (Unix seconds), after which the record can go.
    ///
    /// # Errors
    /// When the store fails.
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), Error>;

    /// Marks a single-use token used. `Ok(true)` for the first call only.
    ///
    /// # Errors
    /// When the store fails.
    async fn consume(&self, jti: &str, expires_at: u64) -> Result<bool, Error>;
}
