//! Reading stored hash strings: which format a string is in ([`identify`]), and the
//! parameters, salt and expected output written in it ([`parse`]).
//!
//! Nothing here hashes and nothing here judges costs: `bounds.rs` checks every parsed hash
//! before `kdf.rs` may run it. Errors name what is wrong with a string, never its text, so
//! that they can be logged and shown to an admin without leaking a hash.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};

use super::ImportError;

/// A stored-hash format authd verifies. Names ([`Format::name`]) are stable: metrics and the
/// admin API use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `$argon2id$v=19$m=..,t=..,p=..$salt$hash` (PHC); `v=16` and no `v` (argon2 1.0) too.
    Argon2id,
    /// `$argon2i$...`, as [`Format::Argon2id`].
    Argon2i,
    /// `$argon2d$...`, as [`Format::Argon2id`].
    Argon2d,
    /// `$2a$`, `$2b$` and `$2y$` modular crypt: `$2b$12$<22 salt chars><31 hash chars>`.
    Bcrypt,
    /// `$scrypt$ln=..,r=..,p=..$salt$hash` (PHC, as RustCrypto's scrypt crate and passlib write it).
    Scrypt,
    /// better-auth's `hex(salt):hex(key)`: scrypt N=16384 r=16 p=1, a 64-byte key, the
    /// password NFKC-normalized, and the salt being the 32 hex characters themselves.
    BetterAuthScrypt,
    /// Django's `pbkdf2_sha256$<iterations>$<salt text>$<base64 hash>`.
    DjangoPbkdf2Sha256,
    /// Django's `pbkdf2_sha1$<iterations>$<salt text>$<base64 hash>`.
    DjangoPbkdf2Sha1,
    /// `$pbkdf2-sha256$i=<iterations>,l=<length>$<salt>$<hash>` (PHC: RustCrypto's pbkdf2
    /// crate, Ory Kratos).
    Pbkdf2Sha256,
    /// `$pbkdf2-sha512$i=..,l=..$salt$hash`, as [`Format::Pbkdf2Sha256`].
    Pbkdf2Sha512,
    /// `$pbkdf2$i=..,l=..$salt$hash`: the PHC identifier RustCrypto's crate gives PBKDF2-SHA1.
    Pbkdf2Sha1,
    /// passlib's `$pbkdf2-sha256$<iterations>$<ab64 salt>$<ab64 hash>`.
    PasslibPbkdf2Sha256,
    /// passlib's `$pbkdf2-sha512$<iterations>$<ab64 salt>$<ab64 hash>`.
    PasslibPbkdf2Sha512,
    /// passlib's `$pbkdf2$<iterations>$<ab64 salt>$<ab64 hash>` (SHA-1).
    PasslibPbkdf2Sha1,
}

impl Format {
    /// Every format, in the order the documentation lists them.
    pub const ALL: [Format; 14] = [
        Format::Argon2id,
        Format::Argon2i,
        Format::Argon2d,
        Format::Bcrypt,
        Format::Scrypt,
        Format::BetterAuthScrypt,
        Format::DjangoPbkdf2Sha256,
        Format::DjangoPbkdf2Sha1,
        Format::Pbkdf2Sha256,
        Format::Pbkdf2Sha512,
        Format::Pbkdf2Sha1,
        Format::PasslibPbkdf2Sha256,
        Format::PasslibPbkdf2Sha512,
        Format::PasslibPbkdf2Sha1,
    ];

