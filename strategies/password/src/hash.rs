//! Password hashes: making them (argon2id, scrypt or bcrypt, as configured), verifying them,
//! and accepting the hashes of the systems users migrate from.
//!
//! A stored hash is always verified with the algorithm and parameters written in its own
//! string, whatever the current configuration says, so that changing the configured algorithm
//! never locks anyone out; [`HashParams::is_stale`] then says it should be rehashed at the next
//! sign-in. Besides authd's own PHC and modular-crypt strings, [`verify`] reads argon2i/d,
//! `$2a$`/`$2y$` bcrypt, passlib's and better-auth's scrypt, and Django's, passlib's and the
//! PHC (Kratos) PBKDF2 forms ([`Format`]); [`import`] checks such a string without hashing.
//!
//! Every stored hash is held to the bounds of [`bounds`] before it is run, at import and at
//! each verification: a hash outside them is refused with an error naming the bound, never
//! computed. The submodules split the work: `formats` reads strings (never hashes), `bounds`
//! judges costs, `kdf` runs the functions.
//!
//! Everything here is blocking CPU work: callers run it on the hashing pool, never on the
//! async runtime.

pub mod bounds;
mod formats;
mod kdf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use password_hash::{PasswordHasher, SaltString};
use rand::RngCore;
use subtle::ConstantTimeEq;

pub use formats::{Format, identify};

/// Length of argon2 and scrypt outputs, and of every salt, in bytes.
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// The configured algorithm and its cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashParams {
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    Scrypt {
        log_n: u8,
        r: u32,
        p: u32,
    },
    Bcrypt {
        cost: u32,
    },
}

/// An algorithm authd hashes new passwords with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    Argon2id,
    Scrypt,
    Bcrypt,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Argon2id, Algorithm::Scrypt, Algorithm::Bcrypt];

    /// The one place for OWASP's recommended parameters (Password Storage Cheat Sheet):
    /// argon2id m=19 MiB t=2 p=1, scrypt N=2^17 r=8 p=1. For bcrypt OWASP sets a floor of
    /// cost 10; authd uses 12. [`HashParams::default`] and the configuration's defaults
    /// come from here.
    pub const fn owasp(self) -> HashParams {
        match self {
            Algorithm::Argon2id => HashParams::Argon2id {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1,
            },
            Algorithm::Scrypt => HashParams::Scrypt {
                log_n: 17,
                r: 8,
                p: 1,
            },
            Algorithm::Bcrypt => HashParams::Bcrypt { cost: 12 },
        }
    }

    /// The name used in the configuration (`hash.algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Argon2id => "argon2id",
            Algorithm::Scrypt => "scrypt",
            Algorithm::Bcrypt => "bcrypt",
        }
    }
}

impl Default for HashParams {
    /// argon2id at OWASP's recommended parameters ([`Algorithm::owasp`]).
    fn default() -> Self {
        Algorithm::Argon2id.owasp()
    }
}

impl std::fmt::Display for HashParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => write!(f, "argon2id m={memory_kib} t={iterations} p={parallelism}"),
            HashParams::Scrypt { log_n, r, p } => write!(f, "scrypt log_n={log_n} r={r} p={p}"),
            HashParams::Bcrypt { cost } => write!(f, "bcrypt cost={cost}"),
        }
    }
}

/// Why a hash string is refused before anything is hashed with it, at [`import`] or at
/// [`verify`]. Messages name what is wrong and never contain the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The format name given to [`import`] is not one of [`Format::name`].
    #[error("unknown hash format {0}; known formats: {known}", known = known_formats())]
    UnknownFormat(String),
    /// No format claims the string.
    #[error("not a password hash of any supported format")]
    Unrecognized,
    /// The string is not in the format [`import`] was told it is in.
    #[error("the hash is not in the {expected} format{}", found.map(|f| format!(" (it looks like {f})")).unwrap_or_default())]
    WrongFormat {
        expected: Format,
        found: Option<Format>,
    },
    /// The string claims a format but does not follow it.
    #[error("malformed {format} hash: {reason}")]
    Malformed {
        format: Format,
        reason: &'static str,
    },
    /// A known format authd refuses, and why.
    #[error("unsupported hash: {0}")]
    Unsupported(&'static str),
    /// A cost or size above its bound (see [`bounds`]).
    #[error("{what} {value}{unit} is above the import limit of {limit}{unit}")]
    AboveLimit {
        what: &'static str,
        value: u64,
        limit: u64,
        unit: &'static str,
    },
    /// A cost or size below its floor (see [`bounds`]).
    #[error("{what} {value}{unit} is below the minimum of {limit}{unit}")]
    BelowMinimum {
        what: &'static str,
        value: u64,
        limit: u64,
        unit: &'static str,
    },
}

impl HashParams {
    /// OWASP's recommended setting for each algorithm, in the order of [`Algorithm::ALL`].
    pub const OWASP: [HashParams; 3] = [
        Algorithm::Argon2id.owasp(),
        Algorithm::Scrypt.owasp(),
        Algorithm::Bcrypt.owasp(),
    ];

