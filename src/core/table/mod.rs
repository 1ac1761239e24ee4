//! The `files` table, materialized from synced events.
//!
//! Two layers: the *confirmed* rows, folded from the server's total order, and an *overlay* of
//! rows touched by this client's pending events, re-folded on top of the confirmed rows whenever
//! confirmed events arrive (a rebase). Readers see the overlay where it has a row, the confirmed
//! row elsewhere; that is the client's *view*.
//!
//! Invariants:
//! * The confirmed rows depend only on the sequence of confirmed events, so every client that
//!   applied the same prefix has the same rows (the simulation checks this).
//! * Re-delivering a confirmed event changes nothing: events at or below the cursor are skipped.
//! * `view_refs` and `confirmed_refs` index live rows by content hash, for deduplicated transfers
//!   and for deleting bytes only once nothing references them.

use std::collections::{BTreeMap, BTreeSet};

use super::collections::{sort_by, FxMap, FxSet};
use super::error::{DecodeError, EngineError};
use super::event::{ClientEvent, ConfirmedEvent, FileEvent, FileInfo, MetadataPatch};
use super::ids::{ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId};

/// One materialized file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: FileId,
    pub path: String,
    pub content_hash: ContentHash,
    /// `None` until the content is uploaded (`""` in livestore-filesync).
    pub remote_key: Option<RemoteKey>,
    pub info: FileInfo,
    pub metadata_json: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Set by `FileDeleted`; the row stays as a tombstone.
    pub deleted_at: Option<Millis>,
}

impl FileRow {
    /// Not deleted.
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }
}

/// Folds one event into the current row. `None` means the event changes nothing: a second
/// create of an id (first wins), an update or delete of a missing or deleted file, or a
/// conditional update whose expected content hash no longer holds.
pub fn fold(current: Option<&FileRow>, event: &FileEvent) -> Option<FileRow> {
    match (event, current) {
        (FileEvent::Created(c), None) => Some(FileRow {
            id: c.id.clone(),
            path: c.path.clone(),
            content_hash: c.content_hash,
            remote_key: None,
            info: c.info.clone(),
            metadata_json: c.metadata_json.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: None,
        }),
        (FileEvent::Updated(u), Some(row)) if row.is_live() => {
            if u.expected_content_hash
                .is_some_and(|h| h != row.content_hash)
            {
                return None;
            }
            let same_content = u.content_hash == row.content_hash;
            let mut next = row.clone();
            next.path.clone_from(&u.path);
            next.content_hash = u.content_hash;
            next.info = u.info.clone();
            // Same content stays uploaded whatever the event says; new content is uploaded only
            // if the event says so (its key is validated to name that content).
            next.remote_key = match (&u.remote_key, same_content) {
                (Some(k), _) => Some(k.clone()),
                (None, true) => row.remote_key.clone(),
                (None, false) => None,
            };
            match &u.metadata {
                MetadataPatch::Keep => {}
                MetadataPatch::Clear => next.metadata_json = None,
                MetadataPatch::Set(s) => next.metadata_json = Some(s.clone()),
            }
            next.updated_at = u.updated_at;
            (next != *row).then_some(next)
        }
        (FileEvent::Deleted(d), Some(row)) if row.is_live() => {
            let mut next = row.clone();
            next.deleted_at = Some(d.deleted_at);
            Some(next)
        }
        _ => None,
    }
}

type Refs = FxMap<ContentHash, FxSet<FileId>>;

fn index(refs: &mut Refs, id: &FileId, old: Option<&FileRow>, new: Option<&FileRow>) {
    let live_hash = |r: Option<&FileRow>| r.filter(|r| r.is_live()).map(|r| r.content_hash);
    let (old, new) = (live_hash(old), live_hash(new));
    if old == new {
        return;
    }
    if let Some(h) = old {
        if let Some(set) = refs.get_mut(&h) {
            set.remove(id);
            if set.is_empty() {
                refs.remove(&h);
            }
        }
    }
    if let Some(h) = new {
        refs.entry(h).or_default().insert(id.clone());
    }
}

/// What applying confirmed events changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Files whose view row changed.
    pub changed: BTreeSet<FileId>,
    /// Confirmed events that were applied (skips excluded), in order.
    pub applied: Vec<ConfirmedEvent>,
    /// Content that lost its last live confirmed reference, with the event that did it.
    pub released: Vec<(ContentHash, EventId)>,
    /// Events that are invalid for this store: skipped (the cursor moves past them) so one bad
    /// event cannot block sync forever.
    pub rejected: Vec<(Seq, DecodeError)>,
    /// Contents whose upload completion (one of this client's pending updates carrying the
    /// remote key) came back confirmed without its key: the server does not hold the blob.
    pub key_cleared: Vec<ContentHash>,
    /// Content replaced by an edit made without knowledge of it (the update's
    /// `previousContentHash` is another content): a concurrent overwrite.
    pub concurrent: Vec<Overwrite>,
}

/// A file's content replaced by a concurrent edit (see [`Applied::concurrent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    pub file: FileId,
    /// The content the confirmed row had, which the edit's author never saw.
    pub replaced: ContentHash,
    /// The content the edit wrote.
    pub winner: ContentHash,
}

