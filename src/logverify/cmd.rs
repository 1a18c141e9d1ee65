//! `vidne proof verify checkpoint|inclusion|consistency`: the offline checks of SPEC
//! sections 4 and 5 with the ledger's verifier key alone.
//!
//! Exit codes: 0 valid; 1 a check failed, and the reason is printed; 2 an input could
//! not be read, or is not in its format (a verifier key, a signed note, proof JSON,
//! record JSON), so nothing was decided.

use std::io::Read;
use std::path::Path;

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};

use super::note::{verify_checkpoint, Checkpoint, VerifierKey, MAX_NOTE_BYTES};
use super::proof::{verify_consistency, verify_inclusion};
use crate::spec::canonical;
use crate::spec::hash::{record_hash, Hash32};

/// Largest record or proof file read: a record is at most a few hundred KiB, and
/// `proofs.jsonl` has one short line per exported record.
const MAX_FILE_BYTES: u64 = 64 << 20;

#[derive(Subcommand, Debug)]
pub enum ProofCommand {
    /// Verify a signed checkpoint, an inclusion proof or a consistency proof. Exits 0
    /// when valid, 1 naming the check that failed, 2 when an input cannot be read or is
    /// not in its format.
    #[command(subcommand)]
    Verify(VerifyCommand),
}

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// Verify a signed checkpoint (SPEC section 5) and print its origin, tree size and
    /// root.
    Checkpoint(CheckpointArgs),
    /// Verify that a record is in the tree of a signed checkpoint: the checkpoint's
    /// signature, the record's canonical bytes, then its inclusion proof.
    Inclusion(InclusionArgs),
    /// Verify that a newer signed checkpoint extends an older one: both signatures,
    /// then the consistency proof. A smaller new tree is reported as a rollback, two
    /// roots for one size as a fork.
    Consistency(ConsistencyArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    /// The ledger's verifier key (`<origin>+<key id>+<base64 key>`), or a file holding
    /// it.
    #[arg(long = "key", value_name = "VKEY")]
    pub key: String,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub common: Common,
    /// The signed checkpoint; `-` for standard input.
    pub file: String,
}

#[derive(Args, Debug)]
pub struct InclusionArgs {
    #[command(flatten)]
    pub common: Common,
    /// The signed checkpoint; `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: String,
    /// The record's canonical bytes, as `GET /v1/log/records/{seq}` serves them (one
    /// final newline is allowed).
    #[arg(long, value_name = "FILE")]
    pub record: String,
    /// The proof: `{"seq", "tree_size", "inclusion": [hex, …]}`, or an export's
    /// `proofs.jsonl` (its line for the record's `seq` is used).
    #[arg(long, value_name = "FILE")]
    pub proof: String,
}

#[derive(Args, Debug)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    pub common: Common,
    /// The older signed checkpoint.
    #[arg(long, value_name = "FILE")]
    pub old: String,
    /// The newer signed checkpoint.
    #[arg(long, value_name = "FILE")]
    pub new: String,
    /// The proof: `{"from", "to", "consistency": [hex, …]}`; may be left out when both
    /// checkpoints have the same size.
    #[arg(long, value_name = "FILE")]
    pub proof: Option<String>,
}

/// Why a command stopped: a check failed (exit 1), or an input could not be used
/// (exit 2).
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Failed(String),
    Unusable(String),
}

/// Runs the command; returns the process exit code.
pub fn run(cmd: &ProofCommand) -> u8 {
    let ProofCommand::Verify(verify) = cmd;
    let common = match verify {
        VerifyCommand::Checkpoint(a) => &a.common,
        VerifyCommand::Inclusion(a) => &a.common,
        VerifyCommand::Consistency(a) => &a.common,
    };
    match decide(verify) {
        Ok((out, text)) => {
            if common.json {
                let mut all = json!({"ok": true});
                if let (Value::Object(all), Value::Object(out)) = (&mut all, out) {
                    all.extend(out);
                }
                println!("{all}");
            } else {
                println!("ok: {text}");
            }
            0
        }
        Err(Stop::Failed(reason)) => {
            if common.json {
                println!("{}", json!({"ok": false, "reason": reason}));
            } else {
                println!("FAILED: {reason}");
            }
            1
        }
        Err(Stop::Unusable(error)) => {
            if common.json {
                println!("{}", json!({"ok": false, "error": error}));
            } else {
                eprintln!("error: {error}");
            }
            2
        }
    }
}

/// What a passing command prints: the JSON members, and the text line.
type Passed = (Value, String);

fn decide(verify: &VerifyCommand) -> Result<Passed, Stop> {
    match verify {
        VerifyCommand::Checkpoint(a) => checkpoint(a),
        VerifyCommand::Inclusion(a) => inclusion(a),
        VerifyCommand::Consistency(a) => consistency(a),
    }
}

