//! The hub: the single owner of a store's engine, IndexedDB state and byte store in one
//! browser profile. It runs in a SharedWorker shared by every tab of the store, so there is
//! one writer and no cross-tab read-modify-write race; tabs talk to it over MessagePorts
//! ([`super::protocol`]).
//!
//! The hub is the engine's driver: it feeds inputs, performs commands (persist batches,
//! deletes, listings; transfers go to the leader tab), broadcasts changes and events to every
//! tab, and keeps one timer armed at the engine's `poll_timeout`. Messages to tabs are queued
//! while the state is borrowed and posted after, so nothing re-enters the engine mid-step.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::protocol::{
    channel_names, encode, handover_channel_name, history_json, may_take_over, AppEvent, Envelope,
    ErrorInfo, FileState, Handover, HubConfig, StorageIssue, ToHub, TransferJob, VERSION,
};
use super::remote::RemoteConfig;
use super::sync;
use crate::core::event::FileEvent;
use crate::core::store::{batch_ops, client_id_op, last_term_op, CorruptRecord, StateStore};
use crate::core::{
    ClientId, Command, Config, Engine, EngineError, Event, FileId, Input, Millis, Mode, OpId,
    Output, StoreId, Term,
};
use crate::web::bytes::ByteStore;
use crate::web::idb::IdbStateStore;

/// What the hub sends: files as whole [`FileState`]s.
type ToTab = super::protocol::ToTab<FileState>;

#[wasm_bindgen(inline_js = r#"
export function holdLock(name) {
  // `granted` resolves once the lock is held; it stays held until `release()` or until this
  // context dies.
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  const granted = new Promise((resolve) => {
    navigator.locks.request(name, { mode: 'exclusive' }, () => {
      resolve();
      return held;
    });
  });
  return { granted, release: () => release() };
}
"#)]
extern "C" {
    #[wasm_bindgen(catch, js_name = holdLock)]
    fn hold_lock(name: &str) -> Result<HeldLock, JsValue>;

    type HeldLock;
    #[wasm_bindgen(method, getter)]
    fn granted(this: &HeldLock) -> js_sys::Promise;
    #[wasm_bindgen(method)]
    fn release(this: &HeldLock);
}

/// The lock a hub holds for as long as it lives: tabs waiting on it learn that it died.
pub fn alive_lock_name(store_id: &str) -> String {
    format!("filesync:hub-alive:{store_id}")
}

fn now() -> Millis {
    Millis(js_sys::Date::now() as u64)
}

/// A tab as the hub reaches it: its MessagePort (SharedWorker), or its id on the tabs'
/// BroadcastChannel (a hub hosted by a tab).
#[derive(Clone)]
pub enum Peer {
    Port(web_sys::MessagePort),
    Tab {
        id: String,
        channel: web_sys::BroadcastChannel,
    },
}

impl Peer {
    /// Posts a message's JSON text.
    fn post(&self, msg: &str) {
        let _ = match self {
            Peer::Port(p) => p.post_message(&JsValue::from_str(msg)),
            Peer::Tab { id, channel } => {
                channel.post_message(&JsValue::from_str(&Envelope::wrap(Some(id), msg)))
            }
        };
    }
}

/// Messages to post once the state is no longer borrowed: each encoded once, whatever the
/// number of tabs it goes to.
#[derive(Default)]
struct Outbox(Vec<(Peer, Rc<str>)>);

impl Outbox {
    fn push(&mut self, peer: Peer, msg: &ToTab) {
        self.0.push((peer, encode(msg).into()));
    }

    fn push_all<'a>(&mut self, peers: impl Iterator<Item = &'a Peer>, msg: &ToTab) {
        let text: Rc<str> = encode(msg).into();
        self.0.extend(peers.map(|p| (p.clone(), text.clone())));
    }
}

struct Ready {
    /// The server (`None`: local-only).
    remote: Option<Rc<RemoteConfig>>,
    engine: Engine,
    store: IdbStateStore,
    bytes: Rc<ByteStore>,
    storage: String,
    corrupt: Vec<CorruptRecord>,
    /// App writes waiting to be durable: the tab port and its request number.
    commits: HashMap<OpId, (Peer, u64)>,
    next_op: u64,
    leader: Option<(String, Term)>,
    timer: Option<gloo_timers::callback::Timeout>,
    timer_at: Option<Millis>,
    feed: Feed,
    /// Files changed since the files view was last saved; the save waits on this timer.
    view_dirty: bool,
    view_timer: Option<gloo_timers::callback::Timeout>,
    /// How long after a change the view is saved: grows with what a save costs.
    view_delay_ms: u32,
    /// What the tabs were last told of the unconfirmed events (see [`ToTab::Parting`]).
    parting: crate::runtime::remote::PartingSent,
    /// The browser removed the storage under the hub and it is being opened again (see
    /// [`recover`]): app writes and term requests wait here, nothing is written to the old
    /// database, and nothing is read from the old byte store.
    recovering: Option<Vec<(Peer, ToHub)>>,
    /// The database's `close` handler (kept alive with the hub).
    on_close: Option<Closure<dyn FnMut()>>,
}

enum Phase {
    /// Waiting for the first tab's settings, then opening storage; messages wait too.
    Starting(Vec<(Peer, ToHub)>),
    Ready(Box<Ready>),
    Failed(ErrorInfo),
    /// Handed the store to a hub of the same or a newer version: refuses everything, for good
    /// (starting again would take the store back).
    Superseded(ErrorInfo),
}

