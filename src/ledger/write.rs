//! The append path: a [`Ledger`] handle feeds one writer task per process, which commits
//! callers in groups (group commit) and answers each caller after its group's COMMIT.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::chain::{self, Head};
use super::store::ChainStore;
use super::{AppendBatch, AppendError, Appended, NewEvent};
use crate::db::Db;
use crate::record::StreamId;

/// Where a fault may be injected into a group, for tests of what a failed append leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Records and head are written, COMMIT is not yet sent.
    BeforeCommit,
}

pub type Hook =
    Arc<dyn Fn(Stage) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

#[derive(Clone)]
pub struct LedgerOptions {
    /// Most records committed in one transaction.
    pub max_group_records: usize,
    /// Appends that may wait for the writer before callers are held back.
    pub queue: usize,
    /// Microseconds since the epoch; records take `max(clock(), previous time)`.
    pub clock: Clock,
    /// Called at each [`Stage`]; an error aborts the group. Tests only.
    pub hook: Option<Hook>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            max_group_records: 4096,
            queue: 8192,
            clock: Arc::new(|| chrono::Utc::now().timestamp_micros()),
            hook: None,
        }
    }
}

struct Job {
    batch: AppendBatch,
    reply: oneshot::Sender<Result<Vec<Appended>, AppendError>>,
}

enum Msg {
    Append(Job),
    /// Stop taking appends; answer those already queued, then end.
    Close,
}

/// A handle to the append path. Cheap to clone; the writer stops when the last handle
/// is dropped or [`Ledger::close`] is called, after answering everything queued.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Msg>,
    writer: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
    stats: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    records: AtomicU64,
}

/// What the writer has committed since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub groups: u64,
    pub records: u64,
}

impl Ledger {
    /// Starts the writer on `db`, which must be a pool of its own: the writer keeps one
    /// connection for itself.
    pub fn start(db: Db, options: LedgerOptions) -> Ledger {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let stats = Arc::new(Counters::default());
        let writer = match db {
            Db::Postgres(pool) => tokio::spawn(run::<PgPool>(pool, rx, options, stats.clone())),
            Db::Sqlite(pool) => tokio::spawn(run::<SqlitePool>(pool, rx, options, stats.clone())),
        };
        Ledger {
            tx,
            writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
            stats,
        }
    }

    /// Appends `events` all-or-nothing and returns each record's `seq` and hash once the
    /// transaction holding them has committed durably.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        let batch = AppendBatch::new(events).map_err(AppendError::Invalid)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Append(Job { batch, reply }))
            .await
            .map_err(|_| AppendError::Unavailable("the ledger writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| AppendError::Unavailable("the ledger writer has stopped".into()))?
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            groups: self.stats.groups.load(Ordering::Relaxed),
            records: self.stats.records.load(Ordering::Relaxed),
        }
    }

    /// Stops taking appends (from every clone of this handle), answers every queued
    /// one, and waits for the writer to end.
    pub async fn close(&self) {
        let _ = self.tx.send(Msg::Close).await;
        let handle = self.writer.lock().await.take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

async fn run<S: ChainStore>(
    store: S,
    mut rx: mpsc::Receiver<Msg>,
    options: LedgerOptions,
    stats: Arc<Counters>,
) {
    let mut conn: Option<S::Conn> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut jobs = Vec::new();
        let mut records = 0;
        let mut closing = false;
        match rx.recv().await {
            None => break,
            Some(Msg::Close) => rx.close(),
            Some(Msg::Append(job)) => {
                records += job.batch.events().len();
                jobs.push(job);
            }
        }
        while records < options.max_group_records {
            match rx.try_recv() {
                Ok(Msg::Append(job)) => {
                    records += job.batch.events().len();
                    jobs.push(job);
                }
                Ok(Msg::Close) => {
                    closing = true;
                    rx.close();
                }
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let result = match conn.as_mut() {
            Some(c) => commit_group::<S>(c, &jobs, &options).await,
            None => match store.connect().await {
                Ok(c) => commit_group::<S>(conn.insert(c), &jobs, &options).await,
                Err(e) => Err(GroupError::Before(e.to_string())),
            },
        };
        match result {
            Ok((outcomes, committed)) => {
                backoff = Duration::from_millis(50);
                stats.groups.fetch_add(1, Ordering::Relaxed);
                stats.records.fetch_add(committed, Ordering::Relaxed);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                // The connection may be mid-transaction or broken: never reuse it.
                if let Some(c) = conn.take() {
                    S::discard(c).await;
                }
                tracing::error!(error = %e, jobs = jobs.len(), "ledger group failed");
                let answer = match e {
                    GroupError::Before(m) => AppendError::Unavailable(m),
                    GroupError::Commit(m) => AppendError::CommitUnknown(m),
                };
                for job in jobs {
                    let _ = job.reply.send(Err(answer.clone()));
                }
                if !closing {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error("{0}")]
    Before(String),
    #[error("{0}")]
    Commit(String),
}

async fn commit_group<S: ChainStore>(
    conn: &mut S::Conn,
    jobs: &[Job],
    options: &LedgerOptions,
) -> Result<(Vec<Result<Vec<Appended>, AppendError>>, u64), GroupError> {
    let before = |e: sqlx::Error| GroupError::Before(e.to_string());
    let head: Head = S::begin_and_lock(conn).await.map_err(before)?;
    let mut seen = HashSet::new();
    let streams: Vec<StreamId> = jobs
        .iter()
        .flat_map(|j| j.batch.events().iter().map(|e| &e.event.stream))
        .filter(|s| seen.insert(*s))
        .cloned()
        .collect();
    let stream_heads = S::stream_heads(conn, &streams).await.map_err(before)?;
    let batches: Vec<&AppendBatch> = jobs.iter().map(|j| &j.batch).collect();
    let sealed = chain::seal(head, stream_heads, &batches, (options.clock)());
    if !sealed.records.is_empty() {
        S::insert(conn, &sealed.records).await.map_err(before)?;
        S::set_head(conn, &sealed.head).await.map_err(before)?;
    }
    if let Some(hook) = &options.hook {
        hook(Stage::BeforeCommit)
            .await
            .map_err(GroupError::Before)?;
    }
    S::commit(conn)
        .await
        .map_err(|e| GroupError::Commit(e.to_string()))?;
    Ok((sealed.outcomes, sealed.records.len() as u64))
}
