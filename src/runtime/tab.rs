//! A tab's side of the runtime: connects to the store's hub (a SharedWorker), keeps a replica
//! of the files and status the hub broadcasts, stores the bytes of saved files locally before
//! committing, runs the leader election, and calls the app's callbacks.
//!
//! App callbacks never run while the tab's state is borrowed: calls are collected and made
//! after, and a callback that throws is ignored, so the runtime cannot be broken by one.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde::Serialize;
use serde_json::value::RawValue;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::protocol::{
    channel_names, encode, host_lock_name, worker_name, AppEvent, Control, Envelope, ErrorInfo,
    HubConfig, StorageIssue, TabFile, ToHub, ToTab,
};
use crate::core::event::{
    check_path, FileCreated, FileDeleted, FileEvent, FileInfo, FileUpdated, MetadataPatch,
};
use crate::core::status::TransferStates;
use crate::core::{ContentHash, FileId, Millis, StoreId, SyncStatus};
use crate::web::bytes::ByteStore;
use crate::web::locks::{LeaderEvent, Leadership};

use super::remote::RemoteConfig;
use super::synced;
use super::transfer::Transfers;

/// `url` made absolute against this page (or worker) location; `None` if it is not a URL.
fn absolute_url(url: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    let base = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("location"))
        .ok()
        .and_then(|l| js_sys::Reflect::get(&l, &JsValue::from_str("href")).ok())
        .and_then(|h| h.as_string())?;
    web_sys::Url::new_with_base(url, &base)
        .ok()
        .map(|u| u.href())
        .filter(|h| h.starts_with("http://") || h.starts_with("https://"))
}

#[wasm_bindgen(inline_js = r#"
export function whenFree(name) {
  // Resolves when nobody holds the lock exclusively: the hub that held it died.
  return navigator.locks.request(name, { mode: 'shared' }, () => {});
}
"#)]
extern "C" {
    #[wasm_bindgen(catch, js_name = whenFree)]
    fn when_free(name: &str) -> Result<js_sys::Promise, JsValue>;
}

/// How often a tab whose view of the hub's lock is unreliable looks at it again.
const WATCH_RETRY_MS: u32 = 5_000;

/// Whether the hub spoke recently enough (it pings every second) that a free alive lock is
/// not news of its death.
fn hub_seems_alive(heard_at: f64, now: f64) -> bool {
    now - heard_at < 3_000.0
}

/// A JS callback and the value to call it with, made after the state is released.
type Call = (js_sys::Function, JsValue);

/// A value as the plain JS object apps get: its JSON through the browser's `JSON.parse`
/// (faster than building the object field by field from wasm).
pub fn to_js<T: Serialize>(v: &T) -> JsValue {
    js_sys::JSON::parse(&encode(v)).unwrap_or(JsValue::NULL)
}

/// A file in the tab's replica: decoded, and as the frozen JS object apps get.
struct Entry {
    state: TabFile,
    js: JsValue,
}

/// A typed error.
pub fn error(code: &str, message: impl Into<String>, retryable: bool) -> ErrorInfo {
    ErrorInfo {
        code: code.into(),
        message: message.into(),
        retryable,
    }
}

fn web_error(e: &crate::web::error::WebError) -> ErrorInfo {
    error(
        e.code(),
        e.to_string(),
        matches!(e, crate::web::error::WebError::Aborted { .. }),
    )
}

impl From<crate::web::error::WebError> for ErrorInfo {
    fn from(e: crate::web::error::WebError) -> Self {
        web_error(&e)
    }
}

/// How a worker script runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    #[default]
    Module,
    Classic,
}

impl WorkerKind {
    /// Options to start a worker of this kind named `name`.
    fn options(self, name: &str) -> web_sys::WorkerOptions {
        let options = web_sys::WorkerOptions::new();
        if self == WorkerKind::Module {
            options.set_type(web_sys::WorkerType::Module);
        }
        options.set_name(name);
        options
    }
}

/// What an app passes when it opens a store.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenOptions {
    pub store_id: String,
    /// URL of the SharedWorker script shipped with the package.
    pub worker_url: String,
    /// How that script runs: `"module"` (default: the package's own file, Vite's and
    /// webpack's chunks) or `"classic"` (Turbopack's worker loader, which calls importScripts).
    #[serde(default)]
    pub worker_type: WorkerKind,
    /// `false`: local-only; an object: the server (see `remote::parse_options`).
    #[serde(default)]
    pub remote: super::remote::RemoteOption,
    #[serde(default)]
    pub progress_throttle_ms: Option<u64>,
    #[serde(default)]
    pub max_uploads: Option<usize>,
    #[serde(default)]
    pub max_downloads: Option<usize>,
    /// How long remote content stays after its last reference went (ms).
    #[serde(default)]
    pub delete_grace_ms: Option<u64>,
    /// Where the hub runs: `"auto"` (default: a SharedWorker where the browser has one),
    /// `"shared-worker"`, or `"tab"` (one tab hosts it; the others reach it over
    /// BroadcastChannel).
    #[serde(default)]
    pub hub: Option<String>,
}

struct State {
    files: BTreeMap<String, Entry>,
    /// `getFiles()`'s answer, built once per change (frozen objects, so callers share them).
    files_js: Option<js_sys::Array>,
    /// `getSyncStatus()`'s answer, derived from the files once per change (frozen).
    status: Option<JsValue>,
    leader: Option<String>,
    storage: String,
    issues: Vec<StorageIssue>,
    /// Whether the hub believes the server reachable.
    online: bool,
    /// Events made in this browser that the server has not confirmed yet.
    unconfirmed: usize,
    /// The durable events made here the server has not confirmed yet (number, envelope JSON),
    /// oldest first: sent with `keepalive` when the page goes.
    parting: Vec<(u64, String)>,
    /// When the hub last said anything (it pings every second), in ms since the epoch.
    heard_at: f64,
    /// The open's promise, settled by the first snapshot (or the hub's failure).
    ready: Option<(js_sys::Function, js_sys::Function)>,
    /// The hub has loaded the state (its snapshot is not the provisional view); until then,
    /// `whenLoaded()` callers wait here.
    loaded: bool,
    on_loaded: Vec<(js_sys::Function, js_sys::Function)>,
    /// `whenSynced()` callers, settled when [`super::synced::verdict`] says so.
    on_synced: Vec<(js_sys::Function, js_sys::Function)>,
    /// The death of the current hub is watched for (armed once per hub).
    watching_hub: bool,
    next_req: u64,
    pending: HashMap<u64, Pending>,
    next_listener: u64,
    subscribers: Vec<(u64, js_sys::Function)>,
    handlers: Vec<(u64, String, js_sys::Function)>,
    urls: HashMap<String, String>,
    disposed: bool,
    /// Another version of the app took the store over (`superseded`): every call fails with
    /// this until the page reloads.
    superseded: Option<ErrorInfo>,
}

/// A request waiting for the hub's reply.
struct Pending {
    resolve: js_sys::Function,
    reject: js_sys::Function,
    msg: ToHub,
    /// The write it carries, if any: how to tell, after the hub moved, whether it landed.
    write: Option<Write>,
    /// The hub moved before answering: settled when the next hub's loaded snapshot shows
    /// whether it landed, else sent again.
    moved: bool,
    /// Sent to a second hub: "already exists" / "not found" then mean it landed before.
    resent: bool,
}

