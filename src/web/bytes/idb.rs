//! The byte store on IndexedDB, for browsers or modes without a usable OPFS.
//!
//! One database per store, `filesync-bytes:<storeId>`, version 1, one object store `blobs`:
//! key = lowercase hex SHA-256, value = the `Blob` itself (IndexedDB keeps blobs in its own blob
//! storage; nothing is copied through wasm memory). A write hashes the blob by streaming it (or
//! WebCrypto for small blobs), checks the expected hash, then puts it in one readwrite
//! transaction and waits for `complete`: a transaction is atomic, so a crash or a quota error
//! (`QuotaExceededError` aborts the transaction) leaves no entry at all, and there are no temps.
//!
//! This database is separate from the engine's own IndexedDB database on purpose: large blob
//! writes never hold up the event log's transactions, and it can be dropped on its own.

use std::fmt;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbRequest, IdbTransaction, IdbTransactionMode};

use super::{check_expected, Listing, WriteError};
use crate::core::{ContentHash, StoreId};
use crate::web::error::WebError;
use crate::web::{global, hash};

const API: &str = "indexedDB";
const OBJECT_STORE: &str = "blobs";
const VERSION: u32 = 1;

/// The byte store of one store id on IndexedDB. Closes its connection when dropped, and when
/// another connection asks for a version change (so deleting or upgrading is never blocked).
pub struct IdbBlobStore {
    store: StoreId,
    db: IdbDatabase,
    _on_version_change: Closure<dyn FnMut()>,
}

