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
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::protocol::{
    channel_names, encode, handover_channel_name, history_json, may_take_over, usage_json,
    AppEvent, Envelope, ErrorInfo, FileState, Handover, HubConfig, StorageIssue, ToHub,
    TransferJob, VERSION,
};
use super::remote::RemoteConfig;
use super::sync;
use crate::core::collections::FxMap;
use crate::core::event::FileEvent;
use crate::core::store::{batch_ops, client_id_op, last_term_op, CorruptRecord, StateStore};
use crate::core::{
    ClientId, Command, ContentHash, Engine, EngineError, Event, FileId, Input, Millis, OpId,
    Output, StoreId, Term,
};
use crate::web::bytes::ByteStore;
use crate::web::idb::IdbStateStore;

mod handle;
mod lease;
mod perform;
mod recovery;
mod start;
mod view;

use handle::*;
use lease::*;
use perform::*;
use recovery::*;
use start::*;
use view::*;

/// What the hub sends: files as whole [`FileState`]s.
type ToTab = super::protocol::ToTab<FileState>;

use crate::web::locks::{hold_lock, HeldLock};

/// The lock a hub holds for as long as it lives: tabs waiting on it learn that it died.
pub fn alive_lock_name(store_id: &str) -> String {
    format!("filesync:hub-alive:{store_id}")
}

fn now() -> Millis {
    Millis(crate::web::global::now_ms() as u64)
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
    commits: FxMap<OpId, (Peer, u64)>,
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
    seen: FxMap<String, Millis>,
    /// The contents each tab has object URLs for (never evicted). A list: a few tabs.
    in_use: Vec<(String, Vec<ContentHash>)>,
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

/// The hub of one store. Create it once per SharedWorker and hand it every connecting port
/// (the JS class is `crate::api::WorkerHub`, exported as `Hub`).
pub struct Hub {
    state: Rc<RefCell<State>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// An idle hub; it starts when the first tab says hello.
    pub fn new() -> Hub {
        Hub {
            state: Rc::new_cyclic(|hub| {
                RefCell::new(State {
                    phase: Phase::Starting(Vec::new()),
                    ports: Vec::new(),
                    seen: FxMap::default(),
                    in_use: Vec::new(),
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
        ToHub::Commit { req, .. }
        | ToHub::Control { req, .. }
        | ToHub::History { req }
        | ToHub::Usage(req) => Some(*req),
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

fn broadcast(s: &mut State, msg: &ToTab) {
    s.outbox.push_all(s.ports.iter().map(|(_, p)| p), msg);
}

fn engine_error(e: &EngineError) -> ErrorInfo {
    info(e.code(), e.to_string(), false)
}

/// Results of async work, fed to the engine on the next turn.
enum HubEvent {
    Input(Input),
    Term(String, Option<Term>),
    /// The database was closed under the hub: its storage is gone.
    StorageLost,
}
