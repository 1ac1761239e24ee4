//! Event sync: pushes, pulls, live delivery, and connectivity.

use super::*;

/// Event sync with the server: the push and pull in flight, what was pushed, events that came
/// early, and whether the server is believed reachable. Keeps: confirmed events apply in
/// sequence order, each once; only durable events are pushed.
#[derive(Debug)]
pub(super) struct SyncState {
    pub(super) online: bool,
    pub(super) health_failures: u32,
    pub(super) next_request: u64,
    /// The push in flight and the event number after its last event.
    pub(super) push_in_flight: Option<(RequestId, u64)>,
    /// Events numbered below this were pushed (maybe not confirmed yet).
    pub(super) pushed_upto: u64,
    pub(super) pull_in_flight: Option<RequestId>,
    pub(super) pull_wanted: bool,
    /// A pull reached the server's head since this engine started or was last offline: its
    /// view of which files are live is recent. Uploads wait for it (see `start_transfers`).
    pub(super) caught_up: bool,
    pub(super) sync_failures: u32,
    /// Confirmed events that arrived ahead of the cursor.
    pub(super) early: BTreeMap<Seq, ConfirmedEvent>,
}

impl SyncState {
    /// A store that syncs wants a pull at once.
    pub(super) fn new(remote: bool) -> SyncState {
        SyncState {
            online: true,
            health_failures: 0,
            next_request: 1,
            push_in_flight: None,
            pushed_upto: 0,
            pull_in_flight: None,
            pull_wanted: remote,
            caught_up: false,
            sync_failures: 0,
            early: BTreeMap::new(),
        }
    }
}

impl Engine {
    pub(super) fn next_request(&mut self) -> RequestId {
        self.sync.next_request += 1;
        RequestId(self.sync.next_request)
    }

    pub(super) fn maybe_sync(&mut self) {
        if self.cfg.mode != Mode::Remote
            || !self.sync.online
            || self.timers.get(Timer::Sync).is_some()
        {
            return;
        }
        if self.sync.push_in_flight.is_none() {
            let events: Vec<ClientEvent> = self
                .table
                .pending()
                .iter()
                .filter(|p| p.id.n >= self.sync.pushed_upto && p.id.n < self.durable_event_n)
                .take(self.cfg.batch_limit)
                .cloned()
                .collect();
            if let Some(last) = events.last() {
                let request = self.next_request();
                self.sync.push_in_flight = Some((request, last.id.n + 1));
                self.emit_command(Command::Push { request, events });
            }
        }
        if self.sync.pull_wanted && self.sync.pull_in_flight.is_none() {
            self.sync.pull_wanted = false;
            let request = self.next_request();
            self.sync.pull_in_flight = Some(request);
            self.emit_command(Command::Pull {
                request,
                after: self.table.cursor(),
                limit: self.cfg.batch_limit,
            });
        }
    }

    pub(super) fn on_pushed(
        &mut self,
        request: RequestId,
        confirmed: Vec<ConfirmedEvent>,
    ) -> Result<(), EngineError> {
        let Some((_, upto)) = self.sync.push_in_flight.take_if(|(r, _)| *r == request) else {
            return Err(EngineError::UnknownTask);
        };
        self.sync.pushed_upto = self.sync.pushed_upto.max(upto);
        self.sync_ok();
        // Our own events with their positions: no need to wait for the live channel.
        self.receive(confirmed);
        Ok(())
    }

    pub(super) fn on_sync_failed(
        &mut self,
        request: RequestId,
        failure: Failure,
    ) -> Result<(), EngineError> {
        if self
            .sync
            .push_in_flight
            .take_if(|(r, _)| *r == request)
            .is_none()
            && self
                .sync
                .pull_in_flight
                .take_if(|r| *r == request)
                .is_none()
        {
            return Err(EngineError::UnknownTask);
        }
        self.sync.pull_wanted = true;
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
            .sync
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
        self.sync.sync_failures += 1;
        self.timers.set(Timer::Sync, Some(self.now.after(delay)));
        Ok(())
    }

    pub(super) fn sync_ok(&mut self) {
        self.sync.sync_failures = 0;
        self.set_online();
    }

