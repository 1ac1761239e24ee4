//! Typed errors of the browser adapters, classified by `DOMException.name`.

use std::fmt;

use wasm_bindgen::{JsCast, JsValue};

/// What went wrong in a browser API, as far as a caller can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebError {
    /// Storage is full (`QuotaExceededError`).
    Quota { message: String },
    /// The API is missing in this scope or browser, or refused by policy (private mode,
    /// `SecurityError`, `NotSupportedError`, `InvalidStateError` on a closed handle...).
    Unavailable { api: &'static str, message: String },
    /// The thing looked for does not exist (`NotFoundError`).
    NotFound { message: String },
    /// The operation was aborted (`AbortError`), by us or by the browser.
    Aborted { message: String },
    /// Stored data this version cannot read (newer schema, `VersionError`).
    Version { message: String },
    /// Any other failure, with the exception's name.
    Other { name: String, message: String },
}

impl WebError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::Quota { .. } => "quota_exceeded",
            WebError::Unavailable { .. } => "unavailable",
            WebError::NotFound { .. } => "not_found",
            WebError::Aborted { .. } => "aborted",
            WebError::Version { .. } => "version",
            WebError::Other { .. } => "browser_error",
        }
    }

    /// Classifies a thrown or rejected JS value (usually a `DOMException`).
    pub fn from_js(api: &'static str, value: &JsValue) -> WebError {
        let (name, message) = match value.dyn_ref::<js_sys::Error>() {
            Some(e) => (String::from(e.name()), String::from(e.message())),
            None => (
                "Unknown".to_string(),
                value.as_string().unwrap_or_else(|| format!("{value:?}")),
            ),
        };
        match name.as_str() {
            "QuotaExceededError" => WebError::Quota { message },
            "NotFoundError" => WebError::NotFound { message },
            "AbortError" => WebError::Aborted { message },
            "VersionError" => WebError::Version { message },
            "SecurityError" | "NotSupportedError" | "InvalidStateError" | "NotAllowedError" => {
                WebError::Unavailable { api, message }
            }
            _ => WebError::Other { name, message },
        }
    }
}

impl WebError {
    /// The storage this handle pointed at is gone or closed (the site's data was cleared, or
    /// the browser evicted it): opening it again may succeed.
    pub fn is_storage_gone(&self) -> bool {
        matches!(
            self,
            WebError::NotFound { .. } | WebError::Unavailable { .. }
        )
    }
}

impl fmt::Display for WebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebError::Quota { message } => write!(f, "storage quota exceeded: {message}"),
            WebError::Unavailable { api, message } => write!(f, "{api} unavailable: {message}"),
            WebError::NotFound { message } => write!(f, "not found: {message}"),
            WebError::Aborted { message } => write!(f, "aborted: {message}"),
            WebError::Version { message } => write!(f, "stored data is too new: {message}"),
            WebError::Other { name, message } => write!(f, "{name}: {message}"),
        }
    }
}

impl std::error::Error for WebError {}
