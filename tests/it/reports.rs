//! `GET /v1/reports/compliance` on both backends: on a ledger `vidne simulate` filled,
//! with maintenance windows announced around the second run's flow errors, every count
//! of every client, day, month and total equals the count this test makes itself from
//! the raw records below the checkpoint the report names; CSV and HTML say the same;
//! an SP key sees its own report only; bad parameters are named; the role matrix holds.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Client;
use serde_json::{json, Value};
use vidne::ledger::Reader;

use crate::api::cli_key;
use crate::audit::{clients_of, raw_records, simulated, Raw};
use crate::both_backends;
use crate::helpers::{spawn_app, Backend, TestDb};

both_backends!(report_counts_equal_the_raw_records);

/// metric → key → count.
type Counts = BTreeMap<String, BTreeMap<String, u64>>;

fn bump(c: &mut Counts, metric: &str, key: &str) {
    *c.entry(metric.into())
        .or_default()
        .entry(key.into())
        .or_default() += 1;
}

/// client → day → counts, made from the records alone.
fn recount(records: &[Raw]) -> BTreeMap<String, BTreeMap<String, Counts>> {
    let clients = clients_of(records);
    // window id → (idp, environment, from, to, recorded seq, cancelled seq)
    type Window = (String, Option<String>, String, String, u64, Option<u64>);
    let mut windows: BTreeMap<String, Window> = BTreeMap::new();
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    let mut out: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
    for r in records {
        let s = |k: &str| r.data[k].as_str().unwrap_or("none").to_owned();
        match r.event_type.as_str() {
            "maintenance.window_recorded" => {
                let env = r.data["environment"].as_str().map(str::to_owned);
                windows.insert(
                    s("window_id"),
                    (s("idp"), env, s("from"), s("to"), r.seq, None),
                );
                continue;
            }
            "maintenance.window_cancelled" => {
                windows.get_mut(&s("window_id")).unwrap().5 = Some(r.seq);
                continue;
            }
            "client.registered" => {
                environment.insert(s("client_id"), s("environment"));
                continue;
            }
            _ => {}
        }
        let mut adds: Vec<(&str, String)> = Vec::new();
        match r.event_type.as_str() {
            "session.login_completed" => {
                let loa = match r.data["loa"].as_str() {
                    Some(uri) => uri.rsplit('/').next().unwrap().to_lowercase(),
                    None => "none".into(),
                };
                adds.push(("logins", format!("{}|{loa}", s("idp"))));
            }
            "session.transaction_signed" => adds.push(("signings", s("transaction_text_type"))),
            "session.cpr_match_completed" => {
                adds.push(("cpr_matches", "attempt".into()));
                let matched = r.data["matched"] == true;
                adds.push((
                    "cpr_matches",
                    if matched { "match" } else { "mismatch" }.into(),
                ));
            }
            "session.cpr_match_refused" => {
                adds.push(("cpr_matches", "attempt".into()));
                adds.push(("cpr_matches", "exceeded".into()));
            }
            "session.pid_lookup_completed" => adds.push(("pid_lookups", s("pid_status"))),
            "transfer.code_issued" => adds.push(("transfers", "issued".into())),
            "transfer.code_exchanged" => adds.push(("transfers", "exchanged".into())),
            "transfer.exchange_refused" => adds.push(("transfers", "refused".into())),
            "session.flow_failed" => adds.push(("flow_errors", s("error_description"))),
            _ => continue,
        }
        for client in &clients[&r.seq] {
            let day = out
                .entry(client.clone())
                .or_default()
                .entry(r.time[..10].to_owned())
                .or_default();
            for (metric, key) in &adds {
                bump(day, metric, key);
            }
            if r.event_type == "session.flow_failed" {
                let (idp, at) = (s("idp"), s("at"));
                let inside = windows.values().any(|(w_idp, env, from, to, rec, cancel)| {
                    *w_idp == idp
                        && *rec < r.seq
                        && cancel.is_none_or(|c| c > r.seq)
                        && env
                            .as_ref()
                            .is_none_or(|e| environment.get(client) == Some(e))
                        && *from <= at
                        && at < *to
                });
                if inside {
                    bump(day, "maintenance_failures", &idp);
                }
            }
        }
    }
    out
}

/// The report's counts object with its empty metrics left out.
fn nonempty(counts: &Value) -> Counts {
    let mut out = Counts::new();
    for (metric, keys) in counts.as_object().unwrap() {
        for (key, n) in keys.as_object().unwrap() {
            out.entry(metric.clone())
                .or_default()
                .insert(key.clone(), n.as_u64().unwrap());
        }
    }
    out
}

