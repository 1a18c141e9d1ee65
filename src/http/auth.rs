//! The caller of every `/v1` route: `Authorization: Bearer <key>`, found in the key
//! store and not revoked. Each handler then names the roles it accepts.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::auth::{ApiKey, Principal, Role};

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
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

/// The roles a route accepts, as a type, so that [`Call`] checks them before the body.
pub trait Allowed {
    fn allows(role: &Role) -> bool;
}

/// Routes for the broker's key.
pub struct Broker;

impl Allowed for Broker {
    fn allows(role: &Role) -> bool {
        *role == Role::Broker
    }
}

/// Routes for an admin key.
pub struct Admin;

impl Allowed for Admin {
    fn allows(role: &Role) -> bool {
        *role == Role::Admin
    }
}

/// A route's caller and JSON body, extracted in that order: the key and its role are
/// checked before the body is read, so a caller without the role gets 401/403 whatever
/// it sent (as separate extractors, actix-web would race them).
pub struct Call<T, A> {
    pub principal: Principal,
    pub body: T,
    roles: PhantomData<A>,
}

impl<T: DeserializeOwned + 'static, A: Allowed + 'static> FromRequest for Call<T, A> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let principal = Principal::from_request(&req, &mut Payload::None).await?;
            require(&principal, A::allows)?;
            let body = web::Json::<T>::from_request(&req, &mut payload).await?;
            Ok(Call {
                principal,
                body: body.into_inner(),
                roles: PhantomData,
            })
        })
    }
}
