//! Running the key-derivation function of a parsed hash: argon2 (all three variants, both
//! versions), bcrypt, scrypt and PBKDF2-HMAC.
//!
//! Only hashes that passed `bounds::check` may come here: the parameters are trusted to be
//! in range (the bcrypt function asserts its cost). Blocking CPU work, as all of `hash`.

use std::cell::RefCell;

use argon2::{Argon2, Block};
use unicode_normalization::UnicodeNormalization;

use super::HashError;
use super::formats::{Kdf, Prf};

/// Largest argon2 memory kept between calls by a hashing thread, in 1 KiB blocks (256 MiB).
/// An imported hash with more memory gets its own allocation, freed once it is verified,
/// so that one such user does not pin a GiB on every hashing thread.
const ARGON2_RETAINED_BLOCKS: usize = 256 * 1024;

thread_local! {
    /// One argon2 memory block per hashing thread, reused across calls: allocating and
    /// page-faulting 19 MiB on every hash costs about a quarter of the hash itself.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Fills `out` with the output of `kdf` for `password` and `salt`.
///
/// # Errors
/// When the algorithm refuses the parameters (which the bounds are meant to prevent).
pub(super) fn derive(
    kdf: Kdf,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), HashError> {
    match kdf {
        Kdf::Argon2 {
            algorithm,
            version,
            m,
            t,
            p,
        } => {
            let params = argon2::Params::new(m, t, p, Some(out.len())).map_err(failed)?;
            argon2_raw(algorithm, version, params, password, salt, out)
        }
        Kdf::Bcrypt { cost, .. } => {
            // As OpenBSD's bcrypt: the password and its NUL terminator, cut at 72 bytes.
            let mut key = Vec::with_capacity(73);
            key.extend_from_slice(password);
            key.push(0);
            key.truncate(72);
            let mut salt16 = [0u8; 16];
            if salt.len() != salt16.len() || out.len() > 23 {
                return Err(HashError::Failed("bcrypt needs a 16-byte salt".into()));
            }
            salt16.copy_from_slice(salt);
            let full = bcrypt::bcrypt(cost, salt16, &key);
            // bcrypt's encoding keeps 23 of the 24 bytes.
            out.copy_from_slice(&full[..out.len()]);
            Ok(())
        }
        Kdf::Scrypt { log_n, r, p, nfkc } => {
            let params = scrypt::Params::new(log_n, r, p, out.len()).map_err(failed)?;
            let normalized;
            let password = match std::str::from_utf8(password) {
                Ok(text) if nfkc => {
                    normalized = text.nfkc().collect::<String>();
                    normalized.as_bytes()
                }
                // Not text: nothing to normalize (and no better-auth user could have it).
                _ => password,
            };
            scrypt::scrypt(password, salt, &params, out).map_err(failed)
        }
        Kdf::Pbkdf2 { prf, iterations } => {
            match prf {
                Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
                Prf::Sha256 => {
                    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out);
                }
                Prf::Sha512 => {
                    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out);
                }
            }
            Ok(())
        }
    }
}

/// argon2 into `out`, in this thread's reused memory when it is not too large.
pub(super) fn argon2_raw(
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    params: argon2::Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), HashError> {
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    if blocks > ARGON2_RETAINED_BLOCKS {
        let mut memory = vec![Block::default(); blocks];
        return argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..])
            .map_err(failed);
    }
    ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(failed)
    })
}

fn failed(e: impl std::fmt::Display) -> HashError {
    HashError::Failed(e.to_string())
}
