//! The local byte store: file contents of one store, content-addressed by SHA-256.
//!
//! # Contract
//!
//! * An entry's name is the lowercase hex SHA-256 of its bytes, computed by this module while it
//!   reads the blob (a caller never names an entry). So an entry under a final name always holds
//!   exactly those bytes: **a crash, a quota error or a hash mismatch never leaves a partial or
//!   wrong entry under a final name.**
//! * Writing the same content twice keeps one entry. [`ByteStore::delete`] is idempotent.
//! * Memory stays bounded whatever the file size: blobs are read chunk by chunk through
//!   `blob.stream()` and hashed in the same pass ([`crate::web::hash`]); a blob is never read
//!   whole into wasm memory. Only blobs of at most
//!   [`WEBCRYPTO_MAX_BYTES`](crate::web::hash::WEBCRYPTO_MAX_BYTES) are read into one JS buffer,
//!   for WebCrypto's faster one-shot digest.
//! * Errors are [`WebError`]s classified by `DOMException.name`: a full disk is
//!   [`WebError::Quota`] (from `write`, with the temp removed), a missing entry
//!   [`WebError::NotFound`]. A download whose bytes do not match is [`WriteError::Mismatch`] and
//!   stores nothing.
//! * Works in a page, a dedicated worker and a SharedWorker (global scope only).
//!
//! # Backends
//!
//! [`ByteStore`] is an enum over the two implementations rather than a trait: there are exactly
//! two, the runtime picks one at open time, and async fns in a trait are not object-safe without
//! boxing every future, for no gain here.
//!
//! * [`OpfsStore`] (preferred): the Origin Private File System, layout
//!   `filesync/<storeId>/blobs/<sha256hex>` and `filesync/<storeId>/tmp/<name>`. A write streams
//!   into `tmp/` with `createWritable()` and is renamed into `blobs/` with
//!   `FileSystemHandle.move()`; browsers without `move()` write in place in two passes (details
//!   and the multi-tab rules in [`opfs`](OpfsStore)).
//! * [`IdbBlobStore`] (fallback where OPFS is unavailable): its own IndexedDB database
//!   `filesync-bytes:<storeId>`, one object store `blobs` (key: hex hash, value: the `Blob`
//!   itself, never copied through wasm memory). The hash is computed by streaming the blob first;
//!   the entry is then put in one transaction, which is atomic, so there are no temp entries.
//!
//! [`ByteStore::open`] falls back to IndexedDB only when OPFS is *unavailable* (the API or
//! `createWritable()` is missing, or it is refused by policy, e.g. private browsing): any other
//! OPFS failure is returned as an error, because silently switching backend would make every
//! stored file look missing. Known limitation: a browser that gains OPFS later (an upgrade) opens
//! a fresh OPFS store and does not see what it stored in the IndexedDB fallback before.
//!
//! Quota is not tested for real (headless Chromium gives an origin ~10 GiB and no web API lowers
//! it); the failure path it takes is the one of any failed write, which is tested.

mod idb;
mod opfs;

pub use idb::IdbBlobStore;
pub use opfs::OpfsStore;

use std::fmt;

use std::rc::Rc;

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::error::WebError;
use super::global;
use crate::core::{ContentHash, StoreId};

/// Which implementation a [`ByteStore`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// Origin Private File System.
    Opfs,
    /// The IndexedDB fallback.
    IndexedDb,
}

impl StoreKind {
    /// `"opfs"` or `"indexeddb"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Opfs => "opfs",
            StoreKind::IndexedDb => "indexeddb",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failure of [`ByteStore::write_expected`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The browser failed (quota, unavailable storage...).
    Web(WebError),
    /// The bytes do not hash to what was expected (a corrupt or wrong download). Nothing was
    /// stored, under either name.
    Mismatch {
        expected: ContentHash,
        actual: ContentHash,
    },
}

impl WriteError {
    /// Stable machine-readable code: the [`WebError`]'s, or `hash_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::Web(e) => e.code(),
            WriteError::Mismatch { .. } => "hash_mismatch",
        }
    }
}

impl From<WebError> for WriteError {
    fn from(e: WebError) -> WriteError {
        WriteError::Web(e)
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Web(e) => e.fmt(f),
            WriteError::Mismatch { expected, actual } => write!(
                f,
                "content hash mismatch: expected {expected}, got {actual}; nothing stored"
            ),
        }
    }
}

impl std::error::Error for WriteError {}

/// What [`ByteStore::list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Entries, sorted.
    pub hashes: Vec<ContentHash>,
    /// Names that are not 64 lowercase hex characters (a browser's swap files such as
    /// `<name>.crswap`, or foreign files): not entries, left alone, reported for diagnostics.
    pub ignored: Vec<String>,
}

