//! The engine: one per browser profile and store, living in the hub (see `docs/ARCHITECTURE.md`).
//!
//! It owns the files table, the per-client rows and the transfer scheduler, and decides
//! everything; the driver performs what it asks and reports back. All inputs that come from a
//! leader carry its [`Term`]; anything from an older term is refused, so a stale leader cannot
//! overwrite its successor's state.
//!
//! See the module docs of [`crate::core`] for the driving contract.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::collections::{FxMap, FxSet};
use super::error::{EngineError, Failure};
use super::event::{ClientEvent, ConfirmedEvent, FileEvent, FileUpdated, MetadataPatch};
use super::history::History;
use super::ids::{ClientId, ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId, Term};
use super::local::{reconcile, LocalRow, LocalState, SyncError, TransferKind, TransferStatus};
use super::progress::Throttle;
use super::retry::{Decision, RetryPolicy, Rng};
use super::status::{DisplayState, SyncStatus};
use super::table::{FileRow, FilesTable};
use super::timer::{Timer, Timers};

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
    /// The defaults: 4 uploads, 4 downloads and 2 deletes at once, deletes 60 s after the last
    /// reference went; retries from 1 s doubling to
    /// 30 s, 5 at most; progress every 200 ms; stall after 30 s; reconnect probes from 1 s to
    /// 60 s; a safety pull every 30 s; batches of 256 events; 256 history entries.
    pub fn new(store: StoreId, client: ClientId, mode: Mode) -> Config {
        Config {
            store,
            client,
            mode,
            max_uploads: 4,
            max_downloads: 4,
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
    /// Bytes moved by a running transfer.
    TransferProgress {
        task: TaskId,
        term: Term,
        loaded: u64,
        total: u64,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    /// An upload whose content the server has not confirmed yet.
    Blocked,
    Ready,
    Backoff(Millis),
    Running {
        id: TaskId,
        last_activity: Millis,
    },
}

#[derive(Debug, Clone)]
struct Task {
    retries: u32,
    urgent: bool,
    order: u64,
    state: TaskState,
    throttle: Throttle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GcState {
    /// Not before this time; retries so far.
    Waiting(Millis, u32),
    Running(TaskId, u32),
}

/// A persist batch being written, with what waits for it to be durable.
#[derive(Debug)]
struct InFlight {
    id: u64,
    next_event_n: u64,
    /// What the batch holds, to mark dirty again if it fails.
    keys: Dirty,
    /// App writes to acknowledge.
    ops: Vec<OpId>,
    /// Local contents to delete: bytes go only after the rows that dropped them are durable,
    /// so a crash can never leave a row whose only copy is gone.
    gc: Vec<ContentHash>,
}

/// Keys changed since the last persist batch.
#[derive(Debug, Default)]
struct Dirty {
    rows: BTreeSet<FileId>,
    log: Vec<ConfirmedEvent>,
    pending: FxSet<EventId>,
    local: BTreeSet<FileId>,
    meta: bool,
    unattached: bool,
    garbage: bool,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.log.is_empty()
            && self.pending.is_empty()
            && self.local.is_empty()
            && !self.meta
            && !self.unattached
            && !self.garbage
    }
}

/// The sans-IO sync engine.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    now: Millis,
    table: FilesTable,
    local: LocalState,
    next_event_n: u64,
    /// Events numbered below this are durable locally; only they are pushed, so a crash can
    /// never reuse the number of an event the server already has.
    durable_event_n: u64,
    unattached: FxSet<ContentHash>,
    /// Contents whose attach the server recorded without the remote key, this session: how
    /// many times in a row, and not before when to upload again. A server that keeps clearing
    /// it (it does not hold the bytes the signer took) costs retries from the budget, not an
    /// upload loop. Gone once an attach of the content is confirmed with its key.
    cleared: FxMap<ContentHash, (u32, Millis)>,
    garbage: FxMap<ContentHash, GcState>,

    dirty: Dirty,
    batch_in_flight: Option<InFlight>,
    next_batch: u64,
    unbatched_ops: Vec<OpId>,
    /// Contents to delete locally once the state that stopped referencing them is durable.
    unbatched_gc: Vec<ContentHash>,
    persist_failures: u32,

    online: bool,
    health_failures: u32,
    next_request: u64,
    push_in_flight: Option<(RequestId, u64)>,
    pushed_upto: u64,
    pull_in_flight: Option<RequestId>,
    pull_wanted: bool,
    sync_failures: u32,
    early: BTreeMap<Seq, ConfirmedEvent>,

    term: Term,
    leader: bool,
    paused: bool,
    tasks: FxMap<(TransferKind, ContentHash), Task>,
    ready: BTreeSet<(TransferKind, bool, u64, ContentHash)>,
    running: FxMap<TaskId, (TransferKind, ContentHash)>,
    next_task: u64,
    next_order: u64,

    touched: BTreeSet<FileId>,
    touched_hashes: FxSet<ContentHash>,
    gc_local: FxSet<ContentHash>,
    /// Contents whose bytes are in local storage, as far as the engine knows.
    bytes: FxSet<ContentHash>,
    /// Contents found in storage that nothing used, with when they were found.
    orphans: FxMap<ContentHash, Millis>,
    /// Content of this client's that a concurrent edit replaced: kept (not garbage) until then,
    /// so the app can still read it.
    retained: FxMap<ContentHash, Millis>,
    /// Contents stored and deleted since a listing began (`InventoryStarted`).
    journal: Option<(FxSet<ContentHash>, FxSet<ContentHash>)>,
    changed: BTreeSet<FileId>,
    /// The unconfirmed event count the last `FilesChanged` reflected.
    reported_unconfirmed: usize,
    busy: bool,
    out: VecDeque<Output>,
    timers: Timers,
    rng: Rng,
    history: History,
}

const KINDS: [TransferKind; 2] = [TransferKind::Upload, TransferKind::Download];
const EARLY_LIMIT: usize = 10_000;

impl Engine {
    /// Starts an engine from what was persisted (`Snapshot::default()` for a new store).
    ///
    /// Transfers that were running when the previous engine stopped are re-queued (their
    /// leader is gone), and when the per-client state is empty every file is reconciled
    /// (bootstrap). Nothing else is re-read: bytes are never re-hashed at start.
    pub fn new(cfg: Config, snapshot: Snapshot, now: Millis) -> Engine {
        let table = FilesTable::restore(snapshot.rows, snapshot.cursor, snapshot.pending);
        let mut local = LocalState::restore(snapshot.local);
        let requeue: Vec<FileId> = local
            .rows()
            .filter(|r| {
                r.upload == TransferStatus::InProgress || r.download == TransferStatus::InProgress
            })
            .map(|r| r.file_id.clone())
            .collect();
        for id in &requeue {
            local.update(id, |r| {
                for k in KINDS {
                    if r.status(k) == TransferStatus::InProgress {
                        r.set_status(k, TransferStatus::Queued);
                    }
                }
            });
        }
        let bootstrap = local.is_empty();
        let mut e = Engine {
            rng: Rng::new(cfg.seed),
            history: History::new(cfg.history_capacity),
            now,
            next_event_n: snapshot.next_event_n,
            durable_event_n: snapshot.next_event_n,
            unattached: snapshot.unattached.into_iter().collect(),
            cleared: FxMap::default(),
            garbage: snapshot
                .garbage
                .into_iter()
                .map(|h| (h, GcState::Waiting(now.after(cfg.delete_grace_ms), 0)))
                .collect(),
            dirty: Dirty::default(),
            batch_in_flight: None,
            next_batch: 1,
            unbatched_ops: Vec::new(),
            unbatched_gc: Vec::new(),
            persist_failures: 0,
            online: true,
            health_failures: 0,
            next_request: 1,
            push_in_flight: None,
            pushed_upto: 0,
            pull_in_flight: None,
            pull_wanted: cfg.mode == Mode::Remote,
            sync_failures: 0,
            early: BTreeMap::new(),
            term: Term(0),
            leader: false,
            paused: false,
            tasks: FxMap::default(),
            ready: BTreeSet::new(),
            running: FxMap::default(),
            next_task: 1,
            next_order: 0,
            touched: BTreeSet::new(),
            touched_hashes: FxSet::default(),
            gc_local: FxSet::default(),
            bytes: FxSet::default(),
            orphans: FxMap::default(),
            retained: FxMap::default(),
            journal: None,
            changed: BTreeSet::new(),
            reported_unconfirmed: 0,
            busy: false,
            out: VecDeque::new(),
            timers: Timers::default(),
            cfg,
            table,
            local,
        };
        e.dirty.local.extend(requeue);
        e.bytes = e.local.rows().filter_map(|r| r.local_hash).collect();
        if bootstrap {
            e.bootstrap();
        }
        e.rebuild_tasks();
        if e.cfg.pull_interval_ms > 0 && e.cfg.mode == Mode::Remote {
            e.timers
                .set(Timer::PullInterval, Some(now.after(e.cfg.pull_interval_ms)));
        }
        e.after_step();
        e
    }

    // ----- the driving contract -------------------------------------------------------------

    /// Feeds one input. On `Err` the input was refused and nothing changed.
    pub fn handle(&mut self, now: Millis, input: Input) -> Result<(), EngineError> {
        self.now = self.now.max(now);
        let result = self.dispatch_input(input);
        self.after_step();
        result
    }

    /// Fires the timers due at `now`. Call it when `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = self.now.max(now);
        for t in self.timers.expire(self.now) {
            match t {
                Timer::Persist => {}
                Timer::Health => {
                    if !self.online {
                        self.emit_command(Command::CheckHealth);
                    }
                }
                Timer::Sync => self.pull_wanted = true,
                Timer::PullInterval => {
                    self.pull_wanted = true;
                    self.timers.set(
                        Timer::PullInterval,
                        Some(self.now.after(self.cfg.pull_interval_ms)),
                    );
                }
                Timer::Retry => self.end_backoffs(false),
                Timer::Progress => self.flush_progress(),
                Timer::Stall => self.check_stalls(),
                Timer::Orphans => self.expire_orphans(),
            }
        }
        self.after_step();
    }

    /// The next output, commands and events in the order they were decided. Drain it after
    /// every `handle` / `handle_timeout` call.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` must be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    // ----- queries ----------------------------------------------------------------------------

    /// A file as the app sees it (tombstones included).
    pub fn file(&self, id: &FileId) -> Option<FileView<'_>> {
        self.table.get(id).map(|row| self.view_of(row))
    }

    /// Live files, by id.
    pub fn files(&self) -> impl Iterator<Item = FileView<'_>> {
        self.table
            .rows()
            .filter(|r| r.is_live())
            .map(|row| self.view_of(row))
    }

    fn view_of<'a>(&'a self, row: &'a FileRow) -> FileView<'a> {
        let local = self.local.get(&row.id);
        let confirmed = self.cfg.mode == Mode::Remote && !self.table.has_pending(&row.id);
        FileView {
            row,
            local,
            display: DisplayState::derive(row, local, confirmed),
        }
    }

    /// Events made here that the server has not confirmed yet (none in local-only mode).
    pub fn unconfirmed_events(&self) -> usize {
        match self.cfg.mode {
            Mode::Remote => self.table.pending().len(),
            Mode::LocalOnly => 0,
        }
    }

    /// Unconfirmed events made here that are durable locally, oldest first: what may be sent
    /// to the server (an event not durable yet must not be: a crash could reuse its number).
    pub fn durable_unconfirmed(&self) -> &[ClientEvent] {
        if self.cfg.mode != Mode::Remote {
            return &[];
        }
        let pending = self.table.pending();
        &pending[..pending.partition_point(|p| p.id.n < self.durable_event_n)]
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Aggregate status, derived from the per-client rows and the unconfirmed events.
    pub fn status(&self) -> SyncStatus {
        SyncStatus::derive(self.local.rows(), self.unconfirmed_events())
    }

    /// Recent events, oldest first.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The files table.
    pub fn table(&self) -> &FilesTable {
        &self.table
    }

    /// Per-client rows.
    pub fn local_state(&self) -> &LocalState {
        &self.local
    }

    /// The number the next event made here gets.
    pub fn next_event_n(&self) -> u64 {
        self.next_event_n
    }

    /// The highest leadership term seen (whether or not a leader runs now).
    pub fn term(&self) -> Term {
        self.term
    }

    /// Whether a leader is running transfers.
    pub fn leader_term(&self) -> Option<Term> {
        self.leader.then_some(self.term)
    }

    /// Whether the server is believed reachable.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Whether anything is left to do: unconfirmed events, transfers, remote deletes or
    /// unpersisted state.
    pub fn is_busy(&self) -> bool {
        self.busy || !self.dirty.is_empty() || self.batch_in_flight.is_some()
    }

    /// Everything persisted so far would restore to this (the simulation compares). Lists
    /// are sorted (rows by file id, hashes by value), as a store lists them.
    pub fn snapshot(&self) -> Snapshot {
        let mut unattached: Vec<ContentHash> = self.unattached.iter().copied().collect();
        unattached.sort_unstable();
        let mut garbage: Vec<ContentHash> = self.garbage.keys().copied().collect();
        garbage.sort_unstable();
        Snapshot {
            rows: self.table.confirmed_rows().cloned().collect(),
            cursor: self.table.cursor(),
            pending: self.table.pending().to_vec(),
            local: self.local.rows().cloned().collect(),
            next_event_n: self.next_event_n,
            unattached,
            garbage,
        }
    }

    /// Reconciles every live file at once, for an empty per-client state (a new device, or
    /// storage that was cleared): bulk-built rather than file by file.
    fn bootstrap(&mut self) {
        let rows: Vec<LocalRow> = self
            .table
            .rows()
            .filter(|r| r.is_live())
            .map(|r| self.for_mode(reconcile(r, None, self.bytes.contains(&r.content_hash))))
            .collect();
        self.dirty.local = rows.iter().map(|r| r.file_id.clone()).collect();
        self.changed = self.dirty.local.clone();
        self.local = LocalState::restore(rows);
    }

    /// Creates the transfer tasks the per-client rows ask for, in one pass.
    fn rebuild_tasks(&mut self) {
        if self.cfg.mode != Mode::Remote {
            return;
        }
        let mut wanted: Vec<(TransferKind, ContentHash)> = self
            .local
            .rows()
            .flat_map(|r| {
                KINDS
                    .into_iter()
                    .filter(|k| r.status(*k).is_active())
                    .map(|k| (k, r.content_hash))
            })
            .collect();
        // Sorted: tasks are numbered in the order they are created.
        wanted.sort_unstable();
        wanted.dedup();
        self.tasks.reserve(wanted.len());
        for (kind, hash) in wanted {
            self.sync_task(kind, hash);
        }
    }

    // ----- inputs -----------------------------------------------------------------------------

    fn dispatch_input(&mut self, input: Input) -> Result<(), EngineError> {
        match input {
            Input::Commit { op, event } => {
                let event = *event;
                let stored = match &event {
                    FileEvent::Created(c) => Some(c.content_hash),
                    FileEvent::Updated(u) => Some(u.content_hash),
                    _ => None,
                };
                if let Err(e) = self.commit(event, true) {
                    // The driver stored the bytes before committing: collect them if unused.
                    self.note_stored(stored);
                    self.gc_local.extend(stored);
                    return Err(e);
                }
                self.unbatched_ops.push(op);
            }
            Input::Persisted { batch } => self.on_persisted(batch),
            Input::PersistFailed { batch, failure } => self.on_persist_failed(batch, failure),
            Input::Pushed { request, confirmed } => self.on_pushed(request, confirmed)?,
            Input::Pulled {
                request,
                events,
                has_more,
            } => {
                if self.pull_in_flight != Some(request) {
                    return Err(EngineError::UnknownTask);
                }
                self.pull_in_flight = None;
                self.sync_ok();
                let before = self.table.cursor();
                self.receive(events);
                self.pull_wanted =
                    has_more || (!self.early.is_empty() && self.table.cursor() > before);
            }
            Input::SyncFailed { request, failure } => self.on_sync_failed(request, failure)?,
            Input::Live { events } => self.receive(events),
            Input::LiveConnected => {
                self.pull_wanted = true;
                self.set_online();
            }
            Input::Health { ok } => {
                if ok {
                    self.set_online();
                } else if !self.online {
                    self.health_failures += 1;
                    self.schedule_health();
                }
            }
            Input::NetworkHint { online } => {
                if !online {
                    self.set_offline();
                } else if !self.online {
                    self.timers.set(Timer::Health, Some(self.now));
                }
            }
            Input::LeaderElected { term } => self.on_leader_elected(term)?,
            Input::LeaderLost { term } => {
                self.check_term(term)?;
                self.leader = false;
                self.stop_running(false);
            }
            Input::TransferProgress {
                task,
                term,
                loaded,
                total,
            } => self.on_progress(task, term, loaded, total)?,
            Input::TransferDone {
                task,
                term,
                downloaded_hash,
            } => {
                if let Err(e) = self.on_transfer_done(task, term, downloaded_hash) {
                    // Bytes a fenced-off or cancelled download stored are collected if unused.
                    self.note_stored(downloaded_hash);
                    self.gc_local.extend(downloaded_hash);
                    return Err(e);
                }
            }
            Input::TransferFailed {
                task,
                term,
                failure,
            } => {
                self.check_term(term)?;
                let (kind, hash) = self.take_running(task)?;
                self.on_transfer_failed(kind, hash, failure);
            }
            Input::RemoteDeleteDone { task, term, result } => {
                self.on_remote_delete_done(task, term, result)?
            }
            Input::LocalInventory { hashes } => self.take_inventory(hashes),
            Input::InventoryStarted => {
                self.journal = Some((FxSet::default(), FxSet::default()));
            }
            Input::LocalBytesFound { hashes } => {
                for h in hashes {
                    if !self.bytes.contains(&h) {
                        self.orphans.entry(h).or_insert(self.now);
                    }
                }
            }
            Input::Prioritize { file } => self.prioritize(&file)?,
            Input::Cancel { file } => self.cancel(&file)?,
            Input::RetryErrors => self.retry_errors(),
            Input::SyncNow => {
                self.pull_wanted = true;
                if !self.online {
                    self.timers.set(Timer::Health, Some(self.now));
                }
                self.end_backoffs(true);
            }
            Input::Pause => {
                self.paused = true;
                self.stop_running(true);
            }
            Input::Resume => self.paused = false,
            Input::StorageLost { present } => self.storage_lost(present),
        }
        Ok(())
    }

    /// Records a local event (app write or upload completion) and, in local-only mode,
    /// confirms it at once.
    fn commit(&mut self, event: FileEvent, bytes_here: bool) -> Result<(), EngineError> {
        event.validate_for_store(&self.cfg.store)?;
        let stored = match &event {
            FileEvent::Created(c) => Some(c.content_hash),
            FileEvent::Updated(u) if bytes_here => Some(u.content_hash),
            _ => None,
        };
        let id = event.file_id().clone();
        // An app write of new content: this client authored what the file now holds.
        let authors = match &event {
            FileEvent::Created(_) => true,
            FileEvent::Updated(u) => bytes_here && u.previous_content_hash != Some(u.content_hash),
            FileEvent::Deleted(_) => false,
        };
        let ev = ClientEvent {
            id: EventId {
                client: self.cfg.client.clone(),
                n: self.next_event_n,
            },
            event,
        };
        self.table.commit_local(ev.clone())?;
        self.next_event_n += 1;
        self.dirty.meta = true;
        self.dirty.pending.insert(ev.id.clone());
        self.note_stored(stored);
        if let Some(h) = stored {
            self.orphans.remove(&h);
        }
        if let (Some(h), Some(row)) = (stored, self.table.get(&id)) {
            // The driver stored these bytes before committing: record it, and let every file
            // with the same content use them.
            let mut fresh = reconcile(row, self.local.get(&id), true);
            fresh.authored = authors;
            self.put_local(fresh);
            self.touched.extend(self.table.view_refs(&h).cloned());
        }
        self.touched.insert(id);
        if self.cfg.mode == Mode::LocalOnly {
            let seq = Seq(self.table.cursor().0 + 1);
            self.receive(vec![ConfirmedEvent {
                seq,
                id: ev.id,
                event: ev.event,
            }]);
        }
        Ok(())
    }

    // ----- persistence ------------------------------------------------------------------------

    fn flush_persist(&mut self) {
        if self.batch_in_flight.is_some()
            || self.dirty.is_empty()
            || self.timers.get(Timer::Persist).is_some()
        {
            return;
        }
        let mut keys = std::mem::take(&mut self.dirty);
        let mut b = PersistBatch {
            id: self.next_batch,
            cursor: self.table.cursor(),
            next_event_n: self.next_event_n,
            log: keys.log.clone(),
            ..PersistBatch::default()
        };
        self.next_batch += 1;
        b.rows = keys
            .rows
            .iter()
            .filter_map(|id| self.table.confirmed(id).cloned())
            .collect();
        if !keys.pending.is_empty() {
            let pending: FxMap<&EventId, &ClientEvent> =
                self.table.pending().iter().map(|p| (&p.id, p)).collect();
            for id in &keys.pending {
                match pending.get(id) {
                    Some(p) => b.pending_put.push((*p).clone()),
                    None => b.pending_delete.push(id.clone()),
                }
            }
        }
        for id in &keys.local {
            match self.local.get(id) {
                Some(r) => b.local_put.push(r.clone()),
                None => b.local_delete.push(id.clone()),
            }
        }
        if keys.unattached {
            b.unattached = Some(self.unattached.iter().copied().collect());
        }
        if keys.garbage {
            b.garbage = Some(self.garbage.keys().copied().collect());
        }
        keys.meta = true;
        self.batch_in_flight = Some(InFlight {
            id: b.id,
            next_event_n: b.next_event_n,
            keys,
            ops: std::mem::take(&mut self.unbatched_ops),
            gc: std::mem::take(&mut self.unbatched_gc),
        });
        self.emit_command(Command::Persist(b));
    }

    fn on_persisted(&mut self, batch: u64) {
        let Some(done) = self.batch_in_flight.take_if(|f| f.id == batch) else {
            return;
        };
        self.durable_event_n = self.durable_event_n.max(done.next_event_n);
        self.persist_failures = 0;
        for op in done.ops {
            self.emit_event(Event::Committed { op });
        }
        self.delete_local(done.gc);
    }

    fn on_persist_failed(&mut self, batch: u64, failure: Failure) {
        let Some(InFlight { keys, ops, gc, .. }) = self.batch_in_flight.take_if(|f| f.id == batch)
        else {
            return;
        };
        // Everything in the batch is dirty again; the next batch re-reads current values.
        let d = &mut self.dirty;
        let later_log = std::mem::replace(&mut d.log, keys.log);
        d.log.extend(later_log);
        d.rows.extend(keys.rows);
        d.pending.extend(keys.pending);
        d.local.extend(keys.local);
        d.meta = true;
        d.unattached |= keys.unattached;
        d.garbage |= keys.garbage;
        self.unbatched_gc.extend(gc);
        let mut ops = ops;
        ops.append(&mut self.unbatched_ops);
        self.unbatched_ops = ops;
        self.emit_event(Event::StorageError {
            code: failure.code().into(),
            message: failure.to_string(),
        });
        let delay = (100u64 << self.persist_failures.min(6)).min(5_000);
        self.persist_failures += 1;
        self.timers.set(Timer::Persist, Some(self.now.after(delay)));
    }

    /// Starts over on emptied storage, from what memory holds (see [`Input::StorageLost`]).
    fn storage_lost(&mut self, present: Vec<ContentHash>) {
        // Transfers read or write the storage that is gone: stop them (they queue again).
        self.stop_running(true);
        // The batch being written went with the old database: its writes are made again (with
        // everything else, below), and its app writes acknowledged once they are durable.
        if let Some(f) = self.batch_in_flight.take() {
            let mut ops = f.ops;
            ops.append(&mut self.unbatched_ops);
            self.unbatched_ops = ops;
        }
        self.timers.set(Timer::Persist, None);
        self.persist_failures = 0;
        // Nothing is left to collect: the bytes are gone.
        self.unbatched_gc.clear();
        self.gc_local.clear();
        self.orphans.clear();
        self.retained.clear();
        self.journal = None;
        let before = std::mem::replace(&mut self.bytes, present.into_iter().collect());
        let lost: Vec<FileId> = self
            .table
            .rows()
            .filter(|r| r.is_live() && r.remote_key.is_none())
            .filter(|r| before.contains(&r.content_hash) && !self.bytes.contains(&r.content_hash))
            .map(|r| r.id.clone())
            .collect();
        // Local copies are what storage holds now; statuses re-derive (downloads queue).
        let ids: Vec<FileId> = self.local.rows().map(|r| r.file_id.clone()).collect();
        let gone: Vec<FileId> = self
            .local
            .rows()
            .filter(|r| r.local_hash.is_some_and(|h| !self.bytes.contains(&h)))
            .map(|r| r.file_id.clone())
            .collect();
        for id in &gone {
            self.update_local(id, |r| r.local_hash = None);
        }
        self.touched.extend(ids.iter().cloned());
        // Everything in memory goes to the new database.
        let d = &mut self.dirty;
        d.rows
            .extend(self.table.confirmed_rows().map(|r| r.id.clone()));
        d.pending
            .extend(self.table.pending().iter().map(|p| p.id.clone()));
        d.local.extend(ids);
        d.meta = true;
        d.unattached = true;
        d.garbage = true;
        self.emit_event(Event::StorageReset { lost });
    }

    // ----- event sync -------------------------------------------------------------------------

    fn next_request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn maybe_sync(&mut self) {
        if self.cfg.mode != Mode::Remote || !self.online || self.timers.get(Timer::Sync).is_some() {
            return;
        }
        if self.push_in_flight.is_none() {
            let events: Vec<ClientEvent> = self
                .table
                .pending()
                .iter()
                .filter(|p| p.id.n >= self.pushed_upto && p.id.n < self.durable_event_n)
                .take(self.cfg.batch_limit)
                .cloned()
                .collect();
            if let Some(last) = events.last() {
                let request = self.next_request();
                self.push_in_flight = Some((request, last.id.n + 1));
                self.emit_command(Command::Push { request, events });
            }
        }
        if self.pull_wanted && self.pull_in_flight.is_none() {
            self.pull_wanted = false;
            let request = self.next_request();
            self.pull_in_flight = Some(request);
            self.emit_command(Command::Pull {
                request,
                after: self.table.cursor(),
                limit: self.cfg.batch_limit,
            });
        }
    }

    fn on_pushed(
        &mut self,
        request: RequestId,
        confirmed: Vec<ConfirmedEvent>,
    ) -> Result<(), EngineError> {
        let Some((_, upto)) = self.push_in_flight.take_if(|(r, _)| *r == request) else {
            return Err(EngineError::UnknownTask);
        };
        self.pushed_upto = self.pushed_upto.max(upto);
        self.sync_ok();
        // Our own events with their positions: no need to wait for the live channel.
        self.receive(confirmed);
        Ok(())
    }

    fn on_sync_failed(&mut self, request: RequestId, failure: Failure) -> Result<(), EngineError> {
        if self
            .push_in_flight
            .take_if(|(r, _)| *r == request)
            .is_none()
            && self.pull_in_flight.take_if(|r| *r == request).is_none()
        {
            return Err(EngineError::UnknownTask);
        }
        self.pull_wanted = true;
        if matches!(failure, Failure::Offline | Failure::Timeout) {
            self.set_offline();
            return Ok(());
        }
        self.emit_event(Event::SyncError {
            code: failure.code().into(),
            message: failure.to_string(),
            context: "sync",
        });
        // Sync never gives up: it backs off to the longest delay and keeps trying.
        let retries = self
            .sync_failures
            .min(self.cfg.retry.max_retries.saturating_sub(1));
        let delay = match self
            .cfg
            .retry
            .decide(&Failure::Timeout, retries, &mut self.rng)
        {
            Decision::RetryIn(ms) => ms,
            _ => self.cfg.retry.max_delay_ms,
        };
        let delay = match failure {
            Failure::RateLimited {
                retry_after_ms: Some(after),
            } => delay.max(after),
            _ => delay,
        };
        self.sync_failures += 1;
        self.timers.set(Timer::Sync, Some(self.now.after(delay)));
        Ok(())
    }

    fn sync_ok(&mut self) {
        self.sync_failures = 0;
        self.set_online();
    }

    /// Takes confirmed events from any source; applies the contiguous run after the cursor and
    /// keeps later ones until the gap is filled (by a pull).
    fn receive(&mut self, events: Vec<ConfirmedEvent>) {
        let cursor = self.table.cursor();
        for ev in events {
            if ev.seq > cursor {
                self.early.insert(ev.seq, ev);
            }
        }
        while self.early.len() > EARLY_LIMIT {
            self.early.pop_last();
        }
        let mut run = Vec::new();
        let mut next = Seq(cursor.0 + 1);
        while let Some(ev) = self.early.remove(&next) {
            run.push(ev);
            next = Seq(next.0 + 1);
        }
        if !self.early.is_empty() {
            self.pull_wanted = true;
        }
        if run.is_empty() {
            return;
        }
        let applied = self.table.apply_confirmed(&self.cfg.store, run);
        self.dirty.meta = true;
        for (seq, e) in &applied.rejected {
            self.emit_event(Event::SyncError {
                code: e.code().into(),
                message: format!("skipped invalid event at seq {}: {e}", seq.0),
                context: "apply",
            });
        }
        for ev in &applied.applied {
            self.dirty.rows.insert(ev.event.file_id().clone());
            self.dirty.pending.insert(ev.id.clone());
        }
        self.dirty.log.extend(applied.applied.iter().cloned());
        // Our own events, confirmed: their files are now synced as shown (or closer to it).
        for ev in &applied.applied {
            if ev.id.client == self.cfg.client {
                self.changed.insert(ev.event.file_id().clone());
                if let FileEvent::Updated(u) = &ev.event {
                    if u.remote_key.is_some() {
                        self.cleared.remove(&u.content_hash);
                    }
                }
            }
        }
        for hash in applied.key_cleared {
            self.on_key_cleared(hash);
        }
        for o in applied.concurrent {
            // Ours only if this device shows (and wrote) the replaced content: with an edit of
            // its own still pending, the view shows that edit, which comes after and wins.
            let mine = self
                .local
                .get(&o.file)
                .is_some_and(|r| r.authored && r.content_hash == o.replaced);
            if mine {
                if self.bytes.contains(&o.replaced) {
                    self.retained
                        .insert(o.replaced, self.now.after(self.cfg.delete_grace_ms));
                }
                self.emit_event(Event::Conflict {
                    file: o.file,
                    mine: o.replaced,
                    winner: o.winner,
                });
            }
        }
        // Newly confirmed content may unblock its upload.
        for ev in &applied.applied {
            if let Some(row) = self.table.confirmed(ev.event.file_id()) {
                self.touched_hashes.insert(row.content_hash);
            }
        }
        self.touched.extend(applied.changed);
        for (hash, by) in applied.released {
            // The client whose event released the content deletes it remotely (whether or not
            // a row ever carried its key: an upload may have landed without being attached).
            if by.client == self.cfg.client {
                self.add_garbage(hash);
            }
            self.touched_hashes.insert(hash);
        }
        self.check_unattached();
    }

    /// The server stored our attach of `hash` without its key: the upload counts as failed
    /// (classified and budgeted like any failure); the reconcile that follows queues it again,
    /// and [`Self::sync_task`] holds it back until the backoff ends.
    fn on_key_cleared(&mut self, hash: ContentHash) {
        let failure = Failure::KeyCleared;
        let retries = self.cleared.get(&hash).map_or(0, |c| c.0);
        let files: Vec<FileId> = self
            .table
            .view_refs(&hash)
            .filter(|id| self.local.get(id).is_some_and(|r| r.content_hash == hash))
            .cloned()
            .collect();
        match self.cfg.retry.decide(&failure, retries, &mut self.rng) {
            Decision::RetryIn(ms) => {
                self.cleared.insert(hash, (retries + 1, self.now.after(ms)));
                self.report_failure(TransferKind::Upload, files, &failure, Some(ms));
            }
            // Not an offline failure: only the budget ends it.
            Decision::WaitOnline | Decision::GiveUp => {
                self.cleared.remove(&hash);
                self.report_failure(TransferKind::Upload, files, &failure, None);
            }
        }
    }

    /// Reports a failed attempt of `kind` for `files`: another attempt in `retry_in_ms`, or
    /// none (`None`: the files go to `error` with the failure as their last error, and the
    /// transfer is exhausted).
    fn report_failure(
        &mut self,
        kind: TransferKind,
        files: Vec<FileId>,
        failure: &Failure,
        retry_in_ms: Option<u64>,
    ) {
        let (code, message) = (failure.code().to_string(), failure.to_string());
        if retry_in_ms.is_none() {
            let err = SyncError {
                code: code.clone(),
                message: message.clone(),
            };
            for file in &files {
                self.update_local(file, |r| {
                    r.set_status(kind, TransferStatus::Error);
                    r.last_error = Some(err.clone());
                });
            }
        }
        for file in files {
            self.emit_event(Event::TransferError {
                kind,
                file: file.clone(),
                code: code.clone(),
                message: message.clone(),
                retry_in_ms,
            });
            if retry_in_ms.is_none() {
                self.emit_event(Event::TransferExhausted {
                    kind,
                    file,
                    code: code.clone(),
                    message: message.clone(),
                });
            }
        }
    }

    /// Content we uploaded stays our responsibility until a confirmed row points at it; if
    /// nothing references it any more, it is garbage.
    fn check_unattached(&mut self) {
        let mut changed = false;
        for h in self.unattached.clone() {
            let attached = self
                .table
                .view_refs(&h)
                .filter_map(|id| self.table.confirmed(id))
                .any(|r| r.content_hash == h && r.remote_key.is_some());
            if attached || !self.table.is_referenced(&h) {
                self.unattached.remove(&h);
                changed = true;
                if !attached {
                    self.add_garbage(h);
                }
            }
        }
        self.dirty.unattached |= changed;
    }

    fn add_garbage(&mut self, h: ContentHash) {
        let remote = self.cfg.mode == Mode::Remote;
        // Only the server's view matters: content referenced by a pending event alone may be
        // deleted, because the upload for that event happens after the server confirms it.
        let in_use = self.table.is_confirmed_referenced(&h);
        if remote && !in_use && !self.garbage.contains_key(&h) {
            // Wait out the grace period: an aborted upload of this content may still land.
            let at = self.now.after(self.cfg.delete_grace_ms);
            self.garbage.insert(h, GcState::Waiting(at, 0));
            self.dirty.garbage = true;
        }
    }

    // ----- connectivity -----------------------------------------------------------------------

    fn set_online(&mut self) {
        if !self.online {
            self.online = true;
            self.health_failures = 0;
            self.timers.set(Timer::Health, None);
            self.pull_wanted = true;
            self.emit_event(Event::Online);
        }
    }

    fn set_offline(&mut self) {
        if self.online && self.cfg.mode == Mode::Remote {
            self.online = false;
            self.emit_event(Event::Offline);
            self.schedule_health();
        }
    }

    fn schedule_health(&mut self) {
        let exp = self
            .cfg
            .reconnect_base_ms
            .saturating_mul(1 << self.health_failures.min(16))
            .min(self.cfg.max_reconnect_ms);
        let delay = exp / 2 + self.rng.below(exp / 2 + 1);
        self.timers.set(Timer::Health, Some(self.now.after(delay)));
    }

    // ----- leadership -------------------------------------------------------------------------

    fn check_term(&self, term: Term) -> Result<(), EngineError> {
        if term != self.term || !self.leader {
            return Err(EngineError::StaleTerm {
                got: term,
                current: self.term,
            });
        }
        Ok(())
    }

    fn on_leader_elected(&mut self, term: Term) -> Result<(), EngineError> {
        if term <= self.term {
            return Err(EngineError::StaleTerm {
                got: term,
                current: self.term,
            });
        }
        self.stop_running(false);
        self.term = term;
        // The previous leader may have died between storing bytes and reporting them.
        self.emit_command(Command::ListLocalBytes);
        self.leader = true;
        // Recovery: whatever the previous leader left running or failed is queued again
        // (livestore-filesync left `queued` rows stranded until someone called triggerSync).
        let mut requeued = Vec::new();
        let ids: Vec<FileId> = self
            .local
            .rows()
            .filter(|r| {
                KINDS.iter().any(|k| {
                    matches!(
                        r.status(*k),
                        TransferStatus::InProgress | TransferStatus::Error
                    )
                })
            })
            .map(|r| r.file_id.clone())
            .collect();
        for id in ids {
            self.update_local(&id, |r| {
                for k in KINDS {
                    if matches!(
                        r.status(k),
                        TransferStatus::InProgress | TransferStatus::Error
                    ) {
                        r.set_status(k, TransferStatus::Queued);
                    }
                }
                r.last_error = None;
            });
            self.touched.insert(id.clone());
            requeued.push(id);
        }
        if !requeued.is_empty() {
            self.emit_event(Event::Recovery { requeued });
        }
        Ok(())
    }

    /// Aborts every running transfer and delete; they go back to the queue.
    fn stop_running(&mut self, abort: bool) {
        for (task, (kind, hash)) in std::mem::take(&mut self.running) {
            if abort {
                self.emit_command(Command::AbortTransfer { task });
            }
            self.set_ready(kind, hash);
            self.set_rows_status(
                kind,
                hash,
                TransferStatus::InProgress,
                TransferStatus::Queued,
            );
        }
        for st in self.garbage.values_mut() {
            if let GcState::Running(_, n) = *st {
                *st = GcState::Waiting(self.now, n);
            }
        }
    }

    // ----- transfers --------------------------------------------------------------------------

    /// Files of the view with this content whose status of `kind` is `status`.
    fn rows_with(
        &self,
        kind: TransferKind,
        hash: ContentHash,
        status: TransferStatus,
    ) -> Vec<FileId> {
        self.table
            .view_refs(&hash)
            .filter(|id| {
                self.local
                    .get(id)
                    .is_some_and(|r| r.content_hash == hash && r.status(kind) == status)
            })
            .cloned()
            .collect()
    }

    fn set_rows_status(
        &mut self,
        kind: TransferKind,
        hash: ContentHash,
        from: TransferStatus,
        to: TransferStatus,
    ) -> Vec<FileId> {
        let ids = self.rows_with(kind, hash, from);
        for id in &ids {
            self.update_local(id, |r| r.set_status(kind, to));
        }
        ids
    }

    fn wanted(&self, kind: TransferKind, hash: ContentHash) -> bool {
        self.table.view_refs(&hash).any(|id| {
            self.local
                .get(id)
                .is_some_and(|r| r.content_hash == hash && r.status(kind).is_active())
        })
    }

    fn eligible(&self, kind: TransferKind, hash: ContentHash) -> bool {
        match kind {
            // Upload only for a file the server has confirmed with this content: then the
            // server knows the content is referenced before any byte arrives, and refuses a
            // concurrent delete of it. The bytes must be here, of course.
            TransferKind::Upload => {
                self.bytes.contains(&hash)
                    && self.table.view_refs(&hash).any(|id| {
                        self.table
                            .confirmed(id)
                            .is_some_and(|r| r.is_live() && r.content_hash == hash)
                            && self.local.get(id).is_some_and(|l| l.upload.is_active())
                    })
            }
            TransferKind::Download => true,
        }
    }

    /// Makes the task of `(kind, hash)` match what the rows want.
    fn sync_task(&mut self, kind: TransferKind, hash: ContentHash) {
        let wanted = self.cfg.mode == Mode::Remote && self.wanted(kind, hash);
        match (wanted, self.tasks.get(&(kind, hash)).map(|t| t.state)) {
            (true, None) => {
                self.next_order += 1;
                // An upload whose attach the server cleared waits out its backoff first.
                let cleared = match kind {
                    TransferKind::Upload => self.cleared.get(&hash).copied(),
                    TransferKind::Download => None,
                };
                let (retries, until) = cleared.unwrap_or((0, self.now));
                self.tasks.insert(
                    (kind, hash),
                    Task {
                        retries,
                        urgent: false,
                        order: self.next_order,
                        state: if until > self.now {
                            TaskState::Backoff(until)
                        } else {
                            TaskState::Blocked
                        },
                        throttle: Throttle::default(),
                    },
                );
                if until <= self.now && self.eligible(kind, hash) {
                    self.set_ready(kind, hash);
                }
            }
            (true, Some(TaskState::Blocked)) if self.eligible(kind, hash) => {
                self.set_ready(kind, hash);
            }
            (false, Some(state)) => {
                if let TaskState::Running { id, .. } = state {
                    self.running.remove(&id);
                    self.emit_command(Command::AbortTransfer { task: id });
                }
                self.remove_task(kind, hash);
            }
            _ => {}
        }
    }

    fn ready_key(
        kind: TransferKind,
        hash: ContentHash,
        t: &Task,
    ) -> (TransferKind, bool, u64, ContentHash) {
        (kind, !t.urgent, t.order, hash)
    }

    fn set_ready(&mut self, kind: TransferKind, hash: ContentHash) {
        if let Some(t) = self.tasks.get_mut(&(kind, hash)) {
            t.state = TaskState::Ready;
            t.throttle = Throttle::default();
            self.ready.insert(Self::ready_key(kind, hash, t));
        }
    }

    fn remove_task(&mut self, kind: TransferKind, hash: ContentHash) -> Option<Task> {
        let t = self.tasks.remove(&(kind, hash))?;
        self.ready.remove(&Self::ready_key(kind, hash, &t));
        Some(t)
    }

    fn can_run(&self) -> bool {
        self.cfg.mode == Mode::Remote && self.leader && self.online && !self.paused
    }

    fn start_transfers(&mut self) {
        if !self.can_run() {
            return;
        }
        for kind in KINDS {
            let limit = match kind {
                TransferKind::Upload => self.cfg.max_uploads,
                TransferKind::Download => self.cfg.max_downloads,
            };
            while self.running.values().filter(|(k, _)| *k == kind).count() < limit {
                let Some(key) = self
                    .ready
                    .range((kind, false, 0, ContentHash::from_bytes([0; 32]))..)
                    .next()
                    .copied()
                else {
                    break;
                };
                if key.0 != kind {
                    break;
                }
                self.ready.remove(&key);
                self.start_transfer(kind, key.3);
            }
        }
    }

    fn start_transfer(&mut self, kind: TransferKind, hash: ContentHash) {
        let Some(info) = self
            .table
            .view_refs(&hash)
            .find_map(|id| self.table.get(id))
            .map(|r| r.info.clone())
        else {
            self.remove_task(kind, hash);
            return;
        };
        let task = TaskId(self.next_task);
        self.next_task += 1;
        if let Some(t) = self.tasks.get_mut(&(kind, hash)) {
            t.state = TaskState::Running {
                id: task,
                last_activity: self.now,
            };
        }
        self.running.insert(task, (kind, hash));
        if kind == TransferKind::Upload && self.unattached.insert(hash) {
            // From now on the bytes may land remotely, even if this attempt is aborted or its
            // leader dies: remember them until a confirmed row points at them.
            self.dirty.unattached = true;
        }
        for file in self.set_rows_status(
            kind,
            hash,
            TransferStatus::Queued,
            TransferStatus::InProgress,
        ) {
            self.emit_event(Event::TransferStart { kind, file });
        }
        self.emit_command(Command::StartTransfer(TransferOrder {
            task,
            term: self.term,
            kind,
            hash,
            key: RemoteKey::for_content(&self.cfg.store, &hash),
            size: info.size,
            mime_type: info.mime_type,
        }));
    }

    fn take_running(&mut self, task: TaskId) -> Result<(TransferKind, ContentHash), EngineError> {
        self.running.remove(&task).ok_or(EngineError::UnknownTask)
    }

    fn on_progress(
        &mut self,
        task: TaskId,
        term: Term,
        loaded: u64,
        total: u64,
    ) -> Result<(), EngineError> {
        self.check_term(term)?;
        let &(kind, hash) = self.running.get(&task).ok_or(EngineError::UnknownTask)?;
        let (now, interval) = (self.now, self.cfg.progress_interval_ms);
        let Some(t) = self.tasks.get_mut(&(kind, hash)) else {
            return Err(EngineError::UnknownTask);
        };
        if let TaskState::Running { last_activity, .. } = &mut t.state {
            *last_activity = now;
        }
        if loaded > t.throttle.loaded() {
            // Bytes got through: the retry budget starts over (as tus does).
            t.retries = 0;
        }
        if let Some((loaded, total)) = t.throttle.offer(now, interval, loaded, total) {
            self.emit_progress(kind, hash, loaded, total);
        }
        Ok(())
    }

    fn emit_progress(&mut self, kind: TransferKind, hash: ContentHash, loaded: u64, total: u64) {
        for file in self.rows_with(kind, hash, TransferStatus::InProgress) {
            self.emit_event(Event::TransferProgress {
                kind,
                file,
                loaded,
                total,
            });
        }
    }

    fn flush_progress(&mut self) {
        let (now, interval) = (self.now, self.cfg.progress_interval_ms);
        let mut due = Vec::new();
        for ((kind, hash), t) in self.tasks.iter_mut() {
            if let Some((l, tot)) = t.throttle.flush(now, interval) {
                due.push((*kind, *hash, l, tot));
            }
        }
        for (kind, hash, l, tot) in due {
            self.emit_progress(kind, hash, l, tot);
        }
    }

    fn check_stalls(&mut self) {
        let limit = self.cfg.stall_timeout_ms;
        let stalled: Vec<TaskId> = self
            .tasks
            .values()
            .filter_map(|t| match t.state {
                TaskState::Running { id, last_activity }
                    if self.now.since(last_activity) >= limit =>
                {
                    Some(id)
                }
                _ => None,
            })
            .collect();
        for task in stalled {
            if let Some((kind, hash)) = self.running.remove(&task) {
                self.emit_command(Command::AbortTransfer { task });
                self.on_transfer_failed(kind, hash, Failure::Timeout);
            }
        }
    }

    fn on_transfer_done(
        &mut self,
        task: TaskId,
        term: Term,
        downloaded: Option<ContentHash>,
    ) -> Result<(), EngineError> {
        self.check_term(term)?;
        let (kind, hash) = self.take_running(task)?;
        self.sync_ok();
        if kind == TransferKind::Download && downloaded != Some(hash) {
            // The bytes are not what the file says: they do not count as present.
            let actual = downloaded.map_or_else(|| "nothing".to_string(), |h| h.to_hex());
            self.on_transfer_failed(kind, hash, Failure::Integrity { actual });
            return Ok(());
        }
        let total = self
            .table
            .view_refs(&hash)
            .find_map(|id| self.table.get(id))
            .map_or(0, |r| r.info.size);
        let held = self
            .tasks
            .get(&(kind, hash))
            .is_some_and(|t| t.throttle.loaded() < total || total == 0);
        if held {
            self.emit_progress(kind, hash, total, total);
        }
        self.remove_task(kind, hash);
        let files =
            self.set_rows_status(kind, hash, TransferStatus::InProgress, TransferStatus::Done);
        match kind {
            TransferKind::Upload => self.attach_upload(hash),
            TransferKind::Download => {
                self.note_stored(Some(hash));
                let ids: Vec<FileId> = self.table.view_refs(&hash).cloned().collect();
                for id in ids {
                    let row = self.table.get(&id).cloned();
                    if let Some(row) = row {
                        let fresh = reconcile(&row, self.local.get(&id), true);
                        self.put_local(fresh);
                    }
                }
            }
        }
        for file in files {
            self.emit_event(Event::TransferComplete { kind, file });
        }
        Ok(())
    }

    /// Writes the remote key onto every live file that still has the uploaded content, as
    /// conditional updates (see [`FileUpdated`]); a file edited meanwhile is left alone.
    fn attach_upload(&mut self, hash: ContentHash) {
        let key = RemoteKey::for_content(&self.cfg.store, &hash);
        // Only files the server already knows with this content: the server refused deletes
        // of the content for them while the bytes travelled. A file whose change to this
        // content is still pending uploads again once confirmed (reconciled below).
        let ids: Vec<FileId> = self.table.view_refs(&hash).cloned().collect();
        self.touched.extend(ids.iter().cloned());
        let rows: Vec<FileRow> = ids
            .iter()
            .filter_map(|id| self.table.get(id))
            .filter(|r| r.remote_key.is_none())
            .filter(|r| {
                self.table
                    .confirmed(&r.id)
                    .is_some_and(|c| c.is_live() && c.content_hash == hash)
            })
            .cloned()
            .collect();
        if rows.is_empty() {
            self.check_unattached();
            return;
        }
        for row in rows {
            let ev = FileEvent::Updated(FileUpdated {
                id: row.id.clone(),
                path: row.path.clone(),
                remote_key: Some(key.clone()),
                content_hash: hash,
                info: row.info.clone(),
                metadata: MetadataPatch::Keep,
                updated_at: row.updated_at,
                expected_content_hash: Some(hash),
                previous_content_hash: None,
            });
            // Cannot fail: the row is live in the view.
            let _ = self.commit(ev, false);
        }
    }

    fn on_transfer_failed(&mut self, kind: TransferKind, hash: ContentHash, failure: Failure) {
        let Some(task) = self.tasks.get(&(kind, hash)) else {
            return;
        };
        let retries = task.retries;
        let files = self.rows_with(kind, hash, TransferStatus::InProgress);
        let decision = self.cfg.retry.decide(&failure, retries, &mut self.rng);
        match decision {
            Decision::WaitOnline => {
                self.set_offline();
                self.set_ready(kind, hash);
                self.set_rows_status(
                    kind,
                    hash,
                    TransferStatus::InProgress,
                    TransferStatus::Queued,
                );
            }
            Decision::RetryIn(ms) => {
                let until = self.now.after(ms);
                if let Some(t) = self.tasks.get_mut(&(kind, hash)) {
                    t.retries += 1;
                    t.state = TaskState::Backoff(until);
                }
                self.set_rows_status(
                    kind,
                    hash,
                    TransferStatus::InProgress,
                    TransferStatus::Queued,
                );
                self.report_failure(kind, files, &failure, Some(ms));
            }
            Decision::GiveUp => {
                self.remove_task(kind, hash);
                self.report_failure(kind, files, &failure, None);
            }
        }
    }

    /// Moves tasks whose retry delay ended (or all waiting ones, with `all`) back to the queue.
    fn end_backoffs(&mut self, all: bool) {
        let now = self.now;
        let due: Vec<(TransferKind, ContentHash)> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, TaskState::Backoff(until) if all || until <= now))
            .map(|(k, _)| *k)
            .collect();
        for (kind, hash) in due {
            self.set_ready(kind, hash);
        }
        if all {
            for st in self.garbage.values_mut() {
                if let GcState::Waiting(until, n) = *st {
                    *st = GcState::Waiting(until.min(now), n);
                }
            }
        }
    }

    /// What storage really holds wins over what the rows say: a crash between deleting bytes
    /// and persisting the rows that dropped them leaves rows claiming missing bytes (they are
    /// downloaded again), and a crash between storing bytes and committing leaves orphans
    /// (they are deleted, or used if a file has that content).
    fn take_inventory(&mut self, hashes: Vec<ContentHash>) {
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
    fn note_stored(&mut self, hashes: impl IntoIterator<Item = ContentHash>) {
        for h in hashes {
            self.bytes.insert(h);
            if let Some((stored, deleted)) = &mut self.journal {
                stored.insert(h);
                deleted.remove(&h);
            }
        }
    }

    /// Emits the delete of local content.
    fn delete_local_bytes(&mut self, h: ContentHash) {
        self.bytes.remove(&h);
        if let Some((stored, deleted)) = &mut self.journal {
            stored.remove(&h);
            deleted.insert(h);
        }
        self.emit_command(Command::DeleteLocalBytes { hash: h });
    }

    /// Deletes the orphans that stayed unused through the grace period.
    fn expire_orphans(&mut self) {
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

    fn prioritize(&mut self, file: &FileId) -> Result<(), EngineError> {
        let row = self
            .local
            .get(file)
            .ok_or_else(|| EngineError::NotFound { id: file.clone() })?;
        let hash = row.content_hash;
        for kind in KINDS {
            let Some(t) = self.tasks.get(&(kind, hash)) else {
                continue;
            };
            let was_ready = self.ready.remove(&Self::ready_key(kind, hash, t));
            let Some(t) = self.tasks.get_mut(&(kind, hash)) else {
                continue;
            };
            t.urgent = true;
            if matches!(t.state, TaskState::Backoff(_)) || was_ready {
                self.set_ready(kind, hash);
            }
        }
        Ok(())
    }

    fn cancel(&mut self, file: &FileId) -> Result<(), EngineError> {
        if self.local.get(file).is_none() {
            return Err(EngineError::NotFound { id: file.clone() });
        }
        let err = SyncError {
            code: Failure::Cancelled.code().into(),
            message: Failure::Cancelled.to_string(),
        };
        let mut hash = None;
        let mut stopped = Vec::new();
        self.update_local(file, |r| {
            for k in KINDS {
                if r.status(k).is_active() {
                    r.set_status(k, TransferStatus::Error);
                    r.last_error = Some(err.clone());
                    stopped.push(k);
                }
            }
            hash = Some(r.content_hash);
        });
        if let Some(h) = hash {
            self.touched_hashes.insert(h);
        }
        // The app hears of it like any failed transfer, with no retry scheduled.
        for kind in stopped {
            self.emit_event(Event::TransferError {
                kind,
                file: file.clone(),
                code: err.code.clone(),
                message: err.message.clone(),
                retry_in_ms: None,
            });
        }
        Ok(())
    }

    fn retry_errors(&mut self) {
        self.cleared.clear();
        let ids: Vec<FileId> = self
            .local
            .rows()
            .filter(|r| r.upload == TransferStatus::Error || r.download == TransferStatus::Error)
            .map(|r| r.file_id.clone())
            .collect();
        for id in &ids {
            self.update_local(id, |r| {
                for k in KINDS {
                    if r.status(k) == TransferStatus::Error {
                        r.set_status(k, TransferStatus::Queued);
                    }
                }
                r.last_error = None;
            });
            // Statuses re-derive from the row: a cancelled upload of content already uploaded
            // elsewhere becomes done.
            self.touched.insert(id.clone());
        }
        if !ids.is_empty() {
            self.emit_event(Event::ErrorRetryStart { files: ids });
        }
    }

    // ----- remote deletes ---------------------------------------------------------------------

    fn start_deletes(&mut self) {
        // Content referenced again (the same bytes saved anew) is not garbage any more.
        let revived: Vec<ContentHash> = self
            .garbage
            .iter()
            .filter(|(h, st)| {
                !matches!(st, GcState::Running(..)) && self.table.is_confirmed_referenced(h)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in revived {
            self.garbage.remove(&h);
            self.dirty.garbage = true;
        }
        if !self.can_run() {
            return;
        }
        let running = self
            .garbage
            .values()
            .filter(|s| matches!(s, GcState::Running(..)))
            .count();
        let due: Vec<(ContentHash, u32)> = self
            .garbage
            .iter()
            .filter_map(|(h, s)| match *s {
                GcState::Waiting(until, n) if until <= self.now => Some((*h, n)),
                _ => None,
            })
            .take(self.cfg.max_deletes.saturating_sub(running))
            .collect();
        for (h, n) in due {
            let task = TaskId(self.next_task);
            self.next_task += 1;
            self.garbage.insert(h, GcState::Running(task, n));
            self.emit_command(Command::DeleteRemote {
                task,
                term: self.term,
                key: RemoteKey::for_content(&self.cfg.store, &h),
            });
        }
    }

    fn on_remote_delete_done(
        &mut self,
        task: TaskId,
        term: Term,
        result: Result<(), Failure>,
    ) -> Result<(), EngineError> {
        self.check_term(term)?;
        let (hash, retries) = self
            .garbage
            .iter()
            .find_map(|(h, s)| match s {
                GcState::Running(t, n) if *t == task => Some((*h, *n)),
                _ => None,
            })
            .ok_or(EngineError::UnknownTask)?;
        let decision = match &result {
            Ok(()) | Err(Failure::NotFound) => None,
            // The server refuses because a file references the content. If we know of that
            // file, it is someone else's to delete later; if we do not, the reference may be
            // gone by the time we catch up: ask again after the grace period.
            Err(Failure::Rejected { status: 409 }) => {
                if self.table.is_confirmed_referenced(&hash)
                    || retries >= self.cfg.retry.max_retries
                {
                    None
                } else {
                    Some((
                        Decision::RetryIn(self.cfg.delete_grace_ms),
                        Failure::Rejected { status: 409 },
                    ))
                }
            }
            Err(f) => Some((self.cfg.retry.decide(f, retries, &mut self.rng), f.clone())),
        };
        match decision {
            None => {
                self.garbage.remove(&hash);
                self.dirty.garbage = true;
            }
            Some((Decision::RetryIn(ms), _)) => {
                self.garbage
                    .insert(hash, GcState::Waiting(self.now.after(ms), retries + 1));
            }
            Some((Decision::WaitOnline, _)) => {
                self.garbage
                    .insert(hash, GcState::Waiting(self.now, retries));
                self.set_offline();
            }
            Some((Decision::GiveUp, f)) => {
                self.garbage.remove(&hash);
                self.dirty.garbage = true;
                self.emit_event(Event::SyncError {
                    code: f.code().into(),
                    message: format!("could not delete remote content {hash}: {f}"),
                    context: "delete",
                });
            }
        }
        Ok(())
    }

    // ----- the end of every step --------------------------------------------------------------

    fn for_mode(&self, mut row: LocalRow) -> LocalRow {
        if self.cfg.mode == Mode::LocalOnly && row.upload == TransferStatus::Queued {
            // Nothing is ever uploaded in local-only mode: stored bytes are all there is to do.
            row.upload = TransferStatus::Done;
        }
        row
    }

    fn put_local(&mut self, row: LocalRow) {
        let row = self.for_mode(row);
        let id = row.file_id.clone();
        let hash = row.content_hash;
        if self.local.get(&id) == Some(&row) {
            return;
        }
        if let Some(old) = self.local.put(row) {
            // Both the old copy and the old content may have lost their last user.
            self.gc_local.extend(old.local_hash);
            self.gc_local.insert(old.content_hash);
            self.touched_hashes.insert(old.content_hash);
        }
        self.touched_hashes.insert(hash);
        self.dirty.local.insert(id.clone());
        self.changed.insert(id);
    }

    fn update_local(&mut self, id: &FileId, f: impl FnOnce(&mut LocalRow)) {
        if let Some(mut row) = self.local.get(id).cloned() {
            f(&mut row);
            self.put_local(row);
        }
    }

    fn reconcile_touched(&mut self) {
        while let Some(id) = self.touched.pop_first() {
            match self.table.get(&id).filter(|r| r.is_live()).cloned() {
                Some(row) => {
                    let here = self.bytes.contains(&row.content_hash);
                    let fresh = reconcile(&row, self.local.get(&id), here);
                    self.put_local(fresh);
                }
                None => {
                    if let Some(old) = self.local.remove(&id) {
                        self.gc_local.extend(old.local_hash);
                        self.gc_local.insert(old.content_hash);
                        self.touched_hashes.insert(old.content_hash);
                        self.dirty.local.insert(id.clone());
                    }
                }
            }
            self.changed.insert(id);
        }
    }

    fn is_unused_locally(&self, h: &ContentHash) -> bool {
        !self.local.holds(h)
            && self.table.view_refs(h).next().is_none()
            && !self.retained.contains_key(h)
    }

    fn collect_local_garbage(&mut self) {
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
    fn delete_local(&mut self, hashes: Vec<ContentHash>) {
        for h in hashes {
            if self.is_unused_locally(&h) && self.bytes.contains(&h) {
                self.delete_local_bytes(h);
            }
        }
    }

    fn update_timers(&mut self) {
        let interval = self.cfg.progress_interval_ms;
        let mut progress = None::<Millis>;
        let mut retry = None::<Millis>;
        let mut stall = None::<Millis>;
        for t in self.tasks.values() {
            match t.state {
                TaskState::Backoff(until) => retry = Some(retry.map_or(until, |r| r.min(until))),
                TaskState::Running { last_activity, .. } => {
                    let s = last_activity.after(self.cfg.stall_timeout_ms);
                    stall = Some(stall.map_or(s, |x| x.min(s)));
                    if let Some(d) = t.throttle.deadline(interval) {
                        progress = Some(progress.map_or(d, |p| p.min(d)));
                    }
                }
                _ => {}
            }
        }
        for st in self.garbage.values() {
            // Due entries need no timer: they start as soon as a leader can run them.
            if let GcState::Waiting(until, _) = *st {
                if until > self.now {
                    retry = Some(retry.map_or(until, |r| r.min(until)));
                }
            }
        }
        let orphans = self
            .orphans
            .values()
            .map(|t| t.after(self.cfg.orphan_grace_ms))
            .chain(self.retained.values().copied())
            .min();
        self.timers.set(Timer::Orphans, orphans);
        self.timers.set(Timer::Progress, progress);
        self.timers.set(Timer::Retry, retry);
        self.timers.set(Timer::Stall, stall);
    }

    fn after_step(&mut self) {
        // Reconciling can touch more files and hashes; iterate until nothing moves.
        loop {
            self.reconcile_touched();
            if self.touched_hashes.is_empty() {
                break;
            }
            // In hash order: tasks are numbered in the order they are created.
            let mut hashes: Vec<ContentHash> = self.touched_hashes.drain().collect();
            hashes.sort_unstable();
            for hash in hashes {
                for kind in KINDS {
                    self.sync_task(kind, hash);
                }
            }
        }
        self.collect_local_garbage();
        self.start_transfers();
        self.start_deletes();
        self.maybe_sync();
        if self
            .timers
            .get(Timer::Persist)
            .is_some_and(|t| t <= self.now)
        {
            self.timers.set(Timer::Persist, None);
        }
        self.flush_persist();
        // Deletes wait for the batch holding the change that made them garbage: the next one
        // if something is still dirty, the one being written otherwise; with neither, the
        // state on disk already has no use for the bytes.
        if !self.unbatched_gc.is_empty() && self.dirty.is_empty() {
            let gc = std::mem::take(&mut self.unbatched_gc);
            match self.batch_in_flight.as_mut() {
                Some(f) => f.gc.extend(gc),
                None => self.delete_local(gc),
            }
        }
        let busy = !self.tasks.is_empty()
            || !self.garbage.is_empty()
            || (self.cfg.mode == Mode::Remote && !self.table.pending().is_empty());
        if busy != self.busy {
            self.busy = busy;
            self.emit_event(if busy {
                Event::SyncStart
            } else {
                Event::SyncComplete
            });
        }
        // The unconfirmed count is part of what apps see (the status): a change of it alone
        // is a change too (a confirmed delete has no file left to show it).
        let unconfirmed = self.unconfirmed_events();
        if !self.changed.is_empty() || unconfirmed != self.reported_unconfirmed {
            self.reported_unconfirmed = unconfirmed;
            let files = std::mem::take(&mut self.changed).into_iter().collect();
            self.out
                .push_back(Output::Event(Event::FilesChanged { files }));
        }
        self.update_timers();
    }

    fn emit_command(&mut self, c: Command) {
        self.out.push_back(Output::Command(c));
    }

    fn emit_event(&mut self, e: Event) {
        if !matches!(e, Event::TransferProgress { .. }) {
            self.history.push(self.now, &e);
        }
        self.out.push_back(Output::Event(e));
    }
}

#[cfg(test)]
mod tests;
