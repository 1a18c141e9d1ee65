//! What auditors ask of the ledger, and what each record says about who and what it
//! concerns. Pure: the index's SQL is in `projection::audit`, the query's in
//! `audit::search`, the HTTP in `http::audit`.
//!
//! - [`AuditFilter`]: a parsed query (every member optional; records must match all).
//! - [`attribute`]: which SP clients, transaction, IdP and person a record concerns,
//!   from its own `data` and what its session said before ([`SessionTrail`]). A
//!   session's records name the transaction; the transaction's first record names its
//!   client and IdP; the login names the person; a logout concerns every SP the session
//!   served.
//! - [`AuditQueried`]: the record every query leaves (`audit.queried`): auditors are
//!   audited. A CPR appears in it only as its `cpr_ref`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::values::{ClientId, Cpr, CprRef, Idp, Pepper, Timestamp, TransactionId};
use crate::domain::{domain_event, LedgerEvent};
use crate::record::{EventType, FieldError, StreamId};

/// The largest `seq` (SPEC section 1: integers up to 2^53 - 1).
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// The query parameters a filter is read from.
pub const FILTER_PARAMS: &[&str] = &[
    "stream",
    "type",
    "client_id",
    "idp",
    "transaction_id",
    "subject",
    "cpr",
    "cpr_ref",
    "from_time",
    "to_time",
    "from_seq",
    "to_seq",
];

/// `subject_key` of a login: `<idp>:<id>`, printable ASCII (the login schema's form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectKey(String);

impl SubjectKey {
    pub fn parse(s: &str) -> Result<SubjectKey, FieldError> {
        let ok = (3..=300).contains(&s.len())
            && s.split_once(':').is_some_and(|(idp, id)| {
                !idp.is_empty()
                    && idp.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !id.is_empty()
                    && id.bytes().all(|b| (b'!'..=b'~').contains(&b))
            });
        if ok {
            Ok(SubjectKey(s.to_owned()))
        } else {
            Err(FieldError::new(
                "subject",
                "must be a subject key <idp>:<id> (printable ASCII, at most 300)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The most SP clients one filter may name.
pub const MAX_CLIENTS: usize = 100;

/// `client_id`: one client, or several separated by commas (a client id has none);
/// sorted and distinct.
pub fn client_list(v: String) -> Result<Vec<ClientId>, FieldError> {
    let mut list = v
        .split(',')
        .map(ClientId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    list.sort();
    list.dedup();
    if list.len() > MAX_CLIENTS {
        return Err(FieldError::new(
            "client_id",
            format!("names more than {MAX_CLIENTS} clients"),
        ));
    }
    Ok(list)
}

/// Which records a query or export asks for. Times are `[from_time, to_time)`, `seq`s
/// `[from_seq, to_seq]`, both by the ledger's own record `time` and `seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub stream: Option<StreamId>,
    pub event_type: Option<EventType>,
    /// Records of any of these SP clients (sorted, distinct); none: any record.
    pub client_ids: Vec<ClientId>,
    pub idp: Option<Idp>,
    pub transaction_id: Option<TransactionId>,
    pub subject: Option<SubjectKey>,
    pub cpr_ref: Option<CprRef>,
    pub from_time: Option<Timestamp>,
    pub to_time: Option<Timestamp>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
}

impl AuditFilter {
    /// Refuses ranges that cannot hold a record.
    pub fn check(self) -> Result<AuditFilter, FieldError> {
        if let (Some(from), Some(to)) = (self.from_time, self.to_time) {
            if to <= from {
                return Err(FieldError::new("to_time", "must be after from_time"));
            }
        }
        if let (Some(from), Some(to)) = (self.from_seq, self.to_seq) {
            if to < from {
                return Err(FieldError::new("to_seq", "must not be below from_seq"));
            }
        }
        Ok(self)
    }

    /// Parses the members named in [`FILTER_PARAMS`] from text parameters (a query
    /// string); `cpr` becomes its `cpr_ref` with `pepper` and is not kept.
    pub fn from_params(
        get: impl Fn(&str) -> Option<String>,
        pepper: &Pepper,
    ) -> Result<AuditFilter, FieldError> {
        fn opt<T>(
            v: Option<String>,
            parse: impl FnOnce(String) -> Result<T, FieldError>,
        ) -> Result<Option<T>, FieldError> {
            v.map(parse).transpose()
        }
        let seq = |name: &'static str| {
            opt(get(name), |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n <= MAX_SEQ)
                    .ok_or_else(|| FieldError::new(name, "must be a non-negative integer"))
            })
        };
        let time = |name: &'static str| opt(get(name), |v| Timestamp::parse(name, &v));
        let from_cpr = opt(get("cpr"), |v| Cpr::parse(&v).map(|c| pepper.cpr_ref(&c)))?;
        let cpr_ref = opt(get("cpr_ref"), CprRef::try_from)?;
        if let (Some(a), Some(b)) = (&from_cpr, &cpr_ref) {
            if a != b {
                return Err(FieldError::new("cpr_ref", "names another CPR than cpr"));
            }
        }
        AuditFilter {
            stream: opt(get("stream"), StreamId::parse)?,
            event_type: opt(get("type"), EventType::parse)?,
            client_ids: get("client_id")
                .map(client_list)
                .transpose()?
                .unwrap_or_default(),
            idp: opt(get("idp"), |v| Idp::parse(&v))?,
            transaction_id: opt(get("transaction_id"), TransactionId::parse)?,
            subject: opt(get("subject"), |v| SubjectKey::parse(&v))?,
            cpr_ref: from_cpr.or(cpr_ref),
            from_time: time("from_time")?,
            to_time: time("to_time")?,
            from_seq: seq("from_seq")?,
            to_seq: seq("to_seq")?,
        }
        .check()
    }

    /// Whether any member narrows the records beyond a `seq` range (a contiguous
    /// export has none).
    pub fn selects(&self) -> bool {
        let AuditFilter {
            stream,
            event_type,
            client_ids,
            idp,
            transaction_id,
            subject,
            cpr_ref,
            from_time,
            to_time,
            from_seq: _,
            to_seq: _,
        } = self;
        stream.is_some()
            || event_type.is_some()
            || !client_ids.is_empty()
            || idp.is_some()
            || transaction_id.is_some()
            || subject.is_some()
            || cpr_ref.is_some()
            || from_time.is_some()
            || to_time.is_some()
    }

    /// The filter as recorded in `audit.queried` and export manifests: the members
    /// given, by their query names.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::String(v));
            }
        };
        put("stream", self.stream.as_ref().map(|s| s.to_string()));
        put("type", self.event_type.as_ref().map(|t| t.as_str().into()));
        put("idp", self.idp.map(|i| i.as_str().into()));
        put(
            "transaction_id",
            self.transaction_id.as_ref().map(|t| t.to_string()),
        );
        put("subject", self.subject.as_ref().map(|s| s.0.clone()));
        put("cpr_ref", self.cpr_ref.as_ref().map(|c| c.as_str().into()));
        put("from_time", self.from_time.map(Timestamp::to_rfc3339));
        put("to_time", self.to_time.map(Timestamp::to_rfc3339));
        // One client as a string; several as an array.
        match self.client_ids.as_slice() {
            [] => {}
            [one] => {
                m.insert("client_id".into(), Value::from(one.as_str()));
            }
            several => {
                let list = several.iter().map(|c| Value::from(c.as_str())).collect();
                m.insert("client_id".into(), Value::Array(list));
            }
        }
        for (k, v) in [("from_seq", self.from_seq), ("to_seq", self.to_seq)] {
            if let Some(v) = v {
                m.insert(k.into(), Value::from(v));
            }
        }
        Value::Object(m)
    }
}