struct State {
    phase: Phase,
    ports: Vec<(String, Peer)>,
    /// When each tab last answered a ping (or said anything that names it).
    seen: HashMap<String, Millis>,
    /// The leader term a takeover was asked for (once per term).
    takeover: Option<Term>,
    outbox: Outbox,
    feed: Feed,
    /// This hub's alive lock, once asked for (a start tried again after a failure holds it
    /// already); released when the hub hands the store over.
    alive: Option<HeldLock>,
    /// The alive lock asked for again each time the storage was cleared: the browser may have
    /// forgotten the first (then this one is granted) or not (then it waits behind it).
    alive_again: Vec<HeldLock>,
    /// Where other hubs of the store ask for it, once this one holds it.
    handover: Option<web_sys::BroadcastChannel>,
}

/// How the hub's async work (storage, network, leases) hands its results back: a queue the
/// hub drains on its next turn, and a weak link to wake it. Each hub has its own, so a page
/// can host the hubs of several stores.
#[derive(Clone)]
pub(super) struct Feed {
    events: Rc<RefCell<Vec<HubEvent>>>,
    hub: Weak<RefCell<State>>,
    live: Rc<LiveChannel>,
}

/// The live channel's stream in progress, and whether the channel must stop (the hub handed
/// the store over).
#[derive(Default)]
pub(super) struct LiveChannel {
    stopped: Cell<bool>,
    abort: RefCell<Option<Box<dyn Fn()>>>,
}

impl Feed {
    fn push(&self, event: HubEvent) {
        self.events.borrow_mut().push(event);
        if let Some(state) = self.hub.upgrade() {
            after(&state);
        }
    }

    /// Queues an engine input and wakes the hub.
    pub(super) fn input(&self, input: Input) {
        self.push(HubEvent::Input(input));
    }

    /// Whether the live channel must stop for good.
    pub(super) fn live_stopped(&self) -> bool {
        self.live.stopped.get()
    }

    /// How to abort the live stream in progress (`None` once it closed).
    pub(super) fn set_live_abort(&self, abort: Option<Box<dyn Fn()>>) {
        *self.live.abort.borrow_mut() = abort;
    }

    fn stop_live(&self) {
        self.live.stopped.set(true);
        let abort = self.live.abort.borrow_mut().take();
        if let Some(abort) = abort {
            abort();
        }
    }

    /// The engine's cursor (for the live channel), 0 before the hub is ready.
    pub(super) fn cursor(&self) -> crate::core::Seq {
        self.hub
            .upgrade()
            .and_then(|state| match &state.borrow().phase {
                Phase::Ready(r) => Some(r.engine.table().cursor()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// The hub of one store. Create it once per SharedWorker and hand it every connecting port.
#[wasm_bindgen]
pub struct Hub {
    state: Rc<RefCell<State>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

#[wasm_bindgen]
impl Hub {
    /// An idle hub; it starts when the first tab says hello.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Hub {
        Hub {
            state: Rc::new_cyclic(|hub| {
                RefCell::new(State {
                    phase: Phase::Starting(Vec::new()),
                    ports: Vec::new(),
                    seen: HashMap::new(),
                    takeover: None,
                    outbox: Outbox::default(),
                    feed: Feed {
                        events: Rc::default(),
                        hub: hub.clone(),
                        live: Rc::default(),
                    },
                    alive: None,
                    alive_again: Vec::new(),
                    handover: None,
                })
            }),
        }
    }

    /// Serves a tab's port (from the SharedWorker's `connect` event).
    pub fn connect(&self, port: web_sys::MessagePort) {
        let state = self.state.clone();
        let peer = Peer::Port(port.clone());
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                // A message we cannot read is not from our tab code: ignore it.
                let msg = e.data().as_string();
                if let Some(msg) = msg.and_then(|m| serde_json::from_str::<ToHub>(&m).ok()) {
                    receive(&state, &peer, msg);
                }
            });
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // The port lives as long as the worker: so does its handler.
        on_message.forget();
        port.start();
    }

    /// Serves the tabs of `store_id` over BroadcastChannels, for a hub hosted by a tab where
    /// SharedWorker does not exist. Announces itself so tabs say hello.
    pub fn serve_channel(&self, store_id: &str) -> Result<(), JsValue> {
        let (to_hub, to_tabs) = channel_names(store_id);
        let inbox = web_sys::BroadcastChannel::new(&to_hub)?;
        let outbox = web_sys::BroadcastChannel::new(&to_tabs)?;
        let state = self.state.clone();
        let reply = outbox.clone();
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                let Some(text) = e.data().as_string() else {
                    return;
                };
                let Ok(Envelope {
                    peer: Some(from),
                    msg,
                }) = serde_json::from_str(&text)
                else {
                    return;
                };
                if let Ok(msg) = serde_json::from_str::<ToHub>(msg.get()) {
                    let peer = Peer::Tab {
                        id: from,
                        channel: reply.clone(),
                    };
                    receive(&state, &peer, msg);
                }
            });
        inbox.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // The hub serves until the page goes away.
        on_message.forget();
        std::mem::forget(inbox);
        let ready = Envelope::wrap(None, &encode(&ToTab::HubReady));
        outbox.post_message(&JsValue::from_str(&ready))?;
        Ok(())
    }
}

fn receive(state: &Rc<RefCell<State>>, port: &Peer, msg: ToHub) {
    let start = {
        let mut s = state.borrow_mut();
        if let ToHub::Hello { tab, .. } = &msg {
            s.ports.retain(|(t, _)| t != tab);
            s.ports.push((tab.clone(), port.clone()));
        }
        if let ToHub::Hello { tab, .. } | ToHub::Pong { tab } | ToHub::Elected { tab } = &msg {
            s.seen.insert(tab.clone(), now());
        }
        // A hub that failed to start tries again for each new hello (the cause may be gone:
        // storage freed, a newer page closed); requests until then get the error.
        if matches!((&s.phase, &msg), (Phase::Failed(_), ToHub::Hello { .. })) {
            s.phase = Phase::Starting(Vec::new());
        }
        match &mut s.phase {
            Phase::Starting(queue) => {
                // The first hello carries the settings and starts the hub; anything before it
                // (a tab still talking to a hub that moved) waits in the queue.
                let hello = |m: &ToHub| matches!(m, ToHub::Hello { .. });
                let first = hello(&msg) && !queue.iter().any(|(_, m)| hello(m));
                queue.push((port.clone(), msg.clone()));
                first.then_some(msg)
            }
            Phase::Failed(err) | Phase::Superseded(err) => {
                let err = err.clone();
                refuse(&mut s.outbox, port, &msg, &err);
                None
            }
            Phase::Ready(r) if r.recovering.is_some() && holds_while_recovering(&msg) => {
                if let Some(held) = &mut r.recovering {
                    held.push((port.clone(), msg));
                }
                None
            }
            Phase::Ready(_) => {
                handle(&mut s, port, msg);
                None
            }
        }
    };
    if let Some(first) = start {
        let state = state.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let config = match first {
                ToHub::Hello { config, .. } => Some(config),
                _ => None,
            };
            let result = match config {
                Some(c) => start_ready(c, &state).await,
                None => Err(ErrorInfo {
                    code: "invalid_config".into(),
                    message: "the first message from a tab must carry the store settings".into(),
                    retryable: false,
                }),
            };
            let mut s = state.borrow_mut();
            let queued = match std::mem::replace(&mut s.phase, Phase::Starting(Vec::new())) {
                Phase::Starting(q) => q,
                other => {
                    s.phase = other;
                    Vec::new()
                }
            };
            match result {
                Ok(ready) => {
                    s.phase = Phase::Ready(Box::new(ready));
                    watch_leader(&state);
                    for (port, msg) in queued {
                        handle(&mut s, &port, msg);
                    }
                }
                Err(err) => {
                    s.phase = Phase::Failed(err.clone());
                    for (port, msg) in queued {
                        refuse(&mut s.outbox, &port, &msg, &err);
                    }
                }
            }
            drop(s);
            after(&state);
        });
    }
    after(state);
}

