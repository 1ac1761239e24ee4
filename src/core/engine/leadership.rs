//! Leadership: terms, the leader running transfers, and what a new leader recovers.

use super::*;

/// Leadership: the highest term seen, whether a leader runs transfers now, and whether the app
/// paused them. Keeps: reports of an older term are refused.
#[derive(Debug)]
pub(super) struct LeaderState {
    pub(super) term: Term,
    pub(super) leader: bool,
    pub(super) paused: bool,
}

impl Default for LeaderState {
    fn default() -> LeaderState {
        LeaderState {
            term: Term(0),
            leader: false,
            paused: false,
        }
    }
}

impl Engine {
    pub(super) fn check_term(&self, term: Term) -> Result<(), EngineError> {
        if term != self.lead.term || !self.lead.leader {
            return Err(EngineError::StaleTerm {
                got: term,
                current: self.lead.term,
            });
        }
        Ok(())
    }

    pub(super) fn on_leader_elected(&mut self, term: Term) -> Result<(), EngineError> {
        if term <= self.lead.term {
            return Err(EngineError::StaleTerm {
                got: term,
                current: self.lead.term,
            });
        }
        self.stop_running(false);
        self.lead.term = term;
        // The previous leader may have died between storing bytes and reporting them.
        self.emit_command(Command::ListLocalBytes);
        self.lead.leader = true;
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
            self.requeue(kind, hash);
        }
        for st in self.gc.garbage.values_mut() {
            if let GcState::Running(_, n) = *st {
                *st = GcState::Waiting(self.now, n);
            }
        }
    }
}
