//! What the hub says: snapshots, changes, events, replies, pings, transfer jobs.

use super::*;
use crate::api::js::{frozen_files, message_body, parse, string_field, to_js};
use crate::web::global::now_ms;

impl Tab {
    /// Handles a message; `text` is its JSON, which gives the app's objects. `from_hub`:
    /// false for the files view this tab read itself.
    pub(super) fn receive(&self, msg: ToTab<TabFile>, text: &str, from_hub: bool) {
        let mut calls: Vec<Call> = Vec::new();
        let mut superseded = false;
        // Downloads that failed an attempt: the reads waiting for them fail too.
        let mut failed_reads: Vec<(String, ErrorInfo)> = Vec::new();
        // The hub must hear which contents this tab's object URLs show.
        let mut report_urls = false;
        {
            let mut s = self.inner.state.borrow_mut();
            if from_hub {
                s.heard_at = now_ms();
            }
            match msg {
                ToTab::Snapshot {
                    files,
                    leader,
                    storage,
                    issues,
                    online,
                    unconfirmed,
                    provisional,
                } => {
                    // A view shows what the state was; once a snapshot is in, it has nothing
                    // to add.
                    if provisional && s.ready.is_none() {
                        return;
                    }
                    let js = message_body(text, "snapshot");
                    s.loaded = !provisional;
                    if s.loaded {
                        let waiting = s.on_loaded.drain(..);
                        calls.extend(waiting.map(|(resolve, _)| (resolve, JsValue::UNDEFINED)));
                    }
                    s.online = online;
                    s.unconfirmed = unconfirmed;
                    s.issues = issues;
                    // Inserted one by one: collecting would compile another copy of the
                    // standard sort for this one element type (see `collections::sort`).
                    s.files.clear();
                    for e in entries(files, &js) {
                        s.files.insert(e.state.id.to_string(), e);
                    }
                    s.files_js = None;
                    s.status = None;
                    if !provisional {
                        self.settle_moved(&mut s, &mut calls);
                        self.report_issues(&s.issues);
                        // A new hub knows nothing of them.
                        report_urls = !s.urls.is_empty();
                    }
                    s.leader = leader;
                    s.storage = storage;
                    if let Some((resolve, _)) = s.ready.take() {
                        calls.push((resolve, JsValue::UNDEFINED));
                    }
                    let port = matches!(&*self.inner.link.borrow(), Link::Port(_));
                    if from_hub && port && !s.watching_hub {
                        s.watching_hub = true;
                        self.watch_hub();
                    }
                    calls.extend(
                        s.subscribers
                            .iter()
                            .map(|(_, f)| (f.clone(), JsValue::UNDEFINED)),
                    );
                }
                ToTab::Reply { req, error } => {
                    if let Some(p) = s.pending.remove(&req) {
                        // A resent write the previous hub had committed after all.
                        let landed = |e: &ErrorInfo| {
                            p.resent
                                && matches!(
                                    (&p.write, e.code.as_str()),
                                    (Some(_), "already_exists" | "not_found")
                                )
                        };
                        match error {
                            Some(e) if !landed(&e) => calls.push((p.reject, js_error(&e))),
                            _ => calls.push((p.resolve, JsValue::UNDEFINED)),
                        }
                    }
                }
                ToTab::Parting { below, ns, events } => {
                    let first_new = ns.first().copied().unwrap_or(u64::MAX);
                    s.parting.retain(|(n, _)| *n >= below && *n < first_new);
                    s.parting.extend(ns.into_iter().zip(events));
                }
                ToTab::Answer { req, value } => {
                    if let Some(p) = s.pending.remove(&req) {
                        calls.push((p.resolve, parse(&value)));
                    }
                }
                ToTab::Changed {
                    files,
                    removed,
                    unconfirmed,
                } => {
                    s.unconfirmed = unconfirmed;
                    let js = message_body(text, "changed");
                    // Contents with an object URL that a changed or removed file held: the
                    // URL goes if no file holds them any more.
                    let mut released = Vec::new();
                    for e in entries(files, &js) {
                        let id = e.state.id.to_string();
                        released.extend(held_url(&s, &id));
                        s.files.insert(id, e);
                    }
                    for id in removed {
                        released.extend(held_url(&s, &id));
                        s.files.remove(&id);
                    }
                    s.files_js = None;
                    s.status = None;
                    report_urls = revoke_unused_urls(&mut s, released);
                    calls.extend(
                        s.subscribers
                            .iter()
                            .map(|(_, f)| (f.clone(), JsValue::UNDEFINED)),
                    );
                }
                ToTab::Event { event } => {
                    let value = parse(&event);
                    match string_field(&value, "type").as_deref().unwrap_or_default() {
                        "online" => s.online = true,
                        "offline" => s.online = false,
                        "storage:cleared" => {
                            // The hub started again on emptied storage: so does this tab's
                            // byte store (a leader's downloads write through it; transfers
                            // wait for it).
                            let me = self.clone();
                            let ready = wasm_bindgen_futures::future_to_promise(async move {
                                let _ = me.reopen_bytes().await;
                                *me.inner.reopening.borrow_mut() = None;
                                me.after_locks_forgotten();
                                Ok(JsValue::UNDEFINED)
                            });
                            *self.inner.reopening.borrow_mut() = Some(ready);
                        }
                        "download:error" => {
                            let field = |k: &str| string_field(&value, k).unwrap_or_default();
                            let e = ErrorInfo {
                                code: field("code"),
                                message: field("message"),
                                retryable: js_sys::Reflect::get(&value, &"retryInMs".into())
                                    .is_ok_and(|r| r.as_f64().is_some()),
                            };
                            failed_reads.push((field("fileId"), e));
                        }
                        "sync:error" => {
                            let field = |k: &str| string_field(&value, k).unwrap_or_default();
                            let (code, message) = (field("code"), field("message"));
                            if let Some(e) = synced::sync_error(&code, &message, &field("context"))
                            {
                                let waiting = s.on_synced.drain(..);
                                calls.extend(waiting.map(|(_, reject)| (reject, js_error(&e))));
                            }
                        }
                        _ => {}
                    }
                    push_event(&s, value, &mut calls);
                }
                ToTab::HubFailed { error } => match s.ready.take() {
                    Some((_, reject)) => calls.push((reject, js_error(&error))),
                    None => {
                        superseded = error.code == "superseded";
                        let failed: Vec<Pending> = if superseded {
                            // Nothing more will be answered, and this tab leads nothing.
                            s.superseded = Some(error.clone());
                            s.leader = None;
                            s.pending.drain().map(|(_, p)| p).collect()
                        } else {
                            take_moved(&mut s).into_iter().map(|(_, p)| p).collect()
                        };
                        calls.extend(failed.into_iter().map(|p| (p.reject, js_error(&error))));
                        // Shown from the saved view, never loaded: `whenLoaded()` fails.
                        let waiting = s.on_loaded.drain(..);
                        calls.extend(waiting.map(|(_, reject)| (reject, js_error(&error))));
                        if superseded {
                            let waiting = s.on_synced.drain(..);
                            calls.extend(waiting.map(|(_, reject)| (reject, js_error(&error))));
                            let reads = s.on_local.drain(..);
                            calls.extend(reads.map(|(_, _, reject)| (reject, js_error(&error))));
                        }
                        let event = AppEvent::StorageError {
                            code: error.code,
                            message: error.message,
                        };
                        push_event(&s, to_js(&event), &mut calls);
                    }
                },
                ToTab::HubReady => {
                    drop(s);
                    self.rejoin();
                    return;
                }
                ToTab::Transfer { job } => {
                    drop(s);
                    self.run_transfer(job);
                    return;
                }
                ToTab::Abort { task } => {
                    drop(s);
                    self.inner.transfers.abort(task);
                    return;
                }
                ToTab::Ping => {
                    drop(s);
                    self.post(&ToHub::Pong {
                        tab: self.inner.tab.clone(),
                    });
                    return;
                }
                ToTab::TakeOver => {
                    drop(s);
                    if let Some(l) = &*self.inner.leadership.borrow() {
                        // The hub fences the frozen leader with the term this tab gets.
                        let _ = l.steal();
                    }
                    return;
                }
                ToTab::Leader { tab, .. } => {
                    let was = s.leader.as_deref() == Some(self.inner.tab.as_str());
                    let is = tab.as_deref() == Some(self.inner.tab.as_str());
                    s.leader = tab;
                    if is != was {
                        let ev = if is {
                            AppEvent::LeaderGained
                        } else {
                            AppEvent::LeaderLost
                        };
                        push_event(&s, to_js(&ev), &mut calls);
                    }
                    calls.extend(
                        s.subscribers
                            .iter()
                            .map(|(_, f)| (f.clone(), JsValue::UNDEFINED)),
                    );
                }
            }
        }
        if report_urls {
            self.report_urls();
        }
        self.settle_synced(&mut calls);
        for (id, e) in failed_reads {
            self.fail_local(&id, &e, &mut calls);
        }
        self.settle_local(&mut calls);
        if superseded {
            // The other version's tabs lead now: stop transfers and let go of the leader lock.
            self.inner.transfers.abort_all();
            if let Some(l) = self.inner.leadership.borrow_mut().take() {
                l.resign();
            }
        }
        for (f, v) in calls {
            // A throwing callback must not break the runtime.
            let _ = f.call1(&JsValue::UNDEFINED, &v);
        }
    }