impl fmt::Debug for IdbBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdbBlobStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Drop for IdbBlobStore {
    fn drop(&mut self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// The database name of `store`'s byte store.
pub fn database_name(store: &StoreId) -> String {
    format!("filesync-bytes:{store}")
}

impl IdbBlobStore {
    /// Opens (creating) the database `filesync-bytes:<store>`.
    pub async fn open(store: &StoreId) -> Result<IdbBlobStore, WebError> {
        let factory = global::indexed_db()?;
        let request = factory
            .open_with_u32(&database_name(store), VERSION)
            .map_err(|e| WebError::from_js(API, &e))?;
        let upgrade_request = request.clone();
        let on_upgrade = Closure::<dyn FnMut()>::new(move || {
            // Runs inside the versionchange transaction; an exception here aborts the open,
            // which then fails with the transaction's error.
            if let Ok(db) = upgrade_request.result() {
                let db: IdbDatabase = db.unchecked_into();
                if !db.object_store_names().contains(OBJECT_STORE) {
                    let _ = db.create_object_store(OBJECT_STORE);
                }
            }
        });
        request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let opened = await_request(&request).await;
        request.set_onupgradeneeded(None);
        drop(on_upgrade);
        let db: IdbDatabase = opened?.dyn_into().map_err(|v| WebError::Other {
            name: "TypeError".into(),
            message: format!("open gave {v:?}"),
        })?;
        if !db.object_store_names().contains(OBJECT_STORE) {
            db.close();
            return Err(WebError::Version {
                message: format!("{} has no '{OBJECT_STORE}' store", database_name(store)),
            });
        }
        let closing = db.clone();
        let on_version_change = Closure::<dyn FnMut()>::new(move || closing.close());
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(IdbBlobStore {
            store: store.clone(),
            db,
            _on_version_change: on_version_change,
        })
    }

    /// The store id.
    pub fn store_id(&self) -> &StoreId {
        &self.store
    }

    fn transaction(&self, mode: IdbTransactionMode) -> Result<IdbTransaction, WebError> {
        self.db
            .transaction_with_str_and_mode(OBJECT_STORE, mode)
            .map_err(|e| WebError::from_js(API, &e))
    }

    pub(super) async fn write(
        &self,
        blob: &web_sys::Blob,
        expected: Option<ContentHash>,
    ) -> Result<ContentHash, WriteError> {
        let hash = hash::hash_blob(blob).await?;
        check_expected(hash, expected)?;
        if self.has(&hash).await? {
            return Ok(hash);
        }
        // A concurrent writer of the same content may put it too: same key, same bytes.
        let tx = self.transaction(IdbTransactionMode::Readwrite)?;
        let done = TxDone::new(&tx)?;
        let put = object_store(&tx)?
            .put_with_key(blob, &JsValue::from_str(&hash.to_hex()))
            .map_err(|e| WebError::from_js(API, &e));
        if let Err(e) = put {
            let _ = tx.abort();
            return Err(e.into());
        }
        done.wait().await?;
        Ok(hash)
    }

    /// Stores a byte stream (a download) if it hashes to `expected`. IndexedDB stores blobs,
    /// so the stream is gathered into one first: this fallback holds a download in memory.
    pub(super) async fn write_stream(
        &self,
        stream: &web_sys::ReadableStream,
        expected: ContentHash,
        progress: &dyn Fn(u64),
    ) -> Result<ContentHash, WriteError> {
        let blob = super::gather(stream, progress).await?;
        self.write(&blob, Some(expected)).await
    }

    pub(super) async fn read(&self, hash: &ContentHash) -> Result<web_sys::Blob, WebError> {
        let tx = self.transaction(IdbTransactionMode::Readonly)?;
        let hex = hash.to_hex();
        let request = object_store(&tx)?
            .get(&JsValue::from_str(&hex))
            .map_err(|e| WebError::from_js(API, &e))?;
        let value = await_request(&request).await?;
        if value.is_undefined() {
            return Err(WebError::NotFound {
                message: format!("no entry {hex}"),
            });
        }
        value.dyn_into().map_err(|v| WebError::Other {
            name: "TypeError".into(),
            message: format!("entry {hex} is not a Blob: {v:?}"),
        })
    }

    pub(super) async fn has(&self, hash: &ContentHash) -> Result<bool, WebError> {
        let tx = self.transaction(IdbTransactionMode::Readonly)?;
        let request = object_store(&tx)?
            .count_with_key(&JsValue::from_str(&hash.to_hex()))
            .map_err(|e| WebError::from_js(API, &e))?;
        Ok(await_request(&request).await?.as_f64().unwrap_or(0.0) > 0.0)
    }

    pub(super) async fn delete(&self, hash: &ContentHash) -> Result<(), WebError> {
        let tx = self.transaction(IdbTransactionMode::Readwrite)?;
        let done = TxDone::new(&tx)?;
        // Deleting a missing key succeeds in IndexedDB: idempotent as is.
        object_store(&tx)?
            .delete(&JsValue::from_str(&hash.to_hex()))
            .map_err(|e| WebError::from_js(API, &e))?;
        done.wait().await
    }

    pub(super) async fn list(&self) -> Result<Listing, WebError> {
        let tx = self.transaction(IdbTransactionMode::Readonly)?;
        let request = object_store(&tx)?
            .get_all_keys()
            .map_err(|e| WebError::from_js(API, &e))?;
        let keys: js_sys::Array = await_request(&request).await?.unchecked_into();
        let mut listing = Listing::default();
        for key in keys.iter() {
            let name = key.as_string().unwrap_or_else(|| format!("{key:?}"));
            match ContentHash::parse(&name) {
                Ok(h) => listing.hashes.push(h),
                Err(_) => listing.ignored.push(name),
            }
        }
        crate::core::collections::sort(&mut listing.hashes);
        Ok(listing)
    }

    pub(super) async fn destroy(self) -> Result<(), WebError> {
        let name = database_name(&self.store);
        drop(self);
        let request = global::indexed_db()?
            .delete_database(&name)
            .map_err(|e| WebError::from_js(API, &e))?;
        await_request(&request).await.map(drop)
    }
}

fn object_store(tx: &IdbTransaction) -> Result<web_sys::IdbObjectStore, WebError> {
    tx.object_store(OBJECT_STORE)
        .map_err(|e| WebError::from_js(API, &e))
}

/// A promise and the two functions that settle it.
fn deferred() -> Result<(js_sys::Promise, js_sys::Function, js_sys::Function), WebError> {
    let mut settle = None;
    let promise = js_sys::Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    // The executor runs synchronously inside `new Promise`, so `settle` is always set.
    let (resolve, reject) = settle.ok_or_else(|| WebError::Other {
        name: "TypeError".into(),
        message: "Promise executor did not run".into(),
    })?;
    Ok((promise, resolve, reject))
}

/// Waits for `success` (the result) or `error` (the request's `DOMException`) of a request.
/// Handlers are removed when the wait ends or is dropped.
async fn await_request(request: &IdbRequest) -> Result<JsValue, WebError> {
    let (promise, resolve, reject) = deferred()?;
    let on_success = Closure::<dyn FnMut()>::new(move || {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    });
    let on_error = Closure::<dyn FnMut()>::new(move || {
        let _ = reject.call0(&JsValue::UNDEFINED);
    });
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let _guard = Handlers(|| {
        request.set_onsuccess(None);
        request.set_onerror(None);
    });
    match JsFuture::from(promise).await {
        Ok(_) => request.result().map_err(|e| WebError::from_js(API, &e)),
        Err(_) => Err(match request.error() {
            Ok(Some(e)) => WebError::from_js(API, &e),
            Ok(None) => WebError::Other {
                name: "UnknownError".into(),
                message: "request failed without an error".into(),
            },
            Err(e) => WebError::from_js(API, &e),
        }),
    }
}

/// Runs its function on drop: unhooks event handlers even when a wait is cancelled, so the
/// browser never calls a freed closure.
struct Handlers<F: FnMut()>(F);

impl<F: FnMut()> Drop for Handlers<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Completion of a transaction, hooked before its requests are issued so no event is missed.
struct TxDone {
    tx: IdbTransaction,
    promise: js_sys::Promise,
    _on_complete: Closure<dyn FnMut()>,
    _on_abort: Closure<dyn FnMut()>,
}

impl TxDone {
    fn new(tx: &IdbTransaction) -> Result<TxDone, WebError> {
        let (promise, resolve, reject) = deferred()?;
        let on_complete = Closure::<dyn FnMut()>::new(move || {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        });
        // `abort` follows every failed request that is not handled, and any explicit abort; the
        // error itself is read from `tx.error` afterwards.
        let on_abort = Closure::<dyn FnMut()>::new(move || {
            let _ = reject.call0(&JsValue::UNDEFINED);
        });
        tx.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
        tx.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
        Ok(TxDone {
            tx: tx.clone(),
            promise,
            _on_complete: on_complete,
            _on_abort: on_abort,
        })
    }

    /// `Ok` once the transaction committed; its error (e.g. `QuotaExceededError`) otherwise.
    async fn wait(self) -> Result<(), WebError> {
        match JsFuture::from(self.promise.clone()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(match self.tx.error() {
                Some(e) => WebError::from_js(API, &e),
                None => WebError::Aborted {
                    message: "transaction aborted".into(),
                },
            }),
        }
    }
}

impl Drop for TxDone {
    fn drop(&mut self) {
        self.tx.set_oncomplete(None);
        self.tx.set_onabort(None);
    }
}
