//! Deadlines as data: one slot per named timer; the engine's `poll_timeout` is their minimum.

use super::ids::Millis;

/// The engine's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Retry a failed persist.
    Persist,
    /// Probe the server's health while offline.
    Health,
    /// Retry a failed push or pull.
    Sync,
    /// Safety-net pull, in case a live delivery was lost.
    PullInterval,
    /// The earliest transfer or remote delete whose retry delay ends.
    Retry,
    /// The earliest held progress update.
    Progress,
    /// The earliest running transfer that may have stalled.
    Stall,
    /// The earliest orphaned local content whose grace period ends, or retained content (the
    /// losing side of a conflict) whose time is up.
    Orphans,
    /// Over the byte budget: the earliest recently read content whose grace ends.
    Budget,
}

const COUNT: usize = 9;

impl Timer {
    const ALL: [Timer; COUNT] = [
        Timer::Persist,
        Timer::Health,
        Timer::Sync,
        Timer::PullInterval,
        Timer::Retry,
        Timer::Progress,
        Timer::Stall,
        Timer::Orphans,
        Timer::Budget,
    ];
}

/// The timer table.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    at: [Option<Millis>; COUNT],
}

impl Timers {
    /// Sets (or with `None` stops) a timer.
    pub fn set(&mut self, t: Timer, at: Option<Millis>) {
        self.at[t as usize] = at;
    }
    /// When a timer fires.
    pub fn get(&self, t: Timer) -> Option<Millis> {
        self.at[t as usize]
    }
    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.at.iter().flatten().min().copied()
    }
    /// Stops and returns the timers due at `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<Timer> {
        Timer::ALL
            .into_iter()
            .filter(|t| {
                let due = self.get(*t).is_some_and(|at| at <= now);
                if due {
                    self.set(*t, None);
                }
                due
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_minimum_and_expire_takes_only_due_timers() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Health, Some(Millis(50)));
        t.set(Timer::Retry, Some(Millis(10)));
        assert_eq!(t.next(), Some(Millis(10)));
        assert_eq!(t.expire(Millis(20)), vec![Timer::Retry]);
        assert_eq!(t.next(), Some(Millis(50)));
    }
}
