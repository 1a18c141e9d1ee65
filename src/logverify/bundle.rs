//! An export bundle (SPEC section 7) checked offline with the verifier key alone, in the
//! order the SPEC gives: the manifest's signature and the files' digests; the
//! checkpoint's signature; then every record (canonical, in `seq` order, within the
//! manifest's range and count), and for a contiguous export the chain plus the last
//! record's inclusion proof, for a filtered one every record's inclusion proof and its
//! agreement with the filter.
//!
//! Written apart from the exporter (`audit::export`): it shares only the SPEC
//! primitives. Whether a record matches the filter is checked from what the bundle
//! itself says: a record's own members, and for a session's records without a
//! `client_id` or `idp`, the earlier records of the same session in the bundle. A record
//! the bundle gives no way to place (its transaction began before the export's range) is
//! counted as `unplaced`, not passed silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::note::{verify_checkpoint, VerifierKey};
use super::proof::verify_inclusion;
use super::Reject;
use crate::spec::canonical;
use crate::spec::hash::{record_hash, Hash32};

const FILES: [&str; 3] = ["records.jsonl", "checkpoint", "proofs.jsonl"];
/// Largest manifest, signature, checkpoint and single line read.
const MAX_SMALL: u64 = 1 << 20;
const MAX_LINE: u64 = 16 << 20;

/// What a valid bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub origin: String,
    pub count: u64,
    pub from_seq: u64,
    pub to_seq: u64,
    pub tree_size: u64,
    pub root: Hash32,
    /// `null` for a contiguous export.
    pub filter: Value,
    /// Filtered records whose SP client or person the bundle cannot show (their session
    /// began before the export's range).
    pub unplaced: u64,
}

