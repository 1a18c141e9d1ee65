//! Given a session's records, then these claims (or none).

use super::*;
use crate::domain::session::*;
use crate::domain::values::*;

const UUID: &str = "efc7ffb4-e086-4f5f-a1d5-b3c7227db629";
const T0: i64 = 1_795_500_000_000_000;

fn t(minutes: i64) -> Timestamp {
    Timestamp::from_micros(T0 + minutes * 60_000_000).unwrap()
}

fn tx(s: &str) -> TransactionId {
    TransactionId::parse(s).unwrap()
}

fn client(s: &str) -> ClientId {
    ClientId::parse(s).unwrap()
}

fn ctx() -> TokenContext {
    TokenContext {
        issuer: "https://broker.example".into(),
        origin: "vidne.example/ledger".into(),
    }
}

fn hash(seq: u64) -> String {
    format!("{seq:064x}")
}

fn started(id: &str, sp: &str, idp: Idp) -> SessionEvent {
    SessionEvent::TransactionStarted(TransactionStarted {
        transaction_id: tx(id),
        client_id: client(sp),
        environment: Environment::Prod,
        idp,
        signed_request: true,
        at: t(0),
    })
}

fn login(
    id: &str,
    idp: Idp,
    subject: &[(&str, &str)],
    key: &str,
    psd2: Option<bool>,
) -> SessionEvent {
    let mitid = matches!(idp, Idp::Mitid | Idp::MitidErhverv);
    let s = mitid.then_some(NsisLevel::Substantial);
    SessionEvent::LoginCompleted(LoginCompleted {
        transaction_id: tx(id),
        client_id: client("sp-a"),
        environment: Environment::Prod,
        idp,
        identity_type: if idp == Idp::MitidErhverv {
            IdentityType::Professional
        } else {
            IdentityType::Private
        },
        loa: s,
        ial: s,
        aal: s,
        amr: if mitid {
            vec!["code_app".into()]
        } else {
            vec![]
        },
        subject: subject
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        subject_key: key.into(),
        psd2,
        at: t(1),
    })
}

fn mitid_login(id: &str) -> SessionEvent {
    login(
        id,
        Idp::Mitid,
        &[("mitid.uuid", UUID)],
        &format!("mitid:{UUID}"),
        Some(true),
    )
}

fn cpr_ref() -> CprRef {
    Pepper::new(b"test pepper, 32 bytes long......")
        .unwrap()
        .cpr_ref(&Cpr::parse("0101904286").unwrap())
}

fn completed(id: &str, sp: &str) -> SessionEvent {
    SessionEvent::TransactionCompleted(TransactionCompleted {
        transaction_id: tx(id),
        client_id: client(sp),
        at: t(5),
    })
}

/// Folds `events` as records 10, 11, ... of session `s-1`; returns every seal.
fn fold(state: &mut SessionTokens, first_seq: u64, events: &[SessionEvent]) -> Vec<SealedClaims> {
    let session = SessionId::parse("s-1").unwrap();
    events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let seq = first_seq + i as u64;
            let record = RecordRef {
                seq,
                hash: hash(seq),
            };
            state.apply(&session, record, e, &ctx())
        })
        .collect()
}

