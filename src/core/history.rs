//! A bounded ring buffer of recent engine events, for debugging (what happened before a bug
//! report) without persisting anything.

use std::collections::VecDeque;

use super::engine::Event;
use super::ids::Millis;

/// The last `capacity` events with their times; older ones fall off.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    entries: VecDeque<(Millis, Event)>,
}

impl History {
    /// An empty buffer; `capacity` 0 records nothing.
    pub fn new(capacity: usize) -> History {
        History {
            capacity,
            entries: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    /// Records one event.
    pub fn push(&mut self, at: Millis, event: &Event) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((at, event.clone()));
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &(Millis, Event)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest() {
        let mut h = History::new(2);
        for i in 0..5 {
            h.push(Millis(i), &Event::Online);
        }
        let times: Vec<u64> = h.iter().map(|(t, _)| t.0).collect();
        assert_eq!(times, vec![3, 4]);
        let mut none = History::new(0);
        none.push(Millis(1), &Event::Online);
        assert_eq!(none.iter().count(), 0);
    }
}
