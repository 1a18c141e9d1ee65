//! Signed checkpoints (SPEC section 5): the tree's size and root, signed with the
//! checkpoint key as a C2SP signed note, stored in `log_checkpoints`.
//!
//! A checkpoint is signed only after the tree it names has been proved consistent with
//! the last one stored, by the independent verifier (`crate::logverify`) over a proof the
//! tree serves: a ledger whose stored records or tree were changed under it stops
//! signing instead of signing a fork. The cadence ([`Policy`]) signs when enough records
//! or enough time have passed; [`Checkpointer::sign_head`] signs on demand.

pub mod key;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::logverify;
use crate::merkle::store::DbTiles;
use crate::merkle::{proof, ProofError};
use crate::spec::hash::Hash32;

pub use key::LogKey;

/// A stored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root: Hash32,
    /// The signed note, exactly as signed and served.
    pub note: String,
    pub created_micros: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Tree(#[from] ProofError),
    /// Signing would break a promise of the log; nothing was signed.
    #[error("{0}")]
    Refused(String),
}

/// When the service signs a checkpoint by itself.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Sign once this many records are past the last checkpoint...
    pub every_records: u64,
    /// ...or once this long has passed since it, if any record is past it.
    pub interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            every_records: 10_000,
            interval: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct Checkpointer {
    db: Db,
    tiles: DbTiles,
    key: Arc<LogKey>,
    verifier: Arc<logverify::note::VerifierKey>,
}

type Row = (i64, Vec<u8>, String, i64);

fn from_row((size, root, note, created): Row) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        tree_size: size.max(0) as u64,
        root: Hash32::from_slice(&root)
            .ok_or_else(|| sqlx::Error::Protocol("log_checkpoints.root is not 32 bytes".into()))?,
        note,
        created_micros: created,
    })
}

