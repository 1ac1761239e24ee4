//! The leadership lease: pings to every tab, and moving leadership away from a leader that stopped answering.

use super::*;

/// How often the hub pings its tabs.
pub(super) const PING_MS: u32 = 1_000;

/// A leader that answered no ping for this long is taken over by a tab that did. Pings are
/// messages, not timers, so a hidden tab (whose timers the browser throttles) still answers;
/// a frozen or hung one does not.
pub(super) const LEASE_MS: u64 = 4_000;

/// Pings every tab each [`PING_MS`] for as long as the hub lives, and moves leadership away
/// from a leader that stopped answering (a frozen tab keeps its Web Lock forever, so the lock
/// alone would never move): the freshest other tab is asked to steal the lock, and the term it
/// then gets fences off whatever the frozen one sends when it wakes.
pub(super) fn watch_leader(state: &Rc<RefCell<State>>) {
    let hub = Rc::downgrade(state);
    let tick = gloo_timers::callback::Interval::new(PING_MS, move || {
        let Some(state) = hub.upgrade() else {
            return;
        };
        {
            let mut s = state.borrow_mut();
            broadcast(&mut s, &ToTab::Ping);
            check_lease(&mut s, now());
            forget_silent_tabs(&mut s, now());
        }
        after(&state);
    });
    // Ticks for as long as the hub lives.
    tick.forget();
}

pub(super) fn check_lease(s: &mut State, now: Millis) {
    let Phase::Ready(r) = &s.phase else { return };
    let Some((leader, term)) = r.leader.clone() else {
        return;
    };
    let heir = crate::runtime::protocol::takeover_heir(
        &leader,
        term,
        s.takeover,
        |t| s.seen.get(t).copied(),
        s.ports.iter().map(|(t, _)| t.as_str()),
        now,
        LEASE_MS,
    )
    .and_then(|t| s.ports.iter().find(|(id, _)| id == t))
    .map(|(_, p)| p.clone());
    if let Some(heir) = heir {
        s.takeover = Some(term);
        s.outbox.push(heir, &ToTab::TakeOver);
    }
}

/// A tab that answered no ping for this long is gone (closed without a goodbye, crashed):
/// its object URLs no longer keep content from eviction.
const GONE_MS: u64 = 60_000;

fn forget_silent_tabs(s: &mut State, now: Millis) {
    let gone: Vec<String> = s
        .in_use
        .iter()
        .map(|(t, _)| t)
        .filter(|t| s.seen.get(*t).is_none_or(|at| now.since(*at) >= GONE_MS))
        .cloned()
        .collect();
    if !gone.is_empty() {
        forget_in_use(s, now, |t| !gone.iter().any(|g| g == t));
    }
}