/// A file write in flight, as needed to tell whether a hub that went away committed it.
struct Write {
    event: FileEvent,
    /// For an update, the content it replaced.
    base: Option<ContentHash>,
}

/// How a tab reaches its hub.
enum Link {
    /// The SharedWorker's port.
    Port(web_sys::MessagePort),
    /// BroadcastChannels to and from a hub hosted by a tab (no SharedWorker).
    Channel {
        to_hub: web_sys::BroadcastChannel,
        from_hub: web_sys::BroadcastChannel,
    },
}

impl Inner {
    fn hello_store(&self) -> &str {
        match &self.hello {
            ToHub::Hello { config, .. } => &config.store_id,
            _ => "",
        }
    }
}

struct Inner {
    tab: String,
    link: RefCell<Link>,
    /// The SharedWorker's script and name, to start it again if it dies.
    worker: (String, String, WorkerKind),
    /// The hello, sent again to each new hub.
    hello: ToHub,
    /// Opened again when the browser removed the storage under it (see [`Tab::store_bytes`]).
    bytes: RefCell<Rc<ByteStore>>,
    /// Settles once the byte store is open again after the storage was removed.
    reopening: RefCell<Option<js_sys::Promise>>,
    /// The server (`None`: local-only).
    remote: Option<Rc<RemoteConfig>>,
    /// Transfers this tab runs while it leads.
    transfers: Rc<Transfers>,
    state: RefCell<State>,
    leadership: RefCell<Option<Leadership>>,
    /// In tab-hosted mode: the campaign to host the hub, and the hub once this tab hosts it.
    /// Never resigned before the page goes: two hubs must never run at once.
    hosting: RefCell<(Option<Leadership>, Option<crate::runtime::hub::Hub>)>,
    /// Handlers installed on the link; kept alive with the tab.
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    /// Sends the parting push when the page goes (pages only; removed when the tab goes).
    on_pagehide: Option<Closure<dyn FnMut()>>,
}

impl Drop for Inner {
    /// The link outlives the tab (the hub keeps posting to it: pings, changes): detach the
    /// handler before it is freed, or the next message calls a freed closure.
    fn drop(&mut self) {
        if let (Some(f), Some(w)) = (&self.on_pagehide, web_sys::window()) {
            let _ = w.remove_event_listener_with_callback("pagehide", f.as_ref().unchecked_ref());
        }
        match &*self.link.borrow() {
            Link::Port(port) => {
                port.set_onmessage(None);
                port.close();
            }
            Link::Channel { to_hub, from_hub } => {
                from_hub.set_onmessage(None);
                from_hub.close();
                to_hub.close();
            }
        }
    }
}

/// One tab's handle on a store.
#[derive(Clone)]
pub struct Tab {
    inner: Rc<Inner>,
}

fn random_uuid() -> Result<String, ErrorInfo> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .map_err(|_| error("unavailable", "crypto is missing", false))?;
    let f: js_sys::Function = js_sys::Reflect::get(&crypto, &JsValue::from_str("randomUUID"))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| error("unavailable", "crypto.randomUUID is missing", false))?;
    f.call0(&crypto)
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| error("unavailable", "crypto.randomUUID failed", false))
}

