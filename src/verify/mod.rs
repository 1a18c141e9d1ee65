//! The independent verifier (`vidne verify`): re-derives everything SPEC sections 1-3
//! and 8 promise from the stored bytes alone.
//!
//! It shares no code with the append path (`ledger::write`, `ledger::store`,
//! `ledger::chain::seal`, `record`): records are parsed here with serde_json and checked
//! against the SPEC with nothing but the SPEC primitives of [`crate::spec`], so a bug on
//! the write side cannot hide itself by being repeated here. From the rest of the crate it
//! uses only [`Reader`] and [`StoredRow`] to read, [`Head`] as data, and [`Db`] to tell
//! the backends apart.
//!
//! [`Checker`] is the pure part, fed row by row. Each row is first checked on its own
//! (JSON, canonical bytes, members, stored hash), then linked to the one before (gapless
//! `seq`, `prev`, `time` order, index columns); the links keep a few words of state and
//! nothing per stream. [`verify`] streams the ledger through it in chunks of
//! bounded size (memory stays constant whatever the ledger size), reading the next chunk
//! while the current one is checked and spreading the per-row work over a few threads.
//! A SQLite ledger is read through [`SqliteRanges`], a connection of its own that writes
//! nothing.

use std::fmt;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::ledger::chain::Head;
use crate::ledger::read::{Reader, SqliteRanges, StoredRow};
use crate::spec::canonical;
use crate::spec::hash::{record_hash, Hash32};
use crate::spec::time::parse_micros;
use crate::spec::MAX_SAFE_INTEGER;

/// What to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// First `seq` to check. Above 0, record `from - 1` is trusted as the anchor: its
    /// hash is recomputed from its bytes and its `time` read, but it is not checked.
    pub from: u64,
    /// Last `seq` to check; `None` means to the end, and then the chain must also end
    /// where `ledger_head` says it does.
    pub to: Option<u64>,
    /// Most rows read per query. Fewer are read while records are large, so that one
    /// chunk stays within a few MiB whatever the records hold.
    pub chunk: u32,
    /// A checkpoint whose signature the caller has checked: the first `tree_size`
    /// records must have this Merkle root (SPEC section 4). Checked only from seq 0.
    pub checkpoint: Option<SignedTree>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            from: 0,
            to: None,
            chunk: 10_000,
            checkpoint: None,
        }
    }
}

/// What a verified checkpoint says: the tree of `tree_size` records has `root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedTree {
    pub tree_size: u64,
    pub root: Hash32,
}

/// The RFC 9162 root of the records seen so far, kept as one hash per set bit of their
/// count (written here from the RFC, not shared with the writer's tree).
#[derive(Clone, Debug, Default)]
struct TreeEdge {
    size: u64,
    stack: Vec<Hash32>,
}

impl TreeEdge {
    fn interior(left: &Hash32, right: &Hash32) -> Hash32 {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0x01]);
        h.update(left.0);
        h.update(right.0);
        Hash32(h.finalize().into())
    }

    fn push(&mut self, leaf: Hash32) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.stack.pop().unwrap_or(Hash32::ZERO);
            hash = Self::interior(&left, &hash);
            size >>= 1;
        }
        self.stack.push(hash);
        self.size += 1;
    }

    fn root(&self) -> Hash32 {
        let mut rest = self.stack.iter().rev();
        match rest.next() {
            None => Hash32(<sha2::Sha256 as sha2::Digest>::digest([]).into()),
            Some(last) => rest.fold(*last, |acc, left| Self::interior(left, &acc)),
        }
    }
}

/// The first thing found wrong, and the `seq` it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("seq {seq}: {reason}")]
pub struct Failure {
    pub seq: u64,
    pub reason: String,
}

impl Failure {
    fn new(seq: u64, reason: impl Into<String>) -> Failure {
        Failure {
            seq,
            reason: reason.into(),
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// First `seq` checked (as asked).
    pub from: u64,
    /// Last `seq` checked; `None` if there was nothing to check.
    pub to: Option<u64>,
    /// Records checked.
    pub records: u64,
    /// Recomputed hash of the last record checked, lowercase hex.
    pub last_hash: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The ledger is not what the SPEC says it must be.
    #[error("ledger verification failed at {0}")]
    Failed(Failure),
    /// The ledger could not be read; nothing is known about it.
    #[error("cannot read the ledger: {0}")]
    Storage(sqlx::Error),
}

impl From<Failure> for VerifyError {
    fn from(f: Failure) -> Self {
        VerifyError::Failed(f)
    }
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        VerifyError::Storage(e)
    }
}

/// The record members of SPEC section 1, in its order.
const MEMBERS: [&str; 9] = [
    "seq",
    "prev",
    "time",
    "stream",
    "stream_seq",
    "type",
    "version",
    "actor",
    "data",
];

/// What one row's bytes establish on their own, before it is linked to its predecessor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    /// Recomputed record hash (equal to the stored one).
    hash: Hash32,
    prev: Hash32,
    time_micros: i64,
    /// Why the index columns disagree with the record, if they do.
    columns: Option<String>,
}

/// What one thread reuses from row to row: the canonical bytes buffer and the last
/// minute a `time` fell in.
#[derive(Debug, Clone, Default)]
struct Scratch {
    canonical: Vec<u8>,
    time: TimeCache,
}

/// Memoizes [`parse_micros`] by the minute, because it is as costly as parsing the whole
/// record and consecutive records nearly always share their minute. Exact: once
/// `parse_micros` has accepted a string `"YYYY-MM-DDTHH:MM" + rest`, it accepts the same
/// 16-byte prefix with any `rest` of the form `:SS.ffffffZ` with `SS` below 60, and
/// returns the prefix's minute plus that many microseconds (the format is fixed-width and
/// the timestamp linear); anything else goes to `parse_micros` itself.
#[derive(Debug, Clone, Default)]
struct TimeCache {
    minute: [u8; 16],
    start: Option<i64>,
}

impl TimeCache {
    fn parse(&mut self, s: &str) -> Option<i64> {
        let b = s.as_bytes();
        if b.len() == 27 && b[..16] == self.minute {
            if let (Some(start), Some(within)) = (self.start, within_minute(&b[16..])) {
                return Some(start + within);
            }
        }
        let micros = parse_micros(s)?;
        self.start = None;
        if let (Some(within), Ok(minute)) = (within_minute(&b[16..]), b[..16].try_into()) {
            self.minute = minute;
            self.start = Some(micros - within);
        }
        Some(micros)
    }
}

/// `:SS.ffffffZ` with `SS` below 60 as microseconds into the minute.
fn within_minute(b: &[u8]) -> Option<i64> {
    let [b':', s1, s2, b'.', f @ .., b'Z'] = b else {
        return None;
    };
    let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
    let secs = digit(s1)? * 10 + digit(s2)?;
    if f.len() != 6 || secs >= 60 {
        return None;
    }
    let frac = f.iter().try_fold(0, |n, c| Some(n * 10 + digit(c)?))?;
    Some(secs * 1_000_000 + frac)
}

/// Checks 2 to 5 and works out check 8 of one row, without any other row: valid JSON,
/// canonical bytes, the SPEC members and types, `seq` member, stored hash.
///
/// [`fast::analyze`] settles nearly every row in one pass; whatever it does not settle
/// (anything unusual, every failure) goes to [`reference`], which says precisely why.
fn analyze(row: &StoredRow, scratch: &mut Scratch) -> Result<Facts, String> {
    match fast::analyze(row, scratch) {
        Some(facts) => facts,
        None => reference(row, scratch),
    }
}

/// The reference check, literally as specified: parse into a `Value`, re-canonicalize
/// with [`canonical::write`] and compare, then read the members off the `Value`.
fn reference(row: &StoredRow, scratch: &mut Scratch) -> Result<Facts, String> {
    let value: Value = serde_json::from_slice(&row.canonical)
        .map_err(|e| format!("bytes are not valid UTF-8 JSON: {e}"))?;
    let canonical = &mut scratch.canonical;
    canonical.clear();
    canonical::write(canonical, &value)
        .map_err(|e| format!("record has no canonical form: {e}"))?;
    if *canonical != row.canonical {
        return Err("bytes are not canonical (RFC 8785)".to_owned());
    }
    let Value::Object(record) = &value else {
        return Err("record is not a JSON object".to_owned());
    };
    if let Some(extra) = record.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(format!(
            "record has a member {extra:?} that SPEC section 1 does not define"
        ));
    }
    if let Some(missing) = MEMBERS.iter().find(|m| !record.contains_key(**m)) {
        return Err(format!("record has no member \"{missing}\""));
    }
    let fields = MEMBERS.map(|name| match &record[name] {
        Value::Number(n) => n.as_u64().map_or(Field::Other, Field::Int),
        Value::String(s) => Field::Str(s),
        Value::Object(_) => Field::Object,
        _ => Field::Other,
    });
    let members = members(&fields, &mut scratch.time)?;
    finish(row, &members)
}

/// A member's value, as far as the checks of SPEC section 1 care.
#[derive(Clone, Copy, Debug)]
enum Field<'a> {
    Int(u64),
    Str(&'a str),
    Object,
    Other,
}

/// The members the link and column checks need.
#[derive(Debug)]
struct Members<'a> {
    seq: u64,
    prev: Hash32,
    time_micros: i64,
    stream: &'a str,
    stream_seq: u64,
    event_type: &'a str,
}

