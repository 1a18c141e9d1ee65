//! The broker's session routes (role `broker`): each turns one request into commands on
//! the `Session` aggregate of `session:<session_id>` (and, for a transfer code, the
//! `ControlledTransfer` of `transfer:<code>`), appended all-or-nothing.
//!
//! | route | commands |
//! |---|---|
//! | `POST /v1/sessions` | `StartTransaction` (+ `CompleteLogin` when `identity_type` is given), on a new session |
//! | `POST /v1/sessions/{id}/transactions` | the same, on an existing session |
//! | `POST /v1/sessions/{id}/logins` | `CompleteLogin` |
//! | `POST /v1/sessions/{id}/sso-reuse` | `ReuseSso` |
//! | `POST /v1/sessions/{id}/signings` | `SignTransaction` |
//! | `POST /v1/sessions/{id}/cpr-matches` | `MatchCpr` |
//! | `POST /v1/sessions/{id}/pid-lookups` | `LookUpPid` |
//! | `POST /v1/sessions/{id}/transfers` | `IssueTransferCode`, then `ControlledTransfer::Issue` |
//! | `POST /v1/sessions/{id}/completions` | `CompleteTransaction` |
//! | `POST /v1/sessions/{id}/logout` | `LogOut` |
//! | `POST /v1/flow-errors` | `RecordFlowError` |
//!
//! Wire types are this module's own; every string is parsed by a domain newtype, so a
//! refusal names the member at fault.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::broker::{new_id, recorded, refusal_of, BrokerCall, RecordedEvent};
use super::openapi::{BrokerErrors, SessionPath};
use super::{ApiError, AppState};
use crate::app::{CommandError, Executed, Expect};
use crate::auth::Principal;
use crate::domain::session::{
    Session, SessionCommand, SessionEvent, UNKNOWN_SESSION, UNREGISTERED_CLIENT,
};
use crate::domain::transfer::{ControlledTransfer, TransferCommand};
use crate::domain::values::{
    ClientId, CprInput, Environment, IdentityType, Idp, LogoutChannel, NsisLevel, PidStatus,
    SessionId, SsoAction, Timestamp, TransactionId, TransferCode,
};
use crate::domain::DomainError;
use crate::record::StreamId;

/// `POST /v1/sessions` with a `session_id` that already has records.
pub const SESSION_EXISTS: &str = "session_exists";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/sessions", web::post().to(start_session))
        .route(
            "/v1/sessions/{session_id}/transactions",
            web::post().to(start_transaction),
        )
        .route("/v1/sessions/{session_id}/logins", web::post().to(login))
        .route(
            "/v1/sessions/{session_id}/sso-reuse",
            web::post().to(sso_reuse),
        )
        .route("/v1/sessions/{session_id}/signings", web::post().to(sign))
        .route(
            "/v1/sessions/{session_id}/cpr-matches",
            web::post().to(match_cpr),
        )
        .route(
            "/v1/sessions/{session_id}/pid-lookups",
            web::post().to(look_up_pid),
        )
        .route(
            "/v1/sessions/{session_id}/transfers",
            web::post().to(issue_transfer),
        )
        .route(
            "/v1/sessions/{session_id}/completions",
            web::post().to(complete),
        )
        .route("/v1/sessions/{session_id}/logout", web::post().to(logout))
        .route("/v1/flow-errors", web::post().to(flow_error));
}

// ---------------------------------------------------------------------------------------
// Wire types

/// The login members a transaction start may carry and `/logins` takes.
#[derive(Default)]
pub struct LoginIn {
    identity_type: Option<String>,
    loa: Option<String>,
    ial: Option<String>,
    aal: Option<String>,
    amr: Option<Vec<String>>,
    subject: Option<BTreeMap<String, String>>,
    psd2: Option<bool>,
}

/// `POST /v1/sessions` (`session_id` optional: Vidne makes one) and
/// `POST /v1/sessions/{id}/transactions` (no `session_id`: it is in the path). The login
/// members are optional; given, the login is recorded with the start.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartIn {
    /// The broker's session id; absent on `POST /v1/sessions`, Vidne makes one.
    session_id: Option<String>,
    /// The SP's authentication request: one transaction, start to completion.
    transaction_id: String,
    /// The SP's registered OIDC `client_id`.
    client_id: String,
    /// `CURRENT` or `PROD`: the client must be registered there.
    environment: String,
    /// `mitid`, `mitid_erhverv`, `nemid`, `bankid_no`, `bankid_mobile_no`, `buypass_no`,
    /// `bankid_se` or `ftn`.
    idp: String,
    /// The SP sent a signed request: required for transaction signing.
    #[serde(default)]
    signed_request: bool,
    /// `private` or `professional`; given, the login is recorded with the start.
    identity_type: Option<String>,
    /// An NSIS level URI (`https://data.gov.dk/concept/core/nsis/Substantial`) where the
    /// IdP has one; so are `ial` and `aal`.
    loa: Option<String>,
    ial: Option<String>,
    aal: Option<String>,
    amr: Option<Vec<String>>,
    /// The IdP's subject claims, e.g. `{"mitid.uuid": "…"}` or
    /// `{"bankid_no.pid": "UN:NO-…"}`; national identity numbers are refused.
    subject: Option<BTreeMap<String, String>>,
    /// `mitid.psd2`: the MitID (or MitID Erhverv) authentication was PSD2 compliant.
    psd2: Option<bool>,
}