    /// Emits a `storage:issue` event per broken record the hub skipped, on the next task: after
    /// `open` resolved and the app's listeners were added.
    pub(super) fn report_issues(&self, issues: &[StorageIssue]) {
        if issues.is_empty() {
            return;
        }
        let events: Vec<JsValue> = issues
            .iter()
            .map(|i| {
                to_js(&AppEvent::StorageIssue {
                    table: i.table.clone(),
                    key: i.key.clone(),
                    code: i.code.clone(),
                    message: i.message.clone(),
                })
            })
            .collect();
        let weak = Rc::downgrade(&self.inner);
        gloo_timers::callback::Timeout::new(0, move || {
            let Some(inner) = weak.upgrade() else { return };
            let mut calls = Vec::new();
            for e in events {
                push_event(&inner.state.borrow(), e, &mut calls);
            }
            for (f, v) in calls {
                let _ = f.call1(&JsValue::UNDEFINED, &v);
            }
        })
        .forget();
    }
}

/// The message's files with their frozen JS objects (`body.files`, in the same order).
fn entries(files: Vec<TabFile>, body: &JsValue) -> impl Iterator<Item = Entry> {
    let mut objects = frozen_files(body);
    files.into_iter().map(move |state| Entry {
        state,
        js: objects.next().unwrap_or(JsValue::UNDEFINED),
    })
}
