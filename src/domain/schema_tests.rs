//! `schemas/events/<type>.v<N>.json` agree with the Rust event types: one schema per type
//! and version, each a valid draft 2020-12 schema; every example serialized from a Rust
//! value is valid for it (and a ledger payload); every example the Rust type refuses is
//! refused by the schema too; malformed shapes are refused by both; and the schema's
//! own constraints (patterns, enums, conditional members) refuse hand-made bad examples.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::domain::audit::{AuditEvent, Exported, Queried};
use crate::domain::client::{ClientEvent, ClientRegistered};
use crate::domain::maintenance::{MaintenanceEvent, WindowCancelled, WindowRecorded};
use crate::domain::session::*;
use crate::domain::transfer::{CodeExchanged, CodeIssued, ExchangeRefused, TransferEvent};
use crate::domain::values::*;
use crate::domain::LedgerEvent;
use crate::record::Payload;

struct Example {
    ty: &'static str,
    version: u32,
    data: Value,
    /// Whether the Rust type reads `(type, version, data)`.
    rust_reads: fn(&str, u32, Value) -> bool,
}

fn example<E: LedgerEvent>(e: E) -> Example {
    Example {
        ty: e.type_name(),
        version: e.schema_version(),
        data: e.data(),
        rust_reads: |t, v, d| E::from_record_parts(t, v, d).is_ok(),
    }
}

fn all_types() -> BTreeSet<(&'static str, u32)> {
    [
        SessionEvent::TYPES,
        TransferEvent::TYPES,
        ClientEvent::TYPES,
        MaintenanceEvent::TYPES,
        AuditEvent::TYPES,
    ]
    .concat()
    .into_iter()
    .collect()
}

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/events")
}

