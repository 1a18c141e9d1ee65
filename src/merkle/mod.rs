//! The writer's Merkle tree (SPEC section 4): the RFC 9162 tree over the record hashes,
//! kept as C2SP `tlog-tiles` store it, and the proofs served from it.
//!
//! Only every eighth level of the tree is stored. Level 0 is the record hashes
//! themselves (`ledger_records.hash`); tile level `L` ≥ 1 holds the hash of every
//! *complete* subtree of height `8L` (`merkle_hashes`), written by the append path in
//! the same transaction as the records that complete it ([`Frontier`]). Any other
//! complete subtree is hashed up from at most 128 stored hashes of the level below it,
//! so a proof in a tree of `n` records reads `O(log₂₅₆ n)` ranges of at most 256 hashes
//! and never rebuilds anything.
//!
//! Everything here but [`store`] is pure: [`frontier`] extends the tree by records,
//! [`proof`] says which complete subtrees a root or proof is made of and assembles it
//! from their hashes. The independent check of what this module serves is
//! `crate::logverify`, which shares none of this code.

pub mod cache;
pub mod frontier;
pub mod proof;
pub mod store;
pub mod tile_path;

use sha2::{Digest, Sha256};

use crate::spec::hash::Hash32;

pub use frontier::{Frontier, TileHash};
pub use proof::{ProofError, TileSource};

/// Tree levels per tile: a tile holds the hashes of 2^8 = 256 subtrees.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// A complete subtree of height `height`: leaves `index·2^height .. (index+1)·2^height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub height: u32,
    pub index: u64,
}

impl Node {
    /// The first leaf it covers.
    pub fn start(&self) -> u64 {
        self.index << self.height
    }

    /// One past the last leaf it covers.
    pub fn end(&self) -> u64 {
        (self.index + 1) << self.height
    }
}

/// SHA-256's initial state (FIPS 180-4 section 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// RFC 9162 interior node: SHA-256(0x01 || left || right).
///
/// The 65-byte message always pads to the same two blocks, so they are laid out here
/// and fed to SHA-256's compression function directly: a proof hashes up to a few
/// hundred nodes, and the streaming hasher's buffering costs more than the hashing.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    a[0] = 0x01;
    a[1..33].copy_from_slice(&left.0);
    a[33..64].copy_from_slice(&right.0[..31]);
    b[0] = right.0[31];
    b[1] = 0x80;
    // The message length in bits, big-endian, ends the padding: 65 * 8 = 520.
    b[56..64].copy_from_slice(&520u64.to_be_bytes());
    let mut state = SHA256_IV;
    sha2::compress256(&mut state, &[a.into(), b.into()]);
    let mut out = [0u8; 32];
    for (i, word) in state.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    Hash32(out)
}

/// The root of the tree of size 0: SHA-256 of the empty string.
pub fn empty_root() -> Hash32 {
    Hash32(Sha256::digest([]).into())
}

/// Hashes a complete subtree up from its `2^k` hashes at one height (`k` ≤ 7 here).
pub(crate) fn hash_up(hashes: &[Hash32]) -> Hash32 {
    debug_assert!(hashes.len().is_power_of_two() && hashes.len() <= 128);
    let mut level = [Hash32::ZERO; 128];
    let mut len = hashes.len().min(128);
    level[..len].copy_from_slice(&hashes[..len]);
    while len > 1 {
        for i in 0..len / 2 {
            level[i] = node_hash(&level[2 * i], &level[2 * i + 1]);
        }
        len /= 2;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-block shortcut is SHA-256 of the same 65 bytes.
    #[test]
    fn node_hash_is_sha256_of_the_prefixed_pair() {
        let mut left = Hash32([0; 32]);
        for i in 0..200u8 {
            let right = Hash32([i.wrapping_mul(37); 32]);
            left.0[usize::from(i) % 32] ^= i;
            let mut h = Sha256::new();
            h.update([0x01]);
            h.update(left.0);
            h.update(right.0);
            let expected = Hash32(h.finalize().into());
            assert_eq!(node_hash(&left, &right), expected);
        }
    }
}
