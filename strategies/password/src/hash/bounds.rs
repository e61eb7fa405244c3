//! The costs and sizes authd accepts in a stored hash, each in one named constant, and the
//! check that every parsed hash passes before anything is hashed with it: at import, and
//! again before each verification (a hash outside them is refused, never run).
//!
//! They exist so that a hostile or careless import cannot stall sign-ins: each limit is a few
//! seconds of one core or 1 GiB of memory at most. The configured parameters are held to the
//! same limits (`config.rs`), so authd never writes a hash it would refuse to verify. Nothing
//! here hashes.

use super::ImportError;
use super::formats::{Kdf, Parsed};

/// Cheapest bcrypt cost (the algorithm's own floor).
pub const BCRYPT_MIN_COST: u32 = 4;
/// Costliest bcrypt cost: 2^16 rounds, a few seconds of one core.
pub const BCRYPT_MAX_COST: u32 = 16;

/// Largest scrypt N, as log2 (N = 2^20).
pub const SCRYPT_MAX_LOG_N: u8 = 20;
/// Most memory one scrypt hash may take: 128 × r × N bytes.
pub const SCRYPT_MAX_MEMORY_BYTES: u64 = 1 << 30;
/// Largest scrypt p. authd computes the p lanes one after the other.
pub const SCRYPT_MAX_P: u32 = 16;
/// Most memory one scrypt hash may fill over all its lanes: 128 × r × N × p bytes, about
/// the time it takes.
pub const SCRYPT_MAX_WORK_BYTES: u64 = 4 << 30;

/// Most memory one argon2 hash may take (m, in KiB: 1 GiB).
pub const ARGON2_MAX_MEMORY_KIB: u32 = 1 << 20;
/// Most argon2 passes over memory (t).
pub const ARGON2_MAX_ITERATIONS: u32 = 32;
/// Most argon2 lanes (p). authd computes them one after the other, so p adds no time.
pub const ARGON2_MAX_PARALLELISM: u32 = 64;
/// Most memory one argon2 hash may fill over all its passes: m × t, in KiB (4 GiB), about
/// the time it takes.
pub const ARGON2_MAX_WORK_KIB: u64 = 4 << 20;

/// Most PBKDF2 iterations.
pub const PBKDF2_MAX_ITERATIONS: u32 = 10_000_000;
/// Most PBKDF2 work: iterations × output blocks (an output longer than the digest repeats
/// every iteration for each block).
pub const PBKDF2_MAX_WORK: u64 = 2 * PBKDF2_MAX_ITERATIONS as u64;

/// Shortest salt, in bytes (argon2's own floor; every writer here uses 12 or more).
pub const MIN_SALT_BYTES: usize = 8;
/// Longest salt, in bytes.
pub const MAX_SALT_BYTES: usize = 64;
/// Shortest hash output, in bytes: below 128 bits a match could be found by chance.
pub const MIN_OUTPUT_BYTES: usize = 16;
/// Longest hash output, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64;

/// Checks every bound on a parsed hash, and that its parameters are ones its algorithm
/// accepts, so that running it cannot fail or panic for a reason found only later.
///
/// # Errors
/// The first bound `parsed` is outside of, named.
pub(super) fn check(parsed: &Parsed) -> Result<(), ImportError> {
    let format = parsed.format;
    let salt = parsed.salt.len() as u64;
    at_least("salt length", salt, MIN_SALT_BYTES as u64, " bytes")?;
    at_most("salt length", salt, MAX_SALT_BYTES as u64, " bytes")?;
    let output = parsed.expected.len() as u64;
    at_least("hash length", output, MIN_OUTPUT_BYTES as u64, " bytes")?;
    at_most("hash length", output, MAX_OUTPUT_BYTES as u64, " bytes")?;
    match parsed.kdf {
        Kdf::Argon2 { m, t, p, .. } => {
            at_least("argon2 t", t.into(), 1, "")?;
            at_most("argon2 t", t.into(), ARGON2_MAX_ITERATIONS.into(), "")?;
            at_least("argon2 p", p.into(), 1, "")?;
            at_most("argon2 p", p.into(), ARGON2_MAX_PARALLELISM.into(), "")?;
            // The algorithm needs 8 blocks of 1 KiB per lane.
            at_least("argon2 m", m.into(), 8 * u64::from(p), " KiB")?;
            at_most("argon2 m", m.into(), ARGON2_MAX_MEMORY_KIB.into(), " KiB")?;
            let work = u64::from(m) * u64::from(t);
            at_most("argon2 m × t", work, ARGON2_MAX_WORK_KIB, " KiB")?;
            argon2::Params::new(m, t, p, Some(parsed.expected.len())).map_err(|_| {
                ImportError::Malformed {
                    format,
                    reason: "parameters the argon2 algorithm refuses",
                }
            })?;
        }
        Kdf::Bcrypt { cost, .. } => {
            at_least("bcrypt cost", cost.into(), BCRYPT_MIN_COST.into(), "")?;
            at_most("bcrypt cost", cost.into(), BCRYPT_MAX_COST.into(), "")?;
        }
        Kdf::Scrypt { log_n, r, p, .. } => {
            at_least("scrypt ln", log_n.into(), 1, "")?;
            at_most("scrypt ln", log_n.into(), SCRYPT_MAX_LOG_N.into(), "")?;
            at_least("scrypt r", r.into(), 1, "")?;
            at_least("scrypt p", p.into(), 1, "")?;
            at_most("scrypt p", p.into(), SCRYPT_MAX_P.into(), "")?;
            let memory = 128 * u64::from(r) * (1u64 << log_n);
            at_most(
                "scrypt memory (128 × r × N)",
                memory,
                SCRYPT_MAX_MEMORY_BYTES,
                " bytes",
            )?;
            let work = memory * u64::from(p);
            at_most(
                "scrypt work (128 × r × N × p)",
                work,
                SCRYPT_MAX_WORK_BYTES,
                " bytes",
            )?;
            scrypt::Params::new(log_n, r, p, parsed.expected.len()).map_err(|_| {
                ImportError::Malformed {
                    format,
                    reason: "parameters the scrypt algorithm refuses (it needs ln < 16 × r)",
                }
            })?;
        }
        Kdf::Pbkdf2 { prf, iterations } => {
            at_least("pbkdf2 iterations", iterations.into(), 1, "")?;
            at_most(
                "pbkdf2 iterations",
                iterations.into(),
                PBKDF2_MAX_ITERATIONS.into(),
                "",
            )?;
            let blocks = parsed.expected.len().div_ceil(prf.block_len()) as u64;
            let work = u64::from(iterations) * blocks;
            at_most(
                "pbkdf2 iterations × output blocks",
                work,
                PBKDF2_MAX_WORK,
                "",
            )?;
        }
    }
    Ok(())
}

fn at_most(
    what: &'static str,
    value: u64,
    limit: u64,
    unit: &'static str,
) -> Result<(), ImportError> {
    if value > limit {
        return Err(ImportError::AboveLimit {
            what,
            value,
            limit,
            unit,
        });
    }
    Ok(())
}

fn at_least(
    what: &'static str,
    value: u64,
    limit: u64,
    unit: &'static str,
) -> Result<(), ImportError> {
    if value < limit {
        return Err(ImportError::BelowMinimum {
            what,
            value,
            limit,
            unit,
        });
    }
    Ok(())
}
