//! The engine's contract with its driver: its configuration and snapshot, the inputs it takes,
//! the commands it asks for, the events it emits, and the views it answers queries with.

use super::*;

/// Whether the store syncs with a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Events and bytes sync through the server.
    Remote,
    /// Nothing leaves the browser: events are confirmed locally, nothing is uploaded.
    LocalOnly,
}

/// Engine configuration. Every field is used; defaults are documented on [`Config::new`].
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreId,
    pub client: ClientId,
    pub mode: Mode,
    /// Uploads running at once.
    pub max_uploads: usize,
    /// Downloads running at once.
    pub max_downloads: usize,
    /// When other clients' files download here: at once, or when the app reads them.
    pub downloads: Downloads,
    /// The most bytes of content to keep here (`None`: no limit). Over it, the least recently
    /// used content that is safely on the server, not pinned and not in use is evicted.
    pub budget: Option<u64>,
    /// Reads are recorded at most this often per file (a read is not a write each time).
    pub access_granularity_ms: u64,
    /// Content read or arrived this recently is not evicted (a `File` the app just got reads
    /// the stored bytes); the budget is kept again once the grace ends.
    pub evict_grace_ms: u64,
    /// Over the budget, eviction passes (each a walk over every row) run at most this often.
    pub budget_pass_ms: u64,
    /// Remote deletes running at once.
    pub max_deletes: usize,
    /// Remote content becomes garbage only this long after its last reference went away, so
    /// an aborted upload still in flight cannot land after the delete.
    pub delete_grace_ms: u64,
    /// Bytes found in local storage that nothing uses are deleted after this long, since a
    /// tab may have stored them just before committing.
    pub orphan_grace_ms: u64,
    pub retry: RetryPolicy,
    /// Least time between two progress events of one transfer.
    pub progress_interval_ms: u64,
    /// A running transfer without any progress for this long is aborted and retried.
    pub stall_timeout_ms: u64,
    /// Health probes while offline start at this delay and double up to `max_reconnect_ms`.
    pub reconnect_base_ms: u64,
    pub max_reconnect_ms: u64,
    /// A pull every so often, in case a live delivery was lost (0 disables it).
    pub pull_interval_ms: u64,
    /// Events per push and per pulled page.
    pub batch_limit: usize,
    /// Recent events kept for debugging.
    pub history_capacity: usize,
    /// Seed of the jitter generator.
    pub seed: u64,
}

impl Config {
    /// The defaults: 4 uploads, 4 downloads and 2 deletes at once, no byte budget, reads
    /// recorded to the minute and kept from eviction for 10 s, eviction passes at most once a
    /// second, deletes 60 s after the last reference went; retries from 1 s doubling to 30 s,
    /// 5 at most; progress every 200 ms; stall after 30 s; reconnect probes from 1 s to 60 s;
    /// a safety pull every 30 s; batches of 256 events; 256 history entries.
    pub fn new(store: StoreId, client: ClientId, mode: Mode) -> Config {
        Config {
            store,
            client,
            mode,
            max_uploads: 4,
            max_downloads: 4,
            downloads: Downloads::Eager,
            budget: None,
            access_granularity_ms: 60_000,
            evict_grace_ms: 10_000,
            budget_pass_ms: 1_000,
            max_deletes: 2,
            delete_grace_ms: 60_000,
            orphan_grace_ms: 60_000,
            retry: RetryPolicy::default(),
            progress_interval_ms: 200,
            stall_timeout_ms: 30_000,
            reconnect_base_ms: 1_000,
            max_reconnect_ms: 60_000,
            pull_interval_ms: 30_000,
            batch_limit: 256,
            history_capacity: 256,
            seed: 0,
        }
    }
}

/// What the engine needs to restart: everything it persists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub rows: Vec<FileRow>,
    pub cursor: Seq,
    pub pending: Vec<ClientEvent>,
    pub local: Vec<LocalRow>,
    pub next_event_n: u64,
    /// Content this client uploaded that no confirmed row points at yet.
    pub unattached: Vec<ContentHash>,
    /// Remote content to delete once nothing references it.
    pub garbage: Vec<ContentHash>,
    /// Multipart uploads under way, by content: the leader's resume text (opaque here).
    pub uploads: Vec<(ContentHash, String)>,
}

/// Identifies an app write until it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Identifies one attempt of a transfer or remote delete; results name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

