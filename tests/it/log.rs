//! The verifiable log over HTTP on both backends: the tree the append path keeps equals
//! RFC 9162's definition; checkpoints, proofs and tiles check out with the offline
//! verifier (`vidne proof verify`); a tampered record, a forged checkpoint and a rolled
//! back log are each rejected with the reason; a tree changed under the service is not
//! signed.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vidne::ledger::{Ledger, LedgerOptions, Reader};
use vidne::merkle::store::DbTiles;
use vidne::spec::hash::{record_hash, Hash32};

use crate::api::cli_key;
use crate::both_backends;
use crate::helpers::{
    append_more, fill, spawn_app, spawn_app_with, vidne, Backend, TestDb, TEST_ORIGIN,
};

both_backends!(
    proofs_and_checkpoints_verify_offline,
    tiles_serve_the_tlog_layout,
    a_changed_tree_is_not_signed,
    an_older_ledger_gets_its_tree_on_migrate,
    verify_holds_the_records_to_the_signed_checkpoint,
);

/// RFC 9162 section 2.1.1, as written, over leaf hashes.
fn mth(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => Hash32(Sha256::digest([]).into()),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut h = Sha256::new();
            h.update([1]);
            h.update(mth(&leaves[..k]).0);
            h.update(mth(&leaves[k..]).0);
            Hash32(h.finalize().into())
        }
    }
}

/// RFC 9162 section 2.1.3.1 PATH(m, D[n]).
fn path(m: usize, leaves: &[Hash32]) -> Vec<Hash32> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
    let (mut p, sibling) = if m < k {
        (path(m, &leaves[..k]), mth(&leaves[k..]))
    } else {
        (path(m - k, &leaves[k..]), mth(&leaves[..k]))
    };
    p.push(sibling);
    p
}

/// Every record hash, in `seq` order, recomputed from the stored bytes.
async fn leaves(reader: &Reader) -> Vec<Hash32> {
    let head = reader.head().await.unwrap().next_seq;
    if head == 0 {
        return Vec::new();
    }
    let rows = reader.range(0, head - 1, u32::MAX).await.unwrap();
    rows.iter().map(|r| record_hash(&r.canonical)).collect()
}

/// The tree the append path kept equals the RFC's tree over the records' hashes.
pub async fn assert_tree_matches(reader: &Reader) {
    let leaves = leaves(reader).await;
    let tiles = DbTiles::new(reader.db().clone());
    assert_eq!(tiles.size().await.unwrap(), leaves.len() as u64);
    assert_eq!(
        vidne::merkle::proof::root(&tiles, leaves.len() as u64)
            .await
            .unwrap(),
        mth(&leaves),
        "stored tree root"
    );
}

/// A service on a fresh database that holds `records` records, with an admin and an
/// auditor key, and a writer of the test's own.
struct Running {
    db: TestDb,
    base: String,
    handle: actix_web::dev::ServerHandle,
    http: Client,
    admin: String,
    auditor: String,
    ledger: Ledger,
    reader: Reader,
}

async fn running(backend: Backend, records: u64) -> Running {
    let db = TestDb::new(backend).await;
    let (base, handle) = spawn_app(&db).await;
    let admin = cli_key(&db, "admin");
    let auditor = cli_key(&db, "auditor");
    let (ledger, reader) = db.ledger().await;
    fill(&ledger, records).await;
    Running {
        db,
        base,
        handle,
        http: Client::new(),
        admin,
        auditor,
        ledger,
        reader,
    }
}

