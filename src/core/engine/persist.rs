//! Persistence batches: what is written, when, and what waits for it to be durable.

use super::*;

/// Persistence batches: what changed since the last batch, the batch being written, and what
/// waits for a batch to be durable. Keeps: a write is acknowledged only once durable; bytes go
/// only after the rows that dropped them are durable.
#[derive(Debug)]
pub(super) struct Persistence {
    pub(super) dirty: Dirty,
    pub(super) batch_in_flight: Option<InFlight>,
    pub(super) next_batch: u64,
    /// App writes to acknowledge with the next batch.
    pub(super) unbatched_ops: Vec<OpId>,
    /// Contents to delete locally once the state that stopped referencing them is durable.
    pub(super) unbatched_gc: Vec<ContentHash>,
    /// Failed writes in a row (the retry delay grows with them).
    pub(super) persist_failures: u32,
}

impl Default for Persistence {
    fn default() -> Persistence {
        Persistence {
            dirty: Dirty::default(),
            batch_in_flight: None,
            next_batch: 1,
            unbatched_ops: Vec::new(),
            unbatched_gc: Vec::new(),
            persist_failures: 0,
        }
    }
}

impl Engine {
    pub(super) fn flush_persist(&mut self) {
        if self.persist.batch_in_flight.is_some()
            || self.persist.dirty.is_empty()
            || self.timers.get(Timer::Persist).is_some()
        {
            return;
        }
        let mut keys = std::mem::take(&mut self.persist.dirty);
        let mut b = PersistBatch {
            id: self.persist.next_batch,
            cursor: self.table.cursor(),
            next_event_n: self.next_event_n,
            log: keys.log.clone(),
            ..PersistBatch::default()
        };
        self.persist.next_batch += 1;
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
            b.garbage = Some(self.gc.garbage.keys().copied().collect());
        }
        if keys.uploads {
            b.uploads = Some(self.sched.uploads.list());
        }
        keys.meta = true;
        self.persist.batch_in_flight = Some(InFlight {
            id: b.id,
            next_event_n: b.next_event_n,
            keys,
            ops: std::mem::take(&mut self.persist.unbatched_ops),
            gc: std::mem::take(&mut self.persist.unbatched_gc),
        });
        self.emit_command(Command::Persist(b));
    }

    pub(super) fn on_persisted(&mut self, batch: u64) {
        let Some(done) = self.persist.batch_in_flight.take_if(|f| f.id == batch) else {
            return;
        };
        self.durable_event_n = self.durable_event_n.max(done.next_event_n);
        self.persist.persist_failures = 0;
        for op in done.ops {
            self.emit_event(Event::Committed { op });
        }
        self.delete_local(done.gc);
    }

    pub(super) fn on_persist_failed(&mut self, batch: u64, failure: Failure) {
        let Some(InFlight { keys, ops, gc, .. }) =
            self.persist.batch_in_flight.take_if(|f| f.id == batch)
        else {
            return;
        };
        // Everything in the batch is dirty again; the next batch re-reads current values.
        let d = &mut self.persist.dirty;
        let later_log = std::mem::replace(&mut d.log, keys.log);
        d.log.extend(later_log);
        d.rows.extend(keys.rows);
        d.pending.extend(keys.pending);
        d.local.extend(keys.local);
        d.meta = true;
        d.unattached |= keys.unattached;
        d.garbage |= keys.garbage;
        d.uploads |= keys.uploads;
        self.persist.unbatched_gc.extend(gc);
        let mut ops = ops;
        ops.append(&mut self.persist.unbatched_ops);
        self.persist.unbatched_ops = ops;
        self.emit_event(Event::StorageError {
            code: failure.code().into(),
            message: failure.to_string(),
        });
        let delay = (100u64 << self.persist.persist_failures.min(6)).min(5_000);
        self.persist.persist_failures += 1;
        self.timers.set(Timer::Persist, Some(self.now.after(delay)));
    }

    /// Starts over on emptied storage, from what memory holds (see [`Input::StorageLost`]).
    pub(super) fn storage_lost(&mut self, present: Vec<ContentHash>) {
        // Transfers read or write the storage that is gone: stop them (they queue again).
        self.stop_running(true);
        // The batch being written went with the old database: its writes are made again (with
        // everything else, below), and its app writes acknowledged once they are durable.
        if let Some(f) = self.persist.batch_in_flight.take() {
            let mut ops = f.ops;
            ops.append(&mut self.persist.unbatched_ops);
            self.persist.unbatched_ops = ops;
        }
        self.timers.set(Timer::Persist, None);
        self.persist.persist_failures = 0;
        // Nothing is left to collect: the bytes are gone.
        self.persist.unbatched_gc.clear();
        self.held.gc_local.clear();
        self.held.orphans.clear();
        self.held.retained.clear();
        self.held.journal = None;
        let before = std::mem::replace(&mut self.held.bytes, present.into_iter().collect());
        let lost: Vec<FileId> = self
            .table
            .rows()
            .filter(|r| r.is_live() && r.remote_key.is_none())
            .filter(|r| {
                before.contains(&r.content_hash) && !self.held.bytes.contains(&r.content_hash)
            })
            .map(|r| r.id.clone())
            .collect();
        // Local copies are what storage holds now; statuses re-derive (downloads queue).
        let ids: Vec<FileId> = self.local.rows().map(|r| r.file_id.clone()).collect();
        let gone: Vec<FileId> = self
            .local
            .rows()
            .filter(|r| r.local_hash.is_some_and(|h| !self.held.bytes.contains(&h)))
            .map(|r| r.file_id.clone())
            .collect();
        for id in &gone {
            self.update_local(id, LocalRow::drop_copy);
        }
        self.touched.extend(ids.iter().cloned());
        // Everything in memory goes to the new database.
        let d = &mut self.persist.dirty;
        d.rows
            .extend(self.table.confirmed_rows().map(|r| r.id.clone()));
        d.pending
            .extend(self.table.pending().iter().map(|p| p.id.clone()));
        d.local.extend(ids);
        d.meta = true;
        d.unattached = true;
        d.garbage = true;
        d.uploads = true;
        self.emit_event(Event::StorageReset { lost });
    }
}

impl Engine {
    /// persist: this client's events are numbered in order below the next number, and only
    /// numbers below the durable mark may have been pushed (debug builds, after every step).
    #[cfg(debug_assertions)]
    pub(super) fn check_numbering(&self) {
        let pending = self.table.pending();
        assert!(
            pending.windows(2).all(|w| w[0].id.n < w[1].id.n),
            "persist: pending events out of order"
        );
        assert!(
            pending
                .iter()
                .all(|p| p.id.client == self.cfg.client && p.id.n < self.next_event_n),
            "persist: a pending event is not this client's, or numbered past the counter"
        );
        assert!(
            self.durable_event_n <= self.next_event_n
                && self.sync.pushed_upto <= self.durable_event_n,
            "persist: pushed {} / durable {} / next {} out of order",
            self.sync.pushed_upto,
            self.durable_event_n,
            self.next_event_n
        );
    }
}
