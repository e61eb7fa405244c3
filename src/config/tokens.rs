//! `[tokens]` and `[introspection]`: their validated types and checks (algorithm, audience,
//! rotation, the key-encryption key's variable, the operator's `[[tokens.keys]]`, the
//! introspection clients). Pure, like the rest of validation: no key file is opened here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use authd_strategy_api::{Problems, parse_lifetime};

use super::raw::{RawIntrospection, RawTokens};
use super::{SecretSource, is_url_name, secret_source};

/// Algorithms for signing tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlgorithm {
    Hs256,
    Hs384,
    Hs512,
    /// Ed25519.
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order the docs list them.
    pub const ALL: [SigningAlgorithm; 6] = [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Hs256,
        SigningAlgorithm::Hs384,
        SigningAlgorithm::Hs512,
    ];

    /// The JOSE name (`alg`).
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Hs256 => "HS256",
            SigningAlgorithm::Hs384 => "HS384",
            SigningAlgorithm::Hs512 => "HS512",
            SigningAlgorithm::EdDsa => "EdDSA",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Rs256 => "RS256",
        }
    }

    /// The algorithm of a JOSE name.
    pub fn from_name(name: &str) -> Option<SigningAlgorithm> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// HMAC: one shared secret, never published.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            SigningAlgorithm::Hs256 | SigningAlgorithm::Hs384 | SigningAlgorithm::Hs512
        )
    }
}

/// The lifecycle state of an operator's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published in the JWKS, verifies, does not sign yet.
    Pending,
    /// Signs new tokens (exactly one).
    Active,
    /// Verifies the tokens it signed until they have expired; signs no more.
    Retired,
}

impl KeyState {
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// `[[tokens.keys]]`: a key of the operator's, read from a PEM file when a generation is
/// built (validation opens no file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    /// The `kid`; `None`: the RFC 7638 thumbprint of the public key.
    pub id: Option<String>,
    pub file: PathBuf,
    pub state: KeyState,
}