    /// The stable name used in metrics, logs and the admin API (`import`'s `format`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Argon2id => "argon2id",
            Format::Argon2i => "argon2i",
            Format::Argon2d => "argon2d",
            Format::Bcrypt => "bcrypt",
            Format::Scrypt => "scrypt",
            Format::BetterAuthScrypt => "better-auth-scrypt",
            Format::DjangoPbkdf2Sha256 => "django-pbkdf2-sha256",
            Format::DjangoPbkdf2Sha1 => "django-pbkdf2-sha1",
            Format::Pbkdf2Sha256 => "pbkdf2-sha256",
            Format::Pbkdf2Sha512 => "pbkdf2-sha512",
            Format::Pbkdf2Sha1 => "pbkdf2-sha1",
            Format::PasslibPbkdf2Sha256 => "passlib-pbkdf2-sha256",
            Format::PasslibPbkdf2Sha512 => "passlib-pbkdf2-sha512",
            Format::PasslibPbkdf2Sha1 => "passlib-pbkdf2-sha1",
        }
    }

    /// The format of that [`name`](Format::name).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The format `stored` claims by its prefix (or, for better-auth, its shape: 32 hex
/// characters, `:`, 128 hex characters). Parameters are not read: a string identified here
/// may still be refused as malformed or out of bounds ([`import`](super::import) says which).
///
/// passlib's PBKDF2 and the PHC form share their prefixes (`$pbkdf2-sha256$`); passlib writes
/// the iteration count alone as the second field (`$29000$`), PHC writes `i=29000,l=32`.
pub fn identify(stored: &str) -> Option<Format> {
    if let Some(rest) = stored.strip_prefix('$') {
        let (id, rest) = rest.split_once('$')?;
        let passlib = rest
            .split('$')
            .next()
            .is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        return match id {
            "argon2id" => Some(Format::Argon2id),
            "argon2i" => Some(Format::Argon2i),
            "argon2d" => Some(Format::Argon2d),
            "2a" | "2b" | "2y" => Some(Format::Bcrypt),
            "scrypt" => Some(Format::Scrypt),
            "pbkdf2-sha256" if passlib => Some(Format::PasslibPbkdf2Sha256),
            "pbkdf2-sha512" if passlib => Some(Format::PasslibPbkdf2Sha512),
            "pbkdf2" if passlib => Some(Format::PasslibPbkdf2Sha1),
            "pbkdf2-sha256" => Some(Format::Pbkdf2Sha256),
            "pbkdf2-sha512" => Some(Format::Pbkdf2Sha512),
            "pbkdf2" => Some(Format::Pbkdf2Sha1),
            _ => None,
        };
    }
    if stored.starts_with("pbkdf2_sha256$") {
        return Some(Format::DjangoPbkdf2Sha256);
    }
    if stored.starts_with("pbkdf2_sha1$") {
        return Some(Format::DjangoPbkdf2Sha1);
    }
    match stored.split_once(':') {
        Some((salt, key))
            if salt.len() == 32 && key.len() == 128 && is_hex(salt) && is_hex(key) =>
        {
            Some(Format::BetterAuthScrypt)
        }
        _ => None,
    }
}

/// The pseudo-random function under a PBKDF2 format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prf {
    Sha1,
    Sha256,
    Sha512,
}

impl Prf {
    /// Output size of the hash, in bytes: one PBKDF2 block.
    pub(super) fn block_len(self) -> usize {
        match self {
            Prf::Sha1 => 20,
            Prf::Sha256 => 32,
            Prf::Sha512 => 64,
        }
    }
}

/// The function and cost parameters a stored hash was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kdf {
    Argon2 {
        algorithm: argon2::Algorithm,
        version: argon2::Version,
        m: u32,
        t: u32,
        p: u32,
    },
    Bcrypt {
        /// The letter after `$2`: `a`, `b` or `y` (all computed alike).
        minor: u8,
        cost: u32,
    },
    Scrypt {
        log_n: u8,
        r: u32,
        p: u32,
        /// NFKC-normalize the password first (better-auth).
        nfkc: bool,
    },
    Pbkdf2 {
        prf: Prf,
        iterations: u32,
    },
}

/// A stored hash, read: what to run, on which salt, and the output it must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Parsed {
    pub format: Format,
    pub kdf: Kdf,
    pub salt: Vec<u8>,
    pub expected: Vec<u8>,
}

