//! The app's callbacks: change subscribers and event listeners.

use super::*;
use crate::api::js::string_field;

impl Tab {
    /// Calls `f` after every change of files, status or leader. Returns a listener id.
    pub fn subscribe(&self, f: js_sys::Function) -> u64 {
        let mut s = self.inner.state.borrow_mut();
        s.next_listener += 1;
        let id = s.next_listener;
        s.subscribers.push((id, f));
        id
    }

    /// Calls `f` with every event of `kind` (`"*"`: all). Returns a listener id.
    pub fn on(&self, kind: String, f: js_sys::Function) -> u64 {
        let mut s = self.inner.state.borrow_mut();
        s.next_listener += 1;
        let id = s.next_listener;
        s.handlers.push((id, kind, f));
        id
    }

    /// Removes a listener added by `subscribe` or `on`.
    pub fn remove_listener(&self, id: u64) {
        let mut s = self.inner.state.borrow_mut();
        s.subscribers.retain(|(i, _)| *i != id);
        s.handlers.retain(|(i, _, _)| *i != id);
    }
}

/// Queues the calls of the listeners of an app event (its `type` picks them).
pub(super) fn push_event(s: &State, value: JsValue, calls: &mut Vec<Call>) {
    let kind = string_field(&value, "type").unwrap_or_default();
    for (_, k, f) in &s.handlers {
        if *k == kind || k == "*" {
            calls.push((f.clone(), value.clone()));
        }
    }
}
