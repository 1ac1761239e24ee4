//! HTTP routes: health, the signer API, the event sync API and the proxy file URLs, exactly as
//! docs/PROTOCOL.md describes them.
//!
//! Every handler returns `Result<_, ApiError>`; request data is decoded into typed values
//! first (keys, store ids, events), so nothing later can be handed unchecked client text, and no
//! request can reach a panic.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use filesync::core::event::{ClientEvent, ConfirmedEvent, FileEvent, WireEnvelope};
use filesync::core::ids::{ContentHash, Seq, StoreId};
use futures_util::future::FutureExt;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Allowed;
use crate::blobs::PresignMethod;
use crate::error::ApiError;
use crate::keys::{self, BlobKey};
use crate::live::LiveBatch;

mod files;
use crate::multipart;
use crate::AppState;

/// Largest events request body.
pub const MAX_EVENTS_BODY: usize = 1024 * 1024;
/// Most events in one push.
pub const MAX_EVENTS_PER_PUSH: usize = 1000;
/// Default and largest page of a pull.
pub const DEFAULT_PULL_LIMIT: usize = 256;
/// Largest page of a pull.
pub const MAX_PULL_LIMIT: usize = 1000;
/// Largest signer request body.
const MAX_SIGNER_BODY: usize = 64 * 1024;
/// Path of the proxy file URLs (livestore-filesync's name).
pub const FILES_PATH: &str = "/livestore-filesync-files";

type Shared = State<Arc<AppState>>;

/// The API router (without CORS, tracing and static files; see `crate::app`).
pub fn router(state: Arc<AppState>) -> Router {
    let keeps_blobs = state.blobs.is_some();
    // Every call with a bearer token is refused on its head when the token is unknown.
    let token = || axum::middleware::from_fn_with_state(state.clone(), crate::guard::require_token);
    let signer = Router::new()
        .route("/v1/sign/upload", post(sign_upload))
        .route("/v1/sign/download", post(sign_download))
        .route("/v1/delete", post(delete_blob))
        .layer(DefaultBodyLimit::max(MAX_SIGNER_BODY))
        .route_layer(token());
    let multipart = Router::new()
        .route("/v1/multipart/create", post(multipart::routes::create))
        .route("/v1/multipart/sign", post(multipart::routes::sign))
        .route("/v1/multipart/abort", post(multipart::routes::abort))
        .layer(DefaultBodyLimit::max(multipart::routes::MAX_MULTIPART_BODY))
        .merge(
            Router::new()
                .route("/v1/multipart/complete", post(multipart::routes::complete))
                .layer(DefaultBodyLimit::max(multipart::routes::MAX_COMPLETE_BODY)),
        )
        .route_layer(token());
    let events = Router::new()
        .route("/v1/stores/{store}/events", post(push).get(pull))
        .route("/v1/stores/{store}/events/live", get(live))
        .layer(DefaultBodyLimit::max(MAX_EVENTS_BODY))
        .route_layer(token());
    let mut api = Router::new().route("/health", get(health)).merge(events);
    let mut root = Router::new().route("/health", get(health));
    // Blobs behind another signer: no signer API, no file URLs (404s).
    if keeps_blobs {
        api = api.merge(signer).merge(multipart);
        root = root.route(
            &format!("{FILES_PATH}/{{*key}}"),
            put(files::upload_file)
                .get(files::download_file)
                .layer(DefaultBodyLimit::disable()),
        );
    }
    root.nest("/api", api).with_state(state)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Allowed, ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.tokens.authorize(auth)
}

pub(crate) fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: limit as u64,
            }
        } else {
            ApiError::Body(r.body_text())
        }
    })
}

pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::new(raw).map_err(|e| ApiError::InvalidStore(e.to_string()))
}

/// The blob store of routes that only exist when this server keeps the blobs.
pub(crate) fn kept(state: &AppState) -> Result<&Arc<dyn crate::blobs::BlobStore>, ApiError> {
    state.blobs.as_ref().ok_or(ApiError::NotFound)
}

// ---------------------------------------------------------------------------------------------
// Health

