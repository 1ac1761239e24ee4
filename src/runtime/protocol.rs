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
    /// The engine's recent events (`getHistory()`); answered with `History`.
    History { req: u64 },
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
            } => Input::TransferProgress {
                task: TaskId(task),
                term: Term(term),
                loaded,
                total,
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

/// This build's version. A hub that finds its store held by another hub (a tab of another
/// build: a deploy changed the worker's URL) asks for it on [`handover_channel_name`] with
/// this; the running hub hands the store over when [`may_take_over`] says so.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The BroadcastChannel on which a waiting hub asks the running one for the store.
pub fn handover_channel_name(store_id: &str) -> String {
    format!("filesync:hub-handover:{store_id}")
}

/// What hubs say on [`handover_channel_name`], as text (`ask 1.2.0`, `refuse 1.1.0 1.2.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// A hub of this version waits for the store: the holder hands it over, or refuses.
    Ask { version: String },
    /// The hub holding the store (of version `holder`) keeps it from hubs of version `asker`,
    /// an older one: they fail (`superseded`) instead of waiting until every newer tab closes.
    Refuse { asker: String, holder: String },
}

impl Handover {
    pub fn encode(&self) -> String {
        match self {
            Handover::Ask { version } => format!("ask {version}"),
            Handover::Refuse { asker, holder } => format!("refuse {asker} {holder}"),
        }
    }

