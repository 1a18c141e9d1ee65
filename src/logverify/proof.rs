//! Inclusion and consistency proofs (SPEC section 4), verified as RFC 9162 sections
//! 2.1.3.2 and 2.1.4.2 write the algorithms, step for step, with the RFC's names
//! (`fn`, `sn`, `r`, `fr`, `sr`; `fn` is `f_n` here, a keyword in Rust).
//!
//! Before hashing, the proof's length is checked against the length those same loops
//! consume for the given index and sizes, so that a proof of the wrong length is
//! reported as such rather than as a root mismatch.

use sha2::{Digest, Sha256};

use super::Reject;
use crate::spec::hash::Hash32;

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash32 {
    Hash32(Sha256::digest(b"").into())
}

/// An interior node: SHA-256(0x01 || left || right).
fn node(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut buf = [0x01; 65];
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash32(Sha256::digest(buf).into())
}

fn lsb(n: u64) -> bool {
    n & 1 == 1
}

/// How many hashes the RFC 9162 loop consumes from `fn`, `sn` until `sn` is 0: the
/// iteration of step 4 (inclusion) and 6 (consistency) without the hashing.
fn path_len(mut f_n: u64, mut s_n: u64) -> usize {
    let mut len = 0;
    while s_n != 0 {
        if !lsb(f_n) && f_n == s_n {
            while !lsb(f_n) && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
        len += 1;
    }
    len
}

/// RFC 9162 section 2.1.3.2: `proof` proves that `leaf_hash` is leaf `leaf_index` of
/// the tree of `tree_size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: Hash32,
    proof: &[Hash32],
    root: Hash32,
) -> Result<(), Reject> {
    // 1.
    if leaf_index >= tree_size {
        return Err(Reject::failed(format!(
            "leaf index {leaf_index} is not in a tree of size {tree_size}"
        )));
    }
    let want = path_len(leaf_index, tree_size - 1);
    if proof.len() != want {
        return Err(Reject::failed(format!(
            "the inclusion proof for leaf {leaf_index} in a tree of size {tree_size} has {} \
             hashes, not {want}",
            proof.len()
        )));
    }
    // 2., 3.
    let (mut f_n, mut s_n) = (leaf_index, tree_size - 1);
    let mut r = leaf_hash;
    // 4.
    for p in proof {
        if s_n == 0 {
            return Err(Reject::failed("the inclusion proof is too long"));
        }
        if lsb(f_n) || f_n == s_n {
            r = node(p, &r);
            if !lsb(f_n) {
                while !lsb(f_n) && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5.
    if s_n != 0 {
        return Err(Reject::failed("the inclusion proof is too short"));
    }
    if r != root {
        return Err(Reject::failed(format!(
            "the inclusion proof for leaf {leaf_index} in a tree of size {tree_size} leads to \
             root {r}, not {root}"
        )));
    }
    Ok(())
}

/// RFC 9162 section 2.1.4.2: `proof` proves that the tree of `new_size` leaves with
/// `new_root` extends the one of `old_size` leaves with `old_root`. The RFC covers
/// `0 < old_size < new_size`; the other cases are decided here without a proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: Hash32,
    new_root: Hash32,
    proof: &[Hash32],
) -> Result<(), Reject> {
    if new_size < old_size {
        return Err(Reject::failed(format!(
            "the log was rolled back: tree size {new_size} is smaller than {old_size}"
        )));
    }
    let must_be_empty = |why: &str| {
        Reject::failed(format!(
            "the consistency proof from size {old_size} to {new_size} has {} hashes, not 0 \
             ({why})",
            proof.len()
        ))
    };
    if old_size == 0 && old_root != empty_root() {
        return Err(Reject::failed(format!(
            "the root of the empty tree is {old_root}, not SHA-256 of the empty string"
        )));
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(Reject::failed(format!(
                "fork: two different roots for tree size {old_size}: {old_root} and {new_root}"
            )));
        }
        if !proof.is_empty() {
            return Err(must_be_empty("the sizes are equal"));
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(must_be_empty("every tree extends the empty tree"));
        }
        return Ok(());
    }
    // Step 3 and 4 run first to know the length the loop will consume.
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while lsb(f_n) {
        f_n >>= 1;
        s_n >>= 1;
    }
    let prepend = old_size.is_power_of_two();
    let want = path_len(f_n, s_n) + usize::from(!prepend);
    if proof.len() != want {
        return Err(Reject::failed(format!(
            "the consistency proof from size {old_size} to {new_size} has {} hashes, not {want}",
            proof.len()
        )));
    }
    // 1., 2.
    let path: Vec<Hash32> = if prepend {
        std::iter::once(old_root)
            .chain(proof.iter().copied())
            .collect()
    } else {
        proof.to_vec()
    };
    let Some((first, rest)) = path.split_first() else {
        return Err(Reject::failed("the consistency proof is empty"));
    };
    // 5.
    let (mut fr, mut sr) = (*first, *first);
    // 6.
    for c in rest {
        if s_n == 0 {
            return Err(Reject::failed("the consistency proof is too long"));
        }
        if lsb(f_n) || f_n == s_n {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if !lsb(f_n) {
                while !lsb(f_n) && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7.
    if s_n != 0 {
        return Err(Reject::failed("the consistency proof is too short"));
    }
    if fr != old_root {
        return Err(Reject::failed(format!(
            "the consistency proof from size {old_size} to {new_size} leads to old root {fr}, \
             not {old_root}"
        )));
    }
    if sr != new_root {
        return Err(Reject::failed(format!(
            "the consistency proof from size {old_size} to {new_size} leads to new root {sr}, \
             not {new_root}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
