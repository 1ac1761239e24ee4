//! Rules of the engine, one test each. A tiny in-memory "server" answers persists, pushes and
//! pulls; transfers are answered by hand so each test controls their outcome.
//!
//! Over 700 lines on purpose: every rule's test sits next to the harness that drives it, and a
//! rule often spans sub-states (a commit, its persist, its push, its upload), so splitting by
//! module would scatter one story across files.

use super::*;
use crate::core::event::{FileCreated, FileDeleted, FileInfo};

const STORE: &str = "store";

struct H {
    e: Engine,
    now: Millis,
    /// Confirmed log of the fake server.
    log: Vec<ConfirmedEvent>,
    /// Outputs not answered automatically, oldest first.
    seen: Vec<Output>,
    auto_push: bool,
    auto_persist: bool,
    next_op: u64,
}

fn fid(s: &str) -> FileId {
    FileId::new(s).unwrap()
}

fn hash(content: &str) -> ContentHash {
    ContentHash::of(content.as_bytes())
}

fn config(mode: Mode) -> Config {
    let mut c = Config::new(
        StoreId::new(STORE).unwrap(),
        ClientId::new("me").unwrap(),
        mode,
    );
    c.max_uploads = 2;
    c.max_downloads = 2;
    c.seed = 42;
    c
}

impl H {
    fn new(mode: Mode) -> H {
        H::with(config(mode), Snapshot::default())
    }

    fn with(cfg: Config, snap: Snapshot) -> H {
        let mut h = H {
            e: Engine::new(cfg, snap, Millis(1_000)),
            now: Millis(1_000),
            log: Vec::new(),
            seen: Vec::new(),
            auto_push: true,
            auto_persist: true,
            next_op: 0,
        };
        h.pump();
        h
    }

    /// Answers persists, pushes and pulls until nothing is left to answer.
    fn pump(&mut self) {
        while let Some(out) = self.e.poll_output() {
            match out {
                Output::Command(Command::Persist(b)) if self.auto_persist => {
                    self.e
                        .handle(self.now, Input::Persisted { batch: b.id })
                        .unwrap();
                }
                Output::Command(Command::Push { request, events }) if self.auto_push => {
                    let mut confirmed = Vec::new();
                    for ev in events {
                        let seq = Seq(self.log.len() as u64 + 1);
                        let c = ConfirmedEvent {
                            seq,
                            id: ev.id,
                            event: ev.event,
                        };
                        confirmed.push(c.clone());
                        self.log.push(c);
                    }
                    self.e
                        .handle(self.now, Input::Pushed { request, confirmed })
                        .unwrap();
                }
                Output::Command(Command::Pull {
                    request,
                    after,
                    limit,
                }) => {
                    let events: Vec<_> = self
                        .log
                        .iter()
                        .filter(|e| e.seq > after)
                        .take(limit)
                        .cloned()
                        .collect();
                    let has_more = self.log.iter().filter(|e| e.seq > after).count() > limit;
                    self.e
                        .handle(
                            self.now,
                            Input::Pulled {
                                request,
                                events,
                                has_more,
                            },
                        )
                        .unwrap();
                }
                other => self.seen.push(other),
            }
        }
    }

    fn input(&mut self, input: Input) -> Result<(), EngineError> {
        let r = self.e.handle(self.now, input);
        self.pump();
        r
    }

    fn advance(&mut self, ms: u64) {
        let until = self.now.after(ms);
        while let Some(t) = self.e.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.e.handle_timeout(self.now);
            self.pump();
        }
        self.now = until;
    }

    fn commands(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        self.seen.retain(|o| match o {
            Output::Command(c) => {
                out.push(c.clone());
                false
            }
            _ => true,
        });
        out
    }

    fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.seen.retain(|o| match o {
            Output::Event(e) => {
                out.push(e.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// The persist batch among the commands out so far (`what` says which, if there is none).
    fn persist_batch(&mut self, what: &str) -> PersistBatch {
        self.commands()
            .into_iter()
            .find_map(|c| match c {
                Command::Persist(b) => Some(b),
                _ => None,
            })
            .expect(what)
    }

    fn transfers(&mut self) -> Vec<TransferOrder> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::StartTransfer(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn save(&mut self, id: &str, content: &str) -> OpId {
        self.next_op += 1;
        let op = OpId(self.next_op);
        self.input(Input::Commit {
            op,
            event: Box::new(created(id, content)),
        })
        .unwrap();
        op
    }

    fn edit(&mut self, id: &str, content: &str) {
        self.next_op += 1;
        let h = hash(content);
        let row = self.e.table().get(&fid(id)).unwrap().clone();
        self.input(Input::Commit {
            op: OpId(self.next_op),
            event: Box::new(FileEvent::Updated(FileUpdated {
                id: fid(id),
                path: row.path,
                remote_key: None,
                content_hash: h,
                info: row.info,
                metadata: MetadataPatch::Keep,
                updated_at: self.now,
                expected_content_hash: None,
                previous_content_hash: Some(row.content_hash),
            })),
        })
        .unwrap();
    }

    fn delete(&mut self, id: &str) {
        self.next_op += 1;
        self.input(Input::Commit {
            op: OpId(self.next_op),
            event: Box::new(FileEvent::Deleted(FileDeleted {
                id: fid(id),
                deleted_at: self.now,
            })),
        })
        .unwrap();
    }

    /// Another client's events, confirmed by the server and delivered live.
    fn remote(&mut self, events: Vec<FileEvent>) {
        let mut batch = Vec::new();
        for event in events {
            let seq = Seq(self.log.len() as u64 + 1);
            let ev = ConfirmedEvent {
                seq,
                id: EventId {
                    client: ClientId::new("other").unwrap(),
                    n: seq.0,
                },
                event,
            };
            self.log.push(ev.clone());
            batch.push(ev);
        }
        self.input(Input::Live { events: batch }).unwrap();
    }

    fn lead(&mut self, term: u64) {
        self.input(Input::LeaderElected { term: Term(term) })
            .unwrap();
    }

    fn done(&mut self, t: &TransferOrder) {
        let downloaded_hash = (t.kind == TransferKind::Download).then_some(t.hash);
        self.input(Input::TransferDone {
            task: t.task,
            term: t.term,
            downloaded_hash,
        })
        .unwrap();
    }

    fn fail(&mut self, t: &TransferOrder, failure: Failure) {
        self.input(Input::TransferFailed {
            task: t.task,
            term: t.term,
            failure,
        })
        .unwrap();
    }

    fn local(&self, id: &str) -> LocalRow {
        self.e.local_state().get(&fid(id)).cloned().unwrap()
    }
}

fn created(id: &str, content: &str) -> FileEvent {
    FileEvent::Created(FileCreated {
        id: fid(id),
        path: format!("files/{id}"),
        content_hash: hash(content),
        info: FileInfo {
            name: format!("{id}.txt"),
            mime_type: "text/plain".into(),
            size: content.len() as u64,
        },
        metadata_json: None,
        created_at: Millis(1),
        updated_at: Millis(1),
    })
}

/// Another client's update of `id` to `content`, with its remote key: an upload's attach
/// (conditional on the content) or an edit made on top of `previous`.
fn updated_by_other(
    id: &str,
    content: &str,
    expected: Option<&str>,
    previous: Option<&str>,
) -> FileEvent {
    let h = hash(content);
    FileEvent::Updated(FileUpdated {
        id: fid(id),
        path: format!("files/{id}"),
        remote_key: Some(RemoteKey::for_content(&StoreId::new(STORE).unwrap(), &h)),
        content_hash: h,
        info: FileInfo {
            name: format!("{id}.txt"),
            mime_type: "text/plain".into(),
            size: content.len() as u64,
        },
        metadata: MetadataPatch::Keep,
        updated_at: Millis(2),
        expected_content_hash: expected.map(hash),
        previous_content_hash: previous.map(hash),
    })
}

fn uploaded_by_other(id: &str, content: &str) -> FileEvent {
    updated_by_other(id, content, Some(content), None)
}

use TransferStatus::*;

#[test]
fn save_upload_attach_round_trip() {
    let mut h = H::new(Mode::Remote);
    let op = h.save("f1", "hello");
    assert!(
        h.events().contains(&Event::Committed { op }),
        "durable after persist"
    );
    assert_eq!(h.local("f1").upload, Queued);
    assert!(h.transfers().is_empty(), "no leader, no transfer");
    h.lead(1);
    let t = h.transfers();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].kind, t[0].hash, t[0].size),
        (TransferKind::Upload, hash("hello"), 5)
    );
    assert_eq!(t[0].key.as_str(), format!("{STORE}/{}", hash("hello")));
    assert_eq!(h.local("f1").upload, InProgress);
    h.done(&t[0]);
    let row = h.e.table().get(&fid("f1")).unwrap();
    assert_eq!(row.remote_key, Some(t[0].key.clone()));
    assert!(
        h.e.table().pending().is_empty(),
        "attach event pushed and confirmed"
    );
    assert_eq!((h.local("f1").upload, h.local("f1").download), (Done, Done));
    let ev = h.events();
    assert!(ev.contains(&Event::TransferComplete {
        kind: TransferKind::Upload,
        file: fid("f1")
    }));
    assert!(ev.contains(&Event::FilesChanged {
        files: vec![fid("f1")]
    }));
    assert!(ev.contains(&Event::SyncComplete));
    assert!(!h.e.status().has_pending);
    assert!(h.e.file(&fid("f1")).unwrap().display.can_display);
}

#[test]
fn uploads_wait_until_the_server_confirmed_the_file() {
    let mut h = H::new(Mode::Remote);
    h.auto_push = false;
    h.lead(1);
    h.save("f1", "x");
    let cmds = h.commands();
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::StartTransfer(_))),
        "create not confirmed yet"
    );
    let push = cmds
        .into_iter()
        .find_map(|c| match c {
            Command::Push { request, events } => Some((request, events)),
            _ => None,
        })
        .expect("a push");
    let c = ConfirmedEvent {
        seq: Seq(1),
        id: push.1[0].id.clone(),
        event: push.1[0].event.clone(),
    };
    h.log.push(c.clone());
    let confirmed = vec![c];
    h.input(Input::Pushed {
        request: push.0,
        confirmed,
    })
    .unwrap();
    assert_eq!(h.transfers().len(), 1);
}