    /// Bytes of memory one hash works in: what each hashing worker holds while it hashes.
    pub fn memory_bytes(&self) -> u64 {
        match *self {
            HashParams::Argon2id { memory_kib, .. } => u64::from(memory_kib) * 1024,
            // V (128 * r * N) plus B (128 * r * p).
            HashParams::Scrypt { log_n, r, p } => {
                128 * u64::from(r) * (1u64 << log_n.min(40)) + 128 * u64::from(r) * u64::from(p)
            }
            // Blowfish's state: four 256-entry S-boxes and the 18-entry P-array of u32.
            HashParams::Bcrypt { .. } => 4 * 256 * 4 + 18 * 4,
        }
    }

    /// The value of a password strategy's `hash` key that selects these parameters, e.g.
    /// `{ algorithm = "bcrypt", cost = 12 }`: what the tools print for pasting into a config.
    pub fn toml_value(&self) -> String {
        match *self {
            HashParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => format!(
                "{{ algorithm = \"argon2id\", memory_kib = {memory_kib}, iterations = {iterations}, parallelism = {parallelism} }}"
            ),
            HashParams::Scrypt { log_n, r, p } => {
                format!("{{ algorithm = \"scrypt\", log_n = {log_n}, r = {r}, p = {p} }}")
            }
            HashParams::Bcrypt { cost } => format!("{{ algorithm = \"bcrypt\", cost = {cost} }}"),
        }
    }

    /// The same as JSON, with the config file's key names.
    pub fn to_json(&self) -> serde_json::Value {
        match *self {
            HashParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => serde_json::json!({
                "algorithm": "argon2id",
                "memory_kib": memory_kib,
                "iterations": iterations,
                "parallelism": parallelism,
            }),
            HashParams::Scrypt { log_n, r, p } => {
                serde_json::json!({ "algorithm": "scrypt", "log_n": log_n, "r": r, "p": p })
            }
            HashParams::Bcrypt { cost } => {
                serde_json::json!({ "algorithm": "bcrypt", "cost": cost })
            }
        }
    }
}

fn known_formats() -> String {
    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    names.join(", ")
}

/// The hashing machinery failed, or a stored hash was refused before being run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The stored string is malformed, of an unknown format, or outside the bounds: nothing
    /// was hashed.
    #[error("stored hash refused: {0}")]
    Refused(#[from] ImportError),
    /// The algorithm refused its parameters or failed.
    #[error("{0}")]
    Failed(String),
}

/// Checks a hash exported from another system and returns the string to store for it.
///
/// `format` is a [`Format::name`], or `None` to detect it ([`identify`]). Nothing is hashed:
/// the string is parsed, and its costs and sizes are held to the [`bounds`].
///
/// The string is stored as given: every accepted form names its algorithm and parameters, so
/// [`verify`] reads it as it is, and re-encoding would risk changing what it means (better-auth
/// and Django hash the salt's text, not bytes it might encode). Under the default
/// configuration each imported hash is stale ([`HashParams::is_stale`]) and is replaced by an
/// authd hash at the user's next sign-in.
///
/// # Errors
/// An unknown format name, a string of no supported format or not of the one named, a
/// malformed string, `$2x$`/`$2$` bcrypt, or a cost or size outside the bounds; see
/// [`ImportError`]. The message never contains the hash.
pub fn import(format: Option<&str>, value: &str) -> Result<String, ImportError> {
    if let Some(name) = format {
        let Some(expected) = Format::from_name(name) else {
            return Err(ImportError::UnknownFormat(quote_name(name)));
        };
        let found = identify(value);
        if found != Some(expected) {
            return Err(ImportError::WrongFormat { expected, found });
        }
    }
    let parsed = formats::parse(value)?;
    bounds::check(&parsed)?;
    Ok(value.to_owned())
}

/// `name` quoted for an error message when it looks like a format name; anything else (a
/// hash pasted in the wrong field) is not repeated.
fn quote_name(name: &str) -> String {
    let plain = name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("`{name}`")
    } else {
        "(not shown)".to_string()
    }
}