fn sealed_seqs(claims: &Map<String, Value>) -> Vec<u64> {
    claims["ledger"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["hash"], hash(r["seq"].as_u64().unwrap()));
            r["seq"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn a_mitid_transaction_seals_its_login_signing_and_cpr_match() {
    let mut state = SessionTokens::default();
    let events = [
        started("t1", "sp-a", Idp::Mitid),
        mitid_login("t1"),
        SessionEvent::TransactionSigned(TransactionSigned {
            transaction_id: tx("t1"),
            transaction_text: "UGF5IDEwMCBrcg==".into(),
            transaction_text_type: TransactionTextType::Text,
            transaction_text_sha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
            reference_text: Some("Faktura 42".into()),
            at: t(2),
        }),
        SessionEvent::CprMatchCompleted(CprMatchCompleted {
            transaction_id: tx("t1"),
            cpr_ref: cpr_ref(),
            matched: true,
            attempt: 1,
            at: t(3),
        }),
        completed("t1", "sp-a"),
    ];
    let seals = fold(&mut state, 10, &events);
    assert_eq!(seals.len(), 1);
    let s = &seals[0];
    assert_eq!(
        (s.transaction_id.as_str(), s.client_id.as_str()),
        ("t1", "sp-a")
    );
    assert_eq!(s.completed_seq, 14);
    let c = Value::Object(s.claims.clone());
    assert_eq!(c["iss"], "https://broker.example");
    assert_eq!(c["aud"], "sp-a");
    assert_eq!(c["sub"], format!("mitid:{UUID}"));
    assert_eq!(c["sid"], "s-1");
    assert_eq!(c["transaction_id"], "t1");
    assert_eq!(c["iat"], (T0 / 1_000_000) + 5 * 60);
    assert_eq!(c["auth_time"], (T0 / 1_000_000) + 60);
    assert_eq!(c["idp"], "mitid");
    assert_eq!(c["identity_type"], "private");
    assert_eq!(
        c["loa"],
        "https://data.gov.dk/concept/core/nsis/Substantial"
    );
    assert_eq!(c["amr"], json!(["code_app"]));
    assert_eq!(c["mitid.uuid"], UUID);
    assert_eq!(c["mitid.psd2"], true);
    assert_eq!(c["mitid.transaction_text_type"], "text");
    assert_eq!(
        c["mitid.transaction_text_sha256"],
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    assert_eq!(c["mitid.reference_text"], "Faktura 42");
    assert_eq!(
        c["transaction_actions"],
        json!([
            "mitid.login",
            "mitid.transaction_signing",
            "mitid.cpr_match"
        ])
    );
    assert_eq!(c["ledger"]["origin"], "vidne.example/ledger");
    assert_eq!(sealed_seqs(&s.claims), [10, 11, 12, 13, 14]);
    // No CPR, not even its reference.
    assert!(!c.to_string().contains(cpr_ref().as_str()), "{c}");
    assert!(!c.to_string().contains("0101904286"), "{c}");
    assert!(
        !state.is_idle(),
        "the login is kept: a later transaction may reuse it (SSO)"
    );
}

#[test]
fn one_action_is_a_string_and_sso_reuse_seals_the_login_it_reuses() {
    let mut state = SessionTokens::default();
    let first = [
        started("t1", "sp-a", Idp::Mitid),
        mitid_login("t1"),
        completed("t1", "sp-a"),
    ];
    let seal = fold(&mut state, 0, &first).remove(0);
    assert_eq!(seal.claims["transaction_actions"], "mitid.login");
    // The projection stores the state between batches: the login survives it.
    let json = serde_json::to_string(&state).unwrap();
    let mut state: SessionTokens = serde_json::from_str(&json).unwrap();

    let reuse = [
        started("t2", "sp-b", Idp::Mitid),
        SessionEvent::SsoReused(SsoReused {
            transaction_id: tx("t2"),
            action: SsoAction::SsoLogin,
            subject_key: format!("mitid:{UUID}"),
            at: t(4),
        }),
        completed("t2", "sp-b"),
    ];
    let seal = fold(&mut state, 3, &reuse).remove(0);
    let c = Value::Object(seal.claims.clone());
    assert_eq!(c["aud"], "sp-b");
    assert_eq!(c["transaction_actions"], "mitid.sso_login");
    assert_eq!(c["sub"], format!("mitid:{UUID}"));
    assert_eq!(
        c["auth_time"],
        (T0 / 1_000_000) + 60,
        "the reused login's time"
    );
    // The reused login (seq 1) is sealed with the transaction's own records.
    assert_eq!(sealed_seqs(&seal.claims), [1, 3, 4, 5]);
}

#[test]
fn failed_and_logged_out_transactions_seal_nothing() {
    let mut state = SessionTokens::default();
    let events = [
        started("t1", "sp-a", Idp::Mitid),
        started("t2", "sp-a", Idp::Mitid),
        mitid_login("t2"),
        SessionEvent::FlowFailed(FlowFailed {
            transaction_id: tx("t1"),
            idp: Idp::Mitid,
            error: ErrorKind::AccessDenied,
            error_description: "mitid_user_aborted".into(),
            at: t(2),
        }),
        SessionEvent::LoggedOut(LoggedOut {
            channel: LogoutChannel::BackChannel,
            at: t(3),
        }),
    ];
    assert!(fold(&mut state, 0, &events).is_empty());
    assert!(state.is_idle());
}

#[test]
fn other_idps_have_their_subject_claims_and_no_mitid_claims() {
    let cases = [
        (
            Idp::BankidNo,
            &[("bankid_no.pid", "UN:NO-9578-5999-4-1765512")][..],
            "bankid_no:9578-5999-4-1765512",
            None,
        ),
        (Idp::Ftn, &[("sub", "ftn-sub-1")][..], "ftn:ftn-sub-1", None),
        (
            Idp::Nemid,
            &[("nemid.pid", "9208-2002-2-123456789012")][..],
            "nemid:pid:9208-2002-2-123456789012",
            Some("nemid.login"),
        ),
        (
            Idp::MitidErhverv,
            &[
                ("nemlogin.persistent_professional_id", "urn:uuid:1"),
                ("nemlogin.cvr", "12345678"),
            ][..],
            "mitid_erhverv:urn:uuid:1",
            None,
        ),
    ];
    for (idp, subject, key, action) in cases {
        let mut state = SessionTokens::default();
        let events = [
            started("t1", "sp-a", idp),
            login("t1", idp, subject, key, None),
            completed("t1", "sp-a"),
        ];
        let c = Value::Object(fold(&mut state, 0, &events).remove(0).claims);
        assert_eq!(c["sub"], key, "{idp:?}");
        assert_eq!(c["idp"], idp.as_str());
        for (name, value) in subject.iter().filter(|(n, _)| *n != "sub") {
            assert_eq!(c[*name], *value, "{idp:?}");
        }
        match idp {
            Idp::MitidErhverv => {
                assert_eq!(
                    c["transaction_actions"],
                    json!(["mitid.login", "mitid_erhverv.identity_selected"])
                );
                assert_eq!(c["mitid.psd2"], false, "always issued for MitID Erhverv");
                assert_eq!(c["identity_type"], "professional");
            }
            _ => {
                assert_eq!(
                    c.get("transaction_actions").cloned(),
                    action.map(|a| json!(a))
                );
                assert!(c.get("mitid.psd2").is_none(), "{idp:?}");
                assert!(c.get("loa").is_none(), "{idp:?}");
            }
        }
    }
}

#[test]
fn a_controlled_transfer_exchange_is_an_action_of_the_receiving_transaction() {
    let mut state = SessionTokens::default();
    fold(&mut state, 0, &[started("tb", "sp-b", Idp::Mitid)]);
    state.exchanged(
        RecordRef {
            seq: 1,
            hash: hash(1),
        },
        &CodeExchanged {
            code: TransferCode::parse("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95").unwrap(),
            client_id: client("sp-b"),
            session_id: SessionId::parse("s-1").unwrap(),
            transaction_id: tx("tb"),
            at: t(1),
        },
    );
    let seal = fold(&mut state, 2, &[mitid_login("tb"), completed("tb", "sp-b")]).remove(0);
    assert_eq!(
        seal.claims["transaction_actions"],
        json!(["mitid.controlled_transfer", "mitid.login"])
    );
    assert_eq!(sealed_seqs(&seal.claims), [0, 1, 2, 3]);
}

#[test]
fn the_state_between_records_round_trips_through_json() {
    let mut state = SessionTokens::default();
    fold(
        &mut state,
        0,
        &[started("t1", "sp-a", Idp::Mitid), mitid_login("t1")],
    );
    let json = serde_json::to_string(&state).unwrap();
    let mut back: SessionTokens = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    let a = fold(&mut state, 2, &[completed("t1", "sp-a")]);
    let b = fold(&mut back, 2, &[completed("t1", "sp-a")]);
    assert_eq!(a, b);
}
