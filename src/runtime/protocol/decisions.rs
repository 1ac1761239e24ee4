//! Decisions the hub and the tabs make about each other, as pure functions tested natively:
//! whether a write landed after the hub moved, who takes over from a hung leader, and the
//! engine's config from a tab's settings.

use super::HubConfig;
use crate::core::{ContentHash, Millis, Term};

/// Whether a write a tab sent to a hub that then went away (restarted, moved to another tab)
/// landed, judged from the new hub's view of its file (`shown`: the file's `updatedAt` and
/// content hash, `None` when the view has no such file). A create landed if the file exists; a
/// delete if it does not; an update if the file shows it, is gone, or shows another content
/// than the one the update replaced (`base`: a later write won, so sending it again would
/// undo that). A write that did not land is sent again.
pub fn write_landed(
    event: &crate::core::event::FileEvent,
    base: Option<ContentHash>,
    shown: Option<(u64, &str)>,
) -> bool {
    use crate::core::event::FileEvent;
    match (event, shown) {
        (FileEvent::Created(_), shown) => shown.is_some(),
        (FileEvent::Deleted(_), shown) => shown.is_none(),
        // Gone since: it was applied, or it would have been overwritten anyway.
        (FileEvent::Updated(_), None) => true,
        (FileEvent::Updated(u), Some((updated_at, content))) => {
            let applied = updated_at == u.updated_at.0 && content == u.content_hash.to_hex();
            let untouched = base.is_some_and(|b| content == b.to_hex());
            applied || !untouched
        }
    }
}

/// The config of the store a hub runs with: the first tab's settings over the engine's
/// defaults (transfers at once at least 1).
pub fn engine_config(
    hub: &HubConfig,
    store: crate::core::StoreId,
    client: crate::core::ClientId,
) -> crate::core::Config {
    use crate::core::{Config, Mode};
    let mode = match hub.remote {
        None => Mode::LocalOnly,
        Some(_) => Mode::Remote,
    };
    let mut cfg = Config::new(store, client, mode);
    if let Some(ms) = hub.progress_interval_ms {
        cfg.progress_interval_ms = ms;
    }
    if let Some(n) = hub.max_uploads {
        cfg.max_uploads = n.max(1);
    }
    if let Some(n) = hub.max_downloads {
        cfg.max_downloads = n.max(1);
    }
    cfg.downloads = hub.downloads;
    cfg.budget = hub.budget;
    if let Some(ms) = hub.delete_grace_ms {
        cfg.delete_grace_ms = ms;
    }
    cfg
}

/// Which tab the hub asks to take leadership over from a leader that has not answered a ping
/// for `lease_ms` (a frozen or hung tab keeps its lock forever): the tab that answered last,
/// among those that answered within the lease; `None` while the leader is fresh, when a takeover
/// was already asked for this term, or when no other tab is fresh.
pub fn takeover_heir<'a>(
    leader: &str,
    term: Term,
    asked: Option<Term>,
    seen: impl Fn(&str) -> Option<Millis>,
    tabs: impl IntoIterator<Item = &'a str>,
    now: Millis,
    lease_ms: u64,
) -> Option<&'a str> {
    let fresh = |t: &str| seen(t).is_some_and(|at| now.since(at) < lease_ms);
    if fresh(leader) || asked == Some(term) {
        return None;
    }
    tabs.into_iter()
        .filter(|t| *t != leader && fresh(t))
        .max_by_key(|t| seen(t))
}