impl Tab {
    /// Opens the store in this tab: local byte store, hub connection, leader campaign.
    pub async fn open(options: OpenOptions) -> Result<Tab, ErrorInfo> {
        let store = StoreId::new(options.store_id.clone())?;
        let remote = super::remote::parse_options(&options.remote, absolute_url)
            .map_err(|m| error("invalid_options", m, false))?;
        // The files view the last hub saved, read while the hub starts (see `show_view`).
        let view = crate::web::idb::peek_view(&store);
        // Large saves and downloads hash in a dedicated worker running the same script.
        crate::web::hash::use_hash_worker(
            &options.worker_url,
            options.worker_type == WorkerKind::Module,
        );
        let shared_worker_exists =
            js_sys::Reflect::has(&js_sys::global(), &JsValue::from_str("SharedWorker"))
                .unwrap_or(false);
        let tab_hosted = match options.hub.as_deref() {
            None | Some("auto") => !shared_worker_exists,
            Some("shared-worker") => false,
            Some("tab") => true,
            Some(other) => {
                return Err(error(
                    "invalid_options",
                    format!("hub must be \"auto\", \"shared-worker\" or \"tab\", not {other:?}"),
                    false,
                ))
            }
        };
        let tab = random_uuid()?;
        let mut resolve = None;
        let mut reject = None;
        let ready = js_sys::Promise::new(&mut |r, j| {
            resolve = Some(r);
            reject = Some(j);
        });
        // Handlers attached now: a worker that fails to load can reject this before the open
        // awaits it, which would otherwise be an unhandled rejection in the page.
        let ready = JsFuture::from(ready);
        let (link, worker) = if tab_hosted {
            let (to_hub, to_tabs) = channel_names(store.as_str());
            let channel = |name: &str| {
                web_sys::BroadcastChannel::new(name).map_err(|e| {
                    web_error(&crate::web::error::WebError::from_js(
                        "BroadcastChannel",
                        &e,
                    ))
                })
            };
            let link = Link::Channel {
                to_hub: channel(&to_hub)?,
                from_hub: channel(&to_tabs)?,
            };
            (link, None)
        } else {
            let worker_options = options.worker_type.options(&worker_name(store.as_str()));
            let worker = web_sys::SharedWorker::new_with_worker_options(
                &options.worker_url,
                &worker_options,
            )
            .map_err(|e| {
                let e = crate::web::error::WebError::from_js("SharedWorker", &e);
                error(
                    e.code(),
                    format!("could not start the hub worker: {e}"),
                    false,
                )
            })?;
            // A worker script that fails to load or throws at start never answers: fail the
            // open instead of waiting forever.
            let reject = reject.clone();
            let on_error = Closure::once_into_js(move |_: web_sys::Event| {
                if let Some(j) = reject {
                    let _ = j.call0(&JsValue::UNDEFINED);
                }
            });
            worker.set_onerror(Some(on_error.unchecked_ref()));
            (Link::Port(worker.port()), Some(worker))
        };
        // The hub worker loads meanwhile (messages wait in its port).
        let bytes = Rc::new(ByteStore::open(&store).await?);
        let state = State {
            files: BTreeMap::new(),
            files_js: None,
            status: None,
            leader: None,
            storage: bytes.kind().as_str().to_string(),
            issues: Vec::new(),
            online: true,
            unconfirmed: 0,
            parting: Vec::new(),
            heard_at: 0.0,
            ready: resolve.zip(reject),
            loaded: false,
            on_loaded: Vec::new(),
            on_synced: Vec::new(),
            watching_hub: false,
            next_req: 1,
            pending: HashMap::new(),
            next_listener: 1,
            subscribers: Vec::new(),
            handlers: Vec::new(),
            urls: HashMap::new(),
            disposed: false,
            superseded: None,
        };
        let hello = ToHub::Hello {
            tab: tab.clone(),
            config: HubConfig {
                store_id: store.to_string(),
                remote: remote.clone(),
                progress_interval_ms: options.progress_throttle_ms,
                max_uploads: options.max_uploads,
                max_downloads: options.max_downloads,
                delete_grace_ms: options.delete_grace_ms,
            },
        };
        let inner = Rc::new_cyclic(|cyclic: &std::rc::Weak<Inner>| {
            let weak = cyclic.clone();
            let me = tab.clone();
            let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                move |e: web_sys::MessageEvent| {
                    let Some(inner) = weak.upgrade() else { return };
                    let Some(data) = e.data().as_string() else {
                        return;
                    };
                    let channel = matches!(&*inner.link.borrow(), Link::Channel { .. });
                    let text = if channel {
                        match serde_json::from_str::<Envelope<'_>>(&data) {
                            Ok(m) if m.peer.as_deref().is_none_or(|to| to == me) => m.msg.get(),
                            _ => return,
                        }
                    } else {
                        data.as_str()
                    };
                    if let Ok(msg) = serde_json::from_str::<ToTab<TabFile>>(text) {
                        Tab { inner }.receive(msg, text, true);
                    }
                },
            );
            // The last tab going takes the hub with it (a SharedWorker dies with its last page):
            // events it had not pushed would wait for the next session. Every closing page
            // sends them with `keepalive` (pushes are idempotent).
            let on_pagehide = web_sys::window().map(|w| {
                let weak = cyclic.clone();
                let f = Closure::<dyn FnMut()>::new(move || {
                    if let Some(inner) = weak.upgrade() {
                        Tab { inner }.send_parting();
                    }
                });
                let _ = w.add_event_listener_with_callback("pagehide", f.as_ref().unchecked_ref());
                f
            });
            match &link {
                Link::Port(port) => port.set_onmessage(Some(on_message.as_ref().unchecked_ref())),
                Link::Channel { from_hub, .. } => {
                    from_hub.set_onmessage(Some(on_message.as_ref().unchecked_ref()))
                }
            }
            Inner {
                tab: tab.clone(),
                link: RefCell::new(link),
                worker: (
                    options.worker_url.clone(),
                    worker_name(store.as_str()),
                    options.worker_type,
                ),
                hello: hello.clone(),
                bytes: RefCell::new(bytes),
                reopening: RefCell::new(None),
                remote: remote.map(Rc::new),
                transfers: Rc::new(Transfers::default()),
                state: RefCell::new(state),
                leadership: RefCell::new(None),
                hosting: RefCell::new((None, None)),
                _on_message: on_message,
                on_pagehide,
            }
        });
        let me = Tab { inner };
        if let Link::Port(port) = &*me.inner.link.borrow() {
            port.start();
        }
        me.post(&hello);
        if tab_hosted {
            me.campaign_to_host(&store)?;
        }
        me.show_view(view).await;
        ready.await.map_err(|e| {
            if e.is_undefined() {
                // The worker script failed to load or threw.
                error(
                    "unavailable",
                    format!("the hub worker {} failed to start", options.worker_url),
                    false,
                )
            } else {
                from_js_error(&e)
            }
        })?;
        if let Some(w) = worker {
            w.set_onerror(None);
        }
        me.campaign(&store)?;
        Ok(me)
    }

    fn campaign(&self, store: &StoreId) -> Result<(), ErrorInfo> {
        let weak = Rc::downgrade(&self.inner);
        let leadership = Leadership::campaign(store, move |ev| {
            let Some(inner) = weak.upgrade() else { return };
            let tab = Tab { inner };
            match ev {
                LeaderEvent::Elected => tab.post(&ToHub::Elected {
                    tab: tab.inner.tab.clone(),
                }),
                // The hub fences the old term when the next leader is elected; requests in
                // flight stop now.
                LeaderEvent::Failed(_) => tab.inner.transfers.abort_all(),
                // Taken over (this tab was frozen or hung): stop, and queue up again.
                LeaderEvent::Lost => {
                    tab.inner.transfers.abort_all();
                    let store = StoreId::new(tab.inner.hello_store().to_string());
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Ok(store) = store {
                            if !tab.inner.state.borrow().disposed {
                                let _ = tab.campaign(&store);
                            }
                        }
                    });
                }
            }
        })?;
        *self.inner.leadership.borrow_mut() = Some(leadership);
        Ok(())
    }

    /// Where SharedWorker does not exist, one tab hosts the hub: the holder of the store's hub
    /// lock. When it goes, the next tab takes the lock and starts a hub from IndexedDB.
    fn campaign_to_host(&self, store: &StoreId) -> Result<(), ErrorInfo> {
        let weak = Rc::downgrade(&self.inner);
        let store_id = store.to_string();
        let campaign = Leadership::campaign_for(host_lock_name(store.as_str()), move |ev| {
            let Some(inner) = weak.upgrade() else { return };
            if ev == LeaderEvent::Elected {
                let hub = crate::runtime::hub::Hub::new();
                if hub.serve_channel(&store_id).is_ok() {
                    inner.hosting.borrow_mut().1 = Some(hub);
                }
            }
        })?;
        self.inner.hosting.borrow_mut().0 = Some(campaign);
        Ok(())
    }

    /// Waits on the lock the hub holds while it lives; when it is free, the SharedWorker died
    /// (a renderer crash can take it while tabs live on): start it again and rejoin. Armed once
    /// per hub, after its snapshot (the hub takes the lock before answering).
    fn watch_hub(&self) {
        let Ok(free) = when_free(&crate::runtime::hub::alive_lock_name(
            self.inner.hello_store(),
        )) else {
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        wasm_bindgen_futures::spawn_local(async move {
            if JsFuture::from(free).await.is_ok() {
                if let Some(inner) = weak.upgrade() {
                    let tab = Tab { inner };
                    let heard = tab.inner.state.borrow().heard_at;
                    if hub_seems_alive(heard, js_sys::Date::now()) {
                        // A lock that lies: after "Clear site data", contexts created since
                        // see a lock namespace of their own, without the hub's lock. Look
                        // again later instead of starting the hub over and over.
                        let weak = Rc::downgrade(&tab.inner);
                        gloo_timers::callback::Timeout::new(WATCH_RETRY_MS, move || {
                            if let Some(inner) = weak.upgrade() {
                                Tab { inner }.watch_hub();
                            }
                        })
                        .forget();
                    } else {
                        tab.restart_worker();
                    }
                }
            }
        });
    }

    /// The browser forgot every Web Lock with the cleared storage: this tab's claim on the
    /// leader lock (held or waiting) and its watch on the hub's lock mean nothing any more.
    /// Campaign again from scratch (the hub dropped the leader, so the next one gets a new
    /// term) and watch the hub's lock again (it holds it again before telling tabs).
    fn after_locks_forgotten(&self) {
        if self.inner.state.borrow().disposed {
            return;
        }
        let leads = self
            .inner
            .leadership
            .borrow()
            .as_ref()
            .is_some_and(|l| l.is_leader());
        if leads {
            // Holders hear of the loss (and campaign again at once): this lock was granted
            // after the storage went. The hub dropped its leader: ask for a new term.
            self.post(&ToHub::Elected {
                tab: self.inner.tab.clone(),
            });
        } else {
            // A waiting request was dropped without a word: make a new one.
            if let Some(old) = self.inner.leadership.borrow_mut().take() {
                old.resign();
            }
            if let Ok(store) = StoreId::new(self.inner.hello_store().to_string()) {
                let _ = self.campaign(&store);
            }
        }
        self.watch_hub();
    }

    fn restart_worker(&self) {
        let s = self.inner.state.borrow();
        // A superseded tab must not start a hub of its version again: it would ask for the
        // store back.
        if s.disposed || s.superseded.is_some() {
            return;
        }
        drop(s);
        let (url, name, kind) = &self.inner.worker;
        let options = kind.options(name);
        let Ok(worker) = web_sys::SharedWorker::new_with_worker_options(url, &options) else {
            return;
        };
        let port = worker.port();
        self.inner.state.borrow_mut().watching_hub = false;
        port.set_onmessage(Some(self.inner._on_message.as_ref().unchecked_ref()));
        port.start();
        *self.inner.link.borrow_mut() = Link::Port(port);
        self.rejoin();
    }

    /// Joins a new hub: say hello, and re-register as leader if this tab leads. Requests the
    /// previous hub had not answered wait for the new hub's state, which tells whether they
    /// landed ([`Tab::settle_moved`]).
    fn rejoin(&self) {
        for p in self.inner.state.borrow_mut().pending.values_mut() {
            p.moved = true;
        }
        self.post(&self.inner.hello);
        let leads = self
            .inner
            .leadership
            .borrow()
            .as_ref()
            .is_some_and(|l| l.is_leader());
        if leads {
            self.post(&ToHub::Elected {
                tab: self.inner.tab.clone(),
            });
        }
    }

    /// Settles the requests a hub that went away left unanswered, now that the next hub's
    /// loaded state is in: a write it shows (or that a later write superseded) resolves; one it
    /// does not show is sent again, an update only if the file still has the content it
    /// replaced; controls are sent again. So nothing is lost and nothing applies twice.
    fn settle_moved(&self, s: &mut State, calls: &mut Vec<Call>) {
        for (req, mut p) in take_moved(s) {
            let landed = p.write.as_ref().map(|w| {
                let row = s.files.get(w.event.file_id().as_str()).map(|e| &e.state);
                match (&w.event, row) {
                    (FileEvent::Created(_), row) => row.is_some(),
                    (FileEvent::Deleted(_), row) => row.is_none(),
                    // Gone since: it was applied, or it would have been overwritten anyway.
                    (FileEvent::Updated(_), None) => true,
                    (FileEvent::Updated(u), Some(r)) => {
                        let applied = r.updated_at == u.updated_at.0
                            && r.content_hash == u.content_hash.to_hex();
                        let untouched = w.base.is_some_and(|b| r.content_hash == b.to_hex());
                        applied || !untouched
                    }
                }
            });
            if landed == Some(true) {
                calls.push((p.resolve, JsValue::UNDEFINED));
                continue;
            }
            if let (ToHub::Commit { event, .. }, Some(w)) = (&mut p.msg, &p.write) {
                if let FileEvent::Updated(u) = &w.event {
                    // Only over the content it replaced: a write that came since wins.
                    let mut u = u.clone();
                    u.expected_content_hash = w.base;
                    *event = FileEvent::Updated(u).to_wire();
                }
            }
            self.post(&p.msg);
            p.moved = false;
            p.resent = true;
            s.pending.insert(req, p);
        }
    }

    fn post(&self, msg: &ToHub) {
        let text = encode(msg);
        let _ = match &*self.inner.link.borrow() {
            Link::Port(port) => port.post_message(&JsValue::from_str(&text)),
            Link::Channel { to_hub, .. } => to_hub.post_message(&JsValue::from_str(
                &Envelope::wrap(Some(&self.inner.tab), &text),
            )),
        };
    }

    /// Shows the files view the last hub saved (read by `peek_view`) if nothing better came
    /// meanwhile: the open resolves with it, as with the hub's own provisional snapshot, and
    /// the hub's loaded snapshot replaces it. The tab reads it itself so the open does not wait
    /// for the hub worker to start.
    async fn show_view(&self, view: js_sys::Promise) {
        let Some(text) = JsFuture::from(view).await.ok().and_then(|v| v.as_string()) else {
            return;
        };
        match serde_json::from_str::<ToTab<TabFile>>(&text) {
            Ok(
                msg @ ToTab::Snapshot {
                    provisional: true, ..
                },
            ) => self.receive(msg, &text, false),
            // Broken: ignored here, and the hub saves a fresh one.
            _ => self.post(&ToHub::ViewUnreadable),
        }
    }

    /// Handles a message; `text` is its JSON, which gives the app's objects. `from_hub`:
    /// false for the files view this tab read itself.
    fn receive(&self, msg: ToTab<TabFile>, text: &str, from_hub: bool) {
        let mut calls: Vec<Call> = Vec::new();
        let mut superseded = false;
        {
            let mut s = self.inner.state.borrow_mut();
            if from_hub {
                s.heard_at = js_sys::Date::now();
            }
            match msg {
                ToTab::Snapshot {
                    files,
                    leader,
                    storage,
                    issues,
                    online,
                    unconfirmed,
                    provisional,
                } => {
                    // A view shows what the state was; once a snapshot is in, it has nothing
                    // to add.
                    if provisional && s.ready.is_none() {
                        return;
                    }
                    let js = parsed(text, "snapshot");
                    s.loaded = !provisional;
                    if s.loaded {
                        let waiting = s.on_loaded.drain(..);
                        calls.extend(waiting.map(|(resolve, _)| (resolve, JsValue::UNDEFINED)));
                    }
                    s.online = online;
                    s.unconfirmed = unconfirmed;
                    s.issues = issues;
                    s.files = entries(files, &js)
                        .map(|e| (e.state.id.to_string(), e))
                        .collect();
                    s.files_js = None;
                    s.status = None;
                    if !provisional {
                        self.settle_moved(&mut s, &mut calls);
                        self.report_issues(&s.issues);
                    }
                    s.leader = leader;
                    s.storage = storage;
                    if let Some((resolve, _)) = s.ready.take() {
                        calls.push((resolve, JsValue::UNDEFINED));
                    }
                    let port = matches!(&*self.inner.link.borrow(), Link::Port(_));
                    if from_hub && port && !s.watching_hub {
                        s.watching_hub = true;
                        self.watch_hub();
                    }
                    calls.extend(
                        s.subscribers
                            .iter()
                            .map(|(_, f)| (f.clone(), JsValue::UNDEFINED)),
                    );
                }
                ToTab::Reply { req, error } => {
                    if let Some(p) = s.pending.remove(&req) {
                        // A resent write the previous hub had committed after all.
                        let landed = |e: &ErrorInfo| {
                            p.resent
                                && matches!(
                                    (&p.write, e.code.as_str()),
                                    (Some(_), "already_exists" | "not_found")
                                )
                        };
                        match error {
                            Some(e) if !landed(&e) => calls.push((p.reject, js_error(&e))),
                            _ => calls.push((p.resolve, JsValue::UNDEFINED)),
                        }
                    }
                }
                ToTab::Parting { below, ns, events } => {
                    let first_new = ns.first().copied().unwrap_or(u64::MAX);
                    s.parting.retain(|(n, _)| *n >= below && *n < first_new);
                    s.parting.extend(ns.into_iter().zip(events));
                }
                ToTab::History { req, entries } => {
                    if let Some(p) = s.pending.remove(&req) {
                        let list = js_sys::JSON::parse(entries.get())
                            .unwrap_or_else(|_| js_sys::Array::new().into());
                        calls.push((p.resolve, list));
                    }
                }
                ToTab::Changed {
                    files,
                    removed,
                    unconfirmed,
                } => {
                    s.unconfirmed = unconfirmed;
                    let js = parsed(text, "changed");
                    // Contents with an object URL that a changed or removed file held: the
                    // URL goes if no file holds them any more.
                    let mut released = Vec::new();
                    for e in entries(files, &js) {
                        let id = e.state.id.to_string();
                        released.extend(held_url(&s, &id));
                        s.files.insert(id, e);
                    }
                    for id in removed {
                        released.extend(held_url(&s, &id));
                        s.files.remove(&id);
                    }
                    s.files_js = None;
                    s.status = None;
                    revoke_unused_urls(&mut s, released);
                    calls.extend(
                        s.subscribers
                            .iter()
                            .map(|(_, f)| (f.clone(), JsValue::UNDEFINED)),
                    );
                }
                ToTab::Event { event } => {
                    let value = event_js(&event);
                    match event_type(&value).as_str() {
                        "online" => s.online = true,
                        "offline" => s.online = false,
                        "storage:cleared" => {
                            // The hub started again on emptied storage: so does this tab's
                            // byte store (a leader's downloads write through it; transfers
                            // wait for it).
                            let me = self.clone();
                            let ready = wasm_bindgen_futures::future_to_promise(async move {
                                let _ = me.reopen_bytes().await;
                                *me.inner.reopening.borrow_mut() = None;
                                me.after_locks_forgotten();
                                Ok(JsValue::UNDEFINED)
                            });
                            *self.inner.reopening.borrow_mut() = Some(ready);
                        }
                        "sync:error" => {
                            let field = |k: &str| {
                                js_sys::Reflect::get(&value, &JsValue::from_str(k))
                                    .ok()
                                    .and_then(|v| v.as_string())
                                    .unwrap_or_default()
                            };
                            let (code, message) = (field("code"), field("message"));
                            if let Some(e) = synced::sync_error(&code, &message, &field("context"))
                            {
                                let waiting = s.on_synced.drain(..);
                                calls.extend(waiting.map(|(_, reject)| (reject, js_error(&e))));
                            }
                        }
                        _ => {}
                    }
                    push_event(&s, value, &mut calls);
                }
                ToTab::HubFailed { error } => match s.ready.take() {
                    Some((_, reject)) => calls.push((reject, js_error(&error))),
                    None => {
                        superseded = error.code == "superseded";
                        let failed: Vec<Pending> = if superseded {
                            // Nothing more will be answered, and this tab leads nothing.
                            s.superseded = Some(error.clone());
                            s.leader = None;
                            s.pending.drain().map(|(_, p)| p).collect()
                        } else {
                            take_moved(&mut s).into_iter().map(|(_, p)| p).collect()
                        };
                        calls.extend(failed.into_iter().map(|p| (p.reject, js_error(&error))));
                        // Shown from the saved view, never loaded: `whenLoaded()` fails.
                        let waiting = s.on_loaded.drain(..);
                        calls.extend(waiting.map(|(_, reject)| (reject, js_error(&error))));
                        if superseded {
                            let waiting = s.on_synced.drain(..);
                            calls.extend(waiting.map(|(_, reject)| (reject, js_error(&error))));
                        }
                        let event = AppEvent::StorageError {
                            code: error.code,
                            message: error.message,
                        };
                        push_event(&s, to_js(&event), &mut calls);
                    }
                },
                ToTab::HubReady => {
                    drop(s);
                    self.rejoin();
                    return;
                }
                ToTab::Transfer { job } => {
                    drop(s);
                    self.run_transfer(job);
                    return;
                }
                ToTab::Abort { task } => {
                    drop(s);
                    self.inner.transfers.abort(task);
                    return;
                }
                ToTab::Ping => {
                    drop(s);
                    self.post(&ToHub::Pong {
                        tab: self.inner.tab.clone(),
                    });
                    return;
                }
                ToTab::TakeOver => {
                    drop(s);
                    if let Some(l) = &*self.inner.leadership.borrow() {
                        // The hub fences the frozen leader with the term this tab gets.
                        let _ = l.steal();
                    }
                    return;
                }
                ToTab::Leader { tab, .. } => {
                    let was = s.leader.as_deref() == Some(self.inner.tab.as_str());
                    let is = tab.as_deref() == Some(self.inner.tab.as_str());
                    s.leader = tab;
                    if is != was {
                        let ev = if is {
                            AppEvent::LeaderGained
                        } else {
                            AppEvent::LeaderLost
                        };
                        push_event(&s, to_js(&ev), &mut calls);
                    }
                    calls.extend(
                        s.subscribers
                            .iter()
                            .map(|(_, f)| (f.clone(), JsValue::UNDEFINED)),
                    );
                }
            }
        }
        self.settle_synced(&mut calls);
        if superseded {
            // The other version's tabs lead now: stop transfers and let go of the leader lock.
            self.inner.transfers.abort_all();
            if let Some(l) = self.inner.leadership.borrow_mut().take() {
                l.resign();
            }
        }
        for (f, v) in calls {
            // A throwing callback must not break the runtime.
            let _ = f.call1(&JsValue::UNDEFINED, &v);
        }
    }

    /// Emits a `storage:issue` event per broken record the hub skipped, on the next task: after
    /// `open` resolved and the app's listeners were added.
    fn report_issues(&self, issues: &[StorageIssue]) {
        if issues.is_empty() {
            return;
        }
        let events: Vec<JsValue> = issues
            .iter()
            .map(|i| {
                to_js(&AppEvent::StorageIssue {
                    table: i.table.clone(),
                    key: i.key.clone(),
                    code: i.code.clone(),
                    message: i.message.clone(),
                })
            })
            .collect();
        let weak = Rc::downgrade(&self.inner);
        gloo_timers::callback::Timeout::new(0, move || {
            let Some(inner) = weak.upgrade() else { return };
            let mut calls = Vec::new();
            for e in events {
                push_event(&inner.state.borrow(), e, &mut calls);
            }
            for (f, v) in calls {
                let _ = f.call1(&JsValue::UNDEFINED, &v);
            }
        })
        .forget();
    }

    /// Runs a transfer the hub asked for, if this tab still leads; its reports carry the
    /// job's term, so the hub ignores them once another tab leads.
    fn run_transfer(&self, job: super::protocol::TransferJob) {
        let leads = self
            .inner
            .leadership
            .borrow()
            .as_ref()
            .is_some_and(|l| l.is_leader());
        let Some(remote) = self.inner.remote.clone() else {
            return;
        };
        if self.inner.state.borrow().disposed {
            return;
        }
        if !leads {
            // The hub thinks this tab leads, but it does not (its lock went: storage cleared,
            // or taken over): say so, or the hub would wait on this job until it stalls.
            self.post(&ToHub::Resigned { term: job.term });
            return;
        }
        let weak = Rc::downgrade(&self.inner);
        let report: super::transfer::Reporter = Rc::new(move |report| {
            if let Some(inner) = weak.upgrade() {
                Tab { inner }.post(&ToHub::Transfer { report });
            }
        });
        // The byte store is being opened again (the storage was removed): start once it is.
        let reopening = self.inner.reopening.borrow().clone();
        match reopening {
            None => self
                .inner
                .transfers
                .start(job, remote, self.bytes(), report),
            Some(ready) => {
                let me = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = wasm_bindgen_futures::JsFuture::from(ready).await;
                    me.inner.transfers.start(job, remote, me.bytes(), report);
                });
            }
        }
    }

    fn check_open(&self) -> Result<(), ErrorInfo> {
        let s = self.inner.state.borrow();
        if s.disposed {
            return Err(error("disposed", "this FileSync was disposed", false));
        }
        match &s.superseded {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Sends a request to the hub and waits for its reply (the value it carries, if any).
    async fn request(
        &self,
        make: impl FnOnce(u64) -> ToHub,
        write: Option<Write>,
    ) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let req = {
            let mut s = self.inner.state.borrow_mut();
            s.next_req += 1;
            s.next_req
        };
        let msg = make(req);
        self.post(&msg);
        let inner = self.inner.clone();
        let mut pending = Some((msg, write));
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            if let Some((msg, write)) = pending.take() {
                let p = Pending {
                    resolve,
                    reject,
                    msg,
                    write,
                    moved: false,
                    resent: false,
                };
                inner.state.borrow_mut().pending.insert(req, p);
            }
        });
        JsFuture::from(promise).await.map_err(|e| from_js_error(&e))
    }

    /// Commits the event (its bytes are stored); returns once the write is durable. `base`:
    /// for an update, the content it replaces.
    async fn commit(&self, event: FileEvent, base: Option<ContentHash>) -> Result<(), ErrorInfo> {
        let wire = event.to_wire();
        let write = Write { event, base };
        self.request(|req| ToHub::Commit { req, event: wire }, Some(write))
            .await
            .map(drop)
    }

    /// A file of the replica.
    pub fn file(&self, id: &str) -> Option<TabFile> {
        self.inner
            .state
            .borrow()
            .files
            .get(id)
            .map(|e| e.state.clone())
    }

    /// A file, as the (frozen) object apps get; `undefined` if there is none.
    pub fn file_js(&self, id: &str) -> JsValue {
        self.inner
            .state
            .borrow()
            .files
            .get(id)
            .map_or(JsValue::UNDEFINED, |e| e.js.clone())
    }

    /// Every live file, by id, as a fresh JS array of frozen objects (cheap: the objects are
    /// built once per change, not per call).
    pub fn files_js(&self) -> js_sys::Array {
        let mut s = self.inner.state.borrow_mut();
        if s.files_js.is_none() {
            let built: js_sys::Array = s.files.values().map(|e| e.js.clone()).collect();
            s.files_js = Some(built);
        }
        match &s.files_js {
            Some(a) => a.slice(0, a.length()),
            None => js_sys::Array::new(),
        }
    }

    /// The aggregate status (a frozen object shared until the files change), derived from the
    /// replica: each file carries its transfer states, the rows the engine derives it from.
    pub fn status(&self) -> JsValue {
        let mut s = self.inner.state.borrow_mut();
        if s.status.is_none() {
            let status = SyncStatus::from_transfers(
                s.files.values().map(|e| TransferStates {
                    file_id: &e.state.id,
                    upload: e.state.upload_status,
                    download: e.state.download_status,
                    last_error: e.state.last_sync_error.as_ref(),
                }),
                s.unconfirmed,
            );
            let js = to_js(&status);
            js_sys::Object::freeze(js.unchecked_ref::<js_sys::Object>());
            s.status = Some(js);
        }
        s.status.clone().unwrap_or(JsValue::NULL)
    }

    /// Resolves once the hub has loaded the store's state: `open` may resolve before, with
    /// the files view the last hub saved (see [`ToTab::Snapshot`]).
    pub fn when_loaded(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        js_sys::Promise::new(&mut |resolve, reject| {
            let mut s = inner.state.borrow_mut();
            if s.disposed {
                let err = js_error(&error("disposed", "this FileSync was disposed", false));
                let _ = reject.call1(&JsValue::UNDEFINED, &err);
            } else if s.loaded {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            } else {
                s.on_loaded.push((resolve, reject));
            }
        })
    }

    /// Resolves once everything made in this browser is on the server (every change
    /// confirmed, every local file's bytes uploaded); rejects at once when offline with work
    /// left, when an upload stopped for good, or when the server refuses this browser's
    /// changes (see [`synced::verdict`]).
    /// Sends the unconfirmed events with `keepalive` (the page is going).
    fn send_parting(&self) {
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let s = self.inner.state.borrow();
        let envelopes: Vec<&str> = s.parting.iter().map(|(_, e)| e.as_str()).collect();
        let Some(body) = super::remote::parting_body(&envelopes, super::remote::PARTING_BODY_LIMIT)
        else {
            return;
        };
        let Ok(store) = StoreId::new(self.inner.hello_store().to_string()) else {
            return;
        };
        crate::web::http::send_keepalive(&remote.endpoint(), &remote.events_url(&store), &body);
    }

    pub fn when_synced(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            let mut s = inner.state.borrow_mut();
            let closed = s.superseded.clone().or_else(|| {
                s.disposed
                    .then(|| error("disposed", "this FileSync was disposed", false))
            });
            match closed {
                Some(e) => {
                    let _ = reject.call1(&JsValue::UNDEFINED, &js_error(&e));
                }
                None => s.on_synced.push((resolve, reject)),
            }
        });
        let mut calls = Vec::new();
        self.settle_synced(&mut calls);
        for (f, v) in calls {
            let _ = f.call1(&JsValue::UNDEFINED, &v);
        }
        promise
    }

    /// Settles the `whenSynced()` callers if the replica says so.
    fn settle_synced(&self, calls: &mut Vec<Call>) {
        let mut s = self.inner.state.borrow_mut();
        if s.on_synced.is_empty() {
            return;
        }
        let known = synced::Known {
            remote: self.inner.remote.is_some(),
            loaded: s.loaded,
            online: s.online,
            unconfirmed: s.unconfirmed,
        };
        let outcome = match synced::verdict(known, s.files.values().map(|e| &e.state)) {
            synced::Verdict::Waiting => return,
            synced::Verdict::Synced => Ok(()),
            synced::Verdict::Failed(e) => Err(js_error(&e)),
        };
        for (resolve, reject) in s.on_synced.drain(..) {
            calls.push(match &outcome {
                Ok(()) => (resolve, JsValue::UNDEFINED),
                Err(e) => (reject, e.clone()),
            });
        }
    }

    /// Whether the hub has loaded the store's state (see [`Tab::when_loaded`]).
    pub fn is_loaded(&self) -> bool {
        self.inner.state.borrow().loaded
    }

    /// Whether the server is believed reachable (the hub decides).
    pub fn is_online(&self) -> bool {
        self.inner.state.borrow().online
    }

    /// Whether this tab is the leader (runs transfers).
    pub fn is_leader(&self) -> bool {
        self.inner.state.borrow().leader.as_deref() == Some(self.inner.tab.as_str())
    }

    /// The leader tab's id, if any.
    pub fn leader(&self) -> Option<String> {
        self.inner.state.borrow().leader.clone()
    }

    /// This tab's id (random per page load, never copied by "Duplicate tab").
    pub fn id(&self) -> String {
        self.inner.tab.clone()
    }

    /// Whether this tab hosts the hub (tab-hosted mode only).
    pub fn hosts_hub(&self) -> bool {
        self.inner.hosting.borrow().1.is_some()
    }

    /// Stored records the hub skipped at start because they were broken.
    pub fn issues(&self) -> Vec<StorageIssue> {
        self.inner.state.borrow().issues.clone()
    }

    /// Where bytes are stored: `"opfs"` or `"indexeddb"`.
    pub fn storage(&self) -> String {
        self.inner.state.borrow().storage.clone()
    }

    fn info_of(file: &web_sys::File) -> Result<FileInfo, ErrorInfo> {
        let name = file.name();
        if name.is_empty()
            || name.len() > 255
            || name.contains('/')
            || name.chars().any(char::is_control)
        {
            return Err(error(
                "invalid_field",
                format!("unusable file name {name:?}"),
                false,
            ));
        }
        let size = file.size();
        Ok(FileInfo {
            name,
            mime_type: file.type_(),
            size: if size >= 0.0 { size as u64 } else { 0 },
        })
    }

    fn metadata_json(metadata: &JsValue) -> Result<Option<String>, ErrorInfo> {
        if metadata.is_undefined() || metadata.is_null() {
            return Ok(None);
        }
        let json = js_sys::JSON::stringify(metadata)
            .map_err(|_| error("invalid_field", "metadata is not JSON-serializable", false))?;
        Ok(json.as_string())
    }

    fn bytes(&self) -> Rc<ByteStore> {
        self.inner.bytes.borrow().clone()
    }

    /// Opens the byte store again (the browser removed the storage under it).
    async fn reopen_bytes(&self) -> Result<Rc<ByteStore>, ErrorInfo> {
        let store = StoreId::new(self.inner.hello_store().to_string())?;
        let fresh = Rc::new(ByteStore::open(&store).await.map_err(|e| web_error(&e))?);
        *self.inner.bytes.borrow_mut() = fresh.clone();
        Ok(fresh)
    }

    /// Stores a file's bytes here (hashing them). Storage removed under the tab (site data
    /// cleared, eviction) is opened again and the write made once more: a save must not fail
    /// because of handles to storage that no longer exists.
    async fn store_bytes(&self, file: &web_sys::File) -> Result<ContentHash, ErrorInfo> {
        match self.bytes().write(file).await {
            Err(e) if e.is_storage_gone() => {
                let fresh = self.reopen_bytes().await?;
                fresh.write(file).await.map_err(|e| web_error(&e))
            }
            other => other.map_err(|e| web_error(&e)),
        }
    }

    /// Saves a new file; returns it.
    pub async fn save(
        &self,
        file: web_sys::File,
        path: Option<String>,
        metadata: JsValue,
    ) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let info = Self::info_of(&file)?;
        let path = check_path(path.unwrap_or_else(|| info.name.clone()))?;
        let metadata_json = Self::metadata_json(&metadata)?;
        let hash = self.store_bytes(&file).await?;
        let id = FileId::new(random_uuid()?)?;
        let now = Millis(js_sys::Date::now() as u64);
        self.commit(
            FileEvent::Created(FileCreated {
                id: id.clone(),
                path,
                content_hash: hash,
                info,
                metadata_json,
                created_at: now,
                updated_at: now,
            }),
            None,
        )
        .await?;
        self.saved(id.as_str())
    }

    /// The file a save or update just committed (its change arrives before the reply).
    fn saved(&self, id: &str) -> Result<JsValue, ErrorInfo> {
        Some(self.file_js(id))
            .filter(|f| !f.is_undefined())
            .ok_or_else(|| error("not_found", "the file was deleted meanwhile", false))
    }

    /// Replaces a file's content (and metadata when given); returns it.
    pub async fn update(
        &self,
        id: &str,
        file: web_sys::File,
        metadata: JsValue,
    ) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let current = self
            .file(id)
            .ok_or_else(|| error("not_found", format!("file {id} not found"), false))?;
        let info = Self::info_of(&file)?;
        let metadata = match Self::metadata_json(&metadata)? {
            Some(m) => MetadataPatch::Set(m),
            None => MetadataPatch::Keep,
        };
        let hash = self.store_bytes(&file).await?;
        let fid = FileId::new(id.to_string())?;
        let base = ContentHash::parse(&current.content_hash).ok();
        self.commit(
            FileEvent::Updated(FileUpdated {
                id: fid,
                path: current.path,
                remote_key: None,
                content_hash: hash,
                info,
                metadata,
                updated_at: Millis(js_sys::Date::now() as u64),
                expected_content_hash: None,
                previous_content_hash: base,
            }),
            base,
        )
        .await?;
        self.saved(id)
    }

    /// Deletes a file (its bytes go once nothing else references them).
    pub async fn delete(&self, id: &str) -> Result<(), ErrorInfo> {
        self.check_open()?;
        let fid = FileId::new(id.to_string())?;
        self.commit(
            FileEvent::Deleted(FileDeleted {
                id: fid,
                deleted_at: Millis(js_sys::Date::now() as u64),
            }),
            None,
        )
        .await
    }

    async fn local_blob(&self, f: &TabFile) -> Result<web_sys::Blob, ErrorInfo> {
        if !f.has_local_copy {
            return Err(error(
                "not_available",
                format!("the bytes of {} are not in this browser yet", f.id),
                true,
            ));
        }
        let hash = ContentHash::parse(&f.content_hash)?;
        self.bytes().read(&hash).await.map_err(|e| web_error(&e))
    }

    /// The file's bytes as a `File` with its original name and type: its current content, or
    /// `content` (a hash) if given and still held here.
    pub async fn read(&self, id: &str, content: Option<&str>) -> Result<web_sys::File, ErrorInfo> {
        self.check_open()?;
        let f = self
            .file(id)
            .ok_or_else(|| error("not_found", format!("file {id} not found"), false))?;
        let blob = match content.filter(|c| *c != f.content_hash) {
            None => self.local_blob(&f).await?,
            Some(other) => {
                let hash = ContentHash::parse(other)?;
                self.bytes().read(&hash).await.map_err(|e| {
                    if e.code() == "not_found" {
                        error(
                            "not_available",
                            format!("the content {other} of {id} is no longer in this browser"),
                            false,
                        )
                    } else {
                        web_error(&e)
                    }
                })?
            }
        };
        let parts = js_sys::Array::of1(&blob);
        let bag = web_sys::FilePropertyBag::new();
        bag.set_type(&f.mime_type);
        bag.set_last_modified(f.updated_at as f64);
        web_sys::File::new_with_blob_sequence_and_options(&parts, &f.name, &bag)
            .map_err(|e| web_error(&crate::web::error::WebError::from_js("File", &e)))
    }

    /// An object URL for the file's content, shared by files with the same content and revoked
    /// when no file has that content any more (or on dispose).
    pub async fn url(&self, id: &str) -> Result<String, ErrorInfo> {
        self.check_open()?;
        let f = self
            .file(id)
            .ok_or_else(|| error("not_found", format!("file {id} not found"), false))?;
        if let Some(u) = self.inner.state.borrow().urls.get(&f.content_hash) {
            return Ok(u.clone());
        }
        let blob = self.local_blob(&f).await?;
        let url = web_sys::Url::create_object_url_with_blob(&blob)
            .map_err(|e| web_error(&crate::web::error::WebError::from_js("URL", &e)))?;
        let mut s = self.inner.state.borrow_mut();
        match s.urls.get(&f.content_hash) {
            // Another call made one meanwhile: keep one URL per content.
            Some(existing) => {
                let _ = web_sys::Url::revoke_object_url(&url);
                Ok(existing.clone())
            }
            None => {
                s.urls.insert(f.content_hash.clone(), url.clone());
                Ok(url)
            }
        }
    }

    /// Runs an app control in the hub.
    pub async fn control(&self, control: Control) -> Result<(), ErrorInfo> {
        self.request(|req| ToHub::Control { req, control }, None)
            .await
            .map(drop)
    }

    /// `{usage, quota, persisted, kind}`: the origin's storage figures, whether the browser
    /// keeps its data under storage pressure, and where this store's bytes live.
    pub async fn storage_info(&self) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let usage = crate::web::bytes::usage()
            .await
            .map_err(|e| web_error(&e))?;
        let persisted = crate::web::bytes::persisted()
            .await
            .map_err(|e| web_error(&e))?;
        let info = js_sys::Object::new();
        for (key, value) in [
            ("usage", JsValue::from_f64(usage.usage)),
            ("quota", JsValue::from_f64(usage.quota)),
            ("persisted", JsValue::from_bool(persisted)),
            ("kind", JsValue::from_str(&self.storage())),
        ] {
            let _ = js_sys::Reflect::set(&info, &JsValue::from_str(key), &value);
        }
        Ok(info.into())
    }

    /// Asks the browser to keep the origin's data under storage pressure; whether it does now.
    pub async fn request_persistence(&self) -> Result<bool, ErrorInfo> {
        self.check_open()?;
        crate::web::bytes::persist()
            .await
            .map_err(|e| web_error(&e))
    }

    /// The hub engine's recent events: an array of `{at, event}`, oldest first.
    pub async fn history(&self) -> Result<JsValue, ErrorInfo> {
        self.request(|req| ToHub::History { req }, None).await
    }

    /// Calls `f` after every change of files, status or leader. Returns a listener id.
    pub fn subscribe(&self, f: js_sys::Function) -> u64 {
        let mut s = self.inner.state.borrow_mut();
        s.next_listener += 1;
        let id = s.next_listener;
        s.subscribers.push((id, f));
        id
    }

    /// Calls `f` with every event of `kind` (`"*"`: all). Returns a listener id.
    pub fn on(&self, kind: String, f: js_sys::Function) -> u64 {
        let mut s = self.inner.state.borrow_mut();
        s.next_listener += 1;
        let id = s.next_listener;
        s.handlers.push((id, kind, f));
        id
    }

    /// Removes a listener added by `subscribe` or `on`.
    pub fn remove_listener(&self, id: u64) {
        let mut s = self.inner.state.borrow_mut();
        s.subscribers.retain(|(i, _)| *i != id);
        s.handlers.retain(|(i, _, _)| *i != id);
    }

    /// Leaves: resigns leadership, tells the hub, revokes URLs, fails pending requests.
    pub fn dispose(&self) {
        let calls: Vec<Call> = {
            let mut s = self.inner.state.borrow_mut();
            if s.disposed {
                return;
            }
            s.disposed = true;
            for url in s.urls.values() {
                let _ = web_sys::Url::revoke_object_url(url);
            }
            s.urls.clear();
            s.subscribers.clear();
            s.handlers.clear();
            let err = js_error(&error("disposed", "this FileSync was disposed", false));
            let mut waiting: Vec<_> = s.on_loaded.drain(..).collect();
            waiting.append(&mut s.on_synced);
            let waiting: Vec<_> = waiting.into_iter().map(|(_, reject)| reject).collect();
            s.pending
                .drain()
                .map(|(_, p)| p.reject)
                .chain(waiting)
                .map(|reject| (reject, err.clone()))
                .collect()
        };
        self.inner.transfers.abort_all();
        if let Some(l) = self.inner.leadership.borrow_mut().take() {
            l.resign();
        }
        self.post(&ToHub::Bye {
            tab: self.inner.tab.clone(),
        });
        match &*self.inner.link.borrow() {
            Link::Port(port) => port.close(),
            Link::Channel { to_hub, from_hub } => {
                to_hub.close();
                from_hub.close();
            }
        }
        for (f, v) in calls {
            let _ = f.call1(&JsValue::UNDEFINED, &v);
        }
    }
}

