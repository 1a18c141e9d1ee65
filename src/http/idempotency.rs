//! `Idempotency-Key` on every POST: the first answer for a (caller, key) is stored and
//! replayed to retries, which append nothing. A key reused with a different request is
//! refused (422); one whose first request still runs gets 409.
//!
//! Answers are kept whole except `POST /v1/keys`, whose answer holds a new API key in
//! clear: for it only the status is kept, and a retry is told the key was shown once.
//! A 5xx answer that appended nothing frees the key for a retry; one whose commit is
//! unknown (`commit_unknown`) is kept, since running it again could append twice.

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ApiError, AppState};
use crate::auth::ApiKey;
use crate::idempotency::Claim;

const HEADER: &str = "Idempotency-Key";

fn bad_key() -> ApiError {
    ApiError::BadRequest {
        code: "invalid_request",
        description: "must be 1 to 255 visible ASCII characters".into(),
        field: Some(HEADER.into()),
    }
}

fn refused(status: StatusCode, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": "invalid_request",
        "error_description": description,
        "field": HEADER,
    }))
}

pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let pass = |req, next: Next<_>| async move {
        next.call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body)
    };
    let Some(header) = req.headers().get(HEADER) else {
        return pass(req, next).await;
    };
    if req.method() != Method::POST {
        return pass(req, next).await;
    }
    let key = match header.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => return Ok(req.error_response(bad_key())),
    };
    // Keys are scoped to the caller. Without a well-formed key the handler answers 401,
    // and there is nothing to remember.
    let scope = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|k| ApiKey::parse(k.trim()))
        .map(|k| k.hash().0);
    let (Some(scope), Some(state)) = (scope, req.app_data::<web::Data<AppState>>().cloned()) else {
        return pass(req, next).await;
    };
    let body = req.extract::<web::Bytes>().await?;
    let path = req.path().to_owned();
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.fingerprint_key[..])
        .expect("HMAC takes any key length");
    mac.update(req.method().as_str().as_bytes());
    mac.update(b"\0");
    mac.update(path.as_bytes());
    mac.update(b"\0");
    mac.update(&body);
    let fingerprint = mac.finalize().into_bytes().to_vec();

    let claim = state
        .idempotency
        .claim(&scope, &key, &fingerprint, state.now_micros())
        .await;
    let reuse = "this Idempotency-Key was used with a different request";
    match claim {
        Err(e) => Ok(req.error_response(ApiError::from(e))),
        Ok(Claim::Running { fingerprint: f } | Claim::Done { fingerprint: f, .. })
            if f != fingerprint =>
        {
            Ok(req.into_response(refused(StatusCode::UNPROCESSABLE_ENTITY, reuse)))
        }
        Ok(Claim::Running { .. }) => Ok(req.into_response(refused(
            StatusCode::CONFLICT,
            "the first request with this Idempotency-Key has not finished",
        ))),
        Ok(Claim::Done {
            status,
            content_type,
            body,
            ..
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let response = match body {
                Some(body) => {
                    let mut r = HttpResponse::build(status);
                    if let Some(ct) = content_type {
                        r.insert_header((CONTENT_TYPE, ct));
                    }
                    r.insert_header(("Idempotent-Replayed", "true")).body(body)
                }
                None => refused(
                    StatusCode::CONFLICT,
                    "the first request with this Idempotency-Key succeeded; its answer is shown only once",
                ),
            };
            Ok(req.into_response(response))
        }
        Ok(Claim::New) => {
            req.set_payload(body.into());
            let res = next.call(req).await?;
            let (http_req, res) = res.into_parts();
            let status = res.status();
            let content_type = res
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (res, body) = res.into_parts();
            let bytes = to_bytes(body)
                .await
                .map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
            let commit_unknown = || {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .is_ok_and(|v| v["error"] == "commit_unknown")
            };
            let kept = if status.is_server_error() && !commit_unknown() {
                state.idempotency.release(&scope, &key).await
            } else {
                let secret = path == "/v1/keys";
                state
                    .idempotency
                    .complete(
                        &scope,
                        &key,
                        status.as_u16(),
                        content_type.as_deref(),
                        (!secret).then_some(&bytes[..]),
                    )
                    .await
            };
            if let Err(e) = kept {
                tracing::error!(error = %e, "idempotency: could not store the answer");
            }
            Ok(ServiceResponse::new(
                http_req,
                res.set_body(BoxBody::new(bytes)),
            ))
        }
    }
}
