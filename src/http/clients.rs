//! `POST /v1/clients` (admin): registers an SP client in one environment, as a
//! `client.registered` event on `client:<client_id>`, then fed to the sessions' view of
//! registered clients.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::require;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::domain::client::{Client, ClientCommand, ClientEvent};
use crate::domain::values::{ClientId, Environment};
use crate::record::StreamId;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterClient {
    client_id: String,
    environment: String,
    name: String,
}

#[derive(Serialize)]
pub struct Registered {
    client_id: ClientId,
    environment: Environment,
    name: String,
    seq: u64,
    hash: String,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/clients", web::post().to(register));
}

async fn register(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<RegisterClient>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, |r| *r == Role::Admin)?;
    let body = body.into_inner();
    let client_id = ClientId::parse(body.client_id)?;
    let command = ClientCommand::Register {
        client_id: client_id.clone(),
        environment: Environment::parse(&body.environment)?,
        name: body.name,
        at: state.now()?,
    };
    let stream = StreamId::parse(format!("client:{client_id}"))?;
    let done = state
        .commands
        .execute::<Client>(&stream, &principal.actor()?, command, &())
        .await?;
    let Some((ClientEvent::Registered(e), ack)) = done.events.into_iter().next() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "client registration appended nothing"
        )));
    };
    state.clients.record(&ClientEvent::Registered(e.clone()));
    Ok(HttpResponse::Created().json(Registered {
        client_id: e.client_id,
        environment: e.environment,
        name: e.name,
        seq: ack.seq,
        hash: ack.hash.to_hex(),
    }))
}
