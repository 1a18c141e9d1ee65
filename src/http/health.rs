//! Liveness and readiness for operators and orchestrators.

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use super::{ApiError, AppState};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

/// The process is up and serving HTTP.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready only when the database answers, with the chain's length.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.reader.head().await {
        Ok(head) => {
            Ok(HttpResponse::Ok().json(json!({"status": "ready", "records": head.next_seq})))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("database does not answer".into()))
        }
    }
}
