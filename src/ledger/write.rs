//! The append path: a [`Ledger`] handle feeds one writer task per process, which commits
//! callers in groups (group commit) and answers each caller after its group's COMMIT.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::chain::{self, Head};
use super::store::{ChainStore, StoreError, TreeUpdate};
use super::{AppendBatch, AppendError, Appended, NewEvent};
use crate::db::Db;
use crate::merkle::Frontier;
use crate::record::{Record, StreamId};

/// Where a fault may be injected into a group, for tests of what a failed append leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Locked path: records and head are written, COMMIT is not yet sent.
    BeforeCommit,
    /// Fast path: the group is sealed, its one guarded write is not yet sent.
    BeforeFastAppend,
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
    /// Keep the Merkle tree with the chain. Off only for the append benchmark's
    /// baseline: a ledger written without it has no tree to prove anything from.
    pub tree: bool,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            max_group_records: 4096,
            queue: 8192,
            clock: Arc::new(|| chrono::Utc::now().timestamp_micros()),
            hook: None,
            tree: true,
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

/// What this writer knows of the chain: the head and tree edge its own last commit left,
/// and stream positions as of that head. While the database's head is still that one, no
/// other process has appended since, so all are exact and a group can take the fast path.
struct View {
    head: Option<(Head, Frontier)>,
    streams: HashMap<StreamId, u64>,
}

impl View {
    /// Streams remembered at most (about 100 bytes each); past it the view starts over.
    const MAX_STREAMS: usize = 50_000;

    fn new() -> View {
        View {
            head: None,
            streams: HashMap::new(),
        }
    }

    /// Positions known for the group's streams, and the streams to look up.
    fn lookup(&self, jobs: &[Job]) -> (HashMap<StreamId, u64>, Vec<StreamId>) {
        let mut known = HashMap::new();
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        for stream in jobs
            .iter()
            .flat_map(|j| j.batch.events().iter().map(|e| &e.event.stream))
        {
            if !seen.insert(stream) {
                continue;
            }
            match self.streams.get(stream) {
                Some(last) => {
                    known.insert(stream.clone(), *last);
                }
                None => unknown.push(stream.clone()),
            }
        }
        (known, unknown)
    }

    fn committed(&mut self, head: Head, tree: Frontier, streams: HashMap<StreamId, u64>) {
        if self.streams.len() + streams.len() > Self::MAX_STREAMS {
            self.streams.clear();
        }
        self.streams.extend(streams);
        self.head = Some((head, tree));
    }

    fn forget(&mut self) {
        self.head = None;
        self.streams.clear();
    }
}

async fn run<S: ChainStore>(
    store: S,
    mut rx: mpsc::Receiver<Msg>,
    options: LedgerOptions,
    stats: Arc<Counters>,
) {
    let mut conn: Option<S::Conn> = None;
    let mut view = View::new();
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
        let mut result = attempt(&store, &mut conn, &jobs, &options, &mut view).await;
        if let Err(GroupError::Disconnected(e)) = &result {
            // A kept connection was found dead (database restart, failover, idle
            // timeout) before anything was sent: retry once on a fresh one.
            tracing::warn!(error = %e, "ledger writer reconnecting");
            view.forget();
            if let Some(c) = conn.take() {
                S::discard(c).await;
            }
            result = attempt(&store, &mut conn, &jobs, &options, &mut view).await;
        }
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
                view.forget();
                if let Some(c) = conn.take() {
                    S::discard(c).await;
                }
                tracing::error!(error = %e, jobs = jobs.len(), "ledger group failed");
                let answer = match e {
                    GroupError::Before(m) | GroupError::Disconnected(m) => {
                        AppendError::Unavailable(m)
                    }
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
    /// The connection failed before anything of the group was sent.
    #[error("{0}")]
    Disconnected(String),
    #[error("{0}")]
    Commit(String),
}

type Outcomes = Vec<Result<Vec<Appended>, AppendError>>;

/// Commits one group on the kept connection, or on a new one if there is none.
async fn attempt<S: ChainStore>(
    store: &S,
    conn: &mut Option<S::Conn>,
    jobs: &[Job],
    options: &LedgerOptions,
    view: &mut View,
) -> Result<(Outcomes, u64), GroupError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(
            store
                .connect()
                .await
                .map_err(|e| GroupError::Before(e.to_string()))?,
        ),
    };
    commit_group::<S>(c, jobs, options, view).await
}