fn checkpoint(a: &CheckpointArgs) -> Result<Passed, Stop> {
    let key = load_key(&a.common.key)?;
    let note = read_text(&a.file, MAX_NOTE_BYTES as u64, "the checkpoint")?;
    let cp = verified(&note, &key, &a.file, "")?;
    Ok((
        checkpoint_json(&cp),
        format!(
            "checkpoint signed by {key}\norigin {}\ntree_size {}\nroot {}",
            cp.origin, cp.tree_size, cp.root
        ),
    ))
}

/// The proof file's members; others are ignored.
#[derive(Deserialize)]
struct InclusionFile {
    seq: u64,
    tree_size: u64,
    inclusion: Vec<String>,
}

fn inclusion(a: &InclusionArgs) -> Result<Passed, Stop> {
    one_stdin(&[&a.checkpoint, &a.record, &a.proof])?;
    let key = load_key(&a.common.key)?;
    let note = read_text(&a.checkpoint, MAX_NOTE_BYTES as u64, "the checkpoint")?;
    let mut bytes = read(&a.record, MAX_FILE_BYTES, "the record")?;
    // A saved response often gains a final newline; canonical bytes never end in one.
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let record: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Stop::Unusable(format!("the record {} is not JSON: {e}", a.record)))?;
    let proofs = read_text(&a.proof, MAX_FILE_BYTES, "the proof")?;
    let seq = record.get("seq").and_then(Value::as_u64);
    let (proof, path) = inclusion_file(&proofs, seq, &a.proof)?;

    let cp = verified(&note, &key, &a.checkpoint, "")?;
    let canonical = canonical::to_vec(&record)
        .map_err(|e| Stop::Failed(format!("the record has no canonical form (RFC 8785): {e}")))?;
    if canonical != bytes {
        return Err(Stop::Failed(
            "record bytes are not canonical (RFC 8785)".into(),
        ));
    }
    let Some(seq) = seq else {
        return Err(Stop::Failed("the record has no integer seq member".into()));
    };
    if seq != proof.seq {
        return Err(Stop::Failed(format!(
            "the record is seq {seq}, the proof is for seq {}",
            proof.seq
        )));
    }
    if proof.tree_size != cp.tree_size {
        return Err(Stop::Failed(format!(
            "the proof is for tree size {}, the checkpoint's tree size is {}",
            proof.tree_size, cp.tree_size
        )));
    }
    let leaf = record_hash(&bytes);
    verify_inclusion(seq, cp.tree_size, leaf, &path, cp.root)
        .map_err(|r| Stop::Failed(r.to_string()))?;
    let mut out = checkpoint_json(&cp);
    out["seq"] = seq.into();
    out["record_hash"] = leaf.to_hex().into();
    Ok((
        out,
        format!(
            "record seq {seq} (hash {leaf}) is in the tree of size {} with root {}, signed by \
             {key}",
            cp.tree_size, cp.root
        ),
    ))
}

