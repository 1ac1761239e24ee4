//! A deterministic world for the engine: several browsers, each with tabs, a hub engine and a
//! disk; one server with an event log and a blob store; a network with latency, duplicates,
//! partitions and outages. Everything runs in virtual time from one seed, so a failing seed
//! replays exactly.
//!
//! The world plays the drivers' part the way the browser runtime does: the hub persists batches
//! (which may fail or be lost in a crash), the leader tab runs transfers, the tab that saves a
//! file stores its bytes before committing, and leadership moves between tabs with a growing
//! term (a frozen leader loses its lease to another tab and is fenced off when it wakes).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use filesync::core::retry::Rng;
use filesync::core::store::{batch_ops, MemoryStore, StateStore};
use filesync::core::{
    ClientEvent, ClientId, Command, Config, ConfirmedEvent, ContentHash, Engine, Event, EventId,
    Failure, FileCreated, FileDeleted, FileEvent, FileId, FileInfo, FileRow, FileUpdated, Input,
    MetadataPatch, Millis, Mode, OpId, Output, PersistBatch, RemoteKey, Seq, Snapshot, StoreId,
    TaskId, Term, TransferKind, TransferOrder, TransferStatus,
};

pub const STORE: &str = "sim";

/// Probabilities and sizes of one run, drawn from the seed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub browsers: usize,
    pub max_tabs: usize,
    pub ops: usize,
    pub chaos_ms: u64,
    pub p_persist_fail: u64,
    pub p_http_fail: u64,
    pub p_corrupt: u64,
    pub p_dup: u64,
}

impl Plan {
    pub fn from_seed(rng: &mut Rng) -> Plan {
        Plan {
            browsers: 2 + rng.below(3) as usize,
            max_tabs: 1 + rng.below(3) as usize,
            ops: 10 + rng.below(70) as usize,
            chaos_ms: 20_000 + rng.below(60_000),
            p_persist_fail: rng.below(8),
            p_http_fail: rng.below(12),
            p_corrupt: rng.below(6),
            p_dup: rng.below(20),
        }
    }
}

#[derive(Debug, Clone)]
enum Msg {
    /// A persist transaction finishes (or fails).
    PersistDone {
        b: usize,
        epoch: u64,
        batch: PersistBatch,
        ok: bool,
    },
    /// A response for the hub engine of browser `b`.
    ToHub { b: usize, epoch: u64, input: Input },
    /// A transfer result from a tab, delivered to its hub unless the tab died or froze.
    FromTab { b: usize, tab: u64, input: Input },
    /// A transfer request reaches the server.
    TransferAtServer {
        b: usize,
        tab: u64,
        order: TransferOrder,
    },
    /// A delete request reaches the server.
    DeleteAtServer {
        b: usize,
        tab: u64,
        task: TaskId,
        term: Term,
        key: RemoteKey,
    },
    /// A push reaches the server.
    PushAtServer {
        b: usize,
        epoch: u64,
        request: filesync::core::RequestId,
        events: Vec<ClientEvent>,
    },
}

/// A browser's storage: the state through the code a browser runs (`batch_ops` into the same
/// records IndexedDB stores, `decode_records` back on load, terms handed out by the store), and
/// the set of contents its byte store holds.
#[derive(Debug, Default)]
struct Disk {
    store: MemoryStore,
    bytes: BTreeSet<ContentHash>,
}

/// The value of a future that is ready at once (the memory store never waits).
fn now_ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the memory store never waits"),
    }
}

impl Disk {
    fn apply(&mut self, b: &PersistBatch) {
        now_ready(self.store.write(&batch_ops(b))).expect("the memory store writes");
    }

    fn snapshot(&self) -> Snapshot {
        let loaded = now_ready(self.store.load()).expect("the memory store loads");
        assert!(
            loaded.corrupt.is_empty(),
            "records the engine wrote do not decode: {:?}",
            loaded.corrupt
        );
        loaded.snapshot
    }

    /// The runtime's term counter, bumped in storage before a tab announces leadership.
    fn next_term(&self) -> Term {
        now_ready(self.store.next_term()).expect("the memory store hands out terms")
    }
}

#[derive(Debug)]
struct Tab {
    id: u64,
    frozen_until: Option<Millis>,
    /// Results produced while frozen, delivered when it wakes.
    held: Vec<Input>,
    /// Transfers this tab runs (aborted ones are removed and their results dropped).
    running: BTreeSet<TaskId>,
}

struct Hub {
    engine: Engine,
    epoch: u64,
    /// Files created by acknowledged app writes, by op.
    ops: BTreeMap<OpId, FileId>,
}

struct Browser {
    client: ClientId,
    /// Opens the store with `downloads: 'lazy'` (every other browser): other browsers' files
    /// download only when read or pinned.
    lazy: bool,
    /// Opens the store with a byte budget (every third browser): the least recently read
    /// content goes once it is safely on the server.
    budget: Option<u64>,
    disk: Disk,
    hub: Option<Hub>,
    tabs: Vec<Tab>,
    leader: Option<(u64, Term)>,
    partitioned: bool,
}

#[derive(Default)]
struct Server {
    log: Vec<ConfirmedEvent>,
    ids: BTreeMap<EventId, Seq>,
    table: filesync::core::table::FilesTable,
    blobs: BTreeSet<ContentHash>,
    /// Multipart uploads open (created, not completed or aborted), by id: their content.
    uploads: BTreeMap<String, ContentHash>,
    next_upload: u64,
    down: bool,
}