impl KeyConfig {
    /// How messages name the key: its id, else its file.
    pub fn label(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| self.file.display().to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensConfig {
    pub issuer: String,
    pub algorithm: SigningAlgorithm,
    /// The HMAC secret: signs with an HMAC algorithm; otherwise verifies HMAC tokens issued
    /// before a switch.
    pub secret: SecretSource,
    pub token_lifetime: Duration,
    /// `aud` of every token (a resource may override it).
    pub audience: Vec<String>,
    /// Generated keys: how often a new one is made.
    pub rotate_every: Option<Duration>,
    /// How long a new generated key is published before it signs.
    pub publish_ahead: Duration,
    /// The environment variable holding the key-encryption key(s).
    pub key_encryption_key_env: Option<String>,
    /// The operator's keys; empty: keys are generated and kept in the store.
    pub keys: Vec<KeyConfig>,
}

impl TokensConfig {
    /// Defaults for `algorithm` and `issuer`, as a file without `[tokens]` would give (tests,
    /// benchmarks).
    pub fn with(algorithm: SigningAlgorithm, issuer: &str) -> TokensConfig {
        TokensConfig {
            issuer: issuer.into(),
            algorithm,
            secret: SecretSource::Generated,
            token_lifetime: Duration::from_secs(14 * 24 * 3600),
            audience: Vec::new(),
            rotate_every: None,
            publish_ahead: Duration::from_secs(3600),
            key_encryption_key_env: None,
            keys: Vec::new(),
        }
    }
}

/// `[introspection]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// `(name, secret)`, by name.
    pub clients: Vec<(String, SecretSource)>,
}

/// Whether `id` can be a `kid` (and a word in messages): letters, digits, `.`, `_`, `-`.
fn is_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks an `audience` list at `key`.
pub(super) fn check_audience(key: &str, list: Vec<String>, problems: &mut Problems) -> Vec<String> {
    if list.len() > 16 {
        problems.push(key, "at most 16 audiences");
    }
    for (i, aud) in list.iter().enumerate() {
        if aud.trim().is_empty() || aud.len() > 256 {
            problems.push(
                format!("{key}[{i}]"),
                "must be a non-empty string of at most 256 characters",
            );
        }
    }
    list
}

/// Reads a duration at `key` within `min..=max`.
fn check_duration(
    key: &str,
    text: &str,
    (min, max): (Duration, Duration),
    bounds: &str,
    problems: &mut Problems,
) -> Duration {
    match authd_strategy_api::parse_duration(text) {
        Ok(d) if d >= min && d <= max => d,
        Ok(_) => {
            problems.push(key, format!("must be between {bounds}"));
            min
        }
        Err(m) => {
            problems.push(key, m);
            min
        }
    }
}

pub(super) fn check_tokens(raw: RawTokens, problems: &mut Problems) -> TokensConfig {
    let algorithm = SigningAlgorithm::from_name(&raw.signing_algorithm).unwrap_or_else(|| {
        problems.push(
            "tokens.signing_algorithm",
            "is not supported: use EdDSA, ES256, RS256, HS256, HS384 or HS512",
        );
        SigningAlgorithm::EdDsa
    });
    let secret = secret_source(
        "tokens.signing_secret_env",
        "tokens.signing_secret_file",
        raw.signing_secret_env,
        raw.signing_secret_file,
        problems,
    )
    .unwrap_or(SecretSource::Generated);
    if raw.issuer.is_empty() {
        problems.push("tokens.issuer", "must not be empty");
    }
    let token_lifetime = parse_lifetime(&raw.token_lifetime).unwrap_or_else(|m| {
        problems.push("tokens.token_lifetime", m);
        Duration::ZERO
    });
    let audience = check_audience("tokens.audience", raw.audience, problems);
    let publish_ahead = check_duration(
        "tokens.publish_ahead",
        &raw.publish_ahead,
        (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600)),
        "1s and 7d",
        problems,
    );
    let rotate_every = raw.rotate_every.map(|text| {
        let d = check_duration(
            "tokens.rotate_every",
            &text,
            (
                Duration::from_secs(60),
                Duration::from_secs(5 * 365 * 24 * 3600),
            ),
            "1m and 5y",
            problems,
        );
        if d <= publish_ahead {
            problems.push(
                "tokens.rotate_every",
                "must be longer than tokens.publish_ahead",
            );
        }
        d
    });
    if rotate_every.is_some() && algorithm.is_hmac() {
        problems.push(
            "tokens.rotate_every",
            "rotates generated asymmetric keys: use EdDSA, ES256 or RS256",
        );
    }
    if let Some(var) = &raw.key_encryption_key_env
        && var.is_empty()
    {
        problems.push(
            "tokens.key_encryption_key_env",
            "must name an environment variable",
        );
    }
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut ids = BTreeSet::new();
    let mut files = BTreeSet::new();
    for (i, key) in raw.keys.into_iter().enumerate() {
        let at = format!("tokens.keys[{i}]");
        let state = match key.state.as_str() {
            "pending" => KeyState::Pending,
            "active" => KeyState::Active,
            "retired" => KeyState::Retired,
            _ => {
                problems.push(
                    format!("{at}.state"),
                    "is not a state: use pending, active or retired",
                );
                KeyState::Retired
            }
        };
        if let Some(id) = &key.id {
            if !is_key_id(id) {
                problems.push(
                    format!("{at}.id"),
                    "use letters, digits, '.', '_' and '-' (at most 64)",
                );
            } else if !ids.insert(id.clone()) {
                problems.push(format!("{at}.id"), "two keys have this id");
            }
        }
        if key.file.as_os_str().is_empty() {
            problems.push(format!("{at}.file"), "must not be empty");
        } else if !files.insert(key.file.clone()) {
            problems.push(format!("{at}.file"), "two keys read this file");
        }
        keys.push(KeyConfig {
            id: key.id,
            file: key.file,
            state,
        });
    }
    if !keys.is_empty() {
        if algorithm.is_hmac() {
            problems.push(
                "tokens.keys",
                "PEM keys sign with an asymmetric tokens.signing_algorithm (EdDSA, ES256 or RS256)",
            );
        }
        let active = keys.iter().filter(|k| k.state == KeyState::Active).count();
        if active != 1 {
            problems.push(
                "tokens.keys",
                format!("exactly one key must be active (found {active})"),
            );
        }
        if rotate_every.is_some() {
            problems.push(
                "tokens.rotate_every",
                "rotates generated keys; rotate [[tokens.keys]] by editing the list",
            );
        }
    }
    TokensConfig {
        issuer: raw.issuer,
        algorithm,
        secret,
        token_lifetime,
        audience,
        rotate_every,
        publish_ahead,
        key_encryption_key_env: raw.key_encryption_key_env,
        keys,
    }
}

