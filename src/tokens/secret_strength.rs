//! Refuses HMAC signing secrets that are long enough but guessable.
//!
//! A length check alone let 32 spaces, 32 NUL bytes or `"password"` four times sign tokens
//! that anyone could forge. [`check`] refuses, in this order: fewer than [`MIN_BYTES`] bytes;
//! fewer than [`MIN_DISTINCT`] different byte values; a secret that repeats one pattern (a
//! partial last repetition included); a run of [`MAX_RUN`] or more consecutive characters
//! such as `abcdefgh` or `98765432`; and an entropy estimate under [`MIN_ESTIMATED_BITS`].
//!
//! The estimate is the smaller of two rough models. The *byte* model prices a literal byte at
//! log2 of the character classes the secret uses (hex digits: 16, digits and letters: 62,
//! printable ASCII: 95, anything else: 256) and a copy of an earlier stretch at the cost of
//! naming its distance and length, the way an LZ77 compressor would: random strings are all
//! literals, a secret padded with one character or made of a repeated word is mostly copies.
//! The *phrase* model applies to printable text whose letters form plain words separated by
//! spaces, hyphens, underscores, dots or commas (`correct horse battery staple!!!!`,
//! `my-secret-key-for-production-2024`); it counts 13 bits a word, as if each were drawn at
//! random from a 7776-word diceware list, which is generous for a real sentence. Such a
//! phrase needs about seven words to pass.
//!
//! The thresholds are set so that what `openssl rand -base64 32`, `openssl rand -hex 32` or
//! 32 random bytes produce always passes (the tests check 10,000 of each), and so does
//! `openssl rand -hex 16` (128 random bits). A heuristic cannot see every weak secret
//! (`ThisIsMyVerySecretSigningKey2024` passes); it stops the ones people actually type.
//!
//! This module must never put the secret, or any part of it, into a message, and must not
//! depend on where the secret came from: it takes bytes.

use std::collections::HashSet;
use std::fmt;

/// The shortest secret accepted for HMAC signing (256 bits).
pub const MIN_BYTES: usize = 32;
/// The fewest different byte values a secret may use.
pub const MIN_DISTINCT: usize = 8;
/// The shortest run of consecutive characters (`abcdefgh`, `87654321`) that is refused.
pub const MAX_RUN: usize = 8;
/// The lowest entropy estimate accepted, in bits. Lower than 128 on purpose: the estimate is
/// rough, and a 128-bit random secret such as `openssl rand -hex 16` must not be refused.
pub const MIN_ESTIMATED_BITS: u32 = 100;

/// Only the first bytes are priced by the byte model, which is quadratic in the length.
const ESTIMATE_WINDOW: usize = 1024;
/// Bits for one word of a phrase: log2(7776), a diceware word.
const BITS_PER_WORD: f64 = 12.9;
/// Bits for a separator between two words of a phrase.
const BITS_PER_SEPARATOR: f64 = 2.0;

/// Why a secret was refused. The message says how to make a good one and never contains the
/// secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Weakness {
    /// Fewer than [`MIN_BYTES`] bytes.
    TooShort { len: usize },
    /// Fewer than [`MIN_DISTINCT`] different byte values.
    FewDistinct { distinct: usize },
    /// The secret is one pattern of `period` bytes repeated.
    Repeats { period: usize },
    /// The secret contains a run of `len` consecutive characters.
    Sequence { len: usize },
    /// The secret reads as a short phrase of words.
    Phrase { bits: u32 },
    /// The entropy estimate is under [`MIN_ESTIMATED_BITS`].
    LowEntropy { bits: u32 },
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the signing secret is too weak: ")?;
        match self {
            Weakness::TooShort { len } => {
                write!(
                    f,
                    "it is {len} bytes long, and at least {MIN_BYTES} are needed"
                )
            }
            Weakness::FewDistinct { distinct } => write!(
                f,
                "it uses only {distinct} different byte values (at least {MIN_DISTINCT} are needed)"
            ),
            Weakness::Repeats { period } => {
                write!(f, "it is a pattern of {period} bytes repeated")
            }
            Weakness::Sequence { len } => write!(
                f,
                "it contains a run of {len} consecutive characters (like abcdefgh or 98765432)"
            ),
            Weakness::Phrase { bits } => write!(
                f,
                "it reads as a short phrase of words (about {bits} bits of entropy estimated, \
                 at least {MIN_ESTIMATED_BITS} are needed)"
            ),
            Weakness::LowEntropy { bits } => write!(
                f,
                "its entropy is estimated at {bits} bits, and at least {MIN_ESTIMATED_BITS} \
                 are needed"
            ),
        }?;
        f.write_str(
            "; make a random one with `openssl rand -base64 32` (32 random bytes, base64-encoded)",
        )
    }
}