/// Removes the requests a hub that went away left unanswered.
fn take_moved(s: &mut State) -> Vec<(u64, Pending)> {
    let moved: Vec<u64> = s
        .pending
        .iter()
        .filter(|(_, p)| p.moved)
        .map(|(req, _)| *req)
        .collect();
    moved
        .into_iter()
        .filter_map(|req| s.pending.remove(&req).map(|p| (req, p)))
        .collect()
}

/// The body of a message as JS objects: `JSON.parse(text)[variant]`.
fn parsed(text: &str, variant: &str) -> JsValue {
    js_sys::JSON::parse(text)
        .and_then(|m| js_sys::Reflect::get(&m, &JsValue::from_str(variant)))
        .unwrap_or(JsValue::UNDEFINED)
}

/// The message's files, each with its frozen JS object (`body.files`, in the same order).
fn entries(files: Vec<TabFile>, body: &JsValue) -> impl Iterator<Item = Entry> {
    let objects: js_sys::Array = js_sys::Reflect::get(body, &JsValue::from_str("files"))
        .ok()
        .and_then(|a| a.dyn_into().ok())
        .unwrap_or_default();
    files.into_iter().enumerate().map(move |(i, state)| {
        let js = objects.get(i as u32);
        if js.is_object() {
            js_sys::Object::freeze(js.unchecked_ref::<js_sys::Object>());
        }
        Entry { state, js }
    })
}

