//! Given/when/then for every Session rule, with no database.

use super::*;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cqrs_es::test::TestFramework;
use sha2::{Digest, Sha256};

use crate::domain::values::Cpr;

const PEPPER: &[u8] = b"test pepper, 32 bytes long......";

/// `sp-a` is registered in CURRENT and PROD, `sp-b` only in PROD.
struct Registry;

impl ClientRegistry for Registry {
    fn is_registered(&self, client_id: &ClientId, environment: Environment) -> bool {
        matches!(
            (client_id.as_str(), environment),
            ("sp-a", _) | ("sp-b", Environment::Prod)
        )
    }
}

fn services() -> SessionServices {
    SessionServices {
        pepper: Pepper::new(PEPPER).unwrap(),
        clients: Arc::new(Registry),
    }
}

fn framework() -> TestFramework<Session> {
    TestFramework::with(services())
}

/// Minutes after a fixed instant (2026-11-18).
fn t(minutes: i64) -> Timestamp {
    Timestamp::from_micros(1_795_500_000_000_000 + minutes * 60_000_000).unwrap()
}

fn tx(s: &str) -> TransactionId {
    TransactionId::parse(s).unwrap()
}

fn cpr_ref(cpr: &str) -> CprRef {
    Pepper::new(PEPPER)
        .unwrap()
        .cpr_ref(&Cpr::parse(cpr).unwrap())
}

fn b64(s: &str) -> String {
    BASE64.encode(s)
}

fn claims(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const UUID: &str = "efc7ffb4-e086-4f5f-a1d5-b3c7227db629";
const S: NsisLevel = NsisLevel::Substantial;

fn start(id: &str, idp: Idp, signed_request: bool) -> SessionCommand {
    SessionCommand::StartTransaction {
        transaction_id: tx(id),
        client_id: ClientId::parse("sp-a").unwrap(),
        environment: Environment::Prod,
        idp,
        signed_request,
        at: t(0),
    }
}

fn started(id: &str, idp: Idp, signed_request: bool) -> SessionEvent {
    SessionEvent::TransactionStarted(TransactionStarted {
        transaction_id: tx(id),
        client_id: ClientId::parse("sp-a").unwrap(),
        environment: Environment::Prod,
        idp,
        signed_request,
        at: t(0),
    })
}

fn mitid_login_cmd(id: &str, at: Timestamp) -> SessionCommand {
    SessionCommand::CompleteLogin {
        transaction_id: tx(id),
        identity_type: IdentityType::Private,
        loa: Some(S),
        ial: Some(NsisLevel::High),
        aal: Some(S),
        amr: vec!["code_app".into()],
        subject: claims(&[("mitid.uuid", UUID)]),
        psd2: None,
        at,
    }
}

fn mitid_login(id: &str, at: Timestamp) -> SessionEvent {
    SessionEvent::LoginCompleted(LoginCompleted {
        transaction_id: tx(id),
        client_id: ClientId::parse("sp-a").unwrap(),
        environment: Environment::Prod,
        idp: Idp::Mitid,
        identity_type: IdentityType::Private,
        loa: Some(S),
        ial: Some(NsisLevel::High),
        aal: Some(S),
        amr: vec!["code_app".into()],
        subject: claims(&[("mitid.uuid", UUID)]),
        psd2: None,
        subject_key: format!("mitid:{UUID}"),
        at,
    })
}

/// A MitID session with transaction `t1` (signed request) logged in at minute 0.
fn mitid_session() -> Vec<SessionEvent> {
    vec![started("t1", Idp::Mitid, true), mitid_login("t1", t(0))]
}

fn match_cpr(id: &str, cpr: &str, matched: bool, at: Timestamp) -> SessionCommand {
    SessionCommand::MatchCpr {
        transaction_id: tx(id),
        cpr: CprInput::new(cpr),
        matched,
        at,
    }
}

fn cpr_matched(id: &str, cpr: &str, matched: bool, attempt: u32, at: Timestamp) -> SessionEvent {
    SessionEvent::CprMatchCompleted(CprMatchCompleted {
        transaction_id: tx(id),
        cpr_ref: cpr_ref(cpr),
        matched,
        attempt,
        at,
    })
}

fn cpr_refused(id: &str, cpr: &str, attempt: u32, at: Timestamp) -> SessionEvent {
    SessionEvent::CprMatchRefused(CprMatchRefused {
        transaction_id: tx(id),
        cpr_ref: cpr_ref(cpr),
        attempt,
        error: ErrorKind::AccessDenied,
        error_description: CprRefusalCode::MitidCprMatchFailed,
        at,
    })
}

fn sign(id: &str, text: Option<&str>, text_type: &str, reference: Option<&str>) -> SessionCommand {
    SessionCommand::SignTransaction {
        transaction_id: tx(id),
        transaction_text: text.map(str::to_string),
        transaction_text_type: Some(text_type.into()),
        reference_text: reference.map(str::to_string),
        at: t(1),
    }
}

fn flow_error(id: &str, code: &str) -> SessionCommand {
    SessionCommand::RecordFlowError {
        transaction_id: tx(id),
        error: "access_denied".into(),
        error_description: code.into(),
        at: t(1),
    }
}

fn flow_failed(id: &str, idp: Idp, code: &str) -> SessionEvent {
    SessionEvent::FlowFailed(FlowFailed {
        transaction_id: tx(id),
        idp,
        error: ErrorKind::AccessDenied,
        error_description: code.into(),
        at: t(1),
    })
}

fn logout() -> SessionCommand {
    SessionCommand::LogOut {
        channel: LogoutChannel::BackChannel,
        at: t(2),
    }
}

fn issue_transfer(id: &str, broker: &str, sp: &str, text: &str) -> SessionCommand {
    SessionCommand::IssueTransferCode {
        transaction_id: tx(id),
        code: TransferCode::parse("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95").unwrap(),
        target_broker_id: broker.into(),
        target_service_provider_id: sp.into(),
        transfer_token_text: text.into(),
        expires_at: t(6),
        at: t(1),
    }
}

fn lookup_pid(id: &str, status: PidStatus, pid: Option<&str>, cpr: Option<&str>) -> SessionCommand {
    SessionCommand::LookUpPid {
        transaction_id: tx(id),
        pid_status: status,
        pid: pid.map(str::to_string),
        cpr: cpr.map(CprInput::new),
        at: t(1),
    }
}

fn refused(field: &str, code: &str) -> DomainError {
    DomainError::invalid(field, code)
}

// ---------------------------------------------------------------------------------------
// Transactions

#[test]
fn the_first_transaction_starts_the_session() {
    framework()
        .given_no_previous_events()
        .when(start("t1", Idp::Mitid, true))
        .then_expect_events(vec![started("t1", Idp::Mitid, true)]);
}

#[test]
fn further_transactions_join_the_session() {
    framework()
        .given(mitid_session())
        .when(start("t2", Idp::Mitid, false))
        .then_expect_events(vec![started("t2", Idp::Mitid, false)]);
}

#[test]
fn a_transaction_id_is_used_once() {
    framework()
        .given(mitid_session())
        .when(start("t1", Idp::Mitid, true))
        .then_expect_error(refused("transaction_id", TRANSACTION_EXISTS));
}

#[test]
fn a_client_must_be_registered_in_the_environment() {
    let mut cmd = start("t1", Idp::Mitid, true);
    if let SessionCommand::StartTransaction { client_id, .. } = &mut cmd {
        *client_id = ClientId::parse("sp-unknown").unwrap();
    }
    framework()
        .given_no_previous_events()
        .when(cmd)
        .then_expect_error(refused("client_id", UNREGISTERED_CLIENT));
    let mut cmd = start("t1", Idp::Mitid, true);
    if let SessionCommand::StartTransaction {
        client_id,
        environment,
        ..
    } = &mut cmd
    {
        *client_id = ClientId::parse("sp-b").unwrap();
        *environment = Environment::Current;
    }
    framework()
        .given_no_previous_events()
        .when(cmd)
        .then_expect_error(refused("client_id", UNREGISTERED_CLIENT));
}

#[test]
fn a_session_keeps_its_idp_and_environment() {
    framework()
        .given(mitid_session())
        .when(start("t2", Idp::Nemid, false))
        .then_expect_error(refused("idp", IDP_MISMATCH));
    let mut cmd = start("t2", Idp::Mitid, false);
    if let SessionCommand::StartTransaction { environment, .. } = &mut cmd {
        *environment = Environment::Current;
    }
    framework()
        .given(mitid_session())
        .when(cmd)
        .then_expect_error(refused("environment", ENVIRONMENT_MISMATCH));
}

#[test]
fn nothing_but_a_transaction_start_opens_a_session() {
    framework()
        .given_no_previous_events()
        .when(mitid_login_cmd("t1", t(0)))
        .then_expect_error(refused("session_id", UNKNOWN_SESSION));
    framework()
        .given_no_previous_events()
        .when(logout())
        .then_expect_error(refused("session_id", UNKNOWN_SESSION));
}

#[test]
fn actions_need_a_known_transaction() {
    framework()
        .given(mitid_session())
        .when(mitid_login_cmd("t9", t(0)))
        .then_expect_error(refused("transaction_id", UNKNOWN_TRANSACTION));
    framework()
        .given(mitid_session())
        .when(flow_error("t9", "mitid_user_aborted"))
        .then_expect_error(refused("transaction_id", UNKNOWN_TRANSACTION));
}

// ---------------------------------------------------------------------------------------
// Logins

#[test]
fn a_mitid_login_records_levels_amr_and_subject() {
    framework()
        .given(vec![started("t1", Idp::Mitid, true)])
        .when(mitid_login_cmd("t1", t(0)))
        .then_expect_events(vec![mitid_login("t1", t(0))]);
}

struct LoginCase {
    idp: Idp,
    identity_type: IdentityType,
    levels: Option<(NsisLevel, NsisLevel, NsisLevel)>,
    amr: &'static [&'static str],
    subject: &'static [(&'static str, &'static str)],
    key: &'static str,
}