impl std::error::Error for Weakness {}

/// Checks that `secret` looks like random bytes rather than something a person chose.
///
/// ```
/// use authd::tokens::secret_strength::check;
/// assert!(check(b"passwordpasswordpasswordpassword").is_err());
/// assert!(check(b"q3Nw0rZ4dGhZXvJ2cM1kYp8+TfLs6Ue9HbQxAi7oWnE=").is_ok());
/// ```
///
/// # Errors
///
/// The first [`Weakness`] found, in the order listed in the module documentation.
pub fn check(secret: &[u8]) -> Result<(), Weakness> {
    if secret.len() < MIN_BYTES {
        return Err(Weakness::TooShort { len: secret.len() });
    }
    let distinct = secret.iter().collect::<HashSet<_>>().len();
    if distinct < MIN_DISTINCT {
        return Err(Weakness::FewDistinct { distinct });
    }
    if let Some(period) = period(secret) {
        return Err(Weakness::Repeats { period });
    }
    let run = longest_run(secret);
    if run >= MAX_RUN {
        return Err(Weakness::Sequence { len: run });
    }
    if let Some(bits) = phrase_bits(secret)
        && bits < f64::from(MIN_ESTIMATED_BITS)
    {
        return Err(Weakness::Phrase {
            bits: whole_bits(bits),
        });
    }
    let bits = byte_bits(&secret[..secret.len().min(ESTIMATE_WINDOW)]);
    if bits < f64::from(MIN_ESTIMATED_BITS) {
        return Err(Weakness::LowEntropy {
            bits: whole_bits(bits),
        });
    }
    Ok(())
}

fn whole_bits(bits: f64) -> u32 {
    // Estimates are small positive numbers; the cast saturates anyway.
    bits.max(0.0).floor() as u32
}

/// The shortest period `p <= len / 2` such that every byte equals the one `p` before it.
fn period(secret: &[u8]) -> Option<usize> {
    (1..=secret.len() / 2).find(|&p| secret[p..] == secret[..secret.len() - p])
}

/// The direction of the step from `a` to `b`: +1, -1, or 0 for neither. `9` followed by `a`
/// (or `A`) counts as a step up, so that `0123456789abcdef` is one run.
fn step(a: u8, b: u8) -> i8 {
    let up = |a: u8, b: u8| a.checked_add(1) == Some(b) || (a == b'9' && (b == b'a' || b == b'A'));
    if up(a, b) {
        1
    } else if up(b, a) {
        -1
    } else {
        0
    }
}

/// The length of the longest stretch of bytes that go up by one each time, or down by one.
fn longest_run(secret: &[u8]) -> usize {
    let (mut best, mut current, mut direction) = (1, 1, 0);
    for pair in secret.windows(2) {
        let s = step(pair[0], pair[1]);
        if s != 0 && s == direction {
            current += 1;
        } else if s != 0 {
            current = 2;
            direction = s;
        } else {
            current = 1;
            direction = 0;
        }
        best = best.max(current);
    }
    best
}

/// log2 of the size of the character classes `secret` draws from.
fn alphabet_bits(secret: &[u8]) -> f64 {
    let has = |f: fn(&u8) -> bool| secret.iter().any(f);
    if has(|b| !(0x20..=0x7e).contains(b)) {
        return 8.0;
    }
    let mut size = 0u32;
    if has(u8::is_ascii_digit) {
        size += 10;
    }
    if has(u8::is_ascii_lowercase) {
        size += if has(|b| matches!(b, b'g'..=b'z')) {
            26
        } else {
            6
        };
    }
    if has(u8::is_ascii_uppercase) {
        size += if has(|b| matches!(b, b'G'..=b'Z')) {
            26
        } else {
            6
        };
    }
    if has(|b| !b.is_ascii_alphanumeric()) {
        size += 33;
    }
    f64::from(size.max(2)).log2()
}

