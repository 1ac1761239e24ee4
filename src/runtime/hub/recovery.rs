//! Storage removed under the hub ("Clear site data", eviction): noticing it and starting again on the emptied storage from memory.

use super::*;

/// Notices when the browser removes the database under the hub ("Clear site data", eviction:
/// the origin's IndexedDB and OPFS go together) and starts [`recover`]ing.
pub(super) fn watch_storage(r: &mut Ready) {
    let feed = r.feed.clone();
    let f = Closure::<dyn FnMut()>::new(move || feed.push(HubEvent::StorageLost));
    r.store.on_close(f.as_ref().unchecked_ref());
    r.on_close = Some(f);
}

/// Opens the storage again after the browser removed it, and starts the engine over on it from
/// what memory holds (`Input::StorageLost`). Writes and term requests made meanwhile wait and
/// run after, against the new storage. A failed reopen is tried again, slower each time.
pub(super) fn recover(state: &Rc<RefCell<State>>, attempt: u32) {
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