fn login_cases() -> Vec<LoginCase> {
    use IdentityType::{Private, Professional};
    vec![
        LoginCase {
            idp: Idp::MitidErhverv,
            identity_type: Professional,
            levels: Some((S, S, NsisLevel::High)),
            amr: &["mitid:code_app", "mitid:password"],
            subject: &[
                ("nemlogin.persistent_professional_id", "urn:uuid:0f7e0c6a-1"),
                ("nemlogin.cvr", "12345678"),
                ("nemlogin.nemid.rid", "4711"),
            ],
            key: "mitid_erhverv:urn:uuid:0f7e0c6a-1",
        },
        LoginCase {
            idp: Idp::Nemid,
            identity_type: Private,
            levels: None,
            amr: &["nemid.otp"],
            subject: &[("nemid.pid", "9208-2002-2-123456789012")],
            key: "nemid:pid:9208-2002-2-123456789012",
        },
        LoginCase {
            idp: Idp::Nemid,
            identity_type: Professional,
            levels: None,
            amr: &["nemid.keyfile"],
            subject: &[("nemid.rid", "12345"), ("nemid.cvr", "87654321")],
            key: "nemid:cvr:87654321:rid:12345",
        },
        LoginCase {
            idp: Idp::BankidNo,
            identity_type: Private,
            levels: None,
            amr: &["BankID"],
            subject: &[("bankid_no.pid", "UN:NO-9578-5999-4-1765512")],
            key: "bankid_no:9578-5999-4-1765512",
        },
        LoginCase {
            idp: Idp::BankidMobileNo,
            identity_type: Private,
            levels: None,
            amr: &[],
            subject: &[("bankid_mobile_no.pid", "9578-5999-4-1765513")],
            key: "bankid_mobile_no:9578-5999-4-1765513",
        },
        LoginCase {
            idp: Idp::BuypassNo,
            identity_type: Private,
            levels: None,
            amr: &[],
            subject: &[("buypass_no.pid", "9578-4050-1")],
            key: "buypass_no:9578-4050-1",
        },
        LoginCase {
            idp: Idp::BankidSe,
            identity_type: Private,
            levels: None,
            amr: &["bankid_se.mobile"],
            subject: &[("bankid_se.pid", "c3b9a1f0-se")],
            key: "bankid_se:c3b9a1f0-se",
        },
        LoginCase {
            idp: Idp::Ftn,
            identity_type: Private,
            levels: None,
            amr: &["ftn"],
            subject: &[("sub", "FI-4f1c2e")],
            key: "ftn:FI-4f1c2e",
        },
    ]
}

