//! The append and read paths: conformance on both backends.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use serde_json::{json, Value};
use vidne::ledger::{AppendError, Hook, Ledger, LedgerOptions, NewEvent, Reader, Stage};
use vidne::record::Actor;
use vidne::spec::hash::{record_hash, Hash32};
use vidne::verify;

use crate::both_backends;
use crate::helpers::{event, fill, Backend, TestDb};

async fn verified(reader: &Reader) -> u64 {
    verify::verify(reader, &verify::Options::default(), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("ledger does not verify: {e}"))
        .records
}

both_backends!(
    append_and_read_back,
    stale_stream_seq_is_a_conflict,
    batches_are_all_or_nothing,
    bad_input_is_refused_naming_the_field,
    concurrent_appenders_on_two_pools_form_one_chain,
    error_before_commit_leaves_no_trace,
    guard_triggers_refuse_update_and_delete,
);

/// The database ends the writer's idle connection (as a restart or failover does). The
/// writer's next group starts with a read (here, looking up a stream it has not seen),
/// which fails before anything is written: it reconnects and commits the group without
/// reporting an error. (Had the first statement been the fast path's write, the caller
/// would be told the outcome is unknown, since it cannot tell a dead idle connection from
/// one killed mid-statement.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_reconnects_after_its_idle_connection_is_killed() {
    let db = TestDb::new(Backend::Postgres).await;
    let (ledger, reader) = db.ledger().await;
    let (other, _) = db
        .ledger_named("vidne-other-writer", LedgerOptions::default())
        .await;
    fill(&ledger, 2).await;
    other.append(vec![event("session:other", 1)]).await.unwrap();
    if let vidne::db::Db::Postgres(p) = reader.db() {
        crate::helpers::kill_backends(p, "vidne-writer").await;
    }
    let ack = ledger
        .append(vec![event("session:after", 1)])
        .await
        .unwrap();
    assert_eq!(ack[0].seq, 3);
    assert_eq!(verified(&reader).await, 4);
}

/// On PostgreSQL the writer keeps two groups in flight, the second sealed on the head the
/// first will leave. Here the first fails at the server after the second was sent: the
/// second writes nothing on a head that never came to be, and is redone under the lock,
/// taking the `seq` the failed group would have had. No gap, no trace of the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_behind_a_failed_group_is_redone() {
    let db = TestDb::new(Backend::Postgres).await;
    let (ledger, reader) = db.ledger().await;
    // The writer now knows the head: its next groups take the fast path.
    fill(&ledger, 2).await;
    db.exec(
        "CREATE FUNCTION test_doom() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.5); RAISE EXCEPTION 'doomed by the test'; END $$; \
         CREATE TRIGGER test_doom BEFORE INSERT ON ledger_records FOR EACH ROW \
         WHEN (NEW.stream = 'session:doomed') EXECUTE FUNCTION test_doom(); \
         CREATE SEQUENCE test_tries; \
         CREATE FUNCTION test_try() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM nextval('test_tries'); RETURN NEW; END $$; \
         CREATE TRIGGER test_try BEFORE INSERT ON ledger_records FOR EACH ROW \
         WHEN (NEW.stream = 'session:behind') EXECUTE FUNCTION test_try();",
    )
    .await;
    let doomed = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.append(vec![event("session:doomed", 1)]).await }
    });
    // The doomed group is in flight (asleep in its insert) when this one is sent.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let behind = ledger
        .append(vec![event("session:behind", 1)])
        .await
        .unwrap();
    let err = doomed.await.unwrap().unwrap_err();
    assert!(matches!(err, AppendError::Unavailable(_)), "{err:?}");
    assert_eq!(behind[0].seq, 2, "redone on the head the failed group left");
    assert_eq!(
        ledger.stats().groups,
        2 + 1,
        "the fill, then the group redone"
    );
    let row = reader.get(2).await.unwrap().unwrap();
    assert_eq!(
        (row.stream.as_str(), row.hash32()),
        ("session:behind", Some(behind[0].hash))
    );
    // Inserted twice (a sequence does not roll back): once behind the doomed group,
    // rolled back with it, then under the lock.
    let vidne::db::Db::Postgres(p) = reader.db() else {
        unreachable!()
    };
    let tries: i64 = sqlx::query_scalar("SELECT last_value FROM test_tries")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(
        tries, 2,
        "sent while the doomed group was in flight, then redone"
    );
    assert_eq!(verified(&reader).await, 3);
    crate::log::assert_tree_matches(&reader).await;
}

