//! A broker session (`session:<session_id>`): the transactions of SP authentication
//! requests in it, and everything done in them. Seed 002 throughout.
//!
//! A transaction is started (`session.transaction_started`), authenticated by a login
//! (`session.login_completed`) or by SSO reuse of the session's earlier login
//! (`session.sso_reused`), and may then be signed, have CPR matches, a NemID PID lookup
//! and a Controlled Transfer code issued in it. It ends completed
//! (`session.transaction_completed`: its token is sealed) or with a flow error
//! (`session.flow_failed`). A back-channel logout (`session.logged_out`) ends the
//! session: it accepts nothing after that.

use std::collections::BTreeMap;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::domain::codes::{self, flow_error_allowed};
use crate::domain::values::{
    ClientId, CprInput, CprRef, CprRefusalCode, Environment, ErrorKind, ExternalId, IdentityType,
    Idp, LogoutChannel, NsisLevel, Pepper, PidStatus, ReferenceText, SsoAction, Subject, Timestamp,
    TransactionId, TransactionText, TransactionTextType, TransferCode, TransferTokenText,
};
use crate::domain::{domain_event, DomainError, LedgerEvent};
use crate::record::FieldError;

/// MitID allows at most three CPR match attempts per MitID session (seed 002, "MitID CPR
/// Match API").
pub const CPR_MATCH_MAX_ATTEMPTS: u32 = 3;
/// MitID allows CPR match only for 15 minutes after the MitID session was issued.
pub const CPR_MATCH_WINDOW_MICROS: i64 = 15 * 60 * 1_000_000;

// Vidne's own `error_description` codes for refusals the seeds do not name.
pub const UNKNOWN_SESSION: &str = "unknown_session";
pub const SESSION_LOGGED_OUT: &str = "session_logged_out";
pub const UNKNOWN_TRANSACTION: &str = "unknown_transaction";
pub const TRANSACTION_EXISTS: &str = "transaction_exists";
pub const TRANSACTION_FAILED: &str = "transaction_failed";
pub const TRANSACTION_COMPLETED: &str = "transaction_completed";
pub const TRANSACTION_NOT_AUTHENTICATED: &str = "transaction_not_authenticated";
pub const TRANSACTION_ALREADY_AUTHENTICATED: &str = "transaction_already_authenticated";
pub const TRANSACTION_ALREADY_SIGNED: &str = "transaction_already_signed";
pub const IDP_MISMATCH: &str = "idp_mismatch";
pub const ENVIRONMENT_MISMATCH: &str = "environment_mismatch";
pub const SUBJECT_MISMATCH: &str = "subject_mismatch";
pub const NOT_SUPPORTED_FOR_IDP: &str = "not_supported_for_idp";
pub const NO_EARLIER_LOGIN: &str = "no_earlier_login";
pub const UNREGISTERED_CLIENT: &str = "unregistered_client";

/// Which SP clients are registered in which environment: a view of `client.registered`
/// events kept by the edge (see [`crate::domain::client::RegisteredClients`]).
pub trait ClientRegistry: Send + Sync {
    fn is_registered(&self, client_id: &ClientId, environment: Environment) -> bool;
}

/// What a session needs from outside: the pepper for `cpr_ref` and the client registry.
#[derive(Clone)]
pub struct SessionServices {
    pub pepper: Pepper,
    pub clients: Arc<dyn ClientRegistry>,
}

// ---------------------------------------------------------------------------------------
// Commands