#[test]
fn remote_file_downloads_once_uploaded_and_bytes_are_verified() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.remote(vec![created("f1", "theirs")]);
    assert_eq!(h.local("f1").download, Pending, "not uploaded yet: wait");
    assert!(h.transfers().is_empty());
    h.remote(vec![uploaded_by_other("f1", "theirs")]);
    let t = h.transfers();
    assert_eq!(t[0].kind, TransferKind::Download);
    // Wrong bytes: integrity failure, retried, not present.
    h.input(Input::TransferDone {
        task: t[0].task,
        term: t[0].term,
        downloaded_hash: Some(hash("evil")),
    })
    .unwrap();
    assert!(!h.local("f1").has_local_copy());
    assert!(h.events().iter().any(|e| matches!(e,
        Event::TransferError { code, retry_in_ms: Some(_), .. } if code == "integrity")));
    h.advance(2_000);
    let t = h.transfers();
    assert_eq!(t.len(), 1, "retried after backoff");
    h.done(&t[0]);
    assert!(h.local("f1").has_local_copy());
    assert_eq!(h.local("f1").download, Done);
}

/// A lazy device, leading, with files a, b and c other clients uploaded.
fn lazy_device_with_abc() -> H {
    let mut cfg = config(Mode::Remote);
    cfg.downloads = Downloads::Lazy;
    let mut h = H::with(cfg, Snapshot::default());
    h.lead(1);
    for f in ["a", "b", "c"] {
        h.remote(vec![created(f, f), uploaded_by_other(f, f)]);
    }
    h
}

#[test]
fn lazy_downloads_start_only_when_the_app_asks() {
    let mut h = lazy_device_with_abc();
    assert!(h.transfers().is_empty(), "nothing downloads by itself");
    assert_eq!(h.local("b").download, Remote);
    let b = h.e.file(&fid("b")).unwrap().display;
    assert!(!b.can_display && !b.has_local_copy);
    assert!(!h.e.status().has_pending);

    // Saved here: uploaded as usual (lazy is about other clients' files).
    h.save("mine", "bytes");
    let up = h.transfers();
    assert_eq!(up[0].kind, TransferKind::Upload);

    h.input(Input::Prioritize { file: fid("b") }).unwrap();
    let t = h.transfers();
    assert_eq!(
        (t.len(), t[0].kind, t[0].hash),
        (1, TransferKind::Download, hash("b"))
    );
    assert_eq!(h.local("b").download, InProgress);
    assert!(h.e.file(&fid("b")).unwrap().display.can_display);
    // The row re-applied (another event of the file, same content) keeps the request.
    h.remote(vec![uploaded_by_other("b", "b")]);
    assert_eq!(h.local("b").download, InProgress);
    h.done(&t[0]);
    assert_eq!(h.local("b").download, Done);
    assert!(h.local("b").has_local_copy());
    assert_eq!(h.local("a").download, Remote, "only the file asked for");
    assert_eq!(h.local("c").download, Remote);

    // Pinned: downloads now, and the pin is kept in the per-client state.
    h.input(Input::Pin {
        file: fid("c"),
        pinned: true,
    })
    .unwrap();
    let t = h.transfers();
    assert_eq!((t.len(), t[0].hash), (1, hash("c")));
    assert!(h.local("c").pinned);
    let saved = h.e.snapshot();
    assert!(saved
        .local
        .iter()
        .any(|r| r.file_id == fid("c") && r.pinned));
    assert_eq!(
        h.input(Input::Pin {
            file: fid("nope"),
            pinned: true
        })
        .unwrap_err()
        .code(),
        "not_found"
    );
}

#[test]
fn concurrency_limits_and_one_transfer_per_content() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    for i in 0..5 {
        h.save(&format!("f{i}"), &format!("c{i}"));
    }
    // Same content as f0: shares its upload.
    h.save("dup", "c0");
    let t = h.transfers();
    assert_eq!(t.len(), 2, "max_uploads = 2");
    // Re-applying state (another commit touching the same content) starts nothing new.
    h.save("dup2", "c0");
    assert!(h.transfers().is_empty());
    h.done(&t[0]);
    let next = h.transfers();
    assert_eq!(next.len(), 1, "a slot freed, one more starts");
    assert_ne!(next[0].hash, t[0].hash);
    for id in ["f0", "dup", "dup2"] {
        assert!(
            h.e.table().get(&fid(id)).unwrap().remote_key.is_some(),
            "{id} attached"
        );
    }
}

#[test]
fn stale_terms_are_fenced_off() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f1", "x");
    let old = h.transfers().remove(0);
    h.lead(2);
    let new = h.transfers().remove(0);
    assert_eq!(new.term, Term(2));
    // The old leader wakes up and reports: refused, nothing changes.
    let r = h.input(Input::TransferDone {
        task: old.task,
        term: old.term,
        downloaded_hash: None,
    });
    assert!(matches!(r, Err(EngineError::StaleTerm { .. })));
    assert_eq!(h.local("f1").upload, InProgress);
    assert!(h.e.table().get(&fid("f1")).unwrap().remote_key.is_none());
    assert!(matches!(
        h.input(Input::LeaderElected { term: Term(2) }),
        Err(EngineError::StaleTerm { .. })
    ));
    assert!(matches!(
        h.input(Input::LeaderElected { term: Term(1) }),
        Err(EngineError::StaleTerm { .. })
    ));
    h.done(&new);
    assert!(h.e.table().get(&fid("f1")).unwrap().remote_key.is_some());
    // Results of a finished task are unknown, not applied twice.
    assert_eq!(
        h.input(Input::TransferDone {
            task: new.task,
            term: new.term,
            downloaded_hash: None
        }),
        Err(EngineError::UnknownTask)
    );
}

