//! The writer side as the tests make it: a naive Merkle tree straight from the
//! definitions of RFC 9162 section 2.1 (MTH, PATH, SUBPROOF), slow, recursive and
//! sharing nothing with the verifier's loops. The published vectors pin it
//! (`proof::tests`).

use sha2::{Digest, Sha256};

use crate::spec::hash::Hash32;

/// The largest power of two smaller than `n` (n > 1).
pub fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]), 2.1.1, over leaf hashes.
pub fn mth(d: &[Hash32]) -> Hash32 {
    match d.len() {
        0 => Hash32(Sha256::digest(b"").into()),
        1 => d[0],
        n => {
            let k = split(n);
            let mut h = Sha256::new();
            h.update([0x01]);
            h.update(mth(&d[..k]).0);
            h.update(mth(&d[k..]).0);
            Hash32(h.finalize().into())
        }
    }
}

/// PATH(m, D[n]), 2.1.3.1.
pub fn path(m: usize, d: &[Hash32]) -> Vec<Hash32> {
    if d.len() == 1 {
        return vec![];
    }
    let k = split(d.len());
    let (mut p, sibling) = if m < k {
        (path(m, &d[..k]), mth(&d[k..]))
    } else {
        (path(m - k, &d[k..]), mth(&d[..k]))
    };
    p.push(sibling);
    p
}

/// SUBPROOF(m, D[n], b), 2.1.4.1.
pub fn subproof(m: usize, d: &[Hash32], b: bool) -> Vec<Hash32> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = split(n);
    let (mut p, other) = if m <= k {
        (subproof(m, &d[..k], b), mth(&d[k..]))
    } else {
        (subproof(m - k, &d[k..], false), mth(&d[..k]))
    };
    p.push(other);
    p
}
