//! This tab's replica of the files view: synchronous reads, the sync status, and the promises that wait on it (`whenLoaded`, `whenSynced`).

use super::*;
use crate::api::js::{frozen, to_js};

impl Tab {
    /// A file of the replica.
    pub fn file(&self, id: &str) -> Option<TabFile> {
        self.inner
            .state
            .borrow()
            .files
            .get(id)
            .map(|e| e.state.clone())
    }

    /// A file, as the (frozen) object apps get; `undefined` if there is none.
    pub fn file_js(&self, id: &str) -> JsValue {
        self.inner
            .state
            .borrow()
            .files
            .get(id)
            .map_or(JsValue::UNDEFINED, |e| e.js.clone())
    }

    /// Every live file, by id, as a fresh JS array of frozen objects (cheap: the objects are
    /// built once per change, not per call).
    pub fn files_js(&self) -> js_sys::Array {
        let mut s = self.inner.state.borrow_mut();
        if s.files_js.is_none() {
            let built: js_sys::Array = by_id(&s.files).iter().map(|e| e.js.clone()).collect();
            s.files_js = Some(built);
        }
        match &s.files_js {
            Some(a) => a.slice(0, a.length()),
            None => js_sys::Array::new(),
        }
    }

    /// The aggregate status (a frozen object shared until the files change), derived from the
    /// replica: each file carries its transfer states, the rows the engine derives it from.
    pub fn status(&self) -> JsValue {
        let mut s = self.inner.state.borrow_mut();
        if s.status.is_none() {
            let status = SyncStatus::from_transfers(
                by_id(&s.files).into_iter().map(|e| TransferStates {
                    file_id: &e.state.id,
                    upload: e.state.upload_status,
                    download: e.state.download_status,
                    last_error: e.state.last_sync_error.as_ref(),
                }),
                s.unconfirmed,
            );
            s.status = Some(frozen(to_js(&status)));
        }
        s.status.clone().unwrap_or(JsValue::NULL)
    }

    /// Resolves once the hub has loaded the store's state: `open` may resolve before, with
    /// the files view the last hub saved (see [`ToTab::Snapshot`]).
    pub fn when_loaded(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        js_sys::Promise::new(&mut |resolve, reject| {
            let mut s = inner.state.borrow_mut();
            if s.disposed {
                let err = js_error(&error("disposed", "this FileSync was disposed", false));
                let _ = reject.call1(&JsValue::UNDEFINED, &err);
            } else if s.loaded {
                let _ = resolve.call0(&JsValue::UNDEFINED);
            } else {
                s.on_loaded.push((resolve, reject));
            }
        })
    }

    /// Resolves once everything made in this browser is on the server (every change
    /// confirmed, every local file's bytes uploaded); rejects at once when offline with work
    /// left, when an upload stopped for good, or when the server refuses this browser's
    /// changes (see [`synced::verdict`]).
    /// Sends the unconfirmed events with `keepalive` (the page is going).
    pub(super) fn send_parting(&self) {
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let s = self.inner.state.borrow();
        let envelopes: Vec<&str> = s.parting.iter().map(|(_, e)| e.as_str()).collect();
        let Some(body) = crate::runtime::remote::parting_body(
            &envelopes,
            crate::runtime::remote::PARTING_BODY_LIMIT,
        ) else {
            return;
        };
        let Ok(store) = StoreId::new(self.inner.hello_store().to_string()) else {
            return;
        };
        crate::web::http::send_keepalive(&remote.endpoint(), &remote.events_url(&store), &body);
    }

