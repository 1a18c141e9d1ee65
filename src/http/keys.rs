//! `POST /v1/keys` (admin): makes an API key for a role. The key is in this one answer
//! and nowhere else.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, Call};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::auth::Role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `admin`, `broker`, `auditor` or `sp:<client_id>`.
    role: String,
    /// Who or what holds the key, 1 to 100 characters.
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey<'a> {
    key_id: &'a str,
    name: &'a str,
    #[schema(value_type = String)]
    role: &'a Role,
    /// The key itself: shown in this answer only, stored as its SHA-256.
    key: &'a str,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/keys", web::post().to(create));
}

/// Makes an API key for a role (admin).
#[utoipa::path(
    post,
    path = "/v1/keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key, shown once", body = CreatedKey),
        (status = 400, description = "Bad role or name", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    call: Call<CreateKey, Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let role = Role::parse(&body.role)?;
    let made = state
        .keys
        .create(role, &body.name, state.now_micros())
        .await?;
    tracing::info!(key_id = %made.key_id, role = %made.role, by = %principal.key_id, "API key created");
    Ok(HttpResponse::Created().json(CreatedKey {
        key_id: &made.key_id,
        name: &made.name,
        role: &made.role,
        key: made.key.reveal(),
    }))
}
