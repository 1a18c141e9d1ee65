//! Two independent anchors: the published RFC 6962 test vectors (leaf inputs, roots,
//! proofs), and a naive reference written from the definitions of RFC 9162 section 2.1
//! (MTH, PATH, SUBPROOF), run over every tree size up to 64.

use super::*;
use crate::logverify::reference::{mth, path, split, subproof};
use crate::spec::hash::record_hash;
use crate::spec::vectors::{CONSISTENCY, INCLUSION, LEAF_INPUTS, ROOTS};

fn h(hex: &str) -> Hash32 {
    hex.parse().unwrap()
}

fn hs(hexes: &[&str]) -> Vec<Hash32> {
    hexes.iter().map(|x| h(x)).collect()
}

fn vector_leaves() -> Vec<Hash32> {
    LEAF_INPUTS
        .iter()
        .map(|x| record_hash(&hex::decode(x).unwrap()))
        .collect()
}

/// How a verified value is composed: of the leaf hash (inclusion) or the old root
/// (consistency, when it is itself a node of the new tree), and proof hashes by index.
/// The definitions fix it from the sizes alone; a correct verifier accepts a proof
/// for other sizes exactly when they compose the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Given,
    P(usize),
    Node(Box<Expr>, Box<Expr>),
}

fn join(l: Expr, r: Expr) -> Expr {
    Expr::Node(Box::new(l), Box::new(r))
}

/// The root as PATH(m, D[n]) composes it, and the path's length.
fn path_expr(m: u64, n: u64) -> (Expr, usize) {
    if n == 1 {
        return (Expr::Given, 0);
    }
    let k = split(n as usize) as u64;
    if m < k {
        let (e, len) = path_expr(m, k);
        (join(e, Expr::P(len)), len + 1)
    } else {
        let (e, len) = path_expr(m - k, n - k);
        (join(Expr::P(len), e), len + 1)
    }
}

/// The old and new roots as SUBPROOF(m, D[n], b) composes them, and its length.
fn subproof_expr(m: u64, n: u64, b: bool) -> (Expr, Expr, usize) {
    if m == n {
        return if b {
            (Expr::Given, Expr::Given, 0)
        } else {
            (Expr::P(0), Expr::P(0), 1)
        };
    }
    let k = split(n as usize) as u64;
    if m <= k {
        let (old, new, len) = subproof_expr(m, k, b);
        (old, join(new, Expr::P(len)), len + 1)
    } else {
        let (old, new, len) = subproof_expr(m - k, n - k, false);
        (join(Expr::P(len), old), join(Expr::P(len), new), len + 1)
    }
}

fn eval(e: &Expr, given: Hash32, proof: &[Hash32]) -> Hash32 {
    match e {
        Expr::Given => given,
        Expr::P(i) => proof[*i],
        Expr::Node(l, r) => node(&eval(l, given, proof), &eval(r, given, proof)),
    }
}

fn leaves(n: usize) -> Vec<Hash32> {
    (0..n)
        .map(|i| record_hash(format!("leaf {i}").as_bytes()))
        .collect()
}

/// Which bytes of each hash get a bit flipped: all of them in trees of up to 16 leaves
/// (and in the published proofs), both ends and the middle above, as a hash costs
/// microseconds in an unoptimised test build.
fn bytes_to_flip(n: u64) -> Vec<usize> {
    if n <= 16 {
        (0..32).collect()
    } else {
        vec![0, 1, 15, 16, 30, 31]
    }
}

/// Each proof with a bit flipped in one byte of `bytes` of one hash, one hash dropped,
/// one added, two swapped.
fn mangled(proof: &[Hash32], bytes: &[usize]) -> Vec<Vec<Hash32>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        for &byte in bytes {
            let mut p = proof.to_vec();
            p[i].0[byte] ^= 0x01 << (byte % 8);
            out.push(p);
        }
        let mut p = proof.to_vec();
        p.remove(i);
        out.push(p);
        if i + 1 < proof.len() && proof[i] != proof[i + 1] {
            let mut p = proof.to_vec();
            p.swap(i, i + 1);
            out.push(p);
        }
    }
    for at in 0..=proof.len() {
        let mut p = proof.to_vec();
        p.insert(at, record_hash(b"extra"));
        out.push(p);
    }
    out
}