impl Checkpointer {
    /// Binds `key` to the ledger in `db`: the first start records its verifier key; a
    /// later start with another key or origin is refused, as is one whose key did not
    /// sign the last stored checkpoint.
    pub async fn open(db: Db, key: LogKey) -> Result<Checkpointer, CheckpointError> {
        let ours = key.verifier_key();
        let verifier = logverify::note::VerifierKey::parse(&ours)
            .map_err(|e| CheckpointError::Refused(format!("checkpoint key: {e}")))?;
        let bound: String = crate::on_pool!(&db, p => {
            sqlx::query(
                "INSERT INTO log_identity (id, origin, verifier_key) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(key.origin())
            .bind(&ours)
            .execute(p)
            .await?;
            sqlx::query_scalar("SELECT verifier_key FROM log_identity WHERE id = 1")
                .fetch_one(p)
                .await
        })?;
        if bound != ours {
            return Err(CheckpointError::Refused(format!(
                "this ledger's checkpoints are signed as {bound}, but the configured origin \
                 and checkpoint key give {ours}: a log's origin and key never change"
            )));
        }
        let checkpointer = Checkpointer {
            tiles: DbTiles::new(db.clone()),
            db,
            key: Arc::new(key),
            verifier: Arc::new(verifier),
        };
        if let Some(last) = checkpointer.latest().await? {
            checkpointer.check_stored(&last)?;
        }
        Ok(checkpointer)
    }

    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    /// The log's origin (SPEC section 5).
    pub fn origin(&self) -> &str {
        self.key.origin()
    }

    /// Signs an export manifest with the checkpoint key (SPEC section 7).
    pub fn sign_manifest(&self, manifest: &[u8]) -> String {
        self.key.sign_manifest(manifest)
    }

    pub fn tiles(&self) -> &DbTiles {
        &self.tiles
    }

    pub async fn latest(&self) -> Result<Option<Checkpoint>, sqlx::Error> {
        let sql = "SELECT tree_size, root, note, created_us FROM log_checkpoints \
                   ORDER BY tree_size DESC LIMIT 1";
        let row: Option<Row> =
            crate::on_pool!(&self.db, p => sqlx::query_as(sql).fetch_optional(p).await)?;
        row.map(from_row).transpose()
    }

    /// The checkpoint of exactly `size` leaves, if one was signed.
    pub async fn at(&self, size: u64) -> Result<Option<Checkpoint>, sqlx::Error> {
        let sql = "SELECT tree_size, root, note, created_us FROM log_checkpoints \
                   WHERE tree_size = $1";
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let row: Option<Row> = crate::on_pool!(&self.db, p => sqlx::query_as(sql)
            .bind(size)
            .fetch_optional(p)
            .await)?;
        row.map(from_row).transpose()
    }

    /// A stored checkpoint's note verifies with this log's key and says what its row says.
    fn check_stored(&self, stored: &Checkpoint) -> Result<(), CheckpointError> {
        let seen =
            logverify::note::verify_checkpoint(&stored.note, &self.verifier).map_err(|e| {
                CheckpointError::Refused(format!(
                    "stored checkpoint {} does not verify with this log's key: {e}",
                    stored.tree_size
                ))
            })?;
        if seen.tree_size != stored.tree_size || seen.root != stored.root {
            return Err(CheckpointError::Refused(format!(
                "stored checkpoint {} names tree size {} and another root than its row",
                stored.tree_size, seen.tree_size
            )));
        }
        Ok(())
    }

    /// Signs the tree as it is now, unless the last checkpoint already covers it (then
    /// that one is returned).
    pub async fn sign_head(&self) -> Result<Checkpoint, CheckpointError> {
        // Another process may sign between our reading the last checkpoint and storing
        // ours; then start over from the one it stored.
        for _ in 0..5 {
            let last = self.latest().await?;
            let size = self.tiles.size().await?;
            if let Some(last) = last.as_ref().filter(|l| l.tree_size >= size) {
                return Ok(last.clone());
            }
            let root = proof::root(&self.tiles, size).await?;
            if let Some(last) = &last {
                self.check_extends(last, size, &root).await?;
            }
            let checkpoint = Checkpoint {
                tree_size: size,
                root,
                note: self.key.sign_checkpoint(size, &root),
                created_micros: chrono::Utc::now().timestamp_micros(),
            };
            if self.store_if_newest(&checkpoint).await? {
                tracing::info!(tree_size = size, root = %root, "signed a checkpoint");
                return Ok(checkpoint);
            }
        }
        Err(CheckpointError::Refused(
            "other processes kept signing checkpoints first; try again".into(),
        ))
    }

    /// The tree of `size` leaves with `root` extends `last`: `last` verifies with this
    /// log's key, and a consistency proof from the tree checks against both roots.
    async fn check_extends(
        &self,
        last: &Checkpoint,
        size: u64,
        root: &Hash32,
    ) -> Result<(), CheckpointError> {
        self.check_stored(last)?;
        let proof = proof::consistency(&self.tiles, last.tree_size, size).await?;
        logverify::proof::verify_consistency(last.tree_size, size, last.root, *root, &proof)
            .map_err(|e| {
                tracing::error!(last = last.tree_size, size, reason = %e,
                    "the tree is not consistent with the last checkpoint; not signing");
                CheckpointError::Refused(format!(
                    "refusing to sign tree size {size}: it is not consistent with checkpoint \
                     {}: {e}",
                    last.tree_size
                ))
            })
    }

    /// Stores `c` unless a checkpoint of its size or larger is stored already.
    async fn store_if_newest(&self, c: &Checkpoint) -> Result<bool, sqlx::Error> {
        let sql = "INSERT INTO log_checkpoints (tree_size, root, note, created_us) \
                   SELECT $1, $2, $3, $4 \
                   WHERE NOT EXISTS (SELECT 1 FROM log_checkpoints WHERE tree_size >= $1)";
        let size = i64::try_from(c.tree_size).unwrap_or(i64::MAX);
        let stored = crate::on_pool!(&self.db, p => sqlx::query(sql)
            .bind(size)
            .bind(&c.root.0[..])
            .bind(&c.note)
            .bind(c.created_micros)
            .execute(p)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(stored == 1)
    }

    /// Signs on `policy`'s cadence until the task is dropped: at once if the tree has
    /// grown past the last checkpoint (or none exists), then whenever enough records or
    /// enough time have passed.
    pub async fn run(self, policy: Policy) {
        let tick = policy
            .interval
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(50));
        let mut last: Option<u64> = None;
        let mut signed_at = Instant::now();
        loop {
            let due = match (last, self.tiles.size().await) {
                (_, Err(e)) => {
                    tracing::error!(error = %e, "checkpoints: cannot read the tree size");
                    false
                }
                (None, Ok(_)) => true,
                (Some(last), Ok(size)) => {
                    size > last
                        && (size - last >= policy.every_records
                            || signed_at.elapsed() >= policy.interval)
                }
            };
            if due {
                match self.sign_head().await {
                    Ok(c) => {
                        last = Some(c.tree_size);
                        signed_at = Instant::now();
                    }
                    Err(e) => tracing::error!(error = %e, "checkpoint not signed"),
                }
            }
            tokio::time::sleep(tick).await;
        }
    }
}
