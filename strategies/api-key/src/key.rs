//! The form of a key, `<prefix>_<id><secret>_<checksum>`, and how it is kept: a keyed hash.
//!
//! - `id`: 10 random bytes (16 base32 characters), public: it names the key in listings and
//!   finds it in the store.
//! - `secret`: 20 random bytes (160 bits, 32 characters).
//! - `checksum`: CRC-32 of everything before it (7 characters). Not a secret and not a
//!   protection: it lets authd (and secret scanners) refuse a mistyped or made-up key without a
//!   look-up. CRC-32 catches every change of one character (any burst of up to 32 bits).
//!
//! Base32 in lower case has no `_`, so the parts split without ambiguity and the whole key is
//! one word for editors and scanners.
//!
//! What is stored is HMAC-SHA-256 under a key of the strategy (kept in the store's meta) of
//! the id and the secret. A fast hash is right here, unlike for passwords: the secret is 160
//! random bits, so no guessing or dictionary attack against a stolen hash is possible however
//! fast the hash is, while a slow one would cost every API request tens of milliseconds of
//! CPU (and make bearer checks a way to fill the hashing pool). The hash is keyed and covers
//! the id, so that a hash copied to another key id, strategy or deployment never matches.
//!
//! Must not: log a key or a secret; look anything up before the checksum is checked.

use data_encoding::{Encoding, Specification};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub(crate) const ID_BYTES: usize = 10;
pub(crate) const SECRET_BYTES: usize = 20;
/// Characters of the id, the secret and the checksum in base32.
pub(crate) const ID_CHARS: usize = 16;
const SECRET_CHARS: usize = 32;
const CHECKSUM_CHARS: usize = 7;

/// Lower-case base32 without padding (RFC 4648's alphabet).
fn base32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    // The alphabet above is valid by construction; a failure would be a bug caught by tests.
    spec.encoding()
        .unwrap_or_else(|_| data_encoding::BASE32_NOPAD.clone())
}

/// A key handed out once.
#[derive(Debug)]
pub(crate) struct NewKey {
    pub id: String,
    pub secret: [u8; SECRET_BYTES],
    /// The whole key, for the answer.
    pub text: String,
}

/// A key as presented, its checksum good.
#[derive(Debug)]
pub(crate) struct Presented {
    pub id: String,
    pub secret: [u8; SECRET_BYTES],
}

/// The key format of one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Format {
    /// `<prefix>_`.
    start: String,
    base32: Encoding,
}

impl Format {
    pub fn new(prefix: &str) -> Format {
        Format {
            start: Format::start_of(prefix),
            base32: base32(),
        }
    }

    /// How every key of `prefix` starts: `<prefix>_`.
    pub fn start_of(prefix: &str) -> String {
        format!("{prefix}_")
    }

    /// Whether `bearer` starts like this format's keys (no other check).
    pub fn recognizes(&self, bearer: &str) -> bool {
        bearer.starts_with(&self.start)
    }

    fn checksum(&self, body: &str) -> String {
        self.base32
            .encode(&crc32fast::hash(body.as_bytes()).to_be_bytes())
    }

    /// A fresh key from the system's random generator.
    pub fn generate(&self) -> NewKey {
        let id: [u8; ID_BYTES] = rand::random();
        let secret: [u8; SECRET_BYTES] = rand::random();
        let id = self.base32.encode(&id);
        let body = format!("{}{id}{}", self.start, self.base32.encode(&secret));
        let text = format!("{body}_{}", self.checksum(&body));
        NewKey { id, secret, text }
    }

    /// The id and secret of `bearer` if it has this form and its checksum is right; `None`
    /// otherwise, without any look-up.
    pub fn parse(&self, bearer: &str) -> Option<Presented> {
        let rest = bearer.strip_prefix(&self.start)?;
        if rest.len() != ID_CHARS + SECRET_CHARS + 1 + CHECKSUM_CHARS || !rest.is_ascii() {
            return None;
        }
        let (random, checksum) = rest.split_at(ID_CHARS + SECRET_CHARS);
        let checksum = checksum.strip_prefix('_')?;
        let body = &bearer[..self.start.len() + ID_CHARS + SECRET_CHARS];
        if self.checksum(body) != checksum {
            return None;
        }
        let (id, secret_text) = random.split_at(ID_CHARS);
        // The id must be canonical base32 too, or two spellings could name one key.
        let id_bytes = self.base32.decode(id.as_bytes()).ok()?;
        if id_bytes.len() != ID_BYTES || self.base32.encode(&id_bytes) != id {
            return None;
        }
        let secret: [u8; SECRET_BYTES] = self
            .base32
            .decode(secret_text.as_bytes())
            .ok()?
            .try_into()
            .ok()?;
        Some(Presented {
            id: id.to_string(),
            secret,
        })
    }

    /// Whether `id` has the form of a key id (for paths: anything else is not found).
    pub fn is_id(&self, id: &str) -> bool {
        id.len() == ID_CHARS
            && self
                .base32
                .decode(id.as_bytes())
                .is_ok_and(|b| b.len() == ID_BYTES && self.base32.encode(&b) == id)
    }
}

/// Bytes of the strategy's hashing key: SHA-256's block size, HMAC's natural key length.
pub(crate) const HASH_KEY_BYTES: usize = 64;

/// The stored form of a key: HMAC-SHA-256 under `key` of the id and the secret.
pub(crate) fn digest(
    key: &[u8; HASH_KEY_BYTES],
    id: &str,
    secret: &[u8; SECRET_BYTES],
) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new(&(*key).into());
    mac.update(id.as_bytes());
    mac.update(b":");
    mac.update(secret);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two digests.
pub(crate) fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Hex for storage.
pub(crate) fn to_hex(bytes: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// The digest of a stored hex text (`None` when it is not one).
pub(crate) fn from_hex(text: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER
        .decode(text.as_bytes())
        .ok()?
        .try_into()
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_every_one_character_change_is_caught() {
        let f = Format::new("authd");
        let key = f.generate();
        assert!(key.text.starts_with("authd_"), "{}", key.text);
        assert_eq!(key.text.len(), "authd_".len() + 16 + 32 + 1 + 7);
        assert!(f.recognizes(&key.text));
        let parsed = f.parse(&key.text).unwrap();
        assert_eq!(parsed.id, key.id);
        assert_eq!(parsed.secret, key.secret);
        assert!(f.is_id(&key.id));
        let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz234567_A".chars().collect();
        for i in "authd_".len()..key.text.len() {
            for &c in &alphabet {
                let mut chars: Vec<char> = key.text.chars().collect();
                if chars[i] == c {
                    continue;
                }
                chars[i] = c;
                let changed: String = chars.into_iter().collect();
                assert!(f.parse(&changed).is_none(), "{changed} passed");
            }
        }
        assert!(f.parse(&key.text[..key.text.len() - 1]).is_none());
        assert!(f.parse(&format!("{}a", key.text)).is_none());
        assert!(Format::new("other").parse(&key.text).is_none());
    }

    #[test]
    fn digests_bind_the_key_and_the_id() {
        let f = Format::new("k");
        let a = f.generate();
        let d = digest(&[1; 64], &a.id, &a.secret);
        assert!(same(&d, &digest(&[1; 64], &a.id, &a.secret)));
        assert!(!same(&d, &digest(&[2; 64], &a.id, &a.secret)));
        assert!(!same(&d, &digest(&[1; 64], &f.generate().id, &a.secret)));
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex("zz"), None);
    }
}