fn login_cmd(c: &LoginCase) -> SessionCommand {
    SessionCommand::CompleteLogin {
        transaction_id: tx("t1"),
        identity_type: c.identity_type,
        loa: c.levels.map(|l| l.0),
        ial: c.levels.map(|l| l.1),
        aal: c.levels.map(|l| l.2),
        amr: c.amr.iter().map(|s| s.to_string()).collect(),
        subject: claims(c.subject),
        psd2: None,
        at: t(0),
    }
}

#[test]
fn logins_for_every_idp() {
    for c in login_cases() {
        framework()
            .given(vec![started("t1", c.idp, false)])
            .when(login_cmd(&c))
            .then_expect_events(vec![SessionEvent::LoginCompleted(LoginCompleted {
                transaction_id: tx("t1"),
                client_id: ClientId::parse("sp-a").unwrap(),
                environment: Environment::Prod,
                idp: c.idp,
                identity_type: c.identity_type,
                loa: c.levels.map(|l| l.0),
                ial: c.levels.map(|l| l.1),
                aal: c.levels.map(|l| l.2),
                amr: c.amr.iter().map(|s| s.to_string()).collect(),
                subject: claims(c.subject),
                psd2: None,
                subject_key: c.key.into(),
                at: t(0),
            })]);
    }
}

#[test]
fn bankid_seid2_and_old_subjects_are_the_same_person() {
    let old = LoginCase {
        idp: Idp::BankidNo,
        identity_type: IdentityType::Private,
        levels: None,
        amr: &[],
        subject: &[("bankid_no.pid", "9578-5999-4-1765512")],
        key: "bankid_no:9578-5999-4-1765512",
    };
    let given_old = vec![
        started("t1", Idp::BankidNo, false),
        framework()
            .given(vec![started("t1", Idp::BankidNo, false)])
            .when(login_cmd(&old))
            .inspect_result()
            .unwrap()
            .remove(0),
    ];
    // A later transaction presents the SEID 2.0 form: same person, presented form kept.
    let mut cmd = login_cmd(&LoginCase {
        subject: &[("bankid_no.pid", "UN:NO-9578-5999-4-1765512")],
        ..old
    });
    if let SessionCommand::CompleteLogin { transaction_id, .. } = &mut cmd {
        *transaction_id = tx("t2");
    }
    let mut given = given_old;
    given.push(started("t2", Idp::BankidNo, false));
    let events = framework().given(given).when(cmd).inspect_result().unwrap();
    let SessionEvent::LoginCompleted(e) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(e.subject["bankid_no.pid"], "UN:NO-9578-5999-4-1765512");
    assert_eq!(e.subject_key, "bankid_no:9578-5999-4-1765512");
}

#[test]
fn another_person_cannot_log_in_to_the_session() {
    let mut given = mitid_session();
    given.push(started("t2", Idp::Mitid, false));
    let mut cmd = mitid_login_cmd("t2", t(1));
    if let SessionCommand::CompleteLogin { subject, .. } = &mut cmd {
        *subject = claims(&[("mitid.uuid", "00000000-e086-4f5f-a1d5-b3c7227db629")]);
    }
    framework()
        .given(given)
        .when(cmd)
        .then_expect_error(refused("subject", SUBJECT_MISMATCH));
}

#[test]
fn identity_type_must_be_one_the_idp_issues() {
    let mut cmd = mitid_login_cmd("t1", t(0));
    if let SessionCommand::CompleteLogin { identity_type, .. } = &mut cmd {
        *identity_type = IdentityType::Professional;
    }
    framework()
        .given(vec![started("t1", Idp::Mitid, true)])
        .when(cmd)
        .then_expect_error(refused("identity_type", "is not issued by this idp"));
    let mut erhverv = login_cases().remove(0);
    erhverv.identity_type = IdentityType::Private;
    framework()
        .given(vec![started("t1", Idp::MitidErhverv, false)])
        .when(login_cmd(&erhverv))
        .then_expect_error(refused("identity_type", "is not issued by this idp"));
}

#[test]
fn nsis_levels_where_the_idp_has_them() {
    let with_levels = |loa, ial, aal| {
        let mut cmd = mitid_login_cmd("t1", t(0));
        if let SessionCommand::CompleteLogin {
            loa: l,
            ial: i,
            aal: a,
            ..
        } = &mut cmd
        {
            (*l, *i, *a) = (loa, ial, aal);
        }
        cmd
    };
    let given = || vec![started("t1", Idp::Mitid, true)];
    framework()
        .given(given())
        .when(with_levels(None, Some(S), Some(S)))
        .then_expect_error(refused("loa", "is required for this idp"));
    framework()
        .given(given())
        .when(with_levels(Some(S), Some(S), None))
        .then_expect_error(refused("aal", "is required for this idp"));
    // Seed: ial=low, aal=substantial => loa=low.
    framework()
        .given(given())
        .when(with_levels(Some(S), Some(NsisLevel::Low), Some(S)))
        .then_expect_error(refused("loa", "must be the lower of ial and aal"));
    let low = framework()
        .given(given())
        .when(with_levels(
            Some(NsisLevel::Low),
            Some(NsisLevel::Low),
            Some(S),
        ))
        .inspect_result();
    assert!(low.is_ok());
    // MitID Erhverv through NEB: at most Substantial.
    let mut high = login_cases().remove(0);
    high.levels = Some((NsisLevel::High, NsisLevel::High, NsisLevel::High));
    framework()
        .given(vec![started("t1", Idp::MitidErhverv, false)])
        .when(login_cmd(&high))
        .then_expect_error(refused(
            "loa",
            "MitID Erhverv through this broker is at most Substantial",
        ));
    // NemID has no NSIS levels.
    let mut nemid = login_cases().remove(1);
    nemid.levels = Some((S, S, S));
    framework()
        .given(vec![started("t1", Idp::Nemid, false)])
        .when(login_cmd(&nemid))
        .then_expect_error(refused("loa", "this idp has no NSIS levels"));
}

