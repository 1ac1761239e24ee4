//! The engine: one per browser profile and store, living in the hub (see `docs/ARCHITECTURE.md`).
//!
//! It owns the files table, the per-client rows and the transfer scheduler, and decides
//! everything; the driver performs what it asks and reports back. All inputs that come from a
//! leader carry its [`Term`]; anything from an older term is refused, so a stale leader cannot
//! overwrite its successor's state.
//!
//! See the module docs of [`crate::core`] for the driving contract.
//!
//! ## Where each sub-state lives
//!
//! Each module owns the methods of one sub-state and keeps its part of the invariants, which
//! debug builds check after every step (`invariants.rs`). Each sub-state's fields are a struct
//! of its module (`persist::Persistence`, `sync::SyncState`, `transfers::Scheduler`,
//! `deletes::RemoteGc`, `local_bytes::LocalBytes`, `leadership::LeaderState`); [`Engine`] holds
//! them with what every step shares (the files table, the per-client rows, the step's scratch):
//!
//! | module | sub-state | keeps |
//! |---|---|---|
//! | `contract` | the driver's types: config, snapshot, inputs, commands, events | — |
//! | `persist` | dirty keys, the batch in flight, acks and deletes waiting for it | a write is acknowledged only once durable; bytes go only after the rows that dropped them are durable; only durable events are pushed |
//! | `sync` | the cursor, early events, the push and pull in flight, connectivity | confirmed events apply in sequence order, each once; this client's events are numbered in order |
//! | `transfers` | tasks (one per content and direction), the ready queue, running transfers, retries, multipart uploads under way | a running transfer is a running task and back; the queue holds ready tasks only; a multipart upload under way has its upload task, and is aborted on the server when the task goes unfinished |
//! | `deletes` | garbage: content to delete remotely | content is deleted remotely only when nothing references it |
//! | `local_bytes` | bytes held, orphans, content retained after a conflict, the inventory journal, contents in use, the byte budget | a local copy is bytes the store holds; bytes that exist nowhere else are never deleted; eviction takes only content on the server, unpinned, unused |
//! | `leadership` | the term and whether a leader runs | reports of an older term are refused |
//! | `step` | the end of every step: reconciling, garbage, starting work, timers | every per-client row follows a live file of the view |
//!
//! ## Commands and the inputs they expect back
//!
//! | command | input back |
//! |---|---|
//! | `Persist(batch)` | `Persisted { batch }` or `PersistFailed { batch }` |
//! | `Push { request }` | `Pushed { request }` or `SyncFailed { request }` |
//! | `Pull { request }` | `Pulled { request }` or `SyncFailed { request }` |
//! | `CheckHealth` | `Health { ok }` |
//! | `StartTransfer(order)` | `TransferProgress`* (multipart uploads: some with a resume text), then `TransferDone` or `TransferFailed`, with the order's task and term |
//! | `AbortTransfer { task }` | nothing (a late report of the task is refused) |
//! | `DeleteRemote { task }` | `RemoteDeleteDone { task }` |
//! | `ListLocalBytes` | `LocalBytesFound { hashes }` (what is there: unknown ones become orphans) |
//! | `DeleteLocalBytes { hash }` | nothing (best effort: a leftover is found by the next inventory) |
//! | `AbortUpload { key, resume }` | nothing (best effort: the server aborts uploads left too long) |
//!
//! Inputs nothing asked for: `Commit` (an app write), `Live` / `LiveConnected`, `NetworkHint`,
//! `LeaderElected` / `LeaderLost`, `InventoryStarted` then `LocalInventory` (the driver's listing
//! at start), `StorageLost`, and the app's controls.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::collections::{sort, FxMap, FxSet};
use super::error::{EngineError, Failure};
use super::event::{ClientEvent, ConfirmedEvent, FileEvent, FileUpdated, MetadataPatch};
use super::history::History;
use super::ids::{ClientId, ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId, Term};
use super::local::{
    reconcile, Downloads, LocalRow, LocalState, SyncError, TransferKind, TransferStatus,
};
use super::progress::Throttle;
use super::retry::{Decision, RetryPolicy, Rng};
use super::status::{DisplayState, SyncStatus};
use super::table::{FileRow, FilesTable};
use super::timer::{Timer, Timers};

