//! `vidne export` and `vidne export verify` on both backends, on a ledger `vidne simulate`
//! filled: a contiguous and a client-filtered bundle (directory and .tar) verify offline
//! with the verifier key alone; any single changed byte of any file, a removed record and
//! another SP's record slipped in are each rejected with the reason, also when whoever
//! changed the bundle re-signed its manifest with the real key.

use std::path::Path;

use reqwest::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vidne::checkpoint::LogKey;
use vidne::ledger::Reader;

use crate::api::cli_key;
use crate::audit::{clients_of, raw_records, simulated, Raw};
use crate::both_backends;
use crate::helpers::{spawn_app, vidne, Backend, TestDb, TEST_ORIGIN};

both_backends!(exports_verify_offline_and_tampering_is_named);

const FILES: [&str; 5] = [
    "records.jsonl",
    "checkpoint",
    "proofs.jsonl",
    "manifest.json",
    "manifest.sig",
];

fn export(db: &TestDb, extra: &[&str], out: &Path) -> String {
    let url = db.url_string();
    let key = db.checkpoint_key();
    let mut args = vec![
        "export",
        "--database",
        &url,
        "--checkpoint-key",
        key.to_str().unwrap(),
        "--origin",
        TEST_ORIGIN,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = vidne(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    stdout
}

/// `vidne export verify`: (exit code, what it printed).
fn verify(bundle: &Path, vkey: &str) -> (i32, String) {
    let (code, out, err) = vidne(&["export", "verify", bundle.to_str().unwrap(), "--key", vkey]);
    (code, format!("{out}{err}"))
}

/// `bundle` verifies as a filtered export of `count` records.
fn assert_verifies(bundle: &Path, vkey: &str, count: usize) {
    let (code, out) = verify(bundle, vkey);
    assert_eq!(code, 0, "{out}");
    let said = format!("ok: {count} filtered records");
    assert!(out.contains(&said), "{out}");
}

/// A filtered `vidne export` (with `extra`) to `out` says it wrote `count` records, and
/// the bundle verifies.
fn export_verified(db: &TestDb, extra: &[&str], out: &Path, vkey: &str, count: usize) {
    let said = export(db, extra, out);
    assert!(
        said.contains(&format!("exported {count} records")),
        "{said}"
    );
    assert_verifies(out, vkey, count);
}

/// A bundle fetched through the API, written to `path`, verifies with `count` records.
fn verify_fetched(path: &Path, bytes: &[u8], vkey: &str, count: usize) {
    std::fs::write(path, bytes).unwrap();
    assert_verifies(path, vkey, count);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in FILES {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// Re-digests and re-signs the manifest of the bundle in `dir` with the real checkpoint
/// key, after its records (and proofs) were changed: only the content checks are left.
fn resign(dir: &Path, key: &LogKey, count_delta: i64) {
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for f in ["records.jsonl", "proofs.jsonl", "checkpoint"] {
        manifest["files"][f] =
            hex::encode(Sha256::digest(std::fs::read(dir.join(f)).unwrap())).into();
    }
    let count = manifest["count"].as_i64().unwrap() + count_delta;
    manifest["count"] = count.into();
    let bytes = vidne::spec::canonical::to_vec(&manifest).unwrap();
    std::fs::write(dir.join("manifest.json"), &bytes).unwrap();
    std::fs::write(dir.join("manifest.sig"), key.sign_manifest(&bytes)).unwrap();
}

/// `bundle` copied to `to` with `intruder` slipped in at its place among the records,
/// with its genuine inclusion proof (from `log`: client, base URL, auditor key) in the
/// bundle's checkpoint. Not re-signed.
async fn slip_in(log: (&Client, &str, &str), bundle: &Path, to: &Path, intruder: &Raw) {
    let (http, base, auditor) = log;
    let tree_size: u64 = std::fs::read_to_string(bundle.join("checkpoint"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let proof = http
        .get(format!("{base}/v1/log/proof/inclusion"))
        .bearer_auth(auditor)
        .query(&[("seq", intruder.seq), ("tree_size", tree_size)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    copy_dir(bundle, to);
    let mut rs = lines(&bundle.join("records.jsonl"));
    let seq = |l: &String| {
        serde_json::from_str::<Value>(l).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let at = rs.iter().position(|l| seq(l) > intruder.seq).unwrap();
    rs.insert(at, intruder.canonical.clone());
    write_lines(&to.join("records.jsonl"), &rs);
    let mut ps = lines(&bundle.join("proofs.jsonl"));
    ps.insert(at, proof.trim().to_owned());
    write_lines(&to.join("proofs.jsonl"), &ps);
}

/// `bundle`, with an intruder slipped in and re-signed (its digests and count made to
/// match), is rejected naming the intruder's seq and its client.
fn assert_intruder_named(bundle: &Path, key: &LogKey, vkey: &str, intruder: &Raw) {
    resign(bundle, key, 1);
    let (code, out) = verify(bundle, vkey);
    assert_eq!(code, 1, "{out}");
    let named = out.contains(&format!("(seq {})", intruder.seq)) && out.contains("client_id");
    assert!(named, "{out}");
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

async fn exports_verify_offline_and_tampering_is_named(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let auditor = cli_key(&db, "auditor");
    let (base, handle) = spawn_app(&db).await;
    let dir = tempfile::tempdir().unwrap();
    simulated(&base, &admin, 5, 12, dir.path()).await;
    let http = Client::new();
    let vkey = http
        .get(format!("{base}/v1/log/key"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_owned();
    let key = LogKey::load_or_create(&db.checkpoint_key(), TEST_ORIGIN).unwrap();

    // A contiguous export of everything, verified.
    let whole = dir.path().join("whole");
    export(&db, &[], &whole);
    let (code, out) = verify(&whole, &vkey);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("contiguous"), "{out}");
    let records = lines(&whole.join("records.jsonl"));
    let reader = Reader::new(db.pool(1).await);
    let head = reader.head().await.unwrap().next_seq;
    assert_eq!(records.len() as u64, head);
    let raw = raw_records(&reader, head).await;
    for (line, r) in records.iter().zip(&raw) {
        assert_eq!(
            *line, r.canonical,
            "records.jsonl holds the canonical bytes"
        );
    }

    // Any single changed byte of any file is rejected, and says where.
    for f in FILES {
        let bytes = std::fs::read(whole.join(f)).unwrap();
        for at in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let t = dir.path().join(format!("t-{f}-{at}"));
            copy_dir(&whole, &t);
            let mut changed = bytes.clone();
            changed[at] ^= if changed[at].is_ascii_digit() {
                0x01
            } else {
                0x20
            };
            std::fs::write(t.join(f), &changed).unwrap();
            let (code, out) = verify(&t, &vkey);
            assert_eq!(code, 1, "{f} byte {at}: {out}");
            assert!(out.contains("FAILED"), "{f} byte {at}: {out}");
            let names_it =
                out.contains(f) || (f == "manifest.json" && out.contains("manifest.sig"));
            assert!(names_it, "{f} byte {at}: {out}");
        }
    }
    // Another key is refused.
    let other = LogKey::load_or_create(&dir.path().join("other.key"), TEST_ORIGIN).unwrap();
    let (code, out) = verify(&whole, &other.verifier_key());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("manifest.sig"), "{out}");

    // A record removed: caught by the digest; and, re-signed, by the chain.
    let removed = dir.path().join("removed");
    copy_dir(&whole, &removed);
    let mut rs = records.clone();
    rs.remove(rs.len() / 2);
    write_lines(&removed.join("records.jsonl"), &rs);
    let (code, out) = verify(&removed, &vkey);
    assert_eq!(code, 1);
    assert!(out.contains("records.jsonl: its SHA-256 differs"), "{out}");
    resign(&removed, &key, -1);
    let (code, out) = verify(&removed, &vkey);
    assert_eq!(code, 1);
    assert!(out.contains("a record is missing"), "{out}");

    // A filtered export of one SP, as a .tar: every record with its proof.
    let clients = clients_of(&raw);
    let client = clients.values().flatten().next().unwrap().clone();
    let want: Vec<u64> = raw
        .iter()
        .filter(|r| clients[&r.seq].contains(&client))
        .map(|r| r.seq)
        .collect();
    let to_seq = (head - 1).to_string();
    let tar = dir.path().join("sp.tar");
    let one = ["--client-id", &client, "--to-seq", &to_seq];
    export_verified(&db, &one, &tar, &vkey, want.len());
    // The same as a directory, to change.
    let sp = dir.path().join("sp");
    export(&db, &one, &sp);
    let got: Vec<u64> = lines(&sp.join("records.jsonl"))
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(lines(&sp.join("proofs.jsonl")).len(), want.len());

    // Another SP's record slipped in, with its genuine proof: digest first, and then,
    // re-signed, the filter.
    let intruder = raw
        .iter()
        .find(|r| {
            r.event_type == "session.login_completed"
                && r.data["client_id"].as_str().is_some_and(|c| c != client)
                && r.seq > want[0]
                && r.seq < *want.last().unwrap()
        })
        .expect("another SP's login inside the range");
    let log = (&http, base.as_str(), auditor.as_str());
    let slipped = dir.path().join("slipped");
    slip_in(log, &sp, &slipped, intruder).await;
    let (code, out) = verify(&slipped, &vkey);
    assert_eq!(code, 1);
    assert!(out.contains("records.jsonl: its SHA-256 differs"), "{out}");
    assert_intruder_named(&slipped, &key, &vkey, intruder);

    // POST /v1/exports: the same bundle as a .tar, for auditors only; the export is
    // itself recorded, naming the manifest it signed.
    let sp_key = cli_key(&db, &format!("sp:{client}"));
    let broker = cli_key(&db, "broker");
    let post = |key: String, body: Value| {
        let http = http.clone();
        let url = format!("{base}/v1/exports");
        async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap())
        }
    };
    let before = reader.head().await.unwrap().next_seq;
    for (key, body, status, field) in [
        (admin.clone(), serde_json::json!({}), 403, None),
        (sp_key.clone(), serde_json::json!({}), 403, None),
        (broker.clone(), serde_json::json!({}), 403, None),
        ("vk_nope".to_owned(), serde_json::json!({}), 401, None),
        (
            auditor.clone(),
            serde_json::json!({"colour": 1}),
            400,
            Some("colour"),
        ),
        (
            auditor.clone(),
            serde_json::json!({"to_seq": "x"}),
            400,
            Some("to_seq"),
        ),
        (
            auditor.clone(),
            serde_json::json!({"client_id": [1]}),
            400,
            Some("client_id"),
        ),
        (
            auditor.clone(),
            serde_json::json!({"to_seq": head + 5}),
            400,
            Some("to_seq"),
        ),
        (
            auditor.clone(),
            serde_json::json!({"client_id": "sp-nobody"}),
            404,
            None,
        ),
    ] {
        let (got, bytes) = post(key, body.clone()).await;
        assert_eq!(got, status, "{body}: {}", String::from_utf8_lossy(&bytes));
        if let Some(field) = field {
            let err: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(err["field"], field, "{err}");
        }
    }
    assert_eq!(
        reader.head().await.unwrap().next_seq,
        before,
        "refusals append nothing"
    );
    let (status, bytes) = post(
        auditor.clone(),
        serde_json::json!({"client_id": client, "to_seq": head - 1}),
    )
    .await;
    assert_eq!(status, 200);
    verify_fetched(&dir.path().join("fetched.tar"), &bytes, &vkey, want.len());
    let after = reader.head().await.unwrap().next_seq;
    let recorded = raw_records(&reader, after).await;
    let exported = recorded
        .iter()
        .rev()
        .find(|r| r.event_type == "audit.exported")
        .expect("the export is recorded");
    assert_eq!(exported.data["count"], want.len() as u64);
    assert_eq!(exported.data["filter"]["client_id"], client.as_str());
    let mut archive = tar::Archive::new(&bytes[..]);
    let manifest = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find_map(|mut e| {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            name.ends_with("manifest.json").then(|| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).unwrap();
                v
            })
        })
        .unwrap();
    assert_eq!(
        exported.data["manifest_sha256"],
        hex::encode(Sha256::digest(&manifest))
    );

    // Several clients: their records' union, from the flag repeated or the body's list;
    // a third SP's record slipped in is still caught.
    let second = clients
        .values()
        .flatten()
        .find(|c| **c != client && **c != intruder.data["client_id"])
        .expect("a third SP")
        .clone();
    let both: Vec<u64> = raw
        .iter()
        .filter(|r| clients[&r.seq].contains(&client) || clients[&r.seq].contains(&second))
        .map(|r| r.seq)
        .collect();
    assert!(both.len() > want.len());
    let pair = dir.path().join("pair");
    let two = [
        "--client-id",
        &second,
        "--client-id",
        &client,
        "--to-seq",
        &to_seq,
    ];
    export_verified(&db, &two, &pair, &vkey, both.len());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(pair.join("manifest.json")).unwrap()).unwrap();
    let mut named = [client.clone(), second.clone()];
    named.sort();
    assert_eq!(manifest["filter"]["client_id"], serde_json::json!(named));
    let (status, bytes) = post(
        auditor.clone(),
        serde_json::json!({"client_id": [second, client], "to_seq": head - 1}),
    )
    .await;
    assert_eq!(status, 200);
    verify_fetched(&dir.path().join("pair.tar"), &bytes, &vkey, both.len());
    let slipped = dir.path().join("pair-slipped");
    slip_in(log, &pair, &slipped, intruder).await;
    assert_intruder_named(&slipped, &key, &vkey, intruder);

    // A bundle that is not there cannot be read: exit 2, not a verdict.
    let (code, out) = verify(&dir.path().join("missing"), &vkey);
    assert_eq!(code, 2, "{out}");

    reader.db().close().await;
    handle.stop(true).await;
}