async fn commit_group<S: ChainStore>(
    conn: &mut S::Conn,
    jobs: &[Job],
    options: &LedgerOptions,
    view: &mut View,
) -> Result<(Outcomes, u64), GroupError> {
    let before = |e: sqlx::Error| {
        if super::store::is_disconnect(&e) {
            GroupError::Disconnected(e.to_string())
        } else {
            GroupError::Before(e.to_string())
        }
    };
    let batches: Vec<&AppendBatch> = jobs.iter().map(|j| &j.batch).collect();
    let t0 = std::time::Instant::now();

    // Fast path: build on the head this writer last committed, in one guarded write.
    if let Some((expected, tree)) = view.head.take() {
        let (mut streams, unknown) = view.lookup(jobs);
        if !unknown.is_empty() {
            // Read outside the lock: valid if the guarded write below finds the head
            // unchanged, since then nothing was appended in between.
            streams.extend(S::stream_heads(conn, &unknown).await.map_err(before)?);
        }
        let sealed = chain::seal(expected, streams, &batches, (options.clock)());
        // A group of refusals only is decided under the lock, where positions are exact.
        if !sealed.records.is_empty() {
            if let Some(hook) = &options.hook {
                hook(Stage::BeforeFastAppend)
                    .await
                    .map_err(GroupError::Before)?;
            }
            let tree = grow(tree, &sealed.records, options.tree);
            let appended = S::append_if_head(
                conn,
                &expected,
                &sealed.records,
                &sealed.head,
                options.tree.then_some(&tree),
            )
            .await
            .map_err(|e| match e {
                StoreError::Before(e) => GroupError::Before(e.to_string()),
                StoreError::Commit(e) => GroupError::Commit(e.to_string()),
            })?;
            if appended {
                return Ok(committed(
                    sealed,
                    tree.frontier,
                    view,
                    "fast",
                    jobs.len(),
                    t0,
                ));
            }
        }
        // Another writer moved the head: what this one knew is stale.
        view.forget();
    }

    // Locked path: take the chain-head lock, read head and positions under it.
    let (head, tree) = S::begin_and_lock(conn).await.map_err(before)?;
    if options.tree && tree.size() != head.next_seq {
        return Err(GroupError::Before(format!(
            "the Merkle tree covers {} of {} records: run `vidne migrate` to build it",
            tree.size(),
            head.next_seq
        )));
    }
    // The view is empty here (never used, or just forgotten), so every stream of the
    // group is looked up under the lock.
    let (_, unknown) = view.lookup(jobs);
    let streams = S::stream_heads(conn, &unknown).await.map_err(before)?;
    let sealed = chain::seal(head, streams, &batches, (options.clock)());
    let tree = grow(tree, &sealed.records, options.tree);
    if !sealed.records.is_empty() {
        S::insert(
            conn,
            &head,
            &sealed.records,
            &sealed.head,
            options.tree.then_some(&tree),
        )
        .await
        .map_err(before)?;
    }
    if let Some(hook) = &options.hook {
        hook(Stage::BeforeCommit)
            .await
            .map_err(GroupError::Before)?;
    }
    S::commit(conn)
        .await
        .map_err(|e| GroupError::Commit(e.to_string()))?;
    Ok(committed(
        sealed,
        tree.frontier,
        view,
        "locked",
        jobs.len(),
        t0,
    ))
}

/// The tree after `records`: its new right edge and the tile hashes they complete.
fn grow(mut frontier: Frontier, records: &[Record], enabled: bool) -> TreeUpdate {
    let mut tiles = Vec::new();
    if enabled {
        for r in records {
            frontier.push(r.hash(), &mut tiles);
        }
    }
    TreeUpdate { frontier, tiles }
}

/// After a group's commit: remember the new head and positions, and tell the callers.
fn committed(
    sealed: chain::Sealed,
    tree: Frontier,
    view: &mut View,
    path: &'static str,
    callers: usize,
    started: std::time::Instant,
) -> (Outcomes, u64) {
    let n = sealed.records.len() as u64;
    tracing::debug!(
        records = n,
        callers,
        path,
        total_us = started.elapsed().as_micros() as u64,
        "group committed"
    );
    view.committed(sealed.head, tree, sealed.streams);
    (sealed.outcomes, n)
}