    /// `None` for anything else (another library's message on the channel).
    pub fn decode(text: &str) -> Option<Handover> {
        let mut words = text.split(' ');
        let parts = [words.next(), words.next(), words.next(), words.next()];
        match parts {
            [Some("ask"), Some(v), None, None] if !v.is_empty() => Some(Handover::Ask {
                version: v.to_string(),
            }),
            [Some("refuse"), Some(a), Some(h), None] if !a.is_empty() && !h.is_empty() => {
                Some(Handover::Refuse {
                    asker: a.to_string(),
                    holder: h.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Whether a hub of version `asker` may take the store from this build: the same version or
/// a newer one (dotted numbers), never an older one, so an old tab cannot take the store back
/// from a newer deploy.
pub fn may_take_over(asker: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    !asker.is_empty() && parts(asker) >= parts(VERSION)
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
    /// Answer to `History`: a JSON array of [`HistoryEntry`], handed to the app as it is.
    History { req: u64, entries: Box<RawValue> },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SyncStatus;

    #[test]
    fn a_write_landed_if_the_new_hub_shows_it_or_a_later_write_won() {
        use crate::core::event::{FileDeleted, FileEvent, FileInfo, FileUpdated, MetadataPatch};
        use crate::core::FileId;
        let hash = |s: &str| ContentHash::of(s.as_bytes());
        let id = FileId::new("f").unwrap();
        let update = FileEvent::Updated(FileUpdated {
            id: id.clone(),
            path: "f".into(),
            remote_key: None,
            content_hash: hash("new"),
            info: FileInfo {
                name: "f".into(),
                mime_type: "text/plain".into(),
                size: 3,
            },
            metadata: MetadataPatch::Keep,
            updated_at: Millis(7),
            expected_content_hash: None,
            previous_content_hash: Some(hash("old")),
        });
        let base = Some(hash("old"));
        let (new, old, other) = (
            hash("new").to_hex(),
            hash("old").to_hex(),
            hash("x").to_hex(),
        );
        assert!(
            write_landed(&update, base, Some((7, &new))),
            "shown as sent"
        );
        assert!(
            !write_landed(&update, base, Some((1, &old))),
            "still the content it replaced"
        );
        assert!(
            write_landed(&update, base, Some((9, &other))),
            "a later write won"
        );
        assert!(write_landed(&update, base, None), "the file is gone");
        let delete = FileEvent::Deleted(FileDeleted {
            id,
            deleted_at: Millis(7),
        });
        assert!(write_landed(&delete, None, None));
        assert!(!write_landed(&delete, None, Some((1, &old))));
    }

    #[test]
    fn the_first_tabs_settings_override_the_engine_defaults() {
        use crate::core::{ClientId, StoreId};
        let hub = HubConfig {
            store_id: "s".into(),
            remote: None,
            progress_interval_ms: Some(50),
            max_uploads: Some(0),
            max_downloads: None,
            delete_grace_ms: Some(1_000),
        };
        let cfg = engine_config(
            &hub,
            StoreId::new("s").unwrap(),
            ClientId::new("c").unwrap(),
        );
        assert_eq!(cfg.mode, crate::core::Mode::LocalOnly);
        assert_eq!(cfg.progress_interval_ms, 50);
        assert_eq!(cfg.max_uploads, 1, "at least one transfer at once");
        let defaults = crate::core::Config::new(
            StoreId::new("s").unwrap(),
            ClientId::new("c").unwrap(),
            crate::core::Mode::LocalOnly,
        );
        assert_eq!(cfg.max_downloads, defaults.max_downloads);
        assert_eq!(cfg.delete_grace_ms, 1_000);
    }

    #[test]
    fn a_hung_leader_is_taken_over_by_the_tab_that_answered_last_once_per_term() {
        let seen = |t: &str| match t {
            "leader" => Some(Millis(1_000)),
            "a" => Some(Millis(8_000)),
            "b" => Some(Millis(9_000)),
            _ => None,
        };
        let tabs = ["leader", "a", "b", "gone"];
        let now = Millis(10_000);
        assert_eq!(
            takeover_heir("leader", Term(3), None, seen, tabs, now, 4_000),
            Some("b")
        );
        assert_eq!(
            takeover_heir("leader", Term(3), Some(Term(3)), seen, tabs, now, 4_000),
            None,
            "asked once per term"
        );
        assert_eq!(
            takeover_heir("leader", Term(3), None, seen, tabs, Millis(4_000), 4_000),
            None,
            "the leader is fresh"
        );
        assert_eq!(
            takeover_heir(
                "leader",
                Term(3),
                None,
                seen,
                ["leader", "gone"],
                now,
                4_000
            ),
            None,
            "no other tab is fresh"
        );
    }

    /// What the hub sends, and what a tab decodes of it.
    type Sent = ToTab<FileState>;
    type Got = ToTab<TabFile>;

    #[test]
    fn messages_have_the_documented_json_shape() {
        let m = ToHub::Control {
            req: 3,
            control: Control::Prioritize {
                file_id: "f".into(),
            },
        };
        let text = encode(&m);
        assert_eq!(
            text,
            r#"{"control":{"req":3,"control":{"prioritize":{"fileId":"f"}}}}"#
        );
        assert_eq!(serde_json::from_str::<ToHub>(&text).unwrap(), m);
        let r = ToHub::Transfer {
            report: TransferReport::Failed {
                task: 2,
                term: 1,
                failure: Failure::Server { status: 503 },
            },
        };
        let text = encode(&r);
        assert_eq!(
            text,
            r#"{"transfer":{"report":{"failed":{"task":2,"term":1,"failure":{"server":{"status":503}}}}}}"#
        );
        assert_eq!(serde_json::from_str::<ToHub>(&text).unwrap(), r);
        assert_eq!(encode(&Failure::Offline), r#""offline""#);
        assert!(matches!(
            TransferReport::Done {
                task: 2,
                term: 1,
                downloaded: None
            }
            .into_input(),
            Input::TransferDone {
                task: TaskId(2),
                term: Term(1),
                downloaded_hash: None
            }
        ));
        let t = Sent::Leader {
            tab: Some("t1".into()),
            term: 4,
        };
        assert!(matches!(
            serde_json::from_str::<Got>(&encode(&t)).unwrap(),
            Got::Leader { tab: Some(tab), term: 4 } if tab == "t1"
        ));
        assert_eq!(encode(&Sent::Ping), r#""ping""#);
    }

    #[test]
    fn app_events_reach_tabs_as_the_json_apps_get() {
        let e = AppEvent::UploadProgress {
            file_id: "f".into(),
            loaded: 1,
            total: 2,
        };
        let app = r#"{"type":"upload:progress","fileId":"f","loaded":1,"total":2}"#;
        assert_eq!(encode(&e), app);
        let text = encode(&ToTab::event(&e));
        assert_eq!(text, format!(r#"{{"event":{{"event":{app}}}}}"#));
        match serde_json::from_str::<Got>(&text).unwrap() {
            Got::Event { event } => assert_eq!(event.get(), app),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn channel_envelopes_carry_the_message_text_untouched() {
        let msg = encode(&Sent::Abort { task: 7 });
        let wrapped = Envelope::wrap(Some("tab \"1\""), &msg);
        let e: Envelope<'_> = serde_json::from_str(&wrapped).unwrap();
        assert_eq!(e.peer.as_deref(), Some("tab \"1\""));
        assert_eq!(e.msg.get(), msg);
        let wrapped = Envelope::wrap(None, &msg);
        let all: Envelope<'_> = serde_json::from_str(&wrapped).unwrap();
        assert_eq!(all.peer, None);
    }

    #[test]
    fn a_snapshot_of_many_files_round_trips() {
        let file = FileState {
            id: FileId::new("f").unwrap(),
            path: "a.txt".into(),
            name: "a.txt".into(),
            mime_type: "text/plain".into(),
            size: 3,
            content_hash: "ab".repeat(32),
            remote_key: String::new(),
            metadata: Some(RawValue::from_string(r#"{"tags":["x"]}"#.into()).unwrap()),
            created_at: 1,
            updated_at: 2,
            local_hash: String::new(),
            upload_status: TransferStatus::Pending,
            download_status: TransferStatus::Done,
            last_sync_error: None,
            has_local_copy: true,
            is_uploaded: false,
            is_synced: false,
            can_display: true,
        };
        let files: Vec<FileState> = (0..100)
            .map(|i| FileState {
                id: FileId::new(format!("f{i}")).unwrap(),
                ..file.clone()
            })
            .collect();
        let snap = ToTab::Snapshot {
            files: files.clone(),
            leader: None,
            storage: "opfs".into(),
            issues: Vec::new(),
            online: true,
            unconfirmed: 0,
            provisional: false,
        };
        let text = encode(&snap);
        // The app's object carries every field, the metadata as it was stored.
        assert!(text.contains(r#""metadata":{"tags":["x"]}"#));
        let kept: Vec<TabFile> = files
            .iter()
            .map(|f| TabFile {
                id: f.id.clone(),
                path: f.path.clone(),
                name: f.name.clone(),
                mime_type: f.mime_type.clone(),
                content_hash: f.content_hash.clone(),
                updated_at: f.updated_at,
                upload_status: f.upload_status,
                download_status: f.download_status,
                last_sync_error: f.last_sync_error.clone(),
                has_local_copy: f.has_local_copy,
            })
            .collect();
        match serde_json::from_str::<Got>(&text).unwrap() {
            Got::Snapshot { files: got, .. } => assert_eq!(got, kept),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn tabs_derive_the_engines_status_from_the_files_they_get() {
        use crate::core::local::{reconcile, SyncError};
        use crate::core::status::TransferStates;
        use crate::core::{ClientId, Config, Engine, Millis, Mode, Seq, Snapshot, StoreId};
        let rows: Vec<_> = (0..8)
            .map(|i| {
                let id = format!("f{i}");
                crate::core::table::test_row(&id, id.as_bytes(), i % 2 == 0)
            })
            .collect();
        let mut local: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| reconcile(r, None, i % 3 == 0))
            .collect();
        local[1].upload = TransferStatus::Error;
        local[1].last_error = Some(SyncError {
            code: "auth".into(),
            message: "no".into(),
        });
        local[2].download = TransferStatus::InProgress;
        local[5].download = TransferStatus::Error;
        let cfg = Config::new(
            StoreId::new("s").unwrap(),
            ClientId::new("c").unwrap(),
            Mode::Remote,
        );
        let snap = Snapshot {
            rows,
            local,
            cursor: Seq(8),
            ..Snapshot::default()
        };
        let engine = Engine::new(cfg, snap, Millis(0));
        // What a tab keeps of the files the hub sends.
        let sent = Sent::Changed {
            files: engine.files().map(|f| FileState::from_view(&f)).collect(),
            removed: Vec::new(),
            unconfirmed: engine.unconfirmed_events(),
        };
        let Ok(Got::Changed { files, .. }) = serde_json::from_str::<Got>(&encode(&sent)) else {
            panic!("the files did not decode");
        };
        let derived = SyncStatus::from_transfers(
            files.iter().map(|f| TransferStates {
                file_id: &f.id,
                upload: f.upload_status,
                download: f.download_status,
                last_error: f.last_sync_error.as_ref(),
            }),
            engine.unconfirmed_events(),
        );
        let status = engine.status();
        assert_eq!(derived, status);
        assert!(status.error_count == 2 && status.has_pending, "{status:?}");
    }

    #[test]
    fn only_the_same_or_a_newer_build_takes_a_store_over() {
        assert!(may_take_over(VERSION));
        assert!(may_take_over("999.0.0"));
        assert!(!may_take_over("0.0.0"));
        assert!(!may_take_over(""), "a message that is not a version");
        let newer_patch = {
            let mut p: Vec<u64> = VERSION.split('.').map(|x| x.parse().unwrap()).collect();
            p[2] += 1;
            format!("{}.{}.{}", p[0], p[1], p[2])
        };
        assert!(may_take_over(&newer_patch));
    }

    #[test]
    fn handover_messages_round_trip_and_foreign_text_is_ignored() {
        for m in [
            Handover::Ask {
                version: VERSION.into(),
            },
            Handover::Refuse {
                asker: "0.1.0".into(),
                holder: "0.2.0".into(),
            },
        ] {
            assert_eq!(Handover::decode(&m.encode()), Some(m));
        }
        for foreign in [
            "",
            "ask",
            "ask ",
            "0.1.0",
            "refuse 0.1.0",
            "ask 1 2",
            "hello 1",
        ] {
            assert_eq!(Handover::decode(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn hubs_of_two_versions_use_their_own_workers_channels_and_host_locks() {
        let (to_hub, to_tabs) = channel_names("s1");
        assert!(to_hub.contains(VERSION) && to_tabs.contains(VERSION));
        assert_ne!(to_hub, to_tabs);
        assert!(host_lock_name("s1").ends_with(&format!("s1:{VERSION}")));
        assert_eq!(worker_name("s1"), format!("filesync:s1:{VERSION}"));
        assert_ne!(host_lock_name("s1"), host_lock_name("s2"));
    }

    #[test]
    fn history_lists_the_apps_events_with_their_times_oldest_first() {
        let file = crate::core::FileId::new("f1").unwrap();
        let history = [
            (Millis(10), Event::SyncStart),
            (
                Millis(11),
                Event::Committed {
                    op: crate::core::OpId(1),
                },
            ),
            (
                Millis(12),
                Event::TransferComplete {
                    kind: TransferKind::Upload,
                    file,
                },
            ),
        ];
        let json = history_json(history.iter());
        assert_eq!(
            json.get(),
            r#"[{"at":10,"event":{"type":"sync:start"}},{"at":12,"event":{"type":"upload:complete","fileId":"f1"}}]"#
        );
        let empty: [(Millis, Event); 0] = [];
        assert_eq!(history_json(empty.iter()).get(), "[]");
        // The tab takes the answer's entries as they are.
        let reply = encode(&ToTab::<FileState>::History {
            req: 7,
            entries: json,
        });
        let Ok(ToTab::<TabFile>::History { req: 7, entries }) = serde_json::from_str(&reply) else {
            panic!("{reply}");
        };
        assert!(entries.get().starts_with(r#"[{"at":10"#));
    }

    #[test]
    fn internal_engine_events_do_not_reach_apps() {
        assert_eq!(
            AppEvent::from_engine(&Event::Committed {
                op: crate::core::OpId(1)
            }),
            None
        );
        assert_eq!(
            AppEvent::from_engine(&Event::Online),
            Some(AppEvent::Online)
        );
    }
}
