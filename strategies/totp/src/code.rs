//! The codes: RFC 6238 codes of a seed (computed by `totp-rs`), the window of periods a code
//! is accepted in, compared in constant time, the `otpauth://` key URI, and recovery codes
//! (made, read back from what a person typed, hashed, found).
//!
//! Nothing here reads the clock, the store or the sealer: callers pass the time and the
//! plaintext seed in, so that every rule is testable at an exact second.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use totp_rs::{Algorithm, Secret, TOTP};

/// How codes are made and accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRules {
    pub period: u64,
    pub digits: u32,
    /// Periods accepted on either side of the current one.
    pub grace: u32,
}

impl CodeRules {
    /// The period number (RFC 6238's `T`) of Unix time `now`.
    pub fn counter(&self, now: u64) -> u64 {
        now / self.period
    }

    fn generator(&self, seed: &[u8], issuer: Option<&str>, account: &str) -> TOTP {
        // SHA-1, as every authenticator app assumes; `skew` unused: the window is ours, so
        // that the matching period is known (replays are refused by it).
        TOTP::new_unchecked(
            Algorithm::SHA1,
            self.digits as usize,
            0,
            self.period,
            seed.to_vec(),
            issuer.map(str::to_string),
            account.to_string(),
        )
    }

    /// The code of period `counter`.
    pub fn code_at(&self, seed: &[u8], counter: u64) -> String {
        self.generator(seed, None, "")
            .generate(counter.saturating_mul(self.period))
    }

    /// The period whose code `code` is, among the current one at `now` and `grace` either
    /// side; `None` when it is none of them. Every candidate is computed and compared in
    /// constant time, whichever matches.
    pub fn matching_counter(&self, seed: &[u8], code: &str, now: u64) -> Option<u64> {
        let generator = self.generator(seed, None, "");
        let current = self.counter(now);
        let first = current.saturating_sub(u64::from(self.grace));
        let last = current.saturating_add(u64::from(self.grace));
        let mut found = 0u64;
        let mut any = subtle::Choice::from(0);
        for counter in first..=last {
            let candidate = generator.generate(counter.saturating_mul(self.period));
            let equal = candidate.as_bytes().ct_eq(code.as_bytes());
            // The latest matching period wins (two periods cannot share a code in practice).
            found.conditional_assign(&counter, equal);
            any |= equal;
        }
        bool::from(any).then_some(found)
    }

    /// A code as typed (spaces allowed, as apps show `123 456`), if it has the form of one.
    pub fn normalize(&self, typed: &str) -> Option<String> {
        let code: String = typed.chars().filter(|c| *c != ' ').collect();
        (code.len() == self.digits as usize && code.bytes().all(|b| b.is_ascii_digit()))
            .then_some(code)
    }

    /// The key URI of Google Authenticator's format:
    /// `otpauth://totp/<issuer>:<account>?secret=<base32>&issuer=<issuer>` (with `digits` and
    /// `period` when they are not 6 and 30).
    pub fn key_uri(&self, seed: &[u8], issuer: &str, account: &str) -> String {
        self.generator(seed, Some(issuer), account).get_url()
    }
}

/// The seed in base32 (RFC 4648, no padding), as apps take it typed in.
pub fn base32(seed: &[u8]) -> String {
    match Secret::Raw(seed.to_vec()).to_encoded() {
        Secret::Encoded(text) => text,
        // `to_encoded` of a raw secret is always encoded.
        Secret::Raw(_) => String::new(),
    }
}

/// `n` random bytes from the thread's CSPRNG (ChaCha seeded by the OS).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Random bits per recovery code: 80, so that even an unsalted table of them could not be
/// searched; they are stored as SHA-256 (salted with the user id), no slow hash needed.
const RECOVERY_BYTES: usize = 10;
/// Base32 characters of a recovery code (80 bits / 5).
const RECOVERY_CHARS: usize = 16;