/// Answers a message the hub cannot serve because it failed to start: requests get the error,
/// a hello gets it as a `storage:error` event.
fn refuse(outbox: &mut Outbox, port: &Peer, msg: &ToHub, err: &ErrorInfo) {
    if let Some(req) = request_of(msg) {
        let error = Some(err.clone());
        outbox.push(port.clone(), &ToTab::Reply { req, error });
    }
    if matches!(msg, ToHub::Hello { .. }) {
        let error = err.clone();
        outbox.push(port.clone(), &ToTab::HubFailed { error });
    }
}

/// What waits while the hub opens its storage again: writes (they must land in the new
/// storage) and term requests (terms come from storage).
fn holds_while_recovering(msg: &ToHub) -> bool {
    matches!(msg, ToHub::Commit { .. } | ToHub::Elected { .. })
}

fn request_of(msg: &ToHub) -> Option<u64> {
    match msg {
        ToHub::Commit { req, .. } | ToHub::Control { req, .. } | ToHub::History { req } => {
            Some(*req)
        }
        _ => None,
    }
}

fn info(code: &str, message: impl Into<String>, retryable: bool) -> ErrorInfo {
    ErrorInfo {
        code: code.into(),
        message: message.into(),
        retryable,
    }
}

async fn start_ready(config: HubConfig, state: &Rc<RefCell<State>>) -> Result<Ready, ErrorInfo> {
    let store_id =
        StoreId::new(config.store_id.clone()).map_err(|e| info(e.code(), e.to_string(), false))?;
    // Held until this hub dies or hands the store over, so tabs can tell (a SharedWorker can
    // die with a renderer it shared, while its tabs live on). Taken before answering any tab;
    // once (a start tried again after a failure already holds it).
    let (held, feed) = {
        let s = state.borrow();
        (s.alive.is_some(), s.feed.clone())
    };
    if !held {
        // One channel: to ask for the store while another hub holds it, then to be asked.
        let handover =
            web_sys::BroadcastChannel::new(&handover_channel_name(store_id.as_str())).ok();
        if let Ok(lock) = hold_lock(&alive_lock_name(store_id.as_str())) {
            let granted = lock.granted();
            state.borrow_mut().alive = Some(lock);
            // Another hub holds the store (another version of the app, or a tab-hosted hub):
            // ask it for the store until it is ours, or until it refuses (it is newer).
            if let Some(holder) = wait_for_store(granted, handover.as_ref()).await {
                if let Some(lock) = state.borrow_mut().alive.take() {
                    // Not granted yet: the request goes, so a newer hub started later does not
                    // wait on this failed one.
                    lock.release();
                }
                if let Some(channel) = handover {
                    channel.close();
                }
                return Err(info(
                    "superseded",
                    format!(
                        "a newer version of the app ({holder}; this is {VERSION}) holds this store: reload the page"
                    ),
                    false,
                ));
            }
        }
        if let Some(channel) = handover {
            listen_for_handover(state, channel);
        }
    }
    // The byte store opens while IndexedDB loads: two independent reads.
    let bytes_id = store_id.clone();
    let opened = Rc::new(RefCell::new(None));
    let slot = opened.clone();
    let bytes_ready = wasm_bindgen_futures::future_to_promise(async move {
        *slot.borrow_mut() = Some(ByteStore::open(&bytes_id).await);
        Ok(JsValue::UNDEFINED)
    });
    let store = IdbStateStore::open(&store_id)
        .await
        .map_err(|e| info(e.code(), e.to_string(), false))?;
    let loaded = store
        .load()
        .await
        .map_err(|e| info(e.code(), e.to_string(), false))?;
    let client = match loaded.client_id.clone() {
        Some(c) => c,
        None => {
            let c = new_client_id().map_err(|e| info("storage", e, false))?;
            store
                .write(&[client_id_op(&c)])
                .await
                .map_err(|e| info(e.code(), e.to_string(), false))?;
            c
        }
    };
    let _ = wasm_bindgen_futures::JsFuture::from(bytes_ready).await;
    let bytes = opened
        .take()
        .ok_or_else(|| info("storage", "the byte store did not open", true))?
        .map_err(|e| info(e.code(), e.to_string(), false))?;
    let mode = match config.remote {
        None => Mode::LocalOnly,
        Some(_) => Mode::Remote,
    };
    let mut cfg = Config::new(store_id, client, mode);
    if let Some(ms) = config.progress_interval_ms {
        cfg.progress_interval_ms = ms;
    }
    if let Some(n) = config.max_uploads {
        cfg.max_uploads = n.max(1);
    }
    if let Some(n) = config.max_downloads {
        cfg.max_downloads = n.max(1);
    }
    if let Some(ms) = config.delete_grace_ms {
        cfg.delete_grace_ms = ms;
    }
    cfg.seed = (js_sys::Math::random() * 9.0e15) as u64;
    let store_for_sync = cfg.store.clone();
    let mut engine = Engine::new(cfg, loaded.snapshot, now());
    // What storage really holds wins over what rows say (see the engine's docs). Listing
    // thousands of entries takes a while: the hub serves tabs meanwhile, and the engine
    // applies what changes during the listing on top of it.
    let _ = engine.handle(now(), Input::InventoryStarted);
    let bytes = Rc::new(bytes);
    let lister = bytes.clone();
    let listed = feed.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if let Ok(listing) = lister.list().await {
            listed.input(Input::LocalInventory {
                hashes: listing.hashes,
            });
        }
    });
    if let Some(remote) = &config.remote {
        sync::watch_network(feed.clone());
        sync::run_live(remote.clone(), store_for_sync, feed.clone());
    }
    Ok(Ready {
        remote: config.remote.map(Rc::new),
        engine,
        store,
        storage: bytes.kind().as_str().to_string(),
        bytes,
        corrupt: loaded.corrupt,
        commits: HashMap::new(),
        next_op: 1,
        leader: None,
        timer: None,
        timer_at: None,
        feed,
        // A stored view matches the tables it was saved with; the first batch deletes it
        // (`arm_view` saves one when the store has none).
        view_dirty: false,
        view_timer: None,
        view_delay_ms: VIEW_DELAY_MS,
        parting: Default::default(),
        recovering: None,
        on_close: None,
    })
    .map(|mut r| {
        watch_storage(&mut r);
        r
    })
}

