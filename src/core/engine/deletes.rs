//! Remote deletes: content nothing references any more is deleted from the server after a grace period.

use super::*;

/// Remote deletes: content to delete from the server once nothing references it, with when
/// the next attempt may run. Keeps: content is deleted remotely only when nothing references it.
#[derive(Debug, Default)]
pub(super) struct RemoteGc {
    pub(super) garbage: FxMap<ContentHash, GcState>,
    /// Garbage found again while its delete was running: an upload of it started meanwhile,
    /// and its bytes may land after the delete, so it is deleted once more (after the grace
    /// period). In memory only: a restart turns every running delete into a waiting one.
    pub(super) again: FxSet<ContentHash>,
}

impl Engine {
    pub(super) fn start_deletes(&mut self) {
        // Content referenced again (the same bytes saved anew) is not garbage any more.
        let revived: Vec<ContentHash> = self
            .gc
            .garbage
            .iter()
            .filter(|(h, st)| {
                !matches!(st, GcState::Running(..)) && self.table.is_confirmed_referenced(h)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in revived {
            self.gc.garbage.remove(&h);
            self.persist.dirty.garbage = true;
        }
        if !self.can_run() {
            return;
        }
        let running = self
            .gc
            .garbage
            .values()
            .filter(|s| matches!(s, GcState::Running(..)))
            .count();
        let due: Vec<(ContentHash, u32)> = self
            .gc
            .garbage
            .iter()
            .filter_map(|(h, s)| match *s {
                GcState::Waiting(until, n) if until <= self.now => Some((*h, n)),
                _ => None,
            })
            .take(self.cfg.max_deletes.saturating_sub(running))
            .collect();
        for (h, n) in due {
            let task = TaskId(self.sched.next_task);
            self.sched.next_task += 1;
            self.gc.garbage.insert(h, GcState::Running(task, n));
            self.emit_command(Command::DeleteRemote {
                task,
                term: self.lead.term,
                key: RemoteKey::for_content(&self.cfg.store, &h),
            });
        }
    }

    pub(super) fn on_remote_delete_done(
        &mut self,
        task: TaskId,
        term: Term,
        result: Result<(), Failure>,
    ) -> Result<(), EngineError> {
        self.check_term(term)?;
        let (hash, retries) = self
            .gc
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
            None if self.gc.again.remove(&hash) && !self.table.is_confirmed_referenced(&hash) => {
                let at = self.now.after(self.cfg.delete_grace_ms);
                self.gc.garbage.insert(hash, GcState::Waiting(at, 0));
            }
            None => {
                self.gc.garbage.remove(&hash);
                self.persist.dirty.garbage = true;
            }
            Some((Decision::RetryIn(ms), _)) => {
                self.gc
                    .garbage
                    .insert(hash, GcState::Waiting(self.now.after(ms), retries + 1));
            }
            Some((Decision::WaitOnline, _)) => {
                self.gc
                    .garbage
                    .insert(hash, GcState::Waiting(self.now, retries));
                self.set_offline();
            }
            Some((Decision::GiveUp, f)) => {
                self.gc.garbage.remove(&hash);
                self.gc.again.remove(&hash);
                self.persist.dirty.garbage = true;
                self.emit_event(Event::SyncError {
                    code: f.code().into(),
                    message: format!("could not delete remote content {hash}: {f}"),
                    context: "delete",
                });
            }
        }
        Ok(())
    }
}
