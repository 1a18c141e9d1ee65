//! The ledger's verifier key and its signed checkpoints (SPEC section 5): a C2SP
//! `tlog-checkpoint` inside a C2SP `signed-note`, in the key format of
//! `golang.org/x/mod/sumdb/note`.
//!
//! The note layer follows the signed-note rules where SPEC section 5 is silent, so that
//! a note signed by the Go implementation verifies here (the tests pin its published
//! vectors): the text ends at the last blank line; signatures by other keys are ignored;
//! at least one by our key must verify, and every one by our key must. The body is then
//! read only after the signature verified, as signed-note requires.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

use super::proof::empty_root;
use super::{quote, Reject};
use crate::spec::hash::Hash32;

/// Largest signed note read, in bytes: a checkpoint is about 200.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// Most signature lines read (the Go implementation stops at 100 too).
pub const MAX_SIGNATURES: usize = 100;
/// The signed-note signature type of Ed25519.
const ED25519: u8 = 0x01;
/// What begins a signature line: an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// A verifier key `<name>+<key id>+<base64(0x01 || public key)>`, checked on parsing.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

/// Why a verifier key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verifier key {0}")]
pub struct KeyError(String);

impl VerifierKey {
    pub fn parse(s: &str) -> Result<VerifierKey, KeyError> {
        let bad = |why: &str| KeyError(format!("{}: {why}", quote(s)));
        // The name holds no '+' and the key id no '+'; the base64 may.
        let (name, rest) = s
            .split_once('+')
            .ok_or_else(|| bad("is not <name>+<key id>+<key>"))?;
        let (id_hex, key64) = rest
            .split_once('+')
            .ok_or_else(|| bad("is not <name>+<key id>+<key>"))?;
        if !valid_name(name) {
            return Err(bad("the name is empty or holds white space"));
        }
        let mut id = [0u8; 4];
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            || hex::decode_to_slice(id_hex, &mut id).is_err()
        {
            return Err(bad("the key id is not 8 lowercase hex digits"));
        }
        let raw = STANDARD
            .decode(key64)
            .map_err(|_| bad("the key is not standard base64 with padding"))?;
        let Some((&kind, public)) = raw.split_first() else {
            return Err(bad("the key is empty"));
        };
        if kind != ED25519 {
            return Err(bad(&format!(
                "the key type is 0x{kind:02x}, not 0x01 (Ed25519)"
            )));
        }
        let public: &[u8; 32] = public.try_into().map_err(|_| {
            bad(&format!(
                "the Ed25519 key is {} bytes, not 32",
                public.len()
            ))
        })?;
        if key_id(name, public) != id {
            return Err(bad(&format!(
                "the key id is not the one of this name and key ({})",
                hex::encode(key_id(name, public))
            )));
        }
        let key = VerifyingKey::from_bytes(public)
            .map_err(|_| bad("the key is not a point on the Ed25519 curve"))?;
        // A small-order key would let anyone forge signatures that verify.
        if key.is_weak() {
            return Err(bad("the Ed25519 key is of small order"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// Whether `signature` is this key's plain Ed25519 signature of `message` (an
    /// export's `manifest.sig`, SPEC section 7).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.key
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

/// `<name>+<key id>`, the way a key is named in messages.
impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.name, hex::encode(self.id))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// First 4 bytes of SHA-256(name || "\n" || 0x01 || public key).
fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// signed-note: non-empty, no Unicode white space, no '+'.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The signed-note layer: returns the note text (each line with its `\n`) once a
/// signature by `key` verifies over it. Not being a signed note at all is `malformed`.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, Reject> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(Reject::malformed(format!(
            "the checkpoint is {} bytes, more than the {MAX_NOTE_BYTES} read",
            note.len()
        )));
    }
    if let Some(c) = note.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(Reject::malformed(format!(
            "the checkpoint holds the control character {c:?}"
        )));
    }
    let Some(split) = note.rfind("\n\n") else {
        return Err(Reject::malformed(
            "the checkpoint is not a signed note: no blank line between its text and signatures",
        ));
    };
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() {
        return Err(Reject::malformed(
            "the checkpoint has no signature lines after its blank line",
        ));
    }
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(Reject::malformed(
            "the checkpoint's last signature line does not end in a newline",
        ));
    };
    let (mut mine, mut others) = (0usize, Vec::new());
    for (i, line) in sigs.split('\n').enumerate() {
        if i == MAX_SIGNATURES {
            return Err(Reject::malformed(format!(
                "the checkpoint has more than {MAX_SIGNATURES} signature lines"
            )));
        }
        let (name, id, signature) = signature_line(line)?;
        if name != key.name || id != key.id {
            others.push(format!("{name}+{}", hex::encode(id)));
            continue;
        }
        mine += 1;
        let ok = Signature::from_slice(&signature)
            .is_ok_and(|sig| key.key.verify_strict(text.as_bytes(), &sig).is_ok());
        if !ok {
            return Err(Reject::failed(format!(
                "checkpoint signature does not verify with key {key}"
            )));
        }
    }
    if mine == 0 {
        let by = match others.len() {
            0 => String::new(),
            1..=3 => format!(" (it is signed by {})", others.join(", ")),
            n => format!(
                " (it is signed by {} and {} more)",
                others[..3].join(", "),
                n - 3
            ),
        };
        return Err(Reject::failed(format!(
            "checkpoint has no signature by {key}{by}"
        )));
    }
    Ok(text)
}