impl HashParams {
    /// The algorithm of these parameters.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            HashParams::Argon2id { .. } => Algorithm::Argon2id,
            HashParams::Scrypt { .. } => Algorithm::Scrypt,
            HashParams::Bcrypt { .. } => Algorithm::Bcrypt,
        }
    }

    /// Most bytes of password the algorithm uses (bcrypt ignores the rest, so authd refuses it).
    pub fn max_password_bytes(&self) -> Option<usize> {
        match self {
            HashParams::Bcrypt { .. } => Some(72),
            _ => None,
        }
    }

    /// Hashes `password` with a fresh random salt.
    ///
    /// # Errors
    /// When the parameters are refused by the algorithm.
    pub fn hash(&self, password: &[u8]) -> Result<String, HashError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        match *self {
            HashParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let params =
                    argon2::Params::new(memory_kib, iterations, parallelism, Some(OUTPUT_LEN))
                        .map_err(err)?;
                let mut out = [0u8; OUTPUT_LEN];
                kdf::argon2_raw(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                    password,
                    &salt,
                    &mut out,
                )?;
                Ok(format!(
                    "$argon2id$v=19$m={memory_kib},t={iterations},p={parallelism}${}${}",
                    B64.encode(salt),
                    B64.encode(out)
                ))
            }
            HashParams::Scrypt { log_n, r, p } => {
                let params = scrypt::Params::new(log_n, r, p, OUTPUT_LEN).map_err(err)?;
                let salt = SaltString::encode_b64(&salt).map_err(err)?;
                let hash = scrypt::Scrypt
                    .hash_password_customized(password, None, None, params, &salt)
                    .map_err(err)?;
                Ok(hash.to_string())
            }
            HashParams::Bcrypt { cost } => {
                let parts = bcrypt::hash_with_salt(password, cost, salt).map_err(err)?;
                Ok(parts.format_for_version(bcrypt::Version::TwoB))
            }
        }
    }

    /// A well-formed hash of these parameters that no password matches (random salt and
    /// output): verifying against it costs what verifying a real hash costs.
    pub fn dummy(&self) -> String {
        let mut salt = [0u8; SALT_LEN];
        let mut out = [0u8; OUTPUT_LEN];
        rand::rng().fill_bytes(&mut salt);
        rand::rng().fill_bytes(&mut out);
        match *self {
            HashParams::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => format!(
                "$argon2id$v=19$m={memory_kib},t={iterations},p={parallelism}${}${}",
                B64.encode(salt),
                B64.encode(out)
            ),
            HashParams::Scrypt { log_n, r, p } => format!(
                "$scrypt$ln={log_n},r={r},p={p}${}${}",
                B64.encode(salt),
                B64.encode(out)
            ),
            HashParams::Bcrypt { cost } => {
                // A real hash of random bytes at the cheapest cost, relabelled with the
                // configured cost: verifying against it runs the full configured cost.
                match bcrypt::hash_with_salt(out, 4, salt) {
                    Ok(parts) => parts.format_for_version(bcrypt::Version::TwoB).replacen(
                        "$2b$04$",
                        &format!("$2b${cost:02}$"),
                        1,
                    ),
                    Err(_) => String::new(),
                }
            }
        }
    }

    /// Whether `stored` is not a hash of these exact parameters: another algorithm, other
    /// costs, another output length, another bcrypt variant than `$2b$`, an imported format,
    /// or no readable hash at all. The sign-in path then rehashes it with these parameters.
    pub fn is_stale(&self, stored: &str) -> bool {
        formats::parse(stored)
            .ok()
            .and_then(|parsed| native_params(&parsed))
            .is_none_or(|p| p != *self)
    }
}

/// The parameters of a parsed hash when it is one authd itself writes, with authd's output
/// length; `None` for everything else.
fn native_params(parsed: &formats::Parsed) -> Option<HashParams> {
    use formats::Kdf;
    let native_output = parsed.expected.len() == OUTPUT_LEN;
    match (parsed.format, parsed.kdf) {
        (
            Format::Argon2id,
            Kdf::Argon2 {
                version: argon2::Version::V0x13,
                m,
                t,
                p,
                ..
            },
        ) if native_output => Some(HashParams::Argon2id {
            memory_kib: m,
            iterations: t,
            parallelism: p,
        }),
        (Format::Scrypt, Kdf::Scrypt { log_n, r, p, .. }) if native_output => {
            Some(HashParams::Scrypt { log_n, r, p })
        }
        (Format::Bcrypt, Kdf::Bcrypt { minor: b'b', cost }) => Some(HashParams::Bcrypt { cost }),
        _ => None,
    }
}

/// Verifies `password` against a stored hash of any supported [`Format`], using the
/// parameters recorded in the hash. `Ok(false)` for a wrong password.
///
/// bcrypt uses only the first 72 bytes of a password; a longer one never matches a bcrypt
/// hash here (authd refuses such passwords when it hashes with bcrypt), though the work is
/// done all the same. better-auth's format NFKC-normalizes the password first, as
/// better-auth does; no other format does.
///
/// # Errors
/// [`HashError::Refused`] when the stored string is malformed, of no supported format, or
/// outside the [`bounds`] (then nothing is hashed); [`HashError::Failed`] when the algorithm
/// fails.
pub fn verify(password: &[u8], stored: &str) -> Result<bool, HashError> {
    let parsed = formats::parse(stored)?;
    bounds::check(&parsed)?;
    let mut out = vec![0u8; parsed.expected.len()];
    kdf::derive(parsed.kdf, password, &parsed.salt, &mut out)?;
    let matches = bool::from(out.as_slice().ct_eq(parsed.expected.as_slice()));
    let too_long = matches!(parsed.kdf, formats::Kdf::Bcrypt { .. }) && password.len() > 72;
    Ok(matches && !too_long)
}

/// A short fingerprint of a stored hash, put in reset and sign-in tokens so that they die when
/// the password changes. It reveals nothing: the hash it is taken from is salted and slow.
pub fn fingerprint(stored: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(stored.unwrap_or("").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
}

fn err(e: impl std::fmt::Display) -> HashError {
    HashError::Failed(e.to_string())
}

#[cfg(test)]
mod tests;
