//! State derived for the app: aggregate sync status and per-file display state.

use serde::{Deserialize, Serialize};

use super::ids::FileId;
use super::local::{LocalRow, SyncError, TransferStatus};
use super::table::FileRow;

/// A file in error, with its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileError {
    pub file_id: FileId,
    pub code: String,
    pub error: String,
}

/// Aggregate status of this client, derived from the per-client rows (livestore-filesync's
/// `getSyncStatus`, same field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub uploading_count: usize,
    pub downloading_count: usize,
    pub queued_upload_count: usize,
    pub queued_download_count: usize,
    pub pending_upload_count: usize,
    pub pending_download_count: usize,
    pub error_count: usize,
    pub uploading_file_ids: Vec<FileId>,
    pub downloading_file_ids: Vec<FileId>,
    pub queued_upload_file_ids: Vec<FileId>,
    pub queued_download_file_ids: Vec<FileId>,
    pub pending_upload_file_ids: Vec<FileId>,
    pub pending_download_file_ids: Vec<FileId>,
    pub errors: Vec<FileError>,
    /// Events made here (saves, edits, deletes, upload completions) that the server has not
    /// confirmed yet, sent or not. Until it has, other devices do not see them.
    pub unconfirmed_event_count: usize,
    /// Work is moving: a transfer is running, or events wait for the server's confirmation.
    pub is_syncing: bool,
    /// Something here is not yet as the server will have it: a transfer queued, pending or
    /// running, or an unconfirmed event. `false` (with no errors) means every change made
    /// here is on the server.
    pub has_pending: bool,
}

impl SyncStatus {
    /// Derives the status from every per-client row and the number of unconfirmed events.
    pub fn derive<'a>(
        rows: impl IntoIterator<Item = &'a LocalRow>,
        unconfirmed: usize,
    ) -> SyncStatus {
        SyncStatus::from_transfers(
            rows.into_iter().map(|r| TransferStates {
                file_id: &r.file_id,
                upload: r.upload,
                download: r.download,
                last_error: r.last_error.as_ref(),
            }),
            unconfirmed,
        )
    }

    /// Derives the status from the transfer states of every file, in file order, and the
    /// number of unconfirmed events (a tab derives it from its replica of the files, as the
    /// engine does from its rows).
    pub fn from_transfers<'a>(
        rows: impl IntoIterator<Item = TransferStates<'a>>,
        unconfirmed: usize,
    ) -> SyncStatus {
        use TransferStatus::*;
        let mut s = SyncStatus {
            unconfirmed_event_count: unconfirmed,
            ..SyncStatus::default()
        };
        for r in rows {
            let id = || r.file_id.clone();
            match r.upload {
                InProgress => s.uploading_file_ids.push(id()),
                Queued => s.queued_upload_file_ids.push(id()),
                Pending => s.pending_upload_file_ids.push(id()),
                Done | Error | Remote => {}
            }
            match r.download {
                InProgress => s.downloading_file_ids.push(id()),
                Queued => s.queued_download_file_ids.push(id()),
                Pending => s.pending_download_file_ids.push(id()),
                Done | Error | Remote => {}
            }
            if r.upload == Error || r.download == Error {
                let (code, error) = r
                    .last_error
                    .map(|e| (e.code.clone(), e.message.clone()))
                    .unwrap_or_else(|| ("unknown".into(), "transfer failed".into()));
                s.errors.push(FileError {
                    file_id: id(),
                    code,
                    error,
                });
            }
        }
        s.uploading_count = s.uploading_file_ids.len();
        s.downloading_count = s.downloading_file_ids.len();
        s.queued_upload_count = s.queued_upload_file_ids.len();
        s.queued_download_count = s.queued_download_file_ids.len();
        s.pending_upload_count = s.pending_upload_file_ids.len();
        s.pending_download_count = s.pending_download_file_ids.len();
        s.error_count = s.errors.len();
        s.is_syncing = s.uploading_count + s.downloading_count > 0 || unconfirmed > 0;
        s.has_pending = s.is_syncing
            || s.queued_upload_count + s.queued_download_count > 0
            || s.pending_upload_count + s.pending_download_count > 0;
        s
    }
}

/// What the status reads of one file's per-client state.
#[derive(Debug, Clone, Copy)]
pub struct TransferStates<'a> {
    pub file_id: &'a FileId,
    pub upload: TransferStatus,
    pub download: TransferStatus,
    pub last_error: Option<&'a SyncError>,
}