/// Origin-wide storage figures from `navigator.storage.estimate()` (both backends share the
/// origin's quota; browsers do not report one store's share).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Bytes used by the whole origin.
    pub usage: f64,
    /// Bytes the origin may use.
    pub quota: f64,
}

/// The byte store of one store id, on OPFS or on the IndexedDB fallback.
#[derive(Debug)]
#[non_exhaustive]
pub enum ByteStore {
    Opfs(OpfsStore),
    Idb(IdbBlobStore),
}

impl ByteStore {
    /// Opens the store on OPFS, or on IndexedDB where OPFS is unavailable (see the module docs
    /// for why only then). Removes temp leftovers of earlier sessions.
    pub async fn open(store: &StoreId) -> Result<ByteStore, WebError> {
        match OpfsStore::open(store).await {
            Ok(s) => Ok(ByteStore::Opfs(s)),
            Err(WebError::Unavailable { .. }) => Self::open_idb(store).await,
            Err(e) => Err(e),
        }
    }

    /// Opens the store on OPFS, with no fallback.
    pub async fn open_opfs(store: &StoreId) -> Result<ByteStore, WebError> {
        OpfsStore::open(store).await.map(ByteStore::Opfs)
    }

    /// Opens the store on the IndexedDB fallback, whether OPFS exists or not.
    pub async fn open_idb(store: &StoreId) -> Result<ByteStore, WebError> {
        IdbBlobStore::open(store).await.map(ByteStore::Idb)
    }

    /// Which implementation this is.
    pub fn kind(&self) -> StoreKind {
        match self {
            ByteStore::Opfs(_) => StoreKind::Opfs,
            ByteStore::Idb(_) => StoreKind::IndexedDb,
        }
    }

    /// The store id.
    pub fn store_id(&self) -> &StoreId {
        match self {
            ByteStore::Opfs(s) => s.store_id(),
            ByteStore::Idb(s) => s.store_id(),
        }
    }

    /// Stores `blob` under its SHA-256 and returns it (streamed and hashed in one pass).
    pub async fn write(&self, blob: &web_sys::Blob) -> Result<ContentHash, WebError> {
        let result = match self {
            ByteStore::Opfs(s) => s.write(blob, None).await,
            ByteStore::Idb(s) => s.write(blob, None).await,
        };
        result.map_err(|e| match e {
            WriteError::Web(e) => e,
            // Unreachable without an expected hash; kept total rather than panicking.
            WriteError::Mismatch { .. } => WebError::Other {
                name: "HashMismatch".into(),
                message: e.to_string(),
            },
        })
    }

    /// Stores `blob` only if it hashes to `expected` (downloads). On a mismatch nothing is
    /// stored, under either name, and the error carries the actual hash.
    pub async fn write_expected(
        &self,
        blob: &web_sys::Blob,
        expected: ContentHash,
    ) -> Result<ContentHash, WriteError> {
        match self {
            ByteStore::Opfs(s) => s.write(blob, Some(expected)).await,
            ByteStore::Idb(s) => s.write(blob, Some(expected)).await,
        }
    }

    /// Stores a byte stream (a download's body) only if it hashes to `expected`, hashing while
    /// writing; `progress` gets the content's bytes so far after each chunk. On a mismatch
    /// nothing is stored. The stream is consumed (or cancelled on failure).
    ///
    /// `from`: the stream holds the content after its first `from` bytes, which a partial file
    /// holds (what [`Self::held`] answered; 0: the whole content). On a failure other than a
    /// mismatch, what was written stays for the next attempt.
    pub async fn write_stream(
        &self,
        stream: &web_sys::ReadableStream,
        expected: ContentHash,
        from: u64,
        progress: Rc<dyn Fn(u64)>,
    ) -> Result<ContentHash, WriteError> {
        match self {
            ByteStore::Opfs(s) => s.write_stream(stream, expected, from, progress).await,
            ByteStore::Idb(_) if from > 0 => Err(WriteError::Web(WebError::Other {
                name: "InvalidStateError".into(),
                message: "the IndexedDB byte store cannot resume a download".into(),
            })),
            ByteStore::Idb(s) => s.write_stream(stream, expected, &*progress).await,
        }
    }

    /// How many bytes of `hash`'s content an interrupted download left, for the next one to
    /// resume after (0: none, or this store cannot resume: see the OPFS module docs).
    pub async fn held(&self, hash: &ContentHash) -> u64 {
        match self {
            ByteStore::Opfs(s) => s.held(hash).await,
            ByteStore::Idb(_) => 0,
        }
    }

    /// Drops what an interrupted download of `hash` left (the next one starts over).
    pub async fn discard_partial(&self, hash: &ContentHash) {
        if let ByteStore::Opfs(s) = self {
            s.discard_partial(hash).await;
        }
    }