/// What the edge asks a session to record. Texts with seed rules arrive unparsed, so
/// that the session's refusals name the field; `at` is the edge's clock.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    /// An SP's authentication request reached the broker. The first one creates the
    /// session.
    StartTransaction {
        transaction_id: TransactionId,
        client_id: ClientId,
        environment: Environment,
        idp: Idp,
        /// Whether the SP signed its request (transaction signing needs it).
        signed_request: bool,
        at: Timestamp,
    },
    /// The IdP login of a started transaction completed (`mitid.login`, `nemid.login`...).
    CompleteLogin {
        transaction_id: TransactionId,
        identity_type: IdentityType,
        loa: Option<NsisLevel>,
        ial: Option<NsisLevel>,
        aal: Option<NsisLevel>,
        amr: Vec<String>,
        /// The IdP's subject claims by name (`mitid.uuid`, `nemid.pid`, `bankid_no.pid`...).
        subject: BTreeMap<String, String>,
        /// MitID's `mitid.psd2`: the authentication was PSD2 compliant (MitID and MitID
        /// Erhverv only).
        psd2: Option<bool>,
        at: Timestamp,
    },
    /// A started transaction was authenticated by reusing the session's MitID login.
    ReuseSso {
        transaction_id: TransactionId,
        action: SsoAction,
        at: Timestamp,
    },
    /// The user approved a transaction text in a MitID transaction.
    SignTransaction {
        transaction_id: TransactionId,
        transaction_text: Option<String>,
        transaction_text_type: Option<String>,
        reference_text: Option<String>,
        at: Timestamp,
    },
    /// A CPR match was made against the session's MitID (or NemID) identity.
    MatchCpr {
        transaction_id: TransactionId,
        cpr: CprInput,
        /// `cprNumberMatch` as the IdP answered it.
        matched: bool,
        at: Timestamp,
    },
    /// A NemID PID lookup for a MitID transaction completed.
    LookUpPid {
        transaction_id: TransactionId,
        pid_status: PidStatus,
        pid: Option<String>,
        /// The CPR the SP supplied for the lookup, if it did.
        cpr: Option<CprInput>,
        at: Timestamp,
    },
    /// A Controlled Transfer Token Exchange Code was issued from a MitID transaction.
    IssueTransferCode {
        transaction_id: TransactionId,
        code: TransferCode,
        target_broker_id: String,
        target_service_provider_id: String,
        transfer_token_text: String,
        expires_at: Timestamp,
        at: Timestamp,
    },
    /// The transaction ended with an IdP flow error.
    RecordFlowError {
        transaction_id: TransactionId,
        error: String,
        error_description: String,
        at: Timestamp,
    },
    /// The transaction ended well: the broker answered the SP. Its token is sealed from
    /// the records up to this one.
    CompleteTransaction {
        transaction_id: TransactionId,
        at: Timestamp,
    },
    /// The broker received a back-channel logout for the session.
    LogOut {
        channel: LogoutChannel,
        at: Timestamp,
    },
}

