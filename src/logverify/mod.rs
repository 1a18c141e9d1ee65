//! The independent offline verifier of the ledger's Merkle proofs and signed checkpoints
//! (SPEC sections 4 and 5), and its command `vidne proof verify`.
//!
//! It is the check on the writer side (the tree, the proofs, the checkpoint signer), so
//! it shares no code with it: everything here is written afresh from RFC 9162 section
//! 2.1 and the C2SP `signed-note` and `tlog-checkpoint` texts, and uses from the crate
//! only the SPEC primitives of [`crate::spec`] (the record hash and RFC 8785). A bug on
//! the write side therefore cannot hide itself by being repeated here. What an auditor
//! needs is the ledger's verifier key alone: no database, no service.
//!
//! - [`note`]: the verifier key and the signed checkpoint.
//! - [`proof`]: inclusion and consistency proofs.
//! - [`bundle`]: export bundles (SPEC section 7), `vidne export verify`.
//! - [`cmd`]: the command line.

use std::fmt;

pub mod bundle;
pub mod cmd;
pub mod note;
pub mod proof;
#[cfg(test)]
mod reference;

pub use note::{open_note, verify_checkpoint, Checkpoint, KeyError, VerifierKey};
pub use proof::{empty_root, verify_consistency, verify_inclusion};

/// Why an input was refused, as one sentence naming what was found.
///
/// `malformed` tells an input that is not in its format at all (a checkpoint that is
/// not a signed note) from one that is well-formed but fails a check; the command line
/// exits 2 for the first and 1 for the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    reason: String,
    malformed: bool,
}

impl Reject {
    /// A check failed.
    pub fn failed(reason: impl Into<String>) -> Reject {
        Reject {
            reason: reason.into(),
            malformed: false,
        }
    }

    /// The input is not in its format.
    pub fn malformed(reason: impl Into<String>) -> Reject {
        Reject {
            reason: reason.into(),
            malformed: true,
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn is_malformed(&self) -> bool {
        self.malformed
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Reject {}

/// `s` quoted for a message, cut to 80 characters: the inputs are untrusted and may be
/// long, and Debug escapes whatever control characters they hold.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
    }
}