    /// The bytes stored under `hash`; [`WebError::NotFound`] when there are none.
    pub async fn read(&self, hash: &ContentHash) -> Result<web_sys::Blob, WebError> {
        match self {
            ByteStore::Opfs(s) => s.read(hash).await,
            ByteStore::Idb(s) => s.read(hash).await,
        }
    }

    /// Whether an entry for `hash` exists.
    pub async fn has(&self, hash: &ContentHash) -> Result<bool, WebError> {
        match self {
            ByteStore::Opfs(s) => s.has(hash).await,
            ByteStore::Idb(s) => s.has(hash).await,
        }
    }

    /// Removes the entry for `hash`; removing a missing entry succeeds.
    pub async fn delete(&self, hash: &ContentHash) -> Result<(), WebError> {
        match self {
            ByteStore::Opfs(s) => s.delete(hash).await,
            ByteStore::Idb(s) => s.delete(hash).await,
        }
    }

    /// Every entry, sorted, plus the names that are not entries.
    pub async fn list(&self) -> Result<Listing, WebError> {
        match self {
            ByteStore::Opfs(s) => s.list().await,
            ByteStore::Idb(s) => s.list().await,
        }
    }

    /// Removes temp leftovers of interrupted writes; returns how many it removed. Temps that
    /// another tab is still writing are locked by the browser and skipped. The IndexedDB
    /// fallback has no temps.
    pub async fn cleanup_temp(&self) -> Result<u32, WebError> {
        match self {
            ByteStore::Opfs(s) => s.cleanup_temp().await,
            ByteStore::Idb(_) => Ok(0),
        }
    }

    /// Origin-wide usage and quota.
    pub async fn usage(&self) -> Result<Usage, WebError> {
        usage().await
    }

    /// Deletes the whole store (every entry and temp; the IndexedDB database itself). For
    /// "clear local data" and tests.
    pub async fn destroy(self) -> Result<(), WebError> {
        match self {
            ByteStore::Opfs(s) => s.destroy().await,
            ByteStore::Idb(s) => s.destroy().await,
        }
    }
}

/// Calls one method of `navigator.storage` (`api` names it in errors) and awaits its answer.
async fn ask_storage(
    api: &'static str,
    call: impl FnOnce(&web_sys::StorageManager) -> Result<js_sys::Promise, JsValue>,
) -> Result<JsValue, WebError> {
    let promise = call(&global::storage_manager()?).map_err(|e| WebError::from_js(api, &e))?;
    JsFuture::from(promise)
        .await
        .map_err(|e| WebError::from_js(api, &e))
}

/// `navigator.storage.estimate()`.
pub async fn usage() -> Result<Usage, WebError> {
    let api = "navigator.storage.estimate";
    let estimate = ask_storage(api, |s| s.estimate()).await?;
    let number = |key: &str| -> Result<f64, WebError> {
        js_sys::Reflect::get(&estimate, &JsValue::from_str(key))
            .map(|v| v.as_f64().unwrap_or(0.0))
            .map_err(|e| WebError::from_js(api, &e))
    };
    Ok(Usage {
        usage: number("usage")?,
        quota: number("quota")?,
    })
}

/// `navigator.storage.persisted()`: whether the browser keeps this origin's data under
/// storage pressure instead of evicting it.
pub async fn persisted() -> Result<bool, WebError> {
    let answer = ask_storage("navigator.storage.persisted", |s| s.persisted()).await?;
    Ok(answer.as_bool().unwrap_or(false))
}

/// `navigator.storage.persist()`: asks the browser to keep this origin's data under storage
/// pressure. Resolves to whether it does now (the browser decides; window contexts only).
pub async fn persist() -> Result<bool, WebError> {
    let answer = ask_storage("navigator.storage.persist", |s| s.persist()).await?;
    Ok(answer.as_bool().unwrap_or(false))
}

/// Shared by both backends: checks a computed hash against the expected one.
fn check_expected(actual: ContentHash, expected: Option<ContentHash>) -> Result<(), WriteError> {
    match expected {
        Some(expected) if expected != actual => Err(WriteError::Mismatch { expected, actual }),
        _ => Ok(()),
    }
}

/// Reads a byte stream into one in-memory blob (for stores that can only take blobs).
async fn gather(
    stream: &web_sys::ReadableStream,
    progress: &dyn Fn(u64),
) -> Result<web_sys::Blob, WebError> {
    let mut chunks = crate::web::hash::BlobChunks::of_stream(stream)?;
    let parts = js_sys::Array::new();
    let mut loaded = 0u64;
    while let Some(chunk) = chunks.next().await? {
        // The reader reuses the chunk's memory: keep a copy.
        parts.push(&chunk.slice(0, chunk.length()));
        loaded += u64::from(chunk.length());
        progress(loaded);
    }
    web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(|e| WebError::from_js("Blob", &e))
}
