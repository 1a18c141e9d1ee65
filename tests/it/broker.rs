//! The broker routes over HTTP on both backends: every flow, every refusal (nothing
//! appended, except the recorded 4th CPR match), the role matrix, the client view
//! loaded from the ledger, and no CPR digits in any stored record.

use hmac::{Hmac, Mac};
use reqwest::Client;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::api::{cli_key, post};
use crate::both_backends;
use crate::helpers::{spawn_app, vidne, Backend, TestDb, TEST_PEPPER};

const SUBSTANTIAL: &str = "https://data.gov.dk/concept/core/nsis/Substantial";
const HIGH: &str = "https://data.gov.dk/concept/core/nsis/High";
const MITID_UUID: &str = "7d1b3c1e-5a4f-4a8e-9b7e-2f1c3d4e5a6b";
const CPR: &str = "010190-1234";
const CPR_DIGITS: &str = "0101901234";
const CODE: &str = "38e195d6-14ad-4ed9-9f0b-d72a26c8ed95";

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn cpr_ref(digits: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(TEST_PEPPER).unwrap();
    mac.update(format!("dk:{digits}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn in_minutes(m: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(m)).to_rfc3339()
}

/// A running service with an admin and a broker key and two registered clients.
struct Broker {
    db: TestDb,
    http: Client,
    base: String,
    admin: String,
    key: String,
    handle: actix_web::dev::ServerHandle,
}

impl Broker {
    async fn start(backend: Backend) -> Broker {
        let db = TestDb::new(backend).await;
        let admin = cli_key(&db, "admin");
        let key = cli_key(&db, "broker");
        let (base, handle) = spawn_app(&db).await;
        let b = Broker {
            db,
            http: Client::new(),
            base,
            admin,
            key,
            handle,
        };
        for (client, env) in [
            ("sp-acme", "PROD"),
            ("sp-b", "PROD"),
            ("sp-acme", "CURRENT"),
        ] {
            let body = json!({"client_id": client, "environment": env, "name": "An SP"});
            let (status, out) = b.post_as(&b.admin.clone(), "/v1/clients", body).await;
            assert_eq!(status, 201, "{out}");
        }
        b
    }

    async fn post_as(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let (s, v) = post(&self.http, &format!("{}{path}", self.base), Some(key), body).await;
        (s.as_u16(), v)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_as(&self.key, path, body).await
    }

    /// Posts, expecting 201; returns the answer.
    async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.post(path, body.clone()).await;
        assert_eq!(status, 201, "{path} {body}: {out}");
        out
    }

    /// Posts, expecting a 400 with `error_description` and `field`, and nothing appended.
    async fn refused(&self, path: &str, body: Value, description: &str, field: Option<&str>) {
        let before = self.count().await;
        let (status, out) = self.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {out}");
        assert_eq!(
            out["error_description"], description,
            "{path} {body}: {out}"
        );
        assert_eq!(out["field"].as_str(), field, "{path} {body}: {out}");
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["error", "error_description", "field"].contains(&k.as_str())),
            "{out}"
        );
        assert_eq!(self.count().await, before, "{path}: nothing appended");
    }

    /// Refused like [`Self::refused`], but the refusal is recorded: exactly one record,
    /// of `event_type`, whose `error_description` is the answer's. Returns its data.
    async fn refused_recorded(
        &self,
        path: &str,
        body: Value,
        description: &str,
        field: Option<&str>,
        event_type: &str,
    ) -> Value {
        let before = self.count().await;
        let (status, out) = self.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {out}");
        assert_eq!(out["error_description"], description, "{path}: {out}");
        assert_eq!(out["field"].as_str(), field, "{path}: {out}");
        assert_eq!(
            self.count().await,
            before + 1,
            "{path}: the refusal is recorded"
        );
        let last = self.records().await.pop().unwrap();
        assert_eq!(last["type"], event_type);
        assert_eq!(last["data"]["error_description"], description);
        last["data"].clone()
    }

    async fn count(&self) -> u64 {
        let reader = vidne::ledger::Reader::new(self.db.pool(1).await);
        let n = reader.count().await.unwrap();
        reader.db().close().await;
        n
    }

    /// Every stored record, parsed.
    async fn records(&self) -> Vec<Value> {
        let reader = vidne::ledger::Reader::new(self.db.pool(1).await);
        let rows = reader.range(0, u64::MAX, 100_000).await.unwrap();
        reader.db().close().await;
        rows.iter()
            .map(|r| {
                let text = String::from_utf8(r.canonical.clone()).unwrap();
                assert!(!text.contains(CPR_DIGITS) && !text.contains(CPR), "{text}");
                serde_json::from_str(&text).unwrap()
            })
            .collect()
    }

    /// Starts a MitID session with its login; returns the session path.
    async fn mitid_session(&self, session: &str, tx: &str, signed: bool) -> String {
        let out = self
            .ok("/v1/sessions", mitid_start(Some(session), tx, signed))
            .await;
        assert_eq!(out["session_id"], session);
        format!("/v1/sessions/{session}")
    }

    async fn stop(self) {
        let url = self.db.url_string();
        let (code, _, err) = vidne(&["verify", "--database", &url]);
        assert_eq!(code, 0, "{err}");
        self.handle.stop(true).await;
    }
}

