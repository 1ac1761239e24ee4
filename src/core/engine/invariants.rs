//! The invariants the engine keeps between steps, each with the module that keeps it. In debug
//! builds the engine checks them after every step, so the native tests and the simulation (1,000
//! seeds per test run, soaks of 100,000 and more) run with them on; release builds trust them.
//!
//! The simulation checks what must hold once the world is quiet (every browser converged on the
//! server's table, nothing pending, every live file's bytes local and remote, no leftover bytes,
//! the persisted state equal to the running one; see `tests/sim`); these are the ones that hold
//! at every step in between:
//!
//! | invariant | kept by | checked by |
//! |---|---|---|
//! | a running transfer is a task in the running state, and back; the queue holds ready tasks, each once; a multipart upload under way has its upload task | `transfers` | `Scheduler::check` |
//! | this client's pending events are its own, in order, numbered below the counter; only durable ones were pushed | `persist`, `sync` | `Engine::check_numbering` (`persist.rs`) |
//! | every per-client row follows a live file of the view and its current content | `step` | `Engine::check_rows_follow_view` (`step.rs`) |
//! | a local copy is bytes the byte store holds | `local_bytes` | `LocalBytes::check` |

use super::*;

impl Engine {
    /// Panics with the first broken invariant. Each sub-state checks its own; the ones that
    /// tie two sub-states together are checked by the module that keeps them in step.
    pub(super) fn check_invariants(&self) {
        self.sched.check();
        self.check_numbering();
        self.check_rows_follow_view();
        self.held.check(self.local.rows());
    }
}
