//! Typed errors. Each has a stable `code()` that the JS layer puts on its `Error` objects.

use std::fmt;

use super::ids::{FileId, Term};

/// Why a synced event, a stored row or a server reply could not be decoded or validated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON of the expected shape (the message comes from the JSON parser).
    Malformed { message: String },
    /// An event name this version does not know (`v2.FileCreated`, `v1.Nope`).
    UnknownEvent { name: String },
    /// An id with characters or a length we do not accept.
    InvalidId { kind: &'static str, value: String },
    /// A content hash that is not 64 lowercase hex characters.
    InvalidHash { value: String },
    /// A path that could escape its directory or is otherwise unsafe.
    UnsafePath { value: String },
    /// A remote key that is not `<storeId>/<contentHash>` for this store and content.
    InvalidRemoteKey { value: String },
    /// A field outside its allowed range (too long, not valid JSON, bad MIME type...).
    InvalidField { field: &'static str, reason: String },
}

impl DecodeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::UnknownEvent { .. } => "unknown_event",
            DecodeError::InvalidId { .. } => "invalid_id",
            DecodeError::InvalidHash { .. } => "invalid_hash",
            DecodeError::UnsafePath { .. } => "unsafe_path",
            DecodeError::InvalidRemoteKey { .. } => "invalid_remote_key",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed { message } => write!(f, "malformed input: {message}"),
            DecodeError::UnknownEvent { name } => write!(f, "unknown event {name:?}"),
            DecodeError::InvalidId { kind, value } => write!(f, "invalid {kind} {value:?}"),
            DecodeError::InvalidHash { value } => {
                write!(f, "invalid content hash {value:?} (want 64 lowercase hex)")
            }
            DecodeError::UnsafePath { value } => write!(f, "unsafe path {value:?}"),
            DecodeError::InvalidRemoteKey { value } => write!(f, "invalid remote key {value:?}"),
            DecodeError::InvalidField { field, reason } => write!(f, "invalid {field}: {reason}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why the engine refused an input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The event itself is invalid.
    Invalid(DecodeError),
    /// The file does not exist (or is deleted) in this client's view.
    NotFound { id: FileId },
    /// A file with this id already exists.
    AlreadyExists { id: FileId },
    /// An input stamped with a term older than the current leader's: a stale leader, ignored.
    StaleTerm { got: Term, current: Term },
    /// A transfer or request id the engine does not know (already finished, cancelled, or void).
    UnknownTask,
}

impl EngineError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Invalid(e) => e.code(),
            EngineError::NotFound { .. } => "not_found",
            EngineError::AlreadyExists { .. } => "already_exists",
            EngineError::StaleTerm { .. } => "stale_term",
            EngineError::UnknownTask => "unknown_task",
        }
    }
}

impl From<DecodeError> for EngineError {
    fn from(e: DecodeError) -> Self {
        EngineError::Invalid(e)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Invalid(e) => e.fmt(f),
            EngineError::NotFound { id } => write!(f, "file {id} not found"),
            EngineError::AlreadyExists { id } => write!(f, "file {id} already exists"),
            EngineError::StaleTerm { got, current } => {
                write!(f, "stale leader term {} (current {})", got.0, current.0)
            }
            EngineError::UnknownTask => write!(f, "unknown or finished task"),
        }
    }
}

impl std::error::Error for EngineError {}

/// How a network or storage operation failed, as the driver observed it. The retry policy
/// decides from this alone whether and when to try again. Travels between the leader tab and
/// the hub as JSON (`{"server": {"status": 503}}`, `"offline"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
#[non_exhaustive]
pub enum Failure {
    /// No network (fetch rejected, `navigator.onLine` false). Waits for connectivity, costs no retry.
    Offline,
    /// The request took longer than its timeout, or stalled.
    Timeout,
    /// HTTP 5xx.
    Server { status: u16 },
    /// HTTP 429, with the server's `Retry-After` in milliseconds when it sent one.
    RateLimited { retry_after_ms: Option<u64> },
    /// HTTP 401/403: credentials missing or not allowed. Not retried until the app asks.
    Auth { status: u16 },
    /// HTTP 404 on a download: the blob is not (yet) there.
    NotFound,
    /// Another HTTP 4xx: the request itself is wrong; retrying the same request will not help.
    Rejected { status: u16 },
    /// The server answered with something this client cannot read (not the JSON the protocol
    /// says). Retried like a server error: it is usually a proxy or a deploy in progress.
    Protocol { message: String },
    /// The downloaded bytes do not hash to the expected content hash.
    Integrity { actual: String },
    /// Local storage failed (quota, I/O). `quota` tells quota exhaustion apart.
    Storage { quota: bool, message: String },
    /// The transfer was cancelled (by the app, a newer edit, or a lost leadership).
    Cancelled,
    /// The server recorded an upload's attach without its remote key: it does not hold the
    /// bytes the upload sent (blobs kept behind another signer that the event server does not
    /// know of, or deleted meanwhile). Retried with backoff, within the budget.
    KeyCleared,
}

impl Failure {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Offline => "offline",
            Failure::Timeout => "timeout",
            Failure::Server { .. } => "server_error",
            Failure::RateLimited { .. } => "rate_limited",
            Failure::Auth { .. } => "auth",
            Failure::NotFound => "remote_not_found",
            Failure::Rejected { .. } => "rejected",
            Failure::Protocol { .. } => "bad_response",
            Failure::Integrity { .. } => "integrity",
            Failure::Storage { quota: true, .. } => "quota_exceeded",
            Failure::Storage { .. } => "storage",
            Failure::Cancelled => "cancelled",
            Failure::KeyCleared => "remote_key_cleared",
        }
    }

    /// Classifies an HTTP status of a failed response.
    pub fn from_status(status: u16, retry_after_ms: Option<u64>) -> Failure {
        match status {
            401 | 403 => Failure::Auth { status },
            404 => Failure::NotFound,
            408 => Failure::Timeout,
            429 => Failure::RateLimited { retry_after_ms },
            500..=599 => Failure::Server { status },
            _ => Failure::Rejected { status },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Offline => write!(f, "offline"),
            Failure::Timeout => write!(f, "request timed out"),
            Failure::Server { status } => write!(f, "server error (HTTP {status})"),
            Failure::RateLimited { .. } => write!(f, "rate limited (HTTP 429)"),
            Failure::Auth { status } => write!(f, "not authorized (HTTP {status})"),
            Failure::NotFound => write!(f, "remote object not found"),
            Failure::Rejected { status } => write!(f, "request rejected (HTTP {status})"),
            Failure::Protocol { message } => write!(f, "unreadable server response: {message}"),
            Failure::Integrity { actual } => {
                write!(
                    f,
                    "downloaded bytes hash to {actual}, not the expected content hash"
                )
            }
            Failure::Storage { message, .. } => write!(f, "local storage failed: {message}"),
            Failure::Cancelled => write!(f, "cancelled"),
            Failure::KeyCleared => {
                write!(
                    f,
                    "the server stored the upload without its key: it lacks the bytes"
                )
            }
        }
    }
}
