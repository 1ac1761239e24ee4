//! Leader election over real Web Locks in headless Chromium, one body run in a page
//! (`browser_locks`), a dedicated worker (`browser_locks_worker`) and a SharedWorker
//! (`browser_locks_shared_worker`, where the hub holds its alive lock). Two campaigns in one page are two
//! requesters for the lock manager, exactly like two tabs: the manager queues them per name
//! across the origin, not per context.
//!
//! Every wait is on an event sent from the campaign's callback (or a `query()` round trip to the
//! lock manager); timers serve only as failure deadlines, never as synchronization.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use filesync::core::StoreId;
use filesync::web::error::WebError;
use filesync::web::locks::{
    leader_lock_name, query_holders, LeaderEvent, Leadership, LockSnapshotInfo,
};
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

/// How long a test waits for an event it expects before failing (not a synchronization sleep).
const DEADLINE_MS: u32 = 5_000;

/// An unbounded single-threaded channel: the campaign's callback pushes, the test awaits.
#[derive(Clone, Default)]
struct Events(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    queue: VecDeque<LeaderEvent>,
    waker: Option<Waker>,
}

impl Events {
    fn sender(&self) -> impl FnMut(LeaderEvent) + 'static {
        let me = self.clone();
        move |event| {
            let mut inner = me.0.borrow_mut();
            inner.queue.push_back(event);
            if let Some(w) = inner.waker.take() {
                w.wake();
            }
        }
    }

    fn try_next(&self) -> Option<LeaderEvent> {
        self.0.borrow_mut().queue.pop_front()
    }

    fn next(&self) -> impl Future<Output = LeaderEvent> + '_ {
        std::future::poll_fn(move |cx| {
            let mut inner = self.0.borrow_mut();
            match inner.queue.pop_front() {
                Some(e) => Poll::Ready(e),
                None => {
                    inner.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }

    /// The next event, or a test failure after `DEADLINE_MS`.
    async fn expect(&self, what: &str) -> LeaderEvent {
        match with_deadline(self.next(), DEADLINE_MS).await {
            Some(e) => e,
            None => panic!("no event within {DEADLINE_MS} ms while waiting for {what}"),
        }
    }
}

/// Polls `fut` until it is ready or `ms` have passed.
async fn with_deadline<F: Future>(fut: F, ms: u32) -> Option<F::Output> {
    let mut fut = Box::pin(fut);
    let mut timer = TimeoutFuture::new(ms);
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if let Poll::Ready(()) = Pin::new(&mut timer).poll(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

fn store(name: &str) -> StoreId {
    StoreId::new(format!("locks-test-{name}")).unwrap()
}

fn campaign(store: &StoreId) -> (Leadership, Events) {
    let events = Events::default();
    let l = Leadership::campaign(store, events.sender()).expect("campaign");
    (l, events)
}

/// Asserts how many hold the store's leader lock and how many wait for it.
async fn assert_holders(store: &StoreId, held: u32, pending: u32) {
    let seen = query_holders(store).await.expect("navigator.locks.query");
    assert_eq!(seen, LockSnapshotInfo { held, pending });
}

/// Asserts that nobody holds or waits for the lock, by the only reliable sign: a newcomer is
/// elected. (A `query()` right after a release can still list the old holder: the release
/// travels to the lock manager only after the held promise's reaction runs.)
async fn assert_free(store: &StoreId) {
    let (probe, events) = campaign(store);
    assert_eq!(events.expect("probe elected").await, LeaderEvent::Elected);
    assert_holders(store, 1, 0).await;
    drop(probe);
}

fn now_ms() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).unwrap();
    let now: js_sys::Function = js_sys::Reflect::get(&perf, &JsValue::from_str("now"))
        .unwrap()
        .into();
    now.call0(&perf).unwrap().as_f64().unwrap()
}

/// Asserts that a campaign is waiting: nothing reported, not leader. Called after a `query()`
/// round trip, by which time a grant would have been made.
fn assert_waiting(l: &Leadership, events: &Events, who: &str) {
    assert!(!l.is_leader(), "{who} should be waiting, not leader");
    assert_eq!(events.try_next(), None, "{who} should have heard nothing");
}

#[wasm_bindgen_test]
fn lock_name_is_per_store() {
    let s = StoreId::new("abc").unwrap();
    assert_eq!(leader_lock_name(&s), "filesync:leader:abc");
}

#[wasm_bindgen_test]
async fn first_campaign_is_elected_second_waits_then_takes_over_on_resign() {
    let s = store("resign");
    let (a, a_ev) = campaign(&s);
    assert_eq!(a_ev.expect("A elected").await, LeaderEvent::Elected);
    assert!(a.is_leader());
    assert_eq!(a.lock_name(), "filesync:leader:locks-test-resign");

    let (b, b_ev) = campaign(&s);
    assert_holders(&s, 1, 1).await;
    assert_waiting(&b, &b_ev, "B");

    a.resign();
    assert!(!a.is_leader());
    assert!(a.is_resigned());
    assert_eq!(b_ev.expect("B elected").await, LeaderEvent::Elected);
    assert!(b.is_leader());
    assert_holders(&s, 1, 0).await;
    // Resigning is final and silent.
    assert_eq!(a_ev.try_next(), None);
    a.resign();
    assert!(a.steal().is_err(), "a resigned campaign cannot steal");

    drop(b);
    drop(a);
    assert_free(&s).await;
}

#[wasm_bindgen_test]
async fn dropping_the_holder_hands_over() {
    let s = store("drop");
    let (a, a_ev) = campaign(&s);
    assert_eq!(a_ev.expect("A elected").await, LeaderEvent::Elected);
    let (b, b_ev) = campaign(&s);
    let (c, c_ev) = campaign(&s);
    assert_holders(&s, 1, 2).await;
    assert_waiting(&b, &b_ev, "B");
    assert_waiting(&c, &c_ev, "C");

    drop(a);
    // In request order: B, not C.
    assert_eq!(b_ev.expect("B elected").await, LeaderEvent::Elected);
    assert!(b.is_leader());
    assert_holders(&s, 1, 1).await;
    assert_waiting(&c, &c_ev, "C");

    drop(b);
    assert_eq!(c_ev.expect("C elected").await, LeaderEvent::Elected);
    assert!(c.is_leader());
    drop(c);
    assert_free(&s).await;
}

#[wasm_bindgen_test]
async fn steal_elects_the_thief_and_the_victim_hears_lost() {
    let s = store("steal");
    let (victim, v_ev) = campaign(&s);
    assert_eq!(v_ev.expect("victim elected").await, LeaderEvent::Elected);
    let (thief, t_ev) = campaign(&s);
    assert_holders(&s, 1, 1).await;
    assert_waiting(&thief, &t_ev, "thief");

    thief.steal().expect("steal");
    assert_eq!(t_ev.expect("thief elected").await, LeaderEvent::Elected);
    assert!(thief.is_leader());
    assert_eq!(v_ev.expect("victim lost").await, LeaderEvent::Lost);
    assert!(!victim.is_leader());
    // The thief's withdrawn waiting request is gone too: one holder, nobody waiting.
    assert_holders(&s, 1, 0).await;
    // Stealing while leader is a no-op.
    thief.steal().expect("steal while leader");
    assert!(thief.is_leader());
    assert_eq!(t_ev.try_next(), None);

    // The victim resigning after the loss changes nothing for the thief.
    drop(victim);
    assert_holders(&s, 1, 0).await;
    assert!(thief.is_leader());
    assert_eq!(v_ev.try_next(), None);
    drop(thief);
    assert_free(&s).await;
}

#[wasm_bindgen_test]
async fn resigning_a_waiting_campaign_leaves_the_queue() {
    let s = store("withdraw");
    let (a, a_ev) = campaign(&s);
    assert_eq!(a_ev.expect("A elected").await, LeaderEvent::Elected);
    let (b, b_ev) = campaign(&s);
    assert_holders(&s, 1, 1).await;

    b.resign();
    assert_holders(&s, 1, 0).await;
    // B was never elected and never will be, even when the lock frees up.
    let (c, c_ev) = campaign(&s);
    a.resign();
    assert_eq!(c_ev.expect("C elected").await, LeaderEvent::Elected);
    assert_holders(&s, 1, 0).await;
    assert!(!b.is_leader());
    assert_eq!(b_ev.try_next(), None);
    drop(c);
}

#[wasm_bindgen_test]
async fn on_change_may_resign_from_inside_the_callback() {
    let s = store("reentrant");
    let slot: Rc<RefCell<Option<Leadership>>> = Rc::default();
    let events = Events::default();
    let mut send = events.sender();
    let inner = Rc::clone(&slot);
    let a = Leadership::campaign(&s, move |e| {
        // Drops the campaign, and so resigns, while its own event is being delivered.
        drop(inner.borrow_mut().take());
        send(e);
    })
    .expect("campaign");
    *slot.borrow_mut() = Some(a);
    assert_eq!(events.expect("A elected").await, LeaderEvent::Elected);
    assert!(slot.borrow().is_none());
    // The resign released the lock: a newcomer gets it.
    let (b, b_ev) = campaign(&s);
    assert_eq!(b_ev.expect("B elected").await, LeaderEvent::Elected);
    drop(b);
}

#[wasm_bindgen_test]
async fn handover_latency_median() {
    const HANDOVERS: usize = 20;
    let s = store("latency");
    let (mut holder, h_ev) = campaign(&s);
    assert_eq!(h_ev.expect("first elected").await, LeaderEvent::Elected);
    let mut samples = Vec::with_capacity(HANDOVERS);
    for i in 0..HANDOVERS {
        let (next, n_ev) = campaign(&s);
        // The successor is queued before the clock starts.
        let seen = query_holders(&s).await.expect("navigator.locks.query");
        assert_eq!(seen.pending, 1, "handover {i}");
        let t0 = now_ms();
        holder.resign();
        assert_eq!(n_ev.expect("successor elected").await, LeaderEvent::Elected);
        samples.push(now_ms() - t0);
        holder = next;
    }
    drop(holder);
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = (samples[HANDOVERS / 2 - 1] + samples[HANDOVERS / 2]) / 2.0;
    console_log!(
        "Web Lock handover (resign -> successor's Elected), {HANDOVERS} handovers in one context: \
         median {median:.2} ms, min {:.2} ms, max {:.2} ms",
        samples[0],
        samples[HANDOVERS - 1]
    );
}

#[wasm_bindgen_test]
async fn missing_web_locks_is_unavailable_not_a_panic() {
    // Shadow `navigator.locks` (a prototype getter) with an own `undefined`, as in a browser
    // without Web Locks, then remove the shadow again.
    let nav = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).unwrap();
    let nav: js_sys::Object = nav.into();
    let desc = js_sys::Object::new();
    js_sys::Reflect::set(&desc, &"value".into(), &JsValue::UNDEFINED).unwrap();
    js_sys::Reflect::set(&desc, &"configurable".into(), &JsValue::TRUE).unwrap();
    js_sys::Object::define_property(&nav, &JsValue::from_str("locks"), &desc);

    let s = store("missing");
    let campaign = Leadership::campaign(&s, |_| {});
    let query = query_holders(&s).await;
    js_sys::Reflect::delete_property(&nav, &JsValue::from_str("locks")).unwrap();

    let err = campaign.expect_err("campaign without navigator.locks");
    assert!(
        matches!(
            err,
            WebError::Unavailable {
                api: "navigator.locks",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "unavailable");
    assert!(
        matches!(query, Err(WebError::Unavailable { .. })),
        "{query:?}"
    );
    // Restored: the real manager answers again.
    assert_holders(&s, 0, 0).await;
}