/// Notices when the browser removes the database under the hub ("Clear site data", eviction:
/// the origin's IndexedDB and OPFS go together) and starts [`recover`]ing.
fn watch_storage(r: &mut Ready) {
    let feed = r.feed.clone();
    let f = Closure::<dyn FnMut()>::new(move || feed.push(HubEvent::StorageLost));
    r.store.on_close(f.as_ref().unchecked_ref());
    r.on_close = Some(f);
}

/// Opens the storage again after the browser removed it, and starts the engine over on it from
/// what memory holds (`Input::StorageLost`). Writes and term requests made meanwhile wait and
/// run after, against the new storage. A failed reopen is tried again, slower each time.
fn recover(state: &Rc<RefCell<State>>, attempt: u32) {
    let store_id = {
        let s = state.borrow();
        let Phase::Ready(r) = &s.phase else { return };
        r.engine.config().store.clone()
    };
    let state = state.clone();
    wasm_bindgen_futures::spawn_local(async move {
        // What the new database must hold before anything else is written or read from it:
        // this client's id with its event counter (a crash must never leave the id without
        // the counter: numbers the server has would be used again) and the leadership term
        // floor (terms never go back). One transaction, done before term requests run.
        let first = {
            let s = state.borrow();
            let Phase::Ready(r) = &s.phase else { return };
            let mut ops = vec![
                client_id_op(&r.engine.config().client),
                last_term_op(r.engine.term()),
            ];
            ops.extend(batch_ops(&crate::core::engine::PersistBatch {
                next_event_n: r.engine.next_event_n(),
                ..Default::default()
            }));
            ops
        };
        let opened = async {
            // Clearing site data may drop the Web Locks held (the alive lock among them): ask
            // for it again, so tabs can still tell when this hub dies (their watches queue
            // behind it).
            if let Ok(lock) = hold_lock(&alive_lock_name(store_id.as_str())) {
                state.borrow_mut().alive_again.push(lock);
            }
            let store = IdbStateStore::open(&store_id)
                .await
                .map_err(|e| e.to_string())?;
            store.write(&first).await.map_err(|e| e.to_string())?;
            let bytes = ByteStore::open(&store_id)
                .await
                .map_err(|e| e.to_string())?;
            let present = bytes.list().await.map_err(|e| e.to_string())?.hashes;
            Ok::<_, String>((store, bytes, present))
        }
        .await;
        let (store, bytes, present) = match opened {
            Ok(o) => o,
            Err(message) => {
                // The browser may still be clearing: the first tries fail quietly.
                if attempt >= 2 {
                    let event = AppEvent::StorageError {
                        code: "storage".into(),
                        message: format!("could not open the storage again: {message}"),
                    };
                    broadcast(&mut state.borrow_mut(), &ToTab::event(&event));
                    after(&state);
                }
                let delay = (100u32 << attempt.min(8)).min(30_000);
                let again = state.clone();
                gloo_timers::callback::Timeout::new(delay, move || recover(&again, attempt + 1))
                    .forget();
                return;
            }
        };
        let held = {
            let mut s = state.borrow_mut();
            let Phase::Ready(r) = &mut s.phase else {
                return;
            };
            r.storage = bytes.kind().as_str().to_string();
            r.store = store;
            r.bytes = Rc::new(bytes);
            watch_storage(r);
            // The leader lock went too: every tab campaigns again (on the event below), and
            // the next leader's term, from the new storage, is above this one.
            if let Some((_, term)) = r.leader.take() {
                let _ = r.engine.handle(now(), Input::LeaderLost { term });
            }
            let _ = r.engine.handle(now(), Input::StorageLost { present });
            let held = r.recovering.take().unwrap_or_default();
            broadcast_leader(&mut s);
            held
        };
        {
            let mut s = state.borrow_mut();
            for (port, msg) in held {
                handle(&mut s, &port, msg);
            }
        }
        after(&state);
    });
}