/// What the app can do with a file, and how far it got: `canDisplay = hasLocalCopy ||
/// isUploaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisplayState {
    /// The bytes of the current content are in this browser.
    pub has_local_copy: bool,
    /// The bytes of the current content are in remote storage (this client knows their
    /// remote key). The event that records the key may not have reached the server yet: then
    /// other devices cannot fetch them yet (see `is_synced`).
    pub is_uploaded: bool,
    /// The server has recorded the file as this browser shows it, bytes included: none of its
    /// changes made here waits for the server's confirmation and its content is uploaded.
    /// Every other device can get it now.
    pub is_synced: bool,
    pub can_display: bool,
}

impl DisplayState {
    /// Derives the display state of a file from its row, this client's row, and whether the
    /// server holds the row as it is here (`confirmed`: a synced store, and no event of the
    /// file unconfirmed).
    pub fn derive(row: &FileRow, local: Option<&LocalRow>, confirmed: bool) -> DisplayState {
        let has_local_copy = local.is_some_and(|l| l.local_hash == Some(row.content_hash));
        let is_uploaded = row.remote_key.is_some();
        // A lazy file not read yet is on the server only: not displayable until the app asks.
        let remote_only = local.is_some_and(|l| l.download == TransferStatus::Remote);
        DisplayState {
            has_local_copy,
            is_uploaded,
            is_synced: confirmed && is_uploaded && row.is_live(),
            can_display: row.is_live() && (has_local_copy || (is_uploaded && !remote_only)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::local::{reconcile, Downloads, SyncError};

    fn row(id: &str, uploaded: bool) -> FileRow {
        crate::core::table::test_row(id, id.as_bytes(), uploaded)
    }

    #[test]
    fn counts_and_lists_follow_rows() {
        let mut up = reconcile(&row("a", false), None, true, Downloads::Eager);
        up.upload = TransferStatus::InProgress;
        let down = reconcile(&row("b", true), None, false, Downloads::Eager);
        let wait = reconcile(&row("c", false), None, false, Downloads::Eager);
        let mut failed = reconcile(&row("d", true), None, false, Downloads::Eager);
        failed.download = TransferStatus::Error;
        failed.last_error = Some(SyncError {
            code: "auth".into(),
            message: "no".into(),
        });
        let done = reconcile(&row("e", true), None, true, Downloads::Eager);
        let s = SyncStatus::derive([&up, &down, &wait, &failed, &done], 0);
        assert_eq!(s.uploading_file_ids, vec![FileId::new("a").unwrap()]);
        assert_eq!(s.queued_download_file_ids, vec![FileId::new("b").unwrap()]);
        assert_eq!(s.pending_download_file_ids, vec![FileId::new("c").unwrap()]);
        assert_eq!(s.errors[0].code, "auth");
        assert_eq!(
            (s.uploading_count, s.queued_download_count, s.error_count),
            (1, 1, 1)
        );
        assert!(s.is_syncing && s.has_pending);
        let idle = SyncStatus::derive([&done], 0);
        assert!(!idle.is_syncing && !idle.has_pending);
        // Transfers done, but an event the server has not confirmed: not idle.
        let unconfirmed = SyncStatus::derive([&done], 2);
        assert_eq!(unconfirmed.unconfirmed_event_count, 2);
        assert!(unconfirmed.is_syncing && unconfirmed.has_pending);
        // A delete waits with no file left to show it.
        assert!(SyncStatus::derive([], 1).has_pending);
    }

    #[test]
    fn can_display_when_local_or_uploaded() {
        let r = row("a", false);
        assert!(!DisplayState::derive(&r, None, true).can_display);
        let here = reconcile(&r, None, true, Downloads::Eager);
        assert!(DisplayState::derive(&r, Some(&here), true).can_display);
        let up = row("a", true);
        let d = DisplayState::derive(&up, None, true);
        assert!(d.can_display && d.is_uploaded && !d.has_local_copy);
        // Lazy, not read yet: remote only, not displayable; once asked for, displayable again
        // (as an eager file whose download is queued).
        let mut lazy = reconcile(&up, None, false, Downloads::Lazy);
        assert!(!DisplayState::derive(&up, Some(&lazy), true).can_display);
        lazy.download = TransferStatus::Queued;
        assert!(DisplayState::derive(&up, Some(&lazy), true).can_display);
        // Remote-only files are not work under way.
        let remote = reconcile(&up, None, false, Downloads::Lazy);
        let s = SyncStatus::derive([&remote], 0);
        assert!(!s.is_syncing && !s.has_pending && s.queued_download_count == 0);
    }

    #[test]
    fn synced_means_uploaded_and_confirmed_by_the_server() {
        let up = row("a", true);
        assert!(DisplayState::derive(&up, None, true).is_synced);
        // The upload finished here, but the event carrying its key is unconfirmed.
        let d = DisplayState::derive(&up, None, false);
        assert!(d.is_uploaded && !d.is_synced);
        // Confirmed, but the bytes are not uploaded yet.
        assert!(!DisplayState::derive(&row("a", false), None, true).is_synced);
    }
}
