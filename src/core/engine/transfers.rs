//! The transfer scheduler: one task per content and direction, the ready queue, running transfers, progress, retries and the app's controls.

use super::*;

/// The transfer scheduler: one task per content and direction, the queue of ready ones (by
/// direction, urgency, then age) and the running ones by id. Keeps: a running transfer is a
/// task in the running state, and back; the queue holds ready tasks only.
#[derive(Debug)]
pub(super) struct Scheduler {
    pub(super) tasks: FxMap<(TransferKind, ContentHash), Task>,
    pub(super) ready: BTreeSet<(TransferKind, bool, u64, ContentHash)>,
    pub(super) running: FxMap<TaskId, (TransferKind, ContentHash)>,
    pub(super) next_task: u64,
    pub(super) next_order: u64,
    /// Contents whose attach the server recorded without the remote key, this session: how
    /// many times in a row, and not before when to upload again. A server that keeps clearing
    /// it (it does not hold the bytes the signer took) costs retries from the budget, not an
    /// upload loop. Gone once an attach of the content is confirmed with its key.
    pub(super) cleared: FxMap<ContentHash, (u32, Millis)>,
    /// Multipart uploads under way: the resume text the leader reported last, by content.
    /// Keeps: each has an upload task; it goes with the task (aborted on the server unless the
    /// upload finished). Persisted whole when it changes.
    pub(super) uploads: Uploads,
}

/// Multipart uploads under way: resume texts by content, sorted (a few: one per upload that
/// runs or waits; a sorted list costs less wasm than one more map type).
#[derive(Debug, Default)]
pub(super) struct Uploads(Vec<(ContentHash, String)>);

impl Uploads {
    pub(super) fn restore(list: Vec<(ContentHash, String)>) -> Uploads {
        let mut u = Uploads::default();
        for (hash, resume) in list {
            u.insert(hash, resume);
        }
        u
    }

    fn find(&self, hash: &ContentHash) -> Result<usize, usize> {
        self.0.binary_search_by(|(h, _)| h.cmp(hash))
    }

    pub(super) fn get(&self, hash: &ContentHash) -> Option<&String> {
        self.find(hash).ok().map(|i| &self.0[i].1)
    }

    pub(super) fn insert(&mut self, hash: ContentHash, resume: String) {
        match self.find(&hash) {
            Ok(i) => self.0[i].1 = resume,
            Err(i) => self.0.insert(i, (hash, resume)),
        }
    }

