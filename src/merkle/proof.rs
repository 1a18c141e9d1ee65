//! Roots and RFC 9162 proofs (sections 2.1.3.1 and 2.1.4.1) from stored tile hashes.
//!
//! Each proof is first planned as the list of subtree ranges `[lo, hi)` whose hashes it
//! holds ([`inclusion_ranges`], [`consistency_ranges`]: RFC 9162's PATH and SUBPROOF,
//! with ranges instead of hashes). A range splits into complete subtrees
//! ([`subtrees`]); those are read from a [`TileSource`], grouped so that each tile is
//! read at most once, and the range's hash is folded from them.

use std::collections::HashMap;
use std::future::Future;

use super::{empty_root, hash_up, node_hash, Node, TILE_HEIGHT, TILE_WIDTH};
use crate::spec::hash::Hash32;

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request names a leaf or size the tree does not have.
    #[error("{0}")]
    OutOfRange(String),
    #[error("tree storage: {0}")]
    Storage(String),
}

/// Where the stored hashes are: level 0 the record hashes, level `L` the hashes of the
/// complete subtrees of height `8L`.
pub trait TileSource: Sync {
    /// The stored hashes of `level` with index in `start..end`, in order; an error if any
    /// is missing.
    fn hashes(
        &self,
        level: u32,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<Hash32>, ProofError>> + Send;
}

/// Largest power of two strictly below `n` (`n` ≥ 2): RFC 9162's split point `k`.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes make up the inclusion proof of leaf `index` in a tree of
/// `size` leaves, in proof order (nearest the leaf first).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    // RFC 9162 PATH(m, D[lo:hi]), unrolled from the top; the proof lists it bottom-up.
    let (mut lo, mut hi) = (0, size);
    let mut ranges = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The ranges whose hashes make up the consistency proof from `old` to `new` leaves
/// (0 < `old` < `new`), in proof order.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    // RFC 9162 SUBPROOF(m, D[lo:hi], b), unrolled from the top.
    let (mut lo, mut hi, mut m, mut whole) = (0, new, old, true);
    let mut ranges = Vec::new();
    while m != hi - lo {
        let k = split(hi - lo);
        if m <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        ranges.push((lo, hi));
    }
    ranges.reverse();
    ranges
}

/// The complete subtrees a range of the RFC 9162 tree is made of, left to right. Every
/// range PATH and SUBPROOF name starts at a multiple of the largest power of two not
/// above its length, so greedy alignment gives exactly the tree's own split.
pub fn subtrees(lo: u64, hi: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut at = lo;
    while at < hi {
        let room = 63 - (hi - at).leading_zeros();
        let align = if at == 0 { 63 } else { at.trailing_zeros() };
        let height = room.min(align);
        nodes.push(Node {
            height,
            index: at >> height,
        });
        at += 1 << height;
    }
    nodes
}

/// A range's hash from its subtrees' hashes: folded from the right, as MTH splits.
fn fold(nodes: &[Node], known: &HashMap<Node, Hash32>) -> Hash32 {
    let mut rest = nodes.iter().rev().map(|n| known[n]);
    let last = rest.next().unwrap_or_else(empty_root);
    rest.fold(last, |acc, left| node_hash(&left, &acc))
}

/// The hashes of `nodes`, reading each tile they fall in once.
async fn read<S: TileSource>(
    source: &S,
    nodes: &[Node],
) -> Result<HashMap<Node, Hash32>, ProofError> {
    // A node of height h is hashed up from 2^(h mod 8) stored hashes at level h / 8.
    let stored = |n: &Node| {
        let level = n.height / TILE_HEIGHT;
        let below = n.height % TILE_HEIGHT;
        (level, n.index << below, (n.index + 1) << below)
    };
    let mut spans: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for n in nodes {
        let (level, start, end) = stored(n);
        let span = spans
            .entry((level, start / TILE_WIDTH))
            .or_insert((start, end));
        span.0 = span.0.min(start);
        span.1 = span.1.max(end);
    }
    let mut tiles: HashMap<(u32, u64), (u64, Vec<Hash32>)> = HashMap::new();
    for ((level, tile), (start, end)) in spans {
        let hashes = source.hashes(level, start, end).await?;
        if hashes.len() as u64 != end - start {
            return Err(ProofError::Storage(format!(
                "level {level} holds {} of the {} hashes from {start}",
                hashes.len(),
                end - start
            )));
        }
        tiles.insert((level, tile), (start, hashes));
    }
    Ok(nodes
        .iter()
        .map(|n| {
            let (level, start, end) = stored(n);
            let (first, hashes) = &tiles[&(level, start / TILE_WIDTH)];
            let from = (start - first) as usize;
            let to = (end - first) as usize;
            (*n, hash_up(&hashes[from..to]))
        })
        .collect())
}