async fn health(State(state): Shared) -> Json<serde_json::Value> {
    Json(json!({
        "ok": true,
        "service": "filesync-server",
        "version": env!("CARGO_PKG_VERSION"),
        "features": match &state.blobs {
            Some(blobs) => json!(["events", blobs.mode(), "multipart"]),
            None => json!(["events", "external"]),
        },
    }))
}

// ---------------------------------------------------------------------------------------------
// Signer API

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignUploadRequest {
    key: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    content_length: Option<u64>,
}

#[derive(Deserialize)]
struct KeyRequest {
    key: String,
}

/// Base of signed URLs: `--public-url`, else `http://<Host>` of the request.
pub(crate) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &state.public_url {
        return base.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map_or_else(|| state.local_addr.to_string(), str::to_string);
    format!("http://{host}")
}

/// The URL of a blob for `method` and its expiry (unix seconds): a SigV4 presigned URL of the
/// bucket in presign mode, else this server's HMAC-signed file URL.
async fn signed_url(
    state: &AppState,
    headers: &HeaderMap,
    method: PresignMethod,
    key: &BlobKey,
) -> Result<(String, u64), ApiError> {
    let exp = now_secs() + state.url_ttl_secs;
    let blobs = kept(state)?;
    if blobs.mode() == "presign" {
        let ttl = Duration::from_secs(state.url_ttl_secs);
        let url = blobs.presign(method, key, ttl).await?;
        return Ok((url, exp));
    }
    let method = match method {
        PresignMethod::Put => "PUT",
        PresignMethod::Get => "GET",
    };
    let key = key.as_string();
    let sig = state.signer.sign(method, &key, exp);
    let base = public_base(state, headers);
    Ok((format!("{base}{FILES_PATH}/{key}?exp={exp}&sig={sig}"), exp))
}

