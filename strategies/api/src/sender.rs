//! How a strategy hands a message (a password-reset token) to the outside world.
//!
//! The strategy declares *which* sender it wants as data ([`SenderSpec`], read from its TOML
//! table); the daemon owns the implementations ([`Senders`]) because they speak HTTP or SMTP.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Problem;

/// The `sender` table of a strategy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SenderSpec {
    /// Writes the message, token included, to the daemon's log. For development only.
    Log {},
    /// POSTs the message as JSON to `url` (plain `http://`; put a TLS proxy in front for https).
    Webhook {
        /// Where to POST, e.g. `http://127.0.0.1:9000/password-reset`.
        url: String,
    },
}

impl SenderSpec {
    /// Checks what can be checked without the network.
    ///
    /// # Errors
    /// A problem at `path` when the URL cannot be used.
    pub fn validate(&self, path: &str) -> Result<(), Problem> {
        match self {
            SenderSpec::Log {} => Ok(()),
            SenderSpec::Webhook { url } => {
                let rest = url.strip_prefix("http://").ok_or_else(|| {
                    Problem::new(
                        format!("{path}.url"),
                        "must start with http:// (https is not supported yet: use a local TLS proxy)",
                    )
                })?;
                let host = rest.split('/').next().unwrap_or_default();
                if host.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(Problem::new(format!("{path}.url"), "is not a valid URL"));
                }
                Ok(())
            }
        }
    }
}

/// A password-reset message: who, and the token that lets them reset.
#[derive(Debug, Clone, Serialize)]
pub struct ResetMessage {
    pub subject: String,
    pub strategy: String,
    /// The user as the API shows it (id and attributes, never a hash).
    pub user: serde_json::Value,
    pub token: String,
    /// When the token expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Delivers messages. Implementations must not log the token (except the `log` sender, whose
/// whole purpose is to).
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    /// # Errors
    /// A message describing why the delivery failed.
    async fn send_reset(&self, message: ResetMessage) -> Result<(), String>;
}

/// Turns a [`SenderSpec`] into a live sender; implemented by the daemon.
pub trait Senders: Send + Sync {
    fn build(&self, spec: &SenderSpec) -> Arc<dyn Sender>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_reads_tagged_tables_and_refuses_unknown_keys() {
        let ok: SenderSpec = toml::from_str("type = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.validate("s").is_ok());
        assert!(toml::from_str::<SenderSpec>("type = \"log\"\nurl = \"x\"").is_err());
        assert!(toml::from_str::<SenderSpec>("type = \"carrier_pigeon\"").is_err());
        let https = SenderSpec::Webhook {
            url: "https://x".into(),
        };
        assert_eq!(
            https.validate("s").err().map(|p| p.path),
            Some("s.url".into())
        );
    }
}