/// A new recovery code as shown to the user: `abcd-efgh-ijkl-mnop` (base32, lower case).
pub fn new_recovery_code() -> String {
    let text = base32(&random_bytes(RECOVERY_BYTES)).to_ascii_lowercase();
    let mut out = String::with_capacity(RECOVERY_CHARS + 3);
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// A recovery code as typed (any case, with or without dashes and spaces), if it has the form
/// of one.
pub fn normalize_recovery(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == RECOVERY_CHARS
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
    .then_some(code)
}

/// What is stored of a recovery code: SHA-256 over a label, the user's id and the normalized
/// code, in base64url.
pub fn hash_recovery(user_id: &[u8], normalized: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"authd-totp-recovery\0");
    h.update(user_id);
    h.update(normalized.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The index of `hash` among `stored`, comparing with every entry in constant time.
pub fn find_recovery(stored: &[String], hash: &str) -> Option<usize> {
    let mut found = 0u64;
    let mut any = subtle::Choice::from(0);
    for (i, candidate) in stored.iter().enumerate() {
        let equal = candidate.as_bytes().ct_eq(hash.as_bytes());
        found.conditional_assign(&(i as u64), equal);
        any |= equal;
    }
    bool::from(any).then(|| usize::try_from(found).unwrap_or(usize::MAX))
}

/// A short fingerprint of a text (a sealed seed), for token bindings: 128 bits of SHA-256.
pub fn fingerprint(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed and its 8-digit codes.
    #[test]
    fn rfc6238_vectors() {
        let seed = b"12345678901234567890";
        let rules = CodeRules {
            period: 30,
            digits: 8,
            grace: 0,
        };
        for (t, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(rules.code_at(seed, rules.counter(t)), code, "T = {t}");
            assert_eq!(rules.matching_counter(seed, code, t), Some(t / 30));
        }
    }

    #[test]
    fn the_window_is_grace_periods_either_side() {
        let seed = b"12345678901234567890";
        let rules = CodeRules {
            period: 30,
            digits: 6,
            grace: 1,
        };
        let now = 1_700_000_015;
        let c = rules.counter(now);
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let counter = c.checked_add_signed(offset).unwrap();
            let code = rules.code_at(seed, counter);
            assert_eq!(
                rules.matching_counter(seed, &code, now),
                accepted.then_some(counter),
                "offset {offset}"
            );
        }
        let strict = CodeRules { grace: 0, ..rules };
        assert_eq!(
            strict.matching_counter(seed, &rules.code_at(seed, c - 1), now),
            None
        );
        assert_eq!(rules.matching_counter(seed, "12345", now), None);
    }

    #[test]
    fn typed_codes() {
        let rules = CodeRules {
            period: 30,
            digits: 6,
            grace: 1,
        };
        assert_eq!(rules.normalize("123 456").as_deref(), Some("123456"));
        assert_eq!(rules.normalize("12345"), None);
        assert_eq!(rules.normalize("12345a"), None);
        assert_eq!(rules.normalize("１２３４５６"), None, "ASCII digits only");
    }

    #[test]
    fn key_uri_is_google_authenticators_format() {
        let seed = b"12345678901234567890";
        let rules = CodeRules {
            period: 30,
            digits: 6,
            grace: 1,
        };
        assert_eq!(
            rules.key_uri(seed, "Example Co", "ada@example.com"),
            "otpauth://totp/Example%20Co:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Co"
        );
        let other = CodeRules {
            period: 60,
            digits: 8,
            grace: 1,
        };
        let uri = other.key_uri(seed, "E", "a");
        assert!(
            uri.contains("digits=8") && uri.contains("period=60"),
            "{uri}"
        );
        assert_eq!(base32(seed), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn recovery_codes_read_back_as_typed_and_are_found_by_hash() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3, "{code}");
        let normalized = normalize_recovery(&code).unwrap();
        assert_eq!(
            normalize_recovery(&code.to_uppercase().replace('-', " ")).as_deref(),
            Some(normalized.as_str())
        );
        assert_eq!(normalize_recovery("abcd-efgh"), None);
        assert_eq!(
            normalize_recovery("abcd-efgh-ijkl-mno1"),
            None,
            "not base32"
        );
        let id = [7u8; 16];
        let stored: Vec<String> = ["aaaaaaaaaaaaaaaa", normalized.as_str(), "bbbbbbbbbbbbbbbb"]
            .iter()
            .map(|c| hash_recovery(&id, c))
            .collect();
        assert_eq!(
            find_recovery(&stored, &hash_recovery(&id, &normalized)),
            Some(1)
        );
        assert_eq!(
            find_recovery(&stored, &hash_recovery(&[8u8; 16], &normalized)),
            None,
            "salted with the user id"
        );
        assert_ne!(new_recovery_code(), new_recovery_code());
    }
}
