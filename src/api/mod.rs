//! The `#[wasm_bindgen]` surface of the npm package: the `FileSync` class used by tabs and the
//! `Hub` class run by the SharedWorker script. Thin: every method forwards to the runtime and
//! turns its typed errors into JS `Error`s with `code` and `retryable`. The package's
//! `index.d.ts` gives the precise TypeScript types of what these return.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

pub mod js;

use crate::runtime::protocol::{Control, ErrorInfo};
use crate::runtime::tab::{OpenOptions, StorageInfo, Tab};
use crate::web::hash::StreamingHasher;
use js::{from_js, js_error, metadata_json, object, options_with_metadata, to_js};

/// The hub a SharedWorker runs (`filesync-worker.js`): one per store, handed every connecting
/// port. Not part of the documented API.
#[wasm_bindgen(js_name = Hub)]
#[derive(Default)]
pub struct WorkerHub(crate::runtime::hub::Hub);

#[wasm_bindgen(js_class = Hub)]
impl WorkerHub {
    /// An idle hub; it starts when the first tab says hello.
    #[wasm_bindgen(constructor)]
    pub fn new() -> WorkerHub {
        WorkerHub(crate::runtime::hub::Hub::new())
    }

    /// Serves a tab's port (from the SharedWorker's `connect` event).
    pub fn connect(&self, port: web_sys::MessagePort) {
        self.0.connect(port);
    }
}