/// The proof in `text`: one JSON object, or JSON lines of which the one for `seq`.
fn inclusion_file(
    text: &str,
    seq: Option<u64>,
    name: &str,
) -> Result<(InclusionFile, Vec<Hash32>), Stop> {
    let parse = |line: &str| -> Result<(InclusionFile, Vec<Hash32>), Stop> {
        let p: InclusionFile = serde_json::from_str(line).map_err(|e| {
            Stop::Unusable(format!(
                "the proof {name} is not {{\"seq\", \"tree_size\", \"inclusion\"}}: {e}"
            ))
        })?;
        let path = hashes(&p.inclusion, name, "inclusion")?;
        Ok((p, path))
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() <= 1 {
        return parse(text.trim());
    }
    for line in lines {
        let (p, path) = parse(line)?;
        if Some(p.seq) == seq {
            return Ok((p, path));
        }
    }
    Err(Stop::Unusable(match seq {
        Some(seq) => format!("the proofs {name} hold none for seq {seq}"),
        None => format!("the proofs {name} hold several, and the record has no seq to choose"),
    }))
}

fn hashes(hex: &[String], name: &str, member: &str) -> Result<Vec<Hash32>, Stop> {
    hex.iter()
        .enumerate()
        .map(|(i, h)| {
            h.parse().map_err(|e| {
                Stop::Unusable(format!(
                    "the proof {name}: {member}[{i}] {}: {e}",
                    super::quote(h)
                ))
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct ConsistencyFile {
    from: u64,
    to: u64,
    consistency: Vec<String>,
}

fn consistency(a: &ConsistencyArgs) -> Result<Passed, Stop> {
    let mut inputs = vec![&a.old, &a.new];
    inputs.extend(&a.proof);
    one_stdin(&inputs)?;
    let key = load_key(&a.common.key)?;
    let old_note = read_text(&a.old, MAX_NOTE_BYTES as u64, "the old checkpoint")?;
    let new_note = read_text(&a.new, MAX_NOTE_BYTES as u64, "the new checkpoint")?;
    let proof = match &a.proof {
        None => None,
        Some(name) => {
            let text = read_text(name, MAX_FILE_BYTES, "the proof")?;
            let p: ConsistencyFile = serde_json::from_str(text.trim()).map_err(|e| {
                Stop::Unusable(format!(
                    "the proof {name} is not {{\"from\", \"to\", \"consistency\"}}: {e}"
                ))
            })?;
            let path = hashes(&p.consistency, name, "consistency")?;
            Some((p.from, p.to, path))
        }
    };

    let old = verified(&old_note, &key, &a.old, "old ")?;
    let new = verified(&new_note, &key, &a.new, "new ")?;
    // A rollback is decided without a proof: none can show it.
    let path = match proof {
        _ if new.tree_size < old.tree_size => Vec::new(),
        None if new.tree_size == old.tree_size => Vec::new(),
        None => {
            return Err(Stop::Unusable(format!(
                "the trees differ in size ({} and {}): give the consistency proof with --proof",
                old.tree_size, new.tree_size
            )))
        }
        Some((from, to, path)) => {
            if (from, to) != (old.tree_size, new.tree_size) {
                return Err(Stop::Failed(format!(
                    "the proof is from tree size {from} to {to}, the checkpoints' sizes are {} \
                     and {}",
                    old.tree_size, new.tree_size
                )));
            }
            path
        }
    };
    verify_consistency(old.tree_size, new.tree_size, old.root, new.root, &path)
        .map_err(|r| Stop::Failed(r.to_string()))?;
    Ok((
        json!({"origin": new.origin, "old": checkpoint_json(&old), "new": checkpoint_json(&new)}),
        format!(
            "the tree of size {} (root {}) extends the tree of size {} (root {}), both signed \
             by {key}",
            new.tree_size, new.root, old.tree_size, old.root
        ),
    ))
}

fn checkpoint_json(cp: &Checkpoint) -> Value {
    json!({"origin": cp.origin, "tree_size": cp.tree_size, "root": cp.root.to_hex()})
}

/// `--key` is the key itself, or a file holding it.
fn load_key(arg: &str) -> Result<VerifierKey, Stop> {
    let (text, from) = if Path::new(arg).is_file() {
        let text = read_text(arg, 64 << 10, "the verifier key file")?;
        (text, format!(" (read from {arg})"))
    } else {
        (arg.to_owned(), String::new())
    };
    VerifierKey::parse(text.trim()).map_err(|e| Stop::Unusable(format!("--key{from}: {e}")))
}

/// The checkpoint in `note` (read from `file`), verified; `which` is "", "old " or
/// "new ", to tell the two checkpoints of a consistency check apart.
fn verified(note: &str, key: &VerifierKey, file: &str, which: &str) -> Result<Checkpoint, Stop> {
    verify_checkpoint(note, key).map_err(|r| {
        if r.is_malformed() {
            Stop::Unusable(format!("the {which}checkpoint {file}: {r}"))
        } else if which.is_empty() {
            Stop::Failed(r.to_string())
        } else {
            Stop::Failed(format!("{which}checkpoint: {r}"))
        }
    })
}

/// At most one input may be standard input.
fn one_stdin(names: &[&String]) -> Result<(), Stop> {
    if names.iter().filter(|n| n.as_str() == "-").count() > 1 {
        return Err(Stop::Unusable(
            "only one input can be standard input (-)".into(),
        ));
    }
    Ok(())
}

/// Reads `name` (`-` is standard input), refusing more than `limit` bytes.
fn read(name: &str, limit: u64, what: &str) -> Result<Vec<u8>, Stop> {
    let mut bytes = Vec::new();
    let result = if name == "-" {
        std::io::stdin().take(limit + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(name).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
    };
    result.map_err(|e| Stop::Unusable(format!("cannot read {what} {name}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(Stop::Unusable(format!(
            "{what} {name} is larger than {limit} bytes"
        )));
    }
    Ok(bytes)
}

fn read_text(name: &str, limit: u64, what: &str) -> Result<String, Stop> {
    String::from_utf8(read(name, limit, what)?)
        .map_err(|_| Stop::Unusable(format!("{what} {name} is not UTF-8 text")))
}

#[cfg(test)]
mod tests;
