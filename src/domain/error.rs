//! The one refusal type of the domain, shaped like the API's 4xx body.

use serde::Serialize;

use crate::domain::codes;
use crate::record::FieldError;

/// Why a command was refused: `error` is the OAuth-style error (`access_denied` with the
/// seed's `error_description` codes, or `invalid_request`), `error_description` the seed
/// code where one exists and otherwise a short code or reason of Vidne's, `field` the input
/// member at fault. Never echoes an input value, so no identity number can leak through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{error}: {error_description}")]
pub struct DomainError {
    pub error: &'static str,
    pub error_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl DomainError {
    /// `invalid_request` naming the field at fault.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        DomainError {
            error: codes::INVALID_REQUEST,
            error_description: description.into(),
            field: Some(field.into()),
        }
    }

    /// `invalid_request` about the state of the aggregate rather than one field.
    pub fn conflict(description: impl Into<String>) -> Self {
        DomainError {
            error: codes::INVALID_REQUEST,
            error_description: description.into(),
            field: None,
        }
    }

    /// `access_denied` with one of the seed's `error_description` codes.
    pub fn access_denied(code: &'static str, field: Option<&str>) -> Self {
        DomainError {
            error: codes::ACCESS_DENIED,
            error_description: code.to_string(),
            field: field.map(str::to_string),
        }
    }

    /// The same error naming `field` (used when a value parsed by a shared newtype is a
    /// member with another name in a command).
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<FieldError> for DomainError {
    fn from(e: FieldError) -> Self {
        DomainError::invalid(e.field, e.reason)
    }
}