/// What a session's earlier records said that its later ones do not repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTrail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_key: Option<String>,
    /// transaction id → (client id, IdP), for the transactions not yet completed or
    /// failed (a session records nothing more of a transaction after either). Not part
    /// of the stored trail: the audit index keeps them a row each, and gives a record's
    /// trail the transactions it may need (see `projection::audit`).
    #[serde(skip)]
    pub transactions: BTreeMap<String, (String, Option<String>)>,
    /// The clients of the session's ended transactions: its logout is theirs too.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub served: BTreeSet<String>,
}

/// Whom and what one record concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The SP clients whose records it is (sorted, distinct).
    pub clients: Vec<String>,
    pub transaction_id: Option<String>,
    pub idp: Option<String>,
    pub subject_key: Option<String>,
    pub cpr_ref: Option<String>,
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Attributes a record of `event_type` with payload `data`; `trail` is its session's
/// (for `session:` streams), updated with what this record says.
pub fn attribute(event_type: &str, data: &Value, trail: Option<&mut SessionTrail>) -> Attribution {
    let transaction_id = text(data, "transaction_id");
    let mut client = text(data, "client_id");
    let mut idp = text(data, "idp");
    let mut subject_key = text(data, "subject_key");
    let mut cpr_ref = text(data, "cpr_ref");
    if event_type == AUDIT_QUERIED || event_type == AUDIT_EXPORTED {
        // Who looked a person up is part of that person's history.
        let filter = data.get("filter").unwrap_or(&Value::Null);
        subject_key = subject_key.or_else(|| text(filter, "subject"));
        cpr_ref = cpr_ref.or_else(|| text(filter, "cpr_ref"));
    }
    let mut clients = Vec::new();
    if let Some(trail) = trail {
        if let Some(tx) = &transaction_id {
            match (&client, trail.transactions.get_mut(tx)) {
                (Some(c), Some(known)) => {
                    known.0.clone_from(c);
                    if idp.is_some() {
                        known.1.clone_from(&idp);
                    }
                }
                (Some(c), None) => {
                    trail
                        .transactions
                        .insert(tx.clone(), (c.clone(), idp.clone()));
                }
                (None, Some(known)) => client = Some(known.0.clone()),
                (None, None) => {}
            }
            if idp.is_none() {
                idp = trail.transactions.get(tx).and_then(|k| k.1.clone());
            }
            // An ended transaction is forgotten, so a long session's trail holds its open
            // transactions only; its client is remembered for the logout.
            if ENDS_TRANSACTION.contains(&event_type) {
                if let Some((c, _)) = trail.transactions.remove(tx) {
                    trail.served.insert(c);
                }
            }
        } else if client.is_none() {
            // Session-wide (a logout): every SP the session served.
            clients.extend(trail.transactions.values().map(|(c, _)| c.clone()));
            clients.extend(trail.served.iter().cloned());
        }
        match &subject_key {
            Some(s) => trail.subject_key = Some(s.clone()),
            None => subject_key.clone_from(&trail.subject_key),
        }
    }
    clients.extend(client);
    clients.sort();
    clients.dedup();
    Attribution {
        clients,
        transaction_id,
        idp,
        subject_key,
        cpr_ref,
    }
}

