//! The connection URL: parsed without connecting (for `authd check`), its TLS wishes turned
//! into a rustls connector, and a masked form for logs.
//!
//! `sslmode` is read the libpq way with one difference: when TLS is used the server's
//! certificate is always verified (against the webpki roots, or the certificates in the
//! file named by `sslrootcert`). `require`, `verify-ca` and `verify-full` use TLS;
//! `disable`, `allow`, `prefer` and no `sslmode` at all use plain TCP (a TLS connection that
//! is not verified protects against nothing an attacker on the path cannot undo).

use std::str::FromStr;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::OpenError;

/// Why a URL is not usable. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    #[error("is not a postgres:// or postgresql:// URL")]
    Scheme,
    #[error("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")]
    SslMode,
    #[error("is not a valid PostgreSQL URL: {0}")]
    Invalid(String),
    #[error("names no host")]
    NoHost,
}

/// A parsed URL.
#[derive(Clone)]
pub struct ConnectionUrl {
    pub(crate) config: tokio_postgres::Config,
    tls: bool,
    root_cert: Option<String>,
    masked: String,
}

impl std::fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionUrl")
            .field("url", &self.masked)
            .finish()
    }
}

impl ConnectionUrl {
    /// Parses `url` (no connection, no file read).
    ///
    /// # Errors
    /// When it is not a PostgreSQL URL authd can use.
    pub fn parse(url: &str) -> Result<ConnectionUrl, UrlError> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or(UrlError::Scheme)?;
        let (base, query) = match rest.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (rest, None),
        };
        let mut tls = false;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    tls = match value {
                        "disable" | "allow" | "prefer" => false,
                        "require" | "verify-ca" | "verify-full" => true,
                        _ => return Err(UrlError::SslMode),
                    };
                }
                "sslrootcert" => root_cert = Some(percent_decode(value)),
                _ => kept.push(pair),
            }
        }
        let mut rebuilt = format!("postgresql://{base}");
        if !kept.is_empty() {
            rebuilt.push('?');
            rebuilt.push_str(&kept.join("&"));
        }
        let mut config = tokio_postgres::Config::from_str(&rebuilt)
            .map_err(|e| UrlError::Invalid(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(UrlError::NoHost);
        }
        config.ssl_mode(if tls {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        });
        Ok(ConnectionUrl {
            config,
            tls,
            root_cert,
            masked: mask_url(url),
        })
    }

    /// Host, port and database, for messages.
    pub fn target(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}:{port}/{}",
            hosts.join(","),
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// Whether the connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls
    }

    /// The rustls connector, when the URL asks for TLS.
    pub(crate) fn tls(&self) -> Result<Option<MakeRustlsConnect>, OpenError> {
        if !self.tls {
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| OpenError::Tls(format!("sslrootcert {path}: {e}")))?;
                for cert in certs {
                    let cert =
                        cert.map_err(|e| OpenError::Tls(format!("sslrootcert {path}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| OpenError::Tls(format!("sslrootcert {path}: {e}")))?;
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OpenError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// `url` with its password (in the user part or a `password=` parameter) replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `%XX` escapes of a query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_wherever_they_are() {
        assert_eq!(
            mask_url("postgres://authd:s3cret@db.internal:5432/authd?sslmode=require"),
            "postgres://authd:***@db.internal:5432/authd?sslmode=require"
        );
        assert_eq!(
            mask_url("postgres://db/authd?user=a&password=s3cret"),
            "postgres://db/authd?user=a&password=***"
        );
        assert_eq!(mask_url("postgres://a@db"), "postgres://a@db");
        assert!(!mask_url("postgres://u:p@ss@h/d").contains("p@ss"));
    }

    #[test]
    fn sslmode_decides_tls_and_unknown_modes_are_refused() {
        let plain = ConnectionUrl::parse("postgres://postgres@127.0.0.1:5432/test").unwrap();
        assert!(!plain.uses_tls());
        assert_eq!(plain.target(), "127.0.0.1:5432/test");
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgresql://u:pw@db.internal/authd?sslmode={mode}");
            let parsed = ConnectionUrl::parse(&url).unwrap();
            assert!(parsed.uses_tls(), "{mode}");
            assert!(parsed.tls().unwrap().is_some());
            assert!(!format!("{parsed:?}").contains("pw"));
        }
        assert_eq!(
            ConnectionUrl::parse("postgres://db/x?sslmode=sometimes").unwrap_err(),
            UrlError::SslMode
        );
        assert_eq!(
            ConnectionUrl::parse("mysql://db/x").unwrap_err(),
            UrlError::Scheme
        );
        assert!(matches!(
            ConnectionUrl::parse("postgres://db/x?bogus=1"),
            Err(UrlError::Invalid(_))
        ));
    }

    #[test]
    fn a_missing_root_certificate_file_is_a_clear_error() {
        let parsed = ConnectionUrl::parse(
            "postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent%2Fca.pem",
        )
        .unwrap();
        let err = parsed.tls().err().unwrap().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
