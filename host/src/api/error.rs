//! The one error shape every route answers with:
//! `{"error": "<code>", "message": "<what went wrong>"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::policy::catalog::CatalogError;

/// What kind of error, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No or wrong bearer token (401).
    Unauthorized,
    /// No admin token is configured, so the admin routes are off (403).
    AdminOff,
    /// Read routes answer loopback callers only when no token is configured (403).
    LoopbackOnly,
    /// Refused: a message whose signature, topic or age does not hold (403).
    Forbidden,
    /// No such route, policy, version or incident (404).
    NotFound,
    /// The method is not served on this route (405).
    MethodNotAllowed,
    /// The request cannot be read (400).
    BadRequest,
    /// A component that does not load as a policy (422).
    InvalidPolicy,
    /// The body is over the route's limit (413).
    PayloadTooLarge,
    /// The change conflicts with the current state (409).
    Conflict,
    /// The store or a dependency is unavailable; retry (503).
    Unavailable,
    /// A bug or a corrupt record (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status it answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::AdminOff | ErrorCode::LoopbackOnly | ErrorCode::Forbidden => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPolicy => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error: a code and a message for people.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The code.
    pub error: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            error: code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.error.status(), Json(self)).into_response()
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let code = match &e {
            CatalogError::Policy(_) | CatalogError::NameMismatch { .. } => ErrorCode::InvalidPolicy,
            CatalogError::Unknown(_) | CatalogError::NoVersion { .. } => ErrorCode::NotFound,
            CatalogError::NoEarlier(_) | CatalogError::NoShadow(_) | CatalogError::Contended => {
                ErrorCode::Conflict
            }
            CatalogError::Blob(_) | CatalogError::Store(_) => ErrorCode::Unavailable,
            CatalogError::Corrupt(_) | CatalogError::Worker(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        let code = match &e {
            S::NotFound(_) => ErrorCode::NotFound,
            S::Invalid(_) => ErrorCode::BadRequest,
            S::Contention(_) | S::IllegalTransition { .. } => ErrorCode::Conflict,
            S::Corrupt(_) | S::Worker(_) => ErrorCode::Internal,
            S::Sqlite(_) | S::Dynamo(_) => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<crate::pipeline::ApprovalError> for ApiError {
    fn from(e: crate::pipeline::ApprovalError) -> Self {
        use crate::pipeline::ApprovalError as A;
        match e {
            A::Store(s) => s.into(),
            A::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
            A::NothingPending { .. } | A::Expired { .. } | A::Busy(_) => {
                ApiError::new(ErrorCode::Conflict, e.to_string())
            }
        }
    }
}

/// A body the route could not take (too large, unreadable).
impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::BadRequest
        };
        ApiError::new(code, e.body_text())
    }
}

/// A JSON body that does not parse.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::BadRequest
        };
        ApiError::new(code, e.body_text())
    }
}
