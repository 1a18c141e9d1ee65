//! `POST /v1/transfers/{code}/exchange` (broker): SP B exchanged a MitID Controlled
//! Transfer code with its Transfer Token Text, recorded on `transfer:<code>`. Issuing a
//! code is `POST /v1/sessions/{id}/transfers`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::broker::{recorded, refusal_of, BrokerCall, RecordedEvent};
use super::openapi::BrokerErrors;
use super::{ApiError, AppState};
use crate::domain::transfer::{ControlledTransfer, TransferCommand};
use crate::domain::values::{ClientId, SessionId, TransactionId, TransferCode};
use crate::record::StreamId;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeIn {
    /// The `transferTokenText` the code was issued with.
    transfer_token_text: String,
    /// SP B, and the session and transaction its login goes to.
    client_id: String,
    session_id: String,
    transaction_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExchangeOut {
    #[schema(value_type = String)]
    code: TransferCode,
    records: Vec<RecordedEvent>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/transfers/{code}/exchange", web::post().to(exchange));
}

/// Records SP B's exchange of a controlled transfer code; a second exchange is refused
/// (`mitid_transfer_token_exchange_code_already_used`), an unknown or expired code too
/// (`mitid_invalid_transfer_token_code`), and another text (`transfer_token_text_mismatch`).
/// Each refusal is recorded (`transfer.exchange_refused`) before it is answered.
#[utoipa::path(
    post,
    path = "/v1/transfers/{code}/exchange",
    params(("code" = String, Path, description = "The exchange code")),
    request_body = ExchangeIn,
    responses((status = 201, description = "What was recorded", body = ExchangeOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn exchange(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<ExchangeIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let code = TransferCode::parse(path.into_inner())?;
    let command = TransferCommand::Exchange {
        code: code.clone(),
        transfer_token_text: body.transfer_token_text,
        client_id: ClientId::parse(body.client_id)?,
        session_id: SessionId::parse(body.session_id)?,
        transaction_id: TransactionId::parse(body.transaction_id)?,
        at: state.now()?,
    };
    let stream = StreamId::parse(format!("transfer:{code}"))?;
    let done = state
        .commands
        .execute::<ControlledTransfer>(&stream, &principal.actor()?, command, &())
        .await?;
    refusal_of(&done)?;
    state.tokens.nudge();
    Ok(HttpResponse::Created().json(ExchangeOut {
        records: recorded(&stream, &done),
        code,
    }))
}
