//! The log as auditors and SPs read it. `GET /v1/log/records/{seq}` answers a record's
//! canonical bytes exactly as stored and hashed, so a reader recomputes its record hash
//! (SPEC section 2) itself rather than trusting one Vidne states.

use actix_web::{web, HttpResponse};

use super::auth::require;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/log/records/{seq}", web::get().to(record));
}

/// Auditors and SPs read the log.
pub fn reads_log(role: &Role) -> bool {
    matches!(role, Role::Auditor | Role::Sp(_))
}

/// One record's canonical bytes (auditor, SP).
#[utoipa::path(
    get,
    path = "/v1/log/records/{seq}",
    params(("seq" = u64, Path, description = "The record's place in the ledger")),
    responses(
        (status = 200, description = "The record's canonical bytes (RFC 8785 JSON); its record hash is SHA-256(0x00 || these bytes)", content_type = "application/json"),
        (status = 400, description = "`seq` is not a number", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 404, description = "No record at `seq`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn record(
    principal: Principal,
    state: web::Data<AppState>,
    seq: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, reads_log)?;
    let row = state
        .reader
        .get(seq.into_inner())
        .await?
        .ok_or(ApiError::Missing("no record at this seq"))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(row.canonical))
}
