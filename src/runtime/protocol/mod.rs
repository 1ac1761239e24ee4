//! What the hub and the tabs say to each other over MessagePorts, and the JSON shapes the JS
//! API hands to apps (files, status, events). Plain serde types: the same on both sides, and
//! tested natively.
//!
//! Messages travel as JSON text (one `serde_json` string per message, posted as a JS string):
//! encoding once serves every tab of a broadcast, a string is the cheapest thing to
//! structured-clone, and tabs build the app's objects with the browser's `JSON.parse` of the
//! same text. Message enums are externally tagged (`{"snapshot": {...}}`): serde decodes them
//! in one pass, where an internally tagged enum would first buffer the whole message.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::remote::RemoteConfig;
use crate::core::event::WireEvent;
use crate::core::local::{SyncError, TransferKind, TransferStatus};
use crate::core::{
    ContentHash, Event, Failure, FileId, FileView, Input, Millis, TaskId, Term, TransferOrder,
};

mod decisions;
mod handover;
pub use decisions::{engine_config, takeover_heir, write_landed};
pub use handover::{handover_channel_name, may_take_over, Handover, VERSION};

/// A file as apps see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileState {
    pub id: FileId,
    pub path: String,
    /// Original file name.
    pub name: String,
    pub mime_type: String,
    pub size: u64,
    pub content_hash: String,
    /// `""` until uploaded.
    pub remote_key: String,
    /// The app's metadata as stored (`null` when none): passed on, never parsed.
    pub metadata: Option<Box<RawValue>>,
    pub created_at: u64,
    pub updated_at: u64,
    /// The content whose bytes this browser holds for the file (`""`: none).
    pub local_hash: String,
    pub upload_status: TransferStatus,
    pub download_status: TransferStatus,
    pub last_sync_error: Option<SyncError>,
    pub has_local_copy: bool,
    pub is_uploaded: bool,
    pub is_synced: bool,
    pub can_display: bool,
    /// Bytes moved so far by the running upload (0 when none runs).
    pub uploaded_bytes: u64,
    /// Bytes moved so far by the running download (0 when none runs).
    pub downloaded_bytes: u64,
    /// Kept available offline here (`pin`), whatever the downloads policy.
    pub is_pinned: bool,
}

impl FileState {
    /// The app's view of an engine file.
    pub fn from_view(v: &FileView<'_>) -> FileState {
        let r = v.row;
        let local = v.local;
        FileState {
            id: r.id.clone(),
            path: r.path.clone(),
            name: r.info.name.clone(),
            mime_type: r.info.mime_type.clone(),
            size: r.info.size,
            content_hash: r.content_hash.to_hex(),
            remote_key: r
                .remote_key
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_default(),
            metadata: r
                .metadata_json
                .as_ref()
                .and_then(|m| RawValue::from_string(m.clone()).ok()),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            local_hash: local
                .and_then(|l| l.local_hash)
                .map(|h| h.to_hex())
                .unwrap_or_default(),
            upload_status: local.map_or(TransferStatus::Pending, |l| l.upload),
            download_status: local.map_or(TransferStatus::Pending, |l| l.download),
            last_sync_error: local.and_then(|l| l.last_error.clone()),
            has_local_copy: v.display.has_local_copy,
            is_uploaded: v.display.is_uploaded,
            is_synced: v.display.is_synced,
            can_display: v.display.can_display,
            uploaded_bytes: v.uploaded_bytes,
            downloaded_bytes: v.downloaded_bytes,
            is_pinned: local.is_some_and(|l| l.pinned),
        }
    }
}

/// What a tab keeps of a file: the fields it acts on (reading bytes, object URLs, the sync
/// status, settling requests). The app gets the whole [`FileState`] as a JS object parsed from
/// the message's text, so the tab's wasm memory holds no paths, keys or metadata.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TabFile {
    pub id: FileId,
    pub path: String,
    pub name: String,
    pub mime_type: String,
    pub content_hash: String,
    pub updated_at: u64,
    pub upload_status: TransferStatus,
    pub download_status: TransferStatus,
    pub last_sync_error: Option<SyncError>,
    pub has_local_copy: bool,
}