/// Waits for the alive lock (`granted`), asking the hub that holds it for the store now and
/// every second. `Some(version)`: that hub, of a newer version, refused.
async fn wait_for_store(
    granted: js_sys::Promise,
    channel: Option<&web_sys::BroadcastChannel>,
) -> Option<String> {
    let Some(channel) = channel else {
        let _ = wasm_bindgen_futures::JsFuture::from(granted).await;
        return None;
    };
    let mut settle = None;
    let refused = js_sys::Promise::new(&mut |resolve, _| settle = Some(resolve));
    let on_refusal =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            let text = e.data().as_string().unwrap_or_default();
            if let Some(Handover::Refuse { asker, holder }) = Handover::decode(&text) {
                if let (true, Some(settle)) = (asker == VERSION, &settle) {
                    let _ = settle.call1(&JsValue::UNDEFINED, &JsValue::from_str(&holder));
                }
            }
        });
    channel.set_onmessage(Some(on_refusal.as_ref().unchecked_ref()));
    let ask = {
        let channel = channel.clone();
        let text = JsValue::from_str(
            &Handover::Ask {
                version: VERSION.into(),
            }
            .encode(),
        );
        move || {
            let _ = channel.post_message(&text);
        }
    };
    ask();
    let asking = gloo_timers::callback::Interval::new(1_000, ask);
    // The lock resolves with `undefined`, a refusal with the holder's version.
    let first = js_sys::Promise::race(&js_sys::Array::of2(&granted, &refused));
    let won = wasm_bindgen_futures::JsFuture::from(first).await;
    drop(asking);
    channel.set_onmessage(None);
    drop(on_refusal);
    won.ok().and_then(|v| v.as_string())
}

/// Hands the store over when a hub of the same or a newer version asks for it; tells an older
/// one that it will not.
fn listen_for_handover(state: &Rc<RefCell<State>>, channel: web_sys::BroadcastChannel) {
    let hub = Rc::downgrade(state);
    let reply = channel.clone();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            let text = e.data().as_string().unwrap_or_default();
            let (Some(state), Some(Handover::Ask { version })) =
                (hub.upgrade(), Handover::decode(&text))
            else {
                return;
            };
            if may_take_over(&version) {
                hand_over(&state, &version);
            } else {
                let refusal = Handover::Refuse {
                    asker: version,
                    holder: VERSION.into(),
                };
                let _ = reply.post_message(&JsValue::from_str(&refusal.encode()));
            }
        });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // Listens for as long as the hub holds the store (the channel closes when it hands it over).
    on_message.forget();
    state.borrow_mut().handover = Some(channel);
}

/// Stops for good and lets the asking hub have the store: no more writes (the database
/// connection closes; transactions already made finish first, before the other hub's), the
/// live channel closes, tabs learn they are superseded (they stop and ask for a reload), and
/// the alive lock goes last.
fn hand_over(state: &Rc<RefCell<State>>, asker: &str) {
    let mut s = state.borrow_mut();
    // A hub still starting may be writing (a new client id); the asker asks again every
    // second, and gets the store once this hub is ready (or failed).
    if matches!(s.phase, Phase::Superseded(_) | Phase::Starting(_)) {
        return;
    }
    let error = info(
        "superseded",
        format!(
            "another version of the app ({asker}; this is {VERSION}) took over this store: reload the page"
        ),
        false,
    );
    if let Phase::Ready(r) = std::mem::replace(&mut s.phase, Phase::Superseded(error.clone())) {
        r.store.close();
    }
    s.feed.stop_live();
    broadcast(&mut s, &ToTab::HubFailed { error });
    if let Some(channel) = s.handover.take() {
        channel.set_onmessage(None);
        channel.close();
    }
    let lock = s.alive.take();
    let again = std::mem::take(&mut s.alive_again);
    drop(s);
    after(state);
    for lock in again.into_iter().chain(lock) {
        lock.release();
    }
}

/// A client id for this browser profile: random, stored once, never derived from anything a
/// duplicated tab would copy.
fn new_client_id() -> Result<ClientId, String> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .map_err(|_| "crypto is missing".to_string())?;
    let f = js_sys::Reflect::get(&crypto, &JsValue::from_str("randomUUID"))
        .map_err(|_| "crypto.randomUUID is missing".to_string())?;
    let f: js_sys::Function = f
        .dyn_into()
        .map_err(|_| "crypto.randomUUID is missing".to_string())?;
    let id = f
        .call0(&crypto)
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| "crypto.randomUUID failed".to_string())?;
    ClientId::new(id).map_err(|e| e.to_string())
}

fn broadcast(s: &mut State, msg: &ToTab) {
    s.outbox.push_all(s.ports.iter().map(|(_, p)| p), msg);
}

fn engine_error(e: &EngineError) -> ErrorInfo {
    info(e.code(), e.to_string(), false)
}