/// An app event's JSON as the object handed to listeners.
fn event_js(event: &RawValue) -> JsValue {
    js_sys::JSON::parse(event.get()).unwrap_or(JsValue::NULL)
}

fn event_type(event: &JsValue) -> String {
    js_sys::Reflect::get(event, &JsValue::from_str("type"))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

fn push_event(s: &State, value: JsValue, calls: &mut Vec<Call>) {
    let kind = event_type(&value);
    for (_, k, f) in &s.handlers {
        if *k == kind || k == "*" {
            calls.push((f.clone(), value.clone()));
        }
    }
}

/// The content of file `id` if an object URL was made for it (before the file changes).
fn held_url(s: &State, id: &str) -> Option<String> {
    let hash = &s.files.get(id)?.state.content_hash;
    s.urls.contains_key(hash).then(|| hash.clone())
}

/// Revokes the object URLs of `released` contents no file holds any more (a change only
/// looks at the contents it released: no pass over every file).
fn revoke_unused_urls(s: &mut State, released: Vec<String>) {
    for h in released {
        let held = s
            .files
            .values()
            .any(|e| e.state.has_local_copy && e.state.content_hash == h);
        if !held {
            if let Some(url) = s.urls.remove(&h) {
                let _ = web_sys::Url::revoke_object_url(&url);
            }
        }
    }
}

/// A typed error as a JS `Error` with `code` and `retryable`.
pub fn js_error(e: &ErrorInfo) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("FileSyncError");
    let _ = js_sys::Reflect::set(
        &err,
        &JsValue::from_str("code"),
        &JsValue::from_str(&e.code),
    );
    let _ = js_sys::Reflect::set(
        &err,
        &JsValue::from_str("retryable"),
        &JsValue::from_bool(e.retryable),
    );
    err.into()
}

fn from_js_error(v: &JsValue) -> ErrorInfo {
    let get = |k: &str| js_sys::Reflect::get(v, &JsValue::from_str(k)).ok();
    ErrorInfo {
        code: get("code")
            .and_then(|c| c.as_string())
            .unwrap_or_else(|| "unknown".into()),
        message: get("message")
            .and_then(|c| c.as_string())
            .unwrap_or_default(),
        retryable: get("retryable").and_then(|c| c.as_bool()).unwrap_or(false),
    }
}