#[test]
fn amr_must_be_one_the_idp_issues() {
    let with_amr = |amr: &[&str]| {
        let mut cmd = mitid_login_cmd("t1", t(0));
        if let SessionCommand::CompleteLogin { amr: a, .. } = &mut cmd {
            *a = amr.iter().map(|s| s.to_string()).collect();
        }
        cmd
    };
    for bad in [
        &[][..],
        &["sms"],
        &["code_app", "code_app"],
        &["mitid:code_app"],
    ] {
        framework()
            .given(vec![started("t1", Idp::Mitid, true)])
            .when(with_amr(bad))
            .then_expect_error(refused("amr", "is not an amr this idp issues"));
    }
    let mut nemid = login_cases().remove(1);
    nemid.amr = &["nemid.otp", "nemid.keyfile"];
    framework()
        .given(vec![started("t1", Idp::Nemid, false)])
        .when(login_cmd(&nemid))
        .then_expect_error(refused("amr", "is not an amr this idp issues"));
}

#[test]
fn subject_claims_must_be_the_idps() {
    let mut cmd = mitid_login_cmd("t1", t(0));
    if let SessionCommand::CompleteLogin { subject, .. } = &mut cmd {
        *subject = claims(&[]);
    }
    framework()
        .given(vec![started("t1", Idp::Mitid, true)])
        .when(cmd)
        .then_expect_error(refused("subject/mitid.uuid", "is required"));
    // A national identity number is never a subject claim (SPEC section 6).
    let mut bankid = login_cases().remove(3);
    bankid.subject = &[
        ("bankid_no.pid", "9578-5999-4-1765512"),
        ("nnin_altsub", "18126612345"),
    ];
    framework()
        .given(vec![started("t1", Idp::BankidNo, false)])
        .when(login_cmd(&bankid))
        .then_expect_error(refused(
            "subject/nnin_altsub",
            "is not a subject claim of this idp and identity_type",
        ));
}

#[test]
fn a_transaction_logs_in_once_and_not_after_failing() {
    framework()
        .given(mitid_session())
        .when(mitid_login_cmd("t1", t(1)))
        .then_expect_error(refused("transaction_id", TRANSACTION_ALREADY_AUTHENTICATED));
    framework()
        .given(vec![
            started("t1", Idp::Mitid, true),
            flow_failed("t1", Idp::Mitid, "mitid_user_aborted"),
        ])
        .when(mitid_login_cmd("t1", t(1)))
        .then_expect_error(refused("transaction_id", TRANSACTION_FAILED));
}

// ---------------------------------------------------------------------------------------
// SSO reuse

#[test]
fn sso_reuse_authenticates_a_further_transaction() {
    for action in [SsoAction::SsoLogin, SsoAction::ReuseJwt] {
        let mut given = mitid_session();
        given.push(started("t2", Idp::Mitid, false));
        framework()
            .given(given)
            .when(SessionCommand::ReuseSso {
                transaction_id: tx("t2"),
                action,
                at: t(3),
            })
            .then_expect_events(vec![SessionEvent::SsoReused(SsoReused {
                transaction_id: tx("t2"),
                action,
                subject_key: format!("mitid:{UUID}"),
                at: t(3),
            })]);
    }
}

#[test]
fn sso_reuse_needs_an_earlier_mitid_login() {
    let reuse = |id: &str| SessionCommand::ReuseSso {
        transaction_id: tx(id),
        action: SsoAction::SsoLogin,
        at: t(3),
    };
    framework()
        .given(vec![started("t1", Idp::Mitid, false)])
        .when(reuse("t1"))
        .then_expect_error(DomainError::conflict(NO_EARLIER_LOGIN));
    framework()
        .given(mitid_session())
        .when(reuse("t1"))
        .then_expect_error(refused("transaction_id", TRANSACTION_ALREADY_AUTHENTICATED));
    let nemid = login_cases().remove(1);
    framework()
        .given(vec![
            started("t1", Idp::Nemid, false),
            framework()
                .given(vec![started("t1", Idp::Nemid, false)])
                .when(login_cmd(&nemid))
                .inspect_result()
                .unwrap()
                .remove(0),
            started("t2", Idp::Nemid, false),
        ])
        .when(reuse("t2"))
        .then_expect_error(refused("action", NOT_SUPPORTED_FOR_IDP));
}

// ---------------------------------------------------------------------------------------
// Transaction signing

#[test]
fn signing_records_the_text_and_its_sha256() {
    let text = "Overfør 100 kr til konto 1234";
    framework()
        .given(mitid_session())
        .when(sign(
            "t1",
            Some(&b64(text)),
            "text",
            Some(&b64("Betaling 42")),
        ))
        .then_expect_events(vec![SessionEvent::TransactionSigned(TransactionSigned {
            transaction_id: tx("t1"),
            transaction_text: b64(text),
            transaction_text_type: TransactionTextType::Text,
            transaction_text_sha256: BASE64.encode(Sha256::digest(text.as_bytes())),
            reference_text: Some(b64("Betaling 42")),
            at: t(1),
        })]);
}

#[test]
fn signing_accepts_the_allowed_html() {
    let html = "<html><body><h1>Betaling</h1><p>Til <b>X</b></p>\
                <table><tr><td style=\"color: red\">100 kr</td></tr></table></body></html>";
    let events = framework()
        .given(mitid_session())
        .when(sign("t1", Some(&b64(html)), "html", None))
        .inspect_result()
        .unwrap();
    assert!(matches!(&events[..], [SessionEvent::TransactionSigned(e)]
        if e.transaction_text_type == TransactionTextType::Html && e.reference_text.is_none()));
}

#[test]
fn signing_is_only_for_signed_requests() {
    framework()
        .given(vec![
            started("t1", Idp::Mitid, false),
            mitid_login("t1", t(0)),
        ])
        .when(sign("t1", Some(&b64("Pay")), "text", None))
        .then_expect_error(DomainError::access_denied(
            codes::MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST,
            None,
        ));
}