/// One hash per range.
async fn range_hashes<S: TileSource>(
    source: &S,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash32>, ProofError> {
    let split: Vec<Vec<Node>> = ranges.iter().map(|&(lo, hi)| subtrees(lo, hi)).collect();
    let all: Vec<Node> = split.iter().flatten().copied().collect();
    let known = read(source, &all).await?;
    Ok(split.iter().map(|nodes| fold(nodes, &known)).collect())
}

/// The root of the tree of `size` leaves (all of them stored).
pub async fn root<S: TileSource>(source: &S, size: u64) -> Result<Hash32, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    Ok(range_hashes(source, &[(0, size)]).await?[0])
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub async fn inclusion<S: TileSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash32>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    range_hashes(source, &inclusion_ranges(index, size)).await
}

/// The consistency proof from the tree of `old` leaves to the tree of `new`.
pub async fn consistency<S: TileSource>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash32>, ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange(format!(
            "no consistency proof from size {old} to the smaller size {new}"
        )));
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    range_hashes(source, &consistency_ranges(old, new)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Frontier, TileHash};
    use crate::spec::hash::record_hash;
    use std::cell::RefCell;

    /// Tiles in memory, filled the way the append path fills the database.
    struct MemTiles {
        levels: Vec<Vec<Hash32>>,
    }

    impl MemTiles {
        fn of(leaves: &[Hash32]) -> MemTiles {
            let mut frontier = Frontier::EMPTY;
            let mut completed: Vec<TileHash> = Vec::new();
            for leaf in leaves {
                frontier.push(*leaf, &mut completed);
            }
            let mut levels = vec![leaves.to_vec()];
            for t in completed {
                let level = t.level as usize;
                levels.resize(levels.len().max(level + 1), Vec::new());
                assert_eq!(levels[level].len() as u64, t.index, "stored in order");
                levels[level].push(t.hash);
            }
            MemTiles { levels }
        }
    }

    impl TileSource for MemTiles {
        fn hashes(
            &self,
            level: u32,
            start: u64,
            end: u64,
        ) -> impl Future<Output = Result<Vec<Hash32>, ProofError>> + Send {
            let got = self
                .levels
                .get(level as usize)
                .and_then(|l| l.get(start as usize..end as usize))
                .map(<[Hash32]>::to_vec)
                .ok_or_else(|| ProofError::Storage(format!("{level}/{start}..{end}")));
            std::future::ready(got)
        }
    }

    /// RFC 9162 section 2.1, as written: MTH, PATH and SUBPROOF by recursion over the
    /// leaf hashes, with MTH of each range remembered (leaves are a fixed sequence, so
    /// the hash of a range does not depend on the tree it is asked for).
    struct Naive<'a> {
        leaves: &'a [Hash32],
        memo: RefCell<HashMap<(usize, usize), Hash32>>,
    }

    impl Naive<'_> {
        fn mth(&self, lo: usize, hi: usize) -> Hash32 {
            if let Some(h) = self.memo.borrow().get(&(lo, hi)) {
                return *h;
            }
            let h = match hi - lo {
                0 => empty_root(),
                1 => self.leaves[lo],
                n => {
                    let k = split(n as u64) as usize;
                    node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
                }
            };
            self.memo.borrow_mut().insert((lo, hi), h);
            h
        }

        fn path(&self, m: usize, lo: usize, hi: usize) -> Vec<Hash32> {
            if hi - lo == 1 {
                return Vec::new();
            }
            let k = split((hi - lo) as u64) as usize;
            if m < k {
                let mut p = self.path(m, lo, lo + k);
                p.push(self.mth(lo + k, hi));
                p
            } else {
                let mut p = self.path(m - k, lo + k, hi);
                p.push(self.mth(lo, lo + k));
                p
            }
        }

        fn subproof(&self, m: usize, lo: usize, hi: usize, whole: bool) -> Vec<Hash32> {
            let n = hi - lo;
            if m == n {
                return if whole {
                    Vec::new()
                } else {
                    vec![self.mth(lo, hi)]
                };
            }
            let k = split(n as u64) as usize;
            if m <= k {
                let mut p = self.subproof(m, lo, lo + k, whole);
                p.push(self.mth(lo + k, hi));
                p
            } else {
                let mut p = self.subproof(m - k, lo + k, hi, false);
                p.push(self.mth(lo, lo + k));
                p
            }
        }
    }

    /// The published RFC 6962 vectors: roots of sizes 0 to 8, and their inclusion and
    /// consistency proofs, from the tiles the append path would store.
    #[test]
    fn gives_the_rfc_6962_vectors() {
        use crate::spec::vectors::{CONSISTENCY, INCLUSION, LEAF_INPUTS, ROOTS};
        let h = |x: &str| x.parse::<Hash32>().unwrap();
        let leaves: Vec<Hash32> = LEAF_INPUTS
            .iter()
            .map(|x| record_hash(&hex::decode(x).unwrap()))
            .collect();
        let tiles = MemTiles::of(&leaves);
        futures::executor::block_on(async {
            for (n, expected) in ROOTS.iter().enumerate() {
                assert_eq!(
                    root(&tiles, n as u64).await.unwrap(),
                    h(expected),
                    "root {n}"
                );
            }
            for (leaf, n, proof) in INCLUSION {
                let got = inclusion(&tiles, leaf - 1, n).await.unwrap();
                assert_eq!(
                    got,
                    proof.iter().map(|x| h(x)).collect::<Vec<_>>(),
                    "{leaf} in {n}"
                );
            }
            for (m, n, proof) in CONSISTENCY {
                let got = consistency(&tiles, m, n).await.unwrap();
                assert_eq!(
                    got,
                    proof.iter().map(|x| h(x)).collect::<Vec<_>>(),
                    "{m} to {n}"
                );
            }
        });
    }

    fn leaves(n: u32) -> Vec<Hash32> {
        (0..n).map(|i| record_hash(&i.to_be_bytes())).collect()
    }

    /// Every root, inclusion proof and consistency proof of every tree up to 300 leaves
    /// equals the RFC's recursive definition (trees past 256 leaves read level-1 tiles).
    #[test]
    fn equals_the_recursive_definition_up_to_300() {
        let all = leaves(300);
        let naive = Naive {
            leaves: &all,
            memo: RefCell::new(HashMap::new()),
        };
        let tiles = MemTiles::of(&all);
        futures::executor::block_on(async {
            assert_eq!(root(&tiles, 0).await.unwrap(), empty_root());
            for n in 1..=300usize {
                let size = n as u64;
                assert_eq!(
                    root(&tiles, size).await.unwrap(),
                    naive.mth(0, n),
                    "root {n}"
                );
                let mut prefix = Frontier::EMPTY;
                all[..n]
                    .iter()
                    .for_each(|l| prefix.push(*l, &mut Vec::new()));
                assert_eq!(prefix.root(), naive.mth(0, n), "frontier root {n}");
                for m in 0..n {
                    assert_eq!(
                        inclusion(&tiles, m as u64, size).await.unwrap(),
                        naive.path(m, 0, n),
                        "inclusion {m} in {n}"
                    );
                }
                for m in 1..n {
                    assert_eq!(
                        consistency(&tiles, m as u64, size).await.unwrap(),
                        naive.subproof(m, 0, n, true),
                        "consistency {m} to {n}"
                    );
                }
                assert!(consistency(&tiles, size, size).await.unwrap().is_empty());
            }
        });
    }

    #[test]
    fn refuses_what_the_tree_does_not_have() {
        let tiles = MemTiles::of(&leaves(10));
        futures::executor::block_on(async {
            assert!(matches!(
                inclusion(&tiles, 10, 10).await,
                Err(ProofError::OutOfRange(_))
            ));
            assert!(matches!(
                consistency(&tiles, 5, 4).await,
                Err(ProofError::OutOfRange(_))
            ));
            assert!(matches!(
                inclusion(&tiles, 3, 11).await,
                Err(ProofError::Storage(_))
            ));
        });
    }

    /// A proof deep in a large tree reads one span per tile level and side, not one
    /// per hash.
    #[test]
    fn reads_each_tile_once() {
        struct Counting(MemTiles, std::sync::atomic::AtomicUsize);
        impl TileSource for Counting {
            fn hashes(
                &self,
                level: u32,
                start: u64,
                end: u64,
            ) -> impl Future<Output = Result<Vec<Hash32>, ProofError>> + Send {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.hashes(level, start, end)
            }
        }
        let source = Counting(MemTiles::of(&leaves(70_000)), Default::default());
        futures::executor::block_on(async {
            let proof = inclusion(&source, 12_345, 69_999).await.unwrap();
            assert_eq!(proof.len(), 17);
            let reads = source.1.load(std::sync::atomic::Ordering::Relaxed);
            assert!(reads <= 6, "{reads} reads");
        });
    }
}