async fn append_and_read_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    let acks = ledger
        .append(vec![
            event("session:a", 1),
            event("session:b", 1),
            event("session:a", 2),
        ])
        .await
        .unwrap();
    assert_eq!(
        acks.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let more = ledger.append(vec![event("session:b", 2)]).await.unwrap();
    assert_eq!(more[0].seq, 3);

    let rows: Vec<_> = reader
        .chunks(0, u64::MAX >> 11, 2)
        .try_concat()
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    let mut prev = Hash32::ZERO;
    for (row, ack) in rows.iter().zip(acks.iter().chain(more.iter())) {
        let record: Value = serde_json::from_slice(&row.canonical).unwrap();
        assert_eq!(record["seq"], row.seq);
        assert_eq!(record["prev"], prev.to_hex());
        assert_eq!(record["actor"], "broker:neb-test-1");
        assert_eq!(record_hash(&row.canonical), ack.hash);
        assert_eq!(row.hash32(), Some(ack.hash));
        prev = ack.hash;
    }
    let head = reader.head().await.unwrap();
    assert_eq!((head.next_seq, head.last_hash), (4, prev));

    let a: Vec<i64> = reader
        .stream("session:a", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(a, vec![0, 2]);
    let b: Vec<i64> = reader
        .stream("session:b", 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.stream_seq)
        .collect();
    assert_eq!(b, vec![2]);
    assert_eq!(reader.get(3).await.unwrap().unwrap().stream, "session:b");
    assert!(reader.get(4).await.unwrap().is_none());
    assert_eq!(verified(&reader).await, 4);
}

async fn stale_stream_seq_is_a_conflict(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    ledger.append(vec![event("session:a", 1)]).await.unwrap();
    for stale in [1, 3] {
        match ledger.append(vec![event("session:a", stale)]).await {
            Err(AppendError::Conflict {
                stream,
                expected,
                actual,
            }) => {
                assert_eq!((stream.as_str(), expected, actual), ("session:a", stale, 1));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    // A new stream must start at 1.
    assert!(matches!(
        ledger.append(vec![event("session:new", 2)]).await,
        Err(AppendError::Conflict { actual: 0, .. })
    ));
    assert_eq!(reader.count().await.unwrap(), 1);
    assert_eq!(
        ledger.append(vec![event("session:a", 2)]).await.unwrap()[0].seq,
        1
    );
}

async fn batches_are_all_or_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    ledger.append(vec![event("session:a", 1)]).await.unwrap();
    // The first event is fine, the second is stale: neither is appended.
    let result = ledger
        .append(vec![event("session:b", 1), event("session:a", 1)])
        .await;
    assert!(
        matches!(result, Err(AppendError::Conflict { .. })),
        "{result:?}"
    );
    assert_eq!(reader.count().await.unwrap(), 1);
    assert!(reader.stream("session:b", 0, 10).await.unwrap().is_empty());
    // Non-consecutive positions within one stream are refused before reaching the writer.
    let result = ledger
        .append(vec![event("session:c", 1), event("session:c", 3)])
        .await;
    match result {
        Err(AppendError::Invalid(f)) => assert_eq!(f.field, "events/1/stream_seq"),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert!(matches!(
        ledger.append(vec![]).await,
        Err(AppendError::Invalid(_))
    ));
    assert_eq!(reader.count().await.unwrap(), 1);
    assert_eq!(
        ledger.append(vec![event("session:b", 1)]).await.unwrap()[0].seq,
        1
    );
    assert_eq!(verified(&reader).await, 2);
}

async fn bad_input_is_refused_naming_the_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    let actor = Actor::parse("broker:neb-test-1").unwrap();
    let good = json!({"stream": "session:x", "stream_seq": 1, "type": "login.completed", "version": 1, "data": {"a": 1}});
    let with = |member: &str, v: Value| {
        let mut e = good.clone();
        e[member] = v;
        json!([good.clone(), e])
    };
    let cases = [
        (
            with("data", json!({"amount": 12.5})),
            "events/1/data/amount",
            "floats",
        ),
        (
            with("data", json!({"n": [9_007_199_254_740_992u64]})),
            "events/1/data/n/0",
            "2^53",
        ),
        (
            with("data", json!({"n": -3})),
            "events/1/data/n",
            "negative",
        ),
        (with("data", json!([1, 2])), "events/1/data", "object"),
        (with("data", json!("text")), "events/1/data", "object"),
        (with("stream", json!("")), "events/1/stream", "<kind>:<id>"),
        (
            with("stream", json!("session")),
            "events/1/stream",
            "<kind>:<id>",
        ),
        (
            with("stream", json!("Session:x y")),
            "events/1/stream",
            "kind",
        ),
        (with("stream", json!(17)), "events/1/stream", "string"),
        (with("type", json!("")), "events/1/type", "dotted"),
        (
            with("type", json!("Login Completed")),
            "events/1/type",
            "dotted",
        ),
        (
            with("stream_seq", json!(0)),
            "events/1/stream_seq",
            "from 1",
        ),
        (with("version", json!(0)), "events/1/version", "from 1"),
        (
            json!([good.clone(), {"stream": "session:x"}]),
            "events/1/stream_seq",
            "required",
        ),
        (json!({"not": "a list"}), "events", "array"),
    ];
    for (input, field, reason) in cases {
        let err = NewEvent::list_from_json(&input, &actor).unwrap_err();
        assert_eq!(err.field, field, "{input}");
        assert!(err.reason.contains(reason), "{input}: {}", err.reason);
    }
    // A well-formed list parses and appends; nothing else was appended.
    let events = NewEvent::list_from_json(&json!([good]), &actor).unwrap();
    assert_eq!(reader.count().await.unwrap(), 0);
    assert_eq!(ledger.append(events).await.unwrap()[0].seq, 0);
}

/// 500 appenders on two independent pools and writers, as two processes would be: one
/// gapless chain that verifies, holding every acknowledged record.
async fn concurrent_appenders_on_two_pools_form_one_chain(backend: Backend) {
    const APPENDERS: usize = 500;
    const EACH: u64 = 4;
    let db = TestDb::new(backend).await;
    let (one, reader) = db.ledger().await;
    let (two, _) = db.ledger().await;
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|i| {
            let ledger: Ledger = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for k in 1..=EACH {
                    let ack = ledger
                        .append(vec![event(&format!("session:c{i}"), k)])
                        .await
                        .unwrap();
                    acks.extend(ack);
                }
                acks
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let total = APPENDERS as u64 * EACH;
    assert_eq!(acked.len() as u64, total);
    let seqs: HashSet<u64> = acked.iter().map(|a| a.seq).collect();
    assert_eq!(
        seqs.len() as u64,
        total,
        "every acknowledgement names its own seq"
    );
    assert_eq!(verified(&reader).await, total);
    for ack in &acked {
        let row = reader
            .get(ack.seq)
            .await
            .unwrap()
            .expect("acknowledged record is stored");
        assert_eq!(row.hash32(), Some(ack.hash));
    }
    assert!(
        one.stats().groups + two.stats().groups < total,
        "appends were grouped"
    );
    // The Merkle tree moved with the chain under the same lock, from both writers.
    crate::log::assert_tree_matches(&reader).await;
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// The hook returns an error.
    Fail,
    /// The writer's connection is terminated by the server (PostgreSQL only).
    Kill,
}

/// Faults injected at each stage of both append paths leave no trace and no gap: on the
/// locked path after the records are inserted but before COMMIT, on the fast path just
/// before its one write; as an error, and (PostgreSQL) as the writer's connection killed.
/// The next append takes the seq the failed one would have had.
async fn error_before_commit_leaves_no_trace(backend: Backend) {
    let db = TestDb::new(backend).await;
    let armed: Arc<Mutex<Option<(Stage, Fault)>>> = Arc::new(Mutex::new(None));
    let admin = db.pool(1).await;
    let hook: Hook = {
        let (armed, admin) = (armed.clone(), admin.clone());
        Arc::new(move |stage| {
            let fault = {
                let mut armed = armed.lock().unwrap();
                match *armed {
                    Some((at, _)) if at == stage => armed.take().map(|(_, f)| f),
                    _ => None,
                }
            };
            let admin = admin.clone();
            Box::pin(async move {
                match (fault, &admin) {
                    (Some(Fault::Fail), _) => Err("injected failure".to_owned()),
                    (Some(Fault::Kill), vidne::db::Db::Postgres(p)) => {
                        crate::helpers::kill_backends(p, "vidne-writer").await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            })
        })
    };
    let (ledger, reader) = db
        .ledger_with(LedgerOptions {
            hook: Some(hook),
            ..LedgerOptions::default()
        })
        .await;
    // Another writer, as another process: appending through it moves the head under
    // the first one, whose next group then has to take the locked path.
    let (other, _) = db
        .ledger_named("vidne-other-writer", LedgerOptions::default())
        .await;
    fill(&ledger, 3).await;
    let mut expected = 3;
    let mut n = 0;
    let mut doomed = |ledger: Ledger| {
        n += 1;
        let stream = format!("session:doomed{n}");
        async move { ledger.append(vec![event(&stream, 1)]).await }
    };

    let mut cases = vec![
        (Stage::BeforeFastAppend, Fault::Fail),
        (Stage::BeforeCommit, Fault::Fail),
    ];
    if backend == Backend::Postgres {
        cases.push((Stage::BeforeFastAppend, Fault::Kill));
        cases.push((Stage::BeforeCommit, Fault::Kill));
    }
    for (stage, fault) in cases {
        // Put the writer on the path under test: a successful append of its own makes
        // the fast path available; one by the other writer forces the locked path.
        match stage {
            Stage::BeforeFastAppend => doomed(ledger.clone()).await.unwrap(),
            Stage::BeforeCommit => doomed(other.clone()).await.unwrap(),
        };
        expected += 1;
        *armed.lock().unwrap() = Some((stage, fault));
        let err = doomed(ledger.clone()).await.unwrap_err();
        assert!(armed.lock().unwrap().is_none(), "{stage:?} was reached");
        assert!(
            matches!(
                err,
                AppendError::Unavailable(_) | AppendError::CommitUnknown(_)
            ),
            "{stage:?} {fault:?}: {err:?}"
        );
        assert_eq!(
            reader.count().await.unwrap(),
            expected,
            "{stage:?} {fault:?} left a trace"
        );
        assert_eq!(reader.head().await.unwrap().next_seq, expected);
    }

    // The writer recovers on a new connection and the chain goes on without a gap.
    let ack = doomed(ledger.clone()).await.unwrap();
    assert_eq!(ack[0].seq, expected);
    assert_eq!(verified(&reader).await, expected + 1);
    // The failed groups left no tile hash or tree edge behind either.
    crate::log::assert_tree_matches(&reader).await;
}

async fn guard_triggers_refuse_update_and_delete(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    fill(&ledger, 2).await;
    let mut statements = vec![
        "UPDATE ledger_records SET stream = 'session:x' WHERE seq = 0",
        "DELETE FROM ledger_records WHERE seq = 1",
        "DELETE FROM ledger_records",
        "UPDATE ledger_head SET next_seq = 0",
        "DELETE FROM ledger_head",
    ];
    if backend == Backend::Postgres {
        statements.push("TRUNCATE ledger_records");
    }
    for sql in statements {
        let err = match reader.db() {
            vidne::db::Db::Postgres(p) => sqlx::query(sql).execute(p).await.unwrap_err(),
            vidne::db::Db::Sqlite(p) => sqlx::query(sql).execute(p).await.unwrap_err(),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("append-only") || msg.contains("may not move back"),
            "{sql}: {msg}"
        );
    }
    assert_eq!(verified(&reader).await, 2);
}
