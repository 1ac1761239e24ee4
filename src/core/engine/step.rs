//! The end of every step: per-client rows reconciled, garbage collected, work started, timers re-armed, and outputs queued.

use super::*;

impl Engine {
    pub(super) fn for_mode(&self, mut row: LocalRow) -> LocalRow {
        if self.cfg.mode == Mode::LocalOnly && row.upload == TransferStatus::Queued {
            // Nothing is ever uploaded in local-only mode: stored bytes are all there is to do.
            row.upload = TransferStatus::Done;
        }
        row
    }

    pub(super) fn put_local(&mut self, row: LocalRow) {
        let mut row = self.for_mode(row);
        let id = row.file_id.clone();
        let hash = row.content_hash;
        let before = self.local.get(&id);
        if before == Some(&row) {
            return;
        }
        // Bytes that just arrived count as read now: they are evicted last.
        if let Some(h) = row
            .local_hash
            .filter(|_| before.and_then(|b| b.local_hash) != row.local_hash)
        {
            row.accessed = self.now;
            self.held.recent.insert(h, self.now);
        }
        self.held.budget_dirty = true;
        if let Some(old) = self.local.put(row) {
            // Both the old copy and the old content may have lost their last user.
            self.held.gc_local.extend(old.local_hash);
            self.held.gc_local.insert(old.content_hash);
            self.touched_hashes.insert(old.content_hash);
        }
        self.touched_hashes.insert(hash);
        self.persist.dirty.local.insert(id.clone());
        self.changed.insert(id);
    }

    pub(super) fn update_local(&mut self, id: &FileId, f: impl FnOnce(&mut LocalRow)) {
        if let Some(mut row) = self.local.get(id).cloned() {
            f(&mut row);
            self.put_local(row);
        }
    }

    pub(super) fn reconcile_touched(&mut self) {
        while let Some(id) = self.touched.pop_first() {
            match self.table.get(&id).filter(|r| r.is_live()).cloned() {
                Some(row) => {
                    let here = self.held.bytes.contains(&row.content_hash);
                    let fresh = reconcile(&row, self.local.get(&id), here, self.cfg.downloads);
                    self.put_local(fresh);
                }
                None => {
                    if let Some(old) = self.local.remove(&id) {
                        self.held.budget_dirty = true;
                        self.held.gc_local.extend(old.local_hash);
                        self.held.gc_local.insert(old.content_hash);
                        self.touched_hashes.insert(old.content_hash);
                        self.persist.dirty.local.insert(id.clone());
                    }
                }
            }
            self.changed.insert(id);
        }
    }

    pub(super) fn update_timers(&mut self) {
        let interval = self.cfg.progress_interval_ms;
        let mut progress = None::<Millis>;
        let mut retry = None::<Millis>;
        let mut stall = None::<Millis>;
        for t in self.sched.tasks.values() {
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
        for st in self.gc.garbage.values() {
            // Due entries need no timer: they start as soon as a leader can run them.
            if let GcState::Waiting(until, _) = *st {
                if until > self.now {
                    retry = Some(retry.map_or(until, |r| r.min(until)));
                }
            }
        }
        let orphans = self
            .held
            .orphans
            .values()
            .map(|t| t.after(self.cfg.orphan_grace_ms))
            .chain(self.held.retained.values().copied())
            .min();
        self.timers.set(Timer::Orphans, orphans);
        self.timers.set(Timer::Budget, self.budget_deadline());
        self.timers.set(Timer::Progress, progress);
        self.timers.set(Timer::Retry, retry);
        self.timers.set(Timer::Stall, stall);
    }

    pub(super) fn after_step(&mut self) {
        // Reconciling can touch more files and hashes; iterate until nothing moves.
        loop {
            self.reconcile_touched();
            if self.touched_hashes.is_empty() {
                self.enforce_budget();
            }
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
        if !self.persist.unbatched_gc.is_empty() && self.persist.dirty.is_empty() {
            let gc = std::mem::take(&mut self.persist.unbatched_gc);
            match self.persist.batch_in_flight.as_mut() {
                Some(f) => f.gc.extend(gc),
                None => self.delete_local(gc),
            }
        }
        let busy = !self.sched.tasks.is_empty()
            || !self.gc.garbage.is_empty()
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
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    pub(super) fn emit_command(&mut self, c: Command) {
        self.out.push_back(Output::Command(c));
    }

    pub(super) fn emit_event(&mut self, e: Event) {
        if !matches!(e, Event::TransferProgress { .. }) {
            self.history.push(self.now, &e);
        }
        self.out.push_back(Output::Event(e));
    }
}

impl Engine {
    /// step: every per-client row is about a live file of the view, and its current content
    /// (debug builds, after every step).
    #[cfg(debug_assertions)]
    pub(super) fn check_rows_follow_view(&self) {
        for r in self.local.rows() {
            let shown = self.table.get(&r.file_id).filter(|v| v.is_live());
            assert_eq!(
                shown.map(|v| v.content_hash),
                Some(r.content_hash),
                "step: the per-client row of {} does not follow the view",
                r.file_id
            );
        }
    }
}