/// Where a member is in [`MEMBERS`].
fn member_index(name: &str) -> Option<usize> {
    Some(match name {
        "seq" => 0,
        "prev" => 1,
        "time" => 2,
        "stream" => 3,
        "stream_seq" => 4,
        "type" => 5,
        "version" => 6,
        "actor" => 7,
        "data" => 8,
        _ => return None,
    })
}

/// Check 3 on the members' values, given in the order of [`MEMBERS`] (SPEC section 1),
/// which is also the order they are checked in.
fn members<'a>(fields: &[Field<'a>; 9], time: &mut TimeCache) -> Result<Members<'a>, String> {
    let [seq, prev, time_field, stream, stream_seq, event_type, version, actor, data] = *fields;
    let integer = |field: Field<'_>, name: &str, min: u64| match field {
        Field::Int(n) if n >= min && n <= MAX_SAFE_INTEGER => Ok(n),
        _ if min == 0 => Err(format!("member {name} is not an integer")),
        _ => Err(format!("member {name} is not an integer >= {min}")),
    };
    // `stream` and `actor`: a non-empty string of the form `<kind>:<id>`.
    let qualified = |field: Field<'a>, name: &str| match field {
        Field::Str(s) if s.contains(':') => Ok(s),
        _ => Err(format!("member {name} is not a <kind>:<id> string")),
    };
    let seq = integer(seq, "seq", 0)?;
    let prev = match prev {
        Field::Str(s) => s.parse::<Hash32>().ok(),
        _ => None,
    }
    .ok_or("member prev is not 64 lowercase hex digits")?;
    let time_micros = match time_field {
        Field::Str(s) => time.parse(s),
        _ => None,
    }
    .ok_or("member time is not RFC 3339 UTC with exactly 6 fractional digits and Z")?;
    let stream = qualified(stream, "stream")?;
    let stream_seq = integer(stream_seq, "stream_seq", 1)?;
    let event_type = match event_type {
        Field::Str(t) if !t.is_empty() => t,
        _ => return Err("member type is not a non-empty string".to_owned()),
    };
    integer(version, "version", 1)?;
    qualified(actor, "actor")?;
    if !matches!(data, Field::Object) {
        return Err("member data is not an object".to_owned());
    }
    Ok(Members {
        seq,
        prev,
        time_micros,
        stream,
        stream_seq,
        event_type,
    })
}

/// Checks 4 and 5, and works out check 8.
fn finish(row: &StoredRow, m: &Members<'_>) -> Result<Facts, String> {
    if i64::try_from(m.seq).ok() != Some(row.seq) {
        return Err(format!(
            "record's seq member is {} but it is stored at seq {}",
            m.seq, row.seq
        ));
    }
    let Some(stored) = row.hash32() else {
        return Err(format!("stored hash is {} bytes, not 32", row.hash.len()));
    };
    let hash = record_hash(&row.canonical);
    if hash != stored {
        return Err("stored hash does not match the record hash".to_owned());
    }
    let columns = if row.stream != m.stream {
        Some("column stream disagrees with the record".to_owned())
    } else if i64::try_from(m.stream_seq).ok() != Some(row.stream_seq) {
        Some(format!(
            "column stream_seq is {} but the record's stream_seq is {}",
            row.stream_seq, m.stream_seq
        ))
    } else if row.event_type != m.event_type {
        Some("column event_type disagrees with the record's type".to_owned())
    } else if row.time_us != m.time_micros {
        Some(format!(
            "column time_us is {} but the record's time is {} microseconds",
            row.time_us, m.time_micros
        ))
    } else {
        None
    };
    Ok(Facts {
        hash,
        prev: m.prev,
        time_micros: m.time_micros,
        columns,
    })
}

/// The one-pass check, several times faster than [`reference`] because it builds no value
/// and writes nothing: it walks the bytes once against the grammar of what RFC 8785 writes
/// for the SPEC's data model, which is narrower than JSON. No white space; integers `0 ..=
/// 2^53 - 1` without sign, fraction, exponent or leading zero; `true`, `false`, `null`;
/// strings of valid UTF-8 holding exactly the escapes [`canonical::write_str`] writes (`\"`,
/// `\\`, `\b`, `\t`, `\n`, `\f`, `\r`, and `\u00xx` in lower case for the other control
/// characters) and no raw control character; object member names strictly increasing under
/// [`canonical::utf16_cmp`], so sorting is the identity and no name repeats. Bytes of that
/// grammar are JSON that serde_json parses, and `canonical::write` of what it parses gives
/// the same bytes back, which is what `reference` establishes by re-serializing.
/// Anything else (an escape in a member name, nesting past [`fast::MAX_NESTING`], any byte
/// outside the grammar, any failed check) is not settled here: it returns `None` and the
/// row goes to `reference`, which says precisely why. Once the members are read, the same
/// [`members`] and [`finish`] decide.
mod fast {
    use std::cmp::Ordering;
    use std::ops::Range;

    use super::{finish, member_index, members, Facts, Field, Scratch};
    use crate::ledger::read::StoredRow;
    use crate::spec::canonical::utf16_cmp;
    use crate::spec::MAX_SAFE_INTEGER;

    /// Objects and arrays nested deeper than this go to the reference check (which, like
    /// serde_json and `canonical::write`, allows 128).
    pub(super) const MAX_NESTING: usize = 64;

    pub(super) fn analyze(row: &StoredRow, scratch: &mut Scratch) -> Option<Result<Facts, String>> {
        let bytes = &row.canonical[..];
        // Once for the whole record, so the scan below can take strings as they are.
        std::str::from_utf8(bytes).ok()?;
        let mut scan = Scan { b: bytes, i: 0 };
        let spans = scan.record()?;
        if scan.i != bytes.len() {
            return None;
        }
        let mut fields: [Field<'_>; 9] = [Field::Other; 9];
        for (field, span) in fields.iter_mut().zip(spans) {
            *field = read_field(&bytes[span])?;
        }
        let members = members(&fields, &mut scratch.time).ok()?;
        Some(finish(row, &members))
    }

    /// A member value's canonical bytes as a [`Field`]; `None` for a string with escapes.
    fn read_field(bytes: &[u8]) -> Option<Field<'_>> {
        Some(match bytes.first()? {
            b'0'..=b'9' => Field::Int(std::str::from_utf8(bytes).ok()?.parse().ok()?),
            b'"' => {
                let inner = bytes.get(1..bytes.len() - 1)?;
                if inner.contains(&b'\\') {
                    return None;
                }
                Field::Str(std::str::from_utf8(inner).ok()?)
            }
            b'{' => Field::Object,
            _ => Field::Other,
        })
    }

