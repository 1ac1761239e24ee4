//! `whenSynced()`: when everything made in this browser is on the server.
//!
//! A tab decides from its replica, after every change the hub sends: the files' upload states,
//! the count of events the server has not confirmed, and whether the hub believes the server
//! reachable. [`verdict`] is that decision, pure and tested natively; the tab only keeps the
//! waiting promises and settles them.
//!
//! "Everything here is on the server" means: no event made here waits for the server's
//! confirmation, and no file's bytes wait to be uploaded from here. Downloads do not count:
//! bytes this browser lacks are already somewhere else.

use super::protocol::{ErrorInfo, TabFile};
use crate::core::local::TransferStatus;

/// What `whenSynced()` does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything made here is on the server: resolve.
    Synced,
    /// Work is under way: keep waiting.
    Waiting,
    /// It cannot get there without the app (or the network): reject.
    Failed(ErrorInfo),
}

/// What the tab knows of the store when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// The store syncs with a server (`false`: local-only).
    pub remote: bool,
    /// The hub's loaded state is in (not the saved files view).
    pub loaded: bool,
    /// The hub believes the server reachable.
    pub online: bool,
    /// Events made here that the server has not confirmed.
    pub unconfirmed: usize,
}

/// Decides `whenSynced()` from what the tab knows and its replica's files.
pub fn verdict<'a>(known: Known, files: impl IntoIterator<Item = &'a TabFile>) -> Verdict {
    if !known.remote {
        return Verdict::Failed(failed(
            "local_only",
            "this store is local-only (remote: false): nothing goes to a server",
            false,
        ));
    }
    if !known.loaded {
        return Verdict::Waiting;
    }
    let mut uploading = false;
    for f in files {
        match f.upload_status {
            TransferStatus::Queued | TransferStatus::InProgress => uploading = true,
            TransferStatus::Error => {
                let (code, why) = f
                    .last_sync_error
                    .as_ref()
                    .map_or(("upload_failed", "it failed"), |e| {
                        (e.code.as_str(), e.message.as_str())
                    });
                let message = format!("the upload of {} ({}) stopped: {why}", f.name, f.id);
                return Verdict::Failed(failed(code, message, code != "auth"));
            }
            _ => {}
        }
    }
    if known.unconfirmed == 0 && !uploading {
        Verdict::Synced
    } else if !known.online {
        Verdict::Failed(failed(
            "offline",
            "the server is unreachable: changes made here are not all on it yet",
            true,
        ))
    } else {
        Verdict::Waiting
    }
}

/// A `sync:error` (a push or pull the server refused, retried with backoff) fails a wait:
/// `None` for the contexts that say nothing about this browser's changes reaching the
/// server (an invalid event skipped, a remote delete).
pub fn sync_error(code: &str, message: &str, context: &str) -> Option<ErrorInfo> {
    (context == "sync").then(|| {
        failed(
            code,
            format!("the server did not take this browser's changes: {message}"),
            code != "auth",
        )
    })
}

fn failed(code: &str, message: impl Into<String>, retryable: bool) -> ErrorInfo {
    ErrorInfo {
        code: code.into(),
        message: message.into(),
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::local::SyncError;
    use crate::core::FileId;

    fn file(upload: TransferStatus) -> TabFile {
        TabFile {
            id: FileId::new("f1").unwrap(),
            path: "a.txt".into(),
            name: "a.txt".into(),
            mime_type: "text/plain".into(),
            content_hash: "ab".repeat(32),
            updated_at: 1,
            upload_status: upload,
            download_status: TransferStatus::Done,
            last_sync_error: None,
            has_local_copy: true,
        }
    }

    const ONLINE: Known = Known {
        remote: true,
        loaded: true,
        online: true,
        unconfirmed: 0,
    };

    #[test]
    fn synced_once_nothing_is_unconfirmed_or_left_to_upload() {
        let done = file(TransferStatus::Done);
        assert_eq!(verdict(ONLINE, [&done]), Verdict::Synced);
        // Downloads this browser still needs are somewhere else already.
        let mut downloading = file(TransferStatus::Done);
        downloading.download_status = TransferStatus::InProgress;
        assert_eq!(verdict(ONLINE, [&downloading]), Verdict::Synced);
        // Bytes uploaded, but the event naming them is not confirmed yet.
        let waiting = Known {
            unconfirmed: 1,
            ..ONLINE
        };
        assert_eq!(verdict(waiting, [&done]), Verdict::Waiting);
        for active in [TransferStatus::Queued, TransferStatus::InProgress] {
            assert_eq!(verdict(ONLINE, [&file(active)]), Verdict::Waiting);
        }
        // The saved view shown before the hub loaded proves nothing.
        let early = Known {
            loaded: false,
            ..ONLINE
        };
        assert_eq!(verdict(early, [&done]), Verdict::Waiting);
    }

    #[test]
    fn offline_with_work_left_fails_at_once_but_synced_stays_synced() {
        let offline = Known {
            online: false,
            ..ONLINE
        };
        let Verdict::Failed(e) = verdict(offline, [&file(TransferStatus::Queued)]) else {
            panic!("offline with an upload queued must fail");
        };
        assert_eq!((e.code.as_str(), e.retryable), ("offline", true));
        let Verdict::Failed(e) = verdict(
            Known {
                unconfirmed: 3,
                ..offline
            },
            [],
        ) else {
            panic!("offline with unconfirmed events must fail");
        };
        assert_eq!(e.code, "offline");
        assert_eq!(
            verdict(offline, [&file(TransferStatus::Done)]),
            Verdict::Synced
        );
    }

    #[test]
    fn an_upload_that_stopped_fails_with_its_error() {
        let mut failed = file(TransferStatus::Error);
        failed.last_sync_error = Some(SyncError {
            code: "auth".into(),
            message: "401".into(),
        });
        let Verdict::Failed(e) = verdict(ONLINE, [&file(TransferStatus::Done), &failed]) else {
            panic!("a failed upload must fail the wait");
        };
        assert_eq!((e.code.as_str(), e.retryable), ("auth", false));
        assert!(e.message.contains("a.txt") && e.message.contains("401"));
    }

    #[test]
    fn local_only_stores_never_sync() {
        let local = Known {
            remote: false,
            ..ONLINE
        };
        let Verdict::Failed(e) = verdict(local, []) else {
            panic!("local-only must fail");
        };
        assert_eq!(e.code, "local_only");
    }

    #[test]
    fn only_refused_pushes_and_pulls_fail_a_wait() {
        let e = sync_error("server_error", "HTTP 503", "sync").unwrap();
        assert!(e.retryable && e.message.contains("503"));
        assert!(!sync_error("auth", "HTTP 401", "sync").unwrap().retryable);
        assert_eq!(sync_error("invalid_id", "skipped", "apply"), None);
        assert_eq!(sync_error("server_error", "HTTP 500", "delete"), None);
    }
}