/// The files table: confirmed rows, pending events and the overlay on top.
#[derive(Debug, Default, Clone)]
pub struct FilesTable {
    confirmed: BTreeMap<FileId, FileRow>,
    cursor: Seq,
    pending: Vec<ClientEvent>,
    /// How many pending events each file has.
    pending_files: FxMap<FileId, u32>,
    overlay: BTreeMap<FileId, Option<FileRow>>,
    view_refs: Refs,
    confirmed_refs: Refs,
}

impl FilesTable {
    /// Rebuilds a table from stored confirmed rows, cursor and pending events.
    pub fn restore(
        rows: impl IntoIterator<Item = FileRow>,
        cursor: Seq,
        pending: Vec<ClientEvent>,
    ) -> FilesTable {
        // Bulk-built: sorted input makes both maps O(n) to build.
        let confirmed: BTreeMap<FileId, FileRow> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut refs = Refs::default();
        for r in confirmed.values().filter(|r| r.is_live()) {
            refs.entry(r.content_hash).or_default().insert(r.id.clone());
        }
        let mut pending_files: FxMap<FileId, u32> = FxMap::default();
        for p in &pending {
            *pending_files.entry(p.event.file_id().clone()).or_default() += 1;
        }
        let mut t = FilesTable {
            cursor,
            view_refs: refs.clone(),
            confirmed_refs: refs,
            confirmed,
            pending,
            pending_files,
            overlay: BTreeMap::new(),
        };
        t.rebase_overlay_only();
        for id in t.overlay.keys().cloned().collect::<Vec<_>>() {
            let base = t.confirmed.get(&id).cloned();
            let new = t.get(&id).cloned();
            index(&mut t.view_refs, &id, base.as_ref(), new.as_ref());
        }
        t
    }

    /// Last confirmed position applied.
    pub fn cursor(&self) -> Seq {
        self.cursor
    }

    /// This client's view of a file: pending changes on top of confirmed ones.
    pub fn get(&self, id: &FileId) -> Option<&FileRow> {
        match self.overlay.get(id) {
            Some(row) => row.as_ref(),
            None => self.confirmed.get(id),
        }
    }

    /// The confirmed row of a file, ignoring this client's pending events.
    pub fn confirmed(&self, id: &FileId) -> Option<&FileRow> {
        self.confirmed.get(id)
    }

    /// Every row of the view (tombstones included), ordered by id.
    pub fn rows(&self) -> impl Iterator<Item = &FileRow> {
        let over = self
            .overlay
            .iter()
            .filter_map(|(id, r)| r.as_ref().filter(|_| !self.confirmed.contains_key(id)));
        let mut merged: Vec<&FileRow> = self
            .confirmed
            .iter()
            .filter_map(|(id, row)| match self.overlay.get(id) {
                Some(r) => r.as_ref(),
                None => Some(row),
            })
            .chain(over)
            .collect();
        if !self.overlay.is_empty() {
            sort_by(&mut merged, |a, b| a.id.cmp(&b.id));
        }
        merged.into_iter()
    }

    /// Confirmed rows, for persistence.
    pub fn confirmed_rows(&self) -> impl Iterator<Item = &FileRow> {
        self.confirmed.values()
    }

    /// Events made here and not yet confirmed, oldest first.
    pub fn pending(&self) -> &[ClientEvent] {
        &self.pending
    }

    /// Whether this client has events about the file that the server has not confirmed yet
    /// (then the server's row may differ from the view).
    pub fn has_pending(&self, id: &FileId) -> bool {
        self.pending_files.contains_key(id)
    }

    /// Live files of the view with this content.
    pub fn view_refs(&self, hash: &ContentHash) -> impl Iterator<Item = &FileId> {
        self.view_refs.get(hash).into_iter().flatten()
    }

    /// Whether a live confirmed row references this content: the server knows it is in use.
    pub fn is_confirmed_referenced(&self, hash: &ContentHash) -> bool {
        self.confirmed_refs.contains_key(hash)
    }

    /// Whether any live file references this content, in the view or in the confirmed rows.
    pub fn is_referenced(&self, hash: &ContentHash) -> bool {
        self.view_refs.contains_key(hash) || self.confirmed_refs.contains_key(hash)
    }

    /// Checks a local event against the view, then records it as pending and applies it.
    pub fn commit_local(&mut self, event: ClientEvent) -> Result<(), EngineError> {
        let id = event.event.file_id().clone();
        let current = self.get(&id);
        match (&event.event, current) {
            (FileEvent::Created(_), Some(_)) => return Err(EngineError::AlreadyExists { id }),
            (FileEvent::Updated(_) | FileEvent::Deleted(_), r)
                if !r.is_some_and(FileRow::is_live) =>
            {
                return Err(EngineError::NotFound { id });
            }
            _ => {}
        }
        if let Some(next) = fold(current, &event.event) {
            let old = self.get(&id).cloned();
            index(&mut self.view_refs, &id, old.as_ref(), Some(&next));
            self.overlay.insert(id.clone(), Some(next));
        }
        *self.pending_files.entry(id).or_default() += 1;
        self.pending.push(event);
        Ok(())
    }

