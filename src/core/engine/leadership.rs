//! Leadership: terms, the leader running transfers, and what a new leader recovers.

use super::*;

impl Engine {
    pub(super) fn check_term(&self, term: Term) -> Result<(), EngineError> {
        if term != self.term || !self.leader {
            return Err(EngineError::StaleTerm {
                got: term,
                current: self.term,
            });
        }
        Ok(())
    }

    pub(super) fn on_leader_elected(&mut self, term: Term) -> Result<(), EngineError> {
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
    pub(super) fn stop_running(&mut self, abort: bool) {
        for (task, (kind, hash)) in std::mem::take(&mut self.sched.running) {
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
}