#[test]
fn signing_refuses_html_outside_the_seeds_rules() {
    for html in [
        "<p onclick=\"steal()\">Pay</p>",
        "<body onload=x()>Pay</body>",
        "<script>alert(1)</script>",
        "<a href=\"javascript:alert(1)\">Pay</a>",
        "<p><img src=\"https://evil.example/x.png\"></p>",
        "<div style=\"width: expression(alert(1))\">Pay</div>",
        "<style>p { background: url(javascript:alert(1)) }</style>",
        "<p title=\"unterminated>Pay",
    ] {
        framework()
            .given(mitid_session())
            .when(sign("t1", Some(&b64(html)), "html", None))
            .then_expect_error(DomainError::access_denied(
                codes::MITID_TRANSACTION_TEXT_INVALID,
                Some("transaction_text"),
            ));
    }
    framework()
        .given(mitid_session())
        .when(sign("t1", Some("%%% not base64"), "text", None))
        .then_expect_error(DomainError::access_denied(
            codes::MITID_TRANSACTION_TEXT_INVALID,
            Some("transaction_text"),
        ));
}

#[test]
fn signing_needs_a_text_and_a_known_type() {
    framework()
        .given(mitid_session())
        .when(sign("t1", None, "text", None))
        .then_expect_error(DomainError::access_denied(
            codes::MITID_TRANSACTION_TEXT_MISSING,
            Some("transaction_text"),
        ));
    framework()
        .given(mitid_session())
        .when(sign("t1", Some(&b64("Pay")), "pdf", None))
        .then_expect_error(refused(
            "transaction_text_type",
            "must be one of: text html",
        ));
}

#[test]
fn reference_text_is_at_most_130_characters() {
    let ok = framework()
        .given(mitid_session())
        .when(sign(
            "t1",
            Some(&b64("Pay")),
            "text",
            Some(&b64(&"é".repeat(130))),
        ))
        .inspect_result();
    assert!(ok.is_ok());
    framework()
        .given(mitid_session())
        .when(sign(
            "t1",
            Some(&b64("Pay")),
            "text",
            Some(&b64(&"é".repeat(131))),
        ))
        .then_expect_error(refused(
            "reference_text",
            "must be 1 to 130 characters once decoded",
        ));
}

#[test]
fn a_transaction_is_signed_once_after_its_login_in_mitid_only() {
    let mut given = mitid_session();
    given.push(
        framework()
            .given(mitid_session())
            .when(sign("t1", Some(&b64("Pay")), "text", None))
            .inspect_result()
            .unwrap()
            .remove(0),
    );
    framework()
        .given(given)
        .when(sign("t1", Some(&b64("Pay again")), "text", None))
        .then_expect_error(refused("transaction_id", TRANSACTION_ALREADY_SIGNED));
    framework()
        .given(vec![started("t1", Idp::Mitid, true)])
        .when(sign("t1", Some(&b64("Pay")), "text", None))
        .then_expect_error(refused("transaction_id", TRANSACTION_NOT_AUTHENTICATED));
    framework()
        .given(vec![started("t1", Idp::Nemid, true)])
        .when(sign("t1", Some(&b64("Pay")), "text", None))
        .then_expect_error(refused("transaction_text", NOT_SUPPORTED_FOR_IDP));
}

// ---------------------------------------------------------------------------------------
// CPR match

const CPR: &str = "070761-4286";

#[test]
fn cpr_matches_are_recorded_with_outcome_and_attempt() {
    framework()
        .given(mitid_session())
        .when(match_cpr("t1", CPR, false, t(1)))
        .then_expect_events(vec![cpr_matched("t1", CPR, false, 1, t(1))]);
    framework()
        .given(vec![
            started("t1", Idp::Mitid, true),
            mitid_login("t1", t(0)),
            cpr_matched("t1", CPR, false, 1, t(1)),
        ])
        .when(match_cpr("t1", CPR, true, t(2)))
        .then_expect_events(vec![cpr_matched("t1", CPR, true, 2, t(2))]);
}

fn three_attempts() -> Vec<SessionEvent> {
    let mut given = mitid_session();
    for attempt in 1..=3 {
        given.push(cpr_matched("t1", CPR, false, attempt, t(1)));
    }
    given
}

#[test]
fn the_fourth_cpr_match_is_refused_and_recorded() {
    let events = framework()
        .given(three_attempts())
        .when(match_cpr("t1", CPR, true, t(2)))
        .inspect_result()
        .expect("a refusal the seed wants recorded is an event, not an Err");
    assert_eq!(events, vec![cpr_refused("t1", CPR, 4, t(2))]);
    assert_eq!(
        events[0].refusal(),
        Some(DomainError::access_denied("mitid_cpr_match_failed", None))
    );
    assert_eq!(cpr_matched("t1", CPR, true, 1, t(1)).refusal(), None);
    // And every one after it.
    let mut given = three_attempts();
    given.push(cpr_refused("t1", CPR, 4, t(2)));
    framework()
        .given(given)
        .when(match_cpr("t1", "0101001234", true, t(3)))
        .then_expect_events(vec![cpr_refused("t1", "0101001234", 5, t(3))]);
}

#[test]
fn a_new_mitid_login_resets_the_cpr_match_limit_and_sso_reuse_does_not() {
    let mut relogin = three_attempts();
    relogin.push(started("t2", Idp::Mitid, false));
    relogin.push(mitid_login("t2", t(5)));
    framework()
        .given(relogin)
        .when(match_cpr("t2", CPR, true, t(6)))
        .then_expect_events(vec![cpr_matched("t2", CPR, true, 1, t(6))]);
    let mut reuse = three_attempts();
    reuse.push(started("t2", Idp::Mitid, false));
    reuse.push(SessionEvent::SsoReused(SsoReused {
        transaction_id: tx("t2"),
        action: SsoAction::ReuseJwt,
        subject_key: format!("mitid:{UUID}"),
        at: t(5),
    }));
    framework()
        .given(reuse)
        .when(match_cpr("t2", CPR, true, t(6)))
        .then_expect_events(vec![cpr_refused("t2", CPR, 4, t(6))]);
}

