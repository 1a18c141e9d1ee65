//! `vidne export` (write a bundle from the database) and `vidne export verify` (check one
//! offline, in `logverify::bundle`).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::export::{Exporter, Out};
use super::AuditLog;
use crate::checkpoint::{self, Checkpointer, LogKey};
use crate::cli::DatabaseArg;
use crate::db::{self, Db};
use crate::domain::audit::{client_list, AuditFilter};
use crate::domain::values::Timestamp;
use crate::ledger::Reader;
use crate::projection::AuditIndex;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub command: Option<ExportCommand>,
    #[command(flatten)]
    pub database: DatabaseArg,
    /// First `seq` exported.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Last `seq` exported (default: the last record).
    #[arg(long)]
    pub to_seq: Option<u64>,
    /// Only this SP client's records (a filtered export: each record with its proof).
    /// Repeat it, or separate ids with commas, for several clients' records.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client_id: Vec<String>,
    /// Only records at or after this RFC 3339 instant (filtered).
    #[arg(long)]
    pub from_time: Option<String>,
    /// Only records before this RFC 3339 instant (filtered).
    #[arg(long)]
    pub to_time: Option<String>,
    /// The bundle: a directory (made, or empty) or a FILE.tar (not overwritten).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// The checkpoint key, which signs the manifest (as for `serve`).
    #[arg(long, env = "VIDNE_CHECKPOINT_KEY")]
    pub checkpoint_key: Option<PathBuf>,
    /// The ledger's origin (as for `serve`).
    #[arg(long, env = "VIDNE_ORIGIN", default_value = "vidne.local/ledger")]
    pub origin: String,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Verify a bundle offline with the ledger's verifier key alone. Exits 0 when valid,
    /// 1 naming what failed, 2 when it cannot be read.
    Verify(crate::logverify::bundle::VerifyArgs),
}

fn filter_of(a: &ExportArgs) -> anyhow::Result<AuditFilter> {
    let flag = |e: crate::record::FieldError| {
        anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.reason)
    };
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| Timestamp::parse(name, s))
            .transpose()
            .map_err(flag)
    };
    AuditFilter {
        client_ids: match a.client_id.as_slice() {
            [] => Vec::new(),
            given => client_list(given.join(",")).map_err(flag)?,
        },
        from_time: time("from_time", &a.from_time)?,
        to_time: time("to_time", &a.to_time)?,
        from_seq: a.from_seq,
        to_seq: a.to_seq,
        ..AuditFilter::default()
    }
    .check()
    .map_err(flag)
}

pub async fn run(a: ExportArgs) -> anyhow::Result<u8> {
    if let Some(ExportCommand::Verify(v)) = &a.command {
        return Ok(crate::logverify::bundle::run(v));
    }
    let filter = filter_of(&a)?;
    let out = Out::parse(a.out.as_deref().expect("clap requires --out"));
    let url = &a.database.url;
    let db = db::open(url, "vidne-export", 2).await?;
    let key = LogKey::load_or_create(
        &checkpoint::key::resolve_path(url, a.checkpoint_key.clone())?,
        &a.origin,
    )?;
    let checkpoints = Checkpointer::open(db.clone(), key).await?;
    let reader = Reader::new(db.clone());
    let index_db = Db::connect(url, "vidne-export-index", 1).await?;
    let audit = AuditLog::new(
        db.clone(),
        AuditIndex::new(index_db.clone(), reader.clone()),
    );
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |total: Option<u64>, done: u64| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    };
    let result = Exporter {
        reader: &reader,
        audit: &audit,
        checkpoints: &checkpoints,
    }
    .export(&filter, &out, &progress)
    .await;
    bar.finish_and_clear();
    index_db.close().await;
    db.close().await;
    let done = result?;
    println!(
        "exported {} records (seq {} to {}) in the checkpoint of tree size {} to {}",
        done.count,
        done.from_seq,
        done.to_seq,
        done.tree_size,
        a.out.as_deref().expect("clap requires --out").display()
    );
    Ok(0)
}
