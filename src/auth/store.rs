//! Keys in the database: `api_keys` holds each key's id, name, role and SHA-256.

use rand_core::{OsRng, RngCore};

use super::{ApiKey, KeyHash, Principal, Role};
use crate::db::Db;
use crate::record::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("key store: {0}")]
    Storage(#[from] sqlx::Error),
}

/// A key just made: its id (safe to log and show) and the key itself (shown once).
#[derive(Debug)]
pub struct NewKey {
    pub key_id: String,
    pub name: String,
    pub role: Role,
    pub key: ApiKey,
}

#[derive(Clone)]
pub struct KeyStore {
    db: Db,
}

/// A key's name: 1 to 100 characters, no control characters.
fn check_name(name: &str) -> Result<(), FieldError> {
    let n = name.chars().count();
    if n == 0 || n > 100 || name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    Ok(())
}

impl KeyStore {
    pub fn new(db: Db) -> KeyStore {
        KeyStore { db }
    }

    /// Makes a key for `role`; only its hash is stored.
    pub async fn create(&self, role: Role, name: &str, now_us: i64) -> Result<NewKey, KeyError> {
        check_name(name)?;
        let key = ApiKey::generate();
        let mut id = [0u8; 8];
        OsRng.fill_bytes(&mut id);
        let key_id = format!("key_{}", hex::encode(id));
        let sql = "INSERT INTO api_keys (key_id, name, role, key_hash, created_us) VALUES ($1, $2, $3, $4, $5)";
        let hash = key.hash();
        crate::on_pool!(&self.db, p => sqlx::query(sql)
            .bind(&key_id)
            .bind(name)
            .bind(role.to_string())
            .bind(&hash.0[..])
            .bind(now_us)
            .execute(p)
            .await
            .map(drop))?;
        Ok(NewKey {
            key_id,
            name: name.to_owned(),
            role,
            key,
        })
    }

    /// The unrevoked key with this hash, if any.
    pub async fn find(&self, hash: &KeyHash) -> Result<Option<Principal>, sqlx::Error> {
        let sql =
            "SELECT key_id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_us IS NULL";
        let row: Option<(String, String, String)> = crate::on_pool!(&self.db, p => sqlx::query_as(sql)
            .bind(&hash.0[..])
            .fetch_optional(p)
            .await?);
        row.map(|(key_id, name, role)| {
            let role = Role::parse(&role).map_err(|e| {
                sqlx::Error::Protocol(format!("api_keys.role of {key_id}: {}", e.reason))
            })?;
            Ok(Principal { key_id, name, role })
        })
        .transpose()
    }
}
