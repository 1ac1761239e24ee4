//! Leader election over Web Locks: one exclusive lock per store, `filesync:leader:<storeId>`.
//!
//! A [`Leadership`] is one campaign of one context (tab, dedicated worker, SharedWorker) for the
//! leader lock of a store. It asks the browser's lock manager for the lock
//! (`navigator.locks.request(name, {mode: "exclusive", signal}, callback)`); the manager grants
//! it to one requester at a time, in request order, across every context of the origin. When the
//! callback runs, this context holds the lock; the callback returns a promise that stays pending
//! until [`Leadership::resign`] resolves it, so the lock is held exactly as long as the campaign
//! wants it, and the browser releases it by itself when the context goes away (tab closed,
//! worker terminated, renderer crashed), which is what makes failover prompt.
//!
//! # Contract
//!
//! * `on_change` receives [`LeaderEvent::Elected`] when the lock is granted, [`LeaderEvent::Lost`]
//!   when it is taken away while held (another context requested it with `steal: true`), and
//!   [`LeaderEvent::Failed`] when the request ends with an error before the lock was granted.
//!   Each campaign reports at most one `Elected` per request, and nothing after [`resign`].
//! * [`resign`] (and dropping the `Leadership`) is final: it releases a held lock, or withdraws a
//!   waiting request from the queue through its `AbortSignal`. It emits no event: the caller
//!   knows it resigned. If the browser granted the lock just before the withdrawal landed, the
//!   grant is handed back at once and never reported.
//! * [`steal`] breaks the current holder's lock (`steal: true`) and takes it; the victim's request
//!   rejects with an `AbortError`, which its campaign reports as `Lost`. Meant for a runtime that
//!   has decided the holder is frozen; a leader that can be stolen from must stop writing as soon
//!   as it sees `Lost`, and the hub's terms fence off whatever it still sends.
//! * No term is decided here: the hub assigns terms to whoever reports `Elected`. This module only
//!   says whether this context holds the lock.
//! * `on_change` never runs while this module's state is borrowed, so it may call [`resign`],
//!   [`steal`] or drop the `Leadership`. Events are queued and delivered in order.
//! * Every browser API is reached through the global scope, so the same code runs in a page, a
//!   dedicated worker and a SharedWorker. JS failures become [`WebError`]s (no Web Locks in this
//!   scope: `Unavailable`); nothing here panics.
//!
//! [`resign`]: Leadership::resign
//! [`steal`]: Leadership::steal

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::{Rc, Weak};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{AbortController, LockManager, LockMode, LockOptions};

use super::error::WebError;
use super::global::lock_manager;

#[wasm_bindgen::prelude::wasm_bindgen(module = "/src/web/locks.js")]
extern "C" {
    /// Holds an exclusive lock for as long as this context lives, or until released.
    #[wasm_bindgen(catch, js_name = holdLock)]
    pub fn hold_lock(name: &str) -> Result<HeldLock, JsValue>;

    pub type HeldLock;
    /// Resolves once the lock is held.
    #[wasm_bindgen(method, getter)]
    pub fn granted(this: &HeldLock) -> js_sys::Promise;
    #[wasm_bindgen(method)]
    pub fn release(this: &HeldLock);

    /// Resolves when nobody holds `name` exclusively: its holder died.
    #[wasm_bindgen(catch, js_name = whenFree)]
    pub fn when_free(name: &str) -> Result<js_sys::Promise, JsValue>;
}
use crate::core::StoreId;

const API: &str = "navigator.locks";

/// The name of the leader lock of `store`: `filesync:leader:<storeId>`.
pub fn leader_lock_name(store: &StoreId) -> String {
    format!("filesync:leader:{}", store.as_str())
}

/// What happened to a campaign's hold on the leader lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// This context now holds the leader lock.
    Elected,
    /// The lock was taken away while held (another context stole it). Stop acting as leader.
    Lost,
    /// The request ended with an error before the lock was granted (for example the document
    /// became inactive, or the origin may not use Web Locks). The campaign is over.
    Failed(WebError),
}

/// Holders and waiters of one lock name, from `navigator.locks.query()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockSnapshotInfo {
    /// Requests holding the lock (0 or 1 for an exclusive lock).
    pub held: u32,
    /// Requests waiting for it.
    pub pending: u32,
}

/// Counts holders and waiters of `store`'s leader lock across the whole origin.
///
/// A snapshot, for diagnostics and tests, not for deciding anything: a release reaches the lock
/// manager only after the held promise's reaction has run, so a query issued right after
/// [`Leadership::resign`] of the holder can still list it (seen in Chromium 156), while a
/// withdrawn waiting request is gone at once. Whether a lock is free is best learned by
/// campaigning for it.
pub async fn query_holders(store: &StoreId) -> Result<LockSnapshotInfo, WebError> {
    let manager = lock_manager()?;
    let name = leader_lock_name(store);
    let snapshot = JsFuture::from(manager.query())
        .await
        .map_err(|e| WebError::from_js(API, &e))?;
    let snapshot: web_sys::LockManagerSnapshot = snapshot.unchecked_into();
    let count = |list: Option<js_sys::Array<web_sys::LockInfo>>| -> u32 {
        list.map(|list| {
            list.iter()
                .filter(|info| info.get_name().as_deref() == Some(name.as_str()))
                .count() as u32
        })
        .unwrap_or(0)
    };
    Ok(LockSnapshotInfo {
        held: count(snapshot.get_held()),
        pending: count(snapshot.get_pending()),
    })
}