/// Other sizes and indexes to try a proof with: off by one, doubled, halved, flipped
/// bit, and the edges.
fn near(x: u64) -> Vec<u64> {
    let mut v = vec![0, 1, x + 1, x * 2, x / 2, x ^ 2, x ^ 1];
    if x > 0 {
        v.push(x - 1);
    }
    v.sort_unstable();
    v.dedup();
    v.retain(|&y| y != x);
    v
}

fn flip(h: Hash32, byte: usize) -> Hash32 {
    let mut h = h;
    h.0[byte] ^= 0x80;
    h
}

// ---- the published vectors ----

#[test]
fn reference_reproduces_the_published_roots_and_proofs() {
    let d = vector_leaves();
    for (n, root) in ROOTS.iter().enumerate() {
        assert_eq!(mth(&d[..n]), h(root), "root of size {n}");
    }
    assert_eq!(empty_root(), h(ROOTS[0]));
    for (leaf, n, proof) in INCLUSION {
        assert_eq!(path(leaf as usize - 1, &d[..n as usize]), hs(proof));
    }
    for (m, n, proof) in CONSISTENCY {
        assert_eq!(subproof(m as usize, &d[..n as usize], true), hs(proof));
    }
}

#[test]
fn published_inclusion_proofs_verify_and_their_corruptions_do_not() {
    let d = vector_leaves();
    for (leaf, n, proof) in INCLUSION {
        let (m, proof, root) = (leaf - 1, hs(proof), h(ROOTS[n as usize]));
        let leaf = d[m as usize];
        verify_inclusion(m, n, leaf, &proof, root).unwrap();
        for bad in mangled(&proof, &bytes_to_flip(n)) {
            assert!(verify_inclusion(m, n, leaf, &bad, root).is_err());
        }
        for other in [h(ROOTS[0]), record_hash(b"WrongRoot"), flip(root, 0)] {
            assert!(verify_inclusion(m, n, leaf, &proof, other).is_err());
        }
        assert!(verify_inclusion(m, n, record_hash(b"WrongLeaf"), &proof, root).is_err());
    }
}

#[test]
fn published_consistency_proofs_verify_and_their_corruptions_do_not() {
    for (m, n, proof) in CONSISTENCY {
        let (proof, old, new) = (hs(proof), h(ROOTS[m as usize]), h(ROOTS[n as usize]));
        verify_consistency(m, n, old, new, &proof).unwrap();
        if m == n {
            continue;
        }
        for bad in mangled(&proof, &bytes_to_flip(n)) {
            assert!(verify_consistency(m, n, old, new, &bad).is_err());
        }
        assert!(verify_consistency(m, n, new, old, &proof).is_err());
        assert!(verify_consistency(m, n, old, flip(new, 31), &proof).is_err());
        assert!(verify_consistency(m, n, flip(old, 31), new, &proof).is_err());
        assert!(verify_consistency(m, n, old, new, &[]).is_err());
    }
}

// ---- the reference, every size up to 64 ----

#[test]
fn every_inclusion_proof_up_to_64_leaves_verifies_and_no_corruption_does() {
    for n in 1..=64u64 {
        let bytes = &bytes_to_flip(n);
        let d = leaves(n as usize);
        let root = mth(&d);
        for m in 0..n {
            let (proof, leaf) = (path(m as usize, &d), d[m as usize]);
            let (expr, len) = path_expr(m, n);
            assert_eq!((eval(&expr, leaf, &proof), len), (root, proof.len()));
            verify_inclusion(m, n, leaf, &proof, root).unwrap();
            for bad in mangled(&proof, bytes) {
                assert!(verify_inclusion(m, n, leaf, &bad, root).is_err());
            }
            assert!(verify_inclusion(m, n, flip(leaf, 7), &proof, root).is_err());
            assert!(verify_inclusion(m, n, leaf, &proof, flip(root, 7)).is_err());
            // A proof is accepted for another index or size only where the definitions
            // compose the root the same way (leaf 0 of 3 and of 4 share their shape).
            let others = near(m).into_iter().map(|m2| (m2, n));
            for (m2, n2) in others.chain(near(n).into_iter().map(|n2| (m, n2))) {
                let same = m2 < n2 && path_expr(m2, n2) == (expr.clone(), len);
                let got = verify_inclusion(m2, n2, leaf, &proof, root);
                assert_eq!(got.is_ok(), same, "leaf {m} of {n} tried as {m2} of {n2}");
            }
        }
    }
}

