//! Compliance exports: the SPEC section 7 bundle (`records.jsonl`, `checkpoint`,
//! `proofs.jsonl`, `manifest.json`, `manifest.sig`) in a directory or a `.tar` of one.
//!
//! - Contiguous (no filter beyond a `seq` range): every record from `from_seq` to
//!   `to_seq`, and the last one's inclusion proof; the chain commits to the rest.
//! - Filtered: the matching records, each with its inclusion proof.
//!
//! Records and proofs are streamed to disk a page at a time, so memory stays flat
//! however many records; digests are taken as the bytes are written. The checkpoint is
//! the latest signed one if it covers the last record, else a new one is signed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{AuditLog, Search};
use crate::checkpoint::{Checkpoint, CheckpointError, Checkpointer};
use crate::domain::audit::AuditFilter;
use crate::ledger::Reader;
use crate::merkle::cache::CachedTiles;
use crate::merkle::{proof, ProofError};
use crate::record::FieldError;
use crate::spec::canonical;

/// Records read per page.
const PAGE: u32 = 1000;

pub const FILES: [&str; 5] = [
    "records.jsonl",
    "checkpoint",
    "proofs.jsonl",
    "manifest.json",
    "manifest.sig",
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {}", .0.field, .0.reason)]
    Invalid(FieldError),
    #[error("no records match")]
    Empty,
    #[error("{0} exists and is not an empty directory")]
    Exists(PathBuf),
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Where the bundle goes: a directory, or a `.tar` holding one.
#[derive(Clone, Debug)]
pub enum Out {
    Dir(PathBuf),
    Tar(PathBuf),
}

impl Out {
    pub fn parse(path: &Path) -> Out {
        if path.extension().is_some_and(|e| e == "tar") {
            Out::Tar(path.to_owned())
        } else {
            Out::Dir(path.to_owned())
        }
    }
}

/// What was exported.
#[derive(Debug)]
pub struct Exported {
    pub count: u64,
    pub from_seq: u64,
    pub to_seq: u64,
    pub tree_size: u64,
    /// `manifest.json` as written (RFC 8785 bytes).
    pub manifest: Vec<u8>,
}

/// A file being written, with the SHA-256 of what was written so far.
struct Digested {
    out: BufWriter<File>,
    hash: Sha256,
}

impl Digested {
    fn create(path: &Path) -> std::io::Result<Digested> {
        Ok(Digested {
            out: BufWriter::new(File::create(path)?),
            hash: Sha256::new(),
        })
    }

    fn line(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.write_all(b"\n")?;
        self.hash.update(bytes);
        self.hash.update(b"\n");
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<String> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

fn proof_line(seq: u64, tree_size: u64, path: &[crate::spec::hash::Hash32]) -> Vec<u8> {
    let inclusion: Vec<String> = path.iter().map(|h| h.to_hex()).collect();
    serde_json::to_vec(&json!({"seq": seq, "tree_size": tree_size, "inclusion": inclusion}))
        .expect("plain JSON")
}

pub struct Exporter<'a> {
    pub reader: &'a Reader,
    pub audit: &'a AuditLog,
    pub checkpoints: &'a Checkpointer,
}

impl Exporter<'_> {
    /// Writes the bundle of the records `filter` selects to `out`; `progress` is told the
    /// records written so far (and first, with `None`, how many a contiguous export
    /// will write).
    pub async fn export(
        &self,
        filter: &AuditFilter,
        out: &Out,
        progress: &(dyn Fn(Option<u64>, u64) + Sync),
    ) -> Result<Exported, ExportError> {
        let head = self.reader.head().await?.next_seq;
        if head == 0 {
            return Err(ExportError::Empty);
        }
        let last = match filter.to_seq {
            Some(to) if to >= head => {
                return Err(ExportError::Invalid(FieldError::new(
                    "to_seq",
                    format!("is beyond the ledger's {head} records"),
                )))
            }
            Some(to) => to,
            None => head - 1,
        };
        if let Out::Tar(t) = out {
            if t.exists() {
                return Err(ExportError::Exists(t.clone()));
            }
        }
        let checkpoint = self.covering(last).await?;
        let dir = match out {
            Out::Dir(d) => d.clone(),
            Out::Tar(t) => {
                let mut name = t.as_os_str().to_owned();
                name.push(format!(".partial-{}", std::process::id()));
                PathBuf::from(name)
            }
        };
        prepare(&dir)?;
        let written = self.write(filter, last, &checkpoint, &dir, progress).await;
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if let Out::Tar(tar) = out {
            let tar = tar.clone();
            blocking(move || {
                let packed = pack(&dir, &tar);
                std::fs::remove_dir_all(&dir)?;
                packed
            })
            .await?;
        }
        Ok(written)
    }

    /// The latest checkpoint if it holds record `last`, else a new one.
    async fn covering(&self, last: u64) -> Result<Checkpoint, ExportError> {
        match self.checkpoints.latest().await? {
            Some(c) if c.tree_size > last => Ok(c),
            _ => Ok(self.checkpoints.sign_head().await?),
        }
    }

    async fn write(
        &self,
        filter: &AuditFilter,
        last: u64,
        checkpoint: &Checkpoint,
        dir: &Path,
        progress: &(dyn Fn(Option<u64>, u64) + Sync),
    ) -> Result<Exported, ExportError> {
        let size = checkpoint.tree_size;
        let mut records = Digested::create(&dir.join("records.jsonl"))?;
        let mut proofs = Digested::create(&dir.join("proofs.jsonl"))?;
        let tiles = CachedTiles::new(self.checkpoints.tiles());
        let mut count = 0u64;
        let (mut first_seq, mut last_seq) = (None, None);
        if filter.selects() {
            // The index must hold every record the checkpoint does.
            let indexed = self.audit.index().catch_up().await?;
            if indexed < size {
                return Err(
                    anyhow::anyhow!("the audit index ends at {indexed}, before {size}").into(),
                );
            }
            let (start, end) = self.audit.bounds(filter).await?;
            let end = end.min(size).min(last + 1);
            let search = Search {
                filter,
                client: None,
                cursor: None,
                limit: PAGE,
            };
            let mut from = start;
            progress(None, 0);
            loop {
                let hits = self.audit.matching(&search, from, end, PAGE).await?;
                for hit in &hits {
                    records.line(&hit.canonical)?;
                    let path = proof::inclusion(&tiles, hit.seq, size).await?;
                    proofs.line(&proof_line(hit.seq, size, &path))?;
                    first_seq.get_or_insert(hit.seq);
                    last_seq = Some(hit.seq);
                    count += 1;
                }
                progress(None, count);
                match hits.last() {
                    Some(h) if hits.len() == PAGE as usize => from = h.seq + 1,
                    _ => break,
                }
            }
        } else {
            let start = filter.from_seq.unwrap_or(0);
            progress(Some(last + 1 - start), 0);
            let mut chunks = std::pin::pin!(self.reader.chunks(start, last, PAGE));
            let mut expect = start;
            while let Some(rows) = chunks.try_next().await? {
                for row in &rows {
                    let seq = row.seq.max(0) as u64;
                    if seq != expect {
                        return Err(anyhow::anyhow!(
                            "ledger gap: expected seq {expect}, read {seq}"
                        )
                        .into());
                    }
                    expect += 1;
                    records.line(&row.canonical)?;
                    count += 1;
                }
                progress(Some(last + 1 - start), count);
            }
            if expect != last + 1 {
                return Err(anyhow::anyhow!("ledger ends at seq {expect}, before {last}").into());
            }
            let path = proof::inclusion(&tiles, last, size).await?;
            proofs.line(&proof_line(last, size, &path))?;
            (first_seq, last_seq) = (Some(start), Some(last));
        }
        let (Some(from_seq), Some(to_seq)) = (first_seq, last_seq) else {
            return Err(ExportError::Empty);
        };
        let mut files = Map::new();
        let mut note = Digested::create(&dir.join("checkpoint"))?;
        note.out.write_all(checkpoint.note.as_bytes())?;
        note.hash.update(checkpoint.note.as_bytes());
        let digests = blocking(move || Ok([records.finish()?, proofs.finish()?, note.finish()?]));
        let [records, proofs, note] = digests.await?;
        files.insert("records.jsonl".into(), records.into());
        files.insert("proofs.jsonl".into(), proofs.into());
        files.insert("checkpoint".into(), note.into());
        let manifest = json!({
            "origin": self.checkpoints.origin(),
            "from_seq": from_seq,
            "to_seq": to_seq,
            "count": count,
            "filter": if filter.selects() { filter.to_json() } else { Value::Null },
            "created_at": crate::spec::time::format_micros(chrono::Utc::now().timestamp_micros())
                .unwrap_or_default(),
            "files": files,
        });
        let manifest =
            canonical::to_vec(&manifest).map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
        let sig = self.checkpoints.sign_manifest(&manifest);
        let (dir, bytes) = (dir.to_owned(), manifest.clone());
        blocking(move || {
            write_synced(&dir.join("manifest.json"), &bytes)?;
            write_synced(&dir.join("manifest.sig"), sig.as_bytes())?;
            Ok(())
        })
        .await?;
        Ok(Exported {
            count,
            from_seq,
            to_seq,
            tree_size: size,
            manifest,
        })
    }
}

/// Runs `f` (file I/O that waits for the disk: fsync, packing a tar) on tokio's blocking
/// pool, so that an export through the service does not stall the other requests of its
/// worker thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T, ExportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExportError::from(anyhow::anyhow!("export file task: {e}")))?
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes `dir`, or accepts it empty; refuses to write over anything.
fn prepare(dir: &Path) -> Result<(), ExportError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ExportError::Exists(dir.to_owned()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(ExportError::Exists(dir.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Packs the bundle's files into `tar`, under a directory named after it.
fn pack(dir: &Path, tar: &Path) -> Result<(), ExportError> {
    if tar.exists() {
        return Err(ExportError::Exists(tar.to_owned()));
    }
    let name = tar
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let file = File::create(tar)?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    builder.mode(tar::HeaderMode::Deterministic);
    for f in FILES {
        builder.append_path_with_name(dir.join(f), format!("{name}/{f}"))?;
    }
    let out = builder.into_inner()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}
