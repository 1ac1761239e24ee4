//! Messages from tabs, with the hub ready.

use super::*;

/// Handles one message with the hub ready.
pub(super) fn handle(s: &mut State, port: &Peer, msg: ToHub) {
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
            use crate::runtime::protocol::Control;
            let file = |id: &str| FileId::new(id.to_string());
            let input = match control {
                Control::Prioritize { file_id } => {
                    file(&file_id).map(|file| Input::Prioritize { file })
                }
                Control::Cancel { file_id } => file(&file_id).map(|file| Input::Cancel { file }),
                Control::Pin { file_id, pinned } => {
                    file(&file_id).map(|file| Input::Pin { file, pinned })
                }
                Control::Want(ids) => ids
                    .into_iter()
                    .map(FileId::new)
                    .collect::<Result<_, _>>()
                    .map(|files| Input::Want { files }),
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
            let value = history_json(r.engine.history().iter());
            replies.push(ToTab::Answer { req, value });
        }
        ToHub::Usage(req) => {
            let value = usage_json(&r.engine.storage_use());
            replies.push(ToTab::Answer { req, value });
        }
        ToHub::Read(id) => {
            if let Ok(file) = FileId::new(id) {
                let files = vec![file];
                let _ = r.engine.handle(now, Input::Accessed { files });
            }
        }
        ToHub::InUse(tab, hashes) => {
            s.in_use.retain(|(t, _)| *t != tab);
            s.in_use.push((tab, hashes));
            report_in_use(s, now);
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
            forget_in_use(s, now, |t| t != tab);
        }
        ToHub::Pong { .. } => {}
        ToHub::ViewUnreadable => r.view_dirty = true,
        ToHub::Transfer { report } => {
            // Reports of a fenced-off term or an aborted task are refused by the engine.
            let _ = r.engine.handle(now, report.into_input());
        }
    }
    // What the message changed reaches the tabs before its reply: a control resolves once
    // the tab's state shows it (an `unpin` resolved, `isPinned` is false).
    drain(s);
    for m in &replies {
        s.outbox.push(port.clone(), m);
    }
}

/// Forgets the object URLs of the tabs `keep` refuses (gone), telling the engine if any.
pub(super) fn forget_in_use(s: &mut State, now: Millis, keep: impl Fn(&str) -> bool) {
    let before = s.in_use.len();
    s.in_use.retain(|(t, _)| keep(t));
    if s.in_use.len() != before {
        report_in_use(s, now);
    }
}

/// Tells the engine every content some tab uses (object URLs).
pub(super) fn report_in_use(s: &mut State, now: Millis) {
    let Phase::Ready(r) = &mut s.phase else {
        return;
    };
    let mut hashes: Vec<ContentHash> = s.in_use.iter().flat_map(|(_, h)| h).copied().collect();
    hashes.sort_unstable();
    hashes.dedup();
    let _ = r.engine.handle(now, Input::InUse { hashes });
}

pub(super) fn broadcast_leader(s: &mut State) {
    let Phase::Ready(r) = &s.phase else { return };
    let msg = ToTab::Leader {
        tab: r.leader.as_ref().map(|(t, _)| t.clone()),
        term: r.leader.as_ref().map_or(0, |(_, t)| t.0),
    };
    broadcast(s, &msg);
}