/// Verifies the bundle at `path`: a directory, or a `.tar` holding one (extracted to a
/// temporary directory first, so the files are read in the order the checks need).
pub fn verify_path(path: &Path, key: &VerifierKey) -> Result<Verified, Reject> {
    if path.is_dir() {
        return verify_dir(path, key);
    }
    let dir = std::env::temp_dir().join(format!(
        "vidne-export-verify-{}-{}",
        std::process::id(),
        hex::encode(Sha256::digest(path.as_os_str().as_encoded_bytes()))
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let result = untar(path, &dir).and_then(|root| verify_dir(&root, key));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Extracts the five bundle files of `tar` (at its top level or in one directory) into
/// `dir`; returns the directory holding them.
fn untar(tar: &Path, dir: &Path) -> Result<PathBuf, Reject> {
    let file = File::open(tar)
        .map_err(|e| Reject::malformed(format!("cannot read {}: {e}", tar.display())))?;
    let bad = |e: std::io::Error| Reject::malformed(format!("{} is not a tar: {e}", tar.display()));
    std::fs::create_dir_all(dir)
        .map_err(|e| Reject::malformed(format!("{}: {e}", dir.display())))?;
    let mut archive = tar::Archive::new(file);
    let mut seen = BTreeSet::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.components().count() > 2 || !is_bundle_file(&name) {
            return Err(Reject::failed(format!(
                "the tar holds {}, which is not a bundle file",
                path.display()
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(Reject::failed(format!("the tar holds {name} twice")));
        }
        let mut out = File::create(dir.join(&name))
            .map_err(|e| Reject::malformed(format!("{}: {e}", dir.display())))?;
        std::io::copy(&mut entry, &mut out).map_err(bad)?;
    }
    Ok(dir.to_owned())
}

fn is_bundle_file(name: &str) -> bool {
    FILES.contains(&name) || name == "manifest.json" || name == "manifest.sig"
}

fn read_small(dir: &Path, name: &str) -> Result<Vec<u8>, Reject> {
    let mut bytes = Vec::new();
    File::open(dir.join(name))
        .and_then(|f| f.take(MAX_SMALL + 1).read_to_end(&mut bytes))
        .map_err(|e| Reject::malformed(format!("cannot read {name}: {e}")))?;
    if bytes.len() as u64 > MAX_SMALL {
        return Err(Reject::failed(format!(
            "{name} is larger than {MAX_SMALL} bytes"
        )));
    }
    Ok(bytes)
}

fn sha256_file(dir: &Path, name: &str) -> Result<String, Reject> {
    let mut file = File::open(dir.join(name))
        .map_err(|e| Reject::failed(format!("cannot read {name}: {e}")))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| Reject::failed(format!("{name}: {e}")))?;
    Ok(hex::encode(h.finalize()))
}

/// The manifest's members, each checked for its type.
struct Manifest {
    origin: String,
    from_seq: u64,
    to_seq: u64,
    count: u64,
    filter: Value,
    files: BTreeMap<String, String>,
}

fn manifest(bytes: &[u8]) -> Result<Manifest, Reject> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Reject::failed(format!("manifest.json is not JSON: {e}")))?;
    if canonical::to_vec(&v).ok().as_deref() != Some(bytes) {
        return Err(Reject::failed(
            "manifest.json is not in RFC 8785 canonical form",
        ));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| Reject::failed("manifest.json is not an object"))?;
    let expected: BTreeSet<&str> = [
        "origin",
        "from_seq",
        "to_seq",
        "count",
        "filter",
        "created_at",
        "files",
    ]
    .into();
    let have: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    if have != expected {
        return Err(Reject::failed(format!(
            "manifest.json has members {have:?}, not {expected:?}"
        )));
    }
    let num = |k: &str| {
        obj[k].as_u64().ok_or_else(|| {
            Reject::failed(format!("manifest.json: {k} is not a non-negative integer"))
        })
    };
    let files = obj["files"]
        .as_object()
        .ok_or_else(|| Reject::failed("manifest.json: files is not an object"))?
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.as_str()
                    .ok_or_else(|| {
                        Reject::failed(format!("manifest.json: files.{k} is not a string"))
                    })?
                    .to_owned(),
            ))
        })
        .collect::<Result<BTreeMap<_, _>, Reject>>()?;
    let filter = obj["filter"].clone();
    if !(filter.is_null() || filter.is_object()) {
        return Err(Reject::failed(
            "manifest.json: filter is neither null nor an object",
        ));
    }
    Ok(Manifest {
        origin: obj["origin"]
            .as_str()
            .ok_or_else(|| Reject::failed("manifest.json: origin is not a string"))?
            .to_owned(),
        from_seq: num("from_seq")?,
        to_seq: num("to_seq")?,
        count: num("count")?,
        filter,
        files,
    })
}

