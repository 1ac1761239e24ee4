//! Local bytes: what the byte store holds, orphans, and deleting content nothing uses once that is durable.

use super::*;

impl Engine {
    /// What storage really holds wins over what the rows say: a crash between deleting bytes
    /// and persisting the rows that dropped them leaves rows claiming missing bytes (they are
    /// downloaded again), and a crash between storing bytes and committing leaves orphans
    /// (they are deleted, or used if a file has that content).
    pub(super) fn take_inventory(&mut self, hashes: Vec<ContentHash>) {
        let mut present: FxSet<ContentHash> = hashes.into_iter().collect();
        if let Some((stored, deleted)) = self.journal.take() {
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
        let before = std::mem::take(&mut self.bytes);
        for h in present.symmetric_difference(&before) {
            self.touched.extend(self.table.view_refs(h).cloned());
        }
        for h in &present {
            if self.is_unused_locally(h) {
                // A tab may be about to commit these bytes: wait before deleting them.
                self.orphans.entry(*h).or_insert(self.now);
            }
        }
        self.bytes = present;
    }

    /// Records content now in local storage.
    pub(super) fn note_stored(&mut self, hashes: impl IntoIterator<Item = ContentHash>) {
        for h in hashes {
            self.bytes.insert(h);
            if let Some((stored, deleted)) = &mut self.journal {
                stored.insert(h);
                deleted.remove(&h);
            }
        }
    }

    /// Emits the delete of local content.
    pub(super) fn delete_local_bytes(&mut self, h: ContentHash) {
        self.bytes.remove(&h);
        if let Some((stored, deleted)) = &mut self.journal {
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
            .retained
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in released {
            self.retained.remove(&h);
            self.gc_local.insert(h);
        }
        let limit = self.cfg.orphan_grace_ms;
        let due: Vec<ContentHash> = self
            .orphans
            .iter()
            .filter(|(_, seen)| self.now.since(**seen) >= limit)
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            self.orphans.remove(&h);
            if !self.is_unused_locally(&h) {
                continue;
            }
            if self.bytes.contains(&h) {
                self.gc_local.insert(h);
            } else {
                self.delete_local_bytes(h);
            }
        }
    }

    pub(super) fn is_unused_locally(&self, h: &ContentHash) -> bool {
        !self.local.holds(h)
            && self.table.view_refs(h).next().is_none()
            && !self.retained.contains_key(h)
    }

    pub(super) fn collect_local_garbage(&mut self) {
        for h in std::mem::take(&mut self.gc_local) {
            if self.bytes.contains(&h)
                && self.is_unused_locally(&h)
                && !self.unbatched_gc.contains(&h)
            {
                self.unbatched_gc.push(h);
            }
        }
    }

    /// Deletes local contents still unused now that the state without them is durable.
    pub(super) fn delete_local(&mut self, hashes: Vec<ContentHash>) {
        for h in hashes {
            if self.is_unused_locally(&h) && self.bytes.contains(&h) {
                self.delete_local_bytes(h);
            }
        }
    }
}