    /// Applies confirmed events in order. Events at or below the cursor are skipped (redelivery);
    /// the caller hands over only contiguous runs (`seq == cursor + 1` for the first).
    pub fn apply_confirmed(
        &mut self,
        store: &StoreId,
        events: impl IntoIterator<Item = ConfirmedEvent>,
    ) -> Applied {
        let mut out = Applied::default();
        let mut confirmed_ids = BTreeSet::new();
        let mut before: BTreeMap<FileId, Option<FileRow>> = BTreeMap::new();
        // Without pending events the view is the confirmed rows: index both as we go, with no
        // before/after comparison (this is the common case of a client catching up).
        let plain = self.pending.is_empty();
        // This client's pending upload completions, to tell one the server cleared.
        let attaching: FxSet<&EventId> = self
            .pending
            .iter()
            .filter(|p| matches!(&p.event, FileEvent::Updated(u) if u.remote_key.is_some()))
            .map(|p| &p.id)
            .collect();
        let mut key_cleared = Vec::new();
        for ev in events {
            if ev.seq <= self.cursor {
                continue;
            }
            debug_assert_eq!(
                ev.seq.0,
                self.cursor.0 + 1,
                "confirmed events must be contiguous"
            );
            self.cursor = ev.seq;
            if let Err(e) = ev.event.validate_for_store(store) {
                out.rejected.push((ev.seq, e));
                continue;
            }
            let id = ev.event.file_id();
            if !plain && !before.contains_key(id) {
                before.insert(id.clone(), self.get(id).cloned());
            }
            let current = self.confirmed.get(id);
            if let FileEvent::Updated(u) = &ev.event {
                if u.remote_key.is_none() && attaching.contains(&ev.id) {
                    key_cleared.push(u.content_hash);
                }
                if let (Some(previous), Some(row)) = (u.previous_content_hash, current) {
                    let replaces = row.is_live() && row.content_hash != u.content_hash;
                    if replaces && previous != row.content_hash {
                        out.concurrent.push(Overwrite {
                            file: id.clone(),
                            replaced: row.content_hash,
                            winner: u.content_hash,
                        });
                    }
                }
            }
            if let Some(next) = fold(current, &ev.event) {
                let old_live = current.filter(|r| r.is_live()).map(|r| r.content_hash);
                index(&mut self.confirmed_refs, id, current, Some(&next));
                if plain {
                    index(&mut self.view_refs, id, current, Some(&next));
                    out.changed.insert(id.clone());
                }
                if let Some(old) = old_live {
                    let gone = !next.is_live() || next.content_hash != old;
                    if gone && !self.confirmed_refs.contains_key(&old) {
                        out.released.push((old, ev.id.clone()));
                    }
                }
                self.confirmed.insert(id.clone(), next);
            }
            if !plain {
                confirmed_ids.insert(ev.id.clone());
            }
            out.applied.push(ev);
        }
        out.key_cleared = key_cleared;
        if out.applied.is_empty() || plain {
            return out;
        }
        let had_pending = !self.pending.is_empty();
        let counts = &mut self.pending_files;
        self.pending.retain(|p| {
            if !confirmed_ids.contains(&p.id) {
                return true;
            }
            let id = p.event.file_id();
            if let Some(n) = counts.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(id);
                }
            }
            false
        });
        // Files whose view may have changed: those the confirmed events touched and those
        // pending events touch (before or after the rebase).
        for id in self.overlay.keys() {
            before
                .entry(id.clone())
                .or_insert_with(|| self.get(id).cloned());
        }
        if had_pending {
            self.rebase_overlay_only();
        }
        for (id, old) in before {
            let new = self.get(&id).cloned();
            if old != new {
                index(&mut self.view_refs, &id, old.as_ref(), new.as_ref());
                out.changed.insert(id);
            }
        }
        out
    }

    /// Re-folds pending events on top of the confirmed rows.
    fn rebase_overlay_only(&mut self) {
        self.overlay.clear();
        for p in &self.pending {
            let id = p.event.file_id();
            let current = match self.overlay.get(id) {
                Some(r) => r.as_ref(),
                None => self.confirmed.get(id),
            };
            if let Some(next) = fold(current, &p.event) {
                self.overlay.insert(id.clone(), Some(next));
            }
        }
    }
}

/// A live row for tests: `id`'s path, one-byte info, uploaded or not, in store `s`.
#[cfg(test)]
pub(crate) fn test_row(id: &str, content: &[u8], uploaded: bool) -> FileRow {
    let h = ContentHash::of(content);
    let store = StoreId::new("s").expect("valid store id");
    FileRow {
        id: FileId::new(id).expect("valid file id"),
        path: id.into(),
        content_hash: h,
        remote_key: uploaded.then(|| RemoteKey::for_content(&store, &h)),
        info: FileInfo {
            name: "n".into(),
            mime_type: "".into(),
            size: 1,
        },
        metadata_json: None,
        created_at: Millis(0),
        updated_at: Millis(0),
        deleted_at: None,
    }
}

#[cfg(test)]
mod tests;