fn sum(into: &mut Counts, from: &Counts) {
    for (metric, keys) in from {
        for (key, n) in keys {
            *into
                .entry(metric.clone())
                .or_default()
                .entry(key.clone())
                .or_default() += n;
        }
    }
}

struct Api {
    http: Client,
    base: String,
}

impl Api {
    async fn get(&self, key: Option<&str>, query: &[(&str, &str)]) -> (u16, String, String) {
        let mut req = self
            .http
            .get(format!("{}/v1/reports/compliance", self.base))
            .query(query);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, resp.text().await.unwrap())
    }

    async fn json(&self, key: &str, query: &[(&str, &str)]) -> Value {
        let (status, ct, body) = self.get(Some(key), query).await;
        assert_eq!(status, 200, "{query:?}: {body}");
        assert_eq!(ct, "application/json");
        serde_json::from_str(&body).unwrap()
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let out: Value = resp.json().await.unwrap_or(Value::Null);
        assert!((200..300).contains(&status), "{path}: {status} {out}");
        out
    }
}

async fn report_counts_equal_the_raw_records(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let auditor = cli_key(&db, "auditor");
    let broker = cli_key(&db, "broker");
    let (base, handle) = spawn_app(&db).await;
    let api = Api {
        http: Client::new(),
        base: base.clone(),
    };
    let dir = tempfile::tempdir().unwrap();

    // Before any checkpoint is counted: 503, named.
    let (status, _, body) = api.get(Some(&auditor), &[]).await;
    assert_eq!(status, 503, "{body}");

    simulated(&base, &admin, 21, 10, dir.path()).await;
    // Windows around now for every IdP (one for CURRENT only, one cancelled), then a
    // second run whose flow errors fall inside them.
    let now = chrono::Utc::now();
    let (from, to) = (
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(2)).to_rfc3339(),
    );
    let idps = [
        "mitid",
        "mitid_erhverv",
        "nemid",
        "bankid_no",
        "bankid_mobile_no",
        "buypass_no",
        "bankid_se",
        "ftn",
    ];
    for (i, idp) in idps.iter().enumerate() {
        let mut w = json!({"window_id": format!("now-{idp}"), "idp": idp,
                           "from": from, "to": to, "note": "IdP maintenance"});
        if i == 1 {
            w["environment"] = "CURRENT".into();
        }
        api.post(&broker, "/v1/maintenance-windows", w).await;
    }
    api.post(
        &broker,
        "/v1/maintenance-windows/now-nemid/cancel",
        json!({"note": "called off"}),
    )
    .await;
    simulated(&base, &admin, 22, 10, dir.path()).await;
    let signed = api
        .http
        .post(format!("{base}/v1/log/checkpoints"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    // A signed note: origin, tree size, root, then the signature.
    let note = signed.text().await.unwrap();
    let signed_size: u64 = note.lines().nth(1).unwrap().parse().unwrap();

    let all = api
        .json(&auditor, &[("from", "2020-01-01"), ("to", "2020-12-31")])
        .await;
    assert_eq!(all["clients"], json!([]), "nothing in 2020");
    let today = now.date_naive();
    let (first, last) = (
        (today - chrono::Duration::days(1)).to_string(),
        (today + chrono::Duration::days(1)).to_string(),
    );
    let period = [("from", first.as_str()), ("to", last.as_str())];
    let report = api.json(&auditor, &period).await;
    let size = report["checkpoint"]["tree_size"].as_u64().unwrap();
    assert!(
        size >= signed_size,
        "the report waits for the latest checkpoint"
    );

    // The checkpoint it names is the log's own.
    let resp = api
        .http
        .get(format!("{base}/v1/log/checkpoints/{size}"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let note = resp.text().await.unwrap();
    assert_eq!(report["checkpoint"]["note"], note.as_str());

    // Recount from the raw records below that size.
    let reader = Reader::new(db.pool(1).await);
    let records = raw_records(&reader, size).await;
    let expected = recount(&records);
    let got_clients: BTreeSet<String> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got_clients, expected.keys().cloned().collect());
    let mut seen = BTreeSet::new();
    for c in report["clients"].as_array().unwrap() {
        let id = c["client_id"].as_str().unwrap();
        let days = &expected[id];
        let mut total = Counts::new();
        for d in c["days"].as_array().unwrap() {
            let day = d["day"].as_str().unwrap();
            assert_eq!(nonempty(&d["counts"]), days[day], "{id} {day}");
        }
        assert_eq!(c["days"].as_array().unwrap().len(), days.len(), "{id}");
        for counts in days.values() {
            sum(&mut total, counts);
            seen.extend(counts.keys().cloned());
        }
        assert_eq!(nonempty(&c["totals"]), total, "{id} totals");
        let mut months = Counts::new();
        for m in c["months"].as_array().unwrap() {
            sum(&mut months, &nonempty(&m["counts"]));
        }
        assert_eq!(months, total, "{id}: the months add up to the total");
    }
    // The simulation exercised every family of counts.
    for metric in [
        "logins",
        "signings",
        "cpr_matches",
        "pid_lookups",
        "transfers",
        "flow_errors",
        "maintenance_failures",
    ] {
        assert!(seen.contains(metric), "nothing counted as {metric}");
    }
    let transfers: BTreeSet<String> = expected
        .values()
        .flat_map(|d| d.values())
        .flat_map(|c| {
            c.get("transfers")
                .into_iter()
                .flat_map(|k| k.keys().cloned())
        })
        .collect();
    assert!(transfers.contains("refused"), "{transfers:?}");

    // One client: the same numbers; its SP key gets the same and no other's.
    let client = report["clients"][0]["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = api
        .json(
            &auditor,
            &[
                ("client_id", client.as_str()),
                ("from", &first),
                ("to", &last),
            ],
        )
        .await;
    assert_eq!(one["clients"].as_array().unwrap().len(), 1);
    assert_eq!(one["clients"][0], report["clients"][0]);
    let sp = cli_key(&db, &format!("sp:{client}"));
    let own = api.json(&sp, &period).await;
    assert_eq!(own["clients"].as_array().unwrap().len(), 1);
    assert_eq!(own["clients"][0]["client_id"], client.as_str());
    let other = report["clients"][1]["client_id"].as_str().unwrap();
    let (status, _, body) = api
        .get(Some(&sp), &[("client_id", other), ("from", &first)])
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["field"],
        "client_id"
    );

    // CSV: the same totals; every row names the checkpoint.
    let (status, ct, csv) = api
        .get(
            Some(&auditor),
            &[("from", &first), ("to", &last), ("format", "csv")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "text/csv; charset=utf-8");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "client_id,granularity,period,metric,key,count,tree_size,root"
    );
    let root = report["checkpoint"]["root"].as_str().unwrap();
    let mut csv_totals: BTreeMap<String, Counts> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 8, "{line}");
        assert_eq!((f[6], f[7]), (size.to_string().as_str(), root), "{line}");
        if f[1] == "total" {
            csv_totals
                .entry(f[0].into())
                .or_default()
                .entry(f[3].into())
                .or_default()
                .insert(f[4].into(), f[5].parse().unwrap());
        }
    }
    for c in report["clients"].as_array().unwrap() {
        let id = c["client_id"].as_str().unwrap();
        assert_eq!(csv_totals[id], nonempty(&c["totals"]), "{id} CSV");
    }

    // HTML: a page with charts, no scripts, naming the checkpoint.
    let (status, ct, html) = api
        .get(
            Some(&auditor),
            &[("from", &first), ("to", &last), ("format", "html")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"), "charts");
    assert!(!html.to_lowercase().contains("<script"), "no scripts");
    assert!(html.contains(root) && html.contains(&format!("<strong>{size}</strong>")));
    assert!(html.contains(&format!("SP client {client}")));

    // Bad parameters: 400 naming the field.
    for (query, field) in [
        (vec![("from", "2026-13-01")], "from"),
        (vec![("to", "yesterday")], "to"),
        (vec![("from", "2026-11-02"), ("to", "2026-11-01")], "to"),
        (vec![("from", "2024-01-01"), ("to", "2026-01-01")], "to"),
        (vec![("format", "pdf")], "format"),
        (vec![("client_id", "")], "client_id"),
        (vec![("clientid", "x")], "clientid"),
    ] {
        let (status, _, body) = api.get(Some(&auditor), &query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["field"], field, "{query:?}: {err}");
    }
    // Role matrix: auditor and SP above; admin and broker refused; no key 401.
    for key in [&admin, &broker] {
        let (status, _, body) = api.get(Some(key), &period).await;
        assert_eq!(status, 403, "{body}");
    }
    for key in [None, Some("not-a-key")] {
        let (status, _, body) = api.get(key, &period).await;
        assert_eq!(status, 401, "{body}");
    }
    reader.db().close().await;
    handle.stop(true).await;
}