#[test]
fn new_leader_recovers_running_and_failed_transfers() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "1");
    h.save("b", "2");
    let t = h.transfers();
    h.fail(&t[1], Failure::Auth { status: 401 });
    assert_eq!(h.local("b").upload, Error);
    h.input(Input::LeaderLost { term: Term(1) }).unwrap();
    assert_eq!(h.local("a").upload, Queued);
    h.events();
    h.lead(2);
    let ev = h.events();
    assert!(
        ev.contains(&Event::Recovery {
            requeued: vec![fid("b")]
        }),
        "{ev:?}"
    );
    assert_eq!(h.local("b").last_error, None);
    assert_eq!(h.transfers().len(), 2, "both run again under the new term");
}

#[test]
fn restart_resumes_queued_and_interrupted_work_without_any_trigger() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    for i in 0..4 {
        h.save(&format!("f{i}"), &format!("c{i}"));
    }
    assert_eq!(h.transfers().len(), 2);
    let snap = h.e.snapshot();
    assert_eq!(
        snap.local.iter().filter(|r| r.upload == InProgress).count(),
        2
    );
    let mut h2 = H::with(config(Mode::Remote), snap);
    h2.log = h.log.clone();
    assert!(
        h2.e.local_state().rows().all(|r| r.upload == Queued),
        "in progress -> queued"
    );
    h2.lead(1);
    assert_eq!(
        h2.transfers().len(),
        2,
        "picked up at once when a leader starts"
    );
}

#[test]
fn retries_back_off_then_exhaust_and_bytes_reset_the_budget() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "data");
    let mut delays = Vec::new();
    for attempt in 0..=5 {
        let t = h.transfers();
        assert_eq!(t.len(), 1, "attempt {attempt}");
        h.fail(&t[0], Failure::Server { status: 503 });
        for e in h.events() {
            if let Event::TransferError { retry_in_ms, .. } = e {
                delays.push(retry_in_ms);
            }
        }
        // Longer than any delay so far, shorter than the stall watchdog.
        h.advance(20_000);
    }
    assert_eq!(delays.len(), 6);
    assert!(delays[..5].iter().all(Option::is_some));
    assert_eq!(delays[5], None, "sixth failure: out of retries");
    assert!(
        delays[1].unwrap() >= 1_000 && delays[4].unwrap() >= 8_000,
        "{delays:?}"
    );
    assert_eq!(h.local("f").upload, Error);
    assert_eq!(
        h.local("f").last_error.as_ref().unwrap().code,
        "server_error"
    );
    assert_eq!(h.e.status().errors[0].file_id, fid("f"));
    // retryErrors re-queues; progress resets the budget so a long flaky upload keeps going.
    h.events();
    h.input(Input::RetryErrors).unwrap();
    assert!(h.events().contains(&Event::ErrorRetryStart {
        files: vec![fid("f")]
    }));
    for round in 0..10u64 {
        let t = h.transfers().remove(0);
        h.input(Input::TransferProgress {
            task: t.task,
            term: t.term,
            loaded: round + 1,
            total: 100,
            resume: None,
        })
        .unwrap();
        h.fail(&t, Failure::Timeout);
        h.advance(20_000);
    }
    assert_ne!(
        h.local("f").upload,
        Error,
        "bytes got through each time: budget reset"
    );
}

#[test]
fn non_retryable_failures_exhaust_at_once() {
    for (f, code) in [
        (Failure::Auth { status: 403 }, "auth"),
        (Failure::Rejected { status: 400 }, "rejected"),
        (
            Failure::Storage {
                quota: true,
                message: "full".into(),
            },
            "quota_exceeded",
        ),
    ] {
        let mut h = H::new(Mode::Remote);
        h.lead(1);
        h.save("f", "x");
        let t = h.transfers().remove(0);
        h.fail(&t, f);
        assert!(h.events().iter().any(|e| matches!(e,
            Event::TransferExhausted { code: c, .. } if c == code)));
        assert_eq!(h.local("f").upload, Error);
    }
}

/// A leading engine whose upload of `f` ("x") failed because the server was unreachable.
fn offline_mid_upload() -> H {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "x");
    let t = h.transfers().remove(0);
    h.fail(&t, Failure::Offline);
    h
}

#[test]
fn offline_costs_no_retry_and_health_probe_brings_it_back() {
    let mut h = offline_mid_upload();
    assert!(h.events().contains(&Event::Offline));
    assert!(!h.e.is_online());
    assert_eq!(h.local("f").upload, Queued);
    assert!(h.transfers().is_empty(), "nothing starts while offline");
    h.advance(1_000);
    assert!(h.commands().contains(&Command::CheckHealth));
    h.input(Input::Health { ok: false }).unwrap();
    h.advance(2_000);
    assert!(
        h.commands().contains(&Command::CheckHealth),
        "probes again, backing off"
    );
    h.input(Input::Health { ok: true }).unwrap();
    assert!(h.events().contains(&Event::Online));
    assert_eq!(h.transfers().len(), 1);
}

#[test]
fn back_online_uploads_wait_until_a_pull_caught_up() {
    let mut h = offline_mid_upload();
    // Meanwhile another client deletes the file (and, after the grace, its content): this
    // client does not know yet.
    let seq = Seq(h.log.len() as u64 + 1);
    h.log.push(ConfirmedEvent {
        seq,
        id: EventId {
            client: ClientId::new("other").unwrap(),
            n: 1,
        },
        event: FileEvent::Deleted(FileDeleted {
            id: fid("f"),
            deleted_at: Millis(5),
        }),
    });
    h.input(Input::Health { ok: true }).unwrap();
    // Back online, the pull comes first: the file is gone, so nothing is sent.
    let started = h.transfers();
    assert!(
        started.is_empty(),
        "no upload from a stale view: {started:?}"
    );
    assert!(h.e.local_state().get(&fid("f")).is_none());
}

#[test]
fn priority_jumps_the_queue() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    let files: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    for f in &files {
        h.remote(vec![created(f, f), uploaded_by_other(f, f)]);
    }
    let first = h.transfers();
    assert_eq!(first.len(), 2);
    h.input(Input::Prioritize { file: fid("f5") }).unwrap();
    h.done(&first[0]);
    let next = h.transfers();
    assert_eq!(next[0].hash, hash("f5"));
}