pub fn verify_dir(dir: &Path, key: &VerifierKey) -> Result<Verified, Reject> {
    // 1. The manifest's signature, then the digests it signs.
    let manifest_bytes = read_small(dir, "manifest.json")?;
    let sig_text = read_small(dir, "manifest.sig")?;
    let sig = B64
        .decode(sig_text.trim_ascii())
        .ok()
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .ok_or_else(|| Reject::failed("manifest.sig is not a base64 Ed25519 signature"))?;
    if !key.verifies(&manifest_bytes, &sig) {
        return Err(Reject::failed(format!(
            "manifest.sig: the signature over manifest.json does not verify with {key}"
        )));
    }
    let m = manifest(&manifest_bytes)?;
    if m.origin != key.name() {
        return Err(Reject::failed(format!(
            "manifest.json names origin {:?}, the key is {:?}'s",
            m.origin,
            key.name()
        )));
    }
    let listed: BTreeSet<&str> = m.files.keys().map(String::as_str).collect();
    if listed != FILES.into() {
        return Err(Reject::failed(format!(
            "manifest.json lists files {listed:?}, not {FILES:?}"
        )));
    }
    for name in FILES {
        if sha256_file(dir, name)? != m.files[name] {
            return Err(Reject::failed(format!(
                "{name}: its SHA-256 differs from the one manifest.json signs"
            )));
        }
    }
    // 2. The checkpoint.
    let note = String::from_utf8(read_small(dir, "checkpoint")?)
        .map_err(|_| Reject::failed("checkpoint is not UTF-8"))?;
    let cp =
        verify_checkpoint(&note, key).map_err(|r| Reject::failed(format!("checkpoint: {r}")))?;
    // 3. The records, with their proofs alongside.
    let open = |name: &str| {
        File::open(dir.join(name))
            .map(BufReader::new)
            .map_err(|e| Reject::failed(format!("cannot read {name}: {e}")))
    };
    let mut records = Lines::new(open("records.jsonl")?, "records.jsonl");
    let mut proofs = Lines::new(open("proofs.jsonl")?, "proofs.jsonl");
    let mut pending = proofs.next_proof()?;
    let filtered = !m.filter.is_null();
    let mut check = FilterCheck::new(&m.filter)?;
    let (mut count, mut last): (u64, Option<(u64, Hash32)>) = (0, None);
    let mut last_proved = None;
    while let Some((line_no, bytes)) = records.next_line()? {
        let at = |what: String| Reject::failed(format!("records.jsonl line {line_no}: {what}"));
        let record: Value =
            serde_json::from_slice(&bytes).map_err(|e| at(format!("not JSON: {e}")))?;
        if canonical::to_vec(&record).ok().as_deref() != Some(&bytes[..]) {
            return Err(at("not in RFC 8785 canonical form".into()));
        }
        let seq = record["seq"]
            .as_u64()
            .ok_or_else(|| at("has no integer seq".into()))?;
        let at = |what: String| {
            Reject::failed(format!("records.jsonl line {line_no} (seq {seq}): {what}"))
        };
        let hash = record_hash(&bytes);
        match last {
            None if seq != m.from_seq => {
                return Err(at(format!(
                    "the first record is not from_seq {}",
                    m.from_seq
                )))
            }
            Some((prev, _)) if seq <= prev => return Err(at(format!("not after seq {prev}"))),
            Some((prev, _)) if !filtered && seq != prev + 1 => {
                return Err(at(format!(
                    "a contiguous export skips from seq {prev} to {seq}: a record is missing"
                )))
            }
            _ => {}
        }
        if seq > m.to_seq {
            return Err(at(format!("beyond to_seq {}", m.to_seq)));
        }
        if seq >= cp.tree_size {
            return Err(at(format!(
                "not in the checkpoint's tree of {} records",
                cp.tree_size
            )));
        }
        if !filtered {
            let prev = record["prev"].as_str().unwrap_or_default();
            let want = match last {
                Some((_, h)) => Some(h),
                None if seq == 0 => Some(Hash32::ZERO),
                None => None,
            };
            if let Some(want) = want {
                if prev != want.to_hex() {
                    return Err(at(format!(
                        "prev is not the hash of record {}",
                        seq.wrapping_sub(1)
                    )));
                }
            }
        } else {
            check.record(&record).map_err(at)?;
        }
        // Its proof, if the bundle has one (a filtered export must).
        match &pending {
            Some((pseq, _, _)) if *pseq == seq => {
                let (_, size, path) = pending.take().expect("matched");
                if size != cp.tree_size {
                    return Err(at(format!(
                        "its proof is for a tree of {size} records, the checkpoint's has {}",
                        cp.tree_size
                    )));
                }
                verify_inclusion(seq, size, hash, &path, cp.root)
                    .map_err(|r| at(format!("its inclusion proof fails: {r}")))?;
                last_proved = Some(seq);
                pending = proofs.next_proof()?;
            }
            Some((pseq, _, _)) if *pseq < seq => {
                return Err(Reject::failed(format!(
                    "proofs.jsonl: a proof for seq {pseq}, which is not an exported record"
                )))
            }
            _ if filtered => return Err(at("has no inclusion proof in proofs.jsonl".into())),
            _ => {}
        }
        last = Some((seq, hash));
        count += 1;
    }
    if let Some((pseq, _, _)) = pending {
        return Err(Reject::failed(format!(
            "proofs.jsonl: a proof for seq {pseq}, which is not an exported record"
        )));
    }
    match last {
        None => return Err(Reject::failed("records.jsonl holds no record")),
        Some((seq, _)) if seq != m.to_seq => {
            return Err(Reject::failed(format!(
                "records.jsonl ends at seq {seq}, manifest.json says to_seq {}",
                m.to_seq
            )))
        }
        _ => {}
    }
    if count != m.count {
        return Err(Reject::failed(format!(
            "records.jsonl holds {count} records, manifest.json says {}",
            m.count
        )));
    }
    if !filtered && last_proved != Some(m.to_seq) {
        return Err(Reject::failed(format!(
            "proofs.jsonl has no inclusion proof of the last record (seq {})",
            m.to_seq
        )));
    }
    Ok(Verified {
        origin: m.origin,
        count,
        from_seq: m.from_seq,
        to_seq: m.to_seq,
        tree_size: cp.tree_size,
        root: cp.root,
        filter: m.filter,
        unplaced: check.unplaced,
    })
}