impl Server {
    /// Stores pushed events once each and returns them as stored. Like our server, it clears
    /// the remote key of an event whose content it does not hold, atomically with deletes.
    fn accept(&mut self, events: Vec<ClientEvent>) -> Vec<ConfirmedEvent> {
        let store = StoreId::new(STORE).unwrap();
        let mut out = Vec::new();
        for ev in events {
            let c = match self.ids.get(&ev.id) {
                Some(s) => self.log[s.0 as usize - 1].clone(),
                None => {
                    let seq = Seq(self.log.len() as u64 + 1);
                    self.ids.insert(ev.id.clone(), seq);
                    let mut event = ev.event;
                    if let FileEvent::Updated(u) = &mut event {
                        if !self.blobs.contains(&u.content_hash) {
                            u.remote_key = None;
                        }
                    }
                    let c = ConfirmedEvent {
                        seq,
                        id: ev.id,
                        event,
                    };
                    self.log.push(c.clone());
                    self.table.apply_confirmed(&store, [c.clone()]);
                    c
                }
            };
            out.push(c);
        }
        out
    }
}

/// What a run did, for the report of a failing seed.
pub struct Report {
    pub seed: u64,
    pub plan: Plan,
    pub trace: Vec<String>,
}

pub struct World {
    pub seed: u64,
    pub plan: Plan,
    rng: Rng,
    now: Millis,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    msgs: BTreeMap<u64, Msg>,
    next_msg: u64,
    server: Server,
    browsers: Vec<Browser>,
    next_tab: u64,
    next_epoch: u64,
    next_op: u64,
    next_file: u64,
    chaos: bool,
    /// App writes acknowledged as durable: (browser, file created).
    acked_creates: BTreeSet<FileId>,
    trace: Vec<String>,
    pub steps: u64,
}

fn store() -> StoreId {
    StoreId::new(STORE).unwrap()
}

fn rng_budget(seed: u64, browser: usize) -> u64 {
    Rng::new(seed ^ (browser as u64) << 48).below(1_800)
}

