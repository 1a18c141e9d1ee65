//! Sealed transaction tokens for their SPs, and the keys that verify them.
//!
//! - `GET /.well-known/jwks.json` (public): every key that may still verify a token.
//! - `GET /v1/transactions/{transaction_id}/token` (`sp:<client_id>`): the token of one of
//!   the SP's own transactions, `application/jwt`: a JWS, nested in a JWE when the
//!   client's registration gave an encryption key. Any other caller, an unknown id and a
//!   transaction not yet completed get the same 404, so an SP learns nothing of another's
//!   transactions.

use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::domain::values::TransactionId;
use crate::token::{encrypt, parse_encryption_key};

/// How long a fetch waits for a completion appended just before it to be sealed.
const SEAL_WAIT: Duration = Duration::from_secs(2);

const NO_TOKEN: &str = "no sealed token for this transaction_id: unknown, another client's, \
                        or not completed yet";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks))
        .route(
            "/v1/transactions/{transaction_id}/token",
            web::get().to(token),
        );
}

/// The token signing keys: active, pending (published before they sign) and retired.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    responses((status = 200, description = "JWKS (RFC 7517)", content_type = "application/jwk-set+json"))
)]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.sealer.jwks())
}

/// The SP's transaction token (its own SP key only).
#[utoipa::path(
    get,
    path = "/v1/transactions/{transaction_id}/token",
    params(("transaction_id" = String, Path, description = "The transaction's id")),
    responses(
        (status = 200, description = "Compact JWS, or a JWE (`cty` JWT) nesting it for clients registered with an encryption key", content_type = "application/jwt"),
        (status = 400, description = "`transaction_id` is malformed", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an SP key", body = ErrorBody),
        (status = 404, description = "Unknown, another client's, or not completed yet", body = ErrorBody),
        (status = 409, description = "The SP used this transaction_id in two sessions", body = ErrorBody),
        (status = 502, description = "The client's JWKS URL could not be used", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn token(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Role::Sp(client_id) = &principal.role else {
        return Err(ApiError::Forbidden);
    };
    let transaction_id = TransactionId::parse(path.into_inner())?;
    let mut found = state
        .tokens
        .tokens(client_id, transaction_id.as_str())
        .await
        .map_err(ApiError::Internal)?;
    if found.is_empty() {
        // A completion acknowledged just now may not be sealed yet.
        let head = state.reader.head().await?.next_seq;
        state
            .tokens
            .wait_for(head, SEAL_WAIT)
            .await
            .map_err(ApiError::Internal)?;
        found = state
            .tokens
            .tokens(client_id, transaction_id.as_str())
            .await
            .map_err(ApiError::Internal)?;
    }
    let token = match found.len() {
        0 => return Err(ApiError::Missing(NO_TOKEN)),
        1 => found.remove(0),
        _ => {
            return Err(ApiError::Conflict(
                "this client used the transaction_id in more than one session".into(),
            ))
        }
    };
    // The sealed token exists, so its client's registration has been read; should this
    // view not have it, it is read again, and never guessed: a client that registered
    // an encryption key must not get its token in clear.
    let settings = match state.clients.token_settings(client_id, token.environment) {
        Some(s) => s,
        None => {
            state
                .clients
                .catch_up(&state.reader)
                .await
                .map_err(ApiError::Internal)?;
            state
                .clients
                .token_settings(client_id, token.environment)
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!(
                        "token sealed for {client_id} in {}, which is not registered there",
                        token.environment
                    ))
                })?
        }
    };
    let body = match settings.encryption_key {
        None => token.jws,
        Some(key) => {
            let upstream = |e: crate::token::SealError| {
                ApiError::Upstream(format!("the client's encryption key: {e}"))
            };
            let source = parse_encryption_key(&key).map_err(upstream)?;
            let recipient = source.resolve(&state.jwks).await.map_err(upstream)?;
            encrypt(&token.jws, &recipient).map_err(upstream)?
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/jwt")
        .insert_header(("Cache-Control", "no-store"))
        .body(body))
}
