//! Errors of the HTTP API, each with an HTTP status and a stable code.
//!
//! Every error response has the body `{"error": {"code": "<code>", "message": "..."}}`
//! (docs/PROTOCOL.md). Codes are part of the contract: clients branch on them, so a code is never
//! renamed. Internal failures (storage, database) are logged with their cause and answered with a
//! generic message, so no server detail leaks to clients.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refused or failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No bearer token, or one the server does not know (401 `unauthorized`).
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// The token does not allow this key or store (403 `forbidden`).
    #[error("token does not allow {0:?}")]
    Forbidden(String),
    /// A signed URL whose expiry has passed (403 `expired`).
    #[error("signed URL expired")]
    Expired,
    /// A signed URL whose signature does not match (403 `bad_signature`).
    #[error("signature does not match")]
    BadSignature,
    /// An unsafe or malformed blob key (400 `invalid_key`).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An invalid store id in the path (400 `invalid_store`).
    #[error("invalid store id: {0}")]
    InvalidStore(String),
    /// A request body or query that is not of the expected shape (400 `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// One pushed event failed validation; nothing was stored (400 `invalid_event`).
    #[error("{0}")]
    InvalidEvent(String),
    /// More events in one push than allowed (413 `too_many_events`).
    #[error("at most {max} events per push, got {got}")]
    TooManyEvents { max: usize, got: usize },
    /// A body over the size limit (413 `too_large`).
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// Uploaded bytes whose SHA-256 differs from the key; nothing stored (422 `hash_mismatch`).
    #[error("content hash is {actual}, the key names {expected}")]
    HashMismatch { expected: String, actual: String },
    /// A blob that is not stored (404 `not_found`).
    #[error("not found")]
    NotFound,
    /// A multipart upload that does not exist (never created, completed and cleaned, aborted,
    /// or swept as stale); start a new one (404 `upload_not_found`).
    #[error("no such multipart upload")]
    UploadNotFound,
    /// A delete of content a live file references (409 `referenced`).
    #[error("content is referenced by a live file")]
    Referenced,
    /// A `Range` header that cannot be satisfied (416 `range_not_satisfiable`).
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// The client went away or sent a broken body (400 `body_error`).
    #[error("request body error: {0}")]
    Body(String),
    /// A failure of the server's own storage (500 `internal`); the cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Expired | ApiError::BadSignature => {
                StatusCode::FORBIDDEN
            }
            ApiError::InvalidKey(_)
            | ApiError::InvalidStore(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidEvent(_)
            | ApiError::Body(_) => StatusCode::BAD_REQUEST,
            ApiError::TooManyEvents { .. } | ApiError::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::HashMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound | ApiError::UploadNotFound => StatusCode::NOT_FOUND,
            ApiError::Referenced => StatusCode::CONFLICT,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Expired => "expired",
            ApiError::BadSignature => "bad_signature",
            ApiError::InvalidKey(_) => "invalid_key",
            ApiError::InvalidStore(_) => "invalid_store",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidEvent(_) => "invalid_event",
            ApiError::TooManyEvents { .. } => "too_many_events",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::HashMismatch { .. } => "hash_mismatch",
            ApiError::NotFound => "not_found",
            ApiError::UploadNotFound => "upload_not_found",
            ApiError::Referenced => "referenced",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Body(_) => "body_error",
            ApiError::Internal(_) => "internal",
        }
    }

    /// An internal failure, logged here with its cause.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "{context}");
        ApiError::Internal(format!("{context}: {cause}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::debug!(code = self.code(), "request failed: {self:?}");
        } else {
            tracing::debug!(code = self.code(), "request refused: {self}");
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut resp = (status, axum::Json(body)).into_response();
        match &self {
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// A failure of the event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// A stored row that does not decode (the database was changed behind our back).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The blob check or delete run inside a store operation failed.
    #[error("blob store: {0}")]
    Blob(BlobError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Blob(b) => b.into(),
            e => ApiError::internal("event store", e),
        }
    }
}

/// A failure of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The object is not there.
    #[error("not found")]
    NotFound,
    /// The body grew past the size limit; nothing was kept.
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body's hash differs from the key's; nothing was kept.
    #[error("hash mismatch")]
    HashMismatch { expected: String, actual: String },
    /// Reading the request body failed; nothing was kept.
    #[error("body: {0}")]
    Body(String),
    /// The requested range is outside the object.
    #[error("range not satisfiable")]
    Range { size: u64 },
    /// The body's length differs from the one required (a multipart part); nothing was kept.
    #[error("body must be {expected} bytes")]
    Length { expected: u64 },
    /// The backend failed.
    #[error("backend: {0}")]
    Backend(String),
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> ApiError {
        match e {
            BlobError::NotFound => ApiError::NotFound,
            BlobError::TooLarge { limit } => ApiError::TooLarge { limit },
            BlobError::HashMismatch { expected, actual } => {
                ApiError::HashMismatch { expected, actual }
            }
            BlobError::Body(m) => ApiError::Body(m),
            BlobError::Range { size } => ApiError::RangeNotSatisfiable { size },
            BlobError::Length { expected } => {
                ApiError::InvalidRequest(format!("the part must be {expected} bytes"))
            }
            BlobError::Backend(m) => ApiError::internal("blob store", m),
        }
    }
}