fn content(n: u64) -> (ContentHash, u64) {
    // A small pool so that files share content (deduplication, shared-bytes deletes).
    (
        ContentHash::of(format!("content-{n}").as_bytes()),
        100 + n * 37,
    )
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let plan = Plan::from_seed(&mut rng);
        let mut w = World {
            seed,
            plan: plan.clone(),
            rng,
            now: Millis(0),
            queue: BinaryHeap::new(),
            msgs: BTreeMap::new(),
            next_msg: 0,
            server: Server::default(),
            browsers: Vec::new(),
            next_tab: 1,
            next_epoch: 1,
            next_op: 1,
            next_file: 1,
            chaos: true,
            acked_creates: BTreeSet::new(),
            trace: Vec::new(),
            steps: 0,
        };
        for i in 0..plan.browsers {
            w.browsers.push(Browser {
                client: ClientId::new(format!("browser-{i}")).unwrap(),
                lazy: i % 2 == 1,
                // Two to five contents' worth of the pool's sizes.
                budget: (i % 3 == 2).then(|| 200 + rng_budget(seed, i)),
                disk: Disk::default(),
                hub: None,
                tabs: Vec::new(),
                leader: None,
                partitioned: false,
            });
            let tabs = 1 + w.rng.below(plan.max_tabs as u64);
            for _ in 0..tabs {
                w.open_tab(i);
            }
        }
        w
    }

    fn log(&mut self, s: String) {
        if self.trace.len() >= 4000 {
            self.trace.remove(0);
        }
        self.trace.push(format!("{:>7} {s}", self.now.0));
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    fn send(&mut self, delay: u64, msg: Msg) {
        let id = self.next_msg;
        self.next_msg += 1;
        self.msgs.insert(id, msg);
        self.queue.push(Reverse((self.now.after(delay), id)));
    }

    fn latency(&mut self) -> u64 {
        1 + self.rng.below(20)
    }

    // ----- tabs, hubs, leadership -------------------------------------------------------------

    fn open_tab(&mut self, b: usize) {
        let id = self.next_tab;
        self.next_tab += 1;
        self.browsers[b].tabs.push(Tab {
            id,
            frozen_until: None,
            held: Vec::new(),
            running: BTreeSet::new(),
        });
        self.log(format!("b{b} open tab {id}"));
        if self.browsers[b].hub.is_none() {
            self.start_hub(b);
        }
        self.elect(b);
    }

    fn start_hub(&mut self, b: usize) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let mut cfg = Config::new(store(), self.browsers[b].client.clone(), Mode::Remote);
        cfg.seed = self.seed ^ (epoch << 32);
        cfg.max_uploads = 1 + self.rng.below(3) as usize;
        cfg.max_downloads = 1 + self.rng.below(3) as usize;
        if self.browsers[b].lazy {
            cfg.downloads = filesync::core::Downloads::Lazy;
        }
        cfg.budget = self.browsers[b].budget;
        let snap = self.browsers[b].disk.snapshot();
        let engine = Engine::new(cfg, snap, self.now);
        self.browsers[b].hub = Some(Hub {
            engine,
            epoch,
            ops: BTreeMap::new(),
        });
        self.log(format!("b{b} hub start epoch {epoch}"));
        // Like the runtime: the listing runs while the hub already serves tabs; the engine
        // applies what changes meanwhile on top of it.
        self.hub_input(b, Input::InventoryStarted);
        let hashes: Vec<ContentHash> = self.browsers[b].disk.bytes.iter().copied().collect();
        let d = self.rng.below(2_000);
        self.send(
            d,
            Msg::ToHub {
                b,
                epoch,
                input: Input::LocalInventory { hashes },
            },
        );
        self.hub_input(b, Input::LiveConnected);
    }

    /// The Web Lock goes to the first live, awake tab when nobody holds it.
    fn elect(&mut self, b: usize) {
        let br = &self.browsers[b];
        if br.leader.is_some() || br.hub.is_none() {
            return;
        }
        let Some(tab) = br
            .tabs
            .iter()
            .find(|t| t.frozen_until.is_none())
            .map(|t| t.id)
        else {
            return;
        };
        let term = self.browsers[b].disk.next_term();
        self.browsers[b].leader = Some((tab, term));
        self.log(format!("b{b} tab {tab} leads term {}", term.0));
        self.hub_input(b, Input::LeaderElected { term });
    }

    fn close_tab(&mut self, b: usize, idx: usize, graceful: bool) {
        let tab = self.browsers[b].tabs.remove(idx);
        self.log(format!(
            "b{b} {} tab {}",
            if graceful { "close" } else { "crash" },
            tab.id
        ));
        if let Some((lt, term)) = self.browsers[b].leader {
            if lt == tab.id {
                self.browsers[b].leader = None;
                if graceful {
                    self.hub_input(b, Input::LeaderLost { term });
                }
            }
        }
        if self.browsers[b].tabs.is_empty() {
            // The SharedWorker dies with its last tab; unfinished writes are lost.
            self.browsers[b].hub = None;
            self.browsers[b].leader = None;
            self.log(format!("b{b} hub gone"));
        } else {
            self.elect(b);
        }
    }

    fn freeze_tab(&mut self, b: usize, idx: usize, ms: u64) {
        let until = self.now.after(ms);
        let id = self.browsers[b].tabs[idx].id;
        self.browsers[b].tabs[idx].frozen_until = Some(until);
        self.log(format!("b{b} freeze tab {id} for {ms} ms"));
        // A lease of 5 s: another tab steals leadership from a frozen leader.
        if ms > 5_000 && self.browsers[b].leader.is_some_and(|(t, _)| t == id) {
            self.browsers[b].leader = None;
            self.elect(b);
        }
    }

    fn wake_tabs(&mut self) {
        for b in 0..self.browsers.len() {
            let mut woke = Vec::new();
            for t in &mut self.browsers[b].tabs {
                if t.frozen_until.is_some_and(|u| u <= self.now) {
                    t.frozen_until = None;
                    woke.push(std::mem::take(&mut t.held));
                }
            }
            for held in woke {
                for input in held {
                    // Stale results of a fenced-off leader: the engine must refuse them.
                    self.hub_input(b, input);
                }
            }
            self.elect(b);
        }
    }

    // ----- the hub driver ---------------------------------------------------------------------

    fn hub_input(&mut self, b: usize, input: Input) {
        if self.browsers[b].hub.is_none() {
            return;
        }
        match &input {
            Input::TransferDone {
                task,
                term,
                downloaded_hash,
            } => self.log(format!(
                "b{b} <- done task {} term {} {:?}",
                task.0, term.0, downloaded_hash
            )),
            Input::TransferFailed {
                task,
                term,
                failure,
            } => self.log(format!(
                "b{b} <- failed task {} term {} {failure}",
                task.0, term.0
            )),
            Input::RemoteDeleteDone { task, result, .. } => {
                self.log(format!("b{b} <- deleted task {} {result:?}", task.0))
            }
            Input::PersistFailed { batch, .. } => {
                self.log(format!("b{b} <- persist {batch} FAILED"))
            }
            Input::Pushed { request, confirmed } => self.log(format!(
                "b{b} <- pushed req {} {:?}",
                request.0,
                confirmed
                    .iter()
                    .map(|c| (c.id.n, c.seq.0))
                    .collect::<Vec<_>>()
            )),
            Input::SyncFailed { request, failure } => {
                self.log(format!("b{b} <- sync failed req {} {failure}", request.0))
            }
            Input::Pulled {
                request, events, ..
            } => self.log(format!(
                "b{b} <- pulled req {} {} events",
                request.0,
                events.len()
            )),
            _ => {}
        }
        let Some(hub) = self.browsers[b].hub.as_mut() else {
            return;
        };
        self.steps += 1;
        let result = hub.engine.handle(self.now, input.clone());
        if let Err(e) = result {
            let ok = matches!(
                e.code(),
                "stale_term" | "unknown_task" | "not_found" | "already_exists"
            );
            assert!(
                ok,
                "seed {}: unexpected engine error {e} for {input:?}",
                self.seed
            );
        }
        self.drain(b);
    }

    fn drain(&mut self, b: usize) {
        loop {
            let Some(hub) = self.browsers[b].hub.as_mut() else {
                return;
            };
            let epoch = hub.epoch;
            let Some(out) = hub.engine.poll_output() else {
                return;
            };
            match out {
                Output::Command(c) => self.perform(b, epoch, c),
                Output::Event(e) => self.on_event(b, e),
            }
        }
    }

    fn on_event(&mut self, b: usize, e: Event) {
        if let Event::Committed { op } = e {
            if let Some(file) = self.browsers[b]
                .hub
                .as_mut()
                .and_then(|h| h.ops.remove(&op))
            {
                self.log(format!("b{b} acked {file}"));
                self.acked_creates.insert(file);
            }
        }
    }

    fn leader_tab(&self, b: usize, term: Term) -> Option<u64> {
        self.browsers[b]
            .leader
            .filter(|(_, t)| *t == term)
            .map(|(id, _)| id)
    }

    fn perform(&mut self, b: usize, epoch: u64, c: Command) {
        match &c {
            Command::StartTransfer(o) => self.log(format!(
                "b{b} start {:?} {} task {} term {}",
                o.kind,
                &o.hash.to_hex()[..6],
                o.task.0,
                o.term.0
            )),
            Command::AbortTransfer { task } => self.log(format!("b{b} abort task {}", task.0)),
            Command::AbortUpload { resume, .. } => self.log(format!(
                "b{b} abort multipart {}",
                resume.split(' ').next().unwrap_or_default()
            )),
            Command::DeleteLocalBytes { hash } => {
                self.log(format!("b{b} delete local {}", &hash.to_hex()[..6]))
            }
            Command::DeleteRemote { key, task, .. } => self.log(format!(
                "b{b} delete remote {} task {}",
                &key.as_str()[4..10],
                task.0
            )),
            Command::Push { request, events } => self.log(format!(
                "b{b} push req {} n={:?}",
                request.0,
                events.iter().map(|e| e.id.n).collect::<Vec<_>>()
            )),
            Command::Pull { request, after, .. } => {
                self.log(format!("b{b} pull req {} after {}", request.0, after.0))
            }
            _ => {}
        }
        match c {
            Command::Persist(batch) => {
                let ok = !(self.chaos && self.chance(self.plan.p_persist_fail));
                let d = self.rng.below(3);
                self.send(
                    d,
                    Msg::PersistDone {
                        b,
                        epoch,
                        batch,
                        ok,
                    },
                );
            }
            Command::Push { request, events } => {
                let d = self.latency();
                if self.browsers[b].partitioned {
                    self.send(
                        d,
                        Msg::ToHub {
                            b,
                            epoch,
                            input: Input::SyncFailed {
                                request,
                                failure: Failure::Offline,
                            },
                        },
                    );
                } else {
                    self.send(
                        d,
                        Msg::PushAtServer {
                            b,
                            epoch,
                            request,
                            events,
                        },
                    );
                }
            }
            Command::Pull {
                request,
                after,
                limit,
            } => {
                let d = self.latency();
                let input = match self.http_outcome(b) {
                    Err(failure) => Input::SyncFailed { request, failure },
                    Ok(()) => {
                        let events: Vec<ConfirmedEvent> = self
                            .server
                            .log
                            .iter()
                            .filter(|e| e.seq > after)
                            .take(limit)
                            .cloned()
                            .collect();
                        let has_more = self.server.log.len() as u64 > after.0 + events.len() as u64;
                        Input::Pulled {
                            request,
                            events,
                            has_more,
                        }
                    }
                };
                self.send(d, Msg::ToHub { b, epoch, input });
            }
            Command::CheckHealth => {
                let ok = !self.browsers[b].partitioned && !self.server.down;
                let d = self.latency();
                self.send(
                    d,
                    Msg::ToHub {
                        b,
                        epoch,
                        input: Input::Health { ok },
                    },
                );
            }
            Command::StartTransfer(order) => {
                let Some(tab) = self.leader_tab(b, order.term) else {
                    return; // the leader is gone; the next one recovers the work
                };
                if let Some(t) = self.browsers[b].tabs.iter_mut().find(|t| t.id == tab) {
                    t.running.insert(order.task);
                }
                if order.kind == TransferKind::Upload
                    && !self.browsers[b].disk.bytes.contains(&order.hash)
                {
                    let failure = Failure::Storage {
                        quota: false,
                        message: "bytes missing".into(),
                    };
                    self.send(
                        1,
                        Msg::FromTab {
                            b,
                            tab,
                            input: Input::TransferFailed {
                                task: order.task,
                                term: order.term,
                                failure,
                            },
                        },
                    );
                    return;
                }
                let d = self.latency();
                self.send(d, Msg::TransferAtServer { b, tab, order });
            }
            Command::AbortTransfer { task } => {
                for t in &mut self.browsers[b].tabs {
                    t.running.remove(&task);
                }
            }
            Command::DeleteLocalBytes { hash } => {
                // Bytes that exist nowhere else are never deleted: content a file of the
                // browser's view has is on the server, unless the server moved the file on
                // (deleted it, or another client gave it other content) and no unconfirmed
                // event of this browser may bring the content back.
                let e = &self.browsers[b].hub.as_ref().unwrap().engine;
                let only_here = !self.server.blobs.contains(&hash)
                    && e.table().view_refs(&hash).any(|id| {
                        e.table().has_pending(id)
                            || self
                                .server
                                .table
                                .get(id)
                                .is_none_or(|r| r.is_live() && r.content_hash == hash)
                    });
                assert!(
                    !only_here,
                    "seed {}: b{b} deleted {hash:?}, which exists nowhere else",
                    self.seed
                );
                self.browsers[b].disk.bytes.remove(&hash);
            }
            Command::AbortUpload { key, resume } => {
                let id = resume.split(' ').next().unwrap_or_default();
                if let Some(hash) = self.server.uploads.remove(id) {
                    assert!(
                        key.as_str().ends_with(&hash.to_hex()),
                        "an abort names another content's upload"
                    );
                }
            }
            Command::ListLocalBytes => {
                let hashes = self.browsers[b].disk.bytes.iter().copied().collect();
                self.send(
                    1,
                    Msg::ToHub {
                        b,
                        epoch,
                        input: Input::LocalBytesFound { hashes },
                    },
                );
            }
            Command::DeleteRemote { task, term, key } => {
                if let Some(tab) = self.leader_tab(b, term) {
                    let d = self.latency();
                    self.send(
                        d,
                        Msg::DeleteAtServer {
                            b,
                            tab,
                            task,
                            term,
                            key,
                        },
                    );
                }
            }
            other => panic!("seed {}: unhandled command {other:?}", self.seed),
        }
    }

    /// Whether a request from browser `b` gets through now.
    fn http_outcome(&mut self, b: usize) -> Result<(), Failure> {
        if self.browsers[b].partitioned {
            return Err(Failure::Offline);
        }
        if self.server.down {
            return Err(if self.chance(50) {
                Failure::Offline
            } else {
                Failure::Server { status: 503 }
            });
        }
        if self.chaos && self.chance(self.plan.p_http_fail) {
            return Err(match self.rng.below(3) {
                0 => Failure::Timeout,
                1 => Failure::Server { status: 500 },
                _ => Failure::RateLimited {
                    retry_after_ms: Some(2_000),
                },
            });
        }
        Ok(())
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::PersistDone {
                b,
                epoch,
                batch,
                ok,
            } => {
                if !self.hub_alive(b, epoch) {
                    return; // the transaction died with its worker
                }
                let id = batch.id;
                if ok {
                    self.browsers[b].disk.apply(&batch);
                    self.hub_input(b, Input::Persisted { batch: id });
                } else {
                    let failure = Failure::Storage {
                        quota: self.chance(50),
                        message: "write failed".into(),
                    };
                    self.hub_input(b, Input::PersistFailed { batch: id, failure });
                }
            }
            Msg::ToHub { b, epoch, input } => {
                if self.hub_alive(b, epoch) {
                    self.hub_input(b, input);
                }
            }
            Msg::FromTab { b, tab, input } => {
                let task = match &input {
                    Input::TransferDone { task, .. }
                    | Input::TransferFailed { task, .. }
                    | Input::TransferProgress { task, .. }
                    | Input::RemoteDeleteDone { task, .. } => *task,
                    _ => unreachable!(),
                };
                let is_transfer = !matches!(input, Input::RemoteDeleteDone { .. });
                let Some(t) = self.browsers[b].tabs.iter_mut().find(|t| t.id == tab) else {
                    return; // the tab crashed
                };
                if is_transfer && !t.running.contains(&task) {
                    return; // aborted
                }
                if !matches!(input, Input::TransferProgress { .. }) {
                    t.running.remove(&task);
                }
                let frozen = t.frozen_until.is_some();
                if let Input::TransferDone {
                    downloaded_hash: Some(h),
                    ..
                } = &input
                {
                    if *h != ContentHash::of(b"corrupt") {
                        // The tab streamed the body into storage and verified it.
                        self.browsers[b].disk.bytes.insert(*h);
                    }
                }
                if frozen {
                    let t = self.browsers[b]
                        .tabs
                        .iter_mut()
                        .find(|t| t.id == tab)
                        .unwrap();
                    t.held.push(input);
                } else {
                    self.hub_input(b, input);
                }
            }
            Msg::PushAtServer {
                b,
                epoch,
                request,
                events,
            } => {
                let d = self.latency();
                let input = match self.http_outcome(b) {
                    Err(failure) => Input::SyncFailed { request, failure },
                    Ok(()) => {
                        let before = self.server.log.len();
                        let confirmed = self.server.accept(events);
                        let fresh: Vec<ConfirmedEvent> = self.server.log[before..].to_vec();
                        if !fresh.is_empty() {
                            self.broadcast(fresh);
                        }
                        if self.chaos && self.chance(self.plan.p_http_fail) {
                            // Stored, but the reply is lost: the client pushes again.
                            Input::SyncFailed {
                                request,
                                failure: Failure::Timeout,
                            }
                        } else {
                            Input::Pushed { request, confirmed }
                        }
                    }
                };
                self.send(d, Msg::ToHub { b, epoch, input });
            }
            Msg::TransferAtServer { b, tab, order } => self.serve_transfer(b, tab, order),
            Msg::DeleteAtServer {
                b,
                tab,
                task,
                term,
                key,
            } => {
                let result = self.http_outcome(b).and_then(|()| {
                    let hash =
                        ContentHash::parse(key.as_str().rsplit('/').next().unwrap()).unwrap();
                    if self.server.table.is_referenced(&hash) {
                        // Our server refuses to delete content a live file references.
                        Err(Failure::Rejected { status: 409 })
                    } else {
                        self.server.blobs.remove(&hash);
                        Ok(())
                    }
                });
                let d = self.latency();
                self.send(
                    d,
                    Msg::FromTab {
                        b,
                        tab,
                        input: Input::RemoteDeleteDone { task, term, result },
                    },
                );
            }
        }
    }

    fn hub_alive(&self, b: usize, epoch: u64) -> bool {
        self.browsers[b]
            .hub
            .as_ref()
            .is_some_and(|h| h.epoch == epoch)
    }

    fn serve_transfer(&mut self, b: usize, tab: u64, order: TransferOrder) {
        let (task, term, hash) = (order.task, order.term, order.hash);
        let d = self.latency();
        // Contents whose hash starts with an odd byte upload in parts: the upload an earlier
        // attempt left (its resume text), if the server still has it, or a new one; half the
        // parts go before the outcome, and the checkpoint rides on the progress report.
        let multipart = (order.kind == TransferKind::Upload && hash.as_bytes()[0] % 2 == 1)
            .then(|| self.multipart_upload(&order));
        let outcome = self.http_outcome(b);
        let input = match (order.kind, outcome) {
            (_, Err(failure)) => Input::TransferFailed {
                task,
                term,
                failure,
            },
            (TransferKind::Upload, Ok(())) => {
                if let Some(id) = &multipart {
                    self.server.uploads.remove(id);
                }
                self.server.blobs.insert(hash);
                Input::TransferDone {
                    task,
                    term,
                    downloaded_hash: None,
                }
            }
            (TransferKind::Download, Ok(())) => {
                if !self.server.blobs.contains(&hash) {
                    Input::TransferFailed {
                        task,
                        term,
                        failure: Failure::NotFound,
                    }
                } else if self.chaos && self.chance(self.plan.p_corrupt) {
                    // Verified while streaming: the wrong bytes are discarded, not stored.
                    Input::TransferDone {
                        task,
                        term,
                        downloaded_hash: Some(ContentHash::of(b"corrupt")),
                    }
                } else {
                    Input::TransferDone {
                        task,
                        term,
                        downloaded_hash: Some(hash),
                    }
                }
            }
        };
        self.send(
            d / 2,
            Msg::FromTab {
                b,
                tab,
                input: Input::TransferProgress {
                    task,
                    term,
                    loaded: order.size / 2,
                    total: order.size,
                    resume: multipart.map(|id| format!("{id} 1")),
                },
            },
        );
        self.send(d, Msg::FromTab { b, tab, input });
    }

    /// The multipart upload an upload order goes on with: the one its resume text names, if the
    /// server still holds it (it sweeps some, in chaos), or a new one.
    fn multipart_upload(&mut self, order: &TransferOrder) -> String {
        if self.chaos && self.chance(self.plan.p_corrupt) {
            // The server's sweep: an upload left a while is aborted.
            if let Some(id) = self.server.uploads.keys().next().cloned() {
                self.server.uploads.remove(&id);
            }
        }
        let kept = order
            .resume
            .as_deref()
            .and_then(|r| r.split(' ').next())
            .filter(|id| self.server.uploads.contains_key(*id));
        if let Some(id) = kept {
            assert_eq!(
                self.server.uploads[id], order.hash,
                "an upload resumed with another content's multipart upload"
            );
            return id.to_string();
        }
        self.server.next_upload += 1;
        let id = format!("u{}", self.server.next_upload);
        self.server.uploads.insert(id.clone(), order.hash);
        id
    }

    /// The server's live channel: every connected browser gets new events, late, sometimes twice.
    fn broadcast(&mut self, events: Vec<ConfirmedEvent>) {
        for b in 0..self.browsers.len() {
            let Some(epoch) = self.browsers[b].hub.as_ref().map(|h| h.epoch) else {
                continue;
            };
            if self.browsers[b].partitioned {
                continue;
            }
            let d = self.latency();
            self.send(
                d,
                Msg::ToHub {
                    b,
                    epoch,
                    input: Input::Live {
                        events: events.clone(),
                    },
                },
            );
            if self.chaos && self.chance(self.plan.p_dup) {
                let d = self.latency() * 5;
                self.send(
                    d,
                    Msg::ToHub {
                        b,
                        epoch,
                        input: Input::Live {
                            events: events.clone(),
                        },
                    },
                );
            }
        }
    }

    // ----- the workload -----------------------------------------------------------------------

    fn random_op(&mut self) {
        let live: Vec<usize> = (0..self.browsers.len())
            .filter(|b| {
                self.browsers[*b].hub.is_some()
                    && self.browsers[*b]
                        .tabs
                        .iter()
                        .any(|t| t.frozen_until.is_none())
            })
            .collect();
        if live.is_empty() {
            return;
        }
        let b = live[self.rng.below(live.len() as u64) as usize];
        let files: Vec<FileRow> = self.browsers[b]
            .hub
            .as_ref()
            .unwrap()
            .engine
            .files()
            .map(|f| f.row.clone())
            .collect();
        let on_demand = self.browsers[b].lazy || self.browsers[b].budget.is_some();
        if on_demand && !files.is_empty() && self.chance(30) {
            // The app reads a file (its download is asked for, or its bytes read), shows some
            // in object URLs, its downloads policy wants some, or it pins or unpins one.
            let pick = self.rng.below(files.len() as u64) as usize;
            let file = files[pick].id.clone();
            let input = match self.rng.below(6) {
                0 | 1 => Input::Prioritize { file },
                2 => Input::Accessed { files: vec![file] },
                // A downloads policy (a function in the tabs) wants some files.
                4 => Input::Want {
                    files: files
                        .iter()
                        .skip(pick)
                        .take(1 + self.rng.below(3) as usize)
                        .map(|f| f.id.clone())
                        .collect(),
                },
                3 => Input::InUse {
                    hashes: files
                        .iter()
                        .skip(pick)
                        .take(self.rng.below(3) as usize)
                        .map(|f| f.content_hash)
                        .collect(),
                },
                _ => {
                    let pinned = self.chance(70);
                    Input::Pin { file, pinned }
                }
            };
            self.log(format!("b{b} app {input:?}"));
            self.hub_input(b, input);
            return;
        }
        let roll = self.rng.below(10);
        let op = OpId(self.next_op);
        self.next_op += 1;
        let (hash, size) = content(self.rng.below(12));
        let event = if files.is_empty() || roll < 5 {
            let id = FileId::new(format!("file-{}", self.next_file)).unwrap();
            self.next_file += 1;
            self.browsers[b]
                .hub
                .as_mut()
                .unwrap()
                .ops
                .insert(op, id.clone());
            FileEvent::Created(FileCreated {
                id: id.clone(),
                path: format!("docs/{id}"),
                content_hash: hash,
                info: FileInfo {
                    name: format!("{id}.bin"),
                    mime_type: "application/octet-stream".into(),
                    size,
                },
                metadata_json: None,
                created_at: self.now,
                updated_at: self.now,
            })
        } else {
            let f = &files[self.rng.below(files.len() as u64) as usize];
            if roll < 8 {
                FileEvent::Updated(FileUpdated {
                    id: f.id.clone(),
                    path: f.path.clone(),
                    remote_key: None,
                    content_hash: hash,
                    info: FileInfo {
                        name: f.info.name.clone(),
                        mime_type: f.info.mime_type.clone(),
                        size,
                    },
                    metadata: MetadataPatch::Keep,
                    updated_at: self.now,
                    expected_content_hash: None,
                    previous_content_hash: None,
                })
            } else {
                FileEvent::Deleted(FileDeleted {
                    id: f.id.clone(),
                    deleted_at: self.now,
                })
            }
        };
        let h = match &event {
            FileEvent::Created(c) => c.content_hash.to_hex()[..6].to_string(),
            FileEvent::Updated(u) => u.content_hash.to_hex()[..6].to_string(),
            _ => String::new(),
        };
        self.log(format!(
            "b{b} op {} {} {h} op {}",
            event.name(),
            event.file_id(),
            op.0
        ));
        // The tab stores the bytes first, then commits.
        if !matches!(event, FileEvent::Deleted(_)) {
            self.browsers[b].disk.bytes.insert(hash);
        }
        self.hub_input(
            b,
            Input::Commit {
                op,
                event: Box::new(event),
            },
        );
    }

    fn random_fault(&mut self) {
        let b = self.rng.below(self.browsers.len() as u64) as usize;
        let ntabs = self.browsers[b].tabs.len();
        match self.rng.below(9) {
            0 | 1 if ntabs > 0 => {
                let idx = self.rng.below(ntabs as u64) as usize;
                let graceful = self.chance(50);
                self.close_tab(b, idx, graceful);
            }
            2 if ntabs < self.plan.max_tabs + 1 => self.open_tab(b),
            3 if ntabs > 0 => {
                self.log(format!("b{b} browser crash"));
                while !self.browsers[b].tabs.is_empty() {
                    self.close_tab(b, 0, false);
                }
            }
            4 if ntabs > 0 => {
                let idx = self.rng.below(ntabs as u64) as usize;
                let ms = 1_000 + self.rng.below(12_000);
                self.freeze_tab(b, idx, ms);
            }
            5 => {
                let p = !self.browsers[b].partitioned;
                self.set_partition(b, p);
            }
            6 => {
                self.server.down = !self.server.down;
                self.log(format!(
                    "server {}",
                    if self.server.down { "down" } else { "up" }
                ));
                if !self.server.down {
                    for b in 0..self.browsers.len() {
                        self.hub_input(b, Input::LiveConnected);
                    }
                }
            }
            _ => self.random_op(),
        }
    }

    fn set_partition(&mut self, b: usize, partitioned: bool) {
        self.browsers[b].partitioned = partitioned;
        self.log(format!(
            "b{b} {}",
            if partitioned {
                "partitioned"
            } else {
                "reconnected"
            }
        ));
        self.hub_input(
            b,
            Input::NetworkHint {
                online: !partitioned,
            },
        );
        if !partitioned {
            self.hub_input(b, Input::LiveConnected);
        }
    }

    // ----- the run ----------------------------------------------------------------------------

    fn next_hub_timeout(&self) -> Option<Millis> {
        self.browsers
            .iter()
            .filter_map(|b| b.hub.as_ref()?.engine.poll_timeout())
            .min()
    }

    fn next_wake(&self) -> Option<Millis> {
        self.browsers
            .iter()
            .flat_map(|b| b.tabs.iter().filter_map(|t| t.frozen_until))
            .min()
    }

    /// Runs the world until `until`, with chaos (ops and faults every `gap` ms on average).
    fn run_until(&mut self, until: Millis, mut next_chaos: Option<Millis>) {
        loop {
            let candidates = [
                self.queue.peek().map(|Reverse((t, _))| *t),
                self.next_hub_timeout(),
                self.next_wake(),
                next_chaos,
            ];
            let Some(t) = candidates.into_iter().flatten().min() else {
                break;
            };
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            if self.next_wake().is_some_and(|w| w <= self.now) {
                self.wake_tabs();
            }
            if let Some(Reverse((mt, id))) = self.queue.peek().copied() {
                if mt <= self.now {
                    self.queue.pop();
                    let msg = self.msgs.remove(&id).unwrap();
                    self.deliver(msg);
                    continue;
                }
            }
            if next_chaos.is_some_and(|c| c <= self.now) {
                if self.chance(60) {
                    self.random_op();
                } else {
                    self.random_fault();
                }
                next_chaos = Some(
                    self.now.after(
                        1 + self
                            .rng
                            .below(self.plan.chaos_ms / self.plan.ops as u64 * 2),
                    ),
                );
                continue;
            }
            for b in 0..self.browsers.len() {
                let due = self.browsers[b]
                    .hub
                    .as_ref()
                    .and_then(|h| h.engine.poll_timeout())
                    .is_some_and(|t| t <= self.now);
                if due {
                    self.steps += 1;
                    self.browsers[b]
                        .hub
                        .as_mut()
                        .unwrap()
                        .engine
                        .handle_timeout(self.now);
                    self.drain(b);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Chaos, then calm: heal everything, restart what is down, let it settle.
    pub fn run(&mut self) {
        let chaos_end = Millis(self.plan.chaos_ms);
        self.run_until(chaos_end, Some(Millis(1)));
        self.chaos = false;
        self.log("---- calm".into());
        self.server.down = false;
        for b in 0..self.browsers.len() {
            for t in &mut self.browsers[b].tabs {
                t.frozen_until = t.frozen_until.map(|_| self.now);
            }
        }
        self.wake_tabs();
        for b in 0..self.browsers.len() {
            if self.browsers[b].tabs.is_empty() {
                self.open_tab(b);
            }
            if self.browsers[b].partitioned {
                self.set_partition(b, false);
            }
            self.hub_input(b, Input::LiveConnected);
            self.hub_input(b, Input::NetworkHint { online: true });
            // What an app's "retry" button does after a storm of failures.
            self.hub_input(b, Input::RetryErrors);
            // Object URLs revoked: what they held may be evicted.
            self.hub_input(b, Input::InUse { hashes: vec![] });
            self.hub_input(b, Input::SyncNow);
        }
        let end = self.now.after(10 * 60_000);
        self.run_until(end, None);
    }

    /// The invariants after the world went quiet. Returns the first violation.
    pub fn check(&self) -> Result<(), String> {
        let server_rows: Vec<FileRow> = self.server.table.rows().cloned().collect();
        let live: Vec<&FileRow> = server_rows.iter().filter(|r| r.is_live()).collect();
        let live_hashes: BTreeSet<ContentHash> = live.iter().map(|r| r.content_hash).collect();
        for r in &live {
            if r.remote_key != Some(RemoteKey::for_content(&store(), &r.content_hash)) {
                return Err(format!(
                    "{}: remote key {:?} does not name its content",
                    r.id, r.remote_key
                ));
            }
            if !self.server.blobs.contains(&r.content_hash) {
                return Err(format!(
                    "{}: bytes {:?} not on the server (remote key {:?})",
                    r.id, r.content_hash, r.remote_key
                ));
            }
        }
        if let Some(orphan) = self.server.blobs.difference(&live_hashes).next() {
            return Err(format!("server keeps unreferenced content {orphan:?}"));
        }
        for id in &self.acked_creates {
            if !server_rows.iter().any(|r| r.id == *id) {
                return Err(format!("acknowledged save of {id} was lost"));
            }
        }
        for (i, b) in self.browsers.iter().enumerate() {
            let hub = b.hub.as_ref().ok_or(format!("b{i}: no hub"))?;
            let e = &hub.engine;
            let rows: Vec<FileRow> = e.table().rows().cloned().collect();
            if rows != server_rows {
                return Err(format!(
                    "b{i}: files table differs from the server's ({} vs {} rows)",
                    rows.len(),
                    server_rows.len()
                ));
            }
            if !e.table().pending().is_empty() {
                return Err(format!(
                    "b{i}: {} events never confirmed",
                    e.table().pending().len()
                ));
            }
            for r in &live {
                let l = e
                    .local_state()
                    .get(&r.id)
                    .ok_or(format!("b{i}: no local row for {}", r.id))?;
                let here = l.has_local_copy() && b.disk.bytes.contains(&r.content_hash);
                if (b.lazy || l.evicted) && !l.pinned && !here {
                    // Not read since its content last changed, or evicted: on the server
                    // only, and no work left for it.
                    if (l.upload, l.download) != (TransferStatus::Done, TransferStatus::Remote) {
                        return Err(format!(
                            "b{i} (lazy): {} left {:?}/{:?} {:?} without its bytes",
                            r.id, l.upload, l.download, l.last_error
                        ));
                    }
                    continue;
                }
                if !here {
                    return Err(format!("b{i}: {} has no local bytes", r.id));
                }
                if (l.upload, l.download) != (TransferStatus::Done, TransferStatus::Done) {
                    return Err(format!(
                        "b{i}: {} left {:?}/{:?} {:?}",
                        r.id, l.upload, l.download, l.last_error
                    ));
                }
            }
            if let Some(budget) = b.budget {
                // Usage converges under the budget, unless what is left is pinned.
                let held = e.local_state().held_bytes();
                let disk: u64 = b
                    .disk
                    .bytes
                    .iter()
                    .map(|h| (0..12).map(content).find(|c| c.0 == *h).map_or(0, |c| c.1))
                    .sum();
                let unpinned = e.local_state().rows().any(|l| {
                    l.has_local_copy()
                        && !e
                            .local_state()
                            .rows()
                            .any(|p| p.pinned && p.local_hash == l.local_hash)
                });
                if held != disk || (held > budget && unpinned) {
                    return Err(format!(
                        "b{i}: holds {held} bytes ({disk} on disk) over its budget {budget}"
                    ));
                }
            }
            if e.local_state().len() != live.len() {
                return Err(format!(
                    "b{i}: {} local rows for {} live files",
                    e.local_state().len(),
                    live.len()
                ));
            }
            if let Some(extra) = b.disk.bytes.difference(&live_hashes).next() {
                return Err(format!("b{i}: keeps unreferenced bytes {extra:?}"));
            }
            if e.is_busy() {
                return Err(format!(
                    "b{i}: still busy (garbage {:?})",
                    e.snapshot().garbage
                ));
            }
            if let Some((hash, resume)) = e.snapshot().uploads.first() {
                return Err(format!(
                    "b{i}: multipart upload {resume:?} of {hash:?} left under way"
                ));
            }
            // What is on disk restores to exactly what runs.
            let disk = b.disk.snapshot();
            let mem = e.snapshot();
            if disk.rows != mem.rows
                || disk.local != mem.local
                || disk.cursor != mem.cursor
                || disk.pending != mem.pending
                || disk.uploads != mem.uploads
            {
                return Err(format!("b{i}: persisted state differs from the engine's"));
            }
        }
        Ok(())
    }

    pub fn report(&self) -> Report {
        Report {
            seed: self.seed,
            plan: self.plan.clone(),
            trace: self.trace.clone(),
        }
    }

    pub fn file_count(&self) -> usize {
        self.server.table.rows().filter(|r| r.is_live()).count()
    }
}