/// `— <name> <base64(key id || signature)>` into its parts.
fn signature_line(line: &str) -> Result<(&str, [u8; 4], Vec<u8>), Reject> {
    let bad = |why: &str| Reject::malformed(format!("signature line {}: {why}", quote(line)));
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| bad("does not begin with an em dash (U+2014) and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| bad("is not \"— <name> <signature>\""))?;
    if !valid_name(name) {
        return Err(bad("the key name is empty or holds white space or '+'"));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| bad("the signature is not standard base64 with padding"))?;
    if raw.len() < 5 {
        return Err(bad("the signature is shorter than a key id and one byte"));
    }
    let (id, signature) = raw.split_at(4);
    Ok((name, [id[0], id[1], id[2], id[3]], signature.to_vec()))
}

/// A verified checkpoint: the log of `origin` had `tree_size` leaves with `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash32,
}

/// Verifies a signed checkpoint by `key` and reads its body: exactly the origin (the
/// key's name), the tree size and the root (SHA-256 of nothing for size 0). The C2SP extension lines are refused, as
/// SPEC section 5 has none.
pub fn verify_checkpoint(text: &str, key: &VerifierKey) -> Result<Checkpoint, Reject> {
    let body = open_note(text, key)?;
    let lines: Vec<&str> = body[..body.len() - 1].split('\n').collect();
    if lines.len() != 3 {
        return Err(Reject::failed(format!(
            "the checkpoint text has {} lines, not 3 (origin, tree size, root)",
            lines.len()
        )));
    }
    let (origin, size, root) = (lines[0], lines[1], lines[2]);
    if origin != key.name {
        return Err(Reject::failed(format!(
            "the checkpoint's origin {} is not the key's name {}",
            quote(origin),
            quote(&key.name)
        )));
    }
    let tree_size = parse_size(size)?;
    let root = STANDARD
        .decode(root)
        .ok()
        .and_then(|b| Hash32::from_slice(&b))
        .ok_or_else(|| {
            Reject::failed(format!(
                "the root {} is not 32 bytes of standard base64",
                quote(root)
            ))
        })?;
    // SPEC section 4 fixes the root of the empty tree.
    if tree_size == 0 && root != empty_root() {
        return Err(Reject::failed(format!(
            "the checkpoint is of the empty tree, whose root is {}, but its root is {root}",
            empty_root()
        )));
    }
    Ok(Checkpoint {
        origin: origin.to_owned(),
        tree_size,
        root,
    })
}

/// ASCII digits, no leading zero but for "0" itself, at most 2^64 - 1.
fn parse_size(line: &str) -> Result<u64, Reject> {
    let digits = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    if !digits || (line.len() > 1 && line.starts_with('0')) {
        return Err(Reject::failed(format!(
            "tree size line {} is not a decimal integer (digits only, no leading zeros)",
            quote(line)
        )));
    }
    line.parse().map_err(|_| {
        Reject::failed(format!(
            "tree size line {} is larger than 2^64 - 1",
            quote(line)
        ))
    })
}

#[cfg(test)]
mod tests;
