//! Request guards that run before a handler reads anything of the body.
//!
//! * [`require_token`]: calls that need a bearer token are refused (`401`) on the request head
//!   alone, so a client without a valid token cannot make the server read, buffer or wait for
//!   up to a megabyte of body per connection. The handler still checks the token's scope.
//! * [`close_after_refusal`]: an error answer to a request that came with a body carries
//!   `Connection: close`, so a keep-alive client never sends its next request on a connection
//!   whose unread body the server is about to drop.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Refuses a request whose bearer token the server does not know, before its body is read.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.tokens.authorize(auth) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Adds `Connection: close` to error answers of requests that carry a body.
pub async fn close_after_refusal(req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let mut resp = next.run(req).await;
    let status = resp.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