/// The byte model: literals at the alphabet's price, earlier stretches copied (greedy
/// longest match, overlapping allowed) at the price of a distance and a length.
fn byte_bits(secret: &[u8]) -> f64 {
    let literal = alphabet_bits(secret);
    let copy = 2.0 * (secret.len().max(2) as f64).log2();
    let (mut bits, mut i) = (0.0, 0);
    while i < secret.len() {
        let longest = (0..i)
            .map(|start| {
                secret[i..]
                    .iter()
                    .zip(&secret[start..])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0);
        if longest as f64 * literal > copy {
            bits += copy;
            i += longest;
        } else {
            bits += literal;
            i += 1;
        }
    }
    bits
}

/// The phrase model, for printable ASCII whose letters form at least three plain words
/// (`word`, `Word`, `WORD`) with one or two separators between each two of them. `None`
/// when the secret does not read that way.
fn phrase_bits(secret: &[u8]) -> Option<f64> {
    if !secret.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return None;
    }
    let is_separator = |b: &u8| matches!(b, b' ' | b'-' | b'_' | b'.' | b',');
    let mut words = Vec::new();
    let mut start = None;
    for (i, b) in secret.iter().enumerate() {
        match (b.is_ascii_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(s..secret.len());
    }
    if words.len() < 3 || !words.iter().all(|w| plain_word(&secret[w.clone()])) {
        return None;
    }
    let mut bits = BITS_PER_WORD * words.len() as f64;
    for pair in words.windows(2) {
        let gap = &secret[pair[0].end..pair[1].start];
        if gap.is_empty() || gap.len() > 2 || !gap.iter().all(is_separator) {
            return None;
        }
        bits += BITS_PER_SEPARATOR;
    }
    // Whatever comes before the first word or after the last: digits, punctuation.
    let (first, last) = (words[0].start, words[words.len() - 1].end);
    for b in secret[..first].iter().chain(&secret[last..]) {
        bits += if b.is_ascii_digit() {
            10f64.log2()
        } else {
            95f64.log2()
        };
    }
    Some(bits)
}

/// `word`, `Word` or `WORD`: the case a person types, not the mixed case of random letters.
fn plain_word(word: &[u8]) -> bool {
    let rest = word.get(1..).unwrap_or_default();
    word.iter().all(u8::is_ascii_lowercase)
        || word.iter().all(u8::is_ascii_uppercase)
        || (word.first().is_some_and(u8::is_ascii_uppercase)
            && rest.iter().all(u8::is_ascii_lowercase))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const SAMPLES: usize = 10_000;

    fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        rng.fill(bytes.as_mut_slice());
        bytes
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn all_pass(kind: &str, seed: u64, make: impl Fn(&mut StdRng) -> Vec<u8>) {
        let mut rng = StdRng::seed_from_u64(seed);
        for i in 0..SAMPLES {
            let secret = make(&mut rng);
            if let Err(weakness) = check(&secret) {
                panic!("{kind} sample {i} was refused: {weakness}");
            }
        }
    }

    #[test]
    fn random_32_byte_secrets_pass() {
        all_pass("random bytes", 1, |rng| random_bytes(rng, 32));
    }

    #[test]
    fn openssl_rand_base64_32_secrets_pass() {
        all_pass("base64", 2, |rng| {
            let secret = STANDARD.encode(random_bytes(rng, 32));
            assert_eq!(secret.len(), 44);
            secret.into_bytes()
        });
    }

    #[test]
    fn openssl_rand_hex_32_secrets_pass() {
        all_pass("hex", 3, |rng| {
            let secret = hex(&random_bytes(rng, 32));
            assert_eq!(secret.len(), 64);
            secret.into_bytes()
        });
    }

    #[test]
    fn other_random_encodings_pass() {
        // 128 random bits as 32 hex digits, base64url without padding, upper-case hex.
        all_pass("hex of 16 bytes", 4, |rng| {
            hex(&random_bytes(rng, 16)).into_bytes()
        });
        all_pass("base64url", 5, |rng| {
            URL_SAFE_NO_PAD.encode(random_bytes(rng, 32)).into_bytes()
        });
        all_pass("upper-case hex", 6, |rng| {
            hex(&random_bytes(rng, 32)).to_uppercase().into_bytes()
        });
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(check(b""), Err(Weakness::TooShort { len: 0 }));
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(
            check(&random_bytes(&mut rng, 31)),
            Err(Weakness::TooShort { len: 31 })
        );
    }

    #[test]
    fn secrets_of_one_byte_value_are_refused() {
        for secret in [[b' '; 32], [0u8; 32], [b'a'; 32]] {
            assert_eq!(check(&secret), Err(Weakness::FewDistinct { distinct: 1 }));
        }
        assert_eq!(
            check(&[b'a'; 100]),
            Err(Weakness::FewDistinct { distinct: 1 })
        );
    }

    #[test]
    fn repeated_words_are_refused() {
        assert_eq!(
            check(b"passwordpasswordpasswordpassword"),
            Err(Weakness::FewDistinct { distinct: 7 })
        );
        assert_eq!(
            check(b"abababababababababababababababab"),
            Err(Weakness::FewDistinct { distinct: 2 })
        );
        // Enough distinct bytes, but one pattern again and again, the last one cut short.
        assert_eq!(
            check(b"Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3Tr0ub"),
            Err(Weakness::Repeats { period: 11 })
        );
        assert_eq!(
            check(b"0123456789abcdef0123456789abcdef"),
            Err(Weakness::Repeats { period: 16 })
        );
    }

    #[test]
    fn nearly_repeated_words_are_refused_by_the_estimate() {
        // One byte breaks the pattern, so only the copy-pricing estimate sees it.
        assert!(matches!(
            check(b"passwordpasswordpasswordpassword1"),
            Err(Weakness::LowEntropy { .. })
        ));
        assert!(matches!(
            check(b"aaaaaaaaaaaaaaaaaaaaaa1x9k3m7q2z"),
            Err(Weakness::LowEntropy { .. })
        ));
    }

    #[test]
    fn ascending_and_descending_runs_are_refused() {
        assert_eq!(
            check(b"abcdefghijklmnopqrstuvwxyz012345"),
            Err(Weakness::Sequence { len: 26 })
        );
        assert_eq!(
            check(b"0123456789abcdefghijklmnopqrstuv"),
            Err(Weakness::Sequence { len: 32 })
        );
        assert_eq!(
            check(b"x7#Qz!k2ZYXWVUTSRQp9@mL4&w8*Ne3^"),
            Err(Weakness::Sequence { len: 10 })
        );
    }

    #[test]
    fn a_short_sentence_is_refused() {
        // About 44 bits for four dictionary words: a GPU tests that in seconds against a
        // single token, so it must not sign tokens however long it is in bytes.
        assert!(matches!(
            check(b"correct horse battery staple!!!!"),
            Err(Weakness::Phrase { .. })
        ));
        assert!(matches!(
            check(b"my-secret-key-for-production-2024"),
            Err(Weakness::Phrase { .. })
        ));
        assert!(matches!(
            check(b"Change_Me_Before_Deploying_Authd"),
            Err(Weakness::Phrase { .. })
        ));
    }

    #[test]
    fn a_long_random_passphrase_passes() {
        // Ten diceware words: about 129 bits.
        assert_eq!(
            check(b"stack vowel crimp gecko tidal mural sprig unwed banjo oxide"),
            Ok(())
        );
    }

    #[test]
    fn messages_say_how_to_make_a_secret_and_never_show_it() {
        let weak: [&[u8]; 6] = [
            b"hunter2",
            b"hunter2hunter2hunter2hunter2hunter2",
            b"hunterhunterhunterhunterhunterhunter2",
            b"hunter abcdefghijklmnopqrstuvwxyz",
            b"hunter horse battery staple!!!!!!",
            b"hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhunter2!x",
        ];
        for secret in weak {
            let message = check(secret).unwrap_err().to_string();
            assert!(message.contains("openssl rand -base64 32"), "{message}");
            assert!(!message.contains("hunter"), "{message}");
        }
    }

    #[test]
    fn long_secrets_are_checked_quickly() {
        let mut rng = StdRng::seed_from_u64(8);
        let big = STANDARD.encode(random_bytes(&mut rng, 1 << 20));
        let started = std::time::Instant::now();
        assert_eq!(check(big.as_bytes()), Ok(()));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