async fn get(http: &Client, url: &str, key: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn get_ok(http: &Client, url: &str, key: &str) -> Vec<u8> {
    let (status, body) = get(http, url, Some(key)).await;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    body
}

pub async fn sign_now(http: &Client, base: &str, admin: &str) -> String {
    let r = http
        .post(format!("{base}/v1/log/checkpoints"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// (size, root) of a checkpoint's body.
fn body_of(note: &str) -> (u64, Hash32) {
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], TEST_ORIGIN);
    let root = Hash32::from_slice(&B64.decode(lines[2]).unwrap()).unwrap();
    (lines[1].parse().unwrap(), root)
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `vidne proof verify …`: (exit code, stdout and stderr together).
fn verify(args: &[&str]) -> (i32, String) {
    let mut all = vec!["proof", "verify"];
    all.extend_from_slice(args);
    let (code, out, err) = vidne(&all);
    (code, format!("{out}{err}"))
}

async fn proofs_and_checkpoints_verify_offline(backend: Backend) {
    let Running {
        db,
        base,
        handle,
        http,
        admin,
        auditor,
        ledger,
        reader,
    } = running(backend, 300).await;
    let sp = cli_key(&db, "sp:sp-acme");

    let note = sign_now(&http, &base, &admin).await;
    let (size, root) = body_of(&note);
    assert_eq!(size, 300);
    let all = leaves(&reader).await;
    assert_eq!(root, mth(&all), "the checkpoint signs the RFC 9162 root");
    let latest = get_ok(&http, &format!("{base}/v1/log/checkpoint"), &sp).await;
    assert_eq!(latest, note.as_bytes());
    let vkey =
        String::from_utf8(get_ok(&http, &format!("{base}/v1/log/key"), &auditor).await).unwrap();
    assert!(vkey.starts_with(&format!("{TEST_ORIGIN}+")), "{vkey}");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = write(d, "vkey", &vkey);
    let cp300 = write(d, "cp300", &note);
    let (code, out) = verify(&["checkpoint", "--key", &key, &cp300]);
    assert_eq!(code, 0, "{out}");

    for seq in [0usize, 1, 100, 255, 256, 299] {
        let record = get_ok(&http, &format!("{base}/v1/log/records/{seq}"), &auditor).await;
        let proof: Value = serde_json::from_slice(
            &get_ok(
                &http,
                &format!("{base}/v1/log/proof/inclusion?seq={seq}&tree_size=300"),
                &auditor,
            )
            .await,
        )
        .unwrap();
        let expected: Vec<String> = path(seq, &all).iter().map(Hash32::to_hex).collect();
        assert_eq!(proof["inclusion"], serde_json::json!(expected), "seq {seq}");
        let (code, out) = verify(&[
            "inclusion",
            "--key",
            &key,
            "--checkpoint",
            &cp300,
            "--record",
            &write(d, "record", &record),
            "--proof",
            &write(d, "proof", proof.to_string()),
        ]);
        assert_eq!(code, 0, "seq {seq}: {out}");
    }
    // Without tree_size the latest checkpoint's is used.
    let proof: Value = serde_json::from_slice(
        &get_ok(&http, &format!("{base}/v1/log/proof/inclusion?seq=7"), &sp).await,
    )
    .unwrap();
    assert_eq!(proof["tree_size"], 300);

    // The log grows; the next checkpoint is consistent with the first.
    append_more(&ledger, "more", 200).await;
    let note500 = sign_now(&http, &base, &admin).await;
    assert_eq!(body_of(&note500).0, 500);
    let cp500 = write(d, "cp500", &note500);
    let consistency = get_ok(
        &http,
        &format!("{base}/v1/log/proof/consistency?from=300&to=500"),
        &auditor,
    )
    .await;
    let consistency = write(d, "consistency", &consistency);
    let (code, out) = verify(&[
        "consistency",
        "--key",
        &key,
        "--old",
        &cp300,
        "--new",
        &cp500,
        "--proof",
        &consistency,
    ]);
    assert_eq!(code, 0, "{out}");
    let earlier = get_ok(&http, &format!("{base}/v1/log/checkpoints/300"), &auditor).await;
    assert_eq!(earlier, note.as_bytes(), "an earlier checkpoint, as signed");

    // Rejected, each with its reason.
    let record = get_ok(&http, &format!("{base}/v1/log/records/42"), &auditor).await;
    let proof = get_ok(
        &http,
        &format!("{base}/v1/log/proof/inclusion?seq=42&tree_size=300"),
        &auditor,
    )
    .await;
    let proof = write(d, "proof42", &proof);
    let mut tampered = record.clone();
    let at = tampered.windows(6).position(|w| w == b"mitid\"").unwrap();
    tampered[at] = b'n';
    let (code, out) = verify(&[
        "inclusion",
        "--key",
        &key,
        "--checkpoint",
        &cp300,
        "--record",
        &write(d, "tampered", &tampered),
        "--proof",
        &proof,
    ]);
    assert_eq!(code, 1, "a tampered record: {out}");
    assert!(
        out.to_lowercase().contains("root") || out.contains("proof"),
        "{out}"
    );

    let (code, out) = verify(&[
        "inclusion",
        "--key",
        &key,
        "--checkpoint",
        &cp500,
        "--record",
        &write(d, "record42", &record),
        "--proof",
        &proof,
    ]);
    assert_eq!(code, 1, "a proof for another tree size: {out}");
    assert!(out.contains("300") && out.contains("500"), "{out}");

    let edited_size = note.replacen("\n300\n", "\n301\n", 1);
    let edited_root = {
        let (_, root) = body_of(&note);
        let mut other = root.0;
        other[0] ^= 1;
        note.replacen(&B64.encode(root.0), &B64.encode(other), 1)
    };
    for (what, forged) in [("edited size", edited_size), ("edited root", edited_root)] {
        let (code, out) = verify(&["checkpoint", "--key", &key, &write(d, "forged", &forged)]);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains("signature"), "{what}: {out}");
    }
    let stranger = vidne::checkpoint::LogKey::new(
        TEST_ORIGIN,
        ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
    )
    .unwrap();
    let forged = stranger.sign_checkpoint(300, &root);
    let (code, out) = verify(&["checkpoint", "--key", &key, &write(d, "stranger", &forged)]);
    assert_eq!(code, 1, "signed by another key: {out}");
    let (code, out) = verify(&["checkpoint", "--key", &stranger.verifier_key(), &cp300]);
    assert_eq!(code, 1, "checked with another key: {out}");

    // A log that shows a smaller tree after a larger one was rolled back.
    let back = write(d, "back", "{\"from\":500,\"to\":300,\"consistency\":[]}");
    let (code, out) = verify(&[
        "consistency",
        "--key",
        &key,
        "--old",
        &cp500,
        "--new",
        &cp300,
        "--proof",
        &back,
    ]);
    assert_eq!(code, 1, "rolled back: {out}");
    assert!(out.contains("rolled back"), "{out}");

    ledger.close().await;
    handle.stop(true).await;
}

async fn tiles_serve_the_tlog_layout(backend: Backend) {
    // `db` is kept: dropping it drops the database.
    let Running {
        db: _db,
        base,
        handle,
        http,
        admin,
        auditor,
        ledger,
        reader,
    } = running(backend, 300).await;
    let note = sign_now(&http, &base, &admin).await;
    assert_eq!(
        get_ok(&http, &format!("{base}/checkpoint"), &auditor).await,
        note.as_bytes()
    );
    let all = leaves(&reader).await;
    let concat = |hs: &[Hash32]| hs.iter().flat_map(|h| h.0).collect::<Vec<u8>>();
    assert_eq!(
        get_ok(&http, &format!("{base}/tile/0/000"), &auditor).await,
        concat(&all[..256])
    );
    assert_eq!(
        get_ok(&http, &format!("{base}/tile/0/001.p/44"), &auditor).await,
        concat(&all[256..])
    );
    assert_eq!(
        get_ok(&http, &format!("{base}/tile/1/000.p/1"), &auditor).await,
        concat(&[mth(&all[..256])]),
        "a level-1 hash is the root of a full level-0 tile"
    );
    for (path, from, to) in [("entries/000", 0, 256), ("entries/001.p/44", 256, 300)] {
        let bundle = get_ok(&http, &format!("{base}/tile/{path}"), &auditor).await;
        let mut rest = &bundle[..];
        let mut hashes = Vec::new();
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            hashes.push(record_hash(&rest[2..2 + len]));
            rest = &rest[2 + len..];
        }
        assert_eq!(hashes, all[from..to], "{path}");
    }
    for (path, status) in [
        ("0/001", 404),
        ("0/001.p/45", 404),
        ("1/000", 404),
        ("0/1", 400),
        ("0/000.p/256", 400),
        ("entries/x000/001", 400),
    ] {
        let (got, body) = get(&http, &format!("{base}/tile/{path}"), Some(&auditor)).await;
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
        if status == 400 {
            let e: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(e["field"], "path");
        }
    }
    ledger.close().await;
    handle.stop(true).await;
}

/// Before signing, the service proves the tree consistent with its last checkpoint: a
/// tree hash changed under it (here a level-1 tile hash, which no record check would
/// see) stops the signing, and nothing is stored.
async fn a_changed_tree_is_not_signed(backend: Backend) {
    let Running {
        db,
        base,
        handle,
        http,
        admin,
        auditor,
        ledger,
        ..
    } = running(backend, 300).await;
    assert_eq!(body_of(&sign_now(&http, &base, &admin).await).0, 300);
    match backend {
        Backend::Postgres => {
            db.exec(
                "ALTER TABLE merkle_hashes DISABLE TRIGGER USER; \
                 UPDATE merkle_hashes SET hash = sha256(hash) WHERE level = 1 AND idx = 0; \
                 ALTER TABLE merkle_hashes ENABLE TRIGGER USER",
            )
            .await
        }
        Backend::Sqlite => {
            db.exec(
                "DROP TRIGGER merkle_hashes_no_update; \
                 UPDATE merkle_hashes SET hash = randomblob(32) WHERE level = 1 AND idx = 0",
            )
            .await
        }
    }
    append_more(&ledger, "late", 100).await;
    let r = http
        .post(format!("{base}/v1/log/checkpoints"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    let reason = e["error_description"].as_str().unwrap();
    assert!(
        reason.contains("not consistent with checkpoint 300"),
        "{reason}"
    );
    let (status, _) = get(
        &http,
        &format!("{base}/v1/log/checkpoints/400"),
        Some(&auditor),
    )
    .await;
    assert_eq!(status, 404, "nothing was signed");
    ledger.close().await;
    handle.stop(true).await;
}

/// A ledger written before the tree existed (here: by a writer with the tree off) gets
/// its tree built when it is next migrated, and appends go on keeping it.
async fn an_older_ledger_gets_its_tree_on_migrate(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db
        .ledger_with(LedgerOptions {
            tree: false,
            ..LedgerOptions::default()
        })
        .await;
    fill(&ledger, 700).await;
    ledger.close().await;
    let tiles = DbTiles::new(reader.db().clone());
    assert_eq!(tiles.size().await.unwrap(), 0, "no tree yet");
    db.pool(1).await.close().await;
    assert_tree_matches(&reader).await;
    let (ledger, _) = db.ledger().await;
    append_more(&ledger, "after", 70).await;
    ledger.close().await;
    assert_tree_matches(&reader).await;
}

/// Who may read the log, and what a bad question gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_routes_roles_and_bad_input() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let admin = cli_key(&db, "admin");
    let broker = cli_key(&db, "broker");
    let auditor = cli_key(&db, "auditor");
    let (ledger, _) = db.ledger().await;
    fill(&ledger, 10).await;
    sign_now(&http, &base, &admin).await;
    let reads = [
        "/v1/log/checkpoint",
        "/v1/log/checkpoints/10",
        "/v1/log/key",
        "/v1/log/records/3",
        "/v1/log/proof/inclusion?seq=3",
        "/v1/log/proof/consistency?from=3",
        "/checkpoint",
        "/tile/0/000.p/10",
        "/tile/entries/000.p/10",
    ];
    for path in reads {
        let url = format!("{base}{path}");
        assert_eq!(get(&http, &url, None).await.0, 401, "{path}");
        assert_eq!(get(&http, &url, Some(&broker)).await.0, 403, "{path}");
        assert_eq!(get(&http, &url, Some(&admin)).await.0, 403, "{path}");
        assert_eq!(get(&http, &url, Some(&auditor)).await.0, 200, "{path}");
    }
    let r = http
        .post(format!("{base}/v1/log/checkpoints"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "only admins sign on demand");

    for (query, field) in [
        ("inclusion?tree_size=5", "seq"),
        ("inclusion?seq=x", "seq"),
        ("inclusion?seq=5&tree_size=5", "seq"),
        ("inclusion?seq=1&tree_size=11", "tree_size"),
        ("inclusion?seq=1&tree_size=-1", "tree_size"),
        ("consistency?to=5", "from"),
        ("consistency?from=6&to=5", "from"),
        ("consistency?from=1&to=99", "to"),
    ] {
        let (status, body) = get(
            &http,
            &format!("{base}/v1/log/proof/{query}"),
            Some(&auditor),
        )
        .await;
        assert_eq!(status, 400, "{query}");
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["field"], field, "{query}: {e}");
    }
    let (status, _) = get(
        &http,
        &format!("{base}/v1/log/checkpoints/7"),
        Some(&auditor),
    )
    .await;
    assert_eq!(status, 404, "no checkpoint of that size");
    handle.stop(true).await;

    // A public log needs no key for its reads; signing still does.
    let (base, handle) = spawn_app_with(&db, |c| c.public_log = true).await;
    for path in reads {
        assert_eq!(
            get(&http, &format!("{base}{path}"), None).await.0,
            200,
            "{path}"
        );
    }
    let r = http
        .post(format!("{base}/v1/log/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    ledger.close().await;
    handle.stop(true).await;
}

/// The origin and checkpoint key a ledger was first signed with are kept: a service
/// started on it with another key or origin refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_checkpoint_key_never_change() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (_, handle) = spawn_app(&db).await;
    handle.stop(true).await;
    let config = |key: std::path::PathBuf, origin: &str| vidne::http::ServeConfig {
        database: db.url.clone(),
        listen: "127.0.0.1:0".into(),
        read_connections: 1,
        max_body_bytes: 64 * 1024,
        cpr_pepper: Some(vidne::domain::values::Pepper::new(crate::helpers::TEST_PEPPER).unwrap()),
        signing_keys: Some(db.key_dir()),
        issuer: "https://broker.test".into(),
        origin: origin.into(),
        checkpoint_key: Some(key),
        checkpoints: Default::default(),
        public_log: false,
    };
    let other = db.dir.path().join("other-checkpoint-key");
    for (key, origin) in [
        (other, TEST_ORIGIN),
        (db.checkpoint_key(), "elsewhere.test/ledger"),
    ] {
        let err = vidne::http::Application::build(config(key, origin))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("never change"), "{err}");
    }
    let app = vidne::http::Application::build(config(db.checkpoint_key(), TEST_ORIGIN))
        .await
        .expect("the same key and origin start");
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// `vidne verify --key` holds the records to the latest stored checkpoint: a ledger whose
/// records are not the ones the key signed (here: another ledger of the same size, with
/// a genuine checkpoint copied in, as a rewrite that re-chained everything would look)
/// fails, naming the root; so does one shorter than its checkpoint.
async fn verify_holds_the_records_to_the_signed_checkpoint(backend: Backend) {
    let Running {
        db: signed,
        base,
        handle,
        http,
        admin,
        auditor,
        ledger,
        ..
    } = running(backend, 300).await;
    ledger.close().await;
    let note = sign_now(&http, &base, &admin).await;
    let vkey =
        String::from_utf8(get_ok(&http, &format!("{base}/v1/log/key"), &auditor).await).unwrap();
    handle.stop(true).await;
    let url = signed.url_string();
    let (code, out, err) = vidne(&["verify", "--database", &url, "--key", vkey.trim()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(300 records, root") && out.contains("signs these records' Merkle tree"),
        "{out}"
    );

    for (records, expected) in [
        (300, "Merkle root of records 0..=299"),
        (200, "covers 300 records"),
    ] {
        let other = TestDb::new(backend).await;
        let (ledger, _) = other.ledger().await;
        append_more(&ledger, "other", records).await;
        ledger.close().await;
        let (_, root) = body_of(&note);
        let root = match backend {
            Backend::Postgres => format!("decode('{}', 'hex')", root.to_hex()),
            Backend::Sqlite => format!("X'{}'", root.to_hex()),
        };
        other
            .exec(&format!(
                "INSERT INTO log_checkpoints (tree_size, root, note, created_us) \
                 VALUES (300, {root}, '{note}', 0)"
            ))
            .await;
        let (code, out, err) = vidne(&[
            "verify",
            "--database",
            &other.url_string(),
            "--key",
            vkey.trim(),
        ]);
        assert_eq!(code, 1, "{records} records: {out}{err}");
        assert!(
            out.contains(expected) || err.contains(expected),
            "{out}{err}"
        );
    }
}