/// Identifies a push or pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Everything the engine reacts to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Input {
    /// An app write from any tab. For creates and content updates the driver has already stored
    /// the bytes locally.
    Commit { op: OpId, event: Box<FileEvent> },
    /// A persist batch is durable.
    Persisted { batch: u64 },
    /// A persist batch failed; nothing of it was written.
    PersistFailed { batch: u64, failure: Failure },
    /// The server accepted pushed events: here they are as it stored them, with their
    /// positions. The server's version wins over ours: our server clears the remote key of an
    /// event whose content it does not hold (deleted between upload and attach), and the
    /// file is then uploaded again.
    Pushed {
        request: RequestId,
        confirmed: Vec<ConfirmedEvent>,
    },
    /// A page of confirmed events after the requested cursor.
    Pulled {
        request: RequestId,
        events: Vec<ConfirmedEvent>,
        has_more: bool,
    },
    /// A push or pull failed.
    SyncFailed {
        request: RequestId,
        failure: Failure,
    },
    /// Events the server pushed on its live channel (maybe late, repeated or out of order).
    Live { events: Vec<ConfirmedEvent> },
    /// The live channel (re)connected: catch up.
    LiveConnected,
    /// Result of a health probe.
    Health { ok: bool },
    /// The browser's own online/offline signal.
    NetworkHint { online: bool },
    /// A tab became leader with this term.
    LeaderElected { term: Term },
    /// The leader of this term stepped down (tab closed, lock lost).
    LeaderLost { term: Term },
    /// Bytes moved by a running transfer. A multipart upload also reports its new resume text
    /// (created, a part finished; `""`: the server lost it, forget it), which is persisted and
    /// handed to the next attempt.
    TransferProgress {
        task: TaskId,
        term: Term,
        loaded: u64,
        total: u64,
        resume: Option<String>,
    },
    /// A transfer finished. Downloads report the SHA-256 of the bytes they stored.
    TransferDone {
        task: TaskId,
        term: Term,
        downloaded_hash: Option<ContentHash>,
    },
    /// A transfer failed.
    TransferFailed {
        task: TaskId,
        term: Term,
        failure: Failure,
    },
    /// A remote delete finished.
    RemoteDeleteDone {
        task: TaskId,
        term: Term,
        result: Result<(), Failure>,
    },
    /// Contents found in local storage at start; unreferenced ones are deleted.
    LocalInventory { hashes: Vec<ContentHash> },
    /// The driver starts listing local storage for a `LocalInventory` while the engine runs:
    /// contents stored or deleted from now on are applied on top of the listing.
    InventoryStarted,
    /// Answer to `ListLocalBytes`: contents found in storage now. Unlike `LocalInventory` it
    /// may race with writes in progress, so it only reveals orphans (a dead leader's
    /// download, say), deleted if still unused after `orphan_grace_ms`.
    LocalBytesFound { hashes: Vec<ContentHash> },
    /// The app wants this file shown soon: its transfer jumps the queue.
    Prioritize { file: FileId },
    /// Keep this file's bytes here whatever the downloads policy (`pinned`), or stop keeping
    /// them especially. Persisted with the per-client row.
    Pin { file: FileId, pinned: bool },
    /// The app's downloads policy wants these files here (a function the tabs evaluate): a
    /// remote-only file's download is queued, not urgent. An evicted file is left remote (the
    /// budget needed its room; a read brings it back), as is any file not remote-only.
    Want { files: Vec<FileId> },
    /// The app read these files here: the byte budget evicts them last.
    Accessed { files: Vec<FileId> },
    /// Every content some tab uses now (its open object URLs): never evicted. The whole set.
    InUse { hashes: Vec<ContentHash> },
    /// Stop this file's transfers; they end in `error` with code `cancelled`.
    Cancel { file: FileId },
    /// Re-queue every failed transfer.
    RetryErrors,
    /// Sync now: pull, push, probe if offline, and end retry waits.
    SyncNow,
    /// The driver's storage was removed under it ("Clear site data", the browser evicting the
    /// origin) and opened again empty; `present` is what the new byte store holds. Everything
    /// in memory is written again; bytes that were only here are gone (reported); transfers
    /// running on the old storage are dropped (their reports no longer match a task).
    StorageLost { present: Vec<ContentHash> },
    /// Stop starting transfers and abort running ones (they stay queued).
    Pause,
    /// Undo `Pause`.
    Resume,
}

