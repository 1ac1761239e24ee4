//! Per-client file state: what this browser has and what it still has to transfer.
//!
//! One row per live file, shared by every tab of the browser and never sent to the server
//! (livestore-filesync's `localFileState`). [`reconcile`] is the decision table: given the
//! file's view row and whether its bytes are here, it says what to upload or download, and it
//! never downgrades an active transfer when state is re-applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::collections::FxMap;
use super::ids::{ContentHash, FileId, Millis};
use super::table::FileRow;

/// Status of one direction of transfer for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum TransferStatus {
    /// Needs a transfer that cannot start yet (a download before the owner uploaded).
    Pending,
    /// Waiting for a transfer slot (or for a retry delay).
    Queued,
    /// Running now.
    InProgress,
    /// Nothing to do.
    Done,
    /// Failed for good or cancelled; `last_error` says why. `retryErrors` re-queues it.
    Error,
    /// Downloads only: the bytes are on the server and not wanted here yet; they download when
    /// the app reads the file ([`Downloads::Lazy`]).
    Remote,
}

/// When the bytes of files other clients saved download here (the app's `downloads` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Downloads {
    /// As soon as they are on the server (the default).
    #[default]
    Eager,
    /// When the app reads the file (`readFile`, `resolveFileUrl`, `prioritizeDownload`); until
    /// then its download status is [`TransferStatus::Remote`].
    Lazy,
}

impl TransferStatus {
    /// Queued or running: re-applying state must keep it.
    pub fn is_active(self) -> bool {
        matches!(self, TransferStatus::Queued | TransferStatus::InProgress)
    }
}

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferKind {
    Upload,
    Download,
}

/// The last transfer error of a file, as shown to the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncError {
    pub code: String,
    pub message: String,
}

/// Per-client state of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRow {
    pub file_id: FileId,
    pub path: String,
    /// The content this row's statuses are about (the file's current content hash).
    pub content_hash: ContentHash,
    /// The content whose bytes are stored here for this file, if any.
    pub local_hash: Option<ContentHash>,
    /// The size of those bytes (0 without them): what the row counts against the byte budget.
    pub local_size: u64,
    pub upload: TransferStatus,
    pub download: TransferStatus,
    pub last_error: Option<SyncError>,
    /// This client wrote the current content (an app save or edit made here), so a concurrent
    /// edit that replaces it overwrites this device's work: the app is told (`Conflict`).
    pub authored: bool,
    /// The app keeps this file available offline here (`pin`), whatever the downloads policy:
    /// its bytes download as soon as they can. Follows the file across edits.
    pub pinned: bool,
    /// When the app last read the file here, coarsely (the engine's clock; the time its bytes
    /// arrived if never read): the byte budget evicts the least recently used first.
    pub accessed: Millis,
    /// Its bytes were evicted to keep the byte budget: it stays remote-only, whatever the
    /// downloads policy, until the app reads it or its content changes.
    pub evicted: bool,
}

impl LocalRow {
    /// The status of one direction.
    pub fn status(&self, kind: TransferKind) -> TransferStatus {
        match kind {
            TransferKind::Upload => self.upload,
            TransferKind::Download => self.download,
        }
    }
    /// Sets the status of one direction.
    pub fn set_status(&mut self, kind: TransferKind, s: TransferStatus) {
        match kind {
            TransferKind::Upload => self.upload = s,
            TransferKind::Download => self.download = s,
        }
    }
    /// The bytes of the current content are here.
    pub fn has_local_copy(&self) -> bool {
        self.local_hash == Some(self.content_hash)
    }
    /// Forgets the bytes held here (the driver deletes them, or found them gone).
    pub fn drop_copy(&mut self) {
        self.local_hash = None;
        self.local_size = 0;
    }
}

/// The decision table (livestore-filesync's, plus its fixes): the row this file should have,
/// given its view row, the existing per-client row and whether the content's bytes are here.
///
/// | bytes here | remote key | upload | download |
/// |---|---|---|---|
/// | yes | none | queued | done |
/// | yes | set  | done   | done |
/// | no  | set  | done   | queued (eager, or pinned), remote (lazy, or evicted: until the app reads it) |
/// | no  | none | done   | pending (wait for the owner's upload) |
///
/// For the same content, an active (queued, in progress) or failed status is kept, so neither a
/// running transfer (a lazy file the app asked for included) nor an error the app has not
/// retried is clobbered; `done` always wins, because the work is no longer needed. New content
/// starts afresh.
pub fn reconcile(
    row: &FileRow,
    existing: Option<&LocalRow>,
    bytes_here: bool,
    downloads: Downloads,
) -> LocalRow {
    use TransferStatus::*;
    let same = existing.filter(|e| e.content_hash == row.content_hash);
    let pinned = existing.is_some_and(|e| e.pinned);
    let on_demand = downloads == Downloads::Lazy || same.is_some_and(|e| e.evicted);
    let (want_up, want_down) = match (bytes_here, row.remote_key.is_some()) {
        (true, false) => (Queued, Done),
        (true, true) => (Done, Done),
        (false, true) if on_demand && !pinned => (Done, Remote),
        (false, true) => (Done, Queued),
        (false, false) => (Done, Pending),
    };
    let keep = |want: TransferStatus, old: Option<TransferStatus>| match (want, old) {
        (Queued | Remote, Some(o)) if o.is_active() || o == Error => o,
        _ => want,
    };
    let upload = keep(want_up, same.map(|e| e.upload));
    let download = keep(want_down, same.map(|e| e.download));
    let last_error = same
        .and_then(|e| e.last_error.clone())
        .filter(|_| upload == Error || download == Error);
    // An older content's bytes stay shown until the new ones arrive; a lazy file whose new
    // content nobody asked for lets them go (nothing will replace them).
    let (local_hash, local_size) = if bytes_here {
        (Some(row.content_hash), row.info.size)
    } else if download == Remote {
        (None, 0)
    } else {
        existing.map_or((None, 0), |e| (e.local_hash, e.local_size))
    };
    LocalRow {
        file_id: row.id.clone(),
        path: row.path.clone(),
        content_hash: row.content_hash,
        local_hash,
        local_size,
        upload,
        download,
        last_error,
        authored: same.is_some_and(|e| e.authored),
        pinned,
        accessed: existing.map_or(Millis(0), |e| e.accessed),
        evicted: download == Remote && same.is_some_and(|e| e.evicted),
    }
}