fn mitid_start(session: Option<&str>, tx: &str, signed: bool) -> Value {
    let mut body = json!({
        "transaction_id": tx,
        "client_id": "sp-acme",
        "environment": "PROD",
        "idp": "mitid",
        "signed_request": signed,
        "identity_type": "private",
        "loa": SUBSTANTIAL,
        "ial": SUBSTANTIAL,
        "aal": HIGH,
        "amr": ["code_app"],
        "subject": {"mitid.uuid": MITID_UUID},
    });
    if let Some(s) = session {
        body["session_id"] = s.into();
    }
    body
}

fn types(out: &Value) -> Vec<&str> {
    out["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect()
}

both_backends!(
    mitid_session_flows,
    cpr_matches_are_limited_and_the_fourth_is_recorded,
    controlled_transfer,
    refusals_append_nothing,
    logins_of_every_idp,
    maintenance_windows,
    role_matrix,
    client_view_comes_from_the_ledger,
);

async fn mitid_session_flows(backend: Backend) {
    let b = Broker::start(backend).await;
    let before = b.count().await;

    // Start + login in one call, Vidne making the session id.
    let out = b.ok("/v1/sessions", mitid_start(None, "tx-1", true)).await;
    let session = out["session_id"].as_str().unwrap().to_owned();
    assert!(session.starts_with("s_"), "{out}");
    assert_eq!(
        types(&out),
        ["session.transaction_started", "session.login_completed"]
    );
    let records = out["records"].as_array().unwrap();
    assert_eq!(records[0]["seq"], before);
    assert_eq!(records[1]["seq"], before + 1);
    assert_eq!(records[1]["stream"], format!("session:{session}"));
    assert_eq!(records[1]["stream_seq"], 2);
    assert_eq!(records[1]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        records[1]["data"]["subject_key"],
        format!("mitid:{MITID_UUID}")
    );
    let s = format!("/v1/sessions/{session}");

    // Signing, with an html text and a reference text.
    let html = "<html><body><p>Overfør <b>1.000 kr</b> til Acme</p></body></html>";
    let out = b
        .ok(
            &format!("{s}/signings"),
            json!({"transaction_id": "tx-1", "transaction_text": b64(html),
                   "transaction_text_type": "html", "reference_text": b64("Faktura 42")}),
        )
        .await;
    assert_eq!(types(&out), ["session.transaction_signed"]);
    assert_eq!(out["records"][0]["data"]["transaction_text"], b64(html));
    assert_eq!(out["records"][0]["seq"], before + 2);

    // A PID lookup with the SP's CPR: recorded as a reference only.
    let out = b
        .ok(
            &format!("{s}/pid-lookups"),
            json!({"transaction_id": "tx-1", "pid_status": "success",
                   "pid": "9208-2002-2-123456789012", "cpr": CPR}),
        )
        .await;
    assert_eq!(out["records"][0]["data"]["cpr_ref"], cpr_ref(CPR_DIGITS));
    b.ok(
        &format!("{s}/pid-lookups"),
        json!({"transaction_id": "tx-1", "pid_status": "unable_to_lookup"}),
    )
    .await;

    // A second transaction started in the session, authenticated by SSO reuse.
    let out = b
        .ok(
            &format!("{s}/transactions"),
            json!({"transaction_id": "tx-2", "client_id": "sp-acme", "environment": "PROD",
                   "idp": "mitid"}),
        )
        .await;
    assert_eq!(types(&out), ["session.transaction_started"]);
    let out = b
        .ok(
            &format!("{s}/sso-reuse"),
            json!({"transaction_id": "tx-2", "action": "mitid.sso_login"}),
        )
        .await;
    assert_eq!(
        out["records"][0]["data"]["subject_key"],
        format!("mitid:{MITID_UUID}")
    );

    // A third, started then logged in separately (re-authentication), then a flow error
    // in a fourth.
    b.ok(
        &format!("{s}/transactions"),
        json!({"transaction_id": "tx-3", "client_id": "sp-acme", "environment": "PROD",
               "idp": "mitid"}),
    )
    .await;
    let mut login = mitid_start(None, "tx-3", false);
    for k in ["client_id", "environment", "idp", "signed_request"] {
        login.as_object_mut().unwrap().remove(k);
    }
    let out = b.ok(&format!("{s}/logins"), login).await;
    assert_eq!(types(&out), ["session.login_completed"]);
    b.ok(
        &format!("{s}/transactions"),
        json!({"transaction_id": "tx-4", "client_id": "sp-acme", "environment": "PROD",
               "idp": "mitid"}),
    )
    .await;
    let out = b
        .ok(
            "/v1/flow-errors",
            json!({"session_id": session, "transaction_id": "tx-4", "error": "access_denied",
                   "error_description": "mitid_user_aborted"}),
        )
        .await;
    assert_eq!(types(&out), ["session.flow_failed"]);
    b.refused(
        &format!("{s}/sso-reuse"),
        json!({"transaction_id": "tx-4", "action": "mitid.sso_login"}),
        "transaction_failed",
        Some("transaction_id"),
    )
    .await;

    // The SSO transaction completes; then it takes nothing more. An unauthenticated one
    // cannot complete.
    let out = b
        .ok(
            &format!("{s}/completions"),
            json!({"transaction_id": "tx-2"}),
        )
        .await;
    assert_eq!(types(&out), ["session.transaction_completed"]);
    assert_eq!(out["records"][0]["data"]["client_id"], "sp-acme");
    b.refused(
        &format!("{s}/completions"),
        json!({"transaction_id": "tx-2"}),
        "transaction_completed",
        Some("transaction_id"),
    )
    .await;
    b.refused(
        &format!("{s}/completions"),
        json!({"transaction_id": "tx-4"}),
        "transaction_failed",
        Some("transaction_id"),
    )
    .await;

    // Back-channel logout; then nothing more.
    let out = b.ok(&format!("{s}/logout"), json!({})).await;
    assert_eq!(types(&out), ["session.logged_out"]);
    assert_eq!(out["records"][0]["data"]["channel"], "back_channel");
    b.refused(
        &format!("{s}/signings"),
        json!({"transaction_id": "tx-1", "transaction_text": b64("x"),
               "transaction_text_type": "text"}),
        "session_logged_out",
        None,
    )
    .await;
    b.refused(
        &format!("{s}/transactions"),
        json!({"transaction_id": "tx-9", "client_id": "sp-acme", "environment": "PROD",
               "idp": "mitid"}),
        "session_logged_out",
        None,
    )
    .await;
    b.refused(
        &format!("{s}/logout"),
        json!({}),
        "session_logged_out",
        None,
    )
    .await;
    b.refused(
        "/v1/flow-errors",
        json!({"session_id": session, "transaction_id": "tx-2", "error": "access_denied",
               "error_description": "mitid_user_aborted"}),
        "session_logged_out",
        None,
    )
    .await;

    // Every record of the session is a broker's, in order.
    let records = b.records().await;
    let session_records: Vec<&Value> = records
        .iter()
        .filter(|r| r["stream"] == format!("session:{session}"))
        .collect();
    assert_eq!(session_records.len(), 13);
    for r in &session_records {
        assert!(
            r["actor"].as_str().unwrap().starts_with("broker:key_"),
            "{r}"
        );
    }
    b.stop().await;
}

async fn cpr_matches_are_limited_and_the_fourth_is_recorded(backend: Backend) {
    let b = Broker::start(backend).await;
    let s = b.mitid_session("s-cpr", "tx-1", false).await;
    let path = format!("{s}/cpr-matches");
    for (attempt, (cpr, matched)) in [(CPR, true), ("0101901235", false), (CPR_DIGITS, true)]
        .into_iter()
        .enumerate()
    {
        let out = b
            .ok(
                &path,
                json!({"transaction_id": "tx-1", "cpr": cpr, "matched": matched}),
            )
            .await;
        assert_eq!(types(&out), ["session.cpr_match_completed"]);
        let data = &out["records"][0]["data"];
        assert_eq!(data["attempt"], attempt as u64 + 1);
        assert_eq!(data["matched"], matched);
        let digits: String = cpr.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(data["cpr_ref"], cpr_ref(&digits));
    }
    // The 4th: recorded, and answered 400 access_denied / mitid_cpr_match_failed.
    let before = b.count().await;
    let (status, out) = b
        .post(
            &path,
            json!({"transaction_id": "tx-1", "cpr": CPR, "matched": true}),
        )
        .await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"], "access_denied");
    assert_eq!(out["error_description"], "mitid_cpr_match_failed");
    assert_eq!(b.count().await, before + 1, "the refusal is recorded");
    let records = b.records().await;
    let last = records.last().unwrap();
    assert_eq!(last["type"], "session.cpr_match_refused");
    assert_eq!(last["data"]["attempt"], 4);
    assert_eq!(last["data"]["cpr_ref"], cpr_ref(CPR_DIGITS));
    assert_eq!(last["data"]["error_description"], "mitid_cpr_match_failed");

    // A CPR that is no real date is refused before anything (not recorded), and never
    // echoed; nor is one failing modulus 11 refused (0101901234 does).
    let before = b.count().await;
    let (status, out) = b
        .post(
            &path,
            json!({"transaction_id": "tx-1", "cpr": "3202901234", "matched": true}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(out["field"], "cpr");
    assert!(!out.to_string().contains("3202901234"));
    assert_eq!(b.count().await, before);

    // A new MitID login (re-authentication) resets the count.
    b.ok(
        &format!("{s}/transactions"),
        mitid_start(None, "tx-2", false)
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != "session_id")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    )
    .await;
    let out = b
        .ok(
            &path,
            json!({"transaction_id": "tx-2", "cpr": CPR, "matched": true}),
        )
        .await;
    assert_eq!(out["records"][0]["data"]["attempt"], 1);

    // No CPR digits anywhere in the ledger (checked by `records`).
    b.records().await;
    b.stop().await;
}

async fn controlled_transfer(backend: Backend) {
    let b = Broker::start(backend).await;
    let s = b.mitid_session("s-a", "tx-a1", false).await;
    let issue = json!({"transaction_id": "tx-a1", "code": CODE, "target_broker_id": "broker-b",
                       "target_service_provider_id": "sp-b-mitid",
                       "transfer_token_text": "Welcome from A", "expires_at": in_minutes(5)});
    let out = b.ok(&format!("{s}/transfers"), issue.clone()).await;
    assert_eq!(
        types(&out),
        ["session.transfer_code_issued", "transfer.code_issued"]
    );
    assert_eq!(out["code"], CODE);
    assert_eq!(out["records"][1]["stream"], format!("transfer:{CODE}"));
    assert_eq!(out["records"][1]["data"]["client_id"], "sp-acme");
    assert_eq!(out["records"][1]["data"]["environment"], "PROD");
    let seq0 = out["records"][0]["seq"].as_u64().unwrap();
    assert_eq!(out["records"][1]["seq"], seq0 + 1);

    // The same code again: refused on the code's stream, and the session's half is not
    // appended either.
    b.refused(
        &format!("{s}/transfers"),
        issue.clone(),
        "transfer_code_exists",
        Some("code"),
    )
    .await;
    // Texts: empty, too long.
    for (text, reason) in [
        ("", "must not be empty"),
        (&"å".repeat(131)[..], "must be at most 130 characters"),
    ] {
        let mut bad = issue.clone();
        bad["code"] = "another-code".into();
        bad["transfer_token_text"] = text.into();
        b.refused(
            &format!("{s}/transfers"),
            bad,
            reason,
            Some("transfer_token_text"),
        )
        .await;
    }
    let mut bad = issue.clone();
    bad["code"] = "another-code".into();
    bad["target_broker_id"] = "".into();
    b.refused(
        &format!("{s}/transfers"),
        bad,
        "is required",
        Some("target_broker_id"),
    )
    .await;

    let exchange = format!("/v1/transfers/{CODE}/exchange");
    let body = json!({"transfer_token_text": "Welcome from A", "client_id": "sp-b",
                      "session_id": "s-b", "transaction_id": "tx-b1"});
    let mut wrong = body.clone();
    wrong["transfer_token_text"] = "Welcome from B".into();
    let refused = "transfer.exchange_refused";
    let data = b
        .refused_recorded(
            &exchange,
            wrong,
            "transfer_token_text_mismatch",
            Some("transfer_token_text"),
            refused,
        )
        .await;
    assert_eq!(data["client_id"], "sp-b");
    assert_eq!(data["code"], CODE);
    assert!(
        !data.to_string().contains("Welcome from B"),
        "the text tried is not recorded: {data}"
    );
    // Bad input (an empty text) is refused and not recorded.
    let mut empty = body.clone();
    empty["transfer_token_text"] = "".into();
    b.refused(
        &exchange,
        empty,
        "must not be empty",
        Some("transfer_token_text"),
    )
    .await;
    let out = b.ok(&exchange, body.clone()).await;
    assert_eq!(types(&out), ["transfer.code_exchanged"]);
    assert_eq!(out["records"][0]["stream_seq"], 3);
    // Reused: refused with the seed's code.
    let used = "mitid_transfer_token_exchange_code_already_used";
    b.refused_recorded(&exchange, body.clone(), used, Some("code"), refused)
        .await;
    // Unknown.
    let invalid = "mitid_invalid_transfer_token_code";
    b.refused_recorded(
        "/v1/transfers/00000000-0000-0000-0000-000000000000/exchange",
        body.clone(),
        invalid,
        Some("code"),
        refused,
    )
    .await;
    // Expired: a code valid for one second, exchanged after it.
    let mut short = issue.clone();
    short["code"] = "short-lived".into();
    short["expires_at"] = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339()
        .into();
    b.ok(&format!("{s}/transfers"), short).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    b.refused_recorded(
        "/v1/transfers/short-lived/exchange",
        body.clone(),
        invalid,
        Some("code"),
        refused,
    )
    .await;
    // Issuing needs a MitID session that is open.
    b.refused(
        "/v1/sessions/s-none/transfers",
        issue.clone(),
        "unknown_session",
        Some("session_id"),
    )
    .await;
    b.stop().await;
}

async fn refusals_append_nothing(backend: Backend) {
    let b = Broker::start(backend).await;
    let s = b.mitid_session("s-1", "tx-1", true).await;
    let signing = format!("{s}/signings");

    // Bad html: an on* attribute, a script link, a CSS expression, a disallowed tag.
    for html in [
        "<p onclick=\"steal()\">Pay</p>",
        "<a href=\"javascript:steal()\">Pay</a>",
        "<p style=\"width: expression(alert(1))\">Pay</p>",
        "<script>steal()</script>",
    ] {
        b.refused(
            &signing,
            json!({"transaction_id": "tx-1", "transaction_text": b64(html),
                   "transaction_text_type": "html"}),
            "mitid_transaction_text_invalid",
            Some("transaction_text"),
        )
        .await;
    }
    b.refused(
        &signing,
        json!({"transaction_id": "tx-1", "transaction_text_type": "text"}),
        "mitid_transaction_text_missing",
        Some("transaction_text"),
    )
    .await;
    // A reference text of 131 characters; 130 is accepted.
    b.refused(
        &signing,
        json!({"transaction_id": "tx-1", "transaction_text": b64("Pay 1 kr"),
               "transaction_text_type": "text", "reference_text": b64(&"x".repeat(131))}),
        "must be 1 to 130 characters once decoded",
        Some("reference_text"),
    )
    .await;
    b.ok(
        &signing,
        json!({"transaction_id": "tx-1", "transaction_text": b64("Pay 1 kr"),
               "transaction_text_type": "text", "reference_text": b64(&"æ".repeat(130))}),
    )
    .await;
    b.refused(
        &signing,
        json!({"transaction_id": "tx-1", "transaction_text": b64("Pay 2 kr"),
               "transaction_text_type": "text"}),
        "transaction_already_signed",
        Some("transaction_id"),
    )
    .await;
    // Signing in an unsigned request's transaction.
    let u = b.mitid_session("s-unsigned", "tx-u", false).await;
    b.refused(
        &format!("{u}/signings"),
        json!({"transaction_id": "tx-u", "transaction_text": b64("Pay"),
               "transaction_text_type": "text"}),
        "mitid_transaction_signing_flow_limited_to_signed_request",
        None,
    )
    .await;

    // Unregistered client (not at all, and not in this environment).
    for (client, env) in [("sp-nobody", "PROD"), ("sp-b", "CURRENT")] {
        let mut start = mitid_start(Some("s-2"), "tx-1", false);
        start["client_id"] = client.into();
        start["environment"] = env.into();
        b.refused(
            "/v1/sessions",
            start,
            "unregistered_client",
            Some("client_id"),
        )
        .await;
    }
    // The session exists already; an unknown session.
    b.refused(
        "/v1/sessions",
        mitid_start(Some("s-1"), "tx-9", false),
        "session_exists",
        Some("session_id"),
    )
    .await;
    b.refused(
        "/v1/sessions/s-none/sso-reuse",
        json!({"transaction_id": "tx-1", "action": "mitid.sso_login"}),
        "unknown_session",
        Some("session_id"),
    )
    .await;
    // A login that breaks a rule, given with the start: the start is not appended either.
    let mut start = mitid_start(Some("s-3"), "tx-1", false);
    start["loa"] = HIGH.into();
    b.refused(
        "/v1/sessions",
        start,
        "must be the lower of ial and aal",
        Some("loa"),
    )
    .await;
    // Strings the newtypes refuse name their member.
    let mut start = mitid_start(Some("s 4"), "tx-1", false);
    b.refused(
        "/v1/sessions",
        start.clone(),
        "must be 1 to 100 characters of A-Z, a-z, 0-9 and ._~:@+-",
        Some("session_id"),
    )
    .await;
    start["session_id"] = "s-4".into();
    start["idp"] = "mitID".into();
    let (status, out) = b.post("/v1/sessions", start).await;
    assert_eq!((status, out["field"].as_str()), (400, Some("idp")), "{out}");
    b.refused(
        &format!("{s}/cpr-matches"),
        json!({"transaction_id": "tx-1", "cpr": "12345", "matched": true}),
        "must be 10 digits, optionally with a hyphen after the 6th",
        Some("cpr"),
    )
    .await;
    b.refused(
        "/v1/flow-errors",
        json!({"session_id": "s-1", "transaction_id": "tx-1", "error": "access_denied",
               "error_description": "nemid_user_aborted"}),
        "is not a code of this idp's error table",
        Some("error_description"),
    )
    .await;
    // Malformed JSON, unknown members, a missing member.
    let before = b.count().await;
    let r = b
        .http
        .post(format!("{}{s}/signings", b.base))
        .bearer_auth(&b.key)
        .header("content-type", "application/json")
        .body("{\"transaction_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, out) = b
        .post(
            &format!("{s}/logout"),
            json!({"channel": "back_channel", "x": 1}),
        )
        .await;
    assert_eq!(
        (status, out["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = b
        .post(
            &format!("{s}/cpr-matches"),
            json!({"transaction_id": "tx-1"}),
        )
        .await;
    assert_eq!(status, 400);
    // Larger than the body limit: 413, in the same error shape.
    let big = json!({"transaction_id": "tx-1", "transaction_text": "A".repeat(70 * 1024),
                     "transaction_text_type": "text"});
    let (status, out) = b.post(&format!("{s}/signings"), big).await;
    assert_eq!(
        (status, out["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(b.count().await, before);
    b.records().await;
    b.stop().await;
}

async fn logins_of_every_idp(backend: Backend) {
    let b = Broker::start(backend).await;
    let cases = [
        (
            "mitid_erhverv",
            "professional",
            json!({"loa": SUBSTANTIAL, "ial": SUBSTANTIAL, "aal": SUBSTANTIAL,
                   "amr": ["mitid:code_app"],
                   "subject": {"nemlogin.persistent_professional_id": "urn:uuid:1234",
                               "nemlogin.cvr": "12345678"}}),
            "mitid_erhverv:urn:uuid:1234",
        ),
        (
            "nemid",
            "private",
            json!({"amr": ["nemid.keyfile"], "subject": {"nemid.pid": "9208-2002-2-1234"}}),
            "nemid:pid:9208-2002-2-1234",
        ),
        (
            "bankid_no",
            "private",
            json!({"amr": ["BankID"], "subject": {"bankid_no.pid": "UN:NO-9578-5999-4-1765512"}}),
            "bankid_no:9578-5999-4-1765512",
        ),
        (
            "bankid_mobile_no",
            "private",
            json!({"amr": [], "subject": {"bankid_mobile_no.pid": "9578-5999-4-1765512"}}),
            "bankid_mobile_no:9578-5999-4-1765512",
        ),
        (
            "buypass_no",
            "private",
            json!({"subject": {"buypass_no.pid": "9578-5999-4-1"}}),
            "buypass_no:9578-5999-4-1",
        ),
        (
            "bankid_se",
            "private",
            json!({"amr": ["bankid_se.mobile"], "subject": {"bankid_se.pid": "abc-123"}}),
            "bankid_se:abc-123",
        ),
        (
            "ftn",
            "private",
            json!({"amr": ["ftn"], "subject": {"sub": "FIN-1234"}}),
            "ftn:FIN-1234",
        ),
    ];
    for (idp, identity_type, extra, key) in cases {
        let mut start = json!({"session_id": format!("s-{idp}"), "transaction_id": "tx-1",
                               "client_id": "sp-acme", "environment": "CURRENT", "idp": idp,
                               "identity_type": identity_type});
        for (k, v) in extra.as_object().unwrap() {
            start[k] = v.clone();
        }
        let out = b.ok("/v1/sessions", start).await;
        let login = &out["records"][1]["data"];
        assert_eq!(login["subject_key"], key, "{out}");
        assert_eq!(login["environment"], "CURRENT");
        // Features only MitID has are refused in these sessions, appending nothing.
        b.refused(
            &format!("/v1/sessions/s-{idp}/sso-reuse"),
            json!({"transaction_id": "tx-1", "action": "mitid.reuse_jwt"}),
            if idp == "mitid" {
                ""
            } else {
                "not_supported_for_idp"
            },
            Some("action"),
        )
        .await;
    }
    // NemID sessions may match CPR.
    let out = b
        .ok(
            "/v1/sessions/s-nemid/cpr-matches",
            json!({"transaction_id": "tx-1", "cpr": CPR, "matched": false}),
        )
        .await;
    assert_eq!(out["records"][0]["data"]["cpr_ref"], cpr_ref(CPR_DIGITS));
    // A NemID flow error of the seed's table.
    b.ok(
        "/v1/flow-errors",
        json!({"session_id": "s-nemid", "transaction_id": "tx-1", "error": "access_denied",
               "error_description": "nemid_user_aborted"}),
    )
    .await;
    b.records().await;
    b.stop().await;
}

async fn maintenance_windows(backend: Backend) {
    let b = Broker::start(backend).await;
    // Seed 000: S-Pankki through FTN, 2023-02-05 00:05 - 06:00 EET.
    let body = json!({"window_id": "ftn-s-pankki-2023-02-05", "idp": "ftn",
                      "from": "2023-02-05T00:05:00+02:00", "to": "2023-02-05T06:00:00+02:00",
                      "note": "S-Pankki identification unavailable through FTN"});
    let out = b.ok("/v1/maintenance-windows", body.clone()).await;
    assert_eq!(types(&out), ["maintenance.window_recorded"]);
    assert_eq!(
        out["records"][0]["data"]["from"],
        "2023-02-04T22:05:00.000000Z"
    );
    b.refused(
        "/v1/maintenance-windows",
        body.clone(),
        "window_exists",
        Some("window_id"),
    )
    .await;
    let mut bad = body.clone();
    bad["window_id"] = "w-2".into();
    bad["to"] = "2023-02-05T00:00:00+02:00".into();
    b.refused(
        "/v1/maintenance-windows",
        bad,
        "must be after from",
        Some("to"),
    )
    .await;
    let mut bad = body.clone();
    bad["window_id"] = "w-2".into();
    bad["from"] = "yesterday".into();
    b.refused(
        "/v1/maintenance-windows",
        bad,
        "must be an RFC 3339 date-time with offset",
        Some("from"),
    )
    .await;
    // Without an id, Vidne makes one; with an environment.
    let mut other = body.clone();
    other.as_object_mut().unwrap().remove("window_id");
    other["environment"] = "CURRENT".into();
    let out = b.ok("/v1/maintenance-windows", other).await;
    assert!(out["window_id"].as_str().unwrap().starts_with("w_"));
    let out = b
        .ok(
            "/v1/maintenance-windows/ftn-s-pankki-2023-02-05/cancel",
            json!({"note": "This change has been rolled back"}),
        )
        .await;
    assert_eq!(types(&out), ["maintenance.window_cancelled"]);
    b.refused(
        "/v1/maintenance-windows/ftn-s-pankki-2023-02-05/cancel",
        json!({"note": "again"}),
        "window_cancelled",
        Some("window_id"),
    )
    .await;
    b.stop().await;
}

async fn role_matrix(backend: Backend) {
    let b = Broker::start(backend).await;
    let auditor = cli_key(&b.db, "auditor");
    let sp = cli_key(&b.db, "sp:sp-acme");
    b.mitid_session("s-1", "tx-1", true).await;
    let routes = [
        "/v1/sessions",
        "/v1/sessions/s-1/transactions",
        "/v1/sessions/s-1/logins",
        "/v1/sessions/s-1/sso-reuse",
        "/v1/sessions/s-1/signings",
        "/v1/sessions/s-1/cpr-matches",
        "/v1/sessions/s-1/pid-lookups",
        "/v1/sessions/s-1/transfers",
        "/v1/sessions/s-1/completions",
        "/v1/sessions/s-1/logout",
        "/v1/transfers/c-1/exchange",
        "/v1/flow-errors",
        "/v1/maintenance-windows",
        "/v1/maintenance-windows/w-1/cancel",
    ];
    let before = b.count().await;
    for route in routes {
        let url = format!("{}{route}", b.base);
        let (status, out) = post(&b.http, &url, None, json!({})).await;
        assert_eq!(status, 401, "{route}: {out}");
        assert_eq!(out["error"], "unauthorized");
        for key in [&b.admin, &auditor, &sp] {
            let (status, out) = post(&b.http, &url, Some(key), json!({})).await;
            assert_eq!(status, 403, "{route}: {out}");
            assert_eq!(out["error"], "forbidden");
        }
        // The broker gets past the role check (to a 400 for the unknown member).
        let (status, out) = post(&b.http, &url, Some(&b.key), json!({"unknown": 1})).await;
        assert_eq!(status, 400, "{route}: {out}");
        assert_eq!(out["error"], "invalid_request");
    }
    assert_eq!(b.count().await, before);
    b.stop().await;
}

async fn client_view_comes_from_the_ledger(backend: Backend) {
    let b = Broker::start(backend).await;
    // A second service on the same database, started after the clients were registered:
    // it reads them from the ledger.
    let (base2, handle2) = spawn_app(&b.db).await;
    let url = format!("{base2}/v1/sessions");
    let (status, out) = post(
        &b.http,
        &url,
        Some(&b.key),
        mitid_start(Some("s-2"), "tx-1", false),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    // A client registered through the first service is seen by the second, which
    // catches up before refusing.
    let body = json!({"client_id": "sp-late", "environment": "PROD", "name": "Late SP"});
    let (status, _) = b.post_as(&b.admin.clone(), "/v1/clients", body).await;
    assert_eq!(status, 201);
    let mut start = mitid_start(Some("s-3"), "tx-1", false);
    start["client_id"] = "sp-late".into();
    let (status, out) = post(&b.http, &url, Some(&b.key), start).await;
    assert_eq!(status, 201, "{out}");
    handle2.stop(true).await;
    b.stop().await;
}

/// Without a configured pepper: refused on PostgreSQL; on SQLite made once, 0600, next
/// to the database, and reused (the same CPR keeps its reference across restarts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpr_pepper_is_required_or_kept_next_to_the_sqlite_file() {
    let config = |db: &TestDb| vidne::http::ServeConfig {
        database: db.url.clone(),
        listen: "127.0.0.1:0".into(),
        read_connections: 1,
        max_body_bytes: 64 * 1024,
        cpr_pepper: None,
        signing_keys: None,
        issuer: "https://broker.test".into(),
        origin: "vidne.test/ledger".into(),
        checkpoint_key: Some(db.checkpoint_key()),
        checkpoints: Default::default(),
        public_log: false,
    };
    let pg = TestDb::new(Backend::Postgres).await;
    let err = vidne::http::Application::build(config(&pg))
        .await
        .err()
        .expect("PostgreSQL needs a pepper");
    assert!(err.to_string().contains("--cpr-pepper"), "{err}");

    let db = TestDb::new(Backend::Sqlite).await;
    let vidne::db::DatabaseUrl::Sqlite(path) = &db.url else {
        unreachable!()
    };
    let file = vidne::http::pepper::file_for(path);
    assert!(!file.exists());
    let app = vidne::http::Application::build(config(&db)).await.unwrap();
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let app = vidne::http::Application::build(config(&db)).await.unwrap();
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first, "reused");
}

/// `vidne serve --help` lists the setting but never shows the pepper it was given.
#[test]
fn serve_help_hides_the_pepper() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidne"))
        .args(["serve", "--help"])
        .env("VIDNE_CPR_PEPPER", "a-secret-pepper-of-some-length")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--cpr-pepper"), "{text}");
    assert!(text.contains("VIDNE_CPR_PEPPER"), "{text}");
    assert!(!text.contains("a-secret-pepper"), "{text}");
}