    /// A cursor over bytes known to be valid UTF-8. Every method consumes one construct
    /// of the grammar, or returns `None` where the bytes leave it.
    struct Scan<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Scan<'a> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let c = self.peek()?;
            self.i += 1;
            Some(c)
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            (self.next()? == c).then_some(())
        }

        /// The record: an object whose members are exactly those of SPEC section 1, and
        /// where each one's value is.
        fn record(&mut self) -> Option<[Range<usize>; 9]> {
            let mut spans: [Option<Range<usize>>; 9] = Default::default();
            self.members(b'{', b'}', 0, |scan, name| {
                let start = scan.i;
                scan.value(1)?;
                let slot = &mut spans[member_index(name?)?];
                slot.is_none().then_some(())?;
                *slot = Some(start..scan.i);
                Some(())
            })?;
            let [a, b, c, d, e, f, g, h, k] = spans;
            Some([a?, b?, c?, d?, e?, f?, g?, h?, k?])
        }

        fn value(&mut self, depth: usize) -> Option<()> {
            match self.peek()? {
                b'{' => self.members(b'{', b'}', depth, |scan, _| scan.value(depth + 1)),
                b'[' => self.members(b'[', b']', depth, |scan, _| scan.value(depth + 1)),
                b'"' => self.string(),
                b'0'..=b'9' => self.integer(),
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                _ => None,
            }
        }

        /// An object (`open` is `{`: each item is a member name, `:` and what `item`
        /// reads, names strictly increasing) or an array (`[`: each item is what `item`
        /// reads, and it is given no name).
        fn members(
            &mut self,
            open: u8,
            close: u8,
            depth: usize,
            mut item: impl FnMut(&mut Self, Option<&'a str>) -> Option<()>,
        ) -> Option<()> {
            if depth >= MAX_NESTING {
                return None;
            }
            self.eat(open)?;
            if self.peek()? == close {
                self.i += 1;
                return Some(());
            }
            let mut previous: Option<&'a str> = None;
            loop {
                let name = if open == b'{' {
                    let name = self.name()?;
                    if previous.is_some_and(|p| utf16_cmp(p, name) != Ordering::Less) {
                        return None;
                    }
                    previous = Some(name);
                    self.eat(b':')?;
                    Some(name)
                } else {
                    None
                };
                item(self, name)?;
                match self.next()? {
                    b',' => {}
                    c if c == close => return Some(()),
                    _ => return None,
                }
            }
        }

        /// A member name without escapes (a name with one goes to the reference check).
        fn name(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let start = self.i;
            let len = self.b[start..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            self.i = start + len;
            self.eat(b'"')?;
            std::str::from_utf8(&self.b[start..start + len]).ok()
        }

        fn string(&mut self) -> Option<()> {
            self.eat(b'"')?;
            loop {
                match self.next()? {
                    b'"' => return Some(()),
                    b'\\' => match self.next()? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => {}
                        b'u' => {
                            let [b'0', b'0', hi, lo] = *self.b.get(self.i..self.i + 4)? else {
                                return None;
                            };
                            self.i += 4;
                            let c = lower_hex(hi)? << 4 | lower_hex(lo)?;
                            // Only the control characters without a short escape.
                            if c >= 0x20 || matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    },
                    0x00..=0x1f => return None,
                    _ => {}
                }
            }
        }

        fn integer(&mut self) -> Option<()> {
            let start = self.i;
            let len = self.b[start..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(self.b.len() - start);
            self.i = start + len;
            let digits = &self.b[start..self.i];
            // At most 16 digits, so the sum below cannot overflow.
            if len > 16 || (len > 1 && digits[0] == b'0') {
                return None;
            }
            let n = digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            (n <= MAX_SAFE_INTEGER).then_some(())
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            (self.b.get(self.i..self.i + word.len())? == word).then_some(())?;
            self.i += word.len();
            Some(())
        }
    }

    fn lower_hex(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
}

/// Below this many rows a chunk is analyzed on one thread.
const PARALLEL_MIN_ROWS: usize = 512;

/// Threads that analyze rows. On SQLite one core is left to reading, as the driver
/// decodes every row on a thread of this process (on 2 cores, 1 analysis thread verified
/// ~15% faster than 2); on PostgreSQL the server does most of that work, and 2 threads
/// were as fast or faster. Beyond 4 the reading is the bottleneck anyway.
fn analysis_threads(reader: &Reader) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match reader.db() {
        Db::Sqlite(_) => cores.saturating_sub(1),
        Db::Postgres(_) => cores,
    }
    .clamp(1, 4)
}

/// [`analyze`] for every row of a chunk, in order, spread over `threads` threads.
fn analyze_all(rows: &[StoredRow], threads: usize) -> Vec<Result<Facts, String>> {
    let run = |part: &[StoredRow]| {
        let mut scratch = Scratch::default();
        part.iter()
            .map(|r| analyze(r, &mut scratch))
            .collect::<Vec<_>>()
    };
    if threads <= 1 || rows.len() < PARALLEL_MIN_ROWS {
        return run(rows);
    }
    let part = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = rows.chunks(part);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts.map(|p| scope.spawn(move || run(p))).collect();
        let mut out = run(first);
        out.reserve(rows.len() - out.len());
        for handle in others {
            match handle.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// The pure checker: fed rows in `seq` order, chunk by chunk, it checks each one and links
/// it to the one before. Its state is a few words whatever the ledger size. After a
/// failure it is stuck: every later call returns the same failure.
#[derive(Debug, Clone)]
pub struct Checker {
    from: u64,
    /// The `seq` the next row must have.
    next: u64,
    /// What the next record must name as `prev`: the hash of record `next - 1`.
    prev: Hash32,
    /// The time the next record may not precede.
    prev_time: i64,
    records: u64,
    failed: Option<Failure>,
    scratch: Scratch,
    /// The checkpoint to hold the records to, and the tree of those seen so far.
    tree: Option<(SignedTree, TreeEdge)>,
}

impl Checker {
    /// `prev`: the hash the record at `from` must name as `prev` (Hash32::ZERO when
    /// from == 0), and the time it may not precede (i64::MIN when unknown).
    pub fn new(from: u64, prev: Hash32, prev_time_micros: i64) -> Checker {
        Checker {
            from,
            next: from,
            prev,
            prev_time: prev_time_micros,
            records: 0,
            failed: None,
            scratch: Scratch::default(),
            tree: None,
        }
    }

    /// Holds the records to `checkpoint`: once its `tree_size` records are checked, their
    /// Merkle root must be its root. Only a checker from seq 0 sees every leaf.
    pub fn expect_tree(&mut self, checkpoint: SignedTree) {
        if self.from == 0 {
            self.tree = Some((checkpoint, TreeEdge::default()));
        }
    }

    /// Checks the next row; returns the first thing wrong with it, at the `seq` concerned.
    pub fn check(&mut self, row: &StoredRow) -> Result<(), Failure> {
        // `link` reports a gap before anything `analyze` found, keeping the check order.
        let facts = analyze(row, &mut self.scratch);
        self.link(row, facts)
    }

    /// Records checked so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The `seq` the next row must have.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Checks 1, 6, 7 and 8 of `row` given what [`analyze`] found, in the order of the
    /// module's contract, then moves on to it.
    fn link(&mut self, row: &StoredRow, facts: Result<Facts, String>) -> Result<(), Failure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let result = self.link_inner(row, facts);
        if let Err(f) = &result {
            self.failed = Some(f.clone());
        }
        result
    }

    fn link_inner(&mut self, row: &StoredRow, facts: Result<Facts, String>) -> Result<(), Failure> {
        let seq = self.next;
        match u64::try_from(row.seq) {
            Ok(s) if s == seq => {}
            Ok(s) if s > seq => {
                return Err(Failure::new(
                    seq,
                    format!("missing record: expected seq {seq}, found seq {s}"),
                ))
            }
            _ => {
                return Err(Failure::new(
                    seq,
                    format!(
                        "rows out of order: expected seq {seq}, found seq {}",
                        row.seq
                    ),
                ))
            }
        }
        let facts = facts.map_err(|reason| Failure::new(seq, reason))?;
        if facts.prev != self.prev {
            return Err(Failure::new(
                seq,
                match seq.checked_sub(1) {
                    Some(p) => format!("prev does not match the hash of record {p}"),
                    None => "prev of record 0 is not 64 zeros".to_owned(),
                },
            ));
        }
        if facts.time_micros < self.prev_time {
            return Err(Failure::new(
                seq,
                format!(
                    "time goes back: earlier than the time of record {}",
                    seq.saturating_sub(1)
                ),
            ));
        }
        if let Some(reason) = facts.columns {
            return Err(Failure::new(seq, reason));
        }
        if let Some((signed, edge)) = self.tree.as_mut().filter(|(c, e)| e.size < c.tree_size) {
            edge.push(facts.hash);
            if edge.size == signed.tree_size && edge.root() != signed.root {
                return Err(Failure::new(
                    seq,
                    format!(
                        "the Merkle root of records 0..={seq} is {}, but the signed checkpoint \
                         of {} records says {}",
                        edge.root(),
                        signed.tree_size,
                        signed.root
                    ),
                ));
            }
        }
        self.next = seq + 1;
        self.prev = facts.hash;
        self.prev_time = facts.time_micros;
        self.records += 1;
        Ok(())
    }

    /// A signed checkpoint that covers more records than were checked.
    fn tree_short(&self) -> Result<(), Failure> {
        match &self.tree {
            Some((signed, edge)) if edge.size < signed.tree_size => Err(Failure::new(
                self.next,
                format!(
                    "missing record: the signed checkpoint covers {} records, the ledger \
                     has {}",
                    signed.tree_size, edge.size
                ),
            )),
            _ => Ok(()),
        }
    }

    /// After the last row when verifying to the end: the chain must end exactly where
    /// `ledger_head` says, on the hash it names.
    pub fn check_head(&self, head: &Head) -> Result<(), Failure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        self.tree_short()?;
        if head.next_seq > self.next {
            return Err(Failure::new(
                self.next,
                format!(
                    "missing record: ledger_head says the chain has {} records",
                    head.next_seq
                ),
            ));
        }
        if head.next_seq < self.next {
            // A row at head.next_seq was checked, unless the range started past it; then
            // the anchor row `from - 1` is the one known to exist beyond the head.
            let seq = if head.next_seq >= self.from {
                head.next_seq
            } else {
                self.from - 1
            };
            return Err(Failure::new(
                seq,
                "record beyond ledger_head (inserted outside the writer?)",
            ));
        }
        if head.last_hash != self.prev {
            return Err(match self.next.checked_sub(1) {
                Some(last) => Failure::new(
                    last,
                    format!("ledger_head's last_hash does not match the hash of record {last}"),
                ),
                None => Failure::new(
                    0,
                    "ledger_head's last_hash is not 64 zeros for an empty ledger",
                ),
            });
        }
        Ok(())
    }

    /// After the last row when verifying up to `to`: every record up to it was there.
    pub fn check_end(&self, to: u64) -> Result<(), Failure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        if self.next <= to {
            return Err(Failure::new(
                self.next,
                format!(
                    "missing record: expected seq {} (verifying up to seq {to})",
                    self.next
                ),
            ));
        }
        Ok(())
    }

    pub fn finish(self) -> Report {
        let checked = self.records > 0;
        Report {
            from: self.from,
            to: checked.then(|| self.next - 1),
            records: self.records,
            last_hash: checked.then(|| self.prev.to_hex()),
        }
    }
}

