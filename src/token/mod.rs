//! Sealed transaction tokens: signing keys, sealing (JWS, then JWE for clients that ask
//! for it) and an independent verifier.
//!
//! - `keys`: the signing key directory (one 0600 file per key, never in the database),
//!   rotation with a publish lead, and the JWKS that publishes every key that may still
//!   verify a token.
//! - `seal`: signs claims as a compact JWS (jsonwebtoken; EdDSA by default, ES256 on
//!   request) and nests it in a compact JWE (josekit; RSA-OAEP-256 or ECDH-ES+A256KW, with
//!   A256GCM) for a client registered with an encryption key; the client's key from PEM,
//!   JWK, or a JWKS URL through `JwksCache`.
//! - `verify`: decrypts and checks a token with josekit alone, sharing no code with the
//!   signer, and checks its ledger binding against a database or the service.
//!
//! No HTTP framework and no SQL here: `lookup` reads the ledger through
//! `ledger::Reader` or over HTTP, and `cmd` holds the `vidne keys … -signing` and
//! `vidne token verify` commands.

pub mod cmd;
pub mod jwks_cache;
pub mod keys;
pub mod lookup;
pub mod seal;
pub mod sealer;
pub mod verify;

use std::fmt;
use std::str::FromStr;

pub use jwks_cache::JwksCache;
pub use keys::{resolve_key_dir, KeyError, SigningKey, SigningKeys};
pub use lookup::{DbLedger, HttpLedger};
pub use seal::{encrypt, parse_encryption_key, sign, EncryptionKeySource, RecipientKey, SealError};
pub use sealer::KeySealer;
pub use verify::{check_binding, verify, DecryptKey, LedgerLookup, TokenError, Verified};

/// The `typ` header of every transaction token (RFC 8725 section 3.11: explicit typing).
pub const TOKEN_TYPE: &str = "vidne-transaction-token+jwt";

/// A signing algorithm Vidne signs tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// Ed25519 (RFC 8037): the default.
    EdDSA,
    /// ECDSA on P-256 with SHA-256, for clients whose registration asks for it.
    ES256,
}

impl Alg {
    pub const ALL: [Alg; 2] = [Alg::EdDSA, Alg::ES256];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = String;

    /// Exactly `EdDSA` or `ES256`, as a JWS `alg` is written.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Alg::EdDSA),
            "ES256" => Ok(Alg::ES256),
            other => Err(format!(
                "signing algorithm {other:?} is not supported (EdDSA or ES256)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alg_names_round_trip_and_nothing_else_parses() {
        for alg in Alg::ALL {
            assert_eq!(alg.as_str().parse::<Alg>().unwrap(), alg);
        }
        for bad in ["eddsa", "ES384", "RS256", "none", "HS256", ""] {
            assert!(bad.parse::<Alg>().is_err(), "{bad} parsed");
        }
    }
}