pub(super) fn check_introspection(
    raw: RawIntrospection,
    problems: &mut Problems,
) -> IntrospectionConfig {
    let mut clients = Vec::new();
    for (name, client) in raw.clients {
        let at = format!("introspection.clients.{name}");
        if !is_url_name(&name) {
            problems.push(
                at.clone(),
                "client names are sent in HTTP Basic: use lower-case letters, digits and _ (at most 64)",
            );
        }
        let env_key = format!("{at}.secret_env");
        let file_key = format!("{at}.secret_file");
        match secret_source(
            &env_key,
            &file_key,
            client.secret_env,
            client.secret_file,
            problems,
        ) {
            Some(source) => clients.push((name, source)),
            None => problems.push(
                env_key,
                "the client needs a secret: set secret_env or secret_file",
            ),
        }
    }
    IntrospectionConfig { clients }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn problems(tokens: &str) -> Vec<String> {
        let text = format!(
            "version = 1\n{tokens}\n[resources.user]\nattributes.email = {{ type = \"string\" }}\n"
        );
        match crate::registry::parse_config(&text) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn token_keys_are_validated_with_their_paths_never_echoing_values() {
        let c = crate::registry::parse_config("version = 1\n").unwrap();
        assert_eq!(c.tokens.algorithm, SigningAlgorithm::EdDsa, "the default");
        assert_eq!(c.tokens.publish_ahead, Duration::from_secs(3600));

        let found = problems(
            "[tokens]\nsigning_algorithm = \"secret-RS512\"\npublish_ahead = \"soon-xyz\"\n\
             rotate_every = \"10s\"\naudience = [\"\"]\nkey_encryption_key_env = \"\"\n\
             [[tokens.keys]]\nid = \"bad id!\"\nfile = \"/k/a.pem\"\nstate = \"dormant-xyz\"\n\
             [[tokens.keys]]\nfile = \"/k/a.pem\"\ncolour = \"x\"\n\
             [introspection.clients.orders]\n[introspection.clients.Bad]\nsecret_env = \"S\"",
        );
        for path in [
            "tokens.signing_algorithm:",
            "tokens.publish_ahead:",
            "tokens.rotate_every:",
            "tokens.audience[0]:",
            "tokens.key_encryption_key_env:",
            "tokens.keys[0].id:",
            "tokens.keys[0].state:",
            "tokens.keys[1].file: two keys read this file",
            "tokens.keys[1].colour: unknown key",
            "introspection.clients.orders.secret_env:",
            "introspection.clients.Bad:",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(path)),
                "missing {path} in {found:#?}"
            );
        }
        for p in &found {
            for value in ["secret-RS512", "soon-xyz", "dormant-xyz", "bad id!"] {
                assert!(!p.contains(value), "{p} echoes a value");
            }
        }
        // Exactly one active key; PEM keys need an asymmetric algorithm; no rotate_every
        // with a list; HMAC does not rotate.
        let found = problems(
            "[tokens]\nsigning_algorithm = \"HS256\"\nrotate_every = \"30d\"\n\
             [[tokens.keys]]\nfile = \"/a\"\nstate = \"retired\"",
        );
        for text in [
            "tokens.keys: exactly one key must be active (found 0)",
            "tokens.keys: PEM keys sign with an asymmetric",
            "tokens.rotate_every: rotates generated keys; rotate [[tokens.keys]]",
            "tokens.rotate_every: rotates generated asymmetric keys",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(text)),
                "missing {text} in {found:#?}"
            );
        }
        // A resource's audience overrides the default.
        let c = crate::registry::parse_config(
            "version = 1\n[tokens]\naudience = [\"a\"]\n[resources.user]\naudience = [\"b\"]\n\
             [resources.staff]\n",
        )
        .unwrap();
        assert_eq!(c.audience_of("user"), ["b".to_string()]);
        assert_eq!(c.audience_of("staff"), ["a".to_string()]);
    }
}