#[test]
fn cancel_pause_and_resume() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "1");
    h.save("b", "2");
    let t = h.transfers();
    h.input(Input::Cancel { file: fid("a") }).unwrap();
    assert!(h
        .commands()
        .contains(&Command::AbortTransfer { task: t[0].task }));
    assert_eq!(h.local("a").upload, Error);
    assert_eq!(h.local("a").last_error.as_ref().unwrap().code, "cancelled");
    assert!(
        h.events().iter().any(|e| matches!(e, Event::TransferError {
            kind: TransferKind::Upload, code, retry_in_ms: None, ..
        } if code == "cancelled")),
        "the app is told"
    );
    assert_eq!(
        h.input(Input::TransferDone {
            task: t[0].task,
            term: t[0].term,
            downloaded_hash: None
        }),
        Err(EngineError::UnknownTask),
        "a late result of a cancelled transfer is ignored"
    );
    h.input(Input::Pause).unwrap();
    assert!(h
        .commands()
        .contains(&Command::AbortTransfer { task: t[1].task }));
    assert_eq!(h.local("b").upload, Queued);
    h.input(Input::RetryErrors).unwrap();
    assert!(h.transfers().is_empty(), "paused");
    h.input(Input::Resume).unwrap();
    assert_eq!(h.transfers().len(), 2);
    assert_eq!(
        h.input(Input::Cancel { file: fid("nope") })
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[test]
fn edit_during_upload_never_attaches_old_key_to_new_content() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "v1");
    let up1 = h.transfers().remove(0);
    h.edit("f", "v2");
    // The v1 upload is no longer wanted: aborted, its bytes deleted (nothing references v1).
    let cmds = h.commands();
    assert!(
        cmds.contains(&Command::AbortTransfer { task: up1.task }),
        "{cmds:?}"
    );
    assert!(cmds.contains(&Command::DeleteLocalBytes { hash: hash("v1") }));
    let up2 = cmds
        .iter()
        .find_map(|c| match c {
            Command::StartTransfer(t) => Some(t.clone()),
            _ => None,
        })
        .expect("v2 uploads");
    assert_eq!(up2.hash, hash("v2"));
    // Even if the driver still reports v1 done, nothing changes.
    assert!(h
        .input(Input::TransferDone {
            task: up1.task,
            term: up1.term,
            downloaded_hash: None
        })
        .is_err());
    h.done(&up2);
    let row = h.e.table().get(&fid("f")).unwrap();
    assert_eq!(row.content_hash, hash("v2"));
    assert_eq!(
        row.remote_key.as_ref().unwrap().as_str(),
        format!("{STORE}/{}", hash("v2"))
    );
}

#[test]
fn shared_content_is_deleted_only_when_unreferenced() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "same");
    h.save("b", "same");
    let t = h.transfers();
    assert_eq!(t.len(), 1);
    h.done(&t[0]);
    h.commands();
    h.delete("a");
    let cmds = h.commands();
    assert!(
        !cmds.iter().any(|c| matches!(
            c,
            Command::DeleteLocalBytes { .. } | Command::DeleteRemote { .. }
        )),
        "b still uses the bytes: {cmds:?}"
    );
    assert!(h.local("b").has_local_copy());
    h.delete("b");
    let cmds = h.commands();
    assert!(cmds.contains(&Command::DeleteLocalBytes { hash: hash("same") }));
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::DeleteRemote { .. })),
        "grace period first"
    );
    h.advance(60_000);
    let del = h
        .commands()
        .iter()
        .find_map(|c| match c {
            Command::DeleteRemote { task, term, key } => Some((*task, *term, key.clone())),
            _ => None,
        })
        .expect("remote delete once unreferenced");
    assert_eq!(del.2.as_str(), format!("{STORE}/{}", hash("same")));
    h.input(Input::RemoteDeleteDone {
        task: del.0,
        term: del.1,
        result: Ok(()),
    })
    .unwrap();
    assert!(h.e.snapshot().garbage.is_empty());
}

#[test]
fn content_saved_again_before_the_remote_delete_is_kept() {
    let mut h = H::new(Mode::Remote);
    h.save("a", "same");
    h.lead(1);
    let t = h.transfers();
    h.done(&t[0]);
    h.input(Input::Pause).unwrap();
    h.delete("a");
    assert_eq!(h.e.snapshot().garbage, vec![hash("same")]);
    h.save("b", "same");
    h.input(Input::Resume).unwrap();
    assert!(!h
        .commands()
        .iter()
        .any(|c| matches!(c, Command::DeleteRemote { .. })));
    assert!(h.e.snapshot().garbage.is_empty());
}

#[test]
fn progress_is_throttled_with_first_and_last_delivered() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", &"x".repeat(1000));
    let t = h.transfers().remove(0);
    h.events();
    for i in 1..=9u64 {
        h.input(Input::TransferProgress {
            task: t.task,
            term: t.term,
            loaded: i * 100,
            total: 1000,
            resume: None,
        })
        .unwrap();
        h.now = h.now.after(10);
    }
    let progress = |ev: Vec<Event>| -> Vec<u64> {
        ev.into_iter()
            .filter_map(|e| match e {
                Event::TransferProgress { loaded, .. } => Some(loaded),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        progress(h.events()),
        vec![100],
        "only the first within the interval"
    );
    h.advance(200);
    assert_eq!(
        progress(h.events()),
        vec![900],
        "trailing update delivered by the timer"
    );
    h.done(&t);
    assert_eq!(
        progress(h.events()),
        vec![1000],
        "the last one always arrives"
    );
}

#[test]
fn stalled_transfer_is_aborted_and_retried() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "x");
    let t = h.transfers().remove(0);
    h.advance(30_000);
    let cmds = h.commands();
    assert!(cmds.contains(&Command::AbortTransfer { task: t.task }));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::TransferError { code, .. } if code == "timeout")));
    h.advance(2_000);
    assert_eq!(h.transfers().len(), 1);
}

#[test]
fn commits_are_acknowledged_only_once_durable() {
    let mut h = H::new(Mode::LocalOnly);
    h.auto_persist = false;
    let op = h.save("f", "x");
    let batch = h.persist_batch("a persist batch");
    // Confirmed locally within the same step: logged, and no longer pending.
    assert_eq!((batch.log.len(), batch.pending_put.len()), (1, 0));
    assert_eq!(batch.local_put.len(), 1);
    h.input(Input::PersistFailed {
        batch: batch.id,
        failure: Failure::Storage {
            quota: true,
            message: "full".into(),
        },
    })
    .unwrap();
    let ev = h.events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::StorageError { code, .. } if code == "quota_exceeded")));
    assert!(!ev.contains(&Event::Committed { op }));
    h.advance(100);
    let retry = h.persist_batch("persist retried");
    assert_eq!(retry.local_put, batch.local_put);
    assert_eq!(retry.rows, batch.rows);
    h.input(Input::Persisted { batch: retry.id }).unwrap();
    assert!(h.events().contains(&Event::Committed { op }));
}

#[test]
fn local_only_mode_never_touches_the_network() {
    let mut h = H::new(Mode::LocalOnly);
    h.lead(1);
    h.save("f", "x");
    h.edit("f", "y");
    h.delete("f");
    h.advance(120_000);
    for c in h.commands() {
        assert!(
            matches!(
                c,
                Command::DeleteLocalBytes { .. } | Command::ListLocalBytes
            ),
            "unexpected command in local-only mode: {c:?}"
        );
    }
    assert_eq!(h.e.table().cursor(), Seq(3), "confirmed locally");
    assert!(!h.e.is_busy());
}

#[test]
fn local_only_files_are_settled_once_stored() {
    let mut h = H::new(Mode::LocalOnly);
    h.save("f", "x");
    assert_eq!((h.local("f").upload, h.local("f").download), (Done, Done));
    assert!(!h.e.status().has_pending);
}

#[test]
fn gaps_in_live_delivery_are_filled_by_a_pull_and_duplicates_ignored() {
    let mut h = H::new(Mode::Remote);
    h.log = vec![1, 2, 3]
        .into_iter()
        .map(|n| ConfirmedEvent {
            seq: Seq(n),
            id: EventId {
                client: ClientId::new("other").unwrap(),
                n,
            },
            event: created(&format!("f{n}"), &format!("c{n}")),
        })
        .collect();
    let third = h.log[2].clone();
    // Deliver only the third: the engine pulls the rest.
    h.input(Input::Live {
        events: vec![third.clone()],
    })
    .unwrap();
    assert_eq!(h.e.table().cursor(), Seq(3));
    h.input(Input::Live {
        events: vec![third.clone(), third],
    })
    .unwrap();
    assert_eq!(h.e.files().count(), 3);
}

