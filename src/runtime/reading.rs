//! Reading a file whose bytes are not in this browser (`readFile`, `resolveFileUrl`): the tab
//! asks the leader for the download, at the head of the queue, and waits until the verified
//! bytes are stored, or fails at once when they cannot come now.
//!
//! [`verdict`] is the decision, pure and tested natively; the tab asks again after every
//! change the hub sends, and settles the waiting reads. A read also fails when an attempt of
//! that download fails (the tab hears `download:error`), so it never waits out the retries.

use super::protocol::{ErrorInfo, TabFile};
use crate::core::local::TransferStatus;

/// Where a read of a file's bytes stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// The bytes of its current content are here: read them.
    Here,
    /// Its download is wanted (queued or running): wait.
    Waiting,
    /// They cannot come now: reject.
    Failed(ErrorInfo),
}

/// Decides a read of `file` (`None`: no such live file) for a store that syncs with a server
/// (`remote`) believed reachable or not (`online`).
pub fn verdict(file: Option<&TabFile>, remote: bool, online: bool) -> Local {
    let Some(f) = file else {
        return Local::Failed(failed("not_found", "the file was deleted".into(), false));
    };
    if f.has_local_copy {
        return Local::Here;
    }
    let not_here = |why: &str| {
        format!(
            "the bytes of {} ({}) are not in this browser: {why}",
            f.name, f.id
        )
    };
    if !remote {
        return Local::Failed(failed(
            "not_available",
            not_here("this store is local-only"),
            false,
        ));
    }
    match f.download_status {
        TransferStatus::Error => {
            let (code, why) = f
                .last_sync_error
                .as_ref()
                .map_or(("download_failed", "its download failed"), |e| {
                    (e.code.as_str(), e.message.as_str())
                });
            Local::Failed(failed(code, not_here(why), code != "auth"))
        }
        TransferStatus::Pending => Local::Failed(failed(
            "not_available",
            not_here("the device that saved it has not uploaded them yet"),
            true,
        )),
        // No download wanted, yet the bytes are not here (this browser's storage lost them, and
        // the hub has not re-reconciled yet): nothing would end the wait.
        TransferStatus::Done => Local::Failed(failed(
            "not_available",
            not_here("no download of them is under way"),
            true,
        )),
        _ if !online => Local::Failed(failed(
            "offline",
            not_here("the server is unreachable"),
            true,
        )),
        _ => Local::Waiting,
    }
}

fn failed(code: &str, message: String, retryable: bool) -> ErrorInfo {
    ErrorInfo {
        code: code.into(),
        message,
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::local::SyncError;
    use crate::core::FileId;

    fn file(download: TransferStatus, here: bool) -> TabFile {
        TabFile {
            id: FileId::new("f").unwrap(),
            path: "files/f".into(),
            name: "f.jpg".into(),
            mime_type: "image/jpeg".into(),
            content_hash: "ab".repeat(32),
            updated_at: 1,
            upload_status: TransferStatus::Done,
            download_status: download,
            last_sync_error: None,
            has_local_copy: here,
        }
    }

    fn code(v: Local) -> (String, bool) {
        match v {
            Local::Failed(e) => (e.code, e.retryable),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_read_waits_for_a_wanted_download_and_fails_at_once_when_it_cannot_come() {
        use TransferStatus::*;
        assert_eq!(verdict(Some(&file(Done, true)), true, false), Local::Here);
        for wanted in [Remote, Queued, InProgress] {
            assert_eq!(
                verdict(Some(&file(wanted, false)), true, true),
                Local::Waiting
            );
            assert_eq!(
                code(verdict(Some(&file(wanted, false)), true, false)),
                ("offline".into(), true),
                "offline: at once, retryable"
            );
        }
        for nothing_coming in [Pending, Done] {
            assert_eq!(
                code(verdict(Some(&file(nothing_coming, false)), true, true)),
                ("not_available".into(), true)
            );
        }
        let mut failed = file(Error, false);
        failed.last_sync_error = Some(SyncError {
            code: "integrity".into(),
            message: "wrong bytes".into(),
        });
        assert_eq!(
            code(verdict(Some(&failed), true, true)),
            ("integrity".into(), true)
        );
        assert_eq!(code(verdict(None, true, true)), ("not_found".into(), false));
        assert_eq!(
            code(verdict(Some(&file(Queued, false)), false, true)),
            ("not_available".into(), false)
        );
    }
}