pub use crate::runtime::hub::Hub;

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn reject(e: ErrorInfo) -> JsValue {
    js_error(&e)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SaveOptions {
    #[serde(default)]
    path: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadOptions {
    /// Another content of the file than its current one (the losing side of a conflict).
    #[serde(default)]
    content_hash: Option<String>,
}

fn read_options(options: JsValue) -> Result<ReadOptions, ErrorInfo> {
    if options.is_undefined() || options.is_null() {
        return Ok(ReadOptions::default());
    }
    from_js(&options)
}

/// Save or update options: the members other than `metadata`, and the metadata as JSON text.
fn save_options(options: &JsValue) -> Result<(SaveOptions, Option<String>), ErrorInfo> {
    let (parsed, metadata) = options_with_metadata(options)?;
    Ok((parsed, metadata_json(&metadata)?))
}

fn storage_info_js(info: &StorageInfo) -> JsValue {
    let out = object(&[
        ("usage", JsValue::from_f64(info.usage)),
        ("quota", JsValue::from_f64(info.quota)),
        ("persisted", JsValue::from_bool(info.persisted)),
        ("kind", JsValue::from_str(&info.kind)),
    ]);
    // `budget`, `held`, `evictable` as the hub answered them.
    let target: &js_sys::Object = out.unchecked_ref();
    js_sys::Object::assign(target, info.budget.unchecked_ref()).into()
}

/// Incremental SHA-256 for the package's hash worker (`filesync-worker.js` started as a
/// dedicated worker hashes large saves and downloads off the tab's thread). Not part of the
/// documented API.
#[wasm_bindgen]
#[derive(Default)]
pub struct Sha256Stream(StreamingHasher);

#[wasm_bindgen]
impl Sha256Stream {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256Stream {
        Sha256Stream::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest, as 64 lowercase hex characters.
    pub fn finish(self) -> String {
        self.0.finish().to_hex()
    }
}

/// A store opened in this tab.
#[wasm_bindgen]
pub struct FileSync {
    tab: Tab,
}

#[wasm_bindgen]
impl FileSync {
    /// Opens a store: `{storeId, workerUrl, remote?, progressThrottleMs?, maxUploads?,
    /// maxDownloads?, hub?}` where `remote` is `false` (local-only, the default) or `{baseUrl?,
    /// syncUrl?, authToken?, headers?, includeCredentials?, requestTimeoutMs?}` (see
    /// `www/index.d.ts`). Resolves to a `FileSync` once the hub answered.
    pub fn open(options: JsValue) -> js_sys::Promise {
        console_error_panic_hook::set_once();
        future_to_promise(async move {
            let options: OpenOptions = from_js(&options).map_err(reject)?;
            let tab = Tab::open(options).await.map_err(reject)?;
            Ok(FileSync { tab }.into())
        })
    }

    /// Saves a new file: stores its bytes here (hashing them on the way), records it, and
    /// resolves to the file once durable. `options`: `{path?, metadata?}`.
    #[wasm_bindgen(js_name = saveFile)]
    pub fn save_file(&self, file: web_sys::File, options: JsValue) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let (opts, metadata) = save_options(&options).map_err(reject)?;
            tab.save(file, opts.path, metadata).await.map_err(reject)
        })
    }

    /// Replaces a file's content; `options`: `{metadata?}` (omitted keeps it).
    #[wasm_bindgen(js_name = updateFile)]
    pub fn update_file(
        &self,
        id: String,
        file: web_sys::File,
        options: JsValue,
    ) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let (_, metadata) = save_options(&options).map_err(reject)?;
            tab.update(&id, file, metadata).await.map_err(reject)
        })
    }

    /// Deletes a file.
    #[wasm_bindgen(js_name = deleteFile)]
    pub fn delete_file(&self, id: String) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            tab.delete(&id).await.map_err(reject)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The file's bytes as a `File` with its original name and type; `options`:
    /// `{contentHash?}` reads another content of the file still held here (the losing side of
    /// a conflict).
    #[wasm_bindgen(js_name = readFile)]
    pub fn read_file(&self, id: String, options: JsValue) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let opts = read_options(options).map_err(reject)?;
            let file = tab.read(&id, opts.content_hash.as_deref()).await;
            Ok(file.map_err(reject)?.into())
        })
    }

    /// An object URL for the file, cached per content and revoked when no longer needed.
    #[wasm_bindgen(js_name = resolveFileUrl)]
    pub fn resolve_file_url(&self, id: String) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(
            async move { Ok(JsValue::from_str(&tab.url(&id).await.map_err(reject)?)) },
        )
    }

    /// Revokes the object URL `resolveFileUrl` made for the file's current content in this
    /// tab: call it when the app no longer shows it. Content an object URL shows is never
    /// evicted by the byte budget.
    #[wasm_bindgen(js_name = releaseFileUrl)]
    pub fn release_file_url(&self, id: String) -> Result<(), JsValue> {
        self.tab.release_url(&id).map_err(reject)
    }

    /// Every live file.
    #[wasm_bindgen(js_name = getFiles)]
    pub fn get_files(&self) -> JsValue {
        self.tab.files_js().into()
    }

    /// One file, or `undefined`.
    #[wasm_bindgen(js_name = getFile)]
    pub fn get_file(&self, id: String) -> JsValue {
        self.tab.file_js(&id)
    }

    /// The aggregate sync status.
    #[wasm_bindgen(js_name = getSyncStatus)]
    pub fn get_sync_status(&self) -> JsValue {
        self.tab.status()
    }

    /// Calls `listener()` after every change; returns a function that unsubscribes.
    pub fn subscribe(&self, listener: js_sys::Function) -> js_sys::Function {
        let id = self.tab.subscribe(listener);
        let tab = self.tab.clone();
        Closure::once_into_js(move || tab.remove_listener(id)).into()
    }

    /// Calls `listener(event)` for events of `type` (`"*"` for all); returns a function that
    /// unsubscribes.
    pub fn on(&self, kind: String, listener: js_sys::Function) -> js_sys::Function {
        let id = self.tab.on(kind, listener);
        let tab = self.tab.clone();
        Closure::once_into_js(move || tab.remove_listener(id)).into()
    }

    fn control(&self, control: Control) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            tab.control(control).await.map_err(reject)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Moves the file's download to the front of the queue.
    #[wasm_bindgen(js_name = prioritizeDownload)]
    pub fn prioritize_download(&self, id: String) -> js_sys::Promise {
        self.control(Control::Prioritize { file_id: id })
    }

    /// Keeps the file available offline in this browser, whatever the downloads policy: its
    /// bytes download now if they are not here.
    pub fn pin(&self, id: String) -> js_sys::Promise {
        self.control(Control::Pin {
            file_id: id,
            pinned: true,
        })
    }

    /// Undoes `pin` (the bytes stay until the byte budget evicts them).
    pub fn unpin(&self, id: String) -> js_sys::Promise {
        self.control(Control::Pin {
            file_id: id,
            pinned: false,
        })
    }

    /// Queues the downloads of these remote-only files, not urgently (evicted ones stay
    /// remote). Not part of the documented API: `openFileSync`'s `downloads` function uses it.
    #[wasm_bindgen(js_name = wantDownloads)]
    pub fn want_downloads(&self, ids: Vec<String>) -> js_sys::Promise {
        self.control(Control::Want(ids))
    }

    /// Stops the file's transfers (they end in `error` with code `cancelled`).
    pub fn cancel(&self, id: String) -> js_sys::Promise {
        self.control(Control::Cancel { file_id: id })
    }

    /// Re-queues every failed transfer.
    #[wasm_bindgen(js_name = retryErrors)]
    pub fn retry_errors(&self) -> js_sys::Promise {
        self.control(Control::RetryErrors)
    }

    /// Syncs now: ends retry waits and probes the connection.
    #[wasm_bindgen(js_name = syncNow)]
    pub fn sync_now(&self) -> js_sys::Promise {
        self.control(Control::SyncNow)
    }

    /// Stops starting transfers and aborts running ones.
    pub fn pause(&self) -> js_sys::Promise {
        self.control(Control::Pause)
    }

    /// Undoes `pause`.
    pub fn resume(&self) -> js_sys::Promise {
        self.control(Control::Resume)
    }

    /// The hub engine's recent events for debugging (what happened before a bug report),
    /// oldest first: `[{at, event}]`, `at` in ms since the epoch. Up to 256, progress left out,
    /// shared by the tabs of the store, in memory only.
    #[wasm_bindgen(js_name = getHistory)]
    pub fn get_history(&self) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move { tab.history().await.map_err(reject) })
    }

    /// Resolves once the hub has loaded the store's whole state from storage (storage issues
    /// known, transfers recovered). `open` can resolve before, showing the files as the last
    /// hub saved them; the loaded state follows through `subscribe`.
    #[wasm_bindgen(js_name = whenLoaded)]
    pub fn when_loaded(&self) -> js_sys::Promise {
        self.tab.when_loaded()
    }

    /// Resolves once everything made in this browser is on the server (see `index.d.ts`).
    #[wasm_bindgen(js_name = whenSynced)]
    pub fn when_synced(&self) -> js_sys::Promise {
        self.tab.when_synced()
    }

    /// Whether the hub has loaded the store's state (see `whenLoaded`).
    #[wasm_bindgen(js_name = isLoaded)]
    pub fn is_loaded(&self) -> bool {
        self.tab.is_loaded()
    }

    /// Whether the server is believed reachable (the hub decides; `online` / `offline` events
    /// report changes). Always true for a local-only store.
    #[wasm_bindgen(js_name = isOnline)]
    pub fn is_online(&self) -> bool {
        self.tab.is_online()
    }

    /// Whether this tab is the leader.
    #[wasm_bindgen(js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        self.tab.is_leader()
    }

    /// The leader tab's id, or `undefined`.
    #[wasm_bindgen(js_name = leaderTabId)]
    pub fn leader_tab_id(&self) -> Option<String> {
        self.tab.leader()
    }

    /// Whether this tab hosts the hub (only with `hub: "tab"`, or where SharedWorker is
    /// missing).
    #[wasm_bindgen(js_name = hostsHub)]
    pub fn hosts_hub(&self) -> bool {
        self.tab.hosts_hub()
    }

    /// This tab's id.
    #[wasm_bindgen(js_name = tabId)]
    pub fn tab_id(&self) -> String {
        self.tab.id()
    }

    /// Stored records skipped at start because they were broken: `[{table, key, code,
    /// message}]`. The rest of the state loaded.
    #[wasm_bindgen(js_name = getStorageIssues)]
    pub fn get_storage_issues(&self) -> JsValue {
        to_js(&self.tab.issues())
    }

    /// `{usage, quota, persisted, kind}`: the bytes the origin uses and may use (the whole
    /// origin, as `navigator.storage.estimate()` reports it), whether the browser keeps its data
    /// under storage pressure (`navigator.storage.persisted()`), and where this store's bytes
    /// live (`"opfs"` or `"indexeddb"`).
    #[wasm_bindgen(js_name = getStorageInfo)]
    pub fn get_storage_info(&self) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let info = tab.storage_info().await.map_err(reject)?;
            Ok(storage_info_js(&info))
        })
    }

    /// Asks the browser to keep this origin's data under storage pressure
    /// (`navigator.storage.persist()`): files not uploaded yet exist only in this browser.
    /// Resolves to whether it is kept now; the browser decides (Chromium by how the site is
    /// used, Firefox by asking the user).
    #[wasm_bindgen(js_name = requestPersistence)]
    pub fn request_persistence(&self) -> js_sys::Promise {
        let tab = self.tab.clone();
        future_to_promise(async move {
            let kept = tab.request_persistence().await.map_err(reject)?;
            Ok(JsValue::from_bool(kept))
        })
    }

    /// Where bytes live: `"opfs"` or `"indexeddb"`.
    #[wasm_bindgen(js_name = storageKind)]
    pub fn storage_kind(&self) -> String {
        self.tab.storage()
    }

    /// Leaves the store in this tab; later calls fail with code `disposed`.
    pub fn dispose(&self) {
        self.tab.dispose();
    }
}