#[test]
fn an_invalid_confirmed_event_is_skipped_and_reported() {
    let mut h = H::new(Mode::Remote);
    let h1 = hash("x");
    let foreign = FileEvent::Updated(FileUpdated {
        id: fid("f"),
        path: "files/f".into(),
        remote_key: Some(RemoteKey::for_content(
            &StoreId::new("elsewhere").unwrap(),
            &h1,
        )),
        content_hash: h1,
        info: FileInfo {
            name: "f".into(),
            mime_type: "".into(),
            size: 1,
        },
        metadata: MetadataPatch::Keep,
        updated_at: Millis(1),
        expected_content_hash: None,
        previous_content_hash: None,
    });
    h.remote(vec![created("f", "x"), foreign, created("g", "y")]);
    assert_eq!(h.e.table().cursor(), Seq(3));
    assert!(h.e.table().get(&fid("f")).unwrap().remote_key.is_none());
    assert!(h.e.table().get(&fid("g")).is_some());
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::SyncError { code, .. } if code == "invalid_remote_key")));
}

#[test]
fn bootstrap_runs_only_on_empty_state() {
    let mut h = H::new(Mode::Remote);
    h.remote(vec![created("f", "x"), uploaded_by_other("f", "x")]);
    let mut snap = h.e.snapshot();
    // Empty per-client state: every file is reconciled (the joining device downloads).
    snap.local.clear();
    let mut fresh = H::with(config(Mode::Remote), snap.clone());
    assert_eq!(fresh.local("f").download, Queued);
    fresh.lead(1);
    assert_eq!(fresh.transfers().len(), 1);
    // Non-empty state is trusted as stored: no scan, nothing rewritten at start.
    let mut snap2 = h.e.snapshot();
    snap2.local[0].path = "as-stored".into();
    let kept = H::with(config(Mode::Remote), snap2);
    assert_eq!(kept.local("f").path, "as-stored");
}

#[test]
fn sync_status_tracks_transfers() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "1");
    h.save("b", "2");
    h.save("c", "3");
    let s = h.e.status();
    assert_eq!((s.uploading_count, s.queued_upload_count), (2, 1));
    assert!(s.is_syncing && s.has_pending);
}

#[test]
fn uploaded_is_not_synced_until_the_server_confirms_the_attach() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f1", "x");
    let t = h.transfers();
    assert!(
        !h.e.file(&fid("f1")).unwrap().display.is_synced,
        "create confirmed, no key yet: not synced"
    );
    h.auto_push = false;
    h.done(&t[0]);
    // The bytes are on the server, the event carrying the key is not.
    let view = h.e.file(&fid("f1")).unwrap();
    assert!(view.display.is_uploaded && !view.display.is_synced);
    let s = h.e.status();
    assert_eq!(s.unconfirmed_event_count, 1);
    assert!(
        s.has_pending && s.is_syncing,
        "unconfirmed events are pending work"
    );
    assert!(
        !h.events().contains(&Event::SyncComplete),
        "not complete while an event is unconfirmed"
    );
    answer_push(&mut h, |e| e);
    let view = h.e.file(&fid("f1")).unwrap();
    assert!(view.display.is_synced);
    let s = h.e.status();
    assert_eq!(s.unconfirmed_event_count, 0);
    assert!(!s.has_pending && !s.is_syncing);
    assert!(h.events().contains(&Event::SyncComplete));
}

#[test]
fn history_keeps_recent_events() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "1");
    let kinds: Vec<&Event> = h.e.history().iter().map(|(_, e)| e).collect();
    assert!(kinds
        .iter()
        .any(|e| matches!(e, Event::TransferStart { .. })));
    assert!(kinds.iter().any(|e| matches!(e, Event::SyncStart)));
}

#[test]
fn commit_errors_are_typed_and_change_nothing() {
    let mut h = H::new(Mode::Remote);
    h.save("a", "1");
    let before = h.e.snapshot();
    let r = h.input(Input::Commit {
        op: OpId(99),
        event: Box::new(created("a", "2")),
    });
    assert_eq!(r.unwrap_err().code(), "already_exists");
    let r = h.input(Input::Commit {
        op: OpId(100),
        event: Box::new(FileEvent::Deleted(FileDeleted {
            id: fid("zz"),
            deleted_at: Millis(1),
        })),
    });
    assert_eq!(r.unwrap_err().code(), "not_found");
    assert_eq!(h.e.snapshot(), before);
}

#[test]
fn rate_limit_waits_at_least_retry_after() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "x");
    let t = h.transfers().remove(0);
    h.fail(
        &t,
        Failure::RateLimited {
            retry_after_ms: Some(20_000),
        },
    );
    h.advance(19_000);
    assert!(h.transfers().is_empty());
    h.advance(1_000);
    assert_eq!(h.transfers().len(), 1);
}

#[test]
fn local_bytes_are_deleted_only_once_the_change_is_durable() {
    let mut h = H::new(Mode::LocalOnly);
    h.save("f", "v1");
    h.auto_persist = false;
    h.edit("f", "v2");
    let cmds = h.commands();
    assert!(
        !cmds.contains(&Command::DeleteLocalBytes { hash: hash("v1") }),
        "v1 is the file's only copy until the edit is durable"
    );
    let batch = cmds
        .iter()
        .find_map(|c| match c {
            Command::Persist(b) => Some(b.id),
            _ => None,
        })
        .unwrap();
    // A failed write keeps the bytes; the retried one lets them go.
    h.input(Input::PersistFailed {
        batch,
        failure: Failure::Storage {
            quota: false,
            message: "io".into(),
        },
    })
    .unwrap();
    assert!(!h
        .commands()
        .contains(&Command::DeleteLocalBytes { hash: hash("v1") }));
    h.advance(100);
    let retry = h
        .commands()
        .into_iter()
        .find_map(|c| match c {
            Command::Persist(b) => Some(b.id),
            _ => None,
        })
        .unwrap();
    h.input(Input::Persisted { batch: retry }).unwrap();
    assert!(h
        .commands()
        .contains(&Command::DeleteLocalBytes { hash: hash("v1") }));
}

/// Answers the engine's pending push, the server storing each event as `server` rewrites it.
fn answer_push(h: &mut H, server: impl Fn(FileEvent) -> FileEvent) {
    let (request, events) = h
        .commands()
        .into_iter()
        .find_map(|c| match c {
            Command::Push { request, events } => Some((request, events)),
            _ => None,
        })
        .expect("a push");
    let mut confirmed = Vec::new();
    for ev in events {
        let c = ConfirmedEvent {
            seq: Seq(h.log.len() as u64 + 1),
            id: ev.id,
            event: server(ev.event),
        };
        h.log.push(c.clone());
        confirmed.push(c);
    }
    h.input(Input::Pushed { request, confirmed }).unwrap();
}

/// A server that does not hold the uploaded bytes: it stores attaches without their key.
fn clear_key(mut e: FileEvent) -> FileEvent {
    if let FileEvent::Updated(u) = &mut e {
        u.remote_key = None;
    }
    e
}

#[test]
fn an_attach_the_server_stripped_makes_the_file_upload_again_after_a_backoff() {
    let mut h = H::new(Mode::Remote);
    h.auto_push = false;
    h.lead(1);
    h.save("f", "x");
    answer_push(&mut h, |e| e);
    let t = h.transfers().remove(0);
    h.done(&t);
    // The server no longer holds the bytes (deleted meanwhile): it stores the attach without
    // its key. The file is not uploaded: it uploads again, once the backoff is over.
    answer_push(&mut h, clear_key);
    assert!(h.e.table().get(&fid("f")).unwrap().remote_key.is_none());
    let retry_in = h
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::TransferError {
                code, retry_in_ms, ..
            } if code == "remote_key_cleared" => retry_in_ms,
            _ => None,
        })
        .expect("a typed upload error with a retry");
    assert!(
        h.transfers().is_empty(),
        "no upload before the backoff ends"
    );
    assert_eq!(h.local("f").upload, Queued);
    h.advance(retry_in);
    assert_eq!(h.transfers().len(), 1, "uploaded again");
}

