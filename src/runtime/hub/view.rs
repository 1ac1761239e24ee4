//! The files view: a snapshot saved after changes, so the next cold start shows the files at once.

use super::*;

/// How long after a change of files the view is saved, at least (at most one save per this
/// period). A large store's view costs more to build and write (10,000 files: ~5 MB of JSON,
/// tens of ms), so the period grows to keep saves under ~5% of the time, up to a minute.
pub(super) const VIEW_DELAY_MS: u32 = 1_000;

pub(super) const VIEW_MAX_DELAY_MS: u32 = 60_000;

/// The snapshot a tab gets from the files view: what the state shows, before it is loaded.
pub(super) fn view_of(r: &Ready) -> String {
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
pub(super) fn arm_view(state: &Rc<RefCell<State>>) {
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
            let started = crate::web::global::now_ms();
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
                let cost = (crate::web::global::now_ms() - started) as u32;
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