/// Reads `stored` in the format it claims.
///
/// # Errors
/// [`ImportError::Unrecognized`] when no format claims it, [`ImportError::Unsupported`] for
/// the bcrypt variants authd refuses (`$2x$`, `$2$`), [`ImportError::Malformed`] when the
/// string does not follow its format.
pub(super) fn parse(stored: &str) -> Result<Parsed, ImportError> {
    let Some(format) = identify(stored) else {
        return Err(unidentified(stored));
    };
    let bad = |reason: &'static str| ImportError::Malformed { format, reason };
    match format {
        Format::Argon2id | Format::Argon2i | Format::Argon2d => parse_argon2(format, stored),
        Format::Bcrypt => parse_bcrypt(stored).ok_or_else(|| {
            bad("expected `$2b$NN$` then 22 salt and 31 hash characters of bcrypt's base64")
        }),
        Format::Scrypt => parse_scrypt(stored),
        Format::BetterAuthScrypt => {
            let (salt, key) = stored
                .split_once(':')
                .ok_or_else(|| bad("expected `hex(salt):hex(key)`"))?;
            Ok(Parsed {
                format,
                // better-auth hands scrypt the hex text, not the bytes it encodes.
                kdf: Kdf::Scrypt {
                    log_n: 14,
                    r: 16,
                    p: 1,
                    nfkc: true,
                },
                salt: salt.as_bytes().to_vec(),
                expected: decode_hex(key).ok_or_else(|| bad("the key is not hex"))?,
            })
        }
        Format::DjangoPbkdf2Sha256 => parse_django(format, Prf::Sha256, stored),
        Format::DjangoPbkdf2Sha1 => parse_django(format, Prf::Sha1, stored),
        Format::Pbkdf2Sha256 => parse_pbkdf2_phc(format, Prf::Sha256, stored),
        Format::Pbkdf2Sha512 => parse_pbkdf2_phc(format, Prf::Sha512, stored),
        Format::Pbkdf2Sha1 => parse_pbkdf2_phc(format, Prf::Sha1, stored),
        Format::PasslibPbkdf2Sha256 => parse_passlib(format, Prf::Sha256, stored),
        Format::PasslibPbkdf2Sha512 => parse_passlib(format, Prf::Sha512, stored),
        Format::PasslibPbkdf2Sha1 => parse_passlib(format, Prf::Sha1, stored),
    }
}

/// Why a string no format claims is refused; the bcrypt variants authd knows of and refuses
/// get their own reason.
fn unidentified(stored: &str) -> ImportError {
    if stored.starts_with("$2x$") {
        ImportError::Unsupported(
            "`$2x$` marks bcrypt hashes made by crypt_blowfish before 1.1, whose sign-extension \
             bug made different passwords share a hash; they cannot be verified safely, so \
             these users must reset their password",
        )
    } else if stored.starts_with("$2$") {
        ImportError::Unsupported(
            "`$2$` is the first bcrypt revision, which no current library writes or verifies \
             alike; these users must reset their password",
        )
    } else {
        ImportError::Unrecognized
    }
}

/// PHC's B64: the standard alphabet without padding.
const PHC_B64: GeneralPurpose = STANDARD_NO_PAD;

