//! Local bytes: what the byte store holds, orphans, deleting content nothing uses once that is
//! durable, and the byte budget.
//!
//! ## The byte budget
//!
//! With [`Config::budget`] set, the end of a step that changed anything eviction depends on
//! (rows, confirmed rows, contents in use, tasks, the end of a grace) evicts while the bytes
//! rows hold exceed the budget, in passes at most `budget_pass_ms` apart. Content is evictable
//! when every row holding it holds it as its current content, is not pinned, has no unconfirmed
//! event, and its file's confirmed row (the server's) names that content with its remote key
//! (the server has the bytes and knows it); no transfer of it is under way, no tab uses it (an
//! object URL), and it was not read or downloaded within `evict_grace_ms` (a `File` the app
//! just got reads the stored bytes).
//!
//! The least recently read goes first (ties: by hash). An evicted row becomes remote-only
//! (`evicted`) and its bytes go the way of all garbage: only once the rows without them are
//! durable, so a crash mid-eviction leaves bytes no row claims (found again by the next
//! inventory), never a row claiming missing bytes.

use super::*;

/// What local storage holds, as far as the engine knows, and what may go. Keeps: bytes that
/// exist nowhere else are never deleted; a local copy is bytes held here.
#[derive(Debug, Default)]
pub(super) struct LocalBytes {
    /// Contents whose bytes are in local storage.
    pub(super) bytes: FxSet<ContentHash>,
    /// Contents that may have lost their last user: checked at the end of the step.
    pub(super) gc_local: FxSet<ContentHash>,
    /// Contents found in storage that nothing used, with when they were found.
    pub(super) orphans: FxMap<ContentHash, Millis>,
    /// Content of this client's that a concurrent edit replaced: kept (not garbage) until then,
    /// so the app can still read it.
    pub(super) retained: FxMap<ContentHash, Millis>,
    /// Contents stored and deleted since a listing began (`InventoryStarted`).
    pub(super) journal: Option<(FxSet<ContentHash>, FxSet<ContentHash>)>,
    /// Contents tabs use now (object URLs): never evicted.
    pub(super) in_use: FxSet<ContentHash>,
    /// Something eviction depends on changed since the last pass.
    pub(super) budget_dirty: bool,
    /// Contents read or arrived within `evict_grace_ms`, with when (in memory only).
    pub(super) recent: FxMap<ContentHash, Millis>,
    /// When the last eviction pass ran: passes (a walk over every row) run at most once per
    /// `budget_pass_ms`, so a store stuck over its budget (much saved offline) does not walk
    /// every row at every step.
    pub(super) last_pass: Option<Millis>,
}

/// What the byte budget sees: the budget, the bytes rows hold, how many of them are evictable
/// (also what `getStorageInfo()` reports of it: serialized as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StorageUse {
    pub budget: Option<u64>,
    pub held: u64,
    pub evictable: u64,
}

impl LocalBytes {
    /// local_bytes: a local copy is bytes the byte store holds (debug builds, after every
    /// step).
    #[cfg(debug_assertions)]
    pub(super) fn check<'a>(&self, rows: impl Iterator<Item = &'a LocalRow>) {
        for r in rows {
            if let Some(h) = r.local_hash {
                assert!(
                    self.bytes.contains(&h),
                    "local_bytes: {} claims bytes {h:?} the store does not hold",
                    r.file_id
                );
            }
        }
    }
}

