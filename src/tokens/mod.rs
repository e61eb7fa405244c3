//! JWTs: issuing and verifying with `jsonwebtoken`, the algorithm pinned by config, and the
//! signing secret loaded from the environment, a file, or the store. Also the reading of
//! other secrets from the same kinds of places (the admin token).
//!
//! Verification checks signature, algorithm, `exp`, `nbf`, `iss` and `aud`; what a token is
//! *for* (purpose, action, revocation) is checked by whoever accepts it.

pub mod secret_strength;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use authd_strategy_api::{
    Claims, Clock, Error as ApiError, Event, Events, IssuedToken, MetaStore, StoreError,
    TokenError, TokenSpec, Tokens,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use uuid::Uuid;

use crate::config::{SecretSource, SigningAlgorithm, TokensConfig};

/// The meta key of the generated signing key.
const SIGNING_KEY: &str = "signing_key";

/// Why a secret could not be loaded. Never holds the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The variable is not named in the message: a secret pasted in place of its name must
    /// not reach a log.
    #[error("{key}: the environment variable it names is not set")]
    EnvMissing { key: &'static str },
    #[error("{key}: cannot read the file it names: {source}")]
    File {
        key: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {weakness}")]
    Weak {
        key: &'static str,
        weakness: secret_strength::Weakness,
    },
    #[error("cannot load the signing key from the store: {0}")]
    Store(#[from] StoreError),
}

/// Reads a secret from `source` (`key` names the config key, for messages) and checks that it
/// is strong enough to sign or authenticate with.
///
/// # Errors
/// When the variable or file is missing, or the secret is weak.
pub fn read_secret(key: &'static str, source: &SecretSource) -> Result<Vec<u8>, Error> {
    let secret = match source {
        SecretSource::Env(var) => std::env::var(var)
            .map_err(|_| Error::EnvMissing { key })?
            .into_bytes(),
        SecretSource::File(path) => read_secret_file(key, path)?,
        // Only signing keys are generated; the caller handles that case.
        SecretSource::Generated => Vec::new(),
    };
    secret_strength::check(&secret).map_err(|weakness| Error::Weak { key, weakness })?;
    Ok(secret)
}

/// Loads the signing secret named by the config: from the environment or a file (checked for
/// strength), or generated once (256 random bits) and kept in the store.
///
/// # Errors
/// When the variable or file is missing, the secret is weak, or the store fails.
pub async fn load_secret(config: &TokensConfig, store: &dyn MetaStore) -> Result<Vec<u8>, Error> {
    match &config.secret {
        SecretSource::Generated => {
            let mut key = vec![0u8; 32];
            rand::Rng::fill(&mut rand::rng(), key.as_mut_slice());
            Ok(store.meta_put_if_absent(SIGNING_KEY, key).await?)
        }
        source @ SecretSource::Env(_) => read_secret("tokens.signing_secret_env", source),
        source @ SecretSource::File(_) => read_secret("tokens.signing_secret_file", source),
    }
}

fn read_secret_file(key: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = std::fs::read(path).map_err(|source| Error::File {
        key,
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
    clock: Clock,
    events: Arc<dyn Events>,
    issuer: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    session_lifetime: Duration,
}

impl TokenService {
    pub fn new(
        config: &TokensConfig,
        secret: &[u8],
        clock: Clock,
        events: Arc<dyn Events>,
    ) -> TokenService {
        let algorithm = match config.algorithm {
            SigningAlgorithm::Hs256 => Algorithm::HS256,
            SigningAlgorithm::Hs384 => Algorithm::HS384,
            SigningAlgorithm::Hs512 => Algorithm::HS512,
        };
        // Only the configured algorithm: `alg: none` and every other algorithm are refused.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        // Times are checked against authd's clock below, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        TokenService {
            clock,
            events,
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
    fn issue(&self, spec: TokenSpec<'_>) -> Result<IssuedToken, ApiError> {
        let now = self.clock.now_secs();
        let claims = Claims {
            sub: Claims::subject_claim(spec.subject, spec.user.id),
            jti: Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(spec.lifetime.as_secs()),
            iss: self.issuer.clone(),
            aud: Vec::new(),
            purpose: spec.purpose,
            act: spec.act,
            bnd: spec.bnd,
            sep: Some(spec.user.session_epoch),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(|e| ApiError::Tokens(e.to_string()))?;
        self.events.emit(Event::TokenIssued {
            purpose: claims.purpose.as_str(),
        });
        Ok(IssuedToken { token, claims })
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)?;
        let now = self.clock.now_secs();
        if claims.exp <= now || claims.nbf > now {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    fn session_lifetime(&self) -> Duration {
        self.session_lifetime
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use authd_strategy_api::{NoEvents, Purpose, UserRecord};
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
            Clock::system(),
            Arc::new(NoEvents),
        )
    }

    fn issue(s: &TokenService) -> IssuedToken {
        let user = UserRecord {
            id: Uuid::new_v4(),
            attributes: Default::default(),
            secrets: Default::default(),
            meta: Default::default(),
            session_epoch: 3,
            created_at: 0,
        };
        s.issue(TokenSpec {
            subject: "user",
            user: &user,
            purpose: Purpose::SESSION,
            lifetime: Duration::from_secs(60),
            act: None,
            bnd: None,
        })
        .unwrap()
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
        claims.exp = s.clock.now_secs() - 1;
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &s.encoding)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.verify(&token).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod clock_tests {
    use super::*;
    use authd_strategy_api::{NoEvents, Purpose, UserRecord};

    #[test]
    fn expiry_follows_authd_clock() {
        let clock = Clock::system();
        let s = TokenService::new(
            &TokensConfig {
                issuer: "authd".into(),
                algorithm: SigningAlgorithm::Hs256,
                secret: SecretSource::Generated,
                token_lifetime: Duration::from_secs(60),
            },
            &[9u8; 32],
            clock.clone(),
            Arc::new(NoEvents),
        );
        let user = UserRecord {
            id: Uuid::new_v4(),
            attributes: Default::default(),
            secrets: Default::default(),
            meta: Default::default(),
            session_epoch: 0,
            created_at: 0,
        };
        let t = s
            .issue(TokenSpec {
                subject: "user",
                user: &user,
                purpose: Purpose::SESSION,
                lifetime: Duration::from_secs(60),
                act: None,
                bnd: None,
            })
            .unwrap();
        assert_eq!(t.claims.sep, Some(0));
        assert!(s.verify(&t.token).is_ok());
        clock.advance_ms(61_000);
        assert!(s.verify(&t.token).is_err(), "expired by authd's clock");
    }
}