/// The ephemeral events apps subscribe to, named as in livestore-filesync. Only encoded: tabs
/// hand the JSON to apps as is ([`ToTab::Event`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum AppEvent {
    #[serde(rename = "sync:start")]
    SyncStart,
    #[serde(rename = "sync:complete")]
    SyncComplete,
    #[serde(rename = "sync:error")]
    SyncError {
        code: String,
        message: String,
        context: String,
    },
    #[serde(rename = "upload:start", rename_all = "camelCase")]
    UploadStart { file_id: String },
    #[serde(rename = "upload:progress", rename_all = "camelCase")]
    UploadProgress {
        file_id: String,
        loaded: u64,
        total: u64,
    },
    #[serde(rename = "upload:complete", rename_all = "camelCase")]
    UploadComplete { file_id: String },
    #[serde(rename = "upload:error", rename_all = "camelCase")]
    UploadError {
        file_id: String,
        code: String,
        message: String,
        retry_in_ms: Option<u64>,
    },
    #[serde(rename = "download:start", rename_all = "camelCase")]
    DownloadStart { file_id: String },
    #[serde(rename = "download:progress", rename_all = "camelCase")]
    DownloadProgress {
        file_id: String,
        loaded: u64,
        total: u64,
    },
    #[serde(rename = "download:complete", rename_all = "camelCase")]
    DownloadComplete { file_id: String },
    #[serde(rename = "download:error", rename_all = "camelCase")]
    DownloadError {
        file_id: String,
        code: String,
        message: String,
        retry_in_ms: Option<u64>,
    },
    #[serde(rename = "transfer:exhausted", rename_all = "camelCase")]
    TransferExhausted {
        kind: TransferKind,
        file_id: String,
        code: String,
        message: String,
    },
    #[serde(rename = "online")]
    Online,
    #[serde(rename = "offline")]
    Offline,
    #[serde(rename = "sync:recovery", rename_all = "camelCase")]
    Recovery { file_ids: Vec<String> },
    #[serde(rename = "sync:error-retry-start", rename_all = "camelCase")]
    ErrorRetryStart { file_ids: Vec<String> },
    #[serde(rename = "storage:error")]
    StorageError { code: String, message: String },
    /// The browser removed this store's storage under it ("Clear site data", eviction): the
    /// hub started again on emptied storage from what it held in memory. `lost_file_ids`: files
    /// whose bytes existed only in this browser (gone for good); everything else is written
    /// again and downloaded again as needed.
    #[serde(rename = "storage:cleared", rename_all = "camelCase")]
    StorageCleared {
        code: String,
        message: String,
        lost_file_ids: Vec<String>,
    },
    /// A concurrent edit from another device replaced content written here; the losing
    /// content stays readable by its hash for a while (`readFile(id, {contentHash})`).
    #[serde(rename = "conflict", rename_all = "camelCase")]
    Conflict {
        file_id: String,
        content_hash: String,
        winning_content_hash: String,
    },
    /// A stored record was broken and skipped when the hub loaded the state (the rest
    /// loaded) — emitted by the tab for each of the snapshot's issues.
    #[serde(rename = "storage:issue")]
    StorageIssue {
        table: String,
        key: String,
        code: String,
        message: String,
    },
    /// This tab became the leader (runs transfers) — emitted by the tab itself.
    #[serde(rename = "leader:gained")]
    LeaderGained,
    /// This tab stopped being the leader.
    #[serde(rename = "leader:lost")]
    LeaderLost,
}

