//! A tab's side of the runtime: connects to the store's hub (a SharedWorker), keeps a replica
//! of the files and status the hub broadcasts, stores the bytes of saved files locally before
//! committing, runs the leader election, and calls the app's callbacks.
//!
//! App callbacks never run while the tab's state is borrowed: calls are collected and made
//! after, and a callback that throws is ignored, so the runtime cannot be broken by one.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::protocol::{
    channel_names, encode, error, host_lock_name, worker_name, AppEvent, Control, Envelope,
    ErrorInfo, HubConfig, StorageIssue, TabFile, ToHub, ToTab,
};
use crate::api::js::{from_js_error, js_error};
use crate::core::collections::FxMap;
use crate::core::event::{
    check_path, FileCreated, FileDeleted, FileEvent, FileInfo, FileUpdated, MetadataPatch,
};
use crate::core::status::TransferStates;
use crate::core::{ContentHash, FileId, Millis, StoreId, SyncStatus};
use crate::web::bytes::ByteStore;
use crate::web::locks::{LeaderEvent, Leadership};

use super::reading;
use super::remote::RemoteConfig;
use super::synced;
use super::transfer::Transfers;

mod files;
mod leadership;
mod link;
mod listeners;
mod receive;
mod replica;
mod requests;

pub use files::StorageInfo;
use files::{held_url, revoke_unused_urls};
use listeners::push_event;
use requests::take_moved;

use crate::web::locks::when_free;

/// How often a tab whose view of the hub's lock is unreliable looks at it again.
const WATCH_RETRY_MS: u32 = 5_000;

/// Whether the hub spoke recently enough (it pings every second) that a free alive lock is
/// not news of its death.
fn hub_seems_alive(heard_at: f64, now: f64) -> bool {
    now - heard_at < 3_000.0
}

/// A JS callback and the value to call it with, made after the state is released.
type Call = (js_sys::Function, JsValue);

/// A file in the tab's replica: decoded, and as the frozen JS object apps get.
struct Entry {
    state: TabFile,
    js: JsValue,
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
    /// When other clients' files download here: `"eager"` (default) or `"lazy"`.
    #[serde(default)]
    pub downloads: crate::core::Downloads,
    /// The most bytes of file content to keep in this browser (default: no limit).
    #[serde(default)]
    pub storage_budget: Option<u64>,
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
    /// By id; apps get them in id order (see `replica::by_id`): a hash map plus a sort when
    /// the list is rebuilt costs less wasm than an ordered map of this type.
    files: FxMap<String, Entry>,
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
    /// Reads waiting for a file's bytes: its id, resolve, reject (see [`reading`]).
    on_local: Vec<(String, js_sys::Function, js_sys::Function)>,
    /// The death of the current hub is watched for (armed once per hub).
    watching_hub: bool,
    next_req: u64,
    pending: FxMap<u64, Pending>,
    next_listener: u64,
    subscribers: Vec<(u64, js_sys::Function)>,
    handlers: Vec<(u64, String, js_sys::Function)>,
    urls: FxMap<String, String>,
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
    crate::web::global::random_uuid().map_err(|e| web_error(&e))
}

impl Tab {
    /// Opens the store in this tab: local byte store, hub connection, leader campaign.
    pub async fn open(options: OpenOptions) -> Result<Tab, ErrorInfo> {
        let store = StoreId::new(options.store_id.clone())?;
        let remote =
            super::remote::parse_options(&options.remote, crate::web::global::absolute_url)
                .map_err(|m| error("invalid_options", m, false))?;
        // The files view the last hub saved, read while the hub starts (see `show_view`).
        let view = crate::web::idb::peek_view(&store);
        // Large saves and downloads hash in a dedicated worker running the same script.
        crate::web::hash::use_hash_worker(
            &options.worker_url,
            options.worker_type == WorkerKind::Module,
        );
        let shared_worker_exists = crate::web::global::has("SharedWorker");
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
            files: FxMap::default(),
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
            on_local: Vec::new(),
            watching_hub: false,
            next_req: 1,
            pending: FxMap::default(),
            next_listener: 1,
            subscribers: Vec::new(),
            handlers: Vec::new(),
            urls: FxMap::default(),
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
                downloads: options.downloads,
                budget: options.storage_budget,
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
            waiting.extend(
                s.on_local
                    .drain(..)
                    .map(|(_, resolve, reject)| (resolve, reject)),
            );
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