#[test]
fn a_server_that_keeps_clearing_the_key_stops_the_uploads_within_the_budget() {
    let mut h = H::new(Mode::Remote);
    h.auto_push = false;
    h.lead(1);
    h.save("f", "x");
    answer_push(&mut h, |e| e);
    let mut uploads = 0;
    let mut events = Vec::new();
    while let Some(t) = h.transfers().pop() {
        uploads += 1;
        assert!(uploads <= 20, "the uploads never stop");
        h.done(&t);
        answer_push(&mut h, clear_key);
        events.extend(h.events());
        let retry_in = events.iter().rev().find_map(|e| match e {
            Event::TransferError { retry_in_ms, .. } => Some(*retry_in_ms),
            _ => None,
        });
        if let Some(Some(ms)) = retry_in {
            h.advance(ms);
        }
    }
    let budget = h.e.config().retry.max_retries as usize + 1;
    assert_eq!(uploads, budget, "one upload per attempt of the budget");
    let row = h.local("f");
    assert_eq!(row.upload, Error);
    assert_eq!(row.last_error.unwrap().code, "remote_key_cleared");
    assert!(events.iter().any(|e| matches!(e,
        Event::TransferExhausted { code, .. } if code == "remote_key_cleared")));
    // Nothing more goes out on its own: the log stays bounded.
    let log = h.log.len();
    h.advance(600_000);
    assert!(h.transfers().is_empty());
    assert_eq!(h.log.len(), log);
    // The app asks again: a fresh budget, and the next attach with its key ends it.
    h.input(Input::RetryErrors).unwrap();
    let t = h.transfers().pop().expect("uploads again when asked");
    h.done(&t);
    answer_push(&mut h, |e| e);
    assert!(h.e.file(&fid("f")).unwrap().display.is_synced);
}

#[test]
fn orphaned_bytes_are_deleted_after_a_grace_period_unless_committed() {
    let mut h = H::new(Mode::LocalOnly);
    h.save("f", "kept");
    h.input(Input::LocalBytesFound {
        hashes: vec![hash("kept"), hash("orphan"), hash("saved-soon")],
    })
    .unwrap();
    // A tab commits the bytes it had just stored: no longer an orphan.
    h.save("g", "saved-soon");
    h.advance(59_000);
    assert!(!h
        .commands()
        .iter()
        .any(|c| matches!(c, Command::DeleteLocalBytes { .. })));
    h.advance(1_000);
    let deleted: Vec<ContentHash> = h
        .commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::DeleteLocalBytes { hash } => Some(hash),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![hash("orphan")]);
}

#[test]
fn a_new_leader_looks_for_bytes_its_predecessor_left() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    assert!(h.commands().contains(&Command::ListLocalBytes));
}

#[test]
fn a_listing_taken_while_the_engine_runs_does_not_undo_later_stores_or_deletes() {
    let mut h = H::new(Mode::LocalOnly);
    h.save("old", "old content");
    h.input(Input::InventoryStarted).unwrap();
    // While storage is being listed: a save, and an edit that deletes the old bytes.
    h.save("new", "new content");
    h.edit("old", "edited");
    let deleted = h.commands().contains(&Command::DeleteLocalBytes {
        hash: hash("old content"),
    });
    assert!(deleted);
    // The listing started before both: it has the old bytes and not the new ones.
    h.input(Input::LocalInventory {
        hashes: vec![hash("old content")],
    })
    .unwrap();
    assert!(
        h.local("new").has_local_copy(),
        "stored after the listing began"
    );
    assert!(
        h.local("old").has_local_copy(),
        "edited content stored after it began"
    );
    h.advance(120_000);
    assert!(
        !h.commands().contains(&Command::DeleteLocalBytes {
            hash: hash("new content")
        }),
        "bytes stored during the listing are not orphans"
    );
}

#[test]
fn a_restart_whose_listing_matches_the_rows_reports_no_change() {
    let mut h = H::new(Mode::LocalOnly);
    h.save("a", "alpha");
    h.save("b", "beta");
    let mut h2 = H::with(config(Mode::LocalOnly), h.e.snapshot());
    h2.events();
    h2.input(Input::InventoryStarted).unwrap();
    h2.input(Input::LocalInventory {
        hashes: vec![hash("alpha"), hash("beta")],
    })
    .unwrap();
    // Tabs would get every file again, and the hub would rewrite its files view, at every
    // start of a large store.
    let changed: Vec<Event> = h2
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::FilesChanged { .. }))
        .collect();
    assert_eq!(changed, vec![]);
    // Bytes that vanished meanwhile still show.
    h2.input(Input::InventoryStarted).unwrap();
    h2.input(Input::LocalInventory {
        hashes: vec![hash("alpha")],
    })
    .unwrap();
    assert!(h2.events().contains(&Event::FilesChanged {
        files: vec![fid("b")]
    }));
    assert!(!h2.local("b").has_local_copy());
}

/// Another client's edit of `id` to `content`, made on top of `base`.
fn edited_by_other(id: &str, content: &str, base: &str) -> FileEvent {
    updated_by_other(id, content, None, Some(base))
}

#[test]
fn a_concurrent_edit_over_content_written_here_is_a_conflict_and_keeps_its_bytes() {
    let mut h = H::new(Mode::Remote);
    h.save("f", "v0");
    h.edit("f", "mine");
    assert!(h.local("f").authored);
    h.events();
    // Another device edited v0 without having seen "mine": it comes after, and wins.
    h.remote(vec![edited_by_other("f", "theirs", "v0")]);
    let conflicts: Vec<Event> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Conflict { .. }))
        .collect();
    assert_eq!(
        conflicts,
        vec![Event::Conflict {
            file: fid("f"),
            mine: hash("mine"),
            winner: hash("theirs"),
        }]
    );
    assert!(!h.local("f").authored, "the file now holds their content");
    // Their content arrives; the losing bytes stay for the delete grace period, then go.
    h.lead(1);
    let t = h
        .transfers()
        .into_iter()
        .find(|t| t.kind == TransferKind::Download)
        .expect("their content downloads");
    h.done(&t);
    let deletes = |h: &mut H| {
        h.commands()
            .into_iter()
            .filter(|c| *c == Command::DeleteLocalBytes { hash: hash("mine") })
            .count()
    };
    assert_eq!(deletes(&mut h), 0);
    h.advance(h.e.config().delete_grace_ms - 1);
    assert_eq!(deletes(&mut h), 0, "readable for the whole grace period");
    h.advance(1);
    assert_eq!(deletes(&mut h), 1);
}

#[test]
fn edits_made_with_knowledge_or_over_content_written_elsewhere_are_no_conflict() {
    let mut h = H::new(Mode::Remote);
    h.save("f", "v0");
    h.edit("f", "mine");
    // An edit made on top of ours: the normal case.
    h.remote(vec![edited_by_other("f", "next", "mine")]);
    // A concurrent edit over content we did not write (theirs replaced by a third device's).
    h.remote(vec![edited_by_other("f", "third", "v0")]);
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, Event::Conflict { .. })));
}

#[test]
fn storage_lost_writes_everything_again_reports_what_only_it_held_and_downloads_the_rest() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "on the server");
    let t = h.transfers().remove(0);
    h.done(&t);
    h.input(Input::Pause).unwrap();
    h.save("b", "only here");
    // A save whose batch is being written when the storage goes.
    h.auto_persist = false;
    let op = h.save("c", "in flight");
    h.events();
    h.commands();
    h.input(Input::StorageLost {
        present: vec![hash("in flight")],
    })
    .unwrap();
    let events = h.events();
    assert!(events.contains(&Event::StorageReset {
        lost: vec![fid("b")]
    }));
    // One batch writes everything memory holds to the new database.
    let batch = h.persist_batch("a full batch");
    let rows: Vec<String> = batch.rows.iter().map(|r| r.id.to_string()).collect();
    assert!(rows.contains(&"a".to_string()), "{rows:?}");
    assert_eq!(batch.local_put.len(), 3);
    assert_eq!(batch.pending_put.len(), h.e.table().pending().len());
    assert_eq!(batch.next_event_n, h.e.snapshot().next_event_n);
    // The write in flight is acknowledged once the new batch is durable.
    h.input(Input::Persisted { batch: batch.id }).unwrap();
    assert!(h.events().contains(&Event::Committed { op }));
    // Nothing claims bytes that are gone; what the server has downloads again.
    assert!(!h.e.file(&fid("a")).unwrap().display.has_local_copy);
    assert!(!h.e.file(&fid("b")).unwrap().display.has_local_copy);
    assert!(h.e.file(&fid("c")).unwrap().display.has_local_copy);
    h.input(Input::Resume).unwrap();
    let t = h.transfers();
    assert!(
        t.iter()
            .any(|t| t.kind == TransferKind::Download && t.hash == hash("on the server")),
        "{t:?}"
    );
}