/// One context's campaign for the leader lock of a store. Dropping it resigns.
pub struct Leadership {
    shared: Rc<Shared>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("name", &self.shared.name)
            .field("phase", &self.shared.state.borrow().phase)
            .finish()
    }
}

impl Leadership {
    /// Requests the exclusive leader lock of `store`. Returns at once; `on_change` hears
    /// [`LeaderEvent::Elected`] when the lock is granted, which may be never if another context
    /// holds it forever.
    pub fn campaign(
        store: &StoreId,
        on_change: impl FnMut(LeaderEvent) + 'static,
    ) -> Result<Leadership, WebError> {
        Leadership::campaign_for(leader_lock_name(store), on_change)
    }

    /// [`Leadership::campaign`] for any exclusive lock (the tab-hosted hub's host lock).
    pub fn campaign_for(
        name: String,
        on_change: impl FnMut(LeaderEvent) + 'static,
    ) -> Result<Leadership, WebError> {
        let manager = lock_manager()?;
        let shared = Rc::new(Shared {
            name,
            state: RefCell::new(State {
                request: 0,
                phase: Phase::Waiting,
                abort: None,
                release: None,
            }),
            events: RefCell::new(VecDeque::new()),
            on_change: RefCell::new(Box::new(on_change)),
        });
        request(&shared, &manager, false)?;
        Ok(Leadership { shared })
    }

    /// Whether this context holds the lock now (elected and not lost or resigned).
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Whether [`resign`](Self::resign) was called.
    pub fn is_resigned(&self) -> bool {
        self.shared.state.borrow().phase == Phase::Resigned
    }

    /// The name of the lock this campaign is for.
    pub fn lock_name(&self) -> &str {
        &self.shared.name
    }