/// The records after which a session records nothing more of their transaction.
const ENDS_TRANSACTION: [&str; 2] = ["session.transaction_completed", "session.flow_failed"];

pub const AUDIT_QUERIED: &str = "audit.queried";

/// One query of the audit API, as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queried {
    /// The role the key held (`auditor` or `sp:<client_id>`).
    pub role: String,
    /// The SP whose key asked, so the query is in that SP's own history too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// The filter as given (a CPR only as `cpr_ref`).
    pub filter: Map<String, Value>,
    /// Where the page began (`cursor`), if not at the filter's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    pub limit: u64,
    pub proofs: bool,
    /// Records answered, and the first and last of them.
    pub returned: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    pub at: Timestamp,
}

pub const AUDIT_EXPORTED: &str = "audit.exported";

/// One export bundle taken through the API (`POST /v1/exports`), as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exported {
    pub role: String,
    /// The filter as given (a CPR only as `cpr_ref`); empty for a contiguous export.
    pub filter: Map<String, Value>,
    pub count: u64,
    pub from_seq: u64,
    pub to_seq: u64,
    /// The checkpoint the bundle's proofs are in.
    pub tree_size: u64,
    /// SHA-256 of the bundle's `manifest.json`, lowercase hex: names the bundle.
    pub manifest_sha256: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AuditEvent {
    #[serde(rename = "audit.queried")]
    Queried(Queried),
    #[serde(rename = "audit.exported")]
    Exported(Exported),
}

domain_event!(AuditEvent);