/// What the driver must store, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistBatch {
    pub id: u64,
    pub rows: Vec<FileRow>,
    pub log: Vec<ConfirmedEvent>,
    pub cursor: Seq,
    pub pending_put: Vec<ClientEvent>,
    pub pending_delete: Vec<EventId>,
    pub local_put: Vec<LocalRow>,
    pub local_delete: Vec<FileId>,
    pub next_event_n: u64,
    /// The whole set, when it changed.
    pub unattached: Option<Vec<ContentHash>>,
    /// The whole set, when it changed.
    pub garbage: Option<Vec<ContentHash>>,
    /// The whole set of multipart uploads under way, when it changed.
    pub uploads: Option<Vec<(ContentHash, String)>>,
}

/// One transfer for the leader to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOrder {
    pub task: TaskId,
    pub term: Term,
    pub kind: TransferKind,
    pub hash: ContentHash,
    pub key: RemoteKey,
    pub size: u64,
    pub mime_type: String,
    /// An upload's resume text from an earlier attempt (see `TransferProgress`).
    pub resume: Option<String>,
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Store this batch atomically, then report `Persisted` or `PersistFailed`.
    Persist(PersistBatch),
    /// Send these events to the server.
    Push {
        request: RequestId,
        events: Vec<ClientEvent>,
    },
    /// Fetch confirmed events after `after`, at most `limit`.
    Pull {
        request: RequestId,
        after: Seq,
        limit: usize,
    },
    /// Probe the server.
    CheckHealth,
    /// The leader runs this transfer.
    StartTransfer(TransferOrder),
    /// Abort a running transfer; its result, if any, will be ignored.
    AbortTransfer { task: TaskId },
    /// Nothing references this content any more: delete its local bytes.
    DeleteLocalBytes { hash: ContentHash },
    /// List the contents in local storage; answer with `LocalBytesFound`.
    ListLocalBytes,
    /// The leader deletes this remote object.
    DeleteRemote {
        task: TaskId,
        term: Term,
        key: RemoteKey,
    },
    /// Best effort, nothing to report: abort the multipart upload of `key` this resume text
    /// describes (its content is no longer wanted, or its upload gave up). The server also
    /// aborts uploads left too long.
    AbortUpload { key: RemoteKey, resume: String },
}

/// Ephemeral notifications for the app (callbacks in JS). Never persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    SyncStart,
    SyncComplete,
    SyncError {
        code: String,
        message: String,
        context: &'static str,
    },
    TransferStart {
        kind: TransferKind,
        file: FileId,
    },
    TransferProgress {
        kind: TransferKind,
        file: FileId,
        loaded: u64,
        total: u64,
    },
    TransferComplete {
        kind: TransferKind,
        file: FileId,
    },
    /// A failed attempt; `retry_in_ms` is set when another attempt is scheduled.
    TransferError {
        kind: TransferKind,
        file: FileId,
        code: String,
        message: String,
        retry_in_ms: Option<u64>,
    },
    /// No more automatic attempts: the file is in `error`.
    TransferExhausted {
        kind: TransferKind,
        file: FileId,
        code: String,
        message: String,
    },
    Online,
    Offline,
    /// A new leader re-queued transfers a previous one left running or failed.
    Recovery {
        requeued: Vec<FileId>,
    },
    /// `retryErrors` re-queued these files.
    ErrorRetryStart {
        files: Vec<FileId>,
    },
    /// An app write is durable.
    Committed {
        op: OpId,
    },
    /// Local storage refused a write; it will be retried.
    StorageError {
        code: String,
        message: String,
    },
    /// Local storage was removed under the engine and started again empty (see
    /// [`Input::StorageLost`]): `lost` are the live files whose bytes existed only here.
    /// Everything else is written again, and downloaded again where needed.
    StorageReset {
        lost: Vec<FileId>,
    },
    /// A concurrent edit made elsewhere (without knowledge of it) replaced content this client
    /// wrote: this device's work lost. Its bytes stay here for at least `delete_grace_ms`, so
    /// the app can read them by content hash and offer to keep them.
    Conflict {
        file: FileId,
        mine: ContentHash,
        winner: ContentHash,
    },
    /// Rows of these files (view or per-client) changed, or their sync state (every file's
    /// `is_synced`, the unconfirmed event count); the list may be empty when only the count
    /// changed.
    FilesChanged {
        files: Vec<FileId>,
    },
}

/// An output: a command to perform or an event to emit.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Command(Command),
    Event(Event),
}

/// A file as the app sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileView<'a> {
    pub row: &'a FileRow,
    pub local: Option<&'a LocalRow>,
    pub display: DisplayState,
    /// Bytes of the content moved so far by the file's running upload, as last reported
    /// (0 when none runs): what a view built mid-transfer shows.
    pub uploaded_bytes: u64,
    /// The same for its running download.
    pub downloaded_bytes: u64,
}