    /// Gives up: releases the lock if held, withdraws the request if still waiting. Final and
    /// idempotent; no event follows.
    pub fn resign(&self) {
        let (abort, release) = {
            let mut st = self.shared.state.borrow_mut();
            if st.phase == Phase::Resigned {
                return;
            }
            st.phase = Phase::Resigned;
            (st.abort.take(), st.release.take())
        };
        // No borrow is held here: aborting and resolving settle promises, whose handlers run
        // later as microtasks and take the state again.
        if let Some(controller) = abort {
            controller.abort();
        }
        if let Some(release) = release {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }

    /// Takes the lock from its current holder (`steal: true`), for a runtime that has decided
    /// the holder is frozen. The holder's campaign gets [`LeaderEvent::Lost`]; this one gets
    /// [`LeaderEvent::Elected`] as soon as the manager grants it, ahead of every waiter. A
    /// waiting request of this campaign is withdrawn first. No-op when already leader; an error
    /// after [`resign`](Self::resign).
    pub fn steal(&self) -> Result<(), WebError> {
        match self.shared.state.borrow().phase {
            Phase::Leader => return Ok(()),
            Phase::Resigned => {
                return Err(WebError::Aborted {
                    message: format!("the campaign for {} was resigned", self.shared.name),
                })
            }
            Phase::Waiting | Phase::Lost | Phase::Failed => {}
        }
        // Fails before anything changes, so a waiting request stays withdrawable.
        let manager = lock_manager()?;
        let previous = self.shared.state.borrow_mut().abort.take();
        // The new request supersedes the old one before the old one is withdrawn, so whatever
        // the withdrawal settles is ignored. (A steal request needs no AbortController and
        // cannot fail here.)
        let issued = request(&self.shared, &manager, true);
        if let Some(controller) = previous {
            controller.abort();
        }
        issued
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.resign();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The current request is queued (or granted and its callback not run yet).
    Waiting,
    /// The current request holds the lock.
    Leader,
    /// The lock was stolen while held.
    Lost,
    /// The current request failed before it was granted.
    Failed,
    /// `resign` was called; final.
    Resigned,
}

struct State {
    /// Number of the current request; grants and settlements of older ones are stale.
    request: u64,
    phase: Phase,
    /// Withdraws the current request while it waits (`None` for a steal, which cannot carry a
    /// signal, and once granted).
    abort: Option<AbortController>,
    /// Resolves the promise the granted callback returned, which releases the lock.
    release: Option<js_sys::Function>,
}

struct Shared {
    name: String,
    state: RefCell<State>,
    events: RefCell<VecDeque<LeaderEvent>>,
    on_change: RefCell<Box<dyn FnMut(LeaderEvent)>>,
}

impl Shared {
    fn is_leader(&self) -> bool {
        self.state.borrow().phase == Phase::Leader
    }

    fn emit(&self, event: LeaderEvent) {
        self.events.borrow_mut().push_back(event);
        self.flush();
    }

    /// Delivers queued events with no state borrowed. If `on_change` is already running further
    /// up the stack, that call's loop delivers them when it returns.
    fn flush(&self) {
        loop {
            let Ok(mut on_change) = self.on_change.try_borrow_mut() else {
                return;
            };
            let Some(event) = self.events.borrow_mut().pop_front() else {
                return;
            };
            // A resign between queueing and delivery cancels the election.
            if event == LeaderEvent::Elected && !self.is_leader() {
                continue;
            }
            on_change(event);
        }
    }
}

/// Issues a new request for the lock, superseding the campaign's current one.
fn request(shared: &Rc<Shared>, manager: &LockManager, steal: bool) -> Result<(), WebError> {
    let options = LockOptions::new();
    options.set_mode(LockMode::Exclusive);
    // The spec rejects `signal` together with `steal` (NotSupportedError); a steal is granted at
    // once, so there is no wait to withdraw.
    let (controller, signal) = if steal {
        options.set_steal(true);
        (None, None)
    } else {
        let controller = AbortController::new().map_err(|e| WebError::from_js(API, &e))?;
        let signal = controller.signal();
        options.set_signal(&signal);
        (Some(controller), Some(signal))
    };
    let id = {
        let mut st = shared.state.borrow_mut();
        st.request += 1;
        st.phase = Phase::Waiting;
        st.abort = controller;
        st.release = None;
        st.request
    };

    let invoked = Rc::new(Cell::new(false));
    let granted = {
        let shared = Rc::downgrade(shared);
        let invoked = Rc::clone(&invoked);
        Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_lock: JsValue| {
            invoked.set(true);
            on_granted(&shared, id)
        })
    };
    let promise = manager.request_with_options(
        &shared.name,
        &options,
        granted.as_js_value().unchecked_ref(),
    );

    let shared = Rc::clone(shared);
    spawn_local(async move {
        let outcome = JsFuture::from(promise).await;
        // The manager calls the callback before the request settles, except when the request
        // was withdrawn from the queue (then never). A request broken between grant and callback
        // could still be called, so its closure is left to JS rather than invalidated.
        let withdrawn = signal.is_some_and(|s| s.aborted()) && outcome.is_err();
        if invoked.get() || withdrawn {
            drop(granted);
        } else {
            granted.forget();
        }
        on_settled(&shared, id, outcome);
    });
    Ok(())
}

/// The lock manager granted request `id`: hold the lock with a pending promise, or hand it back
/// at once when the request is stale or the campaign resigned.
fn on_granted(shared: &Weak<Shared>, id: u64) -> JsValue {
    let Some(shared) = shared.upgrade() else {
        return js_sys::Promise::resolve(&JsValue::UNDEFINED).into();
    };
    let held = {
        let mut st = shared.state.borrow_mut();
        if st.request != id || st.phase != Phase::Waiting {
            None
        } else {
            let mut resolve = None;
            let held = js_sys::Promise::new(&mut |res, _rej| resolve = Some(res));
            st.phase = Phase::Leader;
            st.abort = None;
            st.release = resolve;
            Some(held)
        }
    };
    match held {
        Some(held) => {
            shared.emit(LeaderEvent::Elected);
            held.into()
        }
        None => js_sys::Promise::resolve(&JsValue::UNDEFINED).into(),
    }
}

/// Request `id` settled: after our release (nothing to say), after a steal (`Lost`), or with an
/// error before the grant (`Failed`, unless we withdrew it).
fn on_settled(shared: &Shared, id: u64, outcome: Result<JsValue, JsValue>) {
    let (event, release) = {
        let mut st = shared.state.borrow_mut();
        if st.request != id {
            return;
        }
        match (st.phase, outcome) {
            (Phase::Leader, _) => {
                // Only our `resign` resolves the held promise, and it leaves `Leader` first; so
                // the lock went away under us: a steal ("AbortError: Lock broken by another
                // request with the 'steal' option.") or the manager dropping it.
                st.phase = Phase::Lost;
                (Some(LeaderEvent::Lost), st.release.take())
            }
            (Phase::Waiting, Err(e)) => {
                st.phase = Phase::Failed;
                st.abort = None;
                (Some(LeaderEvent::Failed(WebError::from_js(API, &e))), None)
            }
            _ => (None, None),
        }
    };
    // The broken lock's promise is still pending in JS; settle it so nothing waits on it.
    if let Some(release) = release {
        let _ = release.call0(&JsValue::UNDEFINED);
    }
    if let Some(event) = event {
        shared.emit(event);
    }
}