/// `POST /v1/sessions/{id}/logins`: the login of a started transaction.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginOnlyIn {
    transaction_id: String,
    /// `private` or `professional`.
    identity_type: Option<String>,
    loa: Option<String>,
    ial: Option<String>,
    aal: Option<String>,
    amr: Option<Vec<String>>,
    subject: Option<BTreeMap<String, String>>,
    /// `mitid.psd2` (MitID and MitID Erhverv).
    psd2: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoReuseIn {
    /// A further transaction of the session.
    transaction_id: String,
    /// `mitid.sso_login` or `mitid.reuse_jwt`.
    action: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningIn {
    transaction_id: String,
    /// The text shown to the user, base64.
    transaction_text: Option<String>,
    /// `text` or `html` (the seed's tags only; no `on*` attributes, script links or CSS
    /// expressions).
    transaction_text_type: Option<String>,
    /// At most 130 characters.
    reference_text: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CprMatchIn {
    transaction_id: String,
    /// 10 digits, or `DDMMYY-NNNN`; recorded only as its keyed hash `cpr_ref`.
    cpr: String,
    /// Whether the CPR matched the MitID identity.
    matched: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PidLookupIn {
    transaction_id: String,
    /// `success` or `unable_to_lookup`.
    pid_status: String,
    /// The NemID PID found.
    pid: Option<String>,
    /// The CPR looked up, recorded only as `cpr_ref`.
    cpr: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferIn {
    transaction_id: String,
    /// The exchange code handed to SP A.
    code: String,
    /// `targetBrokerId`.
    target_broker_id: String,
    /// `targetServiceProviderId`.
    target_service_provider_id: String,
    /// `transferTokenText`: 1 to 130 characters, which the exchange must repeat.
    transfer_token_text: String,
    /// RFC 3339; after it the code is refused (`mitid_invalid_transfer_token_code`).
    expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionIn {
    /// An authenticated transaction of the session.
    transaction_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutIn {
    /// `back_channel`, the default and only one.
    channel: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowErrorIn {
    session_id: String,
    transaction_id: String,
    /// `access_denied`.
    error: String,
    /// A code from the idp's table in the seed, e.g. `mitid_user_aborted`.
    error_description: String,
}

/// What a session route recorded.
#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    #[schema(value_type = String)]
    session_id: SessionId,
    records: Vec<RecordedEvent>,
}

/// What `/transfers` recorded: the session's record and the code's.
#[derive(Serialize, ToSchema)]
pub struct TransferOut {
    #[schema(value_type = String)]
    session_id: SessionId,
    #[schema(value_type = String)]
    code: TransferCode,
    records: Vec<RecordedEvent>,
}

// ---------------------------------------------------------------------------------------
// Parsing

fn session_stream(id: &SessionId) -> Result<StreamId, ApiError> {
    Ok(StreamId::parse(format!("session:{id}"))?)
}

fn level(field: &str, v: Option<String>) -> Result<Option<NsisLevel>, ApiError> {
    Ok(v.map(|s| NsisLevel::parse_as(field, &s)).transpose()?)
}

impl LoginIn {
    fn is_empty(&self) -> bool {
        self.identity_type.is_none()
            && self.loa.is_none()
            && self.ial.is_none()
            && self.aal.is_none()
            && self.amr.is_none()
            && self.subject.is_none()
            && self.psd2.is_none()
    }

    fn command(
        self,
        transaction_id: TransactionId,
        at: Timestamp,
    ) -> Result<SessionCommand, ApiError> {
        let identity_type = self
            .identity_type
            .ok_or_else(|| DomainError::invalid("identity_type", "is required for a login"))?;
        let subject = self
            .subject
            .ok_or_else(|| DomainError::invalid("subject", "is required for a login"))?;
        Ok(SessionCommand::CompleteLogin {
            transaction_id,
            identity_type: IdentityType::parse(&identity_type)?,
            loa: level("loa", self.loa)?,
            ial: level("ial", self.ial)?,
            aal: level("aal", self.aal)?,
            amr: self.amr.unwrap_or_default(),
            subject,
            psd2: self.psd2,
            at,
        })
    }
}

impl StartIn {
    /// `StartTransaction`, and `CompleteLogin` if any login member is given.
    fn commands(self, at: Timestamp) -> Result<Vec<SessionCommand>, ApiError> {
        let transaction_id = TransactionId::parse(self.transaction_id)?;
        let mut commands = vec![SessionCommand::StartTransaction {
            transaction_id: transaction_id.clone(),
            client_id: ClientId::parse(self.client_id)?,
            environment: Environment::parse(&self.environment)?,
            idp: Idp::parse(&self.idp)?,
            signed_request: self.signed_request,
            at,
        }];
        let login = LoginIn {
            identity_type: self.identity_type,
            loa: self.loa,
            ial: self.ial,
            aal: self.aal,
            amr: self.amr,
            subject: self.subject,
            psd2: self.psd2,
        };
        if !login.is_empty() {
            commands.push(login.command(transaction_id, at)?);
        }
        Ok(commands)
    }
}

// ---------------------------------------------------------------------------------------
// Running commands

/// Runs `commands` on the session; a start refused for an unregistered client is decided
/// once more after the client view has caught up with the ledger.
async fn run(
    state: &AppState,
    principal: &Principal,
    session_id: &SessionId,
    commands: Vec<SessionCommand>,
    expect: Expect,
) -> Result<Executed<SessionEvent>, ApiError> {
    let stream = session_stream(session_id)?;
    let actor = principal.actor()?;
    let mut caught_up = false;
    loop {
        let result = state
            .commands
            .execute_all::<Session>(
                &stream,
                &actor,
                commands.clone(),
                &state.sessions,
                expect.clone(),
            )
            .await;
        match result {
            Err(CommandError::Refused(e))
                if e.error_description == UNREGISTERED_CLIENT && !caught_up =>
            {
                state
                    .clients
                    .catch_up(&state.reader)
                    .await
                    .map_err(ApiError::Internal)?;
                caught_up = true;
            }
            other => {
                let done = other?;
                state.tokens.nudge();
                return Ok(done);
            }
        }
    }
}

/// Answers what was recorded, or the recorded refusal.
fn answer(session_id: SessionId, done: Executed<SessionEvent>) -> Result<HttpResponse, ApiError> {
    refusal_of(&done)?;
    let stream = session_stream(&session_id)?;
    let body = SessionOut {
        records: recorded(&stream, &done),
        session_id,
    };
    Ok(HttpResponse::Created().json(body))
}

fn path_session(path: web::Path<String>) -> Result<SessionId, ApiError> {
    Ok(SessionId::parse(path.into_inner())?)
}

fn unknown_session() -> DomainError {
    DomainError::invalid("session_id", UNKNOWN_SESSION)
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Starts a session with its first transaction, and its login if `identity_type` is given.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    request_body = StartIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn start_session(
    state: web::Data<AppState>,
    call: BrokerCall<StartIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, mut body) = (call.principal, call.body);
    let session_id = match body.session_id.take() {
        Some(id) => SessionId::parse(id)?,
        None => SessionId::parse(new_id("s_"))?,
    };
    let commands = body.commands(state.now()?)?;
    let expect = Expect::New(DomainError::invalid("session_id", SESSION_EXISTS));
    let done = run(&state, &principal, &session_id, commands, expect).await?;
    answer(session_id, done)
}

/// Starts a further transaction of a session (and its login).
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/transactions",
    params(SessionPath),
    request_body = StartIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn start_transaction(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<StartIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    if body.session_id.is_some() {
        return Err(DomainError::invalid("session_id", "is given by the path").into());
    }
    let commands = body.commands(state.now()?)?;
    let expect = Expect::Existing(unknown_session());
    let done = run(&state, &principal, &session_id, commands, expect).await?;
    answer(session_id, done)
}

/// One command on an existing session.
async fn one(
    state: &AppState,
    principal: &Principal,
    session_id: SessionId,
    command: SessionCommand,
) -> Result<HttpResponse, ApiError> {
    let expect = Expect::Existing(unknown_session());
    let done = run(state, principal, &session_id, vec![command], expect).await?;
    answer(session_id, done)
}

/// Records the login of a started transaction.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/logins",
    params(SessionPath),
    request_body = LoginOnlyIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn login(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<LoginOnlyIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let login = LoginIn {
        identity_type: body.identity_type,
        loa: body.loa,
        ial: body.ial,
        aal: body.aal,
        amr: body.amr,
        subject: body.subject,
        psd2: body.psd2,
    };
    let command = login.command(TransactionId::parse(body.transaction_id)?, state.now()?)?;
    one(&state, &principal, session_id, command).await
}

/// Records MitID SSO reuse by a further transaction.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/sso-reuse",
    params(SessionPath),
    request_body = SsoReuseIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn sso_reuse(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<SsoReuseIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let command = SessionCommand::ReuseSso {
        transaction_id: TransactionId::parse(body.transaction_id.clone())?,
        action: SsoAction::parse(&body.action)?,
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}

/// Records a transaction signing: the text, its SHA-256, its type and reference text.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/signings",
    params(SessionPath),
    request_body = SigningIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn sign(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<SigningIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let command = SessionCommand::SignTransaction {
        transaction_id: TransactionId::parse(body.transaction_id)?,
        transaction_text: body.transaction_text,
        transaction_text_type: body.transaction_text_type,
        reference_text: body.reference_text,
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}

/// Records a CPR match of a MitID login (at most 3 per session, within 15 minutes).
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/cpr-matches",
    params(SessionPath),
    request_body = CprMatchIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn match_cpr(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<CprMatchIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let command = SessionCommand::MatchCpr {
        transaction_id: TransactionId::parse(body.transaction_id)?,
        cpr: CprInput::new(body.cpr),
        matched: body.matched,
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}

/// Records a NemID PID lookup of a MitID session.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/pid-lookups",
    params(SessionPath),
    request_body = PidLookupIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn look_up_pid(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<PidLookupIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let command = SessionCommand::LookUpPid {
        transaction_id: TransactionId::parse(body.transaction_id)?,
        pid_status: PidStatus::parse(&body.pid_status)?,
        pid: body.pid,
        cpr: body.cpr.map(CprInput::new),
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}

/// Records a controlled transfer exchange code issued to SP A, on the session and on the code.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/transfers",
    params(SessionPath),
    request_body = TransferIn,
    responses((status = 201, description = "What was recorded", body = TransferOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn issue_transfer(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<TransferIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let transaction_id = TransactionId::parse(body.transaction_id)?;
    let code = TransferCode::parse(body.code)?;
    let expires_at = Timestamp::parse("expires_at", &body.expires_at)?;
    let at = state.now()?;
    let session_stream = session_stream(&session_id)?;
    let transfer_stream = StreamId::parse(format!("transfer:{code}"))?;
    // SP A's client and environment, which the code's record repeats. Read first: a
    // transaction's client never changes, and the session decides again below.
    let session = state.commands.state::<Session>(&session_stream).await?;
    let (client_id, environment) = session.transaction_origin(&transaction_id)?;
    let in_session = SessionCommand::IssueTransferCode {
        transaction_id: transaction_id.clone(),
        code: code.clone(),
        target_broker_id: body.target_broker_id.clone(),
        target_service_provider_id: body.target_service_provider_id.clone(),
        transfer_token_text: body.transfer_token_text.clone(),
        expires_at,
        at,
    };
    let on_code = TransferCommand::Issue {
        code: code.clone(),
        session_id: session_id.clone(),
        transaction_id,
        client_id,
        environment,
        target_broker_id: body.target_broker_id,
        target_service_provider_id: body.target_service_provider_id,
        transfer_token_text: body.transfer_token_text,
        expires_at,
        at,
    };
    let (a, b) = state
        .commands
        .execute_pair::<Session, ControlledTransfer>(
            &principal.actor()?,
            (&session_stream, in_session, &state.sessions),
            (&transfer_stream, on_code, &()),
        )
        .await?;
    let mut records = recorded(&session_stream, &a);
    records.extend(recorded(&transfer_stream, &b));
    Ok(HttpResponse::Created().json(TransferOut {
        session_id,
        code,
        records,
    }))
}

/// Records that a transaction completed: the broker answered the SP, and the
/// transaction's token is sealed.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/completions",
    params(SessionPath),
    request_body = CompletionIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn complete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<CompletionIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let command = SessionCommand::CompleteTransaction {
        transaction_id: TransactionId::parse(body.transaction_id)?,
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}

/// Records the back-channel logout; the session then takes no further action.
#[utoipa::path(
    post,
    path = "/v1/sessions/{session_id}/logout",
    params(SessionPath),
    request_body = LogoutIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn logout(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<LogoutIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = path_session(path)?;
    let channel = match &body.channel {
        Some(c) => LogoutChannel::parse(c)?,
        None => LogoutChannel::BackChannel,
    };
    let command = SessionCommand::LogOut {
        channel,
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}

/// Records an `access_denied` outcome with the seed's `error_description`.
#[utoipa::path(
    post,
    path = "/v1/flow-errors",
    request_body = FlowErrorIn,
    responses((status = 201, description = "What was recorded", body = SessionOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn flow_error(
    state: web::Data<AppState>,
    call: BrokerCall<FlowErrorIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let session_id = SessionId::parse(body.session_id)?;
    let command = SessionCommand::RecordFlowError {
        transaction_id: TransactionId::parse(body.transaction_id)?,
        error: body.error,
        error_description: body.error_description,
        at: state.now()?,
    };
    one(&state, &principal, session_id, command).await
}