/// Streams the ledger through `reader` and checks every row; `progress` is called with the
/// number of rows checked so far after each chunk.
pub async fn verify(
    reader: &Reader,
    options: &Options,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report, VerifyError> {
    let from = options.from;
    let mut checker = match from.checked_sub(1) {
        None => Checker::new(0, Hash32::ZERO, i64::MIN),
        Some(anchor) => {
            let Some(row) = reader.get(anchor).await? else {
                return Err(Failure::new(
                    anchor,
                    format!("missing record: verification from seq {from} starts after it"),
                )
                .into());
            };
            Checker::new(from, record_hash(&row.canonical), anchor_time(&row))
        }
    };
    if let Some(checkpoint) = options.checkpoint {
        checker.expect_tree(checkpoint);
    }
    let last = options.to.unwrap_or(MAX_SAFE_INTEGER);
    check_range(reader, &mut checker, last, options.chunk, progress).await?;
    match options.to {
        Some(to) => checker.check_end(to)?,
        None => {
            // Read after the rows: a writer commits rows and head together, so rows the
            // head covers were visible to us unless they were committed meanwhile; those
            // are read now, and only then is a shortfall a missing record.
            let head = reader.head().await?;
            if head.next_seq > checker.next_seq() {
                check_range(
                    reader,
                    &mut checker,
                    head.next_seq - 1,
                    options.chunk,
                    progress,
                )
                .await?;
            }
            checker.check_head(&head)?;
        }
    }
    Ok(checker.finish())
}

/// The time of the anchor record `from - 1`, which is trusted rather than checked; if it
/// has none to read, the first record checked is not held to one.
fn anchor_time(row: &StoredRow) -> i64 {
    serde_json::from_slice::<Value>(&row.canonical)
        .ok()
        .and_then(|v| v.get("time")?.as_str().and_then(parse_micros))
        .unwrap_or(i64::MIN)
}

/// Checks rows `checker.next_seq() ..= last` as they are read: one task reads the next
/// chunk while this one analyzes the current chunk on a blocking thread, then links it.
async fn check_range(
    reader: &Reader,
    checker: &mut Checker,
    last: u64,
    chunk: u32,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(), VerifyError> {
    let threads = analysis_threads(reader);
    let (tx, mut rx) = mpsc::channel(1);
    let _fetch = AbortOnDrop(tokio::spawn(fetch(
        reader.clone(),
        checker.next_seq(),
        last,
        chunk.max(1),
        tx,
    )));
    while let Some(rows) = rx.recv().await {
        let rows = rows?;
        let (rows, facts) = tokio::task::spawn_blocking(move || {
            let facts = analyze_all(&rows, threads);
            (rows, facts)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        for (row, facts) in rows.iter().zip(facts) {
            checker.link(row, facts)?;
        }
        progress(checker.records());
    }
    Ok(())
}

/// Rows read per chunk aim to hold at most this many bytes.
const CHUNK_BYTES: usize = 4 << 20;
/// The first chunk is small, until the records' size is known.
const FIRST_CHUNK: u32 = 256;

/// Reads rows `from ..= last` chunk by chunk into `tx`, until there are no more or the
/// receiver is gone. The row limit adapts to the largest row of the previous chunk so a
/// chunk stays near [`CHUNK_BYTES`]; it grows at most fourfold per chunk. A SQLite ledger
/// is read on a blocking thread through [`SqliteRanges`], PostgreSQL through the reader.
async fn fetch(
    reader: Reader,
    from: u64,
    last: u64,
    max_rows: u32,
    tx: mpsc::Sender<Result<Vec<StoredRow>, sqlx::Error>>,
) {
    let mut at = Progress::new(from, last, max_rows);
    if let Some(file) = reader.sqlite_file() {
        let _ = tokio::task::spawn_blocking(move || {
            let mut ranges = match SqliteRanges::open(&file) {
                Ok(ranges) => ranges,
                Err(e) => return drop(tx.blocking_send(Err(e))),
            };
            while let Some((next, limit)) = at.next() {
                let rows = ranges.range(next, last, limit);
                if !at.read(&rows) || tx.blocking_send(rows).is_err() || at.done() {
                    return;
                }
            }
        })
        .await;
        return;
    }
    while let Some((next, limit)) = at.next() {
        let rows = reader.range(next, last, limit).await;
        if !at.read(&rows) || tx.send(rows).await.is_err() || at.done() {
            return;
        }
    }
}

/// Where reading `from ..= last` has got to, and how many rows to ask for next.
struct Progress {
    next: u64,
    last: u64,
    limit: u32,
    max_rows: u32,
    done: bool,
}

impl Progress {
    fn new(from: u64, last: u64, max_rows: u32) -> Progress {
        Progress {
            next: from,
            last,
            limit: max_rows.min(FIRST_CHUNK),
            max_rows,
            done: false,
        }
    }

    /// The first `seq` and the row limit of the next read; `None` once all is read.
    fn next(&self) -> Option<(u64, u32)> {
        (!self.done && self.next <= self.last).then_some((self.next, self.limit))
    }

    /// Takes a read's outcome into account: `false` if it has nothing to hand on (no
    /// rows). An error is handed on, and is the last thing read.
    fn read(&mut self, rows: &Result<Vec<StoredRow>, sqlx::Error>) -> bool {
        let rows = match rows {
            Ok(rows) => rows,
            Err(_) => {
                self.done = true;
                return true;
            }
        };
        let Some(end) = rows.last().map(|r| u64::try_from(r.seq).unwrap_or(0)) else {
            return false;
        };
        self.limit = next_limit(self.limit, rows, self.max_rows);
        match end.checked_add(1) {
            Some(n) if n > self.next => self.next = n,
            _ => self.done = true,
        }
        true
    }

    fn done(&self) -> bool {
        self.next().is_none()
    }
}

/// The row limit for the next chunk: as many rows as fit in [`CHUNK_BYTES`] if they are
/// as large as the largest of `rows`, at most four times `limit` and at most `max_rows`.
fn next_limit(limit: u32, rows: &[StoredRow], max_rows: u32) -> u32 {
    let largest = rows
        .iter()
        .map(|r| r.canonical.len() + r.hash.len() + r.stream.len() + r.event_type.len() + 64)
        .max()
        .unwrap_or(1);
    let fits = u32::try_from(CHUNK_BYTES / largest).unwrap_or(u32::MAX);
    fits.min(limit.saturating_mul(4)).clamp(1, max_rows)
}

/// Stops the read-ahead task when verification ends early.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.to, &self.last_hash) {
            (Some(to), Some(hash)) => write!(
                f,
                "{} records verified (seq {} to {to}), last hash {hash}",
                self.records, self.from
            ),
            _ => write!(f, "no records to verify from seq {}", self.from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    const T0: i64 = 1_795_253_400_000_000; // 2026-11-21T09:30:00Z

    fn time(micros: i64) -> String {
        crate::spec::time::format_micros(micros).unwrap()
    }

    /// A row as an honest writer would store it.
    fn row(seq: u64, prev: Hash32, time_us: i64, stream: &str, stream_seq: u64) -> StoredRow {
        let record = json!({
            "seq": seq,
            "prev": prev.to_hex(),
            "time": time(time_us),
            "stream": stream,
            "stream_seq": stream_seq,
            "type": "login.completed",
            "version": 1,
            "actor": "broker:neb-test-1",
            "data": {"client": "sp-acme", "n": seq, "note": "ok"},
        });
        let canonical = canonical::to_vec(&record).unwrap();
        StoredRow {
            seq: seq as i64,
            stream: stream.to_owned(),
            stream_seq: stream_seq as i64,
            event_type: "login.completed".to_owned(),
            time_us,
            hash: record_hash(&canonical).0.to_vec(),
            canonical,
        }
    }

    /// `n` honest records over two streams, 1 ms apart.
    fn chain(n: u64) -> Vec<StoredRow> {
        let mut prev = Hash32::ZERO;
        (0..n)
            .map(|seq| {
                let stream = if seq % 2 == 0 {
                    "session:a"
                } else {
                    "session:b"
                };
                let r = row(seq, prev, T0 + seq as i64 * 1000, stream, seq / 2 + 1);
                prev = record_hash(&r.canonical);
                r
            })
            .collect()
    }

    fn rehash(r: &mut StoredRow) {
        r.hash = record_hash(&r.canonical).0.to_vec();
    }

    fn record_of(r: &StoredRow) -> Value {
        serde_json::from_slice(&r.canonical).unwrap()
    }

    /// Rewrites the record of `r` (canonically) and its stored hash, as a forger with
    /// write access would; columns are left alone.
    fn forge(r: &mut StoredRow, edit: impl FnOnce(&mut Map<String, Value>)) {
        let mut v = record_of(r);
        edit(v.as_object_mut().unwrap());
        r.canonical = canonical::to_vec(&v).unwrap();
        rehash(r);
    }

    fn run(rows: &[StoredRow]) -> Result<Report, Failure> {
        let mut c = Checker::new(0, Hash32::ZERO, i64::MIN);
        for r in rows {
            c.check(r)?;
        }
        Ok(c.finish())
    }

    fn fails(rows: &[StoredRow]) -> Failure {
        run(rows).expect_err("tampering must be detected")
    }

    fn assert_fails(rows: &[StoredRow], seq: u64, reason: &str) {
        let f = fails(rows);
        assert_eq!(f.seq, seq, "{f}");
        assert!(f.reason.contains(reason), "{f:?} should say {reason:?}");
    }

    #[test]
    fn an_honest_chain_verifies() {
        let rows = chain(7);
        let report = run(&rows).unwrap();
        assert_eq!(report.from, 0);
        assert_eq!(report.to, Some(6));
        assert_eq!(report.records, 7);
        assert_eq!(
            report.last_hash.unwrap(),
            record_hash(&rows[6].canonical).to_hex()
        );
    }

    #[test]
    fn nothing_to_check_reports_nothing() {
        let report = Checker::new(5, Hash32::ZERO, 0).finish();
        assert_eq!(
            (report.from, report.to, report.records, report.last_hash),
            (5, None, 0, None)
        );
    }

    #[test]
    fn starts_mid_chain_from_an_anchor() {
        let rows = chain(6);
        let anchor = &rows[2];
        let mut c = Checker::new(3, record_hash(&anchor.canonical), anchor.time_us);
        for r in &rows[3..] {
            c.check(r).unwrap();
        }
        let report = c.finish();
        assert_eq!((report.from, report.to, report.records), (3, Some(5), 3));
        // The wrong anchor hash is caught at the first record.
        let mut c = Checker::new(3, record_hash(&rows[1].canonical), i64::MIN);
        let f = c.check(&rows[3]).unwrap_err();
        assert_eq!(
            f,
            Failure::new(3, "prev does not match the hash of record 2")
        );
        // A later anchor time is caught too.
        let mut c = Checker::new(3, record_hash(&anchor.canonical), rows[5].time_us);
        assert_eq!(c.check(&rows[3]).unwrap_err().seq, 3);
    }

    #[test]
    fn first_record_must_name_zero() {
        let mut rows = chain(2);
        forge(&mut rows[0], |r| {
            r.insert("prev".into(), json!(record_hash(b"x").to_hex()));
        });
        assert_fails(&rows, 0, "prev of record 0 is not 64 zeros");
    }

    #[test]
    fn one_changed_byte_anywhere() {
        let rows = chain(5);
        // Inside a string: still canonical JSON, so it is the hash that gives it away.
        let mut t = rows.clone();
        let at = t[3]
            .canonical
            .windows(4)
            .position(|w| w == b"\"ok\"")
            .unwrap()
            + 1;
        t[3].canonical[at] = b'K';
        assert_eq!(
            fails(&t),
            Failure::new(3, "stored hash does not match the record hash")
        );
        // Every single-bit flip of every byte of a record is caught at that record.
        for i in 0..rows[2].canonical.len() {
            for bit in 0..8 {
                let mut t = rows.clone();
                t[2].canonical[i] ^= 1 << bit;
                assert_eq!(fails(&t).seq, 2, "byte {i} bit {bit}");
            }
        }
        // A flip in the stored hash itself.
        let mut t = rows.clone();
        t[4].hash[31] ^= 1;
        assert_eq!(
            fails(&t),
            Failure::new(4, "stored hash does not match the record hash")
        );
    }

    #[test]
    fn changed_byte_with_hash_recomputed_breaks_the_next_link() {
        let mut rows = chain(5);
        let at = rows[1]
            .canonical
            .windows(4)
            .position(|w| w == b"\"ok\"")
            .unwrap()
            + 1;
        rows[1].canonical[at] = b'K';
        rehash(&mut rows[1]);
        assert_fails(&rows, 2, "prev does not match the hash of record 1");
    }

    #[test]
    fn a_deleted_record() {
        let mut rows = chain(6);
        rows.remove(3);
        assert_eq!(
            fails(&rows),
            Failure::new(3, "missing record: expected seq 3, found seq 4")
        );
        // The first one, too.
        let mut rows = chain(3);
        rows.remove(0);
        assert_fails(&rows, 0, "missing record: expected seq 0, found seq 1");
    }

    #[test]
    fn two_swapped_records() {
        // Bytes swapped between rows 2 and 3, hash columns with them.
        let mut rows = chain(6);
        let (a, b) = (rows[2].clone(), rows[3].clone());
        rows[2] = StoredRow { seq: 2, ..b };
        rows[3] = StoredRow { seq: 3, ..a };
        assert_eq!(
            fails(&rows),
            Failure::new(2, "record's seq member is 3 but it is stored at seq 2")
        );
        // Swapped with their seq members rewritten and rehashed: the chain gives it away.
        let mut rows = chain(6);
        rows.swap(2, 3);
        rows[2].seq = 2;
        rows[3].seq = 3;
        forge(&mut rows[2], |r| {
            r.insert("seq".into(), json!(2));
        });
        forge(&mut rows[3], |r| {
            r.insert("seq".into(), json!(3));
        });
        assert_fails(&rows, 2, "prev does not match the hash of record 1");
        // Rows handed over out of order.
        let mut rows = chain(6);
        rows.swap(2, 3);
        assert_fails(&rows, 2, "missing record: expected seq 2, found seq 3");
    }

    #[test]
    fn an_inserted_record() {
        // Record X inserted at 2 with a correct prev, the later ones renumbered and
        // rehashed: record 3 (the old 2) still names the old record 1's successor... which
        // is not X.
        let rows = chain(5);
        let mut forged = rows[..2].to_vec();
        let x = row(
            2,
            record_hash(&rows[1].canonical),
            rows[1].time_us,
            "session:x",
            1,
        );
        forged.push(x);
        for r in &rows[2..] {
            let mut r = r.clone();
            r.seq += 1;
            let seq = r.seq;
            forge(&mut r, |m| {
                m.insert("seq".into(), json!(seq));
            });
            forged.push(r);
        }
        assert_fails(&forged, 3, "prev does not match the hash of record 2");
        // A duplicate seq (impossible with the primary key, but the checker holds anyway).
        let mut rows = chain(4);
        rows.insert(2, rows[1].clone());
        assert_fails(&rows, 2, "rows out of order: expected seq 2, found seq 1");
    }

    #[test]
    fn a_changed_prev_with_hash_recomputed() {
        let mut rows = chain(5);
        forge(&mut rows[3], |r| {
            r.insert("prev".into(), json!(record_hash(b"elsewhere").to_hex()));
        });
        assert_eq!(
            fails(&rows),
            Failure::new(3, "prev does not match the hash of record 2")
        );
    }

    #[test]
    fn a_stored_hash_that_does_not_match() {
        let mut rows = chain(4);
        rows[1].hash = record_hash(b"other").0.to_vec();
        assert_fails(&rows, 1, "stored hash does not match the record hash");
        let mut rows = chain(4);
        rows[2].hash.pop();
        assert_fails(&rows, 2, "stored hash is 31 bytes, not 32");
    }

    #[test]
    fn non_canonical_bytes_with_hash_recomputed() {
        let rows = chain(4);
        let text = String::from_utf8(rows[2].canonical.clone()).unwrap();
        let pretty = serde_json::to_vec_pretty(&record_of(&rows[2])).unwrap();
        let variants: Vec<Vec<u8>> = vec![
            // white space
            text.replacen(',', ", ", 1).into_bytes(),
            format!("{text}\n").into_bytes(),
            format!(" {text}").into_bytes(),
            pretty,
            // member order
            text.replacen(
                "\"data\":{\"client\":\"sp-acme\",\"n\":2,",
                "\"data\":{\"n\":2,\"client\":\"sp-acme\",",
                1,
            )
            .into_bytes(),
            // escapes that mean the same string
            text.replacen("\"ok\"", "\"\\u006fk\"", 1).into_bytes(),
            text.replacen("sp-acme", "sp\\/acme", 1).into_bytes(),
            text.replacen("\"ok\"", "\"o\\u006B\"", 1).into_bytes(),
            text.replacen("broker:neb-test-1", "broker:neb\\u002dtest-1", 1)
                .into_bytes(),
            // the same integer written differently
            text.replacen("\"version\":1", "\"version\":1.0", 1)
                .into_bytes(),
            text.replacen("\"version\":1", "\"version\":1e0", 1)
                .into_bytes(),
            // a duplicated member (serde_json keeps the last)
            text.replacen("{\"actor\"", "{\"actor\":\"broker:x\",\"actor\"", 1)
                .into_bytes(),
        ];
        for v in variants {
            assert_ne!(v, rows[2].canonical);
            let mut t = rows.clone();
            t[2].canonical = v.clone();
            rehash(&mut t[2]);
            let f = fails(&t);
            assert_eq!(f.seq, 2, "{}", String::from_utf8_lossy(&v));
            assert!(
                f.reason == "bytes are not canonical (RFC 8785)"
                    || f.reason.starts_with("record has no canonical form"),
                "{f} for {}",
                String::from_utf8_lossy(&v)
            );
        }
        let mut t = rows.clone();
        t[2].canonical = text
            .replacen("\"version\":1", "\"version\":1.0", 1)
            .into_bytes();
        assert_fails(
            &t,
            2,
            "record has no canonical form: /version: number is not an integer",
        );
        let mut t = rows.clone();
        t[2].canonical = text.replacen(",", " , ", 1).into_bytes();
        assert_fails(&t, 2, "bytes are not canonical (RFC 8785)");
    }

    #[test]
    fn bytes_that_are_not_json() {
        let mut rows = chain(3);
        rows[1].canonical.truncate(10);
        rehash(&mut rows[1]);
        assert_fails(&rows, 1, "bytes are not valid UTF-8 JSON");
        let mut rows = chain(3);
        let at = rows[1]
            .canonical
            .windows(2)
            .position(|w| w == b"ok")
            .unwrap();
        rows[1].canonical[at] = 0xff;
        rehash(&mut rows[1]);
        assert_fails(&rows, 1, "bytes are not valid UTF-8 JSON");
        let mut rows = chain(3);
        rows[1].canonical.clear();
        rehash(&mut rows[1]);
        assert_fails(&rows, 1, "bytes are not valid UTF-8 JSON");
    }

    #[test]
    fn members_and_their_types() {
        type Edit = fn(&mut Map<String, Value>);
        let cases: Vec<(Edit, &str)> = vec![
            (
                (|r| {
                    r.remove("actor");
                }),
                "record has no member \"actor\"",
            ),
            (
                (|r| {
                    r.insert("extra".into(), json!(1));
                }),
                "record has a member \"extra\"",
            ),
            (
                (|r| {
                    r.insert("seq".into(), json!("1"));
                }),
                "member seq is not an integer",
            ),
            (
                (|r| {
                    r.insert("prev".into(), json!("ABCD".repeat(16)));
                }),
                "member prev is not 64 lowercase hex digits",
            ),
            (
                (|r| {
                    r.insert("prev".into(), json!("ab"));
                }),
                "member prev is not 64 lowercase hex digits",
            ),
            (
                (|r| {
                    r.insert("time".into(), json!("2026-11-21T09:30:00Z"));
                }),
                "member time is not RFC 3339",
            ),
            (
                (|r| {
                    r.insert("time".into(), json!(T0));
                }),
                "member time is not RFC 3339",
            ),
            (
                (|r| {
                    r.insert("stream".into(), json!("session"));
                }),
                "member stream is not a <kind>:<id> string",
            ),
            (
                (|r| {
                    r.insert("stream".into(), json!(["session:a"]));
                }),
                "member stream is not a <kind>:<id> string",
            ),
            (
                (|r| {
                    r.insert("stream_seq".into(), json!(0));
                }),
                "member stream_seq is not an integer >= 1",
            ),
            (
                (|r| {
                    r.insert("type".into(), json!(""));
                }),
                "member type is not a non-empty string",
            ),
            (
                (|r| {
                    r.insert("type".into(), Value::Null);
                }),
                "member type is not a non-empty string",
            ),
            (
                (|r| {
                    r.insert("version".into(), json!(0));
                }),
                "member version is not an integer >= 1",
            ),
            (
                (|r| {
                    r.insert("version".into(), json!(true));
                }),
                "member version is not an integer >= 1",
            ),
            (
                (|r| {
                    r.insert("actor".into(), json!(""));
                }),
                "member actor is not a <kind>:<id> string",
            ),
            (
                (|r| {
                    r.insert("data".into(), json!([1]));
                }),
                "member data is not an object",
            ),
            (
                (|r| {
                    r.insert("data".into(), json!("x"));
                }),
                "member data is not an object",
            ),
        ];
        for (edit, reason) in cases {
            let mut rows = chain(3);
            forge(&mut rows[1], edit);
            assert_fails(&rows, 1, reason);
        }
        // Not an object at all.
        let mut rows = chain(2);
        rows[1].canonical = b"[1,2]".to_vec();
        rehash(&mut rows[1]);
        assert_fails(&rows, 1, "record is not a JSON object");
        // Negative and float numbers have no canonical form under SPEC section 1.
        let mut rows = chain(2);
        rows[1].canonical = String::from_utf8(rows[1].canonical.clone())
            .unwrap()
            .replacen("\"stream_seq\":1", "\"stream_seq\":-1", 1)
            .into_bytes();
        rehash(&mut rows[1]);
        assert_fails(
            &rows,
            1,
            "record has no canonical form: /stream_seq: negative number",
        );
    }

    #[test]
    fn seq_member_must_match_the_row() {
        let mut rows = chain(4);
        forge(&mut rows[2], |r| {
            r.insert("seq".into(), json!(7));
        });
        assert_eq!(
            fails(&rows),
            Failure::new(2, "record's seq member is 7 but it is stored at seq 2")
        );
    }

    #[test]
    fn columns_must_agree_with_the_record() {
        type Edit = fn(&mut StoredRow);
        let edits: Vec<(Edit, &str)> = vec![
            (
                |r| r.stream = "session:z".into(),
                "column stream disagrees with the record",
            ),
            (
                |r| r.stream_seq += 1,
                "column stream_seq is 3 but the record's stream_seq is 2",
            ),
            (
                |r| r.event_type = "login.failed".into(),
                "column event_type disagrees with the record's type",
            ),
            (|r| r.time_us += 1, "column time_us is"),
        ];
        for (edit, reason) in edits {
            let mut rows = chain(5);
            edit(&mut rows[3]);
            assert_fails(&rows, 3, reason);
        }
    }

    #[test]
    fn time_may_not_go_back() {
        let mut rows = chain(5);
        let earlier = rows[2].time_us - 1;
        forge(&mut rows[3], |r| {
            r.insert("time".into(), json!(time(earlier)));
        });
        rows[3].time_us = earlier;
        // Record 4's prev names the old record 3, but record 3 fails first.
        assert_fails(
            &rows,
            3,
            "time goes back: earlier than the time of record 2",
        );
        // Equal times are fine (one commit group shares a time).
        let mut prev = Hash32::ZERO;
        let same: Vec<StoredRow> = (0..3)
            .map(|s| {
                let r = row(s, prev, T0, "session:a", s + 1);
                prev = record_hash(&r.canonical);
                r
            })
            .collect();
        run(&same).unwrap();
    }

    #[test]
    fn checks_run_in_the_contract_order() {
        // A gap beats anything wrong with the row that follows it.
        let mut rows = chain(4);
        rows.remove(1);
        rows[1].hash = vec![0; 32];
        rows[1].stream = "x:y".into();
        assert_fails(&rows, 1, "missing record");
        // The hash check beats the prev and column checks.
        let mut rows = chain(4);
        forge(&mut rows[2], |r| {
            r.insert("prev".into(), json!(Hash32::ZERO.to_hex()));
        });
        rows[2].hash[0] ^= 1;
        rows[2].event_type = "other".into();
        assert_fails(&rows, 2, "stored hash does not match");
        // The prev check beats the time and column checks.
        let mut rows = chain(4);
        forge(&mut rows[2], |r| {
            r.insert("prev".into(), json!(Hash32::ZERO.to_hex()));
            r.insert("time".into(), json!(time(0)));
        });
        rows[2].event_type = "other".into();
        assert_fails(&rows, 2, "prev does not match");
    }

    #[test]
    fn a_failure_sticks() {
        let mut rows = chain(4);
        rows[1].hash[0] ^= 1;
        let mut c = Checker::new(0, Hash32::ZERO, i64::MIN);
        c.check(&rows[0]).unwrap();
        let f = c.check(&rows[1]).unwrap_err();
        assert_eq!(c.check(&rows[2]).unwrap_err(), f);
        assert_eq!(c.check_end(3).unwrap_err(), f);
        assert_eq!(
            f.to_string(),
            "seq 1: stored hash does not match the record hash"
        );
    }

    fn checked(rows: &[StoredRow]) -> Checker {
        let mut c = Checker::new(0, Hash32::ZERO, i64::MIN);
        for r in rows {
            c.check(r).unwrap();
        }
        c
    }

    fn head(next_seq: u64, last: &[u8]) -> Head {
        Head {
            next_seq,
            last_hash: if last.is_empty() {
                Hash32::ZERO
            } else {
                record_hash(last)
            },
            last_time_micros: 0,
        }
    }

    #[test]
    fn the_chain_must_end_at_the_head() {
        let rows = chain(10);
        let c = checked(&rows[..9]);
        c.check_head(&head(9, &rows[8].canonical)).unwrap();
        assert_eq!(
            c.check_head(&head(10, &rows[9].canonical)).unwrap_err(),
            Failure::new(
                9,
                "missing record: ledger_head says the chain has 10 records"
            )
        );
        let c = checked(&rows);
        assert_eq!(
            c.check_head(&head(8, &rows[7].canonical)).unwrap_err(),
            Failure::new(
                8,
                "record beyond ledger_head (inserted outside the writer?)"
            )
        );
        assert_eq!(
            c.check_head(&head(10, &rows[8].canonical)).unwrap_err(),
            Failure::new(
                9,
                "ledger_head's last_hash does not match the hash of record 9"
            )
        );
        // An empty ledger: head says 0 and zeros.
        let c = checked(&[]);
        c.check_head(&Head::GENESIS).unwrap();
        assert_eq!(c.check_head(&head(1, b"x")).unwrap_err().seq, 0);
        assert_eq!(
            c.check_head(&head(0, b"x")).unwrap_err(),
            Failure::new(
                0,
                "ledger_head's last_hash is not 64 zeros for an empty ledger"
            )
        );
        // Mid-chain start with nothing after the anchor: the head must sit right after it.
        let c = Checker::new(10, record_hash(&rows[9].canonical), 0);
        c.check_head(&head(10, &rows[9].canonical)).unwrap();
        assert_eq!(
            c.check_head(&head(4, &rows[3].canonical)).unwrap_err(),
            Failure::new(
                9,
                "record beyond ledger_head (inserted outside the writer?)"
            )
        );
    }

    #[test]
    fn a_bounded_range_must_be_complete() {
        let rows = chain(5);
        let c = checked(&rows);
        c.check_end(4).unwrap();
        c.check_end(2).unwrap();
        assert_eq!(
            c.check_end(6).unwrap_err(),
            Failure::new(5, "missing record: expected seq 5 (verifying up to seq 6)")
        );
    }

    #[test]
    fn parallel_analysis_matches_sequential() {
        let mut rows = chain(2000);
        rows[1500].hash[3] ^= 1;
        rows[700].stream = "x:y".into();
        let parallel = analyze_all(&rows, 3);
        let sequential = analyze_all(&rows, 1);
        assert_eq!(parallel, sequential);
        assert!(parallel[1500].is_err());
        assert!(parallel[700].as_ref().unwrap().columns.is_some());
    }

    /// Rows whose data exercises every JSON kind, escapes and UTF-16 member order.
    fn varied_rows() -> Vec<StoredRow> {
        let datas = [
            json!({}),
            json!({"a": [], "b": {}, "c": [null, true, false, 0, MAX_SAFE_INTEGER, "", [[]]]}),
            json!({"\u{20ac}": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "\u{1f600}": 5, "\u{80}": 6, "\u{f6}": 7}),
            json!({"s": "q\"b\\s/\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}\u{2028}\u{1f600}é"}),
            json!({"s": "\u{1f}", "k\"ey": {"x\ny": [1]}}),
        ];
        let mut out = Vec::new();
        for (i, data) in datas.into_iter().enumerate() {
            for stream in ["session:a", "session:q\"uote"] {
                let record = json!({
                    "seq": 7, "prev": record_hash(b"p").to_hex(), "time": time(T0 + i as i64),
                    "stream": stream, "stream_seq": 3, "type": "t.x", "version": 2,
                    "actor": "broker:b", "data": data,
                });
                let canonical = canonical::to_vec(&record).unwrap();
                out.push(StoredRow {
                    seq: 7,
                    stream: stream.into(),
                    stream_seq: 3,
                    event_type: "t.x".into(),
                    time_us: T0 + i as i64,
                    hash: record_hash(&canonical).0.to_vec(),
                    canonical,
                });
            }
        }
        out.push(chain(1).remove(0));
        out
    }

    /// Whether any member name in `v` is written with an escape.
    fn escaped_name(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                k.chars().any(|c| c < ' ' || c == '"' || c == '\\') || escaped_name(v)
            }),
            Value::Array(items) => items.iter().any(escaped_name),
            _ => false,
        }
    }

    /// Whatever the fast path settles, it settles exactly as the reference check does;
    /// and it settles every honest row without escapes in the members it reads or in
    /// member names.
    #[test]
    fn fast_path_agrees_with_reference() {
        const BYTES: &[u8] = b" \t\n\"\\/{}[],:0129-+.eEaAzu\x00\x1f\x7f\x80\xc3\xa9\xed\xff";
        let mut scratch = Scratch::default();
        let mut settled = 0;
        let mut total = 0;
        // Rehashed, so that the checks after the hash are reached too.
        let mut compare = |r: &StoredRow| {
            let mut r = r.clone();
            rehash(&mut r);
            let expected = reference(&r, &mut Scratch::default());
            total += 1;
            if let Some(fast) = fast::analyze(&r, &mut scratch) {
                settled += 1;
                assert_eq!(fast, expected, "{}", String::from_utf8_lossy(&r.canonical));
            }
        };
        for base in varied_rows() {
            let escaped = base.stream.contains('"') || escaped_name(&record_of(&base));
            let mut own = Scratch::default();
            let fast = fast::analyze(&base, &mut own);
            if escaped {
                assert!(fast.is_none());
            } else {
                assert_eq!(fast, Some(reference(&base, &mut own)));
                assert!(fast.unwrap().is_ok());
            }
            for i in 0..=base.canonical.len() {
                for &b in BYTES {
                    let mut r = base.clone();
                    if i < r.canonical.len() {
                        r.canonical[i] = b;
                        compare(&r);
                    }
                    let mut r = base.clone();
                    r.canonical.insert(i, b);
                    compare(&r);
                }
                if i < base.canonical.len() {
                    let mut r = base.clone();
                    r.canonical.remove(i);
                    compare(&r);
                }
            }
        }
        assert!(settled > 0 && total > settled);
    }

    /// Escapes RFC 8785 does not write, each in an otherwise honest record: never settled
    /// by the fast path, always refused by the reference.
    #[test]
    fn fast_path_leaves_other_escapes_to_the_reference() {
        let honest = chain(1).remove(0);
        let text = String::from_utf8(honest.canonical.clone()).unwrap();
        for escape in [
            r"\u0008",
            r"\u0009",
            r"\u000a",
            r"\u000c",
            r"\u000d",
            r"\u0022",
            r"\u005c",
            r"\u0041",
            r"\u007f",
            r"\u001F",
            r"\u00e9",
            r"\/",
            r"\ud83d\ude00",
            r"\u0",
            r"\x41",
            r"\'",
        ] {
            let mut r = honest.clone();
            r.canonical = text
                .replace(r#""note":"ok""#, &format!(r#""note":"o{escape}k""#))
                .into_bytes();
            assert_ne!(r.canonical, honest.canonical);
            rehash(&mut r);
            assert_eq!(fast::analyze(&r, &mut Scratch::default()), None, "{escape}");
            assert!(reference(&r, &mut Scratch::default()).is_err(), "{escape}");
        }
    }

    /// Deeply nested data: the fast path settles what it nests within, and leaves deeper
    /// data (up to and past `canonical::write`'s limit) to the reference.
    #[test]
    fn fast_path_depth_limit() {
        for depth in [1, 61, 62, 63, 64, 65, 120, 126, 127, 128, 129, 130] {
            let mut data = json!(1);
            for _ in 0..depth {
                data = json!({ "d": data });
            }
            let mut r = chain(1).remove(0);
            let mut v = record_of(&r);
            v["data"] = data;
            r.canonical = serde_json::to_vec(&v).unwrap();
            rehash(&mut r);
            let expected = reference(&r, &mut Scratch::default());
            let fast = fast::analyze(&r, &mut Scratch::default());
            // The record object is one level, `data` another, then `depth` more.
            if depth + 2 <= fast::MAX_NESTING {
                assert!(fast.is_some(), "depth {depth} is settled");
            }
            if let Some(fast) = fast {
                assert_eq!(fast, expected, "depth {depth}");
            }
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0..=MAX_SAFE_INTEGER).prop_map(|n| json!(n)),
            prop_oneof![Just(0u64), Just(9), Just(10), Just(MAX_SAFE_INTEGER)]
                .prop_map(|n| json!(n)),
            // Control characters, quotes, backslashes, non-ASCII and astral characters.
            "[\\x00-\\x1f\"\\\\/a-z\u{7f}\u{80}\u{e9}\u{2028}\u{fb33}\u{1f600}]{0,6}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "[a-z0-9_.\u{e9}\u{20ac}\u{fb33}\u{1f600}]{0,4}",
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Every honest record of arbitrary data is settled by the fast path as the
        /// reference settles it; with any one byte changed, whatever the fast path still
        /// settles, it settles as the reference does.
        #[test]
        fn fast_path_agrees_on_arbitrary_data(
            data in proptest::collection::btree_map("[a-z\u{e9}\u{1f600}]{0,3}", json_value(), 0..6),
            at in 0usize..4096,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut r = chain(1).remove(0);
            let mut v = record_of(&r);
            v["data"] = Value::Object(data.into_iter().collect());
            r.canonical = canonical::to_vec(&v).unwrap();
            rehash(&mut r);
            let expected = reference(&r, &mut Scratch::default());
            proptest::prop_assert!(expected.is_ok());
            proptest::prop_assert_eq!(fast::analyze(&r, &mut Scratch::default()), Some(expected));

            let at = at % r.canonical.len();
            r.canonical[at] = byte;
            rehash(&mut r);
            if let Some(fast) = fast::analyze(&r, &mut Scratch::default()) {
                proptest::prop_assert_eq!(fast, reference(&r, &mut Scratch::default()));
            }
        }
    }

    #[test]
    fn the_time_cache_agrees_with_parse_micros() {
        let mut cache = TimeCache::default();
        let mut strings: Vec<String> = Vec::new();
        for base in [T0, 0, -1, -61_000_001, 951_782_400_000_000 - 1] {
            for step in [
                0,
                1,
                999_999,
                1_000_000,
                59_999_999,
                60_000_000,
                3_600_000_000,
            ] {
                strings.push(time(base + step));
            }
        }
        let valid = strings.clone();
        for s in &valid {
            for (at, c) in [
                (17, '6'),
                (17, '9'),
                (18, 'x'),
                (19, ','),
                (20, ' '),
                (26, 'z'),
                (25, 'a'),
            ] {
                let mut b = s.clone().into_bytes();
                b[at] = c as u8;
                strings.push(String::from_utf8(b).unwrap());
                strings.push(s.clone());
            }
            strings.push(format!("{s}0"));
            strings.push(s[..26].to_owned());
            strings.push(s.replace(':', "-"));
            strings.push(s.clone());
        }
        for s in &strings {
            assert_eq!(cache.parse(s), parse_micros(s), "{s}");
        }
        assert_eq!(
            cache.parse("2026-11-21T09:30:59.999999Z"),
            parse_micros("2026-11-21T09:30:59.999999Z")
        );
        assert_eq!(cache.parse("2026-11-21T09:30:60.000000Z"), None);
    }

    #[test]
    fn member_index_follows_members() {
        for (i, m) in MEMBERS.iter().enumerate() {
            assert_eq!(member_index(m), Some(i));
        }
        assert_eq!(member_index("Seq"), None);
    }

    #[test]
    fn chunks_shrink_for_large_records() {
        let small = chain(3);
        assert_eq!(next_limit(FIRST_CHUNK, &small, 10_000), 4 * FIRST_CHUNK);
        assert_eq!(next_limit(4096, &small, 10_000), 10_000);
        assert_eq!(next_limit(4096, &small, 100), 100);
        let mut large = small.clone();
        large[1].canonical = vec![b' '; 64 * 1024];
        // CHUNK_BYTES (4 MiB) over the largest row (64 KiB and a little).
        let limit = next_limit(10_000, &large, 10_000);
        assert!((50..=64).contains(&limit), "{limit}");
        large[2].canonical = vec![b' '; 64 << 20];
        assert_eq!(next_limit(10_000, &large, 10_000), 1);
    }

    mod database {
        use super::*;
        use crate::db::{self, DatabaseUrl, Db};

        async fn ledger(rows: &[StoredRow]) -> (tempfile::TempDir, Reader) {
            let dir = tempfile::tempdir().unwrap();
            let url = DatabaseUrl::Sqlite(dir.path().join("v.db"));
            let db = db::open(&url, "verify-test", 4).await.unwrap();
            insert(&db, rows).await;
            if let Some(last) = rows.last() {
                set_head(&db, last.seq as u64 + 1, &last.canonical).await;
            }
            (dir, Reader::new(db))
        }

        async fn insert(db: &Db, rows: &[StoredRow]) {
            let Db::Sqlite(pool) = db else { unreachable!() };
            let mut tx = pool.begin().await.unwrap();
            for r in rows {
                sqlx::query("INSERT INTO ledger_records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                    .bind(r.seq)
                    .bind(&r.stream)
                    .bind(r.stream_seq)
                    .bind(&r.event_type)
                    .bind(r.time_us)
                    .bind(&r.canonical)
                    .bind(&r.hash)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }

        async fn set_head(db: &Db, next: u64, last: &[u8]) {
            let Db::Sqlite(pool) = db else { unreachable!() };
            sqlx::query("UPDATE ledger_head SET next_seq = ?1, last_hash = ?2 WHERE id = 1")
                .bind(next as i64)
                .bind(record_hash(last).0.to_vec())
                .execute(pool)
                .await
                .unwrap();
        }

        async fn verify_with(
            reader: &Reader,
            options: &Options,
        ) -> (Result<Report, VerifyError>, Vec<u64>) {
            let mut seen = Vec::new();
            let result = verify(reader, options, &mut |n| seen.push(n)).await;
            (result, seen)
        }

        fn failure(r: Result<Report, VerifyError>) -> Failure {
            match r {
                Err(VerifyError::Failed(f)) => f,
                other => panic!("expected a failure, got {other:?}"),
            }
        }

        #[tokio::test]
        async fn verifies_a_stored_ledger_in_chunks() {
            let rows = chain(1234);
            let (_dir, reader) = ledger(&rows).await;
            let options = Options {
                chunk: 100,
                ..Options::default()
            };
            let (report, seen) = verify_with(&reader, &options).await;
            let report = report.unwrap();
            assert_eq!((report.to, report.records), (Some(1233), 1234));
            assert_eq!(
                report.last_hash.unwrap(),
                record_hash(&rows[1233].canonical).to_hex()
            );
            assert_eq!(seen.last(), Some(&1234));
            assert!(
                seen.len() >= 13 && seen.windows(2).all(|w| w[0] < w[1]),
                "{seen:?}"
            );
            assert!(seen.iter().all(|n| n % 100 == 0 || *n == 1234 || *n < 100));

            // A range in the middle, anchored on record 99.
            let options = Options {
                from: 100,
                to: Some(499),
                chunk: 64,
                checkpoint: None,
            };
            let report = verify_with(&reader, &options).await.0.unwrap();
            assert_eq!(
                (report.from, report.to, report.records),
                (100, Some(499), 400)
            );
            // From the end: nothing to check, but the head must still match.
            let options = Options {
                from: 1234,
                ..Options::default()
            };
            let report = verify_with(&reader, &options).await.0.unwrap();
            assert_eq!((report.to, report.records), (None, 0));
            // Past the end.
            let options = Options {
                from: 2000,
                ..Options::default()
            };
            assert_eq!(failure(verify_with(&reader, &options).await.0).seq, 1999);
            let options = Options {
                from: 0,
                to: Some(1300),
                chunk: 500,
                checkpoint: None,
            };
            assert_eq!(
                failure(verify_with(&reader, &options).await.0),
                Failure::new(
                    1234,
                    "missing record: expected seq 1234 (verifying up to seq 1300)"
                )
            );
        }

        #[tokio::test]
        async fn an_empty_ledger_verifies() {
            let (_dir, reader) = ledger(&[]).await;
            let (report, _) = verify_with(&reader, &Options::default()).await;
            let report = report.unwrap();
            assert_eq!(
                (report.to, report.records, report.last_hash),
                (None, 0, None)
            );
        }

        #[tokio::test]
        async fn finds_tampering_in_the_database() {
            // A row deleted with the trigger dropped.
            let rows = chain(300);
            let (_dir, reader) = ledger(&rows).await;
            let Db::Sqlite(pool) = reader.db() else {
                unreachable!()
            };
            sqlx::query("DROP TRIGGER ledger_records_no_delete")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM ledger_records WHERE seq = 257")
                .execute(pool)
                .await
                .unwrap();
            let options = Options {
                chunk: 50,
                ..Options::default()
            };
            let (result, seen) = verify_with(&reader, &options).await;
            assert_eq!(
                failure(result),
                Failure::new(257, "missing record: expected seq 257, found seq 258")
            );
            assert!(seen.iter().all(|n| *n <= 257));
            // The last row deleted: only the head knows.
            sqlx::query("DELETE FROM ledger_records WHERE seq >= 257")
                .execute(pool)
                .await
                .unwrap();
            assert_eq!(
                failure(verify_with(&reader, &options).await.0),
                Failure::new(
                    257,
                    "missing record: ledger_head says the chain has 300 records"
                )
            );

            // A record appended outside the writer, correctly chained but not in the head.
            let rows = chain(301);
            let (_dir, reader) = ledger(&rows[..300]).await;
            insert(reader.db(), &rows[300..]).await;
            assert_eq!(
                failure(verify_with(&reader, &Options::default()).await.0),
                Failure::new(
                    300,
                    "record beyond ledger_head (inserted outside the writer?)"
                )
            );
            // Once the head covers it, it verifies.
            set_head(reader.db(), 301, &rows[300].canonical).await;
            assert_eq!(
                verify_with(&reader, &Options::default())
                    .await
                    .0
                    .unwrap()
                    .records,
                301
            );

            // A changed byte in the stored canonical bytes.
            let mut rows = chain(100);
            let at = rows[42]
                .canonical
                .windows(4)
                .position(|w| w == b"\"ok\"")
                .unwrap()
                + 1;
            rows[42].canonical[at] = b'O';
            let (_dir, reader) = ledger(&rows).await;
            assert_eq!(
                failure(verify_with(&reader, &Options::default()).await.0),
                Failure::new(42, "stored hash does not match the record hash")
            );
            // The anchor's stored hash is not trusted: its bytes are rehashed.
            let options = Options {
                from: 43,
                ..Options::default()
            };
            assert_eq!(
                failure(verify_with(&reader, &options).await.0),
                Failure::new(43, "prev does not match the hash of record 42")
            );
        }

        #[tokio::test]
        async fn storage_errors_are_not_failures() {
            let (_dir, reader) = ledger(&chain(3)).await;
            let Db::Sqlite(pool) = reader.db() else {
                unreachable!()
            };
            sqlx::query("DROP TABLE ledger_records")
                .execute(pool)
                .await
                .unwrap();
            let (result, _) = verify_with(&reader, &Options::default()).await;
            assert!(matches!(result, Err(VerifyError::Storage(_))), "{result:?}");
        }

        /// `cargo test --release --lib verify::tests::database::throughput -- --ignored
        /// --nocapture`: builds a SQLite ledger of `VERIFY_BENCH_RECORDS` (default 1,000,000)
        /// records and verifies it; with `VERIFY_BENCH_URL` set, verifies that database
        /// instead (it is only read).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "benchmark"]
        async fn throughput() {
            let (_dir, db) = match std::env::var("VERIFY_BENCH_URL") {
                Ok(url) => {
                    let db = Db::connect(&url.parse().unwrap(), "verify-bench", 4)
                        .await
                        .unwrap();
                    (None, db)
                }
                Err(_) => {
                    let n: u64 = std::env::var("VERIFY_BENCH_RECORDS")
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1_000_000);
                    let dir = tempfile::tempdir().unwrap();
                    let url = DatabaseUrl::Sqlite(dir.path().join("bench.db"));
                    let db = db::open(&url, "verify-bench", 4).await.unwrap();
                    let mut prev = Hash32::ZERO;
                    let mut seq = 0;
                    while seq < n {
                        let batch: Vec<StoredRow> = (seq..(seq + 50_000).min(n))
                            .map(|s| {
                                let stream = format!("session:{:08x}", s / 7);
                                let r = row(s, prev, T0 + s as i64, &stream, s % 7 + 1);
                                prev = record_hash(&r.canonical);
                                r
                            })
                            .collect();
                        seq += batch.len() as u64;
                        insert(&db, &batch).await;
                        set_head(&db, seq, &batch[batch.len() - 1].canonical).await;
                    }
                    (Some(dir), db)
                }
            };
            let reader = Reader::new(db);
            let started = std::time::Instant::now();
            let report = verify_with(&reader, &Options::default()).await.0.unwrap();
            let secs = started.elapsed().as_secs_f64();
            let n = report.records;
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let peak = status
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .unwrap_or("");
            println!(
                "verified {n} records in {secs:.2}s: {:.0} records/s; {peak}",
                n as f64 / secs
            );
        }
    }
}
