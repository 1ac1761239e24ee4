//! Start-up and hand-over: opening the store's storage, holding the alive lock, and giving the store to a hub of another build that asks for it.

use super::*;

pub(super) async fn start_ready(
    config: HubConfig,
    state: &Rc<RefCell<State>>,
) -> Result<Ready, ErrorInfo> {
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
    let mut cfg = crate::runtime::protocol::engine_config(&config, store_id, client);
    cfg.seed = (crate::web::global::random() * 9.0e15) as u64;
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
        commits: FxMap::default(),
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

/// Waits for the alive lock (`granted`), asking the hub that holds it for the store now and
/// every second. `Some(version)`: that hub, of a newer version, refused.
pub(super) async fn wait_for_store(
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
pub(super) fn listen_for_handover(state: &Rc<RefCell<State>>, channel: web_sys::BroadcastChannel) {
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
pub(super) fn hand_over(state: &Rc<RefCell<State>>, asker: &str) {
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
pub(super) fn new_client_id() -> Result<ClientId, String> {
    let id = crate::web::global::random_uuid().map_err(|e| e.to_string())?;
    ClientId::new(id).map_err(|e| e.to_string())
}