#[test]
fn another_clients_confirmed_event_never_deletes_a_pending_event_of_ours() {
    // The pending table is keyed by event number alone: a foreign event with the number of
    // one of ours must not delete ours (it did, and a restart then lost the save).
    let mut h = H::new(Mode::Remote);
    h.auto_push = false;
    h.save("a", "1");
    h.save("b", "2");
    h.commands();
    h.auto_persist = false;
    h.remote(vec![created("theirs", "3")]);
    let batch = h.persist_batch("a batch for the confirmed event");
    let me = h.e.config().client.clone();
    assert!(
        batch.pending_delete.iter().all(|id| id.client == me),
        "{:?}",
        batch.pending_delete
    );
    assert_eq!(h.e.table().pending().len(), 2);
}

/// A view built mid-transfer carries the bytes moved so far (a tab opened then shows them),
/// and 0 once the transfer is over.
#[test]
fn a_files_view_carries_the_bytes_its_running_transfer_moved() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", &"x".repeat(1000));
    let t = h.transfers().remove(0);
    let moved = |h: &H| {
        let f = h.e.file(&fid("f")).unwrap();
        (f.uploaded_bytes, f.downloaded_bytes)
    };
    assert_eq!(moved(&h), (0, 0), "started, nothing reported yet");
    h.input(Input::TransferProgress {
        task: t.task,
        term: t.term,
        loaded: 400,
        total: 1000,
        resume: None,
    })
    .unwrap();
    assert_eq!(moved(&h), (400, 0));
    h.done(&t);
    assert_eq!(moved(&h), (0, 0), "done: no transfer runs");
}

fn checkpoint(h: &mut H, t: &TransferOrder, resume: &str) {
    h.input(Input::TransferProgress {
        task: t.task,
        term: t.term,
        loaded: 1,
        total: 3,
        resume: Some(resume.into()),
    })
    .unwrap();
}

fn aborted_uploads(h: &mut H) -> Vec<(RemoteKey, String)> {
    h.commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::AbortUpload { key, resume } => Some((key, resume)),
            _ => None,
        })
        .collect()
}

/// A multipart upload's checkpoints are persisted, survive a restart, go to the next attempt
/// (another leader's), and are forgotten once the upload is done.
#[test]
fn a_multipart_upload_resumes_from_its_last_checkpoint_across_a_restart() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "big");
    let t = h.transfers().remove(0);
    assert_eq!(t.resume, None, "a first attempt starts afresh");
    h.auto_persist = false;
    checkpoint(&mut h, &t, "upload-1 1");
    let b = h.persist_batch("the checkpoint is persisted");
    assert_eq!(
        b.uploads,
        Some(vec![(hash("big"), "upload-1 1".to_string())])
    );
    h.e.handle(h.now, Input::Persisted { batch: b.id }).unwrap();
    h.auto_persist = true;
    // The browser restarts: the next leader's attempt gets the resume text.
    let mut h = H::with(config(Mode::Remote), h.e.snapshot());
    h.lead(2);
    let t = h.transfers().remove(0);
    assert_eq!(t.resume.as_deref(), Some("upload-1 1"));
    assert!(aborted_uploads(&mut h).is_empty());
    // The leader goes; the next one resumes from the newer checkpoint.
    checkpoint(&mut h, &t, "upload-1 1 2");
    h.input(Input::LeaderLost { term: t.term }).unwrap();
    h.lead(3);
    let t = h.transfers().remove(0);
    assert_eq!(t.resume.as_deref(), Some("upload-1 1 2"));
    h.auto_persist = false;
    h.done(&t);
    let b = h.persist_batch("done forgets the upload");
    assert_eq!(b.uploads, Some(vec![]));
    assert!(
        aborted_uploads(&mut h).is_empty(),
        "a finished upload is not aborted"
    );
    assert!(h.e.snapshot().uploads.is_empty());
}

/// An upload whose content is no longer wanted (deleted, edited) is aborted on the server
/// with its resume text; so is one restored without its file.
#[test]
fn an_abandoned_multipart_upload_is_aborted_on_the_server() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "big");
    let t = h.transfers().remove(0);
    checkpoint(&mut h, &t, "upload-1");
    h.delete("f");
    assert_eq!(
        aborted_uploads(&mut h),
        vec![(
            RemoteKey::for_content(&StoreId::new(STORE).unwrap(), &hash("big")),
            "upload-1".to_string()
        )]
    );
    assert!(h.e.snapshot().uploads.is_empty());

    // Restored with a checkpoint of content no file wants: aborted at start.
    let mut snap = h.e.snapshot();
    snap.uploads = vec![(hash("gone"), "upload-2".to_string())];
    let mut h = H::with(config(Mode::Remote), snap);
    assert_eq!(aborted_uploads(&mut h).len(), 1);
    assert!(h.e.snapshot().uploads.is_empty());
}

/// Checkpoints name a running upload of the current term; `""` forgets the upload.
#[test]
fn checkpoints_are_refused_unless_they_name_a_running_upload() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("f", "big");
    let t = h.transfers().remove(0);
    let stale = Input::TransferProgress {
        task: t.task,
        term: Term(t.term.0 + 5),
        loaded: 0,
        total: 3,
        resume: Some("x".into()),
    };
    assert!(h.input(stale).is_err());
    let unknown = Input::TransferProgress {
        task: TaskId(999),
        term: t.term,
        loaded: 0,
        total: 3,
        resume: Some("x".into()),
    };
    assert_eq!(h.input(unknown), Err(EngineError::UnknownTask));
    checkpoint(&mut h, &t, "upload-1");
    checkpoint(&mut h, &t, "");
    assert!(h.e.snapshot().uploads.is_empty());
}

/// An upload of content whose remote delete is running, aborted before it ends: its bytes may
/// land after the delete, so the content is deleted once more after the grace period (the
/// simulation found the orphan this leaves otherwise).
#[test]
fn garbage_found_again_while_its_delete_runs_is_deleted_once_more() {
    let mut h = H::new(Mode::Remote);
    h.lead(1);
    h.save("a", "same");
    let t = h.transfers().remove(0);
    h.done(&t);
    h.delete("a");
    h.advance(60_000);
    let delete = |h: &mut H| {
        h.commands().into_iter().find_map(|c| match c {
            Command::DeleteRemote { task, term, .. } => Some((task, term)),
            _ => None,
        })
    };
    let (task, term) = delete(&mut h).expect("the first delete runs");
    // Saved again while the delete runs: an upload starts, then the file goes before it ends.
    h.save("b", "same");
    let up = h.transfers().remove(0);
    assert_eq!(up.hash, hash("same"));
    h.delete("b");
    h.input(Input::RemoteDeleteDone {
        task,
        term,
        result: Ok(()),
    })
    .unwrap();
    assert_eq!(
        h.e.snapshot().garbage,
        vec![hash("same")],
        "deleted once more"
    );
    h.advance(60_000);
    assert!(delete(&mut h).is_some(), "after the grace period");
}