pub(crate) fn iso8601(unix_secs: u64) -> String {
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Authorizes and parses the key of a signer request.
pub(crate) fn signer_key(allowed: &Allowed, key: &str) -> Result<BlobKey, ApiError> {
    keys::check_safe(key)?;
    allowed.check_key(key)?;
    keys::parse(key)
}

async fn sign_upload(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let allowed = authorize(&state, &headers)?;
    let req: SignUploadRequest = json_body(&body_bytes(body, MAX_SIGNER_BODY)?)?;
    let key = signer_key(&allowed, &req.key)?;
    if req.content_length.is_some_and(|n| n > state.max_blob_bytes) {
        return Err(ApiError::TooLarge {
            limit: state.max_blob_bytes,
        });
    }
    let (url, exp) = signed_url(&state, &headers, PresignMethod::Put, &key).await?;
    let mut resp = json!({"method": "PUT", "url": url, "expiresAt": iso8601(exp)});
    if let Some(ct) = req.content_type.filter(|c| !c.is_empty()) {
        resp["headers"] = json!({"Content-Type": ct});
    }
    Ok(Json(resp))
}

async fn sign_download(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let allowed = authorize(&state, &headers)?;
    let req: KeyRequest = json_body(&body_bytes(body, MAX_SIGNER_BODY)?)?;
    let key = signer_key(&allowed, &req.key)?;
    let (url, exp) = signed_url(&state, &headers, PresignMethod::Get, &key).await?;
    Ok(Json(json!({"url": url, "expiresAt": iso8601(exp)})))
}

async fn delete_blob(
    State(state): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let allowed = authorize(&state, &headers)?;
    let req: KeyRequest = json_body(&body_bytes(body, MAX_SIGNER_BODY)?)?;
    let key = signer_key(&allowed, &req.key)?;
    let slot = state.stores.slot(&key.store);
    let _serialized = slot.lock.lock().await;
    let blobs = kept(&state)?.clone();
    let target = key.clone();
    let delete = move || {
        let (blobs, target) = (blobs.clone(), target.clone());
        async move { blobs.delete(&target).await }.boxed()
    };
    let deleted = state
        .events
        .delete_unreferenced(&key.store, &key.hash, &delete)
        .await?;
    if !deleted {
        return Err(ApiError::Referenced);
    }
    tracing::info!(key = %key.as_string(), "blob deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Event sync API

#[derive(Deserialize)]
struct PushRequest {
    /// Each event's JSON, decoded one by one so an error names the event.
    events: Vec<Box<serde_json::value::RawValue>>,
}

/// Decodes and validates every event; the first invalid one refuses the request.
fn decode_push(store: &StoreId, bytes: &[u8]) -> Result<Vec<ClientEvent>, ApiError> {
    let req: PushRequest = json_body(bytes)?;
    if req.events.len() > MAX_EVENTS_PER_PUSH {
        return Err(ApiError::TooManyEvents {
            max: MAX_EVENTS_PER_PUSH,
            got: req.events.len(),
        });
    }
    req.events
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let bad = |code: &str, msg: String| {
                ApiError::InvalidEvent(format!("events[{i}]: {code}: {msg}"))
            };
            let wire: WireEnvelope =
                serde_json::from_str(v.get()).map_err(|e| bad("malformed", e.to_string()))?;
            let ev = ClientEvent::from_wire(&wire).map_err(|e| bad(e.code(), e.to_string()))?;
            ev.event
                .validate_for_store(store)
                .map_err(|e| bad(e.code(), e.to_string()))?;
            check_numbers(&ev).map_err(|m| bad("invalid_field", m))?;
            Ok(ev)
        })
        .collect()
}

/// Numbers the database stores as signed 64-bit values (every real one is far below).
fn check_numbers(ev: &ClientEvent) -> Result<(), String> {
    const MAX: u64 = i64::MAX as u64;
    let times = match &ev.event {
        FileEvent::Created(c) => vec![c.created_at.0, c.updated_at.0],
        FileEvent::Updated(u) => vec![u.updated_at.0],
        FileEvent::Deleted(d) => vec![d.deleted_at.0],
        _ => vec![],
    };
    if ev.id.n > MAX {
        return Err(format!("id.n {} exceeds {MAX}", ev.id.n));
    }
    match times.into_iter().find(|t| *t > MAX) {
        Some(t) => Err(format!("timestamp {t} exceeds {MAX}")),
        None => Ok(()),
    }
}

fn envelopes(events: &[ConfirmedEvent]) -> Vec<WireEnvelope> {
    events.iter().map(ConfirmedEvent::to_wire).collect()
}

async fn push(
    State(state): Shared,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let allowed = authorize(&state, &headers)?;
    let store = store_id(&store)?;
    allowed.check_store(store.as_str())?;
    let events = decode_push(&store, &body_bytes(body, MAX_EVENTS_BODY)?)?;
    if events.is_empty() {
        return Ok(Json(json!({"events": []})));
    }
    let slot = state.stores.slot(&store);
    let _serialized = slot.lock.lock().await;
    // Blob presence for every attach in the request, checked by the event store where a
    // delete cannot slip between this check and the store (see `crate::events`). Only for
    // blobs kept here: another signer's are taken on trust (this server cannot see them).
    let (blobs, owner) = (state.blobs.clone(), store.clone());
    let absent = move |wanted: BTreeSet<ContentHash>| {
        let (blobs, owner) = (blobs.clone(), owner.clone());
        async move {
            let mut absent = BTreeSet::new();
            let Some(blobs) = blobs else {
                return Ok(absent);
            };
            for hash in wanted {
                let key = BlobKey {
                    store: owner.clone(),
                    hash,
                };
                if !blobs.is_present(&key).await? {
                    absent.insert(hash);
                }
            }
            Ok(absent)
        }
        .boxed()
    };
    let result = state.events.push(&store, &events, &absent).await?;
    if let (Some(first), Some(last)) = (result.new.first(), result.new.last()) {
        tracing::info!(store = %store, first = first.seq.0, last = last.seq.0, "events stored");
        if slot.broadcast(&result.new).is_some() {
            // Batches of other instances are missing before this one (see `crate::relay`).
            crate::relay::fill_gaps(state.clone(), store.clone(), slot.clone());
        }
    }
    drop(_serialized);
    Ok(Json(json!({"events": envelopes(&result.events)})))
}

#[derive(Deserialize)]
struct PullQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

async fn pull(
    State(state): Shared,
    Path(store): Path<String>,
    headers: HeaderMap,
    query: Result<Query<PullQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let allowed = authorize(&state, &headers)?;
    let store = store_id(&store)?;
    allowed.check_store(store.as_str())?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_PULL_LIMIT)
        .clamp(1, MAX_PULL_LIMIT);
    let mut events = state
        .events
        .pull(&store, Seq(q.after.min(i64::MAX as u64)), limit + 1)
        .await?;
    let has_more = events.len() > limit;
    events.truncate(limit);
    Ok(Json(
        json!({"events": envelopes(&events), "hasMore": has_more}),
    ))
}

