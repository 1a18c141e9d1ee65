//! Per-record CPU cost on the append and verify paths, next to raw SHA-256 over the same
//! bytes (the floor): `cargo bench --bench record`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use std::hint::black_box;
use vidne::record::{
    Actor, Event, EventType, Payload, Record, RecordTime, SchemaVersion, StreamId,
};
use vidne::spec::canonical;
use vidne::spec::hash::{record_hash, Hash32};

fn event() -> Event {
    Event {
        stream: StreamId::parse("session:0f8a2c").unwrap(),
        event_type: EventType::parse("login.completed").unwrap(),
        version: SchemaVersion::parse(1).unwrap(),
        actor: Actor::parse("broker:neb-prod-1").unwrap(),
        data: Payload::parse(&json!({
            "transaction_id": "18a2c4f0-0001-00000042", "client_id": "sp-bench-07",
            "environment": "PROD", "idp": "mitid", "identity_type": "private",
            "loa": "https://data.gov.dk/concept/core/nsis/loa/Substantial",
            "amr": ["mitid.code_app"], "mitid.uuid": "7f0c1e2d-0007-4c3b-9a8e-00000000002a", "attempt": 42
        }))
        .unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let ev = event();
    let prev = record_hash(b"prev");
    let time = RecordTime::from_micros(1_795_253_400_000_000).unwrap();
    let record = Record::new(41, &prev, &time, 42, &ev).unwrap();
    let bytes = record.canonical().to_vec();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sha256 only (floor)", |b| {
        b.iter(|| black_box(record_hash(black_box(&bytes))))
    });
    g.bench_function("seal: Record::new (bytes + hash)", |b| {
        b.iter(|| black_box(Record::new(41, &prev, &time, 42, black_box(&ev)).unwrap()))
    });
    g.bench_function("verify: parse + canonicalize + hash", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            let again = canonical::to_vec(&v).unwrap();
            black_box((again == bytes, record_hash(&bytes) == Hash32::ZERO))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