/// A device with a budget of `bytes`, leading, with files other clients uploaded.
fn budgeted(bytes: u64, files: &[(&str, &str)]) -> H {
    let mut cfg = config(Mode::Remote);
    cfg.budget = Some(bytes);
    cfg.max_downloads = 8;
    // Downloads here finish minutes apart.
    cfg.stall_timeout_ms = u64::MAX / 4;
    let mut h = H::with(cfg, Snapshot::default());
    h.lead(1);
    for (id, content) in files {
        h.remote(vec![created(id, content), uploaded_by_other(id, content)]);
    }
    h
}

/// Runs the downloads out now, one at a time, a minute apart (so each arrives later).
fn download_all(h: &mut H) {
    for t in h.transfers() {
        h.advance(61_000);
        h.done(&t);
    }
}

/// The local deletes out so far (other outputs stay).
fn deleted_locally(h: &mut H) -> Vec<ContentHash> {
    let mut out = Vec::new();
    h.seen.retain(|o| match o {
        Output::Command(Command::DeleteLocalBytes { hash }) => {
            out.push(*hash);
            false
        }
        _ => true,
    });
    out
}

#[test]
fn the_byte_budget_evicts_the_least_recently_read_and_they_come_back_on_a_read() {
    let mut h = budgeted(10, &[("a", "aaaa"), ("b", "bbbb")]);
    download_all(&mut h);
    assert_eq!(h.e.storage_use().held, 8);
    // `a` is read: `b` is now the least recently read.
    h.advance(61_000);
    h.input(Input::Accessed {
        files: vec![fid("a")],
    })
    .unwrap();
    h.remote(vec![created("c", "cccc"), uploaded_by_other("c", "cccc")]);
    download_all(&mut h);
    let b = h.local("b");
    assert_eq!((b.local_hash, b.download, b.evicted), (None, Remote, true));
    assert!(h.local("a").has_local_copy() && h.local("c").has_local_copy());
    assert_eq!(deleted_locally(&mut h), vec![hash("bbbb")]);
    // `c` just arrived: kept from eviction for the grace (the app may be reading it).
    assert_eq!(
        h.e.storage_use(),
        StorageUse {
            budget: Some(10),
            held: 8,
            evictable: 4
        }
    );
    let shown = h.e.file(&fid("b")).unwrap().display;
    assert!(!shown.can_display && !shown.has_local_copy);
    // Evicted stays remote-only, though downloads are eager, until the app reads it...
    h.advance(61_000);
    assert!(h.transfers().is_empty());
    h.remote(vec![uploaded_by_other("b", "bbbb")]);
    assert!(
        h.transfers().is_empty(),
        "re-applying the row keeps it evicted"
    );
    // ... then it comes back, and the least recently read of the others goes (`a`, read
    // before `c` arrived).
    h.input(Input::Prioritize { file: fid("b") }).unwrap();
    download_all(&mut h);
    assert!(h.local("b").has_local_copy() && !h.local("b").evicted);
    assert_eq!(h.local("a").download, Remote);
    assert_eq!(deleted_locally(&mut h), vec![hash("aaaa")]);
    // New content of an evicted file downloads again under the eager policy.
    h.remote(vec![updated_by_other("a", "AAAA", None, Some("aaaa"))]);
    assert_eq!(h.local("a").download, InProgress);
}

#[test]
fn eviction_never_takes_bytes_only_here_pinned_or_in_use() {
    let mut h = budgeted(1, &[("p", "pinned"), ("u", "in use")]);
    h.input(Input::Pin {
        file: fid("p"),
        pinned: true,
    })
    .unwrap();
    h.input(Input::InUse {
        hashes: vec![hash("in use")],
    })
    .unwrap();
    download_all(&mut h);
    // Saved here, uploaded, but the server has not confirmed the attach yet.
    h.save("mine", "only here");
    let up = h.transfers();
    h.auto_push = false;
    h.done(&up[0]);
    for id in ["p", "u", "mine"] {
        assert!(h.local(id).has_local_copy(), "{id} kept");
    }
    assert!(deleted_locally(&mut h).is_empty());
    assert_eq!(h.e.storage_use().evictable, 0);
    assert_eq!(h.e.storage_use().held, 21);
    // The server confirms: `mine` exists elsewhere now; the tab lets go of `u`.
    answer_push(&mut h, |e| e);
    h.input(Input::InUse { hashes: vec![] }).unwrap();
    // Read just now: kept through the grace, then evicted without any other trigger.
    h.input(Input::Accessed {
        files: vec![fid("u")],
    })
    .unwrap();
    assert!(h.local("u").has_local_copy() && h.local("mine").has_local_copy());
    h.advance(10_000);
    assert!(h.local("p").has_local_copy(), "pinned stays");
    assert!(!h.local("u").has_local_copy() && !h.local("mine").has_local_copy());
    let mut gone = deleted_locally(&mut h);
    gone.sort_unstable();
    let mut want = vec![hash("in use"), hash("only here")];
    want.sort_unstable();
    assert_eq!(gone, want);
    // Unpinned, it goes too, at the next pass (at most one a second: a pass walks every row).
    h.input(Input::Pin {
        file: fid("p"),
        pinned: false,
    })
    .unwrap();
    assert!(h.local("p").has_local_copy(), "the last pass ran just now");
    h.advance(1_000);
    assert_eq!(deleted_locally(&mut h), vec![hash("pinned")]);
    assert_eq!(h.e.storage_use().held, 0);
}

#[test]
fn a_restart_in_the_middle_of_an_eviction_loses_nothing() {
    let mut h = budgeted(4, &[("a", "aaaa")]);
    download_all(&mut h);
    let before = h.e.snapshot();
    h.auto_persist = false;
    h.remote(vec![created("b", "bbbb"), uploaded_by_other("b", "bbbb")]);
    download_all(&mut h);
    assert_eq!(h.local("a").download, Remote, "evicted in memory");
    assert!(
        deleted_locally(&mut h).is_empty(),
        "bytes wait for the rows without them to be durable"
    );
    let during = h.e.snapshot();
    // Crashed before the batch was durable: the old rows, both contents on disk.
    for (snap, evicted) in [(before, false), (during, true)] {
        let mut cfg = config(Mode::Remote);
        cfg.budget = Some(4);
        cfg.stall_timeout_ms = u64::MAX / 4;
        let mut r = H::with(cfg, snap);
        assert_eq!(r.local("a").evicted, evicted);
        r.input(Input::LocalInventory {
            hashes: vec![hash("aaaa"), hash("bbbb")],
        })
        .unwrap();
        // Whatever was durable, every row with a copy has its bytes (checked after every
        // step), and the budget is kept again, deleting only what is on the server.
        r.lead(2);
        download_all(&mut r);
        assert!(r.e.storage_use().held <= 4);
        for c in deleted_locally(&mut r) {
            assert!(c == hash("aaaa") || c == hash("bbbb"));
        }
    }
}

#[test]
fn the_downloads_policy_queues_remote_files_but_not_evicted_ones() {
    let mut h = lazy_device_with_abc();
    h.input(Input::Prioritize { file: fid("c") }).unwrap();
    let read = h.transfers();
    h.done(&read[0]);
    let mut evicted = h.local("b");
    evicted.evicted = true;
    h.e.local.put(evicted);
    h.input(Input::Want {
        files: vec![fid("a"), fid("b"), fid("c"), fid("nope")],
    })
    .unwrap();
    let t = h.transfers();
    assert_eq!(
        t.iter().map(|t| t.hash).collect::<Vec<_>>(),
        vec![hash("a")],
        "only the remote-only file that was not evicted"
    );
    assert_eq!(h.local("b").download, Remote);
    assert_eq!(h.local("c").download, Done);
    // Not urgent (a read's download goes ahead of it).
    let task = &h.e.sched.tasks[&(TransferKind::Download, hash("a"))];
    assert!(!task.urgent);
    h.done(&t[0]);
    assert!(h.local("a").has_local_copy());
}
