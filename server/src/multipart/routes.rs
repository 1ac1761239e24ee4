//! HTTP routes of the multipart extension (`/api/v1/multipart/*`) and the part `PUT` of proxy
//! mode's signed URLs. Same conventions as the signer API: bearer token, JSON bodies, the error
//! body of docs/PROTOCOL.md.
//!
//! A proxy-mode part URL is this server's file URL with the part in its query:
//! `PUT <base>/livestore-filesync-files/<key>?uploadId=..&partNumber=..&length=..&sha256=..
//! &exp=..&sig=..`, where `sig` signs `PUT\n<key>\n<uploadId>\n<partNumber>\n<length>\n<sha256>
//! \n<exp>`: a URL can only store the one part, of the one length and hash, it was signed for.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use super::{checksum_hex, CompletedPart, Plan, UploadId, MAX_SIGN_PARTS};
use crate::error::ApiError;
use crate::keys::{self, BlobKey};
use crate::routes::{
    authorize, body_bytes, iso8601, json_body, kept, now_secs, public_base, signer_key, FILES_PATH,
};
use crate::AppState;

/// Largest request body of `create`, `sign` and `abort`.
pub const MAX_MULTIPART_BODY: usize = 64 * 1024;
/// Largest request body of `complete` (10,000 parts of ~150 bytes).
pub const MAX_COMPLETE_BODY: usize = 2 * 1024 * 1024;

type Shared = State<std::sync::Arc<AppState>>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    key: String,
    size: u64,
    part_size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartToSign {
    part_number: u64,
    checksum_sha256: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignRequest {
    key: String,
    upload_id: String,
    parts: Vec<PartToSign>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteRequest {
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AbortRequest {
    key: String,
    upload_id: String,
}

/// Token, body and key of a multipart call.
fn request<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    key_of: impl FnOnce(&T) -> &str,
) -> Result<(T, BlobKey), ApiError> {
    let allowed = authorize(state, headers)?;
    let req: T = json_body(&body_bytes(body, limit)?)?;
    let key = signer_key(&allowed, key_of(&req))?;
    Ok((req, key))
}

pub async fn create(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (req, key) = request(
        &state,
        &headers,
        body,
        MAX_MULTIPART_BODY,
        |r: &CreateRequest| &r.key,
    )?;
    let plan = Plan::new(req.size, req.part_size, state.max_blob_bytes)?;
    let now = now_secs();
    let id = kept(&state)?.multipart().create(&key, plan, now).await?;
    tracing::info!(key = %key.as_string(), upload = id.as_str(), size = plan.size, "multipart upload created");
    Ok(Json(json!({
        "uploadId": id.as_str(),
        "partSize": plan.part_size,
        "partCount": plan.part_count(),
        "expiresAt": iso8601(now + state.multipart_max_age.as_secs()),
    })))
}

pub async fn sign(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (req, key) = request(
        &state,
        &headers,
        body,
        MAX_MULTIPART_BODY,
        |r: &SignRequest| &r.key,
    )?;
    if req.parts.is_empty() || req.parts.len() > MAX_SIGN_PARTS {
        return Err(ApiError::InvalidRequest(format!(
            "sign 1..={MAX_SIGN_PARTS} parts per request, got {}",
            req.parts.len()
        )));
    }
    let id = UploadId::parse(&req.upload_id)?;
    let multipart = kept(&state)?.multipart();
    let manifest = multipart.manifest(&key, &id).await?;
    let exp = now_secs() + state.url_ttl_secs;
    let ttl = Duration::from_secs(state.url_ttl_secs);
    let base = public_base(&state, &headers);
    let raw_key = key.as_string();
    let mut signed = Vec::with_capacity(req.parts.len());
    for part in &req.parts {
        let n = part.part_number;
        let len = manifest.plan.part_len(n)?;
        let sum = checksum_hex(&part.checksum_sha256)?;
        let entry = match multipart
            .presign_part(&key, &manifest, n, &sum, ttl)
            .await?
        {
            Some(p) => {
                let headers: serde_json::Map<_, _> =
                    p.headers.into_iter().map(|(k, v)| (k, v.into())).collect();
                json!({"partNumber": n, "method": "PUT", "url": p.url, "headers": headers})
            }
            None => {
                let resource = part_resource(&raw_key, &id, n, len, &sum);
                let sig = state.signer.sign("PUT", &resource, exp);
                let url = format!(
                    "{base}{FILES_PATH}/{raw_key}?uploadId={}&partNumber={n}&length={len}&sha256={sum}&exp={exp}&sig={sig}",
                    id.as_str()
                );
                json!({"partNumber": n, "method": "PUT", "url": url})
            }
        };
        signed.push(entry);
    }
    Ok(Json(json!({"parts": signed, "expiresAt": iso8601(exp)})))
}

pub async fn complete(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (req, key) = request(
        &state,
        &headers,
        body,
        MAX_COMPLETE_BODY,
        |r: &CompleteRequest| &r.key,
    )?;
    let id = UploadId::parse(&req.upload_id)?;
    kept(&state)?
        .multipart()
        .complete(&key, &id, &req.parts, state.max_blob_bytes)
        .await?;
    tracing::info!(key = %key.as_string(), upload = id.as_str(), "multipart upload completed");
    Ok(Json(json!({"key": key.as_string()})))
}

pub async fn abort(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let (req, key) = request(
        &state,
        &headers,
        body,
        MAX_MULTIPART_BODY,
        |r: &AbortRequest| &r.key,
    )?;
    // An id that cannot name an upload names none: nothing to abort.
    if let Ok(id) = UploadId::parse(&req.upload_id) {
        kept(&state)?.multipart().abort(&key, &id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What a proxy-mode part URL signs besides the method and expiry.
fn part_resource(key: &str, id: &UploadId, n: u64, len: u64, sha256_hex: &str) -> String {
    format!("{key}\n{}\n{n}\n{len}\n{sha256_hex}", id.as_str())
}

/// The part fields of a file URL's query.
#[derive(Debug)]
pub struct PartQuery {
    pub upload_id: String,
    pub part_number: Option<u64>,
    pub length: Option<u64>,
    pub sha256: Option<String>,
}

/// `PUT` of one part to a proxy-mode part URL (the signature is checked here, before the body
/// is read).
pub async fn put_part(
    state: &AppState,
    raw_key: &str,
    part: PartQuery,
    exp: u64,
    sig: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let key = keys::parse(raw_key)?;
    let (Some(n), Some(len), Some(sum)) = (part.part_number, part.length, part.sha256) else {
        return Err(ApiError::BadSignature);
    };
    let id = UploadId::parse(&part.upload_id).map_err(|_| ApiError::BadSignature)?;
    let resource = part_resource(raw_key, &id, n, len, &sum);
    state
        .signer
        .verify("PUT", &resource, exp, sig, now_secs())?;
    let stream = body.into_data_stream().map_err(|e| e.to_string()).boxed();
    let etag = kept(state)?
        .multipart()
        .put_part(&key, &id, n, len, &sum, stream)
        .await?;
    let tag =
        HeaderValue::from_str(&format!("\"{etag}\"")).map_err(|e| ApiError::internal("etag", e))?;
    Ok((StatusCode::OK, [(header::ETAG, tag)]).into_response())
}
