//! The right edge of the tree: the hashes of the complete subtrees that make up a tree
//! of `size` leaves (one per set bit of `size`, RFC 9162's "compact range"). The append
//! path keeps it in `ledger_head` beside the chain head, extends it by each group's
//! records under the same lock, and stores the subtree hashes it completes.

use super::{empty_root, node_hash, TILE_HEIGHT};
use crate::spec::hash::Hash32;

/// A hash the tiles store: the complete subtree of height `8·level` at `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileHash {
    pub level: u32,
    pub index: u64,
    pub hash: Hash32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One per set bit of `size`, the highest subtree first.
    hashes: Vec<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tree frontier of size {size} must hold {expected} bytes, not {actual}")]
pub struct FrontierError {
    pub size: u64,
    pub expected: usize,
    pub actual: usize,
}

impl Frontier {
    pub const EMPTY: Frontier = Frontier {
        size: 0,
        hashes: Vec::new(),
    };

    /// From the stored form: `size` and the concatenated hashes of [`Frontier::to_bytes`].
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Frontier, FrontierError> {
        let expected = size.count_ones() as usize * 32;
        if bytes.len() != expected {
            return Err(FrontierError {
                size,
                expected,
                actual: bytes.len(),
            });
        }
        let hashes = bytes
            .chunks_exact(32)
            .filter_map(Hash32::from_slice)
            .collect();
        Ok(Frontier { size, hashes })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|h| h.0).collect()
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds one leaf (a record hash); every subtree it completes whose height is a
    /// multiple of 8 (at least 8) goes to `completed`, for the tiles.
    pub fn push(&mut self, leaf: Hash32, completed: &mut Vec<TileHash>) {
        let size = self.size + 1;
        let mut hash = leaf;
        let mut height = 0;
        while (self.size >> height) & 1 == 1 {
            // Set bits of the old size are exactly the subtrees this leaf now completes.
            let Some(left) = self.hashes.pop() else {
                unreachable!("a frontier holds one hash per set bit of its size")
            };
            hash = node_hash(&left, &hash);
            height += 1;
            if height % TILE_HEIGHT == 0 {
                completed.push(TileHash {
                    level: height / TILE_HEIGHT,
                    index: (size >> height) - 1,
                    hash,
                });
            }
        }
        self.hashes.push(hash);
        self.size = size;
    }

    /// The RFC 9162 root of the tree: the subtrees folded from the right.
    pub fn root(&self) -> Hash32 {
        let mut rest = self.hashes.iter().rev();
        let Some(last) = rest.next() else {
            return empty_root();
        };
        rest.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::hash::record_hash;

    #[test]
    fn stores_the_subtrees_it_completes_and_round_trips() {
        let mut f = Frontier::EMPTY;
        let mut tiles = Vec::new();
        for i in 0..70_000u32 {
            f.push(record_hash(&i.to_be_bytes()), &mut tiles);
        }
        // 273 complete level-0 tiles give 273 level-1 hashes; one complete level-1 tile
        // gives one level-2 hash (the example of C2SP tlog-tiles for size 70,000).
        assert_eq!(tiles.iter().filter(|t| t.level == 1).count(), 273);
        assert_eq!(tiles.iter().filter(|t| t.level == 2).count(), 1);
        let back = Frontier::from_bytes(f.size(), &f.to_bytes()).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.root(), f.root());
        assert!(Frontier::from_bytes(3, &[0; 32]).is_err());
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            Frontier::EMPTY.root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