impl AppEvent {
    /// The app's event for an engine event; `None` for the engine's internal ones.
    pub fn from_engine(e: &Event) -> Option<AppEvent> {
        use TransferKind::{Download, Upload};
        let id = |f: &crate::core::FileId| f.to_string();
        let ids = |v: &[crate::core::FileId]| v.iter().map(ToString::to_string).collect();
        Some(match e {
            Event::SyncStart => AppEvent::SyncStart,
            Event::SyncComplete => AppEvent::SyncComplete,
            Event::SyncError {
                code,
                message,
                context,
            } => AppEvent::SyncError {
                code: code.clone(),
                message: message.clone(),
                context: (*context).to_string(),
            },
            Event::TransferStart { kind: Upload, file } => {
                AppEvent::UploadStart { file_id: id(file) }
            }
            Event::TransferStart {
                kind: Download,
                file,
            } => AppEvent::DownloadStart { file_id: id(file) },
            Event::TransferProgress {
                kind,
                file,
                loaded,
                total,
            } => {
                let (file_id, loaded, total) = (id(file), *loaded, *total);
                match kind {
                    Upload => AppEvent::UploadProgress {
                        file_id,
                        loaded,
                        total,
                    },
                    Download => AppEvent::DownloadProgress {
                        file_id,
                        loaded,
                        total,
                    },
                }
            }
            Event::TransferComplete { kind: Upload, file } => {
                AppEvent::UploadComplete { file_id: id(file) }
            }
            Event::TransferComplete {
                kind: Download,
                file,
            } => AppEvent::DownloadComplete { file_id: id(file) },
            Event::TransferError {
                kind,
                file,
                code,
                message,
                retry_in_ms,
            } => {
                let (file_id, code, message, retry_in_ms) =
                    (id(file), code.clone(), message.clone(), *retry_in_ms);
                match kind {
                    Upload => AppEvent::UploadError {
                        file_id,
                        code,
                        message,
                        retry_in_ms,
                    },
                    Download => AppEvent::DownloadError {
                        file_id,
                        code,
                        message,
                        retry_in_ms,
                    },
                }
            }
            Event::TransferExhausted {
                kind,
                file,
                code,
                message,
            } => AppEvent::TransferExhausted {
                kind: *kind,
                file_id: id(file),
                code: code.clone(),
                message: message.clone(),
            },
            Event::Online => AppEvent::Online,
            Event::Offline => AppEvent::Offline,
            Event::Recovery { requeued } => AppEvent::Recovery {
                file_ids: ids(requeued),
            },
            Event::ErrorRetryStart { files } => AppEvent::ErrorRetryStart {
                file_ids: ids(files),
            },
            Event::StorageError { code, message } => AppEvent::StorageError {
                code: code.clone(),
                message: message.clone(),
            },
            Event::StorageReset { lost } => AppEvent::StorageCleared {
                code: "storage_cleared".into(),
                message: if lost.is_empty() {
                    "this browser's storage was cleared: the store started again from the server and memory; nothing was lost".into()
                } else {
                    format!(
                        "this browser's storage was cleared: {} file(s) existed only here and are gone",
                        lost.len()
                    )
                },
                lost_file_ids: ids(lost),
            },
            Event::Conflict { file, mine, winner } => AppEvent::Conflict {
                file_id: id(file),
                content_hash: mine.to_hex(),
                winning_content_hash: winner.to_hex(),
            },
            Event::Committed { .. } | Event::FilesChanged { .. } => return None,
        })
    }
}

/// A typed error as it crosses to JS (becomes an `Error` with `code` and `retryable`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// A typed error.
pub fn error(code: &str, message: impl Into<String>, retryable: bool) -> ErrorInfo {
    ErrorInfo {
        code: code.into(),
        message: message.into(),
        retryable,
    }
}

/// A stored record that could not be read and was skipped (the rest loaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageIssue {
    pub table: String,
    pub key: String,
    pub code: String,
    pub message: String,
}

impl From<crate::core::DecodeError> for ErrorInfo {
    fn from(e: crate::core::DecodeError) -> Self {
        ErrorInfo {
            code: e.code().into(),
            message: e.to_string(),
            retryable: false,
        }
    }
}

/// An app control, run by the hub's engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Control {
    #[serde(rename_all = "camelCase")]
    Prioritize {
        file_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Cancel {
        file_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Pin {
        file_id: String,
        pinned: bool,
    },
    /// The app's downloads policy wants these files (`Input::Want`).
    Want(Vec<String>),
    RetryErrors,
    SyncNow,
    Pause,
    Resume,
}

/// The store settings a tab opens the hub with (the first tab's settings win).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubConfig {
    pub store_id: String,
    /// The server; `None`: local-only, nothing leaves the browser.
    pub remote: Option<RemoteConfig>,
    pub progress_interval_ms: Option<u64>,
    pub max_uploads: Option<usize>,
    pub max_downloads: Option<usize>,
    #[serde(default)]
    pub downloads: crate::core::Downloads,
    /// The byte budget (`storageBudget`); `None`: no limit.
    #[serde(default)]
    pub budget: Option<u64>,
    pub delete_grace_ms: Option<u64>,
}

