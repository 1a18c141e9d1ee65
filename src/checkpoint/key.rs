//! The checkpoint key (SPEC section 5): an Ed25519 key of the log's own, never a token
//! key, that signs checkpoints as C2SP signed notes under the log's origin.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use crate::db::DatabaseUrl;
use crate::secret_file;
use crate::spec::hash::Hash32;

/// The signed-note key type of Ed25519.
const ED25519: u8 = 0x01;

pub struct LogKey {
    origin: String,
    key: ed25519_dalek::SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogKey({})", self.verifier_key())
    }
}

/// An origin is a signed-note key name: printable, with no space and no `+`.
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin.is_empty() {
        return Err("the origin must not be empty".into());
    }
    if let Some(c) = origin
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '+')
    {
        return Err(format!(
            "the origin may not hold {c:?}: it is the name in signed-note keys and signatures"
        ));
    }
    Ok(())
}

impl LogKey {
    pub fn new(origin: &str, key: ed25519_dalek::SigningKey) -> Result<LogKey, String> {
        check_origin(origin)?;
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update(b"\n");
        h.update([ED25519]);
        h.update(key.verifying_key().as_bytes());
        let digest = h.finalize();
        let id = [digest[0], digest[1], digest[2], digest[3]];
        Ok(LogKey {
            origin: origin.to_owned(),
            key,
            id,
        })
    }

    /// The key in the file at `path` (PKCS#8 PEM), made there first if there is none.
    pub fn load_or_create(path: &Path, origin: &str) -> anyhow::Result<LogKey> {
        let pem = secret_file::read_or_create(path, "checkpoint key", || {
            let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
            Ok(key
                .to_pkcs8_pem(Default::default())
                .map_err(|e| anyhow::anyhow!("cannot encode a new checkpoint key: {e}"))?
                .to_string())
        })?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
            anyhow::anyhow!(
                "checkpoint key file {} does not hold an Ed25519 PKCS#8 PEM key",
                path.display()
            )
        })?;
        LogKey::new(origin, key).map_err(|e| anyhow::anyhow!(e))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key in the `golang.org/x/mod/sumdb/note` format:
    /// `<origin>+<key id hex>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut typed = vec![ED25519];
        typed.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.origin,
            hex::encode(self.id),
            B64.encode(typed)
        )
    }

    /// The checkpoint of the tree of `size` leaves with `root`, as a signed note.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash32) -> String {
        let body = format!("{}\n{size}\n{}\n", self.origin, B64.encode(root.0));
        self.sign_note(&body)
    }

    /// An export manifest's signature (SPEC section 7): Ed25519 over `manifest`, the
    /// RFC 8785 bytes of `manifest.json`, in standard base64.
    pub fn sign_manifest(&self, manifest: &[u8]) -> String {
        B64.encode(self.key.sign(manifest).to_bytes())
    }

    /// `text` (lines each ending in `\n`) followed by a blank line and this key's
    /// signature line.
    fn sign_note(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut sig = self.id.to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.origin, B64.encode(sig))
    }
}

/// The checkpoint key file for `database`, given `configured` (`--checkpoint-key` /
/// `VIDNE_CHECKPOINT_KEY`): required with PostgreSQL, where every instance must sign
/// with the same key; `<database file>.checkpoint-key` next to an SQLite database.
pub fn resolve_path(
    database: &DatabaseUrl,
    configured: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    match (configured, database) {
        (Some(path), _) => Ok(path),
        (None, DatabaseUrl::Postgres(_)) => Err(anyhow::anyhow!(
            "--checkpoint-key (or VIDNE_CHECKPOINT_KEY) is required with PostgreSQL: the \
             checkpoint key is a file outside the database, shared by every instance"
        )),
        (None, DatabaseUrl::Sqlite(db)) => Ok(secret_file::beside(db, ".checkpoint-key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_spec_format() {
        let key = LogKey::new(
            "vidne.test/ledger",
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        )
        .unwrap();
        let note = key.sign_checkpoint(5, &Hash32([1; 32]));
        let (body, sig) = note.split_once("\n\n").unwrap();
        assert_eq!(
            body,
            "vidne.test/ledger\n5\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
        );
        let sig = sig.strip_prefix("\u{2014} vidne.test/ledger ").unwrap();
        let raw = B64.decode(sig.trim_end()).unwrap();
        assert_eq!(raw.len(), 68);
        let vkey = key.verifier_key();
        let parts: Vec<&str> = vkey.split('+').collect();
        assert_eq!(parts[0], "vidne.test/ledger");
        assert_eq!(parts[1], hex::encode(&raw[..4]));
        assert_eq!(B64.decode(parts[2]).unwrap()[0], 0x01);
        assert!(LogKey::new("has space", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).is_err());
        assert!(LogKey::new("a+b", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).is_err());
    }
}
