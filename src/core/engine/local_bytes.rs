//! Local bytes: what the byte store holds, orphans, and deleting content nothing uses once that is durable.

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
            self.update_local(&id, |r| r.local_hash = None);
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

    pub(super) fn is_unused_locally(&self, h: &ContentHash) -> bool {
        !self.local.holds(h)
            && self.table.view_refs(h).next().is_none()
            && !self.held.retained.contains_key(h)
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