/// Tab -> hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ToHub {
    /// A tab connected; the hub answers with `Snapshot`.
    Hello { tab: String, config: HubConfig },
    /// An app write; the hub answers `Reply` once it is durable (or refused).
    Commit { req: u64, event: WireEvent },
    /// An app control; answered with `Reply`.
    Control { req: u64, control: Control },
    /// This tab acquired the leader lock; the hub answers with `Term`.
    Elected { tab: String },
    /// This tab gave up leadership of that term.
    Resigned { term: u64 },
    /// The tab is closing.
    Bye { tab: String },
    /// The leader's report on a transfer the hub asked it to run.
    Transfer { report: TransferReport },
    /// Answer to `Ping`: this tab is alive (not frozen).
    Pong { tab: String },
    /// The stored files view could not be read (a broken record): save a fresh one. The hub
    /// only saves a view when files change or none is stored, so it would stay otherwise.
    ViewUnreadable,
    /// The engine's recent events (`getHistory()`); answered with `Answer`.
    History { req: u64 },
    /// The byte budget's figures (`getStorageInfo()`), with the request's number; answered
    /// with `Answer`. (Tuple variants: a struct variant costs the wasm a field matcher.)
    Usage(u64),
    /// The app read this file here (the byte budget evicts it last).
    Read(String),
    /// Every content this tab (named first) has an object URL for, never evicted: the whole
    /// set, sent when it changes and after each hello.
    InUse(String, Vec<ContentHash>),
}

/// A transfer the hub asks the leader tab to run (the engine's `TransferOrder`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferJob {
    pub task: u64,
    pub term: u64,
    pub kind: TransferKind,
    pub hash: ContentHash,
    pub key: String,
    pub size: u64,
    pub mime_type: String,
    /// An upload's resume text from an earlier attempt (`runtime::multipart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

impl TransferJob {
    pub fn from_order(o: &TransferOrder) -> TransferJob {
        TransferJob {
            task: o.task.0,
            term: o.term.0,
            kind: o.kind,
            hash: o.hash,
            key: o.key.as_str().to_string(),
            size: o.size,
            mime_type: o.mime_type.clone(),
            resume: o.resume.clone(),
        }
    }
}

/// What the leader tab reports about a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum TransferReport {
    Progress {
        task: u64,
        term: u64,
        loaded: u64,
        total: u64,
        /// A multipart upload's new resume text (`""`: forget it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// Downloads name the hash of the bytes they stored.
    Done {
        task: u64,
        term: u64,
        downloaded: Option<ContentHash>,
    },
    Failed {
        task: u64,
        term: u64,
        failure: Failure,
    },
}

impl TransferReport {
    /// The engine input this report is.
    pub fn into_input(self) -> Input {
        match self {
            TransferReport::Progress {
                task,
                term,
                loaded,
                total,
                resume,
            } => Input::TransferProgress {
                task: TaskId(task),
                term: Term(term),
                loaded,
                total,
                resume,
            },
            TransferReport::Done {
                task,
                term,
                downloaded,
            } => Input::TransferDone {
                task: TaskId(task),
                term: Term(term),
                downloaded_hash: downloaded,
            },
            TransferReport::Failed {
                task,
                term,
                failure,
            } => Input::TransferFailed {
                task: TaskId(task),
                term: Term(term),
                failure,
            },
        }
    }
}

/// Hub -> tab. The hub sends files as [`FileState`]s; a tab decodes what it keeps of them
/// (`ToTab<TabFile>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ToTab<F = FileState> {
    /// Everything a new tab needs.
    Snapshot {
        files: Vec<F>,
        leader: Option<String>,
        storage: String,
        /// Stored records skipped at start because they were broken.
        issues: Vec<StorageIssue>,
        /// Whether the server is believed reachable (always true for local-only stores).
        online: bool,
        /// Events made in this browser the server has not confirmed yet.
        #[serde(default)]
        unconfirmed: usize,
        /// The files view (this message, saved by a hub and read by a tab while the hub loads
        /// the state): what the state showed then (no issues, leader or connectivity yet).
        /// The loaded snapshot follows.
        #[serde(default)]
        provisional: bool,
    },
    /// Answer to `Commit` or `Control`: `error` unset on success.
    Reply { req: u64, error: Option<ErrorInfo> },
    /// Files that changed (new or updated), ids of files that are gone, and the unconfirmed
    /// event count. (Tabs derive the sync status from their files and the count: what the
    /// engine derives it from.)
    Changed {
        files: Vec<F>,
        removed: Vec<String>,
        unconfirmed: usize,
    },
    /// An event for the app's callbacks: an [`AppEvent`]'s JSON, handed to apps as it is.
    Event { event: Box<RawValue> },
    /// The leader and its term (every tab learns who leads).
    Leader { tab: Option<String>, term: u64 },
    /// Answer to a hello: the hub could not load the store (the open fails with this error;
    /// a tab already open reports it as `storage:error`). The next hello tries again.
    HubFailed { error: ErrorInfo },
    /// A hub hosted by a tab (no SharedWorker) started: say hello again; requests sent to a
    /// previous hub are lost.
    HubReady,
    /// To the leader: run this transfer.
    Transfer { job: TransferJob },
    /// To the leader: abort this transfer (its result will be ignored).
    Abort { task: u64 },
    /// Are you alive? Answered with `Pong` (a frozen tab cannot).
    Ping,
    /// The leader stopped answering: take the leader lock from it (`steal`).
    TakeOver,
    /// Answer to `History` (a JSON array of [`HistoryEntry`]) or `Usage` ([`usage_json`]),
    /// handed to the app as it is.
    Answer { req: u64, value: Box<RawValue> },
    /// What changed in the durable events made here that the server has not confirmed yet:
    /// those numbered below `below` are gone, `events` are new (envelope JSON), numbered `ns`
    /// (two lists, not a list of pairs: one decoder less in the wasm). Tabs
    /// keep the list and send it as a `keepalive` push when their page goes, so the last tab
    /// going does not strand them (see `remote::parting_body`).
    Parting {
        below: u64,
        ns: Vec<u64>,
        events: Vec<String>,
    },
}

