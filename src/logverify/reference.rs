//! The writer side as the tests make it: a naive Merkle tree straight from the
//! definitions of RFC 9162 section 2.1 (MTH, PATH, SUBPROOF), slow, recursive and
//! sharing nothing with the verifier's loops, and a checkpoint signer written from SPEC
//! section 5. The published vectors pin both (`proof::tests`, `note::tests`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
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

/// A fresh Ed25519 key and its verifier key string, as SPEC section 5 writes it.
pub fn new_key(name: &str) -> (SigningKey, String) {
    let sk = SigningKey::generate(&mut rand_core::OsRng);
    let vkey = format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, &sk)),
        STANDARD.encode(typed_key(&sk))
    );
    (sk, vkey)
}

fn typed_key(sk: &SigningKey) -> Vec<u8> {
    [&[0x01][..], sk.verifying_key().as_bytes()].concat()
}

fn key_id(name: &str, sk: &SigningKey) -> [u8; 4] {
    let d = Sha256::digest([name.as_bytes(), &b"\n"[..], &typed_key(sk)[..]].concat());
    [d[0], d[1], d[2], d[3]]
}

/// `— <name> base64(key id || signature over text)\n`.
pub fn sig_line(text: &str, name: &str, sk: &SigningKey) -> String {
    let sig = sk.sign(text.as_bytes()).to_bytes();
    let raw = [&key_id(name, sk)[..], &sig[..]].concat();
    format!("— {name} {}\n", STANDARD.encode(raw))
}

/// A checkpoint of `name`'s log, signed by `sk`.
pub fn checkpoint(name: &str, size: u64, root: Hash32, sk: &SigningKey) -> String {
    let text = format!("{name}\n{size}\n{}\n", STANDARD.encode(root.0));
    format!("{text}\n{}", sig_line(&text, name, sk))
}