/// All per-client rows, with an index of which content is stored here and how many bytes
/// that is (each content counted once, however many files share it).
#[derive(Debug, Default, Clone)]
pub struct LocalState {
    rows: BTreeMap<FileId, LocalRow>,
    /// Rows holding each content, and its size.
    stored: FxMap<ContentHash, (u32, u64)>,
    held_bytes: u64,
}

impl LocalState {
    /// Rebuilds from stored rows.
    pub fn restore(rows: impl IntoIterator<Item = LocalRow>) -> LocalState {
        let mut s = LocalState::default();
        for r in rows {
            s.store(&r);
            s.rows.insert(r.file_id.clone(), r);
        }
        s
    }

    /// One row.
    pub fn get(&self, id: &FileId) -> Option<&LocalRow> {
        self.rows.get(id)
    }

    /// All rows, by file id.
    pub fn rows(&self) -> impl Iterator<Item = &LocalRow> {
        self.rows.values()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether some row holds these bytes as its local copy (maybe of an older version).
    pub fn holds(&self, hash: &ContentHash) -> bool {
        self.stored.contains_key(hash)
    }

    /// The size of content rows hold (0 if none does).
    pub fn size_of(&self, hash: &ContentHash) -> u64 {
        self.stored.get(hash).map_or(0, |s| s.1)
    }

    /// The bytes of all contents rows hold, each counted once.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Inserts or replaces a row; returns the old one.
    pub fn put(&mut self, row: LocalRow) -> Option<LocalRow> {
        self.store(&row);
        let old = self.rows.insert(row.file_id.clone(), row);
        if let Some(o) = &old {
            self.unstore(o);
        }
        old
    }

    /// Removes a row; returns it.
    pub fn remove(&mut self, id: &FileId) -> Option<LocalRow> {
        let old = self.rows.remove(id);
        if let Some(o) = &old {
            self.unstore(o);
        }
        old
    }

    fn store(&mut self, r: &LocalRow) {
        if let Some(h) = r.local_hash {
            let e = self.stored.entry(h).or_insert((0, r.local_size));
            if e.0 == 0 {
                self.held_bytes += e.1;
            }
            e.0 += 1;
        }
    }

    fn unstore(&mut self, r: &LocalRow) {
        let Some(h) = r.local_hash else { return };
        if let Some((n, size)) = self.stored.get_mut(&h) {
            *n -= 1;
            if *n == 0 {
                self.held_bytes -= *size;
                self.stored.remove(&h);
            }
        }
    }

    /// Applies `f` to a row, keeping the index right.
    pub fn update(&mut self, id: &FileId, f: impl FnOnce(&mut LocalRow)) -> bool {
        let Some(mut row) = self.rows.get(id).cloned() else {
            return false;
        };
        f(&mut row);
        if self.rows.get(id) != Some(&row) {
            self.put(row);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Downloads::Eager;
    use TransferStatus::*;

    fn row(content: &[u8], uploaded: bool) -> FileRow {
        crate::core::table::test_row("f", content, uploaded)
    }

    #[test]
    fn decision_table() {
        let cases = [
            (true, false, Queued, Done),
            (true, true, Done, Done),
            (false, true, Done, Queued),
            (false, false, Done, Pending),
        ];
        for (here, uploaded, up, down) in cases {
            let r = reconcile(&row(b"a", uploaded), None, here, Eager);
            assert_eq!(
                (r.upload, r.download),
                (up, down),
                "here={here} uploaded={uploaded}"
            );
            assert_eq!(r.has_local_copy(), here);
        }
    }

    #[test]
    fn lazy_downloads_wait_for_the_app_and_keep_its_request() {
        use Downloads::Lazy;
        let r = row(b"a", true);
        let fresh = reconcile(&r, None, false, Lazy);
        assert_eq!((fresh.upload, fresh.download), (Done, Remote));
        // Not uploaded yet: pending as in eager mode; bytes here: nothing to download.
        assert_eq!(
            reconcile(&row(b"a", false), None, false, Lazy).download,
            Pending
        );
        assert_eq!(reconcile(&r, None, true, Lazy).download, Done);
        // The app asked for it (queued), it runs, or it failed: kept until done.
        for asked in [Queued, InProgress, Error] {
            let mut existing = fresh.clone();
            existing.download = asked;
            assert_eq!(reconcile(&r, Some(&existing), false, Lazy).download, asked);
        }
        assert_eq!(reconcile(&r, Some(&fresh), true, Lazy).download, Done);
        // A remote-only row under an eager policy (the option changed) downloads.
        assert_eq!(reconcile(&r, Some(&fresh), false, Eager).download, Queued);
        // Pinned: downloads whatever the policy, and the pin stays with the file when its
        // content changes.
        let mut pinned = fresh.clone();
        pinned.pinned = true;
        let again = reconcile(&r, Some(&pinned), false, Lazy);
        assert_eq!((again.download, again.pinned), (Queued, true));
        let edited = reconcile(&row(b"b", true), Some(&again), false, Lazy);
        assert_eq!((edited.download, edited.pinned), (Queued, true));
        // Edited elsewhere while the old bytes are here: kept while the new ones are wanted,
        // let go when nobody asked for them (lazy).
        let held = reconcile(&r, None, true, Lazy);
        assert_eq!(held.local_hash, Some(ContentHash::of(b"a")));
        let mut wanted = held.clone();
        wanted.pinned = true;
        let kept = reconcile(&row(b"b", true), Some(&wanted), false, Lazy);
        assert_eq!(kept.local_hash, Some(ContentHash::of(b"a")));
        let dropped = reconcile(&row(b"b", true), Some(&held), false, Lazy);
        assert_eq!((dropped.download, dropped.local_hash), (Remote, None));
    }

    #[test]
    fn reapplying_never_downgrades_active_or_failed_transfers() {
        let r = row(b"a", true);
        for active in [Queued, InProgress, Error] {
            let mut existing = reconcile(&r, None, false, Eager);
            existing.download = active;
            existing.last_error = (active == Error).then(|| SyncError {
                code: "x".into(),
                message: "y".into(),
            });
            let again = reconcile(&r, Some(&existing), false, Eager);
            assert_eq!(again.download, active);
            assert_eq!(again.last_error, existing.last_error);
        }
        // Finished elsewhere: done wins over an active status.
        let mut existing = reconcile(&row(b"a", false), None, true, Eager);
        existing.upload = InProgress;
        assert_eq!(reconcile(&r, Some(&existing), true, Eager).upload, Done);
        // New content starts afresh, keeping the old bytes' hash until new ones arrive.
        let mut old = reconcile(&row(b"a", true), None, true, Eager);
        old.download = Error;
        let fresh = reconcile(&row(b"b", true), Some(&old), false, Eager);
        assert_eq!(fresh.download, Queued);
        assert_eq!(fresh.local_hash, Some(ContentHash::of(b"a")));
        assert!(!fresh.has_local_copy());
    }

    #[test]
    fn an_evicted_file_stays_remote_until_asked_for_or_changed() {
        let r = row(b"a", true);
        let mut evicted = reconcile(&r, None, true, Eager);
        evicted.drop_copy();
        evicted.download = Remote;
        evicted.evicted = true;
        let again = reconcile(&r, Some(&evicted), false, Eager);
        assert_eq!((again.download, again.evicted), (Remote, true));
        // Asked for (the read queued it), pinned, or new content: downloads, no longer evicted.
        let mut asked = again.clone();
        asked.download = Queued;
        let asked = reconcile(&r, Some(&asked), false, Eager);
        assert_eq!((asked.download, asked.evicted), (Queued, false));
        let mut pinned = again.clone();
        pinned.pinned = true;
        assert_eq!(reconcile(&r, Some(&pinned), false, Eager).download, Queued);
        let edited = reconcile(&row(b"b", true), Some(&again), false, Eager);
        assert_eq!((edited.download, edited.evicted), (Queued, false));
        // Back here: the size of the bytes held is the file's.
        let back = reconcile(&r, Some(&again), true, Eager);
        assert_eq!(
            (back.download, back.evicted, back.local_size),
            (Done, false, 1)
        );
    }

    #[test]
    fn stored_index_follows_rows() {
        let mut s = LocalState::default();
        let a = reconcile(&row(b"a", false), None, true, Eager);
        let h = ContentHash::of(b"a");
        s.put(a.clone());
        let mut b = a.clone();
        b.file_id = FileId::new("g").unwrap();
        s.put(b);
        assert_eq!(s.held_bytes(), 1, "shared content counts once");
        s.remove(&a.file_id);
        assert!(s.holds(&h));
        assert_eq!(s.held_bytes(), 1);
        s.update(&FileId::new("g").unwrap(), LocalRow::drop_copy);
        assert!(!s.holds(&h));
        assert_eq!(s.held_bytes(), 0);
    }
}