/// One of the engine's recent events as `getHistory()` lists it: when the hub's engine emitted
/// it (ms since the epoch) and the event as the app's callbacks get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub event: AppEvent,
}

/// The JSON array of the app's events among `history` (oldest first): engine-internal ones
/// are left out, as they are from the callbacks.
pub fn history_json<'a>(history: impl Iterator<Item = &'a (Millis, Event)>) -> Box<RawValue> {
    let entries: Vec<HistoryEntry> = history
        .filter_map(|(at, e)| {
            AppEvent::from_engine(e).map(|event| HistoryEntry { at: at.0, event })
        })
        .collect();
    // Strings and numbers only: encoding cannot fail.
    serde_json::value::to_raw_value(&entries).unwrap_or_default()
}

/// The answer to `Usage`: `{budget, held, evictable}` (bytes; `budget` null: no limit).
pub fn usage_json(u: &crate::core::StorageUse) -> Box<RawValue> {
    // Numbers only: encoding cannot fail.
    serde_json::value::to_raw_value(u).unwrap_or_default()
}

impl ToTab {
    /// The message carrying an app event.
    pub fn event(e: &AppEvent) -> ToTab {
        ToTab::Event {
            // An enum of strings and numbers always encodes.
            event: serde_json::value::to_raw_value(e).unwrap_or_default(),
        }
    }
}

/// A message's JSON text, as posted.
pub fn encode<T: Serialize>(msg: &T) -> String {
    // Messages hold strings, numbers and JSON values only: encoding cannot fail.
    serde_json::to_string(msg).unwrap_or_default()
}

/// A message on a BroadcastChannel of a tab-hosted hub: `{"peer": ..., "msg": ...}` where
/// `peer` is the sending tab (to the hub) or the receiving tab, `null` for all (to the tabs).
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    pub peer: Option<String>,
    #[serde(borrow)]
    pub msg: &'a RawValue,
}

impl Envelope<'_> {
    /// Wraps a message's JSON text.
    pub fn wrap(peer: Option<&str>, msg: &str) -> String {
        format!(r#"{{"peer":{},"msg":{msg}}}"#, encode(&peer))
    }
}

/// Names of the BroadcastChannels of a tab-hosted hub: (to the hub, to the tabs). They name
/// this build's version: tabs of another version (a deploy while tabs of the old one are
/// open) never talk to a hub whose messages they may not read; their own hub asks for the
/// store on [`handover_channel_name`] instead.
pub fn channel_names(store_id: &str) -> (String, String) {
    (
        format!("filesync:{store_id}:{VERSION}:hub"),
        format!("filesync:{store_id}:{VERSION}:tabs"),
    )
}

/// The name of a store's hub SharedWorker. A SharedWorker is one per script URL and name: with
/// the version in the name, a release served at the same URLs as the last one (no hashed file
/// names) starts a hub of its own, which asks the old one for the store, instead of talking to
/// a hub of another version.
pub fn worker_name(store_id: &str) -> String {
    format!("filesync:{store_id}:{VERSION}")
}

/// The Web Lock held by the tab that hosts the hub of a store (where SharedWorker does not
/// exist), one per version like [`channel_names`].
pub fn host_lock_name(store_id: &str) -> String {
    format!("filesync:hub-host:{store_id}:{VERSION}")
}

#[cfg(test)]
mod tests;