impl LedgerEvent for AuditEvent {
    const TYPES: &'static [(&'static str, u32)] = &[(AUDIT_QUERIED, 1), (AUDIT_EXPORTED, 1)];

    fn type_name(&self) -> &'static str {
        match self {
            AuditEvent::Queried(_) => AUDIT_QUERIED,
            AuditEvent::Exported(_) => AUDIT_EXPORTED,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(records: &[(&str, Value)]) -> Vec<Attribution> {
        let mut trail = SessionTrail::default();
        records
            .iter()
            .map(|(t, d)| attribute(t, d, Some(&mut trail)))
            .collect()
    }

    #[test]
    fn a_sessions_records_take_client_idp_and_subject_from_earlier_ones() {
        let got = run(&[
            (
                "session.transaction_started",
                json!({"transaction_id": "t1", "client_id": "sp-a", "idp": "mitid"}),
            ),
            (
                "session.login_completed",
                json!({"transaction_id": "t1", "client_id": "sp-a", "idp": "mitid", "subject_key": "mitid:abc"}),
            ),
            (
                "session.cpr_match_completed",
                json!({"transaction_id": "t1", "cpr_ref": "ab"}),
            ),
            (
                "session.transaction_started",
                json!({"transaction_id": "t2", "client_id": "sp-b", "idp": "mitid"}),
            ),
            ("session.sso_reused", json!({"transaction_id": "t2"})),
            ("session.logged_out", json!({"channel": "back_channel"})),
        ]);
        assert_eq!(got[0].subject_key, None, "nobody has logged in yet");
        assert_eq!(got[2].clients, ["sp-a"]);
        assert_eq!(got[2].idp.as_deref(), Some("mitid"));
        assert_eq!(got[2].subject_key.as_deref(), Some("mitid:abc"));
        assert_eq!(got[2].cpr_ref.as_deref(), Some("ab"));
        assert_eq!(got[4].clients, ["sp-b"]);
        assert_eq!(got[4].transaction_id.as_deref(), Some("t2"));
        assert_eq!(
            got[5].clients,
            ["sp-a", "sp-b"],
            "a logout ends every SP's part"
        );
        assert_eq!(got[5].transaction_id, None);
    }

    #[test]
    fn a_trail_forgets_ended_transactions_but_not_whom_the_session_served() {
        let mut trail = SessionTrail::default();
        let mut run = |t: &str, d: Value| attribute(t, &d, Some(&mut trail));
        for (tx, sp) in [("t1", "sp-a"), ("t2", "sp-b"), ("t3", "sp-c")] {
            run(
                "session.transaction_started",
                json!({"transaction_id": tx, "client_id": sp, "idp": "mitid"}),
            );
        }
        let done = run(
            "session.transaction_completed",
            json!({"transaction_id": "t1"}),
        );
        assert_eq!(
            done.clients,
            ["sp-a"],
            "the ending record is still its client's"
        );
        let failed = run("session.flow_failed", json!({"transaction_id": "t2"}));
        assert_eq!(failed.idp.as_deref(), Some("mitid"));
        let logout = run("session.logged_out", json!({"channel": "back_channel"}));
        assert_eq!(logout.clients, ["sp-a", "sp-b", "sp-c"]);
        assert_eq!(trail.transactions.keys().collect::<Vec<_>>(), ["t3"]);
        assert_eq!(trail.served.iter().collect::<Vec<_>>(), ["sp-a", "sp-b"]);
    }

    #[test]
    fn records_outside_sessions_say_it_themselves() {
        let a = attribute(
            "transfer.code_exchanged",
            &json!({"client_id": "sp-b", "transaction_id": "t9"}),
            None,
        );
        assert_eq!(a.clients, ["sp-b"]);
        let m = attribute("maintenance.window_recorded", &json!({"idp": "ftn"}), None);
        assert!(m.clients.is_empty());
        assert_eq!(m.idp.as_deref(), Some("ftn"));
        let q = attribute(
            AUDIT_QUERIED,
            &json!({"filter": {"cpr_ref": "cd", "client_id": "sp-a"}}),
            None,
        );
        assert_eq!(
            q.cpr_ref.as_deref(),
            Some("cd"),
            "a person's lookups are theirs"
        );
        assert!(
            q.clients.is_empty(),
            "an auditor's query is not the SP's record"
        );
    }

    #[test]
    fn filter_ranges_and_subject_keys_are_checked() {
        let t = |s| Timestamp::parse("t", s).unwrap();
        let bad = AuditFilter {
            from_time: Some(t("2026-01-02T00:00:00Z")),
            to_time: Some(t("2026-01-01T00:00:00Z")),
            ..AuditFilter::default()
        };
        assert_eq!(bad.check().unwrap_err().field, "to_time");
        let bad = AuditFilter {
            from_seq: Some(5),
            to_seq: Some(4),
            ..AuditFilter::default()
        };
        assert_eq!(bad.check().unwrap_err().field, "to_seq");
        assert!(SubjectKey::parse("mitid:0f8a").is_ok());
        for s in ["", "mitid", ":x", "MitID:x", "mitid:", "mitid:a b"] {
            assert_eq!(SubjectKey::parse(s).unwrap_err().field, "subject", "{s}");
        }
        let only_seq = AuditFilter {
            from_seq: Some(1),
            ..AuditFilter::default()
        };
        assert!(!only_seq.selects());
        assert_eq!(only_seq.to_json(), json!({"from_seq": 1}));
    }

    #[test]
    fn client_id_names_one_client_or_several() {
        let pepper = Pepper::new([7u8; 32]).unwrap();
        let parse = |v: &str| {
            let v = v.to_owned();
            AuditFilter::from_params(|k| (k == "client_id").then(|| v.clone()), &pepper)
        };
        let one = parse("sp-a").unwrap();
        assert_eq!(one.to_json(), json!({"client_id": "sp-a"}));
        let two = parse("sp-b,sp-a,sp-b").unwrap();
        assert!(two.selects());
        assert_eq!(two.to_json(), json!({"client_id": ["sp-a", "sp-b"]}));
        for bad in ["", "sp-a,", ",sp-a", "sp a"] {
            assert_eq!(parse(bad).unwrap_err().field, "client_id", "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_CLIENTS).map(|i| format!("sp-{i}")).collect();
        assert_eq!(parse(&many.join(",")).unwrap_err().field, "client_id");
    }
}
