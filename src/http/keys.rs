//! `POST /v1/keys` (admin): makes an API key for a role. The key is in this one answer
//! and nowhere else.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::require;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    role: String,
    name: String,
}

#[derive(Serialize)]
pub struct CreatedKey<'a> {
    key_id: &'a str,
    name: &'a str,
    role: &'a Role,
    key: &'a str,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/keys", web::post().to(create));
}

async fn create(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, |r| *r == Role::Admin)?;
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