/// Lines of a file, numbered from 1, each at most [`MAX_LINE`] bytes.
struct Lines<R> {
    inner: R,
    name: &'static str,
    no: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(inner: R, name: &'static str) -> Self {
        Lines { inner, name, no: 0 }
    }

    fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, Reject> {
        let mut line = Vec::new();
        let n = (&mut self.inner)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| Reject::failed(format!("{}: {e}", self.name)))?;
        if n == 0 {
            return Ok(None);
        }
        self.no += 1;
        if line.pop() != Some(b'\n') {
            return Err(Reject::failed(format!(
                "{} line {}: does not end in a newline (or is too long)",
                self.name, self.no
            )));
        }
        Ok(Some((self.no, line)))
    }

    /// The next `{"seq","tree_size","inclusion"}` line.
    fn next_proof(&mut self) -> Result<Option<(u64, u64, Vec<Hash32>)>, Reject> {
        let Some((no, bytes)) = self.next_line()? else {
            return Ok(None);
        };
        let bad = || Reject::failed(format!("proofs.jsonl line {no}: not an inclusion proof"));
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let seq = v["seq"].as_u64().ok_or_else(bad)?;
        let size = v["tree_size"].as_u64().ok_or_else(bad)?;
        let path = v["inclusion"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| s.parse::<Hash32>().ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((seq, size, path)))
    }
}

/// Checks each record of a filtered export against the manifest's filter.
struct FilterCheck {
    filter: BTreeMap<String, Value>,
    /// The filter's SP clients: a record must be one of theirs.
    clients: Option<Vec<String>>,
    /// Whether the filter names a client, IdP or person, which records may show only
    /// through earlier records of their session: then the maps below are kept, and
    /// forgotten as transactions and sessions end, so memory follows the sessions open
    /// at once, not the bundle's size.
    tracks: bool,
    /// (stream, transaction id) → (client id, IdP), from the bundle's records, for the
    /// transactions not yet completed or failed.
    transactions: BTreeMap<(String, String), (Option<String>, Option<String>)>,
    /// stream → the clients its transactions served, until its logout.
    served: BTreeMap<String, BTreeSet<String>>,
    /// stream → subject key, from the bundle's logins, until its logout.
    subjects: BTreeMap<String, String>,
    unplaced: u64,
}