    pub fn when_synced(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            let mut s = inner.state.borrow_mut();
            let closed = s.superseded.clone().or_else(|| {
                s.disposed
                    .then(|| error("disposed", "this FileSync was disposed", false))
            });
            match closed {
                Some(e) => {
                    let _ = reject.call1(&JsValue::UNDEFINED, &js_error(&e));
                }
                None => s.on_synced.push((resolve, reject)),
            }
        });
        let mut calls = Vec::new();
        self.settle_synced(&mut calls);
        for (f, v) in calls {
            let _ = f.call1(&JsValue::UNDEFINED, &v);
        }
        promise
    }

    /// Settles the `whenSynced()` callers if the replica says so.
    pub(super) fn settle_synced(&self, calls: &mut Vec<Call>) {
        let mut s = self.inner.state.borrow_mut();
        if s.on_synced.is_empty() {
            return;
        }
        let known = synced::Known {
            remote: self.inner.remote.is_some(),
            loaded: s.loaded,
            online: s.online,
            unconfirmed: s.unconfirmed,
        };
        let outcome = match synced::verdict(known, s.files.values().map(|e| &e.state)) {
            synced::Verdict::Waiting => return,
            synced::Verdict::Synced => Ok(()),
            synced::Verdict::Failed(e) => Err(js_error(&e)),
        };
        for (resolve, reject) in s.on_synced.drain(..) {
            calls.push(match &outcome {
                Ok(()) => (resolve, JsValue::UNDEFINED),
                Err(e) => (reject, e.clone()),
            });
        }
    }

    /// Settles the reads waiting for a file's bytes that can go on (the bytes are here) or
    /// cannot (see [`reading::verdict`]).
    pub(super) fn settle_local(&self, calls: &mut Vec<Call>) {
        let mut s = self.inner.state.borrow_mut();
        if s.on_local.is_empty() {
            return;
        }
        let remote = self.inner.remote.is_some();
        let waiting = std::mem::take(&mut s.on_local);
        for (id, resolve, reject) in waiting {
            let file = s.files.get(&id).map(|e| &e.state);
            match reading::verdict(file, remote, s.online) {
                reading::Local::Here => calls.push((resolve, JsValue::UNDEFINED)),
                reading::Local::Failed(e) => calls.push((reject, js_error(&e))),
                reading::Local::Waiting => s.on_local.push((id, resolve, reject)),
            }
        }
    }

    /// Fails the reads waiting for file `id`'s bytes: an attempt of its download failed.
    pub(super) fn fail_local(&self, id: &str, e: &ErrorInfo, calls: &mut Vec<Call>) {
        let mut s = self.inner.state.borrow_mut();
        let (failed, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut s.on_local)
            .into_iter()
            .partition(|(file, _, _)| file == id);
        s.on_local = waiting;
        calls.extend(
            failed
                .into_iter()
                .map(|(_, _, reject)| (reject, js_error(e))),
        );
    }

    /// Whether the hub has loaded the store's state (see [`Tab::when_loaded`]).
    pub fn is_loaded(&self) -> bool {
        self.inner.state.borrow().loaded
    }

    /// Whether the server is believed reachable (the hub decides).
    pub fn is_online(&self) -> bool {
        self.inner.state.borrow().online
    }

    /// Whether this tab is the leader (runs transfers).
    pub fn is_leader(&self) -> bool {
        self.inner.state.borrow().leader.as_deref() == Some(self.inner.tab.as_str())
    }

    /// The leader tab's id, if any.
    pub fn leader(&self) -> Option<String> {
        self.inner.state.borrow().leader.clone()
    }

    /// This tab's id (random per page load, never copied by "Duplicate tab").
    pub fn id(&self) -> String {
        self.inner.tab.clone()
    }

    /// Whether this tab hosts the hub (tab-hosted mode only).
    pub fn hosts_hub(&self) -> bool {
        self.inner.hosting.borrow().1.is_some()
    }

    /// Stored records the hub skipped at start because they were broken.
    pub fn issues(&self) -> Vec<StorageIssue> {
        self.inner.state.borrow().issues.clone()
    }

    /// Where bytes are stored: `"opfs"` or `"indexeddb"`.
    pub fn storage(&self) -> String {
        self.inner.state.borrow().storage.clone()
    }
}

/// The files in id order (what apps get: `getFiles()` and the status's id lists).
fn by_id(files: &FxMap<String, Entry>) -> Vec<&Entry> {
    let mut v: Vec<&Entry> = files.values().collect();
    crate::core::collections::sort_by(&mut v, |a, b| a.state.id.cmp(&b.state.id));
    v
}
