//! The append path: a [`Ledger`] handle feeds one writer task per process, which commits
//! callers in groups (group commit) and answers each caller after its group's COMMIT.
//!
//! Where the database lets a second group wait at the chain head's lock (PostgreSQL), the
//! writer keeps two groups in flight: while one commits, the next is gathered, sealed onto
//! the head the first will leave, and sent on a second connection, where it waits for the
//! first's commit and then runs at once. The server never waits for the writer, and the
//! writer's work (gathering, sealing, encoding) overlaps the server's. If the first group
//! does not commit, the second's guard fails, it writes nothing, and it is redone under
//! the lock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    /// Connections the pool given to [`Ledger::start`] should allow.
    pub const CONNECTIONS: u32 = 2;

    /// Starts the writer on `db`, which must be a pool of its own: the writer keeps its
    /// connections for itself (on PostgreSQL two, if the pool allows two, so that two
    /// groups can be in flight; otherwise one).
    pub fn start(db: Db, options: LedgerOptions) -> Ledger {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let stats = Arc::new(Counters::default());
        let writer = match db {
            Db::Postgres(pool) => tokio::spawn(Writer::new(pool, rx, options, stats.clone()).run()),
            Db::Sqlite(pool) => tokio::spawn(Writer::new(pool, rx, options, stats.clone()).run()),
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

/// What this writer knows of the chain: the head and tree edge that the last group it
/// sent will leave, and stream positions as of that head. While the database's head is
/// the one each group was sealed on, no other process has appended, so all are exact and
/// groups take the fast path.
struct View {
    head: Option<(Head, Frontier)>,
    streams: HashMap<StreamId, u64>,
}

impl View {
    /// Streams remembered at most (about 100 bytes each); past it the view is forgotten
    /// and the next group reads its streams under the lock.
    const MAX_STREAMS: usize = 50_000;

    fn new() -> View {
        View {
            head: None,
            streams: HashMap::new(),
        }
    }

    /// Positions known for the group's streams, and the streams to look up.
    fn lookup<'a>(&self, jobs: &'a [Job]) -> (HashMap<&'a StreamId, u64>, Vec<&'a StreamId>) {
        let mut known = HashMap::new();
        let mut unknown = Vec::new();
        for stream in jobs
            .iter()
            .flat_map(|j| j.batch.events().iter().map(|e| &e.event.stream))
        {
            if known.contains_key(stream) {
                continue;
            }
            match self.streams.get(stream) {
                Some(last) => known.insert(stream, *last),
                None => {
                    unknown.push(stream);
                    // Marks it seen; the position read from the database replaces it.
                    known.insert(stream, 0)
                }
            };
        }
        for stream in &unknown {
            known.remove(*stream);
        }
        (known, unknown)
    }

    /// The chain after a group: its head, tree edge and the positions of its streams.
    /// Forgetting rather than trimming: positions of groups still in flight must never
    /// be read back from the database, which does not hold them yet.
    fn advance(&mut self, head: Head, tree: Frontier, streams: HashMap<&StreamId, u64>) {
        if self.streams.len() + streams.len() > Self::MAX_STREAMS {
            self.forget();
            return;
        }
        for (stream, last) in streams {
            match self.streams.get_mut(stream) {
                Some(known) => *known = last,
                None => {
                    self.streams.insert(stream.clone(), last);
                }
            }
        }
        self.head = Some((head, tree));
    }

    fn forget(&mut self) {
        self.head = None;
        self.streams.clear();
    }
}

/// Yields that bring no new append before a group is closed: they let callers that are
/// about to append (those just answered) do so first, so groups are not split by a few
/// microseconds. A handful of microseconds when nothing else is running.
const SETTLE_YIELDS: usize = 2;
/// Most yields one gathering waits, however steadily appends keep arriving.
const MAX_YIELDS: usize = 64;
/// With two groups in flight, a group takes at most half of the callers in flight or
/// waiting, so that each commits while the other is being sealed; below this many
/// callers one group takes all of them (another commit would cost more than it hides).
const SPLIT_FROM: usize = 16;

type Outcomes = Vec<Result<Vec<Appended>, AppendError>>;
type Landed<C> = Result<(C, Result<bool, StoreError>), tokio::task::JoinError>;
/// A guarded write under way, with its connection: a task of its own, so that it is
/// sent at once and not only when the writer next polls it.
type Landing<C> = JoinHandle<(C, Result<bool, StoreError>)>;

/// A group sent on the fast path whose answer has not come back yet.
struct Flight<C> {
    jobs: Vec<Job>,
    outcomes: Outcomes,
    records: u64,
    /// The `seq` of its first record.
    first_seq: u64,
    landing: Landing<C>,
}

struct Writer<S: ChainStore> {
    store: S,
    rx: mpsc::Receiver<Msg>,
    /// Whether the queue may still deliver appends.
    open: bool,
    closing: bool,
    options: LedgerOptions,
    stats: Arc<Counters>,
    /// Groups in flight at most.
    depth: usize,
    idle: Vec<S::Conn>,
    flights: VecDeque<Flight<S::Conn>>,
    /// Appends to redo under the lock, in order, once nothing is in flight.
    deferred: VecDeque<Job>,
    /// Told whether the newest flight moved the head, for the one launched after it.
    ahead: Option<oneshot::Receiver<bool>>,
    view: View,
    backoff: Duration,
}

impl<S: ChainStore> Writer<S> {
    fn new(
        store: S,
        rx: mpsc::Receiver<Msg>,
        options: LedgerOptions,
        stats: Arc<Counters>,
    ) -> Writer<S> {
        Writer {
            depth: S::PIPELINE.min(store.max_connections()).max(1),
            store,
            rx,
            open: true,
            closing: false,
            options,
            stats,
            idle: Vec::new(),
            flights: VecDeque::new(),
            deferred: VecDeque::new(),
            ahead: None,
            view: View::new(),
            backoff: Duration::from_millis(50),
        }
    }

    async fn run(mut self) {
        loop {
            let room = self.flights.len() < self.depth && self.view.head.is_some() && self.open;
            if let Some(front) = self.flights.front_mut().filter(|_| !room) {
                // Full, or the next group needs the lock: the oldest flight lands first.
                let landed = (&mut front.landing).await;
                self.land(landed).await;
            } else if let Some(front) = self.flights.front_mut() {
                // Room for another group while the oldest commits.
                let next = tokio::select! {
                    biased;
                    landed = &mut front.landing => Ok(landed),
                    msg = self.rx.recv() => Err(msg),
                };
                match next {
                    Ok(landed) => self.land(landed).await,
                    Err(None) => self.open = false,
                    Err(Some(msg)) => {
                        let jobs = self.gather(msg).await;
                        self.start(jobs).await;
                    }
                }
            } else if !self.deferred.is_empty() {
                let mut jobs = Vec::new();
                let mut records = 0;
                while let Some(job) = self.deferred.pop_front() {
                    records += job.batch.events().len();
                    jobs.push(job);
                    if records >= self.options.max_group_records {
                        break;
                    }
                }
                self.locked(jobs).await;
            } else if !self.open {
                break;
            } else {
                match self.rx.recv().await {
                    None => self.open = false,
                    Some(msg) => {
                        let jobs = self.gather(msg).await;
                        self.start(jobs).await;
                    }
                }
            }
        }
    }

    /// The group that starts with `first`: what else is queued once callers about to
    /// append have done so, up to `max_group_records`, and with two groups in flight at
    /// most half of the callers (see [`SPLIT_FROM`]).
    async fn gather(&mut self, first: Msg) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut records = 0;
        self.take(first, &mut jobs, &mut records);
        let (mut queued, mut quiet) = (self.rx.len(), 0);
        for _ in 0..MAX_YIELDS {
            if quiet == SETTLE_YIELDS || queued >= self.options.max_group_records || !self.open {
                break;
            }
            tokio::task::yield_now().await;
            let now = self.rx.len();
            quiet = if now == queued { quiet + 1 } else { 0 };
            queued = now;
        }
        let in_flight: usize = self.flights.iter().map(|f| f.jobs.len()).sum();
        let callers = in_flight + jobs.len() + queued;
        let most = if self.depth > 1 && callers >= SPLIT_FROM {
            callers.div_ceil(2)
        } else {
            usize::MAX
        };
        while records < self.options.max_group_records && jobs.len() < most {
            match self.rx.try_recv() {
                Ok(msg) => self.take(msg, &mut jobs, &mut records),
                Err(_) => break,
            }
        }
        jobs
    }

    fn take(&mut self, msg: Msg, jobs: &mut Vec<Job>, records: &mut usize) {
        match msg {
            Msg::Append(job) => {
                *records += job.batch.events().len();
                jobs.push(job);
            }
            Msg::Close => {
                // Stop taking appends; those queued are still delivered, then None.
                self.closing = true;
                self.rx.close();
            }
        }
    }

    async fn start(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        if self.view.head.is_some() {
            self.launch(jobs).await;
        } else if self.flights.is_empty() {
            self.locked(jobs).await;
        } else {
            self.deferred.extend(jobs);
        }
    }

    /// The fast path: seals the group on the head the groups in flight will leave and
    /// sends it, as one guarded write, on a connection of its own.
    async fn launch(&mut self, jobs: Vec<Job>) {
        let Some((expected, tree)) = self.view.head.clone() else {
            return self.deferred.extend(jobs);
        };
        let (mut streams, unknown) = self.view.lookup(&jobs);
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(e) => return self.fail(jobs, GroupError::Before(e.to_string())).await,
        };
        if !unknown.is_empty() {
            // Read outside the lock: valid if the guarded write finds the head it was
            // sealed on, since then nothing was appended in between. No group in flight
            // touches these streams (their positions would be in the view).
            match S::stream_heads(&mut conn, &unknown).await {
                Ok(heads) => streams.extend(positions(&unknown, &heads)),
                Err(e) => {
                    S::discard(conn).await;
                    if super::store::is_disconnect(&e) {
                        // A kept connection found dead: redo under the lock, on a new one.
                        tracing::warn!(error = %e, "ledger writer reconnecting");
                        self.view.forget();
                        return self.deferred.extend(jobs);
                    }
                    return self.fail(jobs, GroupError::Before(e.to_string())).await;
                }
            }
        }
        let batches: Vec<&AppendBatch> = jobs.iter().map(|j| &j.batch).collect();
        let sealed = chain::seal(expected, streams, &batches, (self.options.clock)());
        if sealed.records.is_empty() {
            // Refusals only: decided under the lock, where positions are exact.
            self.idle.push(conn);
            self.view.forget();
            return self.deferred.extend(jobs);
        }
        if let Some(hook) = &self.options.hook {
            if let Err(e) = hook(Stage::BeforeFastAppend).await {
                self.idle.push(conn);
                return self.fail(jobs, GroupError::Before(e)).await;
            }
        }
        let tree = grow(tree, &sealed.records, self.options.tree);
        let frontier = tree.frontier.clone();
        let keep_tree = self.options.tree;
        let chain::Sealed {
            records,
            outcomes,
            head,
            streams,
        } = sealed;
        let n = records.len() as u64;
        // Whether the group ahead of this one (if it is still in flight) has moved the
        // head to where this one was sealed.
        let (moved, moved_rx) = oneshot::channel();
        let (ahead, ahead_seq) = match self.flights.back() {
            None => (None, None),
            Some(flight) => (self.ahead.take(), Some(flight.first_seq)),
        };
        self.ahead = Some(moved_rx);
        let landing: Landing<S::Conn> = tokio::spawn(async move {
            let tree = keep_tree.then_some(&tree);
            let mut written =
                S::append_if_head(&mut conn, &expected, &records, &head, tree, ahead_seq).await;
            if let (Ok(false), Some(ahead)) = (&written, ahead) {
                // Sent on another connection, it can reach the head's lock before the
                // group ahead of it does, and find the head not yet where it was sealed:
                // once that group has moved it there, it goes again.
                if ahead.await == Ok(true) {
                    written =
                        S::append_if_head(&mut conn, &expected, &records, &head, tree, None).await;
                }
            }
            let _ = moved.send(matches!(written, Ok(true)));
            (conn, written)
        });
        self.view.advance(head, frontier, streams);
        self.flights.push_back(Flight {
            jobs,
            outcomes,
            records: n,
            first_seq: expected.next_seq,
            landing,
        });
    }

    /// The oldest flight's answer.
    async fn land(&mut self, landed: Landed<S::Conn>) {
        let Some(flight) = self.flights.pop_front() else {
            return;
        };
        let (conn, written) = match landed {
            Ok(landed) => landed,
            Err(e) => {
                // The write's task panicked or was cancelled, its connection with it.
                let e = GroupError::Commit(format!("the ledger write stopped: {e}"));
                return self.fail(flight.jobs, e).await;
            }
        };
        match written {
            Ok(true) => {
                self.idle.push(conn);
                self.committed(flight.jobs, flight.outcomes, flight.records, "fast");
            }
            Ok(false) => {
                // Another process moved the head: this group, and every later one sealed
                // on the head it would have left, is redone under the lock.
                self.idle.push(conn);
                self.view.forget();
                self.deferred.extend(flight.jobs);
            }
            Err(e) => {
                S::discard(conn).await;
                let e = match e {
                    StoreError::Before(e) => GroupError::Before(e.to_string()),
                    StoreError::Commit(e) => GroupError::Commit(e.to_string()),
                };
                self.fail(flight.jobs, e).await;
            }
        }
    }

    /// The locked path: takes the chain-head lock and reads head and positions under it.
    /// Only with nothing in flight.
    async fn locked(&mut self, jobs: Vec<Job>) {
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(e) => return self.fail(jobs, GroupError::Before(e.to_string())).await,
        };
        let mut result = commit_locked::<S>(&mut conn, &jobs, &self.options).await;
        if let Err(GroupError::Disconnected(e)) = &result {
            // A kept connection was found dead (database restart, failover, idle
            // timeout) before anything was sent: retry once on a fresh one.
            tracing::warn!(error = %e, "ledger writer reconnecting");
            S::discard(conn).await;
            conn = match self.store.connect().await {
                Ok(conn) => conn,
                Err(e) => return self.fail(jobs, GroupError::Before(e.to_string())).await,
            };
            result = commit_locked::<S>(&mut conn, &jobs, &self.options).await;
        }
        match result {
            Ok((sealed, tree)) => {
                self.idle.push(conn);
                let n = sealed.records.len() as u64;
                self.view.advance(sealed.head, tree, sealed.streams);
                let outcomes = sealed.outcomes;
                self.committed(jobs, outcomes, n, "locked");
            }
            Err(e) => {
                // The connection may be mid-transaction or broken: never reuse it.
                S::discard(conn).await;
                self.fail(jobs, e).await;
            }
        }
    }

    async fn connection(&mut self) -> Result<S::Conn, sqlx::Error> {
        match self.idle.pop() {
            Some(conn) => Ok(conn),
            None => self.store.connect().await,
        }
    }

    fn committed(&mut self, jobs: Vec<Job>, outcomes: Outcomes, records: u64, path: &str) {
        self.backoff = Duration::from_millis(50);
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(records, Ordering::Relaxed);
        tracing::debug!(records, callers = jobs.len(), path, "group committed");
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }

    /// A group that did not commit (or may not have): its callers are told so, the view
    /// is forgotten, and the writer waits a little before the next group.
    async fn fail(&mut self, jobs: Vec<Job>, e: GroupError) {
        self.view.forget();
        tracing::error!(error = %e, jobs = jobs.len(), "ledger group failed");
        let answer = match e {
            GroupError::Before(m) | GroupError::Disconnected(m) => AppendError::Unavailable(m),
            GroupError::Commit(m) => AppendError::CommitUnknown(m),
        };
        for job in jobs {
            let _ = job.reply.send(Err(answer.clone()));
        }
        if !self.closing {
            tokio::time::sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
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

/// Commits one group under the chain-head lock: reads the head and the group's stream
/// positions under it, seals, inserts, commits. Returns the sealed group and the tree
/// edge after it.
async fn commit_locked<'a, S: ChainStore>(
    conn: &mut S::Conn,
    jobs: &'a [Job],
    options: &LedgerOptions,
) -> Result<(chain::Sealed<'a>, Frontier), GroupError> {
    let before = |e: sqlx::Error| {
        if super::store::is_disconnect(&e) {
            GroupError::Disconnected(e.to_string())
        } else {
            GroupError::Before(e.to_string())
        }
    };
    let (head, tree) = S::begin_and_lock(conn).await.map_err(before)?;
    if options.tree && tree.size() != head.next_seq {
        return Err(GroupError::Before(format!(
            "the Merkle tree covers {} of {} records: run `vidne migrate` to build it",
            tree.size(),
            head.next_seq
        )));
    }
    // Every stream of the group is looked up under the lock.
    let (_, unknown) = View::new().lookup(jobs);
    let heads = S::stream_heads(conn, &unknown).await.map_err(before)?;
    let streams = positions(&unknown, &heads).collect();
    let batches: Vec<&AppendBatch> = jobs.iter().map(|j| &j.batch).collect();
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
    Ok((sealed, tree.frontier))
}

/// The positions read for `streams` (0 for a stream the database has no record of).
fn positions<'a, 'h>(
    streams: &'h [&'a StreamId],
    heads: &'h HashMap<StreamId, u64>,
) -> impl Iterator<Item = (&'a StreamId, u64)> + 'h {
    streams
        .iter()
        .map(|s| (*s, heads.get(*s).copied().unwrap_or(0)))
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
