//! `POST /v1/clients` (admin): registers an SP client in one environment, as a
//! `client.registered` event on `client:<client_id>`, then fed to the sessions' view of
//! registered clients.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, Call};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::domain::client::{Client, ClientCommand, ClientEvent};
use crate::domain::values::{ClientId, Environment, TokenSigningAlg};
use crate::record::StreamId;
use crate::token::parse_encryption_key;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterClient {
    /// The SP's OIDC `client_id`.
    client_id: String,
    /// `CURRENT` or `PROD`: each is registered separately (seed 003).
    environment: String,
    /// The SP's display name, 1 to 200 characters.
    name: String,
    /// `EdDSA` (the default) or `ES256`: how its transaction tokens are signed.
    token_signing_alg: Option<String>,
    /// The SP's encryption key, for tokens nested in a JWE: a PEM public key (RSA of at
    /// least 2048 bits, or EC P-256), a JWK, or the URL of a JWKS Vidne fetches.
    token_encryption_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    #[schema(value_type = String)]
    client_id: ClientId,
    #[schema(value_type = String)]
    environment: Environment,
    name: String,
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_signing_alg: Option<TokenSigningAlg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_encryption_key: Option<String>,
    /// The `client.registered` record's ledger `seq` and record hash (hex).
    seq: u64,
    hash: String,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/clients", web::post().to(register));
}

/// Registers an SP client in one environment (admin).
#[utoipa::path(
    post,
    path = "/v1/clients",
    request_body = RegisterClient,
    responses(
        (status = 201, description = "Recorded as `client.registered`", body = Registered),
        (status = 400, description = "Invalid, or already registered in that environment", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn register(
    call: Call<RegisterClient, Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (principal, body) = (call.principal, call.body);
    let client_id = ClientId::parse(body.client_id)?;
    if let Some(key) = &body.token_encryption_key {
        // A key the service could not encrypt to is refused now, not at the first fetch.
        parse_encryption_key(key).map_err(|e| ApiError::BadRequest {
            code: "invalid_request",
            description: e.to_string(),
            field: Some("token_encryption_key".into()),
        })?;
    }
    let command = ClientCommand::Register {
        client_id: client_id.clone(),
        environment: Environment::parse(&body.environment)?,
        name: body.name,
        token_signing_alg: body
            .token_signing_alg
            .map(|a| TokenSigningAlg::parse(&a))
            .transpose()?,
        token_encryption_key: body.token_encryption_key,
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
        token_signing_alg: e.token_signing_alg,
        token_encryption_key: e.token_encryption_key,
        seq: ack.seq,
        hash: ack.hash.to_hex(),
    }))
}
