//! Record hash (SPEC section 2): SHA-256(0x00 || canonical bytes), the RFC 9162 leaf hash.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A 32-byte SHA-256 value, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// `prev` of the record at `seq` 0: 64 `0` characters.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Lowercase hex into `out`, without allocating.
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        }
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Hash32> {
        bytes.try_into().ok().map(Hash32)
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

/// Only lowercase hex of exactly 64 digits parses: the form SPEC section 1 writes.
impl FromStr for Hash32 {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("must be 64 lowercase hex digits");
        }
        // Checked above: every byte is a lowercase hex digit.
        let nibble = |b: u8| if b <= b'9' { b - b'0' } else { b - b'a' + 10 };
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            *o = nibble(pair[0]) << 4 | nibble(pair[1]);
        }
        Ok(Hash32(out))
    }
}

/// SHA-256(0x00 || canonical): the record hash of SPEC section 2.
pub fn record_hash(canonical: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(canonical);
    Hash32(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_hash_of_empty_input_matches_rfc6962() {
        // RFC 6962 test vector: the leaf hash of the empty entry.
        assert_eq!(
            record_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn hex_round_trip_and_strictness() {
        let h = record_hash(b"x");
        let mut buf = Vec::new();
        h.write_hex(&mut buf);
        assert_eq!(buf, h.to_hex().into_bytes());
        assert_eq!(h.to_hex().parse::<Hash32>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<Hash32>().is_err());
        assert!("00".parse::<Hash32>().is_err());
        assert_eq!(Hash32::ZERO.to_hex(), "0".repeat(64));
    }
}