impl FilterCheck {
    fn new(filter: &Value) -> Result<FilterCheck, Reject> {
        let filter = match filter {
            Value::Object(m) => m.clone().into_iter().collect(),
            _ => BTreeMap::new(),
        };
        const KNOWN: [&str; 11] = [
            "stream",
            "type",
            "client_id",
            "idp",
            "transaction_id",
            "subject",
            "cpr_ref",
            "from_time",
            "to_time",
            "from_seq",
            "to_seq",
        ];
        if let Some(k) = filter.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(Reject::failed(format!(
                "manifest.json: the filter has member {k:?}, which this verifier cannot check"
            )));
        }
        // One client as a string, several as an array of strings.
        let clients = match filter.get("client_id") {
            None => None,
            Some(Value::String(c)) => Some(vec![c.clone()]),
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => Some(
                list.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect(),
            ),
            Some(_) => {
                return Err(Reject::failed(
                    "manifest.json: filter.client_id is not a string or a list of strings"
                        .to_owned(),
                ))
            }
        };
        let tracks =
            clients.is_some() || ["idp", "subject"].iter().any(|k| filter.contains_key(*k));
        Ok(FilterCheck {
            clients,
            filter,
            tracks,
            transactions: BTreeMap::new(),
            served: BTreeMap::new(),
            subjects: BTreeMap::new(),
            unplaced: 0,
        })
    }

    fn want(&self, k: &str) -> Option<&Value> {
        self.filter.get(k)
    }

    fn record(&mut self, r: &Value) -> Result<(), String> {
        let stream = r["stream"].as_str().unwrap_or_default().to_owned();
        let data = &r["data"];
        let text = |v: &Value, k: &str| v[k].as_str().map(str::to_owned);
        let tx = text(data, "transaction_id");
        let key = tx.clone().map(|t| (stream.clone(), t));
        // What the bundle knows of this record's transaction and session.
        let (mut client, mut idp) = (text(data, "client_id"), text(data, "idp"));
        if let Some(key) = key.as_ref().filter(|_| self.tracks) {
            let known = self.transactions.entry(key.clone()).or_default();
            if client.is_some() {
                known.0.clone_from(&client);
            }
            if idp.is_some() {
                known.1.clone_from(&idp);
            }
            client = client.or_else(|| known.0.clone());
            idp = idp.or_else(|| known.1.clone());
            if let Some(c) = &client {
                self.served
                    .entry(stream.clone())
                    .or_default()
                    .insert(c.clone());
            }
        }
        if let Some(s) = text(data, "subject_key").filter(|_| self.tracks) {
            self.subjects.insert(stream.clone(), s);
        }
        let mut placed = true;
        let is = |k: &str, got: Option<&str>| -> Result<(), String> {
            match (self.want(k), got) {
                (Some(w), Some(g)) if w.as_str() != Some(g) => {
                    Err(format!("its {k} is {g:?}, the filter asks for {w}"))
                }
                _ => Ok(()),
            }
        };
        is("type", r["type"].as_str())?;
        is("stream", Some(&stream))?;
        if self.want("transaction_id").is_some() {
            is("transaction_id", Some(tx.as_deref().unwrap_or("")))?;
        }
        if self.want("cpr_ref").is_some() {
            let named = text(data, "cpr_ref").or_else(|| text(&data["filter"], "cpr_ref"));
            is("cpr_ref", Some(named.as_deref().unwrap_or("")))?;
        }
        if let Some(want) = &self.clients {
            let theirs = |c: &str| -> Result<(), String> {
                if want.iter().any(|w| w == c) {
                    Ok(())
                } else {
                    Err(format!(
                        "its client_id is {c:?}, the filter asks for {want:?}"
                    ))
                }
            };
            if r["type"] == "session.logged_out" {
                let served: Vec<&String> = self.served.get(&stream).into_iter().flatten().collect();
                if served.is_empty() {
                    placed = false;
                } else if !served.iter().any(|c| want.contains(c)) {
                    return Err(format!(
                        "it ends a session that served {served:?}, not {want:?}"
                    ));
                }
            } else if r["type"] == "audit.queried" {
                theirs(text(data, "client_id").as_deref().unwrap_or(""))?;
            } else {
                match &client {
                    Some(c) => theirs(c)?,
                    None => placed = false,
                }
            }
        }
        if self.want("idp").is_some() {
            match &idp {
                Some(i) => is("idp", Some(i))?,
                None => placed = false,
            }
        }
        if self.want("subject").is_some() {
            let subject = text(data, "subject_key")
                .or_else(|| text(&data["filter"], "subject"))
                .or_else(|| self.subjects.get(&stream).cloned());
            match subject {
                Some(s) => is("subject", Some(&s))?,
                None => placed = false,
            }
        }
        let time = r["time"].as_str().unwrap_or_default();
        if let Some(from) = self.want("from_time").and_then(Value::as_str) {
            if time < from {
                return Err(format!("its time {time} is before from_time {from}"));
            }
        }
        if let Some(to) = self.want("to_time").and_then(Value::as_str) {
            if time >= to {
                return Err(format!("its time {time} is not before to_time {to}"));
            }
        }
        let seq = r["seq"].as_u64().unwrap_or(0);
        if self
            .want("from_seq")
            .and_then(Value::as_u64)
            .is_some_and(|f| seq < f)
            || self
                .want("to_seq")
                .and_then(Value::as_u64)
                .is_some_and(|t| seq > t)
        {
            return Err("it is outside the filter's seq range".into());
        }
        if !placed {
            self.unplaced += 1;
        }
        // What no later record needs is forgotten: a transaction ends at its completion
        // or failure (its session accepts nothing more of it), a session at its logout.
        match r["type"].as_str() {
            Some("session.transaction_completed" | "session.flow_failed") => {
                if let Some(key) = &key {
                    self.transactions.remove(key);
                }
            }
            Some("session.logged_out") => {
                self.transactions.retain(|(s, _), _| *s != stream);
                self.served.remove(&stream);
                self.subjects.remove(&stream);
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The bundle: a directory or a .tar of one.
    pub bundle: PathBuf,
    /// The ledger's verifier key (`<origin>+<key id>+<base64 key>`), or a file holding it.
    #[arg(long = "key", value_name = "VKEY")]
    pub key: String,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vidne export verify`; returns the exit code: 0 valid, 1 a check failed, 2 unreadable.
pub fn run(a: &VerifyArgs) -> u8 {
    let key_text = if Path::new(&a.key).is_file() {
        std::fs::read_to_string(&a.key).unwrap_or_default()
    } else {
        a.key.clone()
    };
    let key = match VerifierKey::parse(key_text.trim()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: --key: {e}");
            return 2;
        }
    };
    match verify_path(&a.bundle, &key) {
        Ok(v) => {
            let kind = if v.filter.is_null() {
                "contiguous"
            } else {
                "filtered"
            };
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true, "origin": v.origin, "count": v.count,
                        "from_seq": v.from_seq, "to_seq": v.to_seq,
                        "tree_size": v.tree_size, "root": v.root.to_hex(),
                        "filter": v.filter, "unplaced": v.unplaced,
                    })
                );
            } else {
                println!(
                    "ok: {} {kind} records, seq {} to {}, in the tree of {} records (root {}) signed by {key}",
                    v.count, v.from_seq, v.to_seq, v.tree_size, v.root
                );
                if v.unplaced > 0 {
                    println!(
                        "note: {} records' client, IdP or person is not shown by the bundle \
                         (their session began before it); their inclusion is proved",
                        v.unplaced
                    );
                }
            }
            0
        }
        Err(r) => {
            let code = if r.is_malformed() { 2 } else { 1 };
            if a.json {
                println!("{}", serde_json::json!({"ok": false, "reason": r.reason()}));
            } else if code == 1 {
                println!("FAILED: {}", r.reason());
            } else {
                eprintln!("error: {}", r.reason());
            }
            code
        }
    }
}
