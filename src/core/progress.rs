//! Progress throttling: at most one update per interval per transfer, and never a lost ending.
//!
//! The first update of a transfer and the one that reaches `total` are always delivered; an
//! update that arrives too soon is held and delivered when the interval has passed (trailing
//! edge), unless a newer one replaces it first. Progress never goes backwards.

use super::ids::Millis;

/// Throttle state of one transfer.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    last_sent: Option<Millis>,
    sent_loaded: Option<u64>,
    held: Option<(u64, u64)>,
}

impl Throttle {
    /// Offers an update; returns what to deliver now, if anything.
    #[must_use]
    pub fn offer(
        &mut self,
        now: Millis,
        interval_ms: u64,
        loaded: u64,
        total: u64,
    ) -> Option<(u64, u64)> {
        if self.sent_loaded.is_some_and(|s| loaded < s) {
            return None;
        }
        let due = match self.last_sent {
            None => true,
            Some(t) => now.since(t) >= interval_ms,
        };
        if due || (total > 0 && loaded >= total) {
            self.held = None;
            self.last_sent = Some(now);
            self.sent_loaded = Some(loaded);
            Some((loaded, total))
        } else {
            self.held = Some((loaded, total));
            None
        }
    }

    /// When a held update becomes due.
    pub fn deadline(&self, interval_ms: u64) -> Option<Millis> {
        self.held.and(self.last_sent).map(|t| t.after(interval_ms))
    }

    /// Delivers the held update if it is due.
    #[must_use]
    pub fn flush(&mut self, now: Millis, interval_ms: u64) -> Option<(u64, u64)> {
        if self.deadline(interval_ms).is_some_and(|d| d <= now) {
            let (l, t) = self.held.take()?;
            self.last_sent = Some(now);
            self.sent_loaded = Some(l);
            return Some((l, t));
        }
        None
    }

    /// Bytes moved so far, as last reported.
    pub fn loaded(&self) -> u64 {
        self.held.map(|h| h.0).or(self.sent_loaded).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_always_delivered_middle_throttled_then_trailing() {
        let mut t = Throttle::default();
        assert_eq!(t.offer(Millis(0), 100, 1, 10), Some((1, 10)));
        assert_eq!(t.offer(Millis(10), 100, 2, 10), None);
        assert_eq!(t.offer(Millis(20), 100, 3, 10), None);
        assert_eq!(t.deadline(100), Some(Millis(100)));
        assert_eq!(t.flush(Millis(99), 100), None);
        assert_eq!(t.flush(Millis(100), 100), Some((3, 10)));
        assert_eq!(t.deadline(100), None);
        assert_eq!(
            t.offer(Millis(120), 100, 10, 10),
            Some((10, 10)),
            "last always delivered"
        );
        assert_eq!(t.offer(Millis(300), 100, 5, 10), None, "never backwards");
    }
}
