//! The SPEC primitives (`../shared/SPEC.md` sections 1-2): the only code the append path
//! and the independent verifier share. Everything here is a pure function of bytes.

pub mod canonical;
pub mod hash;
pub mod time;

/// Largest integer a record may hold (SPEC section 1): 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[cfg(test)]
pub(crate) mod vectors;