fn load_schema(ty: &str, version: u32) -> Value {
    let path = schema_dir().join(format!("{ty}.v{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validators() -> BTreeMap<(&'static str, u32), jsonschema::Validator> {
    all_types()
        .into_iter()
        .map(|(ty, v)| {
            let schema = load_schema(ty, v);
            assert!(
                jsonschema::draft202012::meta::is_valid(&schema),
                "{ty}.v{v}.json is not a valid draft 2020-12 schema"
            );
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{ty}"
            );
            let validator = jsonschema::draft202012::new(&schema)
                .unwrap_or_else(|e| panic!("{ty}.v{v}.json: {e}"));
            ((ty, v), validator)
        })
        .collect()
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse("at", s).unwrap()
}

fn id<T: TryFrom<String, Error = crate::record::FieldError>>(s: &str) -> T {
    T::try_from(s.to_string()).unwrap()
}

fn ext(s: &str) -> ExternalId {
    ExternalId::parse("x", s).unwrap()
}

fn cpr_ref() -> CprRef {
    Pepper::new(b"schema test pepper, 32 bytes....".to_vec())
        .unwrap()
        .cpr_ref(&Cpr::parse("070761-4286").unwrap())
}

fn login(
    idp: Idp,
    identity_type: IdentityType,
    levels: Option<NsisLevel>,
    amr: &[&str],
    subject: &[(&str, &str)],
    key: &str,
) -> SessionEvent {
    SessionEvent::LoginCompleted(LoginCompleted {
        transaction_id: id("t1"),
        client_id: id("sp-acme"),
        environment: Environment::Prod,
        idp,
        identity_type,
        loa: levels,
        ial: levels,
        aal: levels,
        amr: amr.iter().map(|s| s.to_string()).collect(),
        subject: subject
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        subject_key: key.into(),
        psd2: None,
        at: t("2026-11-21T09:30:00Z"),
    })
}

/// At least one example of every event type, and of each shape a type can take.
fn examples() -> Vec<Example> {
    let at = t("2026-11-21T09:30:00.000001Z");
    let s = Some(NsisLevel::Substantial);
    let mut v = vec![
        example(SessionEvent::TransactionStarted(TransactionStarted {
            transaction_id: id("t1"),
            client_id: id("sp-acme"),
            environment: Environment::Prod,
            idp: Idp::Mitid,
            signed_request: true,
            at,
        })),
        example(login(
            Idp::Mitid,
            IdentityType::Private,
            s,
            &["code_app"],
            &[("mitid.uuid", "efc7ffb4-e086-4f5f-a1d5-b3c7227db629")],
            "mitid:efc7ffb4-e086-4f5f-a1d5-b3c7227db629",
        )),
        example(login(
            Idp::MitidErhverv,
            IdentityType::Professional,
            s,
            &["mitid:password", "mitid:code_app"],
            &[
                ("nemlogin.persistent_professional_id", "urn:uuid:1"),
                ("nemlogin.cvr", "12345678"),
                ("nemlogin.nemid.rid", "4711"),
            ],
            "mitid_erhverv:urn:uuid:1",
        )),
        example(login(
            Idp::Nemid,
            IdentityType::Private,
            None,
            &["nemid.otp"],
            &[("nemid.pid", "9208-2002-2-123456789012")],
            "nemid:pid:9208-2002-2-123456789012",
        )),
        example(login(
            Idp::Nemid,
            IdentityType::Professional,
            None,
            &["nemid.keyfile"],
            &[("nemid.rid", "12345"), ("nemid.cvr", "87654321")],
            "nemid:cvr:87654321:rid:12345",
        )),
        example(login(
            Idp::BankidNo,
            IdentityType::Private,
            None,
            &["BankID"],
            &[("bankid_no.pid", "UN:NO-9578-5999-4-1765512")],
            "bankid_no:9578-5999-4-1765512",
        )),
        example(login(
            Idp::BankidMobileNo,
            IdentityType::Private,
            None,
            &[],
            &[("bankid_mobile_no.pid", "9578-5999-4-1765512")],
            "bankid_mobile_no:9578-5999-4-1765512",
        )),
        example(login(
            Idp::BuypassNo,
            IdentityType::Private,
            None,
            &[],
            &[("buypass_no.pid", "9578-4050-1")],
            "buypass_no:9578-4050-1",
        )),
        example(login(
            Idp::BankidSe,
            IdentityType::Private,
            None,
            &["bankid_se.file"],
            &[("bankid_se.pid", "se-1")],
            "bankid_se:se-1",
        )),
        example(login(
            Idp::Ftn,
            IdentityType::Private,
            None,
            &[],
            &[("sub", "fi-1")],
            "ftn:fi-1",
        )),
        example(SessionEvent::SsoReused(SsoReused {
            transaction_id: id("t2"),
            action: SsoAction::ReuseJwt,
            subject_key: "mitid:efc7ffb4-e086-4f5f-a1d5-b3c7227db629".into(),
            at,
        })),
        example(SessionEvent::TransactionSigned(TransactionSigned {
            transaction_id: id("t1"),
            transaction_text: "UGF5IDEwMCBES0s=".into(),
            transaction_text_type: TransactionTextType::Text,
            transaction_text_sha256: "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=".into(),
            reference_text: Some("UmVmIDQy".into()),
            at,
        })),
        example(SessionEvent::TransactionSigned(TransactionSigned {
            transaction_id: id("t1"),
            transaction_text: "PHA+UGF5PC9wPg==".into(),
            transaction_text_type: TransactionTextType::Html,
            transaction_text_sha256: "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=".into(),
            reference_text: None,
            at,
        })),
        example(SessionEvent::CprMatchCompleted(CprMatchCompleted {
            transaction_id: id("t1"),
            cpr_ref: cpr_ref(),
            matched: false,
            attempt: 3,
            at,
        })),
        example(SessionEvent::CprMatchRefused(CprMatchRefused {
            transaction_id: id("t1"),
            cpr_ref: cpr_ref(),
            attempt: 4,
            error: ErrorKind::AccessDenied,
            error_description: CprRefusalCode::MitidCprMatchFailed,
            at,
        })),
        example(SessionEvent::PidLookupCompleted(PidLookupCompleted {
            transaction_id: id("t1"),
            pid_status: PidStatus::Success,
            pid: Some(ext("9208-2002-2-123456789012")),
            cpr_ref: Some(cpr_ref()),
            at,
        })),
        example(SessionEvent::PidLookupCompleted(PidLookupCompleted {
            transaction_id: id("t1"),
            pid_status: PidStatus::UnableToLookup,
            pid: None,
            cpr_ref: None,
            at,
        })),
        example(SessionEvent::TransferCodeIssued(TransferCodeIssued {
            transaction_id: id("t1"),
            code: id("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95"),
            target_broker_id: ext("broker-b"),
            target_service_provider_id: ext("sp-b"),
            expires_at: t("2026-11-21T09:35:00Z"),
            at,
        })),
        example(SessionEvent::FlowFailed(FlowFailed {
            transaction_id: id("t1"),
            idp: Idp::MitidErhverv,
            error: ErrorKind::AccessDenied,
            error_description: "mitid_erhverv.no_identities".into(),
            at,
        })),
        example(SessionEvent::TransactionCompleted(TransactionCompleted {
            transaction_id: id("t1"),
            client_id: id("sp-acme"),
            at,
        })),
        example(SessionEvent::LoggedOut(LoggedOut {
            channel: LogoutChannel::BackChannel,
            at,
        })),
        example(TransferEvent::CodeIssued(CodeIssued {
            code: id("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95"),
            session_id: id("s-1"),
            transaction_id: id("t1"),
            client_id: id("sp-acme"),
            environment: Environment::Current,
            target_broker_id: ext("broker-b"),
            target_service_provider_id: ext("sp-b"),
            transfer_token_text: TransferTokenText::parse(&"Velkommen fra A ".repeat(8)[..128])
                .unwrap(),
            expires_at: t("2026-11-21T09:35:00Z"),
            at,
        })),
        example(TransferEvent::CodeExchanged(CodeExchanged {
            code: id("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95"),
            client_id: id("sp-b"),
            session_id: id("s-2"),
            transaction_id: id("t9"),
            at,
        })),
        example(TransferEvent::ExchangeRefused(ExchangeRefused {
            code: id("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95"),
            client_id: id("sp-b"),
            session_id: id("s-2"),
            transaction_id: id("t9"),
            error_description: crate::domain::values::ExchangeRefusal::AlreadyUsed,
            at,
        })),
        example(ClientEvent::Registered(ClientRegistered {
            client_id: id("sp-acme"),
            environment: Environment::Current,
            name: "Acme Bank A/S".into(),
            token_signing_alg: None,
            token_encryption_key: None,
            at,
        })),
        example(ClientEvent::Registered(ClientRegistered {
            client_id: id("sp-ftn"),
            environment: Environment::Prod,
            name: "Suomi Pankki".into(),
            token_signing_alg: Some(TokenSigningAlg::Es256),
            token_encryption_key: Some("https://sp-ftn.example/jwks.json".into()),
            at,
        })),
        example(MaintenanceEvent::WindowRecorded(WindowRecorded {
            window_id: id("ftn-op-2023-02-05"),
            idp: Idp::Ftn,
            from: t("2023-02-05T02:00:00+02:00"),
            to: t("2023-02-05T06:00:00+02:00"),
            note: "OP identification may be unavailable through FTN".into(),
            environment: None,
            at,
        })),
        example(MaintenanceEvent::WindowRecorded(WindowRecorded {
            window_id: id("eident-dns-2022-05-05"),
            idp: Idp::BankidNo,
            from: t("2022-05-05T09:00:00+02:00"),
            to: t("2022-05-05T15:00:00+02:00"),
            note: "Customer test DNS update".into(),
            environment: Some(Environment::Current),
            at,
        })),
        example(MaintenanceEvent::WindowCancelled(WindowCancelled {
            window_id: id("eident-dns-2022-05-05"),
            note: "Rolled back".into(),
            at,
        })),
        example(AuditEvent::Queried(Queried {
            role: "auditor".into(),
            client_id: None,
            filter: json!({"client_id": "sp-acme", "cpr_ref": cpr_ref(), "from_seq": 3})
                .as_object()
                .cloned()
                .unwrap(),
            cursor: None,
            limit: 100,
            proofs: true,
            returned: 2,
            first_seq: Some(3),
            last_seq: Some(9),
            at,
        })),
        example(AuditEvent::Exported(Exported {
            role: "auditor".into(),
            filter: json!({"client_id": "sp-acme", "from_time": "2026-11-01T00:00:00.000000Z"})
                .as_object()
                .cloned()
                .unwrap(),
            count: 120,
            from_seq: 4,
            to_seq: 900,
            tree_size: 1000,
            manifest_sha256: "ab".repeat(32),
            at,
        })),
        example(AuditEvent::Queried(Queried {
            role: "sp:sp-acme".into(),
            client_id: Some(id("sp-acme")),
            filter: serde_json::Map::new(),
            cursor: Some(10),
            limit: 1,
            proofs: false,
            returned: 0,
            first_seq: None,
            last_seq: None,
            at,
        })),
    ];
    // A MitID login that reported `mitid.psd2`.
    let mitid = login(
        Idp::Mitid,
        IdentityType::Private,
        s,
        &["code_app"],
        &[("mitid.uuid", "efc7ffb4-e086-4f5f-a1d5-b3c7227db629")],
        "mitid:efc7ffb4-e086-4f5f-a1d5-b3c7227db629",
    );
    if let SessionEvent::LoginCompleted(mut l) = mitid {
        l.psd2 = Some(true);
        v.push(example(SessionEvent::LoginCompleted(l)));
    }
    v.sort_by_key(|e| e.ty);
    v
}

#[test]
fn every_event_type_has_a_schema_and_every_schema_a_type() {
    let types = all_types();
    let files: BTreeSet<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = types
        .iter()
        .map(|(t, v)| format!("{t}.v{v}.json"))
        .collect();
    assert_eq!(files, expected);
    for (ty, _) in &types {
        crate::record::EventType::parse(*ty).unwrap();
    }
    let with_examples: BTreeSet<_> = examples().iter().map(|e| (e.ty, e.version)).collect();
    assert_eq!(with_examples, types, "every type needs an example");
}

#[test]
fn rust_values_are_valid_for_their_schema_and_the_ledger() {
    let validators = validators();
    for e in examples() {
        let validator = &validators[&(e.ty, e.version)];
        let errors: Vec<String> = validator
            .iter_errors(&e.data)
            .map(|err| err.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {:?}: {errors:?}", e.ty, e.data);
        assert!((e.rust_reads)(e.ty, e.version, e.data.clone()), "{}", e.ty);
        Payload::parse(&e.data).unwrap_or_else(|err| panic!("{}: {err}", e.ty));
    }
}

/// The same value with another JSON kind.
fn other_kind(v: &Value) -> Value {
    match v {
        Value::String(_) => json!(7),
        Value::Number(_) => json!("7"),
        Value::Bool(_) => json!("true"),
        Value::Array(_) => json!({}),
        Value::Object(_) => json!([]),
        Value::Null => json!(0),
    }
}

#[test]
fn what_rust_refuses_the_schema_refuses() {
    let validators = validators();
    for e in examples() {
        let validator = &validators[&(e.ty, e.version)];
        let Value::Object(map) = &e.data else {
            panic!("{}", e.ty)
        };
        let mut variants: Vec<(String, Value, bool)> = Vec::new();
        let mut extra = map.clone();
        extra.insert("unexpected".into(), json!(1));
        variants.push(("an unexpected member".into(), Value::Object(extra), true));
        for (k, v) in map {
            let mut without = map.clone();
            without.remove(k);
            variants.push((format!("without {k}"), Value::Object(without), false));
            for (what, replacement) in [("float", json!(1.5)), ("other kind", other_kind(v))] {
                let mut changed = map.clone();
                changed.insert(k.clone(), replacement);
                variants.push((format!("{k} as {what}"), Value::Object(changed), true));
            }
        }
        for (what, data, both_refuse) in variants {
            let rust = (e.rust_reads)(e.ty, e.version, data.clone());
            let schema = validator.is_valid(&data);
            if both_refuse {
                assert!(!rust, "{} with {what}: Rust reads it", e.ty);
            }
            if !rust {
                assert!(
                    !schema,
                    "{} with {what}: Rust refuses, the schema accepts",
                    e.ty
                );
            }
        }
    }
}

/// Constraints the schemas state beyond the Rust shapes: each patch makes a valid example
/// invalid.
#[test]
fn the_schemas_refuse_what_the_seeds_rule_out() {
    let validators = validators();
    let examples = examples();
    let find = |ty: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        examples
            .iter()
            .find(|e| e.ty == ty && pred(&e.data))
            .unwrap_or_else(|| panic!("no example of {ty}"))
            .data
            .clone()
    };
    let any = |_: &Value| true;
    let idp = |name: &'static str| move |d: &Value| d["idp"] == name;
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        (
            "audit.queried",
            find("audit.queried", &any),
            "filter",
            json!({"cpr": "0707614286"}),
        ),
        (
            "audit.queried",
            find("audit.queried", &any),
            "filter",
            json!({"cpr_ref": "0707614286"}),
        ),
        (
            "session.transaction_started",
            find("session.transaction_started", &any),
            "idp",
            json!("mitid_demo"),
        ),
        (
            "session.transaction_started",
            find("session.transaction_started", &any),
            "environment",
            json!("prod"),
        ),
        (
            "session.transaction_started",
            find("session.transaction_started", &any),
            "at",
            json!("2026-11-21T09:30:00Z"),
        ),
        (
            "session.transaction_started",
            find("session.transaction_started", &any),
            "client_id",
            json!("sp acme"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("mitid")),
            "loa",
            json!("substantial"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("mitid")),
            "subject",
            json!({"nemid.pid": "x"}),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("mitid")),
            "identity_type",
            json!("professional"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("mitid_erhverv")),
            "loa",
            json!("https://data.gov.dk/concept/core/nsis/High"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("mitid_erhverv")),
            "identity_type",
            json!("private"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("nemid")),
            "loa",
            json!("https://data.gov.dk/concept/core/nsis/Low"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("bankid_no")),
            "subject",
            json!({"bankid_no.pid": "x", "nnin_altsub": "18126612345"}),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("ftn")),
            "subject",
            json!({"sub": "has space"}),
        ),
        (
            "session.sso_reused",
            find("session.sso_reused", &any),
            "action",
            json!("mitid.login"),
        ),
        (
            "session.transaction_signed",
            find("session.transaction_signed", &any),
            "transaction_text_type",
            json!("pdf"),
        ),
        (
            "session.transaction_signed",
            find("session.transaction_signed", &any),
            "transaction_text",
            json!("not base64!"),
        ),
        (
            "session.transaction_signed",
            find("session.transaction_signed", &any),
            "transaction_text_sha256",
            json!("abc"),
        ),
        (
            "session.cpr_match_completed",
            find("session.cpr_match_completed", &any),
            "cpr_ref",
            json!("0707614286"),
        ),
        (
            "session.cpr_match_completed",
            find("session.cpr_match_completed", &any),
            "attempt",
            json!(0),
        ),
        (
            "session.cpr_match_refused",
            find("session.cpr_match_refused", &any),
            "attempt",
            json!(3),
        ),
        (
            "session.cpr_match_refused",
            find("session.cpr_match_refused", &any),
            "error_description",
            json!("mitid_user_aborted"),
        ),
        (
            "session.pid_lookup_completed",
            find("session.pid_lookup_completed", &|d| {
                d["pid_status"] == "unable_to_lookup"
            }),
            "pid",
            json!("9208"),
        ),
        (
            "session.flow_failed",
            find("session.flow_failed", &any),
            "error",
            json!("server_error"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("mitid")),
            "psd2",
            json!("yes"),
        ),
        (
            "session.login_completed",
            find("session.login_completed", &idp("bankid_no")),
            "psd2",
            json!(true),
        ),
        (
            "session.transaction_completed",
            find("session.transaction_completed", &any),
            "client_id",
            json!(""),
        ),
        (
            "session.logged_out",
            find("session.logged_out", &any),
            "channel",
            json!("front_channel"),
        ),
        (
            "transfer.code_issued",
            find("transfer.code_issued", &any),
            "transfer_token_text",
            json!("x".repeat(131)),
        ),
        (
            "transfer.code_issued",
            find("transfer.code_issued", &any),
            "transfer_token_text",
            json!(""),
        ),
        (
            "transfer.code_issued",
            find("transfer.code_issued", &any),
            "transfer_token_text",
            json!("   "),
        ),
        (
            "client.registered",
            find("client.registered", &any),
            "environment",
            json!("TEST"),
        ),
        (
            "client.registered",
            find("client.registered", &any),
            "token_signing_alg",
            json!("RS256"),
        ),
        (
            "client.registered",
            find("client.registered", &any),
            "token_encryption_key",
            json!(""),
        ),
        (
            "maintenance.window_recorded",
            find("maintenance.window_recorded", &any),
            "from",
            json!("2023-02-05 00:05"),
        ),
        (
            "maintenance.window_cancelled",
            find("maintenance.window_cancelled", &any),
            "note",
            json!(""),
        ),
    ];
    for (ty, mut data, member, value) in cases {
        data[member] = value.clone();
        assert!(
            !validators[&(ty, 1)].is_valid(&data),
            "{ty}: {member} = {value} accepted"
        );
    }
    // Conditional members.
    let mut success_without_pid = find("session.pid_lookup_completed", &|d| {
        d["pid_status"] == "success"
    });
    success_without_pid.as_object_mut().unwrap().remove("pid");
    assert!(!validators[&("session.pid_lookup_completed", 1)].is_valid(&success_without_pid));
    let mut mitid_without_loa = find("session.login_completed", &idp("mitid"));
    mitid_without_loa.as_object_mut().unwrap().remove("loa");
    assert!(!validators[&("session.login_completed", 1)].is_valid(&mitid_without_loa));
}
