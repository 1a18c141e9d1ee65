//! The API's one error type and its one mapping to HTTP: every error body is
//! `{"error", "error_description", "field"?}`.

use actix_web::http::{header, StatusCode};
use actix_web::{error, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::CommandError;
use crate::auth::store::KeyError;
use crate::domain::DomainError;
use crate::ledger::AppendError;
use crate::record::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{description}")]
    BadRequest {
        code: &'static str,
        description: String,
        field: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this API key's role may not do this")]
    Forbidden,
    /// 403 with the reason.
    #[error("{0}")]
    ForbiddenBecause(&'static str),
    #[error("no such resource")]
    NotFound,
    /// 404 with the reason, where "no such resource" would leave the caller guessing.
    #[error("{0}")]
    Missing(&'static str),
    /// Something the request depends on outside Vidne failed (a client's JWKS URL).
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Conflict(String),
    #[error("payload too large")]
    TooLarge,
    #[error("{0}")]
    Unavailable(String),
    /// 503: what the answer needs is not made yet (a view still catching up).
    #[error("{0}")]
    NotReady(&'static str),
    /// The append's commit was sent and its outcome is unknown: the caller must look
    /// before trying again, which could append twice.
    #[error("{0}")]
    CommitUnknown(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::BadRequest {
            code: "invalid_request",
            description: e.reason,
            field: Some(e.field),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Invalid(f) => f.into(),
            e @ AppendError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            e @ AppendError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            e @ AppendError::CommitUnknown(_) => ApiError::CommitUnknown(e.to_string()),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::BadRequest {
            code: e.error,
            description: e.error_description,
            field: e.field,
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Refused(e) => e.into(),
            CommandError::Append(e) => e.into(),
            CommandError::Storage(e) => e.into(),
            e @ CommandError::Unreadable { .. } => ApiError::Internal(e.into()),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(f) => f.into(),
            KeyError::Storage(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::ForbiddenBecause(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::CommitUnknown(_) | ApiError::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // Database causes go to the log: the caller learns what to do, not the schema.
        let description = match self {
            ApiError::Unavailable(cause) => {
                tracing::error!(error = %cause, "answered 503 unavailable");
                "the ledger database is unavailable; retry later".into()
            }
            ApiError::CommitUnknown(cause) => {
                tracing::error!(error = %cause, "answered 503 commit_unknown");
                "the ledger's commit outcome is unknown; look for the records before retrying"
                    .into()
            }
            other => other.to_string(),
        };
        let (code, field) = match self {
            ApiError::BadRequest { code, field, .. } => (*code, field.as_deref()),
            ApiError::Unauthorized(_) => ("unauthorized", None),
            ApiError::Forbidden | ApiError::ForbiddenBecause(_) => ("forbidden", None),
            ApiError::NotFound | ApiError::Missing(_) => ("not_found", None),
            ApiError::Upstream(_) => ("upstream_error", None),
            ApiError::Conflict(_) => ("conflict", None),
            ApiError::TooLarge => ("payload_too_large", None),
            ApiError::Unavailable(_) => ("unavailable", None),
            ApiError::NotReady(_) => ("not_ready", None),
            ApiError::CommitUnknown(_) => ("commit_unknown", None),
            ApiError::Internal(e) => {
                // The cause goes to the log, never to the caller.
                tracing::error!(error = ?e, "internal error");
                ("internal_error", None)
            }
        };
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::NotReady(_) = self {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response.json(Body {
            error: code,
            error_description: description,
            field,
        })
    }
}

fn bad_request(code: &'static str, description: String) -> ApiError {
    ApiError::BadRequest {
        code,
        description,
        field: None,
    }
}

pub(super) fn json_error(err: error::JsonPayloadError, _: &HttpRequest) -> error::Error {
    match err {
        error::JsonPayloadError::Overflow { .. }
        | error::JsonPayloadError::OverflowKnownLength { .. } => ApiError::TooLarge.into(),
        error::JsonPayloadError::ContentType => bad_request(
            "invalid_request",
            "Content-Type must be application/json".into(),
        )
        .into(),
        error::JsonPayloadError::Deserialize(e) => {
            bad_request("invalid_request", format!("malformed JSON body: {e}")).into()
        }
        e => bad_request("invalid_request", format!("unreadable body: {e}")).into(),
    }
}

pub(super) fn path_error(err: error::PathError, _: &HttpRequest) -> error::Error {
    bad_request("invalid_request", format!("invalid path: {err}")).into()
}

pub(super) fn query_error(err: error::QueryPayloadError, _: &HttpRequest) -> error::Error {
    bad_request("invalid_request", format!("invalid query: {err}")).into()
}

pub(super) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