#[test]
fn every_consistency_proof_up_to_64_leaves_verifies_and_no_corruption_does() {
    for n in 1..=64u64 {
        let bytes = &bytes_to_flip(n);
        let d = leaves(n as usize);
        let new = mth(&d);
        for m in 1..n {
            let (proof, old) = (subproof(m as usize, &d, true), mth(&d[..m as usize]));
            let shape = subproof_expr(m, n, true);
            assert_eq!(eval(&shape.0, old, &proof), old);
            assert_eq!(eval(&shape.1, old, &proof), new);
            assert_eq!(shape.2, proof.len());
            verify_consistency(m, n, old, new, &proof).unwrap();
            for bad in mangled(&proof, bytes) {
                assert!(verify_consistency(m, n, old, new, &bad).is_err());
            }
            for byte in [0, 13, 31] {
                assert!(verify_consistency(m, n, flip(old, byte), new, &proof).is_err());
                assert!(verify_consistency(m, n, old, flip(new, byte), &proof).is_err());
            }
            let others = near(m).into_iter().map(|m2| (m2, n));
            for (m2, n2) in others.chain(near(n).into_iter().map(|n2| (m, n2))) {
                let same = 0 < m2 && m2 < n2 && subproof_expr(m2, n2, true) == shape;
                let got = verify_consistency(m2, n2, old, new, &proof);
                assert_eq!(got.is_ok(), same, "{m} to {n} tried as {m2} to {n2}");
            }
        }
    }
}

// ---- the edges, where RFC 9162 has no proof ----

#[test]
fn inclusion_needs_the_index_inside_the_tree() {
    let some = record_hash(b"some");
    for (m, n) in [(0, 0), (1, 0), (1, 1), (2, 1), (5, 5)] {
        let e = verify_inclusion(m, n, some, &[], some).unwrap_err();
        assert_eq!(
            e.reason(),
            format!("leaf index {m} is not in a tree of size {n}")
        );
        assert!(!e.is_malformed());
    }
    // A tree of one leaf: its root is the leaf hash, and the proof is empty.
    verify_inclusion(0, 1, some, &[], some).unwrap();
    assert!(verify_inclusion(0, 1, some, &[], empty_root()).is_err());
}

#[test]
fn inclusion_reasons_tell_length_from_root() {
    let d = leaves(8);
    let (proof, root) = (path(5, &d), mth(&d));
    let e = verify_inclusion(5, 8, d[5], &proof[..2], root).unwrap_err();
    assert_eq!(
        e.reason(),
        "the inclusion proof for leaf 5 in a tree of size 8 has 2 hashes, not 3"
    );
    let e = verify_inclusion(5, 8, d[4], &proof, root).unwrap_err();
    assert!(e
        .reason()
        .starts_with("the inclusion proof for leaf 5 in a tree of size 8 leads to root "));
}

#[test]
fn consistency_edges() {
    let d = leaves(5);
    let (r3, r5, empty) = (mth(&d[..3]), mth(&d), empty_root());
    let e = verify_consistency(5, 3, r5, r3, &[]).unwrap_err();
    assert_eq!(
        e.reason(),
        "the log was rolled back: tree size 3 is smaller than 5"
    );
    let e = verify_consistency(3, 3, r3, r5, &[]).unwrap_err();
    assert!(e
        .reason()
        .starts_with("fork: two different roots for tree size 3"));
    verify_consistency(3, 3, r3, r3, &[]).unwrap();
    assert!(verify_consistency(3, 3, r3, r3, &[r3]).is_err());
    // Every tree extends the empty one, whose root is fixed.
    verify_consistency(0, 5, empty, r5, &[]).unwrap();
    verify_consistency(0, 0, empty, empty, &[]).unwrap();
    assert!(verify_consistency(0, 5, empty, r5, &[empty]).is_err());
    assert!(verify_consistency(0, 5, r3, r5, &[]).is_err());
    assert!(verify_consistency(0, 0, empty, r3, &[]).is_err());
    assert!(verify_consistency(0, 0, r3, r3, &[]).is_err());
    // A proof is needed between two non-empty sizes.
    let e = verify_consistency(3, 5, r3, r5, &[]).unwrap_err();
    assert_eq!(
        e.reason(),
        "the consistency proof from size 3 to 5 has 0 hashes, not 4"
    );
    verify_consistency(3, 5, r3, r5, &subproof(3, &d, true)).unwrap();
}