/// bcrypt's base64 (`./A-Za-z0-9`). 22 characters hold 132 bits for a 128-bit salt; like
/// crypt_blowfish, the 4 spare bits are ignored rather than refused.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Django's base64: standard alphabet, padded (accepted without the padding too).
const DJANGO_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn parse_argon2(format: Format, stored: &str) -> Result<Parsed, ImportError> {
    let bad = |reason: &'static str| ImportError::Malformed { format, reason };
    let algorithm = match format {
        Format::Argon2i => argon2::Algorithm::Argon2i,
        Format::Argon2d => argon2::Algorithm::Argon2d,
        _ => argon2::Algorithm::Argon2id,
    };
    // "", "argon2id", ["v=19",] "m=..,t=..,p=..", salt, hash
    let fields: Vec<&str> = stored.split('$').collect();
    let (version, rest) = match fields.get(2).and_then(|f| f.strip_prefix("v=")) {
        Some("19") => (argon2::Version::V0x13, &fields[3..]),
        Some("16") => (argon2::Version::V0x10, &fields[3..]),
        Some(_) => return Err(bad("the version must be v=19 or v=16")),
        // The reference implementation reads a string without `v=` as argon2 1.0 (v=16).
        None => (argon2::Version::V0x10, fields.get(2..).unwrap_or_default()),
    };
    let [params, salt, hash] = rest else {
        return Err(bad(
            "expected `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`",
        ));
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in params.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("parameters must be `name=value` pairs"))?;
        let slot = match key {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            "keyid" | "data" => {
                return Err(bad(
                    "the keyid and data parameters (a secret key) are not supported",
                ));
            }
            _ => return Err(bad("unknown parameter; only m, t and p are read")),
        };
        if slot
            .replace(decimal(value).ok_or_else(|| bad("m, t and p must be decimal numbers"))?)
            .is_some()
        {
            return Err(bad("a parameter is given twice"));
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(bad("m, t and p are all required"));
    };
    Ok(Parsed {
        format,
        kdf: Kdf::Argon2 {
            algorithm,
            version,
            m,
            t,
            p,
        },
        salt: PHC_B64
            .decode(salt)
            .map_err(|_| bad("the salt is not unpadded base64"))?,
        expected: PHC_B64
            .decode(hash)
            .map_err(|_| bad("the hash is not unpadded base64"))?,
    })
}

fn parse_bcrypt(stored: &str) -> Option<Parsed> {
    // $2b$12$ + 22 + 31
    let bytes = stored.as_bytes();
    if bytes.len() != 60 || bytes[3] != b'$' || bytes[6] != b'$' {
        return None;
    }
    let minor = bytes[2];
    let cost = stored
        .get(4..6)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))?;
    let salt = BCRYPT_B64.decode(stored.get(7..29)?).ok()?;
    let hash = BCRYPT_B64.decode(stored.get(29..)?).ok()?;
    (salt.len() == 16 && hash.len() == 23).then(|| Parsed {
        format: Format::Bcrypt,
        kdf: Kdf::Bcrypt {
            minor,
            cost: cost.parse().unwrap_or(u32::MAX),
        },
        salt,
        expected: hash,
    })
}

fn parse_scrypt(stored: &str) -> Result<Parsed, ImportError> {
    let format = Format::Scrypt;
    let bad = |reason: &'static str| ImportError::Malformed { format, reason };
    let fields: Vec<&str> = stored.split('$').collect();
    let ["", "scrypt", params, salt, hash] = fields[..] else {
        return Err(bad("expected `$scrypt$ln=..,r=..,p=..$<salt>$<hash>`"));
    };
    let (mut ln, mut r, mut p) = (None, None, None);
    for pair in params.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("parameters must be `name=value` pairs"))?;
        let slot = match key {
            "ln" => &mut ln,
            "r" => &mut r,
            "p" => &mut p,
            _ => return Err(bad("unknown parameter; only ln, r and p are read")),
        };
        if slot
            .replace(decimal(value).ok_or_else(|| bad("ln, r and p must be decimal numbers"))?)
            .is_some()
        {
            return Err(bad("a parameter is given twice"));
        }
    }
    let (Some(ln), Some(r), Some(p)) = (ln, r, p) else {
        return Err(bad("ln, r and p are all required"));
    };
    Ok(Parsed {
        format,
        kdf: Kdf::Scrypt {
            // Out of u8's range is far out of bounds: saturate and let the bounds say so.
            log_n: u8::try_from(ln).unwrap_or(u8::MAX),
            r,
            p,
            nfkc: false,
        },
        salt: PHC_B64
            .decode(salt)
            .map_err(|_| bad("the salt is not unpadded base64"))?,
        expected: PHC_B64
            .decode(hash)
            .map_err(|_| bad("the hash is not unpadded base64"))?,
    })
}

