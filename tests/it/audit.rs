//! `GET /v1/audit/records` on both backends against a ledger `vidne simulate` filled:
//! every filter answers exactly the records this test attributes itself from the raw
//! records; pages follow the cursor; an SP key sees only its own; proofs verify with the
//! independent verifier; every answered query is in the ledger as `audit.queried`, with
//! the CPR only as its `cpr_ref`; bad input appends nothing; the role matrix holds.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Client;
use serde_json::Value;
use vidne::ledger::Reader;
use vidne::simulate::{self, Options, Plan};
use vidne::spec::hash::Hash32;

use crate::api::cli_key;
use crate::both_backends;
use crate::helpers::{spawn_app, Backend, TestDb, TEST_PEPPER};

both_backends!(audit_queries_answer_exactly_the_attributed_records);

const SESSIONS: usize = 12;
const SEED: u64 = 11;

/// `vidne simulate` against the service at `base`, which must report no failure.
pub async fn simulated(base: &str, admin: &str, seed: u64, sessions: usize, dir: &std::path::Path) {
    let summary = simulate::run(&Options {
        url: base.to_owned(),
        admin_key: admin.to_owned(),
        sessions,
        seed,
        out: dir.join("sim.json"),
        concurrency: 4,
        progress: false,
    })
    .await
    .unwrap();
    assert_eq!(summary.failure_count, 0);
}

/// A record as the test reads it from the database.
pub struct Raw {
    pub seq: u64,
    pub stream: String,
    pub event_type: String,
    pub time: String,
    pub data: Value,
    pub canonical: String,
}

pub async fn raw_records(reader: &Reader, below: u64) -> Vec<Raw> {
    let rows = reader.range(0, below - 1, u32::MAX).await.unwrap();
    rows.into_iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.canonical).unwrap();
            Raw {
                seq: r.seq as u64,
                stream: r.stream,
                event_type: r.event_type,
                time: v["time"].as_str().unwrap().to_owned(),
                data: v["data"].clone(),
                canonical: String::from_utf8(r.canonical).unwrap(),
            }
        })
        .collect()
}

/// The SP clients of each record, worked out here from the records alone: a record's own
/// `client_id`, else its session's transaction's, else (a logout) every client its
/// session served.
pub fn clients_of(records: &[Raw]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut tx_client: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for r in records {
        let s = |k: &str| r.data[k].as_str().map(str::to_owned);
        let mut clients = BTreeSet::new();
        let own = s("client_id").filter(|_| r.event_type != "audit.queried");
        match (own, s("transaction_id")) {
            (Some(c), Some(tx)) => {
                tx_client.insert((r.stream.clone(), tx), c.clone());
                clients.insert(c);
            }
            (Some(c), None) => {
                clients.insert(c);
            }
            (None, Some(tx)) => {
                clients.extend(tx_client.get(&(r.stream.clone(), tx)).cloned());
            }
            (None, None) if r.stream.starts_with("session:") => {
                clients.extend(
                    tx_client
                        .iter()
                        .filter(|((stream, _), _)| *stream == r.stream)
                        .map(|(_, c)| c.clone()),
                );
            }
            (None, None) => {}
        }
        out.insert(r.seq, clients);
    }
    out
}

struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn get(&self, key: &str, query: &[(&str, String)]) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/v1/audit/records", self.base))
            .bearer_auth(key)
            .query(query)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Every page of a query, following `next_cursor`; returns the seqs and the pages.
    async fn all(&self, key: &str, query: &[(&str, String)], limit: u32) -> Vec<Value> {
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            q.push(("limit", limit.to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let (status, page) = self.get(key, &q).await;
            assert_eq!(status, 200, "{query:?}: {page}");
            let got = page["records"].as_array().unwrap();
            assert!(got.len() <= limit as usize);
            records.extend(got.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return records,
            }
        }
    }
}

/// Every `(client_id, seq)` of `token_records`.
async fn token_records(db: &TestDb) -> Vec<(String, u64)> {
    let sql = "SELECT client_id, seq FROM token_records ORDER BY client_id, seq";
    let rows: Vec<(String, i64)> = match db.pool(1).await {
        vidne::db::Db::Postgres(p) => sqlx::query_as(sql).fetch_all(&p).await.unwrap(),
        vidne::db::Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(&p).await.unwrap(),
    };
    rows.into_iter().map(|(c, s)| (c, s as u64)).collect()
}

