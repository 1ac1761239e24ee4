//! Leadership: campaigning for the leader lock, hosting the hub where there is no SharedWorker, and running the transfers the hub hands the leader.

use super::*;

impl Tab {
    pub(super) fn campaign(&self, store: &StoreId) -> Result<(), ErrorInfo> {
        let weak = Rc::downgrade(&self.inner);
        let leadership = Leadership::campaign(store, move |ev| {
            let Some(inner) = weak.upgrade() else { return };
            let tab = Tab { inner };
            match ev {
                LeaderEvent::Elected => tab.post(&ToHub::Elected {
                    tab: tab.inner.tab.clone(),
                }),
                // The hub fences the old term when the next leader is elected; requests in
                // flight stop now.
                LeaderEvent::Failed(_) => tab.inner.transfers.abort_all(),
                // Taken over (this tab was frozen or hung): stop, and queue up again.
                LeaderEvent::Lost => {
                    tab.inner.transfers.abort_all();
                    let store = StoreId::new(tab.inner.hello_store().to_string());
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Ok(store) = store {
                            if !tab.inner.state.borrow().disposed {
                                let _ = tab.campaign(&store);
                            }
                        }
                    });
                }
            }
        })?;
        *self.inner.leadership.borrow_mut() = Some(leadership);
        Ok(())
    }

    /// Where SharedWorker does not exist, one tab hosts the hub: the holder of the store's hub
    /// lock. When it goes, the next tab takes the lock and starts a hub from IndexedDB.
    pub(super) fn campaign_to_host(&self, store: &StoreId) -> Result<(), ErrorInfo> {
        let weak = Rc::downgrade(&self.inner);
        let store_id = store.to_string();
        let campaign = Leadership::campaign_for(host_lock_name(store.as_str()), move |ev| {
            let Some(inner) = weak.upgrade() else { return };
            if ev == LeaderEvent::Elected {
                let hub = crate::runtime::hub::Hub::new();
                if hub.serve_channel(&store_id).is_ok() {
                    inner.hosting.borrow_mut().1 = Some(hub);
                }
            }
        })?;
        self.inner.hosting.borrow_mut().0 = Some(campaign);
        Ok(())
    }

    /// The browser forgot every Web Lock with the cleared storage: this tab's claim on the
    /// leader lock (held or waiting) and its watch on the hub's lock mean nothing any more.
    /// Campaign again from scratch (the hub dropped the leader, so the next one gets a new
    /// term) and watch the hub's lock again (it holds it again before telling tabs).
    pub(super) fn after_locks_forgotten(&self) {
        if self.inner.state.borrow().disposed {
            return;
        }
        let leads = self.holds_leader_lock();
        if leads {
            // Holders hear of the loss (and campaign again at once): this lock was granted
            // after the storage went. The hub dropped its leader: ask for a new term.
            self.post(&ToHub::Elected {
                tab: self.inner.tab.clone(),
            });
        } else {
            // A waiting request was dropped without a word: make a new one.
            if let Some(old) = self.inner.leadership.borrow_mut().take() {
                old.resign();
            }
            if let Ok(store) = StoreId::new(self.inner.hello_store().to_string()) {
                let _ = self.campaign(&store);
            }
        }
        self.watch_hub();
    }

    /// Whether this tab's campaign holds the leader lock now (what the browser granted; the
    /// hub's word on who leads is [`Tab::is_leader`]).
    pub(super) fn holds_leader_lock(&self) -> bool {
        self.inner
            .leadership
            .borrow()
            .as_ref()
            .is_some_and(|l| l.is_leader())
    }

    /// Runs a transfer the hub asked for, if this tab still leads; its reports carry the
    /// job's term, so the hub ignores them once another tab leads.
    pub(super) fn run_transfer(&self, job: crate::runtime::protocol::TransferJob) {
        let leads = self.holds_leader_lock();
        let Some(remote) = self.inner.remote.clone() else {
            return;
        };
        if self.inner.state.borrow().disposed {
            return;
        }
        if !leads {
            // The hub thinks this tab leads, but it does not (its lock went: storage cleared,
            // or taken over): say so, or the hub would wait on this job until it stalls.
            self.post(&ToHub::Resigned { term: job.term });
            return;
        }
        let weak = Rc::downgrade(&self.inner);
        let report: crate::runtime::transfer::Reporter = Rc::new(move |report| {
            if let Some(inner) = weak.upgrade() {
                Tab { inner }.post(&ToHub::Transfer { report });
            }
        });
        // The byte store is being opened again (the storage was removed): start once it is.
        let reopening = self.inner.reopening.borrow().clone();
        match reopening {
            None => self
                .inner
                .transfers
                .start(job, remote, self.bytes(), report),
            Some(ready) => {
                let me = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = wasm_bindgen_futures::JsFuture::from(ready).await;
                    me.inner.transfers.start(job, remote, me.bytes(), report);
                });
            }
        }
    }
}