#[test]
fn cpr_match_only_within_15_minutes_of_the_mitid_login() {
    framework()
        .given(mitid_session())
        .when(match_cpr("t1", CPR, true, t(15)))
        .then_expect_events(vec![cpr_matched("t1", CPR, true, 1, t(15))]);
    framework()
        .given(mitid_session())
        .when(match_cpr("t1", CPR, true, t(15).plus_micros(1)))
        .then_expect_error(DomainError::access_denied("mitid_cpr_match_failed", None));
    // Counted from the latest MitID login, not the first.
    let mut given = mitid_session();
    given.push(started("t2", Idp::Mitid, false));
    given.push(mitid_login("t2", t(30)));
    framework()
        .given(given)
        .when(match_cpr("t2", CPR, true, t(40)))
        .then_expect_events(vec![cpr_matched("t2", CPR, true, 1, t(40))]);
}

#[test]
fn cpr_is_validated_but_never_for_modulus_11() {
    for bad in ["", "0707614", "070761_4286", "3102614286", "07076l4286"] {
        framework()
            .given(mitid_session())
            .when(match_cpr("t1", bad, true, t(1)))
            .then_expect_error(DomainError::from(Cpr::parse(bad).unwrap_err()));
    }
    let e = framework()
        .given(mitid_session())
        .when(match_cpr("t1", "3102614286", true, t(1)))
        .inspect_result()
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("cpr"));
    // 070761-4286 fails modulus 11; 0707614285 passes it: both are matched.
    for ok in ["070761-4286", "0707614285"] {
        framework()
            .given(mitid_session())
            .when(match_cpr("t1", ok, true, t(1)))
            .then_expect_events(vec![cpr_matched("t1", ok, true, 1, t(1))]);
    }
}

#[test]
fn cpr_is_recorded_only_as_cpr_ref() {
    let cmd = match_cpr("t1", CPR, true, t(1));
    assert!(!format!("{cmd:?}").contains("4286"));
    let events = framework()
        .given(three_attempts())
        .when(match_cpr("t1", CPR, true, t(1)))
        .inspect_result()
        .unwrap();
    let mut all = vec![cpr_matched("t1", CPR, true, 1, t(1))];
    all.extend(events);
    for e in all {
        let json = serde_json::to_string(&e.data()).unwrap();
        assert!(!json.contains("070761") && !json.contains("4286"), "{json}");
        assert!(json.contains(&format!("\"cpr_ref\":\"{}\"", cpr_ref(CPR).as_str())));
    }
}

#[test]
fn cpr_match_needs_an_authenticated_mitid_or_nemid_transaction() {
    framework()
        .given(vec![started("t1", Idp::Mitid, true)])
        .when(match_cpr("t1", CPR, true, t(1)))
        .then_expect_error(refused("transaction_id", TRANSACTION_NOT_AUTHENTICATED));
    framework()
        .given(vec![started("t1", Idp::BankidNo, false)])
        .when(match_cpr("t1", CPR, true, t(1)))
        .then_expect_error(refused("cpr", NOT_SUPPORTED_FOR_IDP));
    // NemID CPR match: the seed states no limit.
    let nemid = login_cases().remove(1);
    let mut given = vec![started("t1", Idp::Nemid, false)];
    given.push(
        framework()
            .given(given.clone())
            .when(login_cmd(&nemid))
            .inspect_result()
            .unwrap()
            .remove(0),
    );
    for attempt in 1..=3 {
        given.push(cpr_matched("t1", CPR, false, attempt, t(1)));
    }
    framework()
        .given(given)
        .when(match_cpr("t1", CPR, true, t(40)))
        .then_expect_events(vec![cpr_matched("t1", CPR, true, 4, t(40))]);
}

// ---------------------------------------------------------------------------------------
// NemID PID lookup

#[test]
fn pid_lookups_record_their_status() {
    framework()
        .given(mitid_session())
        .when(lookup_pid(
            "t1",
            PidStatus::Success,
            Some("9208-2002-2-123456789012"),
            Some(CPR),
        ))
        .then_expect_events(vec![SessionEvent::PidLookupCompleted(PidLookupCompleted {
            transaction_id: tx("t1"),
            pid_status: PidStatus::Success,
            pid: Some(ExternalId::parse("pid", "9208-2002-2-123456789012").unwrap()),
            cpr_ref: Some(cpr_ref(CPR)),
            at: t(1),
        })]);
    framework()
        .given(mitid_session())
        .when(lookup_pid("t1", PidStatus::UnableToLookup, None, None))
        .then_expect_events(vec![SessionEvent::PidLookupCompleted(PidLookupCompleted {
            transaction_id: tx("t1"),
            pid_status: PidStatus::UnableToLookup,
            pid: None,
            cpr_ref: None,
            at: t(1),
        })]);
}

#[test]
fn a_pid_comes_exactly_with_success() {
    framework()
        .given(mitid_session())
        .when(lookup_pid("t1", PidStatus::Success, None, None))
        .then_expect_error(refused("pid", "is required when pid_status is success"));
    framework()
        .given(mitid_session())
        .when(lookup_pid(
            "t1",
            PidStatus::UnableToLookup,
            Some("9208"),
            None,
        ))
        .then_expect_error(refused(
            "pid",
            "must be absent when pid_status is unable_to_lookup",
        ));
    framework()
        .given(mitid_session())
        .when(lookup_pid(
            "t1",
            PidStatus::UnableToLookup,
            None,
            Some("31026"),
        ))
        .then_expect_error(DomainError::from(Cpr::parse("31026").unwrap_err()));
}

#[test]
fn pid_lookup_is_for_authenticated_mitid_transactions() {
    framework()
        .given(vec![started("t1", Idp::Nemid, false)])
        .when(lookup_pid("t1", PidStatus::UnableToLookup, None, None))
        .then_expect_error(refused("pid_status", NOT_SUPPORTED_FOR_IDP));
    framework()
        .given(vec![started("t1", Idp::Mitid, false)])
        .when(lookup_pid("t1", PidStatus::UnableToLookup, None, None))
        .then_expect_error(refused("transaction_id", TRANSACTION_NOT_AUTHENTICATED));
}

