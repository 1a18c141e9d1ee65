//! The caller of every `/v1` route: `Authorization: Bearer <key>`, found in the key
//! store and not revoked. Each handler then names the roles it accepts.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, AppState};
use crate::auth::{ApiKey, Principal, Role};

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no state")))?;
            let value = match presented {
                None => return Err(ApiError::Unauthorized("an API key is required")),
                Some(Err(_)) => return Err(ApiError::Unauthorized("malformed Authorization")),
                Some(Ok(v)) => v,
            };
            let key = value
                .strip_prefix("Bearer ")
                .and_then(|k| ApiKey::parse(k.trim()))
                .ok_or(ApiError::Unauthorized(
                    "Authorization must be Bearer and a Vidne API key",
                ))?;
            state
                .keys
                .find(&key.hash())
                .await?
                .ok_or(ApiError::Unauthorized("unknown or revoked API key"))
        })
    }
}

/// Refuses `principal` unless its role is one `allowed` accepts.
pub fn require(principal: &Principal, allowed: impl Fn(&Role) -> bool) -> Result<(), ApiError> {
    if allowed(&principal.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}
