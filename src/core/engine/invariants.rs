//! The invariants the engine keeps between steps, each with the module that keeps it. In debug
//! builds the engine checks them after every step, so the native tests and the simulation (1,000
//! seeds per test run, soaks of 100,000 and more) run with them on; release builds trust them.
//!
//! The simulation checks what must hold once the world is quiet (every browser converged on the
//! server's table, nothing pending, every live file's bytes local and remote, no leftover bytes,
//! the persisted state equal to the running one; see `tests/sim`); these are the ones that hold
//! at every step in between.

use super::*;

impl Engine {
    /// Panics with the first broken invariant.
    pub(super) fn check_invariants(&self) {
        self.sched.check();
        // persist: this client's events are numbered in order below the next number, and only
        // numbers below the durable mark may have been pushed.
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
        // step: every per-client row is about a live file of the view, and its current content.
        for r in self.local.rows() {
            let shown = self.table.get(&r.file_id).filter(|v| v.is_live());
            assert_eq!(
                shown.map(|v| v.content_hash),
                Some(r.content_hash),
                "step: the per-client row of {} does not follow the view",
                r.file_id
            );
        }
        // local_bytes: a local copy is bytes the byte store holds.
        for r in self.local.rows() {
            if let Some(h) = r.local_hash {
                assert!(
                    self.held.bytes.contains(&h),
                    "local_bytes: {} claims bytes {h:?} the store does not hold",
                    r.file_id
                );
            }
        }
    }
}