// ---------------------------------------------------------------------------------------
// Controlled transfer, the issuing session's side

#[test]
fn a_transfer_code_issued_from_a_mitid_transaction_is_recorded() {
    framework()
        .given(mitid_session())
        .when(issue_transfer(
            "t1",
            "broker-b",
            "sp-b-mitid",
            "Welcome from A",
        ))
        .then_expect_events(vec![SessionEvent::TransferCodeIssued(TransferCodeIssued {
            transaction_id: tx("t1"),
            code: TransferCode::parse("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95").unwrap(),
            target_broker_id: ExternalId::parse("b", "broker-b").unwrap(),
            target_service_provider_id: ExternalId::parse("s", "sp-b-mitid").unwrap(),
            expires_at: t(6),
            at: t(1),
        })]);
}

#[test]
fn a_transfer_code_needs_targets_and_a_text() {
    for (cmd, field, reason) in [
        (
            issue_transfer("t1", "", "sp-b-mitid", "Welcome"),
            "target_broker_id",
            "is required",
        ),
        (
            issue_transfer("t1", "broker-b", "", "Welcome"),
            "target_service_provider_id",
            "is required",
        ),
        (
            issue_transfer("t1", "broker-b", "sp-b-mitid", ""),
            "transfer_token_text",
            "must not be empty",
        ),
        (
            issue_transfer("t1", "broker-b", "sp-b-mitid", &"x".repeat(131)),
            "transfer_token_text",
            "must be at most 130 characters",
        ),
    ] {
        framework()
            .given(mitid_session())
            .when(cmd)
            .then_expect_error(refused(field, reason));
    }
    framework()
        .given(vec![started("t1", Idp::Nemid, false)])
        .when(issue_transfer("t1", "broker-b", "sp-b-mitid", "Welcome"))
        .then_expect_error(refused("code", NOT_SUPPORTED_FOR_IDP));
    framework()
        .given(vec![started("t1", Idp::Mitid, false)])
        .when(issue_transfer("t1", "broker-b", "sp-b-mitid", "Welcome"))
        .then_expect_error(refused("transaction_id", TRANSACTION_NOT_AUTHENTICATED));
}

// ---------------------------------------------------------------------------------------
// Flow errors

#[test]
fn flow_errors_with_the_seeds_codes_are_recorded() {
    for code in codes::MITID_ERROR_DESCRIPTIONS {
        framework()
            .given(vec![started("t1", Idp::Mitid, true)])
            .when(flow_error("t1", code))
            .then_expect_events(vec![flow_failed("t1", Idp::Mitid, code)]);
    }
    for code in codes::MITID_ERHVERV_ERROR_DESCRIPTIONS {
        framework()
            .given(vec![started("t1", Idp::MitidErhverv, false)])
            .when(flow_error("t1", code))
            .then_expect_events(vec![flow_failed("t1", Idp::MitidErhverv, code)]);
    }
    for code in [
        "nemid_user_aborted",
        "nemid_flow_error_TIMESTAMP_EXPIRED",
        "nemid_flow_error_4711",
        "nemid_unspecified_error",
        "nemid_client_flow_error_SRV001",
        "nemid_srv001",
    ] {
        framework()
            .given(vec![started("t1", Idp::Nemid, false)])
            .when(flow_error("t1", code))
            .then_expect_events(vec![flow_failed("t1", Idp::Nemid, code)]);
    }
    // After a completed login too (e.g. during the CPR flow).
    framework()
        .given(mitid_session())
        .when(flow_error("t1", "mitid_cpr_match_failed"))
        .then_expect_events(vec![flow_failed(
            "t1",
            Idp::Mitid,
            "mitid_cpr_match_failed",
        )]);
}

#[test]
fn flow_errors_outside_the_idps_table_are_refused() {
    for (idp, code) in [
        (Idp::Mitid, "nemid_user_aborted"),
        (Idp::Mitid, "mitid_erhverv_user_aborted"),
        (Idp::Mitid, "something_else"),
        (Idp::Nemid, "mitid_user_aborted"),
        (Idp::MitidErhverv, "nemid_user_aborted"),
    ] {
        framework()
            .given(vec![started("t1", idp, false)])
            .when(flow_error("t1", code))
            .then_expect_error(refused(
                "error_description",
                "is not a code of this idp's error table",
            ));
    }
    let mut cmd = flow_error("t1", "mitid_user_aborted");
    if let SessionCommand::RecordFlowError { error, .. } = &mut cmd {
        *error = "server_error".into();
    }
    framework()
        .given(vec![started("t1", Idp::Mitid, false)])
        .when(cmd)
        .then_expect_error(refused("error", "must be one of: access_denied"));
}

#[test]
fn a_failed_transaction_accepts_nothing_more() {
    let given = || {
        let mut g = mitid_session();
        g.push(flow_failed("t1", Idp::Mitid, "mitid_user_aborted"));
        g
    };
    for cmd in [
        flow_error("t1", "mitid_timeout"),
        sign("t1", Some(&b64("Pay")), "text", None),
        match_cpr("t1", CPR, true, t(1)),
        lookup_pid("t1", PidStatus::UnableToLookup, None, None),
        issue_transfer("t1", "broker-b", "sp-b-mitid", "Welcome"),
    ] {
        framework()
            .given(given())
            .when(cmd)
            .then_expect_error(refused("transaction_id", TRANSACTION_FAILED));
    }
    // The session goes on with other transactions.
    framework()
        .given(given())
        .when(start("t2", Idp::Mitid, false))
        .then_expect_events(vec![started("t2", Idp::Mitid, false)]);
}

// ---------------------------------------------------------------------------------------
// Completion

fn complete(id: &str, at: Timestamp) -> SessionCommand {
    SessionCommand::CompleteTransaction {
        transaction_id: tx(id),
        at,
    }
}

fn completed(id: &str, at: Timestamp) -> SessionEvent {
    SessionEvent::TransactionCompleted(TransactionCompleted {
        transaction_id: tx(id),
        client_id: ClientId::parse("sp-a").unwrap(),
        at,
    })
}