// ---------------------------------------------------------------------------------------
// Events

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionStarted {
    pub transaction_id: TransactionId,
    pub client_id: ClientId,
    pub environment: Environment,
    pub idp: Idp,
    pub signed_request: bool,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginCompleted {
    pub transaction_id: TransactionId,
    /// The SP client and environment of the transaction, repeated so that a login record
    /// reads on its own.
    pub client_id: ClientId,
    pub environment: Environment,
    pub idp: Idp,
    pub identity_type: IdentityType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loa: Option<NsisLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ial: Option<NsisLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aal: Option<NsisLevel>,
    pub amr: Vec<String>,
    /// The subject claims as presented.
    pub subject: BTreeMap<String, String>,
    /// The normalised identifier naming the same person across logins.
    pub subject_key: String,
    /// `mitid.psd2` as the IdP reported it (MitID and MitID Erhverv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psd2: Option<bool>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoReused {
    pub transaction_id: TransactionId,
    pub action: SsoAction,
    pub subject_key: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionSigned {
    pub transaction_id: TransactionId,
    /// The text as presented (base64): the evidence.
    pub transaction_text: String,
    pub transaction_text_type: TransactionTextType,
    /// Base64 of SHA-256 over the decoded text.
    pub transaction_text_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_text: Option<String>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CprMatchCompleted {
    pub transaction_id: TransactionId,
    pub cpr_ref: CprRef,
    pub matched: bool,
    /// 1 to 3 since the session's MitID login.
    pub attempt: u32,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CprMatchRefused {
    pub transaction_id: TransactionId,
    pub cpr_ref: CprRef,
    /// 4 or more.
    pub attempt: u32,
    pub error: ErrorKind,
    pub error_description: CprRefusalCode,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidLookupCompleted {
    pub transaction_id: TransactionId,
    pub pid_status: PidStatus,
    /// `nemid.pid`, present exactly when `pid_status` is `success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<ExternalId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpr_ref: Option<CprRef>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferCodeIssued {
    pub transaction_id: TransactionId,
    pub code: TransferCode,
    pub target_broker_id: ExternalId,
    pub target_service_provider_id: ExternalId,
    pub expires_at: Timestamp,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFailed {
    pub transaction_id: TransactionId,
    pub idp: Idp,
    pub error: ErrorKind,
    pub error_description: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionCompleted {
    pub transaction_id: TransactionId,
    /// The SP the transaction's token is for.
    pub client_id: ClientId,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedOut {
    pub channel: LogoutChannel,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum SessionEvent {
    #[serde(rename = "session.transaction_started")]
    TransactionStarted(TransactionStarted),
    #[serde(rename = "session.login_completed")]
    LoginCompleted(LoginCompleted),
    #[serde(rename = "session.sso_reused")]
    SsoReused(SsoReused),
    #[serde(rename = "session.transaction_signed")]
    TransactionSigned(TransactionSigned),
    #[serde(rename = "session.cpr_match_completed")]
    CprMatchCompleted(CprMatchCompleted),
    #[serde(rename = "session.cpr_match_refused")]
    CprMatchRefused(CprMatchRefused),
    #[serde(rename = "session.pid_lookup_completed")]
    PidLookupCompleted(PidLookupCompleted),
    #[serde(rename = "session.transfer_code_issued")]
    TransferCodeIssued(TransferCodeIssued),
    #[serde(rename = "session.flow_failed")]
    FlowFailed(FlowFailed),
    #[serde(rename = "session.transaction_completed")]
    TransactionCompleted(TransactionCompleted),
    #[serde(rename = "session.logged_out")]
    LoggedOut(LoggedOut),
}

impl LedgerEvent for SessionEvent {
    const TYPES: &'static [(&'static str, u32)] = &[
        ("session.transaction_started", 1),
        ("session.login_completed", 1),
        ("session.sso_reused", 1),
        ("session.transaction_signed", 1),
        ("session.cpr_match_completed", 1),
        ("session.cpr_match_refused", 1),
        ("session.pid_lookup_completed", 1),
        ("session.transfer_code_issued", 1),
        ("session.flow_failed", 1),
        ("session.transaction_completed", 1),
        ("session.logged_out", 1),
    ];

    fn type_name(&self) -> &'static str {
        match self {
            SessionEvent::TransactionStarted(_) => "session.transaction_started",
            SessionEvent::LoginCompleted(_) => "session.login_completed",
            SessionEvent::SsoReused(_) => "session.sso_reused",
            SessionEvent::TransactionSigned(_) => "session.transaction_signed",
            SessionEvent::CprMatchCompleted(_) => "session.cpr_match_completed",
            SessionEvent::CprMatchRefused(_) => "session.cpr_match_refused",
            SessionEvent::PidLookupCompleted(_) => "session.pid_lookup_completed",
            SessionEvent::TransferCodeIssued(_) => "session.transfer_code_issued",
            SessionEvent::FlowFailed(_) => "session.flow_failed",
            SessionEvent::TransactionCompleted(_) => "session.transaction_completed",
            SessionEvent::LoggedOut(_) => "session.logged_out",
        }
    }

    /// A refused CPR match is recorded, and answered with `access_denied` /
    /// `mitid_cpr_match_failed`.
    fn refusal(&self) -> Option<DomainError> {
        match self {
            SessionEvent::CprMatchRefused(_) => Some(DomainError::access_denied(
                codes::MITID_CPR_MATCH_FAILED,
                None,
            )),
            _ => None,
        }
    }
}

domain_event!(SessionEvent);

// ---------------------------------------------------------------------------------------
// State

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    Started,
    Authenticated,
    Failed,
    Completed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Transaction {
    client_id: ClientId,
    signed_request: bool,
    stage: Stage,
    signed: bool,
}

/// The session's state: only what its rules need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    idp: Option<Idp>,
    environment: Option<Environment>,
    subject_key: Option<String>,
    /// The last MitID login (not SSO reuse): starts the CPR match window and count.
    mitid_login_at: Option<Timestamp>,
    cpr_attempts: u32,
    transactions: BTreeMap<TransactionId, Transaction>,
    logged_out: bool,
}

fn conflict_on(field: &str, code: &str) -> DomainError {
    DomainError::invalid(field, code)
}

impl Session {
    /// The session's IdP, once it has a transaction.
    pub fn idp(&self) -> Option<Idp> {
        self.idp
    }

    pub fn is_logged_out(&self) -> bool {
        self.logged_out
    }

    /// The SP client and environment of an open transaction of an accepting session, or
    /// the refusal any command on it would get (for the edge, which needs them to issue a
    /// Controlled Transfer code on the code's own stream).
    pub fn transaction_origin(
        &self,
        id: &TransactionId,
    ) -> Result<(ClientId, Environment), DomainError> {
        self.accepting()?;
        let tx = self.open_transaction(id)?;
        let environment = self
            .environment
            .ok_or_else(|| DomainError::invalid("session_id", UNKNOWN_SESSION))?;
        Ok((tx.client_id.clone(), environment))
    }

    /// Refuses anything on a session that does not exist or has logged out.
    fn accepting(&self) -> Result<Idp, DomainError> {
        if self.logged_out {
            return Err(DomainError::conflict(SESSION_LOGGED_OUT));
        }
        self.idp
            .ok_or_else(|| DomainError::invalid("session_id", UNKNOWN_SESSION))
    }

    /// Refuses anything on a session that is not accepting, and, naming `field`, on a
    /// session of another IdP than MitID (SSO reuse, signing, PID lookup, transfers).
    fn accepting_mitid(&self, field: &str) -> Result<(), DomainError> {
        if self.accepting()? != Idp::Mitid {
            return Err(conflict_on(field, NOT_SUPPORTED_FOR_IDP));
        }
        Ok(())
    }

    /// A transaction that has not failed.
    fn open_transaction(&self, id: &TransactionId) -> Result<&Transaction, DomainError> {
        let tx = self
            .transactions
            .get(id)
            .ok_or_else(|| conflict_on("transaction_id", UNKNOWN_TRANSACTION))?;
        match tx.stage {
            Stage::Failed => return Err(conflict_on("transaction_id", TRANSACTION_FAILED)),
            Stage::Completed => return Err(conflict_on("transaction_id", TRANSACTION_COMPLETED)),
            Stage::Started | Stage::Authenticated => {}
        }
        Ok(tx)
    }

    fn authenticated_transaction(&self, id: &TransactionId) -> Result<&Transaction, DomainError> {
        let tx = self.open_transaction(id)?;
        if tx.stage != Stage::Authenticated {
            return Err(conflict_on("transaction_id", TRANSACTION_NOT_AUTHENTICATED));
        }
        Ok(tx)
    }

    fn unauthenticated_transaction(&self, id: &TransactionId) -> Result<&Transaction, DomainError> {
        let tx = self.open_transaction(id)?;
        if tx.stage == Stage::Authenticated {
            return Err(conflict_on(
                "transaction_id",
                TRANSACTION_ALREADY_AUTHENTICATED,
            ));
        }
        Ok(tx)
    }

    /// Decides the events of one command; writes nothing.
    fn decide(
        &self,
        command: SessionCommand,
        services: &SessionServices,
    ) -> Result<SessionEvent, DomainError> {
        use SessionCommand as C;
        let event = match command {
            C::StartTransaction {
                transaction_id,
                client_id,
                environment,
                idp,
                signed_request,
                at,
            } => {
                if self.logged_out {
                    return Err(DomainError::conflict(SESSION_LOGGED_OUT));
                }
                if self.transactions.contains_key(&transaction_id) {
                    return Err(conflict_on("transaction_id", TRANSACTION_EXISTS));
                }
                if self.idp.is_some_and(|i| i != idp) {
                    return Err(conflict_on("idp", IDP_MISMATCH));
                }
                if self.environment.is_some_and(|e| e != environment) {
                    return Err(conflict_on("environment", ENVIRONMENT_MISMATCH));
                }
                if !services.clients.is_registered(&client_id, environment) {
                    return Err(conflict_on("client_id", UNREGISTERED_CLIENT));
                }
                SessionEvent::TransactionStarted(TransactionStarted {
                    transaction_id,
                    client_id,
                    environment,
                    idp,
                    signed_request,
                    at,
                })
            }
            C::CompleteLogin {
                transaction_id,
                identity_type,
                loa,
                ial,
                aal,
                amr,
                subject,
                psd2,
                at,
            } => {
                let idp = self.accepting()?;
                if psd2.is_some() && !matches!(idp, Idp::Mitid | Idp::MitidErhverv) {
                    return Err(conflict_on("psd2", NOT_SUPPORTED_FOR_IDP));
                }
                let client_id = self
                    .unauthenticated_transaction(&transaction_id)?
                    .client_id
                    .clone();
                let environment = self
                    .environment
                    .ok_or_else(|| DomainError::invalid("session_id", UNKNOWN_SESSION))?;
                check_identity_type(idp, identity_type)?;
                check_levels(idp, loa, ial, aal)?;
                check_amr(idp, &amr)?;
                let subject = Subject::parse(idp, identity_type, &subject)?;
                if self.subject_key.as_ref().is_some_and(|k| *k != subject.key) {
                    return Err(conflict_on("subject", SUBJECT_MISMATCH));
                }
                SessionEvent::LoginCompleted(LoginCompleted {
                    transaction_id,
                    client_id,
                    environment,
                    idp,
                    identity_type,
                    loa,
                    ial,
                    aal,
                    amr,
                    subject: subject.claims,
                    psd2,
                    subject_key: subject.key,
                    at,
                })
            }
            C::ReuseSso {
                transaction_id,
                action,
                at,
            } => {
                self.accepting_mitid("action")?;
                self.unauthenticated_transaction(&transaction_id)?;
                let Some(subject_key) = self.subject_key.clone() else {
                    return Err(DomainError::conflict(NO_EARLIER_LOGIN));
                };
                SessionEvent::SsoReused(SsoReused {
                    transaction_id,
                    action,
                    subject_key,
                    at,
                })
            }
            C::SignTransaction {
                transaction_id,
                transaction_text,
                transaction_text_type,
                reference_text,
                at,
            } => {
                self.accepting_mitid("transaction_text")?;
                let tx = self.open_transaction(&transaction_id)?;
                if !tx.signed_request {
                    return Err(DomainError::access_denied(
                        codes::MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST,
                        None,
                    ));
                }
                let tx = self.authenticated_transaction(&transaction_id)?;
                if tx.signed {
                    return Err(conflict_on("transaction_id", TRANSACTION_ALREADY_SIGNED));
                }
                let text = TransactionText::parse(
                    transaction_text.as_deref(),
                    transaction_text_type.as_deref(),
                )?;
                let reference_text = reference_text
                    .map(|r| ReferenceText::parse(&r))
                    .transpose()?;
                SessionEvent::TransactionSigned(TransactionSigned {
                    transaction_id,
                    transaction_text: text.base64,
                    transaction_text_type: text.text_type,
                    transaction_text_sha256: text.sha256,
                    reference_text: reference_text.map(|r| r.0),
                    at,
                })
            }
            C::MatchCpr {
                transaction_id,
                cpr,
                matched,
                at,
            } => {
                let idp = self.accepting()?;
                if !matches!(idp, Idp::Mitid | Idp::Nemid) {
                    return Err(conflict_on("cpr", NOT_SUPPORTED_FOR_IDP));
                }
                self.authenticated_transaction(&transaction_id)?;
                let cpr_ref = services.pepper.cpr_ref(&cpr.parse()?);
                let attempt = self.cpr_attempts + 1;
                if idp == Idp::Mitid {
                    if attempt > CPR_MATCH_MAX_ATTEMPTS {
                        return Ok(SessionEvent::CprMatchRefused(CprMatchRefused {
                            transaction_id,
                            cpr_ref,
                            attempt,
                            error: ErrorKind::AccessDenied,
                            error_description: CprRefusalCode::MitidCprMatchFailed,
                            at,
                        }));
                    }
                    let outside = self.mitid_login_at.is_none_or(|login| {
                        at.micros().saturating_sub(login.micros()) > CPR_MATCH_WINDOW_MICROS
                    });
                    if outside {
                        return Err(DomainError::access_denied(
                            codes::MITID_CPR_MATCH_FAILED,
                            None,
                        ));
                    }
                }
                SessionEvent::CprMatchCompleted(CprMatchCompleted {
                    transaction_id,
                    cpr_ref,
                    matched,
                    attempt,
                    at,
                })
            }
            C::LookUpPid {
                transaction_id,
                pid_status,
                pid,
                cpr,
                at,
            } => {
                self.accepting_mitid("pid_status")?;
                self.authenticated_transaction(&transaction_id)?;
                let pid = match (pid_status, pid) {
                    (PidStatus::Success, Some(p)) => Some(ExternalId::parse("pid", &p)?),
                    (PidStatus::Success, None) => {
                        return Err(DomainError::invalid(
                            "pid",
                            "is required when pid_status is success",
                        ))
                    }
                    (PidStatus::UnableToLookup, None) => None,
                    (PidStatus::UnableToLookup, Some(_)) => {
                        return Err(DomainError::invalid(
                            "pid",
                            "must be absent when pid_status is unable_to_lookup",
                        ))
                    }
                };
                let cpr_ref = match cpr {
                    Some(c) => Some(services.pepper.cpr_ref(&c.parse()?)),
                    None => None,
                };
                SessionEvent::PidLookupCompleted(PidLookupCompleted {
                    transaction_id,
                    pid_status,
                    pid,
                    cpr_ref,
                    at,
                })
            }
            C::IssueTransferCode {
                transaction_id,
                code,
                target_broker_id,
                target_service_provider_id,
                transfer_token_text,
                expires_at,
                at,
            } => {
                self.accepting_mitid("code")?;
                self.authenticated_transaction(&transaction_id)?;
                let target = TransferTarget::parse(
                    &target_broker_id,
                    &target_service_provider_id,
                    &transfer_token_text,
                )?;
                if expires_at <= at {
                    return Err(DomainError::invalid("expires_at", "must be after at"));
                }
                SessionEvent::TransferCodeIssued(TransferCodeIssued {
                    transaction_id,
                    code,
                    target_broker_id: target.broker_id,
                    target_service_provider_id: target.service_provider_id,
                    expires_at,
                    at,
                })
            }
            C::RecordFlowError {
                transaction_id,
                error,
                error_description,
                at,
            } => {
                let idp = self.accepting()?;
                self.open_transaction(&transaction_id)?;
                let error = ErrorKind::parse(&error)?;
                if !flow_error_allowed(idp, &error_description) {
                    return Err(DomainError::invalid(
                        "error_description",
                        "is not a code of this idp's error table",
                    ));
                }
                SessionEvent::FlowFailed(FlowFailed {
                    transaction_id,
                    idp,
                    error,
                    error_description,
                    at,
                })
            }
            C::CompleteTransaction { transaction_id, at } => {
                self.accepting()?;
                let tx = self.authenticated_transaction(&transaction_id)?;
                SessionEvent::TransactionCompleted(TransactionCompleted {
                    client_id: tx.client_id.clone(),
                    transaction_id,
                    at,
                })
            }
            C::LogOut { channel, at } => {
                self.accepting()?;
                SessionEvent::LoggedOut(LoggedOut { channel, at })
            }
        };
        Ok(event)
    }
}

/// The parsed targets and text of a Controlled Transfer (seed 002, "Requesting a
/// Controlled Transfer Token Exchange Code"): all three required, the text non-empty and
/// at most 130 characters.
pub(crate) struct TransferTarget {
    pub broker_id: ExternalId,
    pub service_provider_id: ExternalId,
    pub text: TransferTokenText,
}

impl TransferTarget {
    pub(crate) fn parse(
        broker_id: &str,
        service_provider_id: &str,
        text: &str,
    ) -> Result<TransferTarget, FieldError> {
        let required = |field: &str, s: &str| {
            if s.is_empty() {
                Err(FieldError::new(field, "is required"))
            } else {
                ExternalId::parse(field, s)
            }
        };
        Ok(TransferTarget {
            broker_id: required("target_broker_id", broker_id)?,
            service_provider_id: required("target_service_provider_id", service_provider_id)?,
            text: TransferTokenText::parse(text)?,
        })
    }
}

/// `identity_type` per IdP (seed 002, "ID Token identity claims"): MitID and the E-Ident
/// IdPs issue only private identities, MitID Erhverv only professional ones, NemID both.
/// FTN: the seeds are silent; private.
fn check_identity_type(idp: Idp, t: IdentityType) -> Result<(), DomainError> {
    let ok = match idp {
        Idp::MitidErhverv => t == IdentityType::Professional,
        Idp::Nemid => true,
        _ => t == IdentityType::Private,
    };
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "identity_type",
            "is not issued by this idp",
        ))
    }
}

/// `loa`, `ial`, `aal`: MitID and MitID Erhverv issue all three as NSIS URIs, and `loa` is
/// the lower of `ial` and `aal` (seed 002: "ial=low, aal=substantial => loa=low"). MitID
/// Erhverv cannot issue a `loa` above Substantial (NEB is an NSIS Substantial broker). The
/// other IdPs have no NSIS levels: none may be given.
fn check_levels(
    idp: Idp,
    loa: Option<NsisLevel>,
    ial: Option<NsisLevel>,
    aal: Option<NsisLevel>,
) -> Result<(), DomainError> {
    if !matches!(idp, Idp::Mitid | Idp::MitidErhverv) {
        for (field, v) in [("loa", loa), ("ial", ial), ("aal", aal)] {
            if v.is_some() {
                return Err(DomainError::invalid(field, "this idp has no NSIS levels"));
            }
        }
        return Ok(());
    }
    let (Some(loa), Some(ial), Some(aal)) = (loa, ial, aal) else {
        let field = if loa.is_none() {
            "loa"
        } else if ial.is_none() {
            "ial"
        } else {
            "aal"
        };
        return Err(DomainError::invalid(field, "is required for this idp"));
    };
    if idp == Idp::MitidErhverv && loa == NsisLevel::High {
        return Err(DomainError::invalid(
            "loa",
            "MitID Erhverv through this broker is at most Substantial",
        ));
    }
    if loa != ial.min(aal) {
        return Err(DomainError::invalid(
            "loa",
            "must be the lower of ial and aal",
        ));
    }
    Ok(())
}

const MITID_AMR: &[&str] = &[
    "password",
    "code_token",
    "code_reader",
    "code_app",
    "code_app_enhanced",
    "u2f_token",
];
const MITID_ERHVERV_AMR: &[&str] = &[
    "mitid:password",
    "mitid:code_token",
    "mitid:code_reader",
    "mitid:code_app",
    "mitid:code_app_enhanced",
    "mitid:u2f_token",
];
const NEMID_AMR: &[&str] = &["nemid.otp", "nemid.keyfile"];
const BANKID_SE_AMR: &[&str] = &["bankid_se.file", "bankid_se.smartcard", "bankid_se.mobile"];

/// `amr` per IdP (seed 002): MitID and MitID Erhverv one or more of their authenticators
/// (no repeats); NemID and BankID Sweden exactly one of theirs; the others' are "not
/// specified yet", so up to 8 short tokens of `A-Z a-z 0-9 . _ : -` are recorded as given.
fn check_amr(idp: Idp, amr: &[String]) -> Result<(), DomainError> {
    let one_of = |allowed: &[&str]| amr.iter().all(|a| allowed.contains(&a.as_str()));
    let distinct = amr.iter().enumerate().all(|(i, a)| !amr[..i].contains(a));
    let ok = match idp {
        Idp::Mitid => !amr.is_empty() && distinct && one_of(MITID_AMR),
        Idp::MitidErhverv => !amr.is_empty() && distinct && one_of(MITID_ERHVERV_AMR),
        Idp::Nemid => amr.len() == 1 && one_of(NEMID_AMR),
        Idp::BankidSe => amr.len() == 1 && one_of(BANKID_SE_AMR),
        Idp::BankidNo | Idp::BankidMobileNo | Idp::BuypassNo | Idp::Ftn => {
            amr.len() <= 8
                && distinct
                && amr.iter().all(|a| {
                    !a.is_empty()
                        && a.len() <= 64
                        && a.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
                })
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid("amr", "is not an amr this idp issues"))
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = DomainError;
    type Services = SessionServices;

    async fn handle(
        &mut self,
        command: SessionCommand,
        services: &SessionServices,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        let event = self.decide(command, services)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::TransactionStarted(e) => {
                self.idp.get_or_insert(e.idp);
                self.environment.get_or_insert(e.environment);
                self.transactions.insert(
                    e.transaction_id,
                    Transaction {
                        client_id: e.client_id,
                        signed_request: e.signed_request,
                        stage: Stage::Started,
                        signed: false,
                    },
                );
            }
            SessionEvent::LoginCompleted(e) => {
                if let Some(tx) = self.transactions.get_mut(&e.transaction_id) {
                    tx.stage = Stage::Authenticated;
                }
                self.subject_key = Some(e.subject_key);
                if e.idp == Idp::Mitid {
                    self.mitid_login_at = Some(e.at);
                    self.cpr_attempts = 0;
                }
            }
            SessionEvent::SsoReused(e) => {
                if let Some(tx) = self.transactions.get_mut(&e.transaction_id) {
                    tx.stage = Stage::Authenticated;
                }
            }
            SessionEvent::TransactionSigned(e) => {
                if let Some(tx) = self.transactions.get_mut(&e.transaction_id) {
                    tx.signed = true;
                }
            }
            SessionEvent::CprMatchCompleted(e) => self.cpr_attempts = e.attempt,
            SessionEvent::CprMatchRefused(e) => self.cpr_attempts = e.attempt,
            SessionEvent::PidLookupCompleted(_) | SessionEvent::TransferCodeIssued(_) => {}
            SessionEvent::FlowFailed(e) => {
                if let Some(tx) = self.transactions.get_mut(&e.transaction_id) {
                    tx.stage = Stage::Failed;
                }
            }
            SessionEvent::TransactionCompleted(e) => {
                if let Some(tx) = self.transactions.get_mut(&e.transaction_id) {
                    tx.stage = Stage::Completed;
                }
            }
            SessionEvent::LoggedOut(_) => self.logged_out = true,
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
