//! The hub's link to the server: pushes, pulls, health probes and remote deletes the engine
//! asks for, and the live channel, which the hub keeps open on its own (one connection per
//! browser, whatever the number of tabs). Every result goes back to the engine as an input
//! through the hub's [`Feed`].

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::hub::Feed;
use super::multipart;
use super::remote::{self, Live, RemoteConfig};
use crate::core::event::ClientEvent;
use crate::core::{Failure, Input, RemoteKey, RequestId, Seq, StoreId, TaskId, Term};
use crate::web::http::{EventStream, TextRequest};

/// Longest wait between two attempts to open the live channel.
const LIVE_MAX_DELAY_MS: u32 = 60_000;

async fn call(
    remote: &RemoteConfig,
    method: &str,
    url: &str,
    body: Option<String>,
) -> Result<String, Failure> {
    let r = TextRequest::start(&remote.endpoint(), method, url, body)
        .response()
        .await?;
    remote::check_status(r.status, r.retry_after.as_deref())?;
    Ok(r.text)
}

pub fn push(
    remote: Rc<RemoteConfig>,
    store: StoreId,
    request: RequestId,
    events: Vec<ClientEvent>,
    feed: Feed,
) {
    wasm_bindgen_futures::spawn_local(async move {
        let body = remote::push_body(&events);
        let result = call(&remote, "POST", &remote.events_url(&store), Some(body))
            .await
            .and_then(|text| remote::parse_pushed(&text, events.len()));
        feed.input(match result {
            Ok(confirmed) => Input::Pushed { request, confirmed },
            Err(failure) => Input::SyncFailed { request, failure },
        });
    });
}

pub fn pull(
    remote: Rc<RemoteConfig>,
    store: StoreId,
    request: RequestId,
    after: Seq,
    limit: usize,
    feed: Feed,
) {
    wasm_bindgen_futures::spawn_local(async move {
        let result = call(&remote, "GET", &remote.pull_url(&store, after, limit), None)
            .await
            .and_then(|text| remote::parse_pulled(&text));
        feed.input(match result {
            Ok((events, has_more)) => Input::Pulled {
                request,
                events,
                has_more,
            },
            Err(failure) => Input::SyncFailed { request, failure },
        });
    });
}

pub fn check_health(remote: Rc<RemoteConfig>, feed: Feed) {
    wasm_bindgen_futures::spawn_local(async move {
        let ok = call(&remote, "GET", &remote.health_url(), None)
            .await
            .is_ok();
        feed.input(Input::Health { ok });
    });
}

pub fn delete_remote(
    remote: Rc<RemoteConfig>,
    task: TaskId,
    term: Term,
    key: RemoteKey,
    feed: Feed,
) {
    wasm_bindgen_futures::spawn_local(async move {
        let result = call(
            &remote,
            "POST",
            &remote.delete_url(),
            Some(remote::key_body(key.as_str())),
        )
        .await
        .map(drop);
        feed.input(Input::RemoteDeleteDone { task, term, result });
    });
}

/// Aborts the multipart upload a resume text describes, best effort: the server sweeps the
/// uploads nobody completes anyway.
pub fn abort_upload(remote: Rc<RemoteConfig>, key: RemoteKey, resume: String) {
    let Some(id) = multipart::upload_id(&resume) else {
        return;
    };
    let body = multipart::abort_body(key.as_str(), id);
    wasm_bindgen_futures::spawn_local(async move {
        let _ = call(&remote, "POST", &remote.multipart_url("abort"), Some(body)).await;
    });
}

/// Keeps the live channel open for as long as the hub holds the store: reconnects with a
/// jittered backoff from 1 s to a minute, reset once a connection was accepted.
pub fn run_live(remote: RemoteConfig, store: StoreId, feed: Feed) {
    wasm_bindgen_futures::spawn_local(async move {
        let mut failures = 0u32;
        while !feed.live_stopped() {
            let accepted = Rc::new(Cell::new(false));
            let seen = accepted.clone();
            let on_event = feed.clone();
            let stream = Rc::new(EventStream::open(
                &remote.endpoint(),
                &remote.live_url(&store, feed.cursor()),
                move |event, data| match remote::parse_live(&event, &data) {
                    Ok(Live::Ready) => {
                        seen.set(true);
                        on_event.input(Input::LiveConnected);
                    }
                    Ok(Live::Events(events)) => on_event.input(Input::Live { events }),
                    Ok(Live::Other) => {}
                    // Unreadable: catch up by pulling instead.
                    Err(_) => on_event.input(Input::LiveConnected),
                },
            ));
            let abort = stream.clone();
            feed.set_live_abort(Some(Box::new(move || abort.abort())));
            let closed = stream.closed().await;
            feed.set_live_abort(None);
            if feed.live_stopped() {
                return;
            }
            if matches!(closed, Err(Failure::Offline)) {
                // The connection dropped: the engine goes offline and probes, instead of
                // finding out at its next push or pull.
                feed.input(Input::NetworkHint { online: false });
            }
            if accepted.get() {
                failures = 0;
            } else {
                failures += 1;
            }
            let base = match closed {
                // Refused credentials do not come back soon.
                Ok(r) if r.status == 401 || r.status == 403 => LIVE_MAX_DELAY_MS,
                _ => (1000u32 << failures.min(6)).min(LIVE_MAX_DELAY_MS),
            };
            let delay = base / 2 + (crate::web::global::random() * f64::from(base / 2)) as u32;
            gloo_timers::future::TimeoutFuture::new(delay).await;
        }
    });
}

/// Feeds the browser's `online` / `offline` signals to the engine.
pub fn watch_network(feed: Feed) {
    let global: web_sys::EventTarget = crate::web::global::global().unchecked_into();
    for (name, online) in [("online", true), ("offline", false)] {
        let feed = feed.clone();
        let f = Closure::<dyn FnMut()>::new(move || feed.input(Input::NetworkHint { online }));
        let _ = global.add_event_listener_with_callback(name, f.as_ref().unchecked_ref());
        // Listens for as long as the hub lives.
        f.forget();
    }
}