#[test]
fn an_authenticated_transaction_completes_for_its_client() {
    framework()
        .given(mitid_session())
        .when(complete("t1", t(3)))
        .then_expect_events(vec![completed("t1", t(3))]);
}

#[test]
fn only_an_authenticated_open_transaction_completes() {
    framework()
        .given(vec![started("t1", Idp::Mitid, false)])
        .when(complete("t1", t(1)))
        .then_expect_error(refused("transaction_id", TRANSACTION_NOT_AUTHENTICATED));
    framework()
        .given(mitid_session())
        .when(complete("t9", t(1)))
        .then_expect_error(refused("transaction_id", UNKNOWN_TRANSACTION));
    let mut failed = mitid_session();
    failed.push(flow_failed("t1", Idp::Mitid, "mitid_user_aborted"));
    framework()
        .given(failed)
        .when(complete("t1", t(1)))
        .then_expect_error(refused("transaction_id", TRANSACTION_FAILED));
}

#[test]
fn a_completed_transaction_accepts_nothing_more() {
    let given = || {
        let mut g = mitid_session();
        g.push(completed("t1", t(2)));
        g
    };
    for cmd in [
        complete("t1", t(3)),
        flow_error("t1", "mitid_timeout"),
        sign("t1", Some(&b64("Pay")), "text", None),
        match_cpr("t1", CPR, true, t(3)),
        lookup_pid("t1", PidStatus::UnableToLookup, None, None),
        issue_transfer("t1", "broker-b", "sp-b-mitid", "Welcome"),
    ] {
        framework()
            .given(given())
            .when(cmd)
            .then_expect_error(refused("transaction_id", TRANSACTION_COMPLETED));
    }
    // The session goes on: a further transaction reuses the login.
    let mut then = given();
    then.push(started("t2", Idp::Mitid, false));
    framework()
        .given(then)
        .when(SessionCommand::ReuseSso {
            transaction_id: tx("t2"),
            action: SsoAction::ReuseJwt,
            at: t(4),
        })
        .then_expect_events(vec![SessionEvent::SsoReused(SsoReused {
            transaction_id: tx("t2"),
            action: SsoAction::ReuseJwt,
            subject_key: format!("mitid:{UUID}"),
            at: t(4),
        })]);
}

#[test]
fn psd2_is_recorded_for_mitid_logins_only() {
    let mut cmd = mitid_login_cmd("t1", t(1));
    if let SessionCommand::CompleteLogin { psd2, .. } = &mut cmd {
        *psd2 = Some(true);
    }
    let SessionEvent::LoginCompleted(mut expected) = mitid_login("t1", t(1)) else {
        unreachable!()
    };
    expected.psd2 = Some(true);
    framework()
        .given(vec![started("t1", Idp::Mitid, false)])
        .when(cmd)
        .then_expect_events(vec![SessionEvent::LoginCompleted(expected)]);
    let bankid = login_cases()
        .into_iter()
        .find(|c| c.idp == Idp::BankidNo)
        .unwrap();
    let mut cmd = login_cmd(&bankid);
    if let SessionCommand::CompleteLogin { psd2, .. } = &mut cmd {
        *psd2 = Some(false);
    }
    framework()
        .given(vec![started("t1", Idp::BankidNo, false)])
        .when(cmd)
        .then_expect_error(refused("psd2", NOT_SUPPORTED_FOR_IDP));
}

// ---------------------------------------------------------------------------------------
// Logout

#[test]
fn back_channel_logout_is_recorded() {
    framework()
        .given(mitid_session())
        .when(logout())
        .then_expect_events(vec![SessionEvent::LoggedOut(LoggedOut {
            channel: LogoutChannel::BackChannel,
            at: t(2),
        })]);
}

#[test]
fn after_logout_the_session_accepts_nothing() {
    let mut given = mitid_session();
    given.push(started("t2", Idp::Mitid, false));
    given.push(SessionEvent::LoggedOut(LoggedOut {
        channel: LogoutChannel::BackChannel,
        at: t(2),
    }));
    for cmd in [
        start("t3", Idp::Mitid, false),
        mitid_login_cmd("t2", t(3)),
        SessionCommand::ReuseSso {
            transaction_id: tx("t2"),
            action: SsoAction::SsoLogin,
            at: t(3),
        },
        sign("t1", Some(&b64("Pay")), "text", None),
        match_cpr("t1", CPR, true, t(3)),
        lookup_pid("t1", PidStatus::UnableToLookup, None, None),
        issue_transfer("t1", "broker-b", "sp-b-mitid", "Welcome"),
        flow_error("t2", "mitid_user_aborted"),
        complete("t1", t(3)),
        logout(),
    ] {
        framework()
            .given(given.clone())
            .when(cmd)
            .then_expect_error(DomainError::conflict(SESSION_LOGGED_OUT));
    }
}

// ---------------------------------------------------------------------------------------
// Ledger form

#[test]
fn session_events_round_trip_through_the_ledger_form() {
    let mut events = mitid_session();
    events.push(cpr_refused("t1", CPR, 4, t(2)));
    events.push(flow_failed("t1", Idp::Mitid, "mitid_timeout"));
    for e in events {
        let (ty, version, payload) = e.to_record_parts().unwrap();
        assert!(ty.as_str().starts_with("session."));
        assert_eq!(version.get(), 1);
        let data: serde_json::Value = serde_json::from_slice(payload.canonical()).unwrap();
        let back = SessionEvent::from_record_parts(ty.as_str(), 1, data.clone()).unwrap();
        assert_eq!(back, e);
        assert_eq!(cqrs_es::DomainEvent::event_type(&e), ty.as_str());
        assert!(SessionEvent::from_record_parts(ty.as_str(), 2, data.clone()).is_err());
        assert!(SessionEvent::from_record_parts("transfer.code_issued", 1, data).is_err());
    }
}

#[test]
fn session_state_round_trips_through_serde() {
    // cqrs-es may snapshot an aggregate as JSON.
    let mut session = Session::default();
    for e in three_attempts() {
        cqrs_es::Aggregate::apply(&mut session, e);
    }
    let json = serde_json::to_string(&session).unwrap();
    let back: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(back, session);
    assert!(!json.contains("4286"));
}