    pub(super) fn remove(&mut self, hash: &ContentHash) -> Option<String> {
        self.find(hash).ok().map(|i| self.0.remove(i).1)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &ContentHash> {
        self.0.iter().map(|(h, _)| h)
    }

    /// Every upload, sorted by content (as a store lists them).
    pub(super) fn list(&self) -> Vec<(ContentHash, String)> {
        self.0.clone()
    }
}

impl Scheduler {
    /// Panics with the first broken invariant of the scheduler (debug builds, after every step).
    #[cfg(debug_assertions)]
    pub(super) fn check(&self) {
        // transfers: a running transfer is a task in the running state, and back.
        for (task, key) in &self.running {
            match self.tasks.get(key).map(|t| t.state) {
                Some(TaskState::Running { id, .. }) if id == *task => {}
                other => panic!("transfers: running {task:?} {key:?} has task state {other:?}"),
            }
        }
        for (key, t) in &self.tasks {
            if let TaskState::Running { id, .. } = t.state {
                assert_eq!(
                    self.running.get(&id),
                    Some(key),
                    "transfers: task {key:?} runs as {id:?}, unknown to the running set"
                );
            }
        }
        // transfers: a multipart upload under way has its upload task.
        for hash in self.uploads.keys() {
            assert!(
                self.tasks.contains_key(&(TransferKind::Upload, *hash)),
                "transfers: multipart upload of {hash:?} without an upload task"
            );
        }
        // transfers: the queue holds ready tasks, each once.
        for (kind, _, _, hash) in &self.ready {
            let state = self.tasks.get(&(*kind, *hash)).map(|t| t.state);
            assert_eq!(
                state,
                Some(TaskState::Ready),
                "transfers: queued {kind:?} {hash:?} is not ready"
            );
        }
    }
}

impl Default for Scheduler {
    fn default() -> Scheduler {
        Scheduler {
            tasks: FxMap::default(),
            ready: BTreeSet::new(),
            running: FxMap::default(),
            next_task: 1,
            next_order: 0,
            cleared: FxMap::default(),
            uploads: Uploads::default(),
        }
    }
}

impl Engine {
    /// Files of the view with this content whose status of `kind` is `status`.
    pub(super) fn rows_with(
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

    pub(super) fn set_rows_status(
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

    pub(super) fn wanted(&self, kind: TransferKind, hash: ContentHash) -> bool {
        self.table.view_refs(&hash).any(|id| {
            self.local
                .get(id)
                .is_some_and(|r| r.content_hash == hash && r.status(kind).is_active())
        })
    }

    pub(super) fn eligible(&self, kind: TransferKind, hash: ContentHash) -> bool {
        match kind {
            // Upload only for a file the server has confirmed with this content: then the
            // server knows the content is referenced before any byte arrives, and refuses a
            // concurrent delete of it. The bytes must be here, of course. (Ready uploads also
            // wait for a recent view before they start: see `start_transfers`.)
            TransferKind::Upload => {
                self.held.bytes.contains(&hash)
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
    pub(super) fn sync_task(&mut self, kind: TransferKind, hash: ContentHash) {
        let wanted = self.cfg.mode == Mode::Remote && self.wanted(kind, hash);
        match (wanted, self.sched.tasks.get(&(kind, hash)).map(|t| t.state)) {
            (true, None) => {
                self.sched.next_order += 1;
                // An upload whose attach the server cleared waits out its backoff first.
                let cleared = match kind {
                    TransferKind::Upload => self.sched.cleared.get(&hash).copied(),
                    TransferKind::Download => None,
                };
                let (retries, until) = cleared.unwrap_or((0, self.now));
                self.sched.tasks.insert(
                    (kind, hash),
                    Task {
                        retries,
                        urgent: false,
                        order: self.sched.next_order,
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
                    self.sched.running.remove(&id);
                    self.emit_command(Command::AbortTransfer { task: id });
                }
                self.remove_task(kind, hash);
            }
            _ => {}
        }
    }

    pub(super) fn ready_key(
        kind: TransferKind,
        hash: ContentHash,
        t: &Task,
    ) -> (TransferKind, bool, u64, ContentHash) {
        (kind, !t.urgent, t.order, hash)
    }

    /// A transfer that stopped without failing (leader gone, offline): ready again, its files
    /// queued.
    pub(super) fn requeue(&mut self, kind: TransferKind, hash: ContentHash) {
        self.set_ready(kind, hash);
        self.set_rows_status(
            kind,
            hash,
            TransferStatus::InProgress,
            TransferStatus::Queued,
        );
    }

    pub(super) fn set_ready(&mut self, kind: TransferKind, hash: ContentHash) {
        if let Some(t) = self.sched.tasks.get_mut(&(kind, hash)) {
            t.state = TaskState::Ready;
            t.throttle = Throttle::default();
            self.sched.ready.insert(Self::ready_key(kind, hash, t));
        }
    }

    /// Removes a task. A multipart upload it had under way is aborted on the server (a
    /// finished upload forgets its resume before).
    pub(super) fn remove_task(&mut self, kind: TransferKind, hash: ContentHash) -> Option<Task> {
        let t = self.sched.tasks.remove(&(kind, hash))?;
        self.sched.ready.remove(&Self::ready_key(kind, hash, &t));
        // Its content may be evictable now.
        self.held.budget_dirty = true;
        if kind == TransferKind::Upload {
            self.abort_upload(hash);
        }
        Some(t)
    }

    /// Forgets the multipart upload of `hash`, if one is under way, and has the server abort it.
    fn abort_upload(&mut self, hash: ContentHash) {
        if let Some(resume) = self.sched.uploads.remove(&hash) {
            self.persist.dirty.uploads = true;
            self.emit_command(Command::AbortUpload {
                key: RemoteKey::for_content(&self.cfg.store, &hash),
                resume,
            });
        }
    }

    /// Aborts the multipart uploads restored without an upload task (their files were deleted
    /// or edited while no leader ran).
    pub(super) fn prune_uploads(&mut self) {
        let orphans: Vec<ContentHash> = self
            .sched
            .uploads
            .keys()
            .filter(|h| !self.sched.tasks.contains_key(&(TransferKind::Upload, **h)))
            .copied()
            .collect();
        for hash in orphans {
            self.abort_upload(hash);
        }
    }

    pub(super) fn can_run(&self) -> bool {
        self.cfg.mode == Mode::Remote && self.lead.leader && self.sync.online && !self.lead.paused
    }

    pub(super) fn start_transfers(&mut self) {
        if !self.can_run() {
            return;
        }
        for kind in KINDS {
            let limit = match kind {
                // Uploads start only from a recent view (a pull reached the head since the
                // engine started or came back online): a client offline for longer than the
                // delete grace could otherwise send content whose file was deleted, and whose
                // remote delete ran, meanwhile.
                TransferKind::Upload if !self.sync.caught_up => 0,
                TransferKind::Upload => self.cfg.max_uploads,
                TransferKind::Download => self.cfg.max_downloads,
            };
            while self
                .sched
                .running
                .values()
                .filter(|(k, _)| *k == kind)
                .count()
                < limit
            {
                let Some(key) = self
                    .sched
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
                self.sched.ready.remove(&key);
                self.start_transfer(kind, key.3);
            }
        }
    }

    pub(super) fn start_transfer(&mut self, kind: TransferKind, hash: ContentHash) {
        let Some(info) = self
            .table
            .view_refs(&hash)
            .find_map(|id| self.table.get(id))
            .map(|r| r.info.clone())
        else {
            self.remove_task(kind, hash);
            return;
        };
        let task = TaskId(self.sched.next_task);
        self.sched.next_task += 1;
        if let Some(t) = self.sched.tasks.get_mut(&(kind, hash)) {
            t.state = TaskState::Running {
                id: task,
                last_activity: self.now,
            };
        }
        self.sched.running.insert(task, (kind, hash));
        if kind == TransferKind::Upload && self.unattached.insert(hash) {
            // From now on the bytes may land remotely, even if this attempt is aborted or its
            // leader dies: remember them until a confirmed row points at them.
            self.persist.dirty.unattached = true;
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
            term: self.lead.term,
            kind,
            hash,
            key: RemoteKey::for_content(&self.cfg.store, &hash),
            size: info.size,
            mime_type: info.mime_type,
            resume: match kind {
                TransferKind::Upload => self.sched.uploads.get(&hash).cloned(),
                TransferKind::Download => None,
            },
        }));
    }

    pub(super) fn take_running(
        &mut self,
        task: TaskId,
    ) -> Result<(TransferKind, ContentHash), EngineError> {
        self.sched
            .running
            .remove(&task)
            .ok_or(EngineError::UnknownTask)
    }

    pub(super) fn on_progress(
        &mut self,
        task: TaskId,
        term: Term,
        loaded: u64,
        total: u64,
        resume: Option<String>,
    ) -> Result<(), EngineError> {
        self.check_term(term)?;
        let &(kind, hash) = self
            .sched
            .running
            .get(&task)
            .ok_or(EngineError::UnknownTask)?;
        if let Some(r) = resume {
            if kind != TransferKind::Upload {
                return Err(EngineError::UnknownTask);
            }
            if r.is_empty() {
                self.sched.uploads.remove(&hash);
            } else {
                self.sched.uploads.insert(hash, r);
            }
            self.persist.dirty.uploads = true;
        }
        let (now, interval) = (self.now, self.cfg.progress_interval_ms);
        let Some(t) = self.sched.tasks.get_mut(&(kind, hash)) else {
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

    pub(super) fn emit_progress(
        &mut self,
        kind: TransferKind,
        hash: ContentHash,
        loaded: u64,
        total: u64,
    ) {
        for file in self.rows_with(kind, hash, TransferStatus::InProgress) {
            self.emit_event(Event::TransferProgress {
                kind,
                file,
                loaded,
                total,
            });
        }
    }

    pub(super) fn flush_progress(&mut self) {
        let (now, interval) = (self.now, self.cfg.progress_interval_ms);
        let mut due = Vec::new();
        for ((kind, hash), t) in self.sched.tasks.iter_mut() {
            if let Some((l, tot)) = t.throttle.flush(now, interval) {
                due.push((*kind, *hash, l, tot));
            }
        }
        for (kind, hash, l, tot) in due {
            self.emit_progress(kind, hash, l, tot);
        }
    }

    pub(super) fn check_stalls(&mut self) {
        let limit = self.cfg.stall_timeout_ms;
        let stalled: Vec<TaskId> = self
            .sched
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
            if let Some((kind, hash)) = self.sched.running.remove(&task) {
                self.emit_command(Command::AbortTransfer { task });
                self.on_transfer_failed(kind, hash, Failure::Timeout);
            }
        }
    }

    pub(super) fn on_transfer_done(
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
            .sched
            .tasks
            .get(&(kind, hash))
            .is_some_and(|t| t.throttle.loaded() < total || total == 0);
        if held {
            self.emit_progress(kind, hash, total, total);
        }
        if kind == TransferKind::Upload && self.sched.uploads.remove(&hash).is_some() {
            // Completed: nothing to abort.
            self.persist.dirty.uploads = true;
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
                        let fresh = reconcile(&row, self.local.get(&id), true, self.cfg.downloads);
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
    pub(super) fn attach_upload(&mut self, hash: ContentHash) {
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

    pub(super) fn on_transfer_failed(
        &mut self,
        kind: TransferKind,
        hash: ContentHash,
        failure: Failure,
    ) {
        let Some(task) = self.sched.tasks.get(&(kind, hash)) else {
            return;
        };
        let retries = task.retries;
        let files = self.rows_with(kind, hash, TransferStatus::InProgress);
        let decision = self.cfg.retry.decide(&failure, retries, &mut self.rng);
        match decision {
            Decision::WaitOnline => {
                self.set_offline();
                self.requeue(kind, hash);
            }
            Decision::RetryIn(ms) => {
                let until = self.now.after(ms);
                if let Some(t) = self.sched.tasks.get_mut(&(kind, hash)) {
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
    pub(super) fn end_backoffs(&mut self, all: bool) {
        let now = self.now;
        let due: Vec<(TransferKind, ContentHash)> = self
            .sched
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, TaskState::Backoff(until) if all || until <= now))
            .map(|(k, _)| *k)
            .collect();
        for (kind, hash) in due {
            self.set_ready(kind, hash);
        }
        if all {
            for st in self.gc.garbage.values_mut() {
                if let GcState::Waiting(until, n) = *st {
                    *st = GcState::Waiting(until.min(now), n);
                }
            }
        }
    }

    /// Moves the file's transfers to the head of their queues; a lazy file's download (remote
    /// only so far) is asked for.
    pub(super) fn prioritize(&mut self, file: &FileId) -> Result<(), EngineError> {
        let row = self
            .local
            .get(file)
            .ok_or_else(|| EngineError::NotFound { id: file.clone() })?;
        let hash = row.content_hash;
        if row.download == TransferStatus::Remote {
            self.update_local(file, |r| r.download = TransferStatus::Queued);
            self.sync_task(TransferKind::Download, hash);
        }
        for kind in KINDS {
            let Some(t) = self.sched.tasks.get(&(kind, hash)) else {
                continue;
            };
            let was_ready = self.sched.ready.remove(&Self::ready_key(kind, hash, t));
            let Some(t) = self.sched.tasks.get_mut(&(kind, hash)) else {
                continue;
            };
            t.urgent = true;
            if matches!(t.state, TaskState::Backoff(_)) || was_ready {
                self.set_ready(kind, hash);
            }
        }
        Ok(())
    }

    pub(super) fn cancel(&mut self, file: &FileId) -> Result<(), EngineError> {
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

    pub(super) fn retry_errors(&mut self) {
        self.sched.cleared.clear();
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
}