/// Handles one message with the hub ready.
fn handle(s: &mut State, port: &Peer, msg: ToHub) {
    let Phase::Ready(r) = &mut s.phase else {
        return;
    };
    let now = now();
    let mut replies = Vec::new();
    match msg {
        ToHub::Hello { .. } => {
            let files = r.engine.files().map(|f| FileState::from_view(&f)).collect();
            let issues = r
                .corrupt
                .iter()
                .map(|c| StorageIssue {
                    table: c.table.name().into(),
                    key: c.key.to_string(),
                    code: c.error.code().into(),
                    message: c.error.to_string(),
                })
                .collect();
            replies.push(ToTab::Snapshot {
                files,
                leader: r.leader.as_ref().map(|(t, _)| t.clone()),
                storage: r.storage.clone(),
                issues,
                online: r.engine.is_online(),
                unconfirmed: r.engine.unconfirmed_events(),
                provisional: false,
            });
            // What it sends if it is the last tab to go (the others got it as it changed).
            let durable = r.engine.durable_unconfirmed();
            if !durable.is_empty() {
                replies.push(parting_message(0, durable));
            }
        }
        ToHub::Commit { req, event } => match FileEvent::from_wire(&event) {
            Err(e) => replies.push(ToTab::Reply {
                req,
                error: Some(info(e.code(), e.to_string(), false)),
            }),
            Ok(event) => {
                let op = OpId(r.next_op);
                r.next_op += 1;
                match r.engine.handle(
                    now,
                    Input::Commit {
                        op,
                        event: Box::new(event),
                    },
                ) {
                    Ok(()) => {
                        r.commits.insert(op, (port.clone(), req));
                    }
                    Err(e) => replies.push(ToTab::Reply {
                        req,
                        error: Some(engine_error(&e)),
                    }),
                }
            }
        },
        ToHub::Control { req, control } => {
            use super::protocol::Control;
            let file = |id: &str| FileId::new(id.to_string());
            let input = match control {
                Control::Prioritize { file_id } => {
                    file(&file_id).map(|file| Input::Prioritize { file })
                }
                Control::Cancel { file_id } => file(&file_id).map(|file| Input::Cancel { file }),
                Control::RetryErrors => Ok(Input::RetryErrors),
                Control::SyncNow => Ok(Input::SyncNow),
                Control::Pause => Ok(Input::Pause),
                Control::Resume => Ok(Input::Resume),
            };
            let error = match input {
                Err(e) => Some(info(e.code(), e.to_string(), false)),
                Ok(input) => r.engine.handle(now, input).err().map(|e| engine_error(&e)),
            };
            replies.push(ToTab::Reply { req, error });
        }
        ToHub::History { req } => {
            let entries = history_json(r.engine.history().iter());
            replies.push(ToTab::History { req, entries });
        }
        ToHub::Elected { tab } => {
            let store = r.store.clone();
            let state_tab = tab.clone();
            let feed = r.feed.clone();
            // Terms come from storage, atomically: never reused, even across hub restarts.
            wasm_bindgen_futures::spawn_local(async move {
                let term = store.next_term().await;
                feed.push(HubEvent::Term(state_tab, term.ok()));
            });
        }
        ToHub::Resigned { term } => {
            if r.leader.as_ref().is_some_and(|(_, t)| t.0 == term) {
                r.leader = None;
                let _ = r.engine.handle(now, Input::LeaderLost { term: Term(term) });
                broadcast_leader(s);
            }
        }
        ToHub::Bye { tab } => {
            s.ports.retain(|(t, _)| *t != tab);
            s.seen.remove(&tab);
        }
        ToHub::Pong { .. } => {}
        ToHub::ViewUnreadable => r.view_dirty = true,
        ToHub::Transfer { report } => {
            // Reports of a fenced-off term or an aborted task are refused by the engine.
            let _ = r.engine.handle(now, report.into_input());
        }
    }
    for m in &replies {
        s.outbox.push(port.clone(), m);
    }
}

fn broadcast_leader(s: &mut State) {
    let Phase::Ready(r) = &s.phase else { return };
    let msg = ToTab::Leader {
        tab: r.leader.as_ref().map(|(t, _)| t.clone()),
        term: r.leader.as_ref().map_or(0, |(_, t)| t.0),
    };
    broadcast(s, &msg);
}

/// Results of async work, fed to the engine on the next turn.
enum HubEvent {
    Input(Input),
    Term(String, Option<Term>),
    /// The database was closed under the hub: its storage is gone.
    StorageLost,
}

/// Drains the engine and the queues, performs commands, posts messages, re-arms the timer.
fn after(state: &Rc<RefCell<State>>) {
    let queue = state.borrow().feed.events.clone();
    loop {
        let events: Vec<HubEvent> = std::mem::take(&mut *queue.borrow_mut());
        let mut s = state.borrow_mut();
        let mut leader_changed = false;
        let mut waiting = false;
        let mut start_recovery = false;
        let mut lost_terms = Vec::new();
        if let Phase::Ready(r) = &mut s.phase {
            for ev in events {
                match ev {
                    HubEvent::Input(input) => {
                        let _ = r.engine.handle(now(), input);
                    }
                    HubEvent::Term(tab, Some(term)) => {
                        if r.engine
                            .handle(now(), Input::LeaderElected { term })
                            .is_ok()
                        {
                            r.leader = Some((tab, term));
                            leader_changed = true;
                        }
                    }
                    HubEvent::Term(tab, None) => {
                        // Storage went while the term was handed out: ask the new storage.
                        if r.recovering.is_some() {
                            lost_terms.push(tab);
                        }
                    }
                    HubEvent::StorageLost => {
                        if r.recovering.is_none() {
                            r.recovering = Some(Vec::new());
                            start_recovery = true;
                        }
                    }
                }
            }
        } else if matches!(s.phase, Phase::Starting(_)) && !events.is_empty() {
            // Results that arrive before the hub is ready wait for it.
            let mut q = queue.borrow_mut();
            let later = std::mem::replace(&mut *q, events);
            q.extend(later);
            waiting = true;
        }
        if leader_changed {
            broadcast_leader(&mut s);
        }
        for tab in lost_terms {
            let port = s
                .ports
                .iter()
                .find(|(t, _)| *t == tab)
                .map(|(_, p)| p.clone());
            if let (Some(port), Phase::Ready(r)) = (port, &mut s.phase) {
                if let Some(held) = &mut r.recovering {
                    held.push((port, ToHub::Elected { tab }));
                }
            }
        }
        drain(&mut s);
        let outbox = std::mem::take(&mut s.outbox);
        drop(s);
        for (peer, msg) in outbox.0 {
            peer.post(&msg);
        }
        if start_recovery {
            recover(state, 0);
        }
        if waiting || queue.borrow().is_empty() {
            break;
        }
    }
    arm_timer(state);
    arm_view(state);
}

