//! Driving the engine: draining its outputs after every turn, performing its commands, posting what tabs must hear, and re-arming its timer.

use super::*;

/// Drains the engine and the queues, performs commands, posts messages, re-arms the timer.
pub(super) fn after(state: &Rc<RefCell<State>>) {
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

pub(super) fn drain(s: &mut State) {
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
                // The file's state carries the bytes moved (so a tab opened mid-transfer shows
                // them): tabs get it before the event, which then agrees with `getFiles()`.
                // The files view is not saved for it (progress is not persisted).
                if let Event::TransferProgress { file, .. } = &e {
                    if let Some(f) = r.engine.file(file) {
                        msgs.push((
                            None,
                            ToTab::Changed {
                                files: vec![FileState::from_view(&f)],
                                removed: Vec::new(),
                                unconfirmed: r.engine.unconfirmed_events(),
                            },
                        ));
                    }
                }
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
pub(super) fn parting_message(below: u64, new: &[crate::core::event::ClientEvent]) -> ToTab {
    ToTab::Parting {
        below,
        ns: new.iter().map(|e| e.id.n).collect(),
        events: new
            .iter()
            .map(crate::runtime::remote::envelope_json)
            .collect(),
    }
}

/// Performs one engine command asynchronously; its result comes back as an input. Returns
/// the message for the leader tab when the command is a transfer's.
pub(super) fn perform(r: &mut Ready, c: Command) -> Option<ToTab> {
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
        Command::AbortUpload { key, resume } => {
            if let Some(remote) = &r.remote {
                sync::abort_upload(remote.clone(), key, resume);
            }
        }
    }
    None
}

pub(super) fn arm_timer(state: &Rc<RefCell<State>>) {
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