mod contract;
mod deletes;
#[cfg(debug_assertions)]
mod invariants;
mod leadership;
mod local_bytes;
mod persist;
mod step;
mod sync;
mod transfers;

pub use contract::*;
pub use local_bytes::StorageUse;
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
    uploads: bool,
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
            && !self.uploads
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
    /// Remote deletes (see `deletes.rs`).
    gc: deletes::RemoteGc,

    /// Persistence batches (see `persist.rs`).
    persist: persist::Persistence,
    /// Event sync with the server and connectivity (see `sync.rs`).
    sync: sync::SyncState,

    /// Leadership (see `leadership.rs`).
    lead: leadership::LeaderState,
    /// The transfer scheduler's state (see `transfers.rs`).
    sched: transfers::Scheduler,

    touched: BTreeSet<FileId>,
    touched_hashes: FxSet<ContentHash>,
    /// What local storage holds and what may go (see `local_bytes.rs`).
    held: local_bytes::LocalBytes,
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
        // Rows to mend, in one pass: transfers that were running (their leader is gone) are
        // queued again, and rows stored before sizes were recorded take their file's size.
        let to_mend: Vec<FileId> = local
            .rows()
            .filter(|r| {
                r.upload == TransferStatus::InProgress
                    || r.download == TransferStatus::InProgress
                    || (r.has_local_copy() && r.local_size == 0)
            })
            .map(|r| r.file_id.clone())
            .collect();
        let mut mended = Vec::new();
        for id in to_mend {
            let size = table.get(&id).map_or(0, |f| f.info.size);
            let changed = local.update(&id, |r| {
                for k in KINDS {
                    if r.status(k) == TransferStatus::InProgress {
                        r.set_status(k, TransferStatus::Queued);
                    }
                }
                if r.has_local_copy() {
                    r.local_size = size;
                }
            });
            if changed {
                mended.push(id);
            }
        }
        let bootstrap = local.is_empty();
        let mut e = Engine {
            rng: Rng::new(cfg.seed),
            history: History::new(cfg.history_capacity),
            now,
            next_event_n: snapshot.next_event_n,
            durable_event_n: snapshot.next_event_n,
            unattached: snapshot.unattached.into_iter().collect(),
            gc: deletes::RemoteGc {
                garbage: snapshot
                    .garbage
                    .into_iter()
                    .map(|h| (h, GcState::Waiting(now.after(cfg.delete_grace_ms), 0)))
                    .collect(),
                again: FxSet::default(),
            },
            persist: persist::Persistence::default(),
            sync: sync::SyncState::new(cfg.mode == Mode::Remote),
            lead: leadership::LeaderState::default(),
            sched: transfers::Scheduler {
                uploads: transfers::Uploads::restore(snapshot.uploads),
                ..transfers::Scheduler::default()
            },
            touched: BTreeSet::new(),
            touched_hashes: FxSet::default(),
            held: local_bytes::LocalBytes::default(),
            changed: BTreeSet::new(),
            reported_unconfirmed: 0,
            busy: false,
            out: VecDeque::new(),
            timers: Timers::default(),
            cfg,
            table,
            local,
        };
        e.persist.dirty.local.extend(mended);
        e.held.bytes = e.local.rows().filter_map(|r| r.local_hash).collect();
        e.held.budget_dirty = true;
        if bootstrap {
            e.bootstrap();
        }
        e.rebuild_tasks();
        e.prune_uploads();
        if e.cfg.pull_interval_ms > 0 && e.cfg.mode == Mode::Remote {
            e.timers
                .set(Timer::PullInterval, Some(now.after(e.cfg.pull_interval_ms)));
        }
        e.after_step();
        e
    }

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
                    if !self.sync.online {
                        self.emit_command(Command::CheckHealth);
                    }
                }
                Timer::Sync => self.sync.pull_wanted = true,
                Timer::PullInterval => {
                    self.sync.pull_wanted = true;
                    self.timers.set(
                        Timer::PullInterval,
                        Some(self.now.after(self.cfg.pull_interval_ms)),
                    );
                }
                Timer::Retry => self.end_backoffs(false),
                Timer::Progress => self.flush_progress(),
                Timer::Stall => self.check_stalls(),
                Timer::Orphans => self.expire_orphans(),
                Timer::Budget => self.held.budget_dirty = true,
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
        let moved = |kind| {
            local
                .filter(|l| l.status(kind) == TransferStatus::InProgress)
                .and_then(|l| self.sched.tasks.get(&(kind, l.content_hash)))
                .map_or(0, |t| t.throttle.loaded())
        };
        FileView {
            row,
            local,
            display: DisplayState::derive(row, local, confirmed),
            uploaded_bytes: moved(TransferKind::Upload),
            downloaded_bytes: moved(TransferKind::Download),
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
        self.lead.term
    }

    /// Whether a leader is running transfers.
    pub fn leader_term(&self) -> Option<Term> {
        self.lead.leader.then_some(self.lead.term)
    }

    /// Whether the server is believed reachable.
    pub fn is_online(&self) -> bool {
        self.sync.online
    }

    /// Whether anything is left to do: unconfirmed events, transfers, remote deletes or
    /// unpersisted state.
    pub fn is_busy(&self) -> bool {
        self.busy || !self.persist.dirty.is_empty() || self.persist.batch_in_flight.is_some()
    }

    /// Everything persisted so far would restore to this (the simulation compares). Lists
    /// are sorted (rows by file id, hashes by value), as a store lists them.
    pub fn snapshot(&self) -> Snapshot {
        let mut unattached: Vec<ContentHash> = self.unattached.iter().copied().collect();
        unattached.sort_unstable();
        let mut garbage: Vec<ContentHash> = self.gc.garbage.keys().copied().collect();
        garbage.sort_unstable();
        let uploads = self.sched.uploads.list();
        Snapshot {
            rows: self.table.confirmed_rows().cloned().collect(),
            cursor: self.table.cursor(),
            pending: self.table.pending().to_vec(),
            local: self.local.rows().cloned().collect(),
            next_event_n: self.next_event_n,
            unattached,
            uploads,
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
            .map(|r| {
                self.for_mode(reconcile(
                    r,
                    None,
                    self.held.bytes.contains(&r.content_hash),
                    self.cfg.downloads,
                ))
            })
            .collect();
        self.persist.dirty.local = rows.iter().map(|r| r.file_id.clone()).collect();
        self.changed = self.persist.dirty.local.clone();
        self.local = LocalState::restore(rows);
    }

    /// Creates the transfer tasks the per-client rows ask for, in one pass.
    fn rebuild_tasks(&mut self) {
        if self.cfg.mode != Mode::Remote {
            return;
        }
        // Kind by kind, in hash order: tasks are numbered in the order they are created. (One
        // sort of hashes, the instance every hash sort shares: see `collections::sort`.)
        for kind in KINDS {
            let mut wanted: Vec<ContentHash> = self
                .local
                .rows()
                .filter(|r| r.status(kind).is_active())
                .map(|r| r.content_hash)
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            self.sched.tasks.reserve(wanted.len());
            for hash in wanted {
                self.sync_task(kind, hash);
            }
        }
    }

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
                    self.held.gc_local.extend(stored);
                    return Err(e);
                }
                self.persist.unbatched_ops.push(op);
            }
            Input::Persisted { batch } => self.on_persisted(batch),
            Input::PersistFailed { batch, failure } => self.on_persist_failed(batch, failure),
            Input::Pushed { request, confirmed } => self.on_pushed(request, confirmed)?,
            Input::Pulled {
                request,
                events,
                has_more,
            } => {
                if self.sync.pull_in_flight != Some(request) {
                    return Err(EngineError::UnknownTask);
                }
                self.sync.pull_in_flight = None;
                self.sync_ok();
                let before = self.table.cursor();
                self.receive(events);
                self.sync.pull_wanted =
                    has_more || (!self.sync.early.is_empty() && self.table.cursor() > before);
                // Ready uploads waiting for a recent view start at the end of this step.
                self.sync.caught_up |= !self.sync.pull_wanted;
            }
            Input::SyncFailed { request, failure } => self.on_sync_failed(request, failure)?,
            Input::Live { events } => self.receive(events),
            Input::LiveConnected => {
                self.sync.pull_wanted = true;
                self.set_online();
            }
            Input::Health { ok } => {
                if ok {
                    self.set_online();
                } else if !self.sync.online {
                    self.sync.health_failures += 1;
                    self.schedule_health();
                }
            }
            Input::NetworkHint { online } => {
                if !online {
                    self.set_offline();
                } else if !self.sync.online {
                    self.timers.set(Timer::Health, Some(self.now));
                }
            }
            Input::LeaderElected { term } => self.on_leader_elected(term)?,
            Input::LeaderLost { term } => {
                self.check_term(term)?;
                self.lead.leader = false;
                self.stop_running(false);
            }
            Input::TransferProgress {
                task,
                term,
                loaded,
                total,
                resume,
            } => self.on_progress(task, term, loaded, total, resume)?,
            Input::TransferDone {
                task,
                term,
                downloaded_hash,
            } => {
                if let Err(e) = self.on_transfer_done(task, term, downloaded_hash) {
                    // Bytes a fenced-off or cancelled download stored are collected if unused.
                    self.note_stored(downloaded_hash);
                    self.held.gc_local.extend(downloaded_hash);
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
                self.held.journal = Some((FxSet::default(), FxSet::default()));
            }
            Input::LocalBytesFound { hashes } => {
                for h in hashes {
                    if !self.held.bytes.contains(&h) {
                        self.held.orphans.entry(h).or_insert(self.now);
                    }
                }
            }
            Input::Prioritize { file } => {
                self.prioritize(&file)?;
                // A read is coming.
                self.accessed(&[file]);
            }
            Input::Pin { file, pinned } => {
                if self.local.get(&file).is_none() {
                    return Err(EngineError::NotFound { id: file });
                }
                self.update_local(&file, |r| r.pinned = pinned);
                // Reconciled again: a pinned lazy file's download is wanted now.
                self.touched.insert(file);
            }
            Input::Accessed { files } => self.accessed(&files),
            Input::Want { files } => {
                for file in files {
                    let wanted = self
                        .local
                        .get(&file)
                        .is_some_and(|r| r.download == TransferStatus::Remote && !r.evicted);
                    if wanted {
                        // Its content is touched: the step's end gives it a task.
                        self.update_local(&file, |r| r.download = TransferStatus::Queued);
                    }
                }
            }
            Input::InUse { hashes } => {
                self.held.in_use = hashes.into_iter().collect();
                self.held.budget_dirty = true;
            }
            Input::Cancel { file } => self.cancel(&file)?,
            Input::RetryErrors => self.retry_errors(),
            Input::SyncNow => {
                self.sync.pull_wanted = true;
                if !self.sync.online {
                    self.timers.set(Timer::Health, Some(self.now));
                }
                self.end_backoffs(true);
            }
            Input::Pause => {
                self.lead.paused = true;
                self.stop_running(true);
            }
            Input::Resume => self.lead.paused = false,
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
        self.persist.dirty.meta = true;
        self.persist.dirty.pending.insert(ev.id.clone());
        self.note_stored(stored);
        if let Some(h) = stored {
            self.held.orphans.remove(&h);
        }
        if let (Some(h), Some(row)) = (stored, self.table.get(&id)) {
            // The driver stored these bytes before committing: record it, and let every file
            // with the same content use them.
            let mut fresh = reconcile(row, self.local.get(&id), true, self.cfg.downloads);
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
}

#[cfg(test)]
mod tests;
