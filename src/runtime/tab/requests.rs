//! Requests to the hub and their replies: writes, controls, history.

use super::*;

impl Tab {
    pub(super) fn check_open(&self) -> Result<(), ErrorInfo> {
        let s = self.inner.state.borrow();
        if s.disposed {
            return Err(error("disposed", "this FileSync was disposed", false));
        }
        match &s.superseded {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Sends a request to the hub and waits for its reply (the value it carries, if any).
    pub(super) async fn request(
        &self,
        make: impl FnOnce(u64) -> ToHub,
        write: Option<Write>,
    ) -> Result<JsValue, ErrorInfo> {
        self.check_open()?;
        let req = {
            let mut s = self.inner.state.borrow_mut();
            s.next_req += 1;
            s.next_req
        };
        let msg = make(req);
        self.post(&msg);
        let inner = self.inner.clone();
        let mut pending = Some((msg, write));
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            if let Some((msg, write)) = pending.take() {
                let p = Pending {
                    resolve,
                    reject,
                    msg,
                    write,
                    moved: false,
                    resent: false,
                };
                inner.state.borrow_mut().pending.insert(req, p);
            }
        });
        JsFuture::from(promise).await.map_err(|e| from_js_error(&e))
    }

    /// Commits the event (its bytes are stored); returns once the write is durable. `base`:
    /// for an update, the content it replaces.
    pub(super) async fn commit(
        &self,
        event: FileEvent,
        base: Option<ContentHash>,
    ) -> Result<(), ErrorInfo> {
        let wire = event.to_wire();
        let write = Write { event, base };
        self.request(|req| ToHub::Commit { req, event: wire }, Some(write))
            .await
            .map(drop)
    }

    /// Runs an app control in the hub.
    pub async fn control(&self, control: Control) -> Result<(), ErrorInfo> {
        self.request(|req| ToHub::Control { req, control }, None)
            .await
            .map(drop)
    }

    /// The hub engine's recent events: an array of `{at, event}`, oldest first.
    pub async fn history(&self) -> Result<JsValue, ErrorInfo> {
        self.request(|req| ToHub::History { req }, None).await
    }
}

/// Removes the requests a hub that went away left unanswered.
pub(super) fn take_moved(s: &mut State) -> Vec<(u64, Pending)> {
    let moved: Vec<u64> = s
        .pending
        .iter()
        .filter(|(_, p)| p.moved)
        .map(|(req, _)| *req)
        .collect();
    moved
        .into_iter()
        .filter_map(|req| s.pending.remove(&req).map(|p| (req, p)))
        .collect()
}