    /// Takes confirmed events from any source; applies the contiguous run after the cursor and
    /// keeps later ones until the gap is filled (by a pull).
    pub(super) fn receive(&mut self, events: Vec<ConfirmedEvent>) {
        let cursor = self.table.cursor();
        for ev in events {
            if ev.seq > cursor {
                self.sync.early.insert(ev.seq, ev);
            }
        }
        while self.sync.early.len() > EARLY_LIMIT {
            self.sync.early.pop_last();
        }
        let mut run = Vec::new();
        let mut next = Seq(cursor.0 + 1);
        while let Some(ev) = self.sync.early.remove(&next) {
            run.push(ev);
            next = Seq(next.0 + 1);
        }
        if !self.sync.early.is_empty() {
            self.sync.pull_wanted = true;
        }
        if run.is_empty() {
            return;
        }
        let applied = self.table.apply_confirmed(&self.cfg.store, run);
        self.persist.dirty.meta = true;
        // Confirmed rows changed: content the server now knows may be evictable.
        self.held.budget_dirty = true;
        for (seq, e) in &applied.rejected {
            self.emit_event(Event::SyncError {
                code: e.code().into(),
                message: format!("skipped invalid event at seq {}: {e}", seq.0),
                context: "apply",
            });
        }
        for ev in &applied.applied {
            self.persist.dirty.rows.insert(ev.event.file_id().clone());
            // Our own events leave the pending table. Only ours: it is keyed by event number
            // alone, and another client's event with the same number must not delete ours.
            if ev.id.client == self.cfg.client {
                self.persist.dirty.pending.insert(ev.id.clone());
            }
        }
        self.persist
            .dirty
            .log
            .extend(applied.applied.iter().cloned());
        // Our own events, confirmed: their files are now synced as shown (or closer to it).
        for ev in &applied.applied {
            if ev.id.client == self.cfg.client {
                self.changed.insert(ev.event.file_id().clone());
                if let FileEvent::Updated(u) = &ev.event {
                    if u.remote_key.is_some() {
                        self.sched.cleared.remove(&u.content_hash);
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
                if self.held.bytes.contains(&o.replaced) {
                    self.held
                        .retained
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
    pub(super) fn on_key_cleared(&mut self, hash: ContentHash) {
        let failure = Failure::KeyCleared;
        let retries = self.sched.cleared.get(&hash).map_or(0, |c| c.0);
        let files: Vec<FileId> = self
            .table
            .view_refs(&hash)
            .filter(|id| self.local.get(id).is_some_and(|r| r.content_hash == hash))
            .cloned()
            .collect();
        match self.cfg.retry.decide(&failure, retries, &mut self.rng) {
            Decision::RetryIn(ms) => {
                self.sched
                    .cleared
                    .insert(hash, (retries + 1, self.now.after(ms)));
                self.report_failure(TransferKind::Upload, files, &failure, Some(ms));
            }
            // Not an offline failure: only the budget ends it.
            Decision::WaitOnline | Decision::GiveUp => {
                self.sched.cleared.remove(&hash);
                self.report_failure(TransferKind::Upload, files, &failure, None);
            }
        }
    }

    /// Reports a failed attempt of `kind` for `files`: another attempt in `retry_in_ms`, or
    /// none (`None`: the files go to `error` with the failure as their last error, and the
    /// transfer is exhausted).
    pub(super) fn report_failure(
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

    /// Content we uploaded stays our responsibility until a confirmed live row points at it;
    /// if nothing references it any more, it is garbage. (A deleted row that took our attach
    /// after its delete carries the key but keeps nothing alive.)
    pub(super) fn check_unattached(&mut self) {
        let mut changed = false;
        for h in self.unattached.clone() {
            let attached = self
                .table
                .view_refs(&h)
                .filter_map(|id| self.table.confirmed(id))
                .any(|r| r.is_live() && r.content_hash == h && r.remote_key.is_some());
            if attached || !self.table.is_referenced(&h) {
                self.unattached.remove(&h);
                changed = true;
                if !attached {
                    self.add_garbage(h);
                }
            }
        }
        self.persist.dirty.unattached |= changed;
    }

    pub(super) fn add_garbage(&mut self, h: ContentHash) {
        let remote = self.cfg.mode == Mode::Remote;
        // Only the server's view matters: content referenced by a pending event alone may be
        // deleted, because the upload for that event happens after the server confirms it.
        let in_use = self.table.is_confirmed_referenced(&h);
        if !remote || in_use {
            return;
        }
        match self.gc.garbage.get(&h) {
            None => {
                // Wait out the grace period: an aborted upload of this content may still land.
                let at = self.now.after(self.cfg.delete_grace_ms);
                self.gc.garbage.insert(h, GcState::Waiting(at, 0));
                self.persist.dirty.garbage = true;
            }
            // Its delete runs, and bytes of an upload started since may land after it.
            Some(GcState::Running(..)) => {
                self.gc.again.insert(h);
            }
            Some(GcState::Waiting(..)) => {}
        }
    }

    pub(super) fn set_online(&mut self) {
        if !self.sync.online {
            self.sync.online = true;
            self.sync.health_failures = 0;
            self.timers.set(Timer::Health, None);
            self.sync.pull_wanted = true;
            self.emit_event(Event::Online);
        }
    }

    pub(super) fn set_offline(&mut self) {
        if self.sync.online && self.cfg.mode == Mode::Remote {
            self.sync.online = false;
            self.sync.caught_up = false;
            self.emit_event(Event::Offline);
            self.schedule_health();
        }
    }

    pub(super) fn schedule_health(&mut self) {
        let exp = self
            .cfg
            .reconnect_base_ms
            .saturating_mul(1 << self.sync.health_failures.min(16))
            .min(self.cfg.max_reconnect_ms);
        let delay = exp / 2 + self.rng.below(exp / 2 + 1);
        self.timers.set(Timer::Health, Some(self.now.after(delay)));
    }
}