/// How long after a change of files the view is saved, at least (at most one save per this
/// period). A large store's view costs more to build and write (10,000 files: ~5 MB of JSON,
/// tens of ms), so the period grows to keep saves under ~5% of the time, up to a minute.
const VIEW_DELAY_MS: u32 = 1_000;
const VIEW_MAX_DELAY_MS: u32 = 60_000;

/// The snapshot a tab gets from the files view: what the state shows, before it is loaded.
fn view_of(r: &Ready) -> String {
    encode(&ToTab::Snapshot {
        files: r.engine.files().map(|f| FileState::from_view(&f)).collect(),
        leader: None,
        storage: r.storage.clone(),
        issues: Vec::new(),
        online: true,
        unconfirmed: r.engine.unconfirmed_events(),
        provisional: true,
    })
}

/// Saves the files view [`VIEW_DELAY_MS`] after files changed, so the next cold start shows
/// them at once (see [`IdbStateStore::save_view`]).
fn arm_view(state: &Rc<RefCell<State>>) {
    let mut s = state.borrow_mut();
    let Phase::Ready(r) = &mut s.phase else {
        return;
    };
    // Files changed since the last save, or a batch deleted the view (or there never was one).
    let due = r.view_dirty || !r.store.has_view();
    if !due || r.view_timer.is_some() {
        return;
    }
    let state = state.clone();
    r.view_timer = Some(gloo_timers::callback::Timeout::new(
        r.view_delay_ms,
        move || {
            let started = js_sys::Date::now();
            let (store, view) = {
                let mut s = state.borrow_mut();
                let Phase::Ready(r) = &mut s.phase else {
                    return;
                };
                r.view_timer = None;
                if r.store.writing() {
                    // It would be refused: build it once the batches are done.
                    drop(s);
                    arm_view(&state);
                    return;
                }
                r.view_dirty = false;
                (r.store.clone(), view_of(r))
            };
            wasm_bindgen_futures::spawn_local(async move {
                let saved = store.save_view(&view).await;
                let cost = (js_sys::Date::now() - started) as u32;
                if let Phase::Ready(r) = &mut state.borrow_mut().phase {
                    r.view_delay_ms = match saved {
                        Ok(_) => cost.saturating_mul(20).max(VIEW_DELAY_MS),
                        // Storage refused it (quota?): try again, less often.
                        Err(_) => r.view_delay_ms.saturating_mul(2),
                    }
                    .min(VIEW_MAX_DELAY_MS);
                    // Not saved (a batch was in flight, or storage failed): later.
                    r.view_dirty |= saved != Ok(true);
                }
                arm_view(&state);
            });
        },
    ));
}

fn drain(s: &mut State) {
    let Phase::Ready(r) = &mut s.phase else {
        return;
    };
    let mut out = Vec::new();
    while let Some(o) = r.engine.poll_output() {
        out.push(o);
    }
    // (port, message); no port: to every tab.
    let mut msgs: Vec<(Option<Peer>, ToTab)> = Vec::new();
    let mut to_leader = Vec::new();
    for o in out {
        match o {
            Output::Command(c) => to_leader.extend(perform(r, c)),
            Output::Event(Event::Committed { op }) => {
                if let Some((port, req)) = r.commits.remove(&op) {
                    msgs.push((Some(port), ToTab::Reply { req, error: None }));
                }
            }
            Output::Event(Event::FilesChanged { files }) => {
                r.view_dirty = true;
                let mut changed = Vec::new();
                let mut removed = Vec::new();
                for id in files {
                    match r.engine.file(&id).filter(|f| f.row.is_live()) {
                        Some(f) => changed.push(FileState::from_view(&f)),
                        None => removed.push(id.to_string()),
                    }
                }
                msgs.push((
                    None,
                    ToTab::Changed {
                        files: changed,
                        removed,
                        unconfirmed: r.engine.unconfirmed_events(),
                    },
                ));
            }
            Output::Event(e) => {
                if let Some(event) = AppEvent::from_engine(&e) {
                    msgs.push((None, ToTab::event(&event)));
                }
            }
        }
    }
    // Transfers go to the leader tab; without one (it just left) the engine hears
    // `LeaderLost` and queues them again for the next leader.
    let leader = r.leader.as_ref().map(|(t, _)| t.clone());
    let leader_peer = s
        .ports
        .iter()
        .find(|(t, _)| Some(t) == leader.as_ref())
        .map(|(_, p)| p.clone());
    // The tabs' copy of the unconfirmed events, for the push a closing page sends.
    if r.remote.is_some() {
        let durable = r.engine.durable_unconfirmed();
        if let Some((sent, new)) = crate::runtime::remote::parting_delta(r.parting, durable) {
            r.parting = sent;
            msgs.push((None, parting_message(sent.below, new)));
        }
    }
    // Events first: a tab learns of a change (storage cleared, a file gone) before it is asked
    // to run a transfer that depends on it.
    for (port, msg) in &msgs {
        match port {
            Some(p) => s.outbox.push(p.clone(), msg),
            None => broadcast(s, msg),
        }
    }
    if let Some(p) = leader_peer {
        for msg in &to_leader {
            s.outbox.push(p.clone(), msg);
        }
    }
}