impl Engine {
    /// What storage really holds wins over what the rows say: a crash between deleting bytes
    /// and persisting the rows that dropped them leaves rows claiming missing bytes (they are
    /// downloaded again), and a crash between storing bytes and committing leaves orphans
    /// (they are deleted, or used if a file has that content).
    pub(super) fn take_inventory(&mut self, hashes: Vec<ContentHash>) {
        let mut present: FxSet<ContentHash> = hashes.into_iter().collect();
        if let Some((stored, deleted)) = self.held.journal.take() {
            present.extend(stored);
            present.retain(|h| !deleted.contains(h));
        }
        let missing: Vec<FileId> = self
            .local
            .rows()
            .filter(|r| r.local_hash.is_some_and(|h| !present.contains(&h)))
            .map(|r| r.file_id.clone())
            .collect();
        for id in missing {
            self.update_local(&id, LocalRow::drop_copy);
            self.touched.insert(id);
        }
        // Only files whose content appeared or vanished can reconcile differently: touching
        // every file would report every file changed at every start.
        let before = std::mem::take(&mut self.held.bytes);
        for h in present.symmetric_difference(&before) {
            self.touched.extend(self.table.view_refs(h).cloned());
        }
        for h in &present {
            if self.is_unused_locally(h) {
                // A tab may be about to commit these bytes: wait before deleting them.
                self.held.orphans.entry(*h).or_insert(self.now);
            }
        }
        self.held.bytes = present;
    }

    /// Records content now in local storage.
    pub(super) fn note_stored(&mut self, hashes: impl IntoIterator<Item = ContentHash>) {
        for h in hashes {
            self.held.bytes.insert(h);
            if let Some((stored, deleted)) = &mut self.held.journal {
                stored.insert(h);
                deleted.remove(&h);
            }
        }
    }

    /// Emits the delete of local content.
    pub(super) fn delete_local_bytes(&mut self, h: ContentHash) {
        self.held.bytes.remove(&h);
        if let Some((stored, deleted)) = &mut self.held.journal {
            stored.remove(&h);
            deleted.insert(h);
        }
        self.emit_command(Command::DeleteLocalBytes { hash: h });
    }

