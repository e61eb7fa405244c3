//! JWTs: issuing and verifying with `jsonwebtoken`, the algorithm pinned by config, and the
//! signing secret loaded from the environment, a file, or the store.
//!
//! Verification checks signature, algorithm, `exp`, `nbf` and `iss`; what a token is *for*
//! (purpose, action, revocation) is checked by whoever accepts it.

use std::path::Path;
use std::time::Duration;

use authd_strategy_api::{
    Claims, Error as ApiError, IssuedToken, TokenError, TokenSpec, Tokens, now_secs,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use uuid::Uuid;

use crate::config::{SecretSource, SigningAlgorithm, TokensConfig};
use crate::store::Store;

/// The shortest secret accepted for HMAC signing (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why the signing secret could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("tokens.signing_secret_env: environment variable {0} is not set")]
    EnvMissing(String),
    #[error("tokens.signing_secret_file: cannot read {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: the signing secret must be at least 32 bytes")]
    TooShort(&'static str),
    #[error("cannot load the signing key from the store: {0}")]
    Store(#[from] crate::store::Error),
}

/// Loads the secret named by the config.
///
/// # Errors
/// When the variable or file is missing or too short, or the store fails.
pub fn load_secret(config: &TokensConfig, store: &Store) -> Result<Vec<u8>, Error> {
    let (secret, origin) = match &config.secret {
        SecretSource::Env(var) => (
            std::env::var(var)
                .map_err(|_| Error::EnvMissing(var.clone()))?
                .into_bytes(),
            "tokens.signing_secret_env",
        ),
        SecretSource::File(path) => (read_secret_file(path)?, "tokens.signing_secret_file"),
        SecretSource::Generated => (store.signing_key()?, "the generated key"),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::TooShort(origin));
    }
    Ok(secret)
}

fn read_secret_file(path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = std::fs::read(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// Issues and verifies tokens with one key and algorithm.
pub struct TokenService {
    issuer: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    session_lifetime: Duration,
}

impl TokenService {
    pub fn new(config: &TokensConfig, secret: &[u8]) -> TokenService {
        let algorithm = match config.algorithm {
            SigningAlgorithm::Hs256 => Algorithm::HS256,
            SigningAlgorithm::Hs384 => Algorithm::HS384,
            SigningAlgorithm::Hs512 => Algorithm::HS512,
        };
        // Only the configured algorithm: `alg: none` and every other algorithm are refused.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        TokenService {
            issuer: config.issuer.clone(),
            algorithm,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            session_lifetime: config.token_lifetime,
        }
    }
}

impl Tokens for TokenService {
    fn issue_spec(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, ApiError> {
        let now = now_secs();
        let claims = Claims {
            sub: Claims::subject_claim(spec.subject, spec.user),
            jti: Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(spec.lifetime.as_secs()),
            iss: self.issuer.clone(),
            purpose: spec.purpose,
            act: spec.act,
            pwd: spec.pwd,
            sep: spec.sep,
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(|e| ApiError::Tokens(e.to_string()))?;
        Ok(IssuedToken { token, claims })
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    fn session_lifetime(&self) -> Duration {
        self.session_lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authd_strategy_api::Purpose;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn service(algorithm: SigningAlgorithm, issuer: &str) -> TokenService {
        TokenService::new(
            &TokensConfig {
                issuer: issuer.into(),
                algorithm,
                secret: SecretSource::Generated,
                token_lifetime: Duration::from_secs(60),
            },
            &[7u8; 32],
        )
    }

    fn issue(s: &TokenService) -> IssuedToken {
        s.issue(
            "user",
            Uuid::new_v4(),
            Purpose::User,
            Duration::from_secs(60),
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn round_trip() {
        let s = service(SigningAlgorithm::Hs256, "authd");
        let t = issue(&s);
        assert_eq!(s.verify(&t.token).ok(), Some(t.claims));
    }

    #[test]
    fn other_algorithms_issuers_and_alg_none_are_refused() {
        let hs256 = service(SigningAlgorithm::Hs256, "authd");
        let hs512 = service(SigningAlgorithm::Hs512, "authd");
        let other_iss = service(SigningAlgorithm::Hs256, "someone-else");
        assert!(hs256.verify(&issue(&hs512).token).is_err());
        assert!(hs256.verify(&issue(&other_iss).token).is_err());

        // An unsigned token with the same claims.
        let t = issue(&hs256);
        let mut parts = t.token.split('.');
        let _header = parts.next();
        let payload = parts.next().unwrap_or_default();
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(hs256.verify(&none).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let s = service(SigningAlgorithm::Hs256, "authd");
        let mut claims = issue(&s).claims;
        claims.exp = now_secs() - 1;
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &s.encoding)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.verify(&token).is_err());
    }
}