#[derive(Deserialize)]
struct LiveQuery {
    #[serde(default)]
    after: Option<u64>,
}

async fn live(
    State(state): Shared,
    Path(store): Path<String>,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let allowed = authorize(&state, &headers)?;
    let store = store_id(&store)?;
    allowed.check_store(store.as_str())?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let after = q
        .after
        .or_else(|| {
            headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    // Subscribe before reading the head, so no batch stored in between is missed.
    let slot = state.stores.slot(&store);
    let rx = slot.live.subscribe();
    let head = state.events.head(&store).await?;
    // The subscriber pulls up to the head: the first subscriber's head is where the store's
    // live sequence starts.
    slot.note_subscribed(head.0);
    let ready = Event::default()
        .event("ready")
        .data(json!({"head": head.0}).to_string());
    let batches = live_batches(rx, after, state.shutdown.clone(), store);
    let events = stream::once(async move { ready })
        .chain(batches)
        .map(Ok::<_, std::convert::Infallible>);
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.ping_interval).text("ping"))
        .into_response();
    resp.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(resp)
}

/// The `events` messages of the batches `rx` receives (events after `after` only). Ends at
/// shutdown, and when the subscriber lagged (missed batches): the client then reconnects and
/// pulls, instead of silently missing events.
fn live_batches(
    rx: tokio::sync::broadcast::Receiver<Arc<LiveBatch>>,
    after: u64,
    shutdown: tokio_util::sync::CancellationToken,
    store: StoreId,
) -> impl futures_util::Stream<Item = Event> {
    stream::unfold((rx, shutdown), move |(mut rx, shutdown)| {
        let store = store.clone();
        async move {
            loop {
                let batch = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    r = rx.recv() => r,
                };
                match batch {
                    Ok(batch) => {
                        if let Some(ev) = live_event(&batch, after) {
                            return Some((ev, (rx, shutdown)));
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::info!(%store, skipped = n, "live subscriber lagged; closing its stream");
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

/// The `events` SSE message of a batch, with the events after `after` only.
fn live_event(batch: &LiveBatch, after: u64) -> Option<Event> {
    if batch.last_seq <= after {
        return None;
    }
    let data = if batch.first_seq > after {
        batch.data.clone()
    } else {
        let tail: Vec<&WireEnvelope> = batch
            .events
            .iter()
            .filter(|e| e.seq.is_some_and(|s| s > after))
            .collect();
        json!({ "events": tail }).to_string()
    };
    Some(
        Event::default()
            .event("events")
            .id(batch.last_seq.to_string())
            .data(data),
    )
}

/// JSON 404 for unknown paths when no static directory is served.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// How often live streams send a `: ping` comment by default.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast;
    use tokio_util::sync::CancellationToken;

    fn batch(seq: u64) -> Arc<LiveBatch> {
        Arc::new(LiveBatch {
            first_seq: seq,
            last_seq: seq,
            events: vec![],
            data: String::new(),
        })
    }

    #[tokio::test]
    async fn a_lagged_live_subscriber_has_its_stream_ended() {
        let store = StoreId::new("s").unwrap();
        let (tx, rx) = broadcast::channel(4);
        // Five batches into a channel of four before the subscriber reads: it lagged.
        for seq in 1..=5 {
            tx.send(batch(seq)).unwrap();
        }
        let lagged = live_batches(rx, 0, CancellationToken::new(), store.clone());
        // The sender is alive, so only the lag can end this stream (else it would wait).
        assert_eq!(lagged.collect::<Vec<_>>().await.len(), 0);

        // One that kept up gets every batch after its cursor, and ends with the channel.
        let rx = tx.subscribe();
        for seq in 6..=8 {
            tx.send(batch(seq)).unwrap();
        }
        drop(tx);
        let fine = live_batches(rx, 6, CancellationToken::new(), store);
        assert_eq!(fine.collect::<Vec<_>>().await.len(), 2);
    }
}