fn seqs(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

async fn audit_queries_answer_exactly_the_attributed_records(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let auditor = cli_key(&db, "auditor");
    let broker = cli_key(&db, "broker");
    let (base, handle) = spawn_app(&db).await;
    let dir = tempfile::tempdir().unwrap();
    simulated(&base, &admin, SEED, SESSIONS, dir.path()).await;
    let reader = Reader::new(db.pool(1).await);
    let head = reader.head().await.unwrap().next_seq;
    let api = Api {
        http: Client::new(),
        base: base.clone(),
    };
    // Wait for the index to reach the simulated records (each poll is itself recorded).
    let mut polls = 0;
    loop {
        let (status, page) = api.get(&auditor, &[("limit", "1".into())]).await;
        assert_eq!(status, 200, "{page}");
        polls += 1;
        if page["indexed_through"].as_u64().unwrap() >= head {
            break;
        }
        assert!(polls < 200, "the audit index did not reach {head}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let records = raw_records(&reader, head).await;
    let clients = clients_of(&records);
    let to = ("to_seq", (head - 1).to_string());
    let expect = |pred: &dyn Fn(&Raw) -> bool| -> Vec<u64> {
        records.iter().filter(|r| pred(r)).map(|r| r.seq).collect()
    };

    // Each filter, alone, paged 7 at a time.
    let client = records
        .iter()
        .find(|r| r.event_type == "session.logged_out" && clients[&r.seq].len() == 1)
        .map(|r| clients[&r.seq].iter().next().unwrap().clone())
        .expect("a logout of a one-SP session");
    let of_client = expect(&|r| clients[&r.seq].contains(&client));
    assert!(of_client.len() > 10);
    let got = api
        .all(&auditor, &[("client_id", client.clone()), to.clone()], 7)
        .await;
    assert_eq!(seqs(&got), of_client, "client_id={client}");
    // Several clients: the union, each record once (a logout may be both's), in order.
    let pair = records
        .iter()
        .find(|r| clients[&r.seq].len() > 1)
        .map(|r| clients[&r.seq].iter().cloned().collect::<Vec<_>>())
        .expect("a record of two SPs (a logout)");
    let of_pair = expect(&|r| pair.iter().any(|c| clients[&r.seq].contains(c)));
    let got = api
        .all(&auditor, &[("client_id", pair.join(",")), to.clone()], 7)
        .await;
    assert_eq!(seqs(&got), of_pair, "client_id={}", pair.join(","));
    for r in &got {
        let canonical = r["canonical"].as_str().unwrap();
        let seq = r["seq"].as_u64().unwrap();
        assert_eq!(canonical, records[seq as usize].canonical);
        assert_eq!(
            r["hash"].as_str().unwrap(),
            vidne::spec::hash::record_hash(canonical.as_bytes()).to_hex()
        );
    }

    let tx_record = records
        .iter()
        .find(|r| r.event_type == "session.cpr_match_completed")
        .expect("a CPR match");
    let tx = tx_record.data["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    type Params<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(Params, Vec<u64>)> = vec![
        (
            vec![("type", "session.login_completed".into())],
            expect(&|r| r.event_type == "session.login_completed"),
        ),
        (
            vec![("stream", tx_record.stream.clone())],
            expect(&|r| r.stream == tx_record.stream),
        ),
        (
            vec![("transaction_id", tx.clone())],
            expect(&|r| r.data["transaction_id"] == tx.as_str()),
        ),
        (
            vec![("idp", "ftn".into())],
            expect(&|r| {
                let txs: BTreeSet<&str> = records
                    .iter()
                    .filter(|s| s.stream == r.stream && s.data["idp"] == "ftn")
                    .filter_map(|s| s.data["transaction_id"].as_str())
                    .collect();
                r.data["idp"] == "ftn"
                    || r.data["transaction_id"]
                        .as_str()
                        .is_some_and(|t| txs.contains(t))
            }),
        ),
        (
            vec![("from_seq", "20".into()), ("to_seq", "50".into())],
            (20..=50).collect(),
        ),
        (
            vec![
                ("from_time", records[10].time.clone()),
                ("to_time", records[60].time.clone()),
                to.clone(),
            ],
            expect(&|r| r.time >= records[10].time && r.time < records[60].time),
        ),
        (
            vec![
                ("client_id", client.clone()),
                ("type", "session.transaction_started".into()),
                to.clone(),
            ],
            expect(&|r| {
                clients[&r.seq].contains(&client) && r.event_type == "session.transaction_started"
            }),
        ),
    ];
    for (query, want) in &cases {
        let mut q = query.clone();
        if !q.iter().any(|(k, _)| *k == "to_seq") {
            q.push(to.clone());
        }
        assert!(!want.is_empty(), "{q:?} should match something");
        assert_eq!(seqs(&api.all(&auditor, &q, 5).await), *want, "{q:?}");
    }

    // A CPR the plan used: the service computes its cpr_ref; the records it names are
    // found, and the query record holds the reference only.
    let cpr = Plan::new(SEED, SESSIONS)
        .sessions()
        .flat_map(|s| s.steps.into_iter().filter_map(|st| st.cpr))
        .next()
        .expect("the plan matches a CPR");
    let digits: String = cpr.reveal().chars().filter(char::is_ascii_digit).collect();
    let pepper = vidne::domain::values::Pepper::new(TEST_PEPPER).unwrap();
    let cpr_ref = pepper
        .cpr_ref(&vidne::domain::values::Cpr::parse(&digits).unwrap())
        .as_str()
        .to_owned();
    let by_cpr = api
        .all(&auditor, &[("cpr", digits.clone()), to.clone()], 50)
        .await;
    assert_eq!(
        seqs(&by_cpr),
        expect(&|r| r.data["cpr_ref"] == cpr_ref.as_str())
    );
    assert!(!by_cpr.is_empty());

    // Subject: the person's sessions from the login on.
    let login = records
        .iter()
        .find(|r| r.event_type == "session.login_completed")
        .unwrap();
    let subject = login.data["subject_key"].as_str().unwrap().to_owned();
    let by_subject = seqs(
        &api.all(&auditor, &[("subject", subject.clone()), to.clone()], 50)
            .await,
    );
    assert!(by_subject.contains(&login.seq));
    for s in &by_subject {
        let r = &records[*s as usize];
        let logged_in_before = records.iter().any(|l| {
            l.stream == r.stream && l.seq <= r.seq && l.data["subject_key"] == subject.as_str()
        });
        assert!(
            logged_in_before,
            "record {s} is not of {subject}'s sessions"
        );
    }

    // Proofs verify against the named checkpoint with the independent verifier.
    let signed = api
        .http
        .post(format!("{base}/v1/log/checkpoints"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(signed.status().is_success());
    let (status, page) = api
        .get(
            &auditor,
            &[
                ("client_id", client.clone()),
                ("proof", "true".into()),
                ("limit", "20".into()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let size = page["checkpoint"]["tree_size"].as_u64().unwrap();
    let root: Hash32 = page["checkpoint"]["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let proved = page["records"].as_array().unwrap();
    assert_eq!(proved.len(), 20);
    for r in proved {
        let path: Vec<Hash32> = r["inclusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().parse().unwrap())
            .collect();
        let leaf: Hash32 = r["hash"].as_str().unwrap().parse().unwrap();
        vidne::logverify::proof::verify_inclusion(
            r["seq"].as_u64().unwrap(),
            size,
            leaf,
            &path,
            root,
        )
        .unwrap();
    }

    // An SP key sees its own records only, and may not ask for another's.
    let sp = cli_key(&db, &format!("sp:{client}"));
    let own = api.all(&sp, std::slice::from_ref(&to), 50).await;
    assert_eq!(seqs(&own), of_client);
    let other = clients
        .values()
        .flatten()
        .find(|c| **c != client)
        .unwrap()
        .clone();
    let (status, body) = api.get(&sp, &[("client_id", other.clone())]).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("client_id")),
        "{body}"
    );
    // Nor read another SP's record through the log's routes: its own record is served,
    // another's is answered as missing, and entry bundles (everyone's records) refused.
    let read = |key: String, path: String| {
        let (http, base) = (api.http.clone(), base.clone());
        async move {
            let resp = http
                .get(format!("{base}{path}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap())
        }
    };
    let mine = of_client[0];
    let theirs = records
        .iter()
        .find(|r| !clients[&r.seq].contains(&client) && !clients[&r.seq].is_empty())
        .unwrap()
        .seq;
    let (status, body) = read(sp.clone(), format!("/v1/log/records/{mine}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, records[mine as usize].canonical.as_bytes());
    let (status, _) = read(sp.clone(), format!("/v1/log/records/{theirs}")).await;
    assert_eq!(status, 404, "another SP's record");
    let (status, _) = read(auditor.clone(), format!("/v1/log/records/{theirs}")).await;
    assert_eq!(status, 200, "an auditor reads every record");
    let (status, _) = read(sp.clone(), "/tile/entries/000".into()).await;
    assert_eq!(status, 403, "entry bundles hold every SP's records");
    let (status, _) = read(sp.clone(), "/tile/0/000.p/8".into()).await;
    assert_eq!(status, 200, "hash tiles (for proofs) stay readable");
    // But an SP reads the records its tokens bind: an SSO reuse binds the session's
    // earlier login, made in another SP's transaction.
    let (reuse, login) = records
        .iter()
        .filter(|r| r.event_type == "session.sso_reused")
        .find_map(|r| {
            let login = records[..r.seq as usize]
                .iter()
                .rev()
                .find(|l| l.stream == r.stream && l.event_type == "session.login_completed")?;
            let reuser = clients[&r.seq].iter().next()?;
            let completed = records.iter().any(|c| {
                c.event_type == "session.transaction_completed"
                    && c.stream == r.stream
                    && c.data["transaction_id"] == r.data["transaction_id"]
            });
            (completed && !clients[&login.seq].contains(reuser)).then_some((r, login))
        })
        .expect("the plan reuses a session of another SP in a completed transaction");
    let reuser = clients[&reuse.seq].iter().next().unwrap();
    let reuser_key = cli_key(&db, &format!("sp:{reuser}"));
    let (status, body) = read(reuser_key.clone(), format!("/v1/log/records/{}", login.seq)).await;
    assert_eq!(status, 200, "a login the SP's token binds");
    assert_eq!(body, login.canonical.as_bytes());
    let unbound = records
        .iter()
        .find(|r| {
            r.stream == login.stream
                && r.event_type == "session.transaction_started"
                && !clients[&r.seq].contains(reuser)
        })
        .unwrap();
    let (status, _) = read(reuser_key, format!("/v1/log/records/{}", unbound.seq)).await;
    assert_eq!(
        status, 404,
        "the other SP's transaction's start is bound by no token of it"
    );
    // Migration 0009 fills token_records for tokens sealed before it as the projection
    // writes them.
    let written = token_records(&db).await;
    assert!(written.contains(&(reuser.clone(), login.seq)));
    let migration = std::fs::read_to_string(format!(
        "migrations/{}/0009_token_records.sql",
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    ))
    .unwrap();
    let fill = &migration[migration.find("INSERT").unwrap()..];
    db.exec(&format!("DELETE FROM token_records; {fill}")).await;
    assert_eq!(token_records(&db).await, written);

    // Bad input names its field and appends nothing.
    let before = reader.head().await.unwrap().next_seq;
    for (q, field) in [
        (vec![("cpr", "12345".to_string())], "cpr"),
        (vec![("cpr_ref", "ab".into())], "cpr_ref"),
        (vec![("limit", "0".into())], "limit"),
        (
            vec![("limit", "101".into()), ("proof", "true".into())],
            "limit",
        ),
        (vec![("from_time", "yesterday".into())], "from_time"),
        (
            vec![("from_seq", "9".into()), ("to_seq", "3".into())],
            "to_seq",
        ),
        (vec![("idp", "mitid_demo".into())], "idp"),
        (vec![("client_id", "sp-a,,sp-b".into())], "client_id"),
        (vec![("type", "Login".into())], "type"),
        (vec![("subject", "nobody".into())], "subject"),
        (vec![("proof", "yes".into())], "proof"),
        (vec![("colour", "blue".into())], "colour"),
    ] {
        let (status, body) = api.get(&auditor, &q).await;
        assert_eq!(status, 400, "{q:?}: {body}");
        assert_eq!(body["field"], field, "{q:?}: {body}");
        let text = body.to_string();
        assert!(!text.contains("12345"), "the error echoes no input: {text}");
    }
    // An SP may not name another client among its own either.
    let (status, body) = api
        .get(&sp, &[("client_id", format!("{client},{other}"))])
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("client_id")));
    // The role matrix: no key, admin and broker keys are refused.
    assert_eq!(api.get("vk_nope", &[]).await.0, 401);
    assert_eq!(api.get(&admin, &[]).await.0, 403);
    assert_eq!(api.get(&broker, &[]).await.0, 403);
    assert_eq!(
        reader.head().await.unwrap().next_seq,
        before,
        "refusals append nothing"
    );

    // Every answered query is in the ledger, a CPR only as its reference.
    let (status, page) = api.get(&auditor, &[("cpr", digits.clone())]).await;
    assert_eq!(status, 200);
    let audit_seq = page["audit_seq"].as_u64().unwrap();
    let after = reader.head().await.unwrap().next_seq;
    let all = raw_records(&reader, after).await;
    let queried = &all[audit_seq as usize];
    assert_eq!(queried.event_type, "audit.queried");
    assert_eq!(queried.data["filter"]["cpr_ref"], cpr_ref.as_str());
    assert_eq!(queried.data["role"], "auditor");
    let recorded = all
        .iter()
        .filter(|r| r.event_type == "audit.queried")
        .count();
    assert!(
        recorded > 20,
        "each answered query left a record ({recorded})"
    );
    for r in &all {
        assert!(
            !r.canonical.contains(&digits),
            "record {} holds the CPR",
            r.seq
        );
    }
    let sp_queries: Vec<_> = all
        .iter()
        .filter(|r| r.event_type == "audit.queried" && r.data["role"] == format!("sp:{client}"))
        .collect();
    assert!(!sp_queries.is_empty());
    assert!(sp_queries
        .iter()
        .all(|r| r.data["client_id"] == client.as_str()));

    reader.db().close().await;
    handle.stop(true).await;
}

/// `vidne serve` logging at `debug` (every request's span, the database's statements)
/// never writes a CPR number asked for in a query string, valid or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpr_in_a_query_is_never_logged() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let db = TestDb::new(Backend::Sqlite).await;
    let auditor = cli_key(&db, "auditor");
    let url = db.url_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vidne"))
        .args(["serve", "--database", &url, "--listen", "127.0.0.1:0"])
        .args(["--log", "debug", "--log-format", "json"])
        .env("VIDNE_CPR_PEPPER", "vidne-test-pepper-0123456789abcdef")
        .env_remove("DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let port = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited: {seen}"
        );
        seen.push_str(&line);
        if line.contains("vidne serving") {
            let v: Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["port"].as_u64().unwrap();
        }
    };
    let http = Client::new();
    let base = format!("http://127.0.0.1:{port}/v1/audit/records");
    // A valid CPR, one that is not a date, and one with a bad shape.
    for (cpr, status) in [
        ("0707614286", 200),
        ("3213614286", 400),
        ("07076142866", 400),
    ] {
        let resp = http
            .get(&base)
            .bearer_auth(&auditor)
            .query(&[("cpr", cpr)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{cpr}");
    }
    terminate(child.id());
    child.wait().unwrap();
    stderr.read_to_string(&mut seen).unwrap();
    assert!(
        seen.contains("/v1/audit/records"),
        "the requests were logged: {seen}"
    );
    for digits in ["0707614286", "3213614286", "07076142866", "070761"] {
        assert!(!seen.contains(digits), "the log holds {digits}: {seen}");
    }
}

/// SIGTERM, so the service shuts down as an operator's would.
fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

both_backends!(session_trails_keep_open_transactions_a_row_each);

/// The audit index keeps a session's open transactions a row each across batches: a later
/// record that names only its transaction is its client's; an ended transaction's row
/// goes (its client stays the session's, for the logout); a logout concerns every client
/// the session served and removes the session. Migration 0012 moves the transactions of
/// trails stored before it into those rows.
async fn session_trails_keep_open_transactions_a_row_each(backend: Backend) {
    use vidne::ledger::NewEvent;
    use vidne::projection::audit::AuditIndex;
    use vidne::record::{Actor, Event, EventType, Payload, SchemaVersion, StreamId};

    let db = TestDb::new(backend).await;
    let (ledger, reader) = db.ledger().await;
    let index = AuditIndex::new(db.pool(1).await, reader.clone());
    let mut stream_seq = 0;
    let mut append = |event_type: &str, data: Value| {
        stream_seq += 1;
        let event = NewEvent {
            stream_seq,
            event: Event {
                stream: StreamId::parse("session:long").unwrap(),
                event_type: EventType::parse(event_type).unwrap(),
                version: SchemaVersion::parse(1).unwrap(),
                actor: Actor::parse("broker:neb-test-1").unwrap(),
                data: Payload::parse(&data).unwrap(),
            },
        };
        let ledger = ledger.clone();
        async move { ledger.append(vec![event]).await.unwrap()[0].seq }
    };
    let started = |t: usize, client: &str| serde_json::json!({"transaction_id": format!("t{t}"), "client_id": client, "idp": "mitid"});
    append("session.transaction_started", started(0, "sp-a")).await;
    index.catch_up().await.unwrap();
    // Many more open transactions, over several batches.
    for t in 1..=40 {
        append("session.transaction_started", started(t, "sp-b")).await;
        if t % 10 == 0 {
            index.catch_up().await.unwrap();
        }
    }
    let signed = append(
        "session.transaction_signed",
        serde_json::json!({"transaction_id": "t0", "text_type": "text"}),
    )
    .await;
    append(
        "session.transaction_completed",
        serde_json::json!({"transaction_id": "t0", "client_id": "sp-a"}),
    )
    .await;
    index.catch_up().await.unwrap();

    let clients_of = |seq: u64| {
        let db = reader.db().clone();
        async move {
            let sql = "SELECT client_id FROM audit_clients WHERE seq = $1 ORDER BY client_id";
            let seq = seq as i64;
            let rows: Vec<String> = vidne::on_pool!(&db, p => sqlx::query_scalar(sql)
                .bind(seq)
                .fetch_all(p)
                .await
                .unwrap());
            rows
        }
    };
    let open = || {
        let db = reader.db().clone();
        async move {
            let sql = "SELECT transaction_id FROM audit_session_transactions \
                       WHERE session_id = 'long' ORDER BY transaction_id";
            let rows: Vec<String> =
                vidne::on_pool!(&db, p => sqlx::query_scalar(sql).fetch_all(p).await.unwrap());
            rows
        }
    };
    let state = || {
        let db = reader.db().clone();
        async move {
            let sql = "SELECT state FROM audit_sessions WHERE session_id = 'long'";
            let rows: Vec<String> =
                vidne::on_pool!(&db, p => sqlx::query_scalar(sql).fetch_all(p).await.unwrap());
            rows
        }
    };
    assert_eq!(
        clients_of(signed).await,
        ["sp-a"],
        "from t0's row, stored 4 batches before"
    );
    let still_open = open().await;
    assert_eq!(still_open.len(), 40);
    assert!(!still_open.contains(&"t0".to_owned()), "t0 ended");
    let trail: Value = serde_json::from_str(&state().await[0]).unwrap();
    assert_eq!(
        trail,
        serde_json::json!({"served": ["sp-a"]}),
        "no transactions in the trail"
    );

    let logout = append("session.logged_out", serde_json::json!({})).await;
    index.catch_up().await.unwrap();
    assert_eq!(clients_of(logout).await, ["sp-a", "sp-b"]);
    assert!(
        open().await.is_empty() && state().await.is_empty(),
        "the session is gone"
    );

    // A trail stored before migration 0012, its transactions inside it.
    db.exec(
        "INSERT INTO audit_sessions (session_id, state) VALUES ('old', \
         '{\"subject_key\":\"k1\",\"transactions\":{\"t7\":[\"sp-c\",\"nemid\"],\"t8\":[\"sp-d\",null]},\"served\":[\"sp-e\"]}')",
    )
    .await;
    let migration = std::fs::read_to_string(format!(
        "migrations/{}/0012_audit_session_transactions.sql",
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    ))
    .unwrap();
    db.exec(&migration[migration.find("INSERT").unwrap()..])
        .await;
    let sql = "SELECT transaction_id, client_id, idp FROM audit_session_transactions \
               WHERE session_id = 'old' ORDER BY transaction_id";
    let moved: Vec<(String, String, Option<String>)> = vidne::on_pool!(reader.db(), p =>
        sqlx::query_as(sql).fetch_all(p).await.unwrap());
    assert_eq!(
        moved,
        [
            ("t7".into(), "sp-c".into(), Some("nemid".into())),
            ("t8".into(), "sp-d".into(), None)
        ]
    );
    let sql = "SELECT state FROM audit_sessions WHERE session_id = 'old'";
    let kept: String = vidne::on_pool!(reader.db(), p =>
        sqlx::query_scalar(sql).fetch_one(p).await.unwrap());
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(
        kept,
        serde_json::json!({"subject_key": "k1", "served": ["sp-e"]})
    );
}
