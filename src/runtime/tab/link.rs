//! The link to the hub: posting, joining a new hub, and watching the hub's lock to start it again when it dies.

use super::*;

impl Tab {
    /// Waits on the lock the hub holds while it lives; when it is free, the SharedWorker died
    /// (a renderer crash can take it while tabs live on): start it again and rejoin. Armed once
    /// per hub, after its snapshot (the hub takes the lock before answering).
    pub(super) fn watch_hub(&self) {
        let Ok(free) = when_free(&crate::runtime::hub::alive_lock_name(
            self.inner.hello_store(),
        )) else {
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        wasm_bindgen_futures::spawn_local(async move {
            if JsFuture::from(free).await.is_ok() {
                if let Some(inner) = weak.upgrade() {
                    let tab = Tab { inner };
                    let heard = tab.inner.state.borrow().heard_at;
                    if hub_seems_alive(heard, crate::web::global::now_ms()) {
                        // A lock that lies: after "Clear site data", contexts created since
                        // see a lock namespace of their own, without the hub's lock. Look
                        // again later instead of starting the hub over and over.
                        let weak = Rc::downgrade(&tab.inner);
                        gloo_timers::callback::Timeout::new(WATCH_RETRY_MS, move || {
                            if let Some(inner) = weak.upgrade() {
                                Tab { inner }.watch_hub();
                            }
                        })
                        .forget();
                    } else {
                        tab.restart_worker();
                    }
                }
            }
        });
    }

    pub(super) fn restart_worker(&self) {
        let s = self.inner.state.borrow();
        // A superseded tab must not start a hub of its version again: it would ask for the
        // store back.
        if s.disposed || s.superseded.is_some() {
            return;
        }
        drop(s);
        let (url, name, kind) = &self.inner.worker;
        let options = kind.options(name);
        let Ok(worker) = web_sys::SharedWorker::new_with_worker_options(url, &options) else {
            return;
        };
        let port = worker.port();
        self.inner.state.borrow_mut().watching_hub = false;
        port.set_onmessage(Some(self.inner._on_message.as_ref().unchecked_ref()));
        port.start();
        *self.inner.link.borrow_mut() = Link::Port(port);
        self.rejoin();
    }

    /// Joins a new hub: say hello, and re-register as leader if this tab leads. Requests the
    /// previous hub had not answered wait for the new hub's state, which tells whether they
    /// landed ([`Tab::settle_moved`]).
    pub(super) fn rejoin(&self) {
        for p in self.inner.state.borrow_mut().pending.values_mut() {
            p.moved = true;
        }
        self.post(&self.inner.hello);
        let leads = self.holds_leader_lock();
        if leads {
            self.post(&ToHub::Elected {
                tab: self.inner.tab.clone(),
            });
        }
    }

    /// Settles the requests a hub that went away left unanswered, now that the next hub's
    /// loaded state is in: a write it shows (or that a later write superseded) resolves; one it
    /// does not show is sent again, an update only if the file still has the content it
    /// replaced; controls are sent again. So nothing is lost and nothing applies twice.
    pub(super) fn settle_moved(&self, s: &mut State, calls: &mut Vec<Call>) {
        for (req, mut p) in take_moved(s) {
            let landed = p.write.as_ref().map(|w| {
                let shown = s
                    .files
                    .get(w.event.file_id().as_str())
                    .map(|e| (e.state.updated_at, e.state.content_hash.as_str()));
                crate::runtime::protocol::write_landed(&w.event, w.base, shown)
            });
            if landed == Some(true) {
                calls.push((p.resolve, JsValue::UNDEFINED));
                continue;
            }
            if let (ToHub::Commit { event, .. }, Some(w)) = (&mut p.msg, &p.write) {
                if let FileEvent::Updated(u) = &w.event {
                    // Only over the content it replaced: a write that came since wins.
                    let mut u = u.clone();
                    u.expected_content_hash = w.base;
                    *event = FileEvent::Updated(u).to_wire();
                }
            }
            self.post(&p.msg);
            p.moved = false;
            p.resent = true;
            s.pending.insert(req, p);
        }
    }

    pub(super) fn post(&self, msg: &ToHub) {
        let text = encode(msg);
        let _ = match &*self.inner.link.borrow() {
            Link::Port(port) => port.post_message(&JsValue::from_str(&text)),
            Link::Channel { to_hub, .. } => to_hub.post_message(&JsValue::from_str(
                &Envelope::wrap(Some(&self.inner.tab), &text),
            )),
        };
    }

    /// Shows the files view the last hub saved (read by `peek_view`) if nothing better came
    /// meanwhile: the open resolves with it, as with the hub's own provisional snapshot, and
    /// the hub's loaded snapshot replaces it. The tab reads it itself so the open does not wait
    /// for the hub worker to start.
    pub(super) async fn show_view(&self, view: js_sys::Promise) {
        let Some(text) = JsFuture::from(view).await.ok().and_then(|v| v.as_string()) else {
            return;
        };
        match serde_json::from_str::<ToTab<TabFile>>(&text) {
            Ok(
                msg @ ToTab::Snapshot {
                    provisional: true, ..
                },
            ) => self.receive(msg, &text, false),
            // Broken: ignored here, and the hub saves a fresh one.
            _ => self.post(&ToHub::ViewUnreadable),
        }
    }
}
