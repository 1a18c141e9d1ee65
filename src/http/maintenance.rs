//! IdP maintenance windows (broker): `POST /v1/maintenance-windows` records one on
//! `maintenance:<window_id>`, `POST /v1/maintenance-windows/{id}/cancel` cancels it (the
//! seeds' rolled-back changes).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::broker::{new_id, recorded, BrokerCall, RecordedEvent};
use super::openapi::BrokerErrors;
use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::domain::maintenance::{MaintenanceCommand, MaintenanceWindow};
use crate::domain::values::{Environment, Idp, Timestamp, WindowId};
use crate::record::StreamId;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowIn {
    /// Optional: Vidne makes one.
    window_id: Option<String>,
    /// The IdP under maintenance, as `POST /v1/sessions` names it.
    idp: String,
    /// RFC 3339 with any offset (the seeds give CEST and EET).
    from: String,
    to: String,
    /// What the IdP announced.
    note: String,
    /// Only this environment; absent: all.
    environment: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelIn {
    /// Why, e.g. the change was rolled back.
    note: String,
}

#[derive(Serialize, ToSchema)]
pub struct WindowOut {
    #[schema(value_type = String)]
    window_id: WindowId,
    records: Vec<RecordedEvent>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/maintenance-windows", web::post().to(record))
        .route(
            "/v1/maintenance-windows/{window_id}/cancel",
            web::post().to(cancel),
        );
}

async fn run(
    state: &AppState,
    principal: &Principal,
    window_id: WindowId,
    command: MaintenanceCommand,
) -> Result<HttpResponse, ApiError> {
    let stream = StreamId::parse(format!("maintenance:{window_id}"))?;
    let done = state
        .commands
        .execute::<MaintenanceWindow>(&stream, &principal.actor()?, command, &())
        .await?;
    Ok(HttpResponse::Created().json(WindowOut {
        records: recorded(&stream, &done),
        window_id,
    }))
}

/// Records an IdP maintenance window, so reports can explain failures inside it.
#[utoipa::path(
    post,
    path = "/v1/maintenance-windows",
    request_body = WindowIn,
    responses((status = 201, description = "What was recorded", body = WindowOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn record(
    state: web::Data<AppState>,
    call: BrokerCall<WindowIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let window_id = WindowId::parse(body.window_id.unwrap_or_else(|| new_id("w_")))?;
    let command = MaintenanceCommand::Record {
        window_id: window_id.clone(),
        idp: Idp::parse(&body.idp)?,
        from: Timestamp::parse("from", &body.from)?,
        to: Timestamp::parse("to", &body.to)?,
        note: body.note,
        environment: body
            .environment
            .map(|e| Environment::parse(&e))
            .transpose()?,
        at: state.now()?,
    };
    run(&state, &principal, window_id, command).await
}

/// Records that a maintenance window was cancelled.
#[utoipa::path(
    post,
    path = "/v1/maintenance-windows/{window_id}/cancel",
    params(("window_id" = String, Path, description = "The window's id")),
    request_body = CancelIn,
    responses((status = 201, description = "What was recorded", body = WindowOut), BrokerErrors),
    security(("bearer" = []))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    path: web::Path<String>,
    call: BrokerCall<CancelIn>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let window_id = WindowId::parse(path.into_inner())?;
    let command = MaintenanceCommand::Cancel {
        window_id: window_id.clone(),
        note: body.note,
        at: state.now()?,
    };
    run(&state, &principal, window_id, command).await
}
