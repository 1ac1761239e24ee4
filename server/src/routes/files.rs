//! The proxy file URLs: `PUT` and `GET` of `/livestore-filesync-files/<key>?exp=..&sig=..`, and
//! the part `PUT`s of multipart uploads on the same path (see [`crate::multipart::routes`]).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::{kept, now_secs, Shared};
use crate::blobs::ByteRange;
use crate::error::ApiError;
use crate::keys::{self, BlobKey};
use crate::multipart;
use crate::AppState;

#[derive(Deserialize)]
pub(super) struct SignedQuery {
    exp: Option<u64>,
    sig: Option<String>,
    /// The fields of a multipart part's URL (see [`multipart::routes`]); not flattened, as
    /// query strings decode numbers only in direct fields.
    #[serde(rename = "uploadId")]
    upload_id: Option<String>,
    #[serde(rename = "partNumber")]
    part_number: Option<u64>,
    length: Option<u64>,
    sha256: Option<String>,
}

/// Validates the key and the signature of a proxy URL.
fn verify_signed(
    state: &AppState,
    method: &Method,
    raw_key: &str,
    query: Result<Query<SignedQuery>, QueryRejection>,
) -> Result<BlobKey, ApiError> {
    let key = keys::parse(raw_key)?;
    let Ok(Query(q)) = query else {
        return Err(ApiError::BadSignature);
    };
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return Err(ApiError::BadSignature);
    };
    state
        .signer
        .verify(method.as_str(), raw_key, exp, &sig, now_secs())?;
    Ok(key)
}

fn etag(key: &BlobKey) -> HeaderValue {
    // A hex hash in quotes is always a valid header value.
    HeaderValue::from_str(&format!("\"{}\"", key.hash.to_hex()))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

pub(super) async fn upload_file(
    State(state): Shared,
    Path(raw_key): Path<String>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<SignedQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    // A multipart part's URL (one without its signature is refused below like any other).
    let query = match query {
        Ok(Query(SignedQuery {
            exp: Some(exp),
            sig: Some(sig),
            upload_id: Some(upload_id),
            part_number,
            length,
            sha256,
        })) => {
            let part = multipart::routes::PartQuery {
                upload_id,
                part_number,
                length,
                sha256,
            };
            return multipart::routes::put_part(&state, &raw_key, part, exp, &sig, body).await;
        }
        other => other,
    };
    let key = verify_signed(&state, &method, &raw_key, query)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_blob_bytes) {
        return Err(ApiError::TooLarge {
            limit: state.max_blob_bytes,
        });
    }
    let stream = body.into_data_stream().map_err(|e| e.to_string()).boxed();
    kept(&state)?
        .put_verified(&key, stream, state.max_blob_bytes)
        .await?;
    tracing::info!(key = %key.as_string(), "blob stored");
    Ok((StatusCode::OK, [(header::ETAG, etag(&key))]).into_response())
}

pub(super) async fn download_file(
    State(state): Shared,
    Path(raw_key): Path<String>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<SignedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = verify_signed(&state, &method, &raw_key, query)?;
    let tag = etag(&key);
    let none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == tag.to_str().unwrap_or("") || t.trim() == "*")
        });
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    let read = kept(&state)?.get(&key, range).await?;
    if none_match {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let len = read.range.end - read.range.start;
    let mut resp = Response::new(Body::from_stream(read.stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ETAG, tag);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Content-addressed: the bytes under a key never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if read.partial {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let cr = format!(
            "bytes {}-{}/{}",
            read.range.start,
            read.range.end.saturating_sub(1),
            read.size
        );
        if let Ok(v) = HeaderValue::from_str(&cr) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}
