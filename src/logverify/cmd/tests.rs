//! The commands on files, parsed through the real `vidne` command line: a small ledger
//! of canonical records, its tree and checkpoints made by the test-side writer.

use clap::Parser;
use ed25519_dalek::SigningKey;

use super::*;
use crate::cli::{Cli, Command};
use crate::logverify::reference::{checkpoint, mth, new_key, path, subproof};

const NAME: &str = "vidne.local/ledger";

struct Ledger {
    dir: tempfile::TempDir,
    sk: SigningKey,
    vkey: String,
    records: Vec<Vec<u8>>,
}

impl Ledger {
    fn new(n: u64) -> Ledger {
        let (sk, vkey) = new_key(NAME);
        let mut records: Vec<Vec<u8>> = Vec::new();
        for seq in 0..n {
            let prev = records.last().map_or(Hash32::ZERO, |r| record_hash(r));
            let record = json!({
                "seq": seq, "prev": prev.to_hex(), "time": "2026-11-21T09:30:00.000000Z",
                "stream": "session:0f8a", "stream_seq": seq + 1, "type": "login.completed",
                "version": 1, "actor": "broker:neb-prod-1", "data": {"idp": "mitid"},
            });
            records.push(canonical::to_vec(&record).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        Ledger {
            dir,
            sk,
            vkey,
            records,
        }
    }

    fn leaves(&self, size: u64) -> Vec<Hash32> {
        self.records[..size as usize]
            .iter()
            .map(|r| record_hash(r))
            .collect()
    }

    /// Writes a file in the temporary directory; returns its path.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    }

    fn checkpoint(&self, size: u64) -> String {
        let root = mth(&self.leaves(size));
        self.file(&format!("cp{size}"), checkpoint(NAME, size, root, &self.sk))
    }

    fn record(&self, seq: u64) -> String {
        self.file(&format!("r{seq}"), &self.records[seq as usize])
    }

    fn inclusion_json(&self, seq: u64, size: u64) -> String {
        let proof = path(seq as usize, &self.leaves(size));
        let hex: Vec<String> = proof.iter().map(Hash32::to_hex).collect();
        json!({"seq": seq, "tree_size": size, "inclusion": hex, "note": "ignored"}).to_string()
    }

    fn consistency_json(&self, from: u64, to: u64) -> String {
        let proof = subproof(from as usize, &self.leaves(to), true);
        let hex: Vec<String> = proof.iter().map(Hash32::to_hex).collect();
        json!({"from": from, "to": to, "consistency": hex}).to_string()
    }
}

fn parse(args: &[&str]) -> ProofCommand {
    let argv = ["vidne", "proof", "verify"].iter().chain(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Proof(p) => p,
        other => panic!("parsed as {other:?}"),
    }
}

fn code(args: &[&str]) -> u8 {
    run(&parse(args))
}

fn outcome(args: &[&str]) -> Result<Passed, Stop> {
    let ProofCommand::Verify(v) = parse(args);
    decide(&v)
}

fn failed(args: &[&str]) -> String {
    assert_eq!(code(args), 1);
    match outcome(args) {
        Err(Stop::Failed(reason)) => reason,
        other => panic!("{other:?}"),
    }
}

fn unusable(args: &[&str]) -> String {
    assert_eq!(code(args), 2);
    match outcome(args) {
        Err(Stop::Unusable(error)) => error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn checkpoint_command() {
    let l = Ledger::new(6);
    let cp = l.checkpoint(6);
    let ok = ["checkpoint", "--key", &l.vkey, &cp];
    assert_eq!(code(&ok), 0);
    assert_eq!(code(&["checkpoint", "--json", "--key", &l.vkey, &cp]), 0);
    let (out, _) = outcome(&ok).unwrap();
    assert_eq!(out["origin"], NAME);
    assert_eq!(out["tree_size"], 6);
    assert_eq!(out["root"], mth(&l.leaves(6)).to_hex());
    // The key from a file, with its newline.
    let key_file = l.file("vkey", format!("{}\n", l.vkey));
    assert_eq!(code(&["checkpoint", "--key", &key_file, &cp]), 0);

    let (_, other) = new_key(NAME);
    let e = failed(&["checkpoint", "--key", &other, &cp]);
    assert!(e.starts_with("checkpoint has no signature by vidne.local/ledger+"));
    let e = unusable(&["checkpoint", "--key", "nonsense", &cp]);
    assert!(e.starts_with("--key: verifier key \"nonsense\""), "{e}");
    let hyphen = std::fs::read_to_string(&cp).unwrap().replace("— ", "- ");
    let e = unusable(&["checkpoint", "--key", &l.vkey, &l.file("hyphen", hyphen)]);
    assert!(e.ends_with("does not begin with an em dash (U+2014) and a space"));
    let missing = l.dir.path().join("missing").to_str().unwrap().to_owned();
    let e = unusable(&["checkpoint", "--key", &l.vkey, &missing]);
    assert!(e.starts_with("cannot read the checkpoint"));
    let e = unusable(&["checkpoint", "--key", &l.vkey, &l.file("bin", [0xff, 0xfe])]);
    assert!(e.ends_with("is not UTF-8 text"));
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

#[test]
fn inclusion_command() {
    let l = Ledger::new(6);
    let cp = l.checkpoint(6);
    let args = |cp: &str, record: &str, proof: &str| -> Vec<String> {
        let a = [
            "inclusion",
            "--key",
            &l.vkey,
            "--checkpoint",
            cp,
            "--record",
            record,
        ];
        a.into_iter()
            .chain(["--proof", proof])
            .map(str::to_owned)
            .collect()
    };
    let all: Vec<String> = (0..6).map(|s| l.inclusion_json(s, 6)).collect();
    let jsonl = l.file("proofs.jsonl", all.join("\n") + "\n");
    for seq in 0..6 {
        let (record, proof) = (l.record(seq), l.file("proof", &all[seq as usize]));
        assert_eq!(code(&strs(&args(&cp, &record, &proof))), 0, "seq {seq}");
        assert_eq!(
            code(&strs(&args(&cp, &record, &jsonl))),
            0,
            "seq {seq}, jsonl"
        );
    }
    let mut json_args = args(&cp, &l.record(0), &jsonl);
    json_args.insert(1, "--json".to_owned());
    assert_eq!(code(&strs(&json_args)), 0);

    let record = l.record(2);
    let proof = l.file("p2", l.inclusion_json(2, 6));
    let fail = |record: &str, proof: &str| failed(&strs(&args(&cp, record, proof)));
    let mut with_newline = l.records[2].clone();
    with_newline.push(b'\n');
    assert_eq!(
        code(&strs(&args(&cp, &l.file("nl", with_newline), &proof))),
        0
    );

    let value: Value = serde_json::from_slice(&l.records[2]).unwrap();
    let pretty = l.file("pretty", serde_json::to_vec_pretty(&value).unwrap());
    assert_eq!(
        fail(&pretty, &proof),
        "record bytes are not canonical (RFC 8785)"
    );
    let text = String::from_utf8(l.records[2].clone()).unwrap();
    let float = l.file("float", text.replace("\"version\":1", "\"version\":1.5"));
    assert!(fail(&float, &proof).starts_with("the record has no canonical form"));
    let e = unusable(&strs(&args(&cp, &l.file("text", "not json"), &proof)));
    assert!(e.contains("is not JSON"), "{e}");
    assert_eq!(
        fail(&record, &l.file("p3", l.inclusion_json(3, 6))),
        "the record is seq 2, the proof is for seq 3"
    );
    assert_eq!(
        fail(&record, &l.file("p5", l.inclusion_json(2, 5))),
        "the proof is for tree size 5, the checkpoint's tree size is 6"
    );
    let mut bad: Value = serde_json::from_str(&l.inclusion_json(2, 6)).unwrap();
    bad["inclusion"][0] = Value::from("AB".repeat(32));
    let e = unusable(&strs(&args(&cp, &record, &l.file("hex", bad.to_string()))));
    assert!(e.contains("inclusion[0]"), "{e}");
    bad["inclusion"][0] = Value::from("00".repeat(32));
    let e = fail(&record, &l.file("bad", bad.to_string()));
    assert!(e.starts_with("the inclusion proof for leaf 2 in a tree of size 6 leads to root"));
    // Another record, canonical and in place, but not the one the tree holds.
    let forged = l.file("forged", text.replace("mitid", "bankid_se"));
    assert!(fail(&forged, &proof).starts_with("the inclusion proof for leaf 2"));
    // The checkpoint is checked first.
    let (other_sk, _) = new_key(NAME);
    let foreign = l.file("foreign", checkpoint(NAME, 6, mth(&l.leaves(6)), &other_sk));
    let e = failed(&strs(&args(&foreign, &pretty, &proof)));
    assert!(e.starts_with("checkpoint has no signature by"), "{e}");
    let e = unusable(&strs(&args(&cp, "-", "-")));
    assert_eq!(e, "only one input can be standard input (-)");
}

#[test]
fn consistency_command() {
    let l = Ledger::new(6);
    let (cp2, cp4, cp6) = (l.checkpoint(2), l.checkpoint(4), l.checkpoint(6));
    let args = |old: &str, new: &str, proof: Option<&str>| {
        let mut a = vec!["consistency", "--key", &l.vkey, "--old", old, "--new", new];
        a.extend(proof.map(|p| ["--proof", p]).into_iter().flatten());
        a.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    let p26 = l.file("p26", l.consistency_json(2, 6));
    assert_eq!(code(&strs(&args(&cp2, &cp6, Some(&p26)))), 0);
    assert_eq!(code(&strs(&args(&cp4, &cp4, None))), 0);
    let p46 = l.file("p46", l.consistency_json(4, 6));
    assert_eq!(code(&strs(&args(&cp4, &cp6, Some(&p46)))), 0);

    assert_eq!(
        failed(&strs(&args(&cp6, &cp4, None))),
        "the log was rolled back: tree size 4 is smaller than 6"
    );
    // A second checkpoint of size 4 with another root: signed, so a fork.
    let other_root = checkpoint(NAME, 4, record_hash(b"other"), &l.sk);
    let fork = l.file("fork4", other_root);
    let e = failed(&strs(&args(&cp4, &fork, None)));
    assert!(
        e.starts_with("fork: two different roots for tree size 4"),
        "{e}"
    );
    assert_eq!(
        failed(&strs(&args(&cp2, &cp6, Some(&p46)))),
        "the proof is from tree size 4 to 6, the checkpoints' sizes are 2 and 6"
    );
    let mut bad: Value = serde_json::from_str(&l.consistency_json(2, 6)).unwrap();
    bad["consistency"][0] = Value::from("11".repeat(32));
    let bad = l.file("bad26", bad.to_string());
    assert!(failed(&strs(&args(&cp2, &cp6, Some(&bad)))).starts_with("the consistency proof"));
    assert!(unusable(&strs(&args(&cp2, &cp6, None))).contains("give the consistency proof"));
    assert!(unusable(&strs(&args(&cp2, &cp6, Some(&cp4)))).contains("is not {\"from\""));
    let (other_sk, _) = new_key(NAME);
    let foreign = l.file("foreign", checkpoint(NAME, 6, mth(&l.leaves(6)), &other_sk));
    assert!(failed(&strs(&args(&cp2, &foreign, Some(&p26))))
        .starts_with("new checkpoint: checkpoint has no signature by"));
}