fn parse_django(format: Format, prf: Prf, stored: &str) -> Result<Parsed, ImportError> {
    let bad = |reason: &'static str| ImportError::Malformed { format, reason };
    let fields: Vec<&str> = stored.split('$').collect();
    let [_, iterations, salt, hash] = fields[..] else {
        return Err(bad(
            "expected `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`",
        ));
    };
    let iterations =
        decimal(iterations).ok_or_else(|| bad("the iteration count is not a number"))?;
    let expected = DJANGO_B64
        .decode(hash)
        .map_err(|_| bad("the hash is not base64"))?;
    // Django derives a key of the digest's size, and compares the whole string.
    if expected.len() != prf.block_len() {
        return Err(bad("the hash is not of the digest's length"));
    }
    Ok(Parsed {
        format,
        kdf: Kdf::Pbkdf2 { prf, iterations },
        // Django's salt is text, used as its UTF-8 bytes.
        salt: salt.as_bytes().to_vec(),
        expected,
    })
}

fn parse_pbkdf2_phc(format: Format, prf: Prf, stored: &str) -> Result<Parsed, ImportError> {
    let bad = |reason: &'static str| ImportError::Malformed { format, reason };
    let fields: Vec<&str> = stored.split('$').collect();
    let ["", _, params, salt, hash] = fields[..] else {
        return Err(bad("expected `$pbkdf2-sha256$i=..,l=..$<salt>$<hash>`"));
    };
    let (mut i, mut l) = (None, None);
    for pair in params.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("parameters must be `name=value` pairs"))?;
        let slot = match key {
            "i" => &mut i,
            "l" => &mut l,
            _ => return Err(bad("unknown parameter; only i and l are read")),
        };
        if slot
            .replace(decimal(value).ok_or_else(|| bad("i and l must be decimal numbers"))?)
            .is_some()
        {
            return Err(bad("a parameter is given twice"));
        }
    }
    let iterations = i.ok_or_else(|| bad("the iteration count i is required"))?;
    let expected = PHC_B64
        .decode(hash)
        .map_err(|_| bad("the hash is not unpadded base64"))?;
    if l.is_some_and(|l| usize::try_from(l).ok() != Some(expected.len())) {
        return Err(bad("l is not the length of the hash"));
    }
    Ok(Parsed {
        format,
        kdf: Kdf::Pbkdf2 { prf, iterations },
        salt: PHC_B64
            .decode(salt)
            .map_err(|_| bad("the salt is not unpadded base64"))?,
        expected,
    })
}

fn parse_passlib(format: Format, prf: Prf, stored: &str) -> Result<Parsed, ImportError> {
    let bad = |reason: &'static str| ImportError::Malformed { format, reason };
    let fields: Vec<&str> = stored.split('$').collect();
    let ["", _, iterations, salt, hash] = fields[..] else {
        return Err(bad("expected `$pbkdf2-sha256$<iterations>$<salt>$<hash>`"));
    };
    // passlib's "ab64": base64 with `.` in place of `+`, unpadded.
    let ab64 = |text: &str| PHC_B64.decode(text.replace('.', "+")).ok();
    let expected = ab64(hash).ok_or_else(|| bad("the hash is not passlib's ab64"))?;
    if expected.len() != prf.block_len() {
        return Err(bad("the hash is not of the digest's length"));
    }
    Ok(Parsed {
        format,
        kdf: Kdf::Pbkdf2 {
            prf,
            iterations: decimal(iterations)
                .ok_or_else(|| bad("the iteration count is not a number"))?,
        },
        salt: ab64(salt).ok_or_else(|| bad("the salt is not passlib's ab64"))?,
        expected,
    })
}

/// A decimal `u32` without sign, spaces or leading zeros (PHC's rule, and what every writer
/// here emits). Values past `u32::MAX` saturate: far out of bounds, refused there by name.
fn decimal(text: &str) -> Option<u32> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    ok.then(|| text.parse().unwrap_or(u32::MAX))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !is_hex(text) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