    /// Deletes the orphans that stayed unused through the grace period.
    pub(super) fn expire_orphans(&mut self) {
        // Retained content whose time is up is garbage like any other, if unused.
        let now = self.now;
        let released: Vec<ContentHash> = self
            .held
            .retained
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in released {
            self.held.retained.remove(&h);
            self.held.gc_local.insert(h);
        }
        let limit = self.cfg.orphan_grace_ms;
        let due: Vec<ContentHash> = self
            .held
            .orphans
            .iter()
            .filter(|(_, seen)| self.now.since(**seen) >= limit)
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            self.held.orphans.remove(&h);
            if !self.is_unused_locally(&h) {
                continue;
            }
            if self.held.bytes.contains(&h) {
                self.held.gc_local.insert(h);
            } else {
                self.delete_local_bytes(h);
            }
        }
    }

    /// No row holds these bytes and none wants them here: every file with this content is
    /// remote-only (lazy or evicted: its bytes are on the server), or there is none.
    pub(super) fn is_unused_locally(&self, h: &ContentHash) -> bool {
        !self.local.holds(h)
            && !self.held.retained.contains_key(h)
            && self.table.view_refs(h).all(|id| {
                self.local
                    .get(id)
                    .is_some_and(|r| r.download == TransferStatus::Remote)
            })
    }

    /// The app read these files: their bytes are evicted last. Recorded only when the last
    /// record is older than `access_granularity_ms`, and not reported as a change of the file.
    pub(super) fn accessed(&mut self, files: &[FileId]) {
        let (now, grain) = (self.now, self.cfg.access_granularity_ms);
        for id in files {
            if let Some(h) = self.local.get(id).and_then(|r| r.local_hash) {
                self.held.recent.insert(h, now);
            }
            let changed = self.local.update(id, |r| {
                if now.since(r.accessed) >= grain {
                    r.accessed = now;
                }
            });
            if changed {
                self.persist.dirty.local.insert(id.clone());
            }
        }
    }

    /// Evictable contents with their last read and size, least recently read first.
    fn evictable(&self) -> Vec<(Millis, ContentHash, u64)> {
        // The latest read of each content, and the contents some holder keeps here. (Map and
        // set types the engine has anyway: each new one is more wasm.)
        let mut last_read: FxMap<ContentHash, Millis> = FxMap::default();
        let mut kept: FxSet<ContentHash> = FxSet::default();
        for r in self.local.rows() {
            let Some(h) = r.local_hash else { continue };
            // With events of the file the server has not confirmed, the server's row may end
            // up other than ours (an edit on top of a change we have not seen yet needs our
            // upload): not evictable until they are.
            let ok = r.has_local_copy()
                && !r.pinned
                && !self.table.has_pending(&r.file_id)
                && self
                    .table
                    .confirmed(&r.file_id)
                    .is_some_and(|c| c.is_live() && c.content_hash == h && c.remote_key.is_some());
            if !ok {
                kept.insert(h);
            }
            let at = last_read.entry(h).or_insert(r.accessed);
            *at = (*at).max(r.accessed);
        }
        let mut out: Vec<(Millis, ContentHash, u64)> = last_read
            .into_iter()
            .filter(|(h, _)| {
                !kept.contains(h)
                    && !self.held.in_use.contains(h)
                    && !self.held.recent.contains_key(h)
                    && KINDS
                        .iter()
                        .all(|k| !self.sched.tasks.contains_key(&(*k, *h)))
            })
            .map(|(h, at)| (at, h, self.local.size_of(&h)))
            .collect();
        sort(&mut out);
        out
    }

    /// The budget, the bytes held and how many of them may be evicted.
    pub fn storage_use(&self) -> StorageUse {
        StorageUse {
            budget: self.cfg.budget,
            held: self.local.held_bytes(),
            evictable: self.evictable().iter().map(|e| e.2).sum(),
        }
    }

    /// Over the budget with recently read content waiting out its grace: when it ends.
    pub(super) fn budget_deadline(&self) -> Option<Millis> {
        let over = self.cfg.budget.is_some_and(|b| self.local.held_bytes() > b);
        let grace_ends = self
            .held
            .recent
            .values()
            .min()
            .map(|t| t.after(self.cfg.evict_grace_ms));
        let next_pass = self
            .held
            .last_pass
            .filter(|_| self.held.budget_dirty)
            .map(|t| t.after(self.cfg.budget_pass_ms));
        let at = match (grace_ends, next_pass) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.filter(|_| over)
    }

    /// Evicts the least recently read evictable contents while over the budget.
    pub(super) fn enforce_budget(&mut self) {
        let Some(budget) = self.cfg.budget else {
            return;
        };
        if !self.held.budget_dirty {
            return;
        }
        let (now, grace) = (self.now, self.cfg.evict_grace_ms);
        self.held.recent.retain(|_, at| now.since(*at) < grace);
        if self.local.held_bytes() <= budget {
            self.held.budget_dirty = false;
            return;
        }
        if self
            .held
            .last_pass
            .is_some_and(|t| now.since(t) < self.cfg.budget_pass_ms)
        {
            // Too soon: the `Budget` timer runs it.
            return;
        }
        self.held.last_pass = Some(now);
        let mut held = self.local.held_bytes();
        for (_, h, size) in self.evictable() {
            if held <= budget {
                break;
            }
            held -= size;
            let holders: Vec<FileId> = self.table.view_refs(&h).cloned().collect();
            for id in holders {
                self.update_local(&id, |r| {
                    r.drop_copy();
                    r.download = TransferStatus::Remote;
                    r.evicted = true;
                });
            }
        }
        // Evicting made nothing else evictable.
        self.held.budget_dirty = false;
    }

    pub(super) fn collect_local_garbage(&mut self) {
        for h in std::mem::take(&mut self.held.gc_local) {
            if self.held.bytes.contains(&h)
                && self.is_unused_locally(&h)
                && !self.persist.unbatched_gc.contains(&h)
            {
                self.persist.unbatched_gc.push(h);
            }
        }
    }

    /// Deletes local contents still unused now that the state without them is durable.
    pub(super) fn delete_local(&mut self, hashes: Vec<ContentHash>) {
        for h in hashes {
            if self.is_unused_locally(&h) && self.held.bytes.contains(&h) {
                self.delete_local_bytes(h);
            }
        }
    }
}