/// Tells the tabs that unconfirmed events below `below` are gone and `new` ones are there.
fn parting_message(below: u64, new: &[crate::core::event::ClientEvent]) -> ToTab {
    ToTab::Parting {
        below,
        ns: new.iter().map(|e| e.id.n).collect(),
        events: new
            .iter()
            .map(crate::runtime::remote::envelope_json)
            .collect(),
    }
}

/// How often the hub pings its tabs.
const PING_MS: u32 = 1_000;
/// A leader that answered no ping for this long is taken over by a tab that did. Pings are
/// messages, not timers, so a hidden tab (whose timers the browser throttles) still answers;
/// a frozen or hung one does not.
const LEASE_MS: u64 = 4_000;

/// Pings every tab each [`PING_MS`] for as long as the hub lives, and moves leadership away
/// from a leader that stopped answering (a frozen tab keeps its Web Lock forever, so the lock
/// alone would never move): the freshest other tab is asked to steal the lock, and the term it
/// then gets fences off whatever the frozen one sends when it wakes.
fn watch_leader(state: &Rc<RefCell<State>>) {
    let hub = Rc::downgrade(state);
    let tick = gloo_timers::callback::Interval::new(PING_MS, move || {
        let Some(state) = hub.upgrade() else {
            return;
        };
        {
            let mut s = state.borrow_mut();
            broadcast(&mut s, &ToTab::Ping);
            check_lease(&mut s, now());
        }
        after(&state);
    });
    // Ticks for as long as the hub lives.
    tick.forget();
}

fn check_lease(s: &mut State, now: Millis) {
    let Phase::Ready(r) = &s.phase else { return };
    let Some((leader, term)) = r.leader.clone() else {
        return;
    };
    let fresh = |t: &str| s.seen.get(t).is_some_and(|at| now.since(*at) < LEASE_MS);
    if fresh(&leader) || s.takeover == Some(term) {
        return;
    }
    let heir = s
        .ports
        .iter()
        .filter(|(t, _)| *t != leader && fresh(t))
        .max_by_key(|(t, _)| s.seen.get(t).copied())
        .map(|(_, p)| p.clone());
    if let Some(heir) = heir {
        s.takeover = Some(term);
        s.outbox.push(heir, &ToTab::TakeOver);
    }
}

/// Performs one engine command asynchronously; its result comes back as an input. Returns
/// the message for the leader tab when the command is a transfer's.
fn perform(r: &mut Ready, c: Command) -> Option<ToTab> {
    let feed = r.feed.clone();
    match c {
        // The storage is gone and not yet opened again: `Input::StorageLost` drops the batch
        // and writes everything again, and there are no bytes to delete or list.
        Command::Persist(_) | Command::DeleteLocalBytes { .. } | Command::ListLocalBytes
            if r.recovering.is_some() => {}
        Command::Persist(batch) => {
            let store = r.store.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let input = match store.write(&batch_ops(&batch)).await {
                    Ok(()) => Input::Persisted { batch: batch.id },
                    Err(e) => Input::PersistFailed {
                        batch: batch.id,
                        failure: crate::core::Failure::Storage {
                            quota: e.code() == "quota_exceeded",
                            message: e.to_string(),
                        },
                    },
                };
                feed.input(input);
            });
        }
        Command::DeleteLocalBytes { hash } => {
            let bytes = r.bytes.clone();
            wasm_bindgen_futures::spawn_local(async move {
                // Best effort: a leftover is found again by the next inventory.
                let _ = bytes.delete(&hash).await;
            });
        }
        Command::ListLocalBytes => {
            let bytes = r.bytes.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(listing) = bytes.list().await {
                    feed.input(Input::LocalBytesFound {
                        hashes: listing.hashes,
                    });
                }
            });
        }
        Command::StartTransfer(order) => {
            return Some(ToTab::Transfer {
                job: TransferJob::from_order(&order),
            })
        }
        Command::AbortTransfer { task } => return Some(ToTab::Abort { task: task.0 }),
        Command::Push { request, events } => {
            if let Some(remote) = &r.remote {
                sync::push(
                    remote.clone(),
                    r.engine.config().store.clone(),
                    request,
                    events,
                    feed,
                );
            }
        }
        Command::Pull {
            request,
            after,
            limit,
        } => {
            if let Some(remote) = &r.remote {
                sync::pull(
                    remote.clone(),
                    r.engine.config().store.clone(),
                    request,
                    after,
                    limit,
                    feed,
                );
            }
        }
        Command::CheckHealth => {
            if let Some(remote) = &r.remote {
                sync::check_health(remote.clone(), feed);
            }
        }
        Command::DeleteRemote { task, term, key } => {
            if let Some(remote) = &r.remote {
                sync::delete_remote(remote.clone(), task, term, key, feed);
            }
        }
    }
    None
}

fn arm_timer(state: &Rc<RefCell<State>>) {
    let mut s = state.borrow_mut();
    let Phase::Ready(r) = &mut s.phase else {
        return;
    };
    let next = r.engine.poll_timeout();
    if next == r.timer_at {
        return;
    }
    r.timer_at = next;
    r.timer = next.map(|at| {
        let delay = at.since(now()).min(u32::MAX as u64) as u32;
        let state = state.clone();
        gloo_timers::callback::Timeout::new(delay, move || {
            if let Phase::Ready(r) = &mut state.borrow_mut().phase {
                r.timer_at = None;
                r.engine.handle_timeout(now());
            }
            after(&state);
        })
    });
}
