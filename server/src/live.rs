//! Per-store coordination inside one process: the lock that serializes pushes with deletes, and
//! the broadcast channel that feeds live (SSE) subscribers.
//!
//! Invariants:
//! * Everything that must see a consistent store (push: blob presence + store; delete: reference
//!   check + blob delete) runs under [`StoreSlot::lock`].
//! * Subscribers receive batches in sequence order, each once: this process's batches are
//!   broadcast under that lock, and batches that arrive out of order (relayed from another
//!   instance, `crate::relay`) wait in the slot's [`Sequencer`] until the gap before them is
//!   filled (by the batch that belongs there, or by the relay reading it from the log).
//! * A subscriber that falls more than [`LIVE_CAPACITY`] batches behind is dropped (its stream
//!   ends); the client reconnects and pulls, which is always correct because pulls read the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use filesync::core::event::{ConfirmedEvent, WireEnvelope};
use filesync::core::ids::StoreId;
use tokio::sync::broadcast;

/// Batches a live subscriber may lag behind before it is dropped.
pub const LIVE_CAPACITY: usize = 256;

/// One stored batch, as sent to live subscribers.
#[derive(Debug)]
pub struct LiveBatch {
    /// Sequence number of the last event of the batch.
    pub last_seq: u64,
    /// Sequence number of the first event.
    pub first_seq: u64,
    /// The events, in order.
    pub events: Vec<WireEnvelope>,
    /// `{"events": [...]}` of all of them: what most subscribers are sent, serialized once
    /// per batch rather than once per subscriber.
    pub data: String,
}

impl LiveBatch {
    /// The batch of `events` (in sequence order).
    pub fn new(events: &[ConfirmedEvent]) -> LiveBatch {
        let events: Vec<WireEnvelope> = events.iter().map(ConfirmedEvent::to_wire).collect();
        let data = serde_json::json!({ "events": events }).to_string();
        LiveBatch {
            first_seq: events.first().and_then(|e| e.seq).unwrap_or(0),
            last_seq: events.last().and_then(|e| e.seq).unwrap_or(0),
            events,
            data,
        }
    }
}

/// What a store's live subscribers were sent, and the batches that wait for a gap to fill.
#[derive(Debug, Default)]
pub struct Sequencer {
    /// The last sequence number sent (or, for a new subscriber, the head it was told of);
    /// `None` until the first batch or subscriber.
    delivered: Option<u64>,
    /// Batches beyond a gap, by first sequence number.
    waiting: BTreeMap<u64, Arc<LiveBatch>>,
}

impl Sequencer {
    /// Takes `batch` (or, with `None`, only moves on after `delivered` changed) and returns
    /// the batches that can go now, in order. A batch already sent is dropped.
    fn offer(&mut self, batch: Option<Arc<LiveBatch>>) -> Vec<Arc<LiveBatch>> {
        if let Some(batch) = batch {
            let delivered = *self
                .delivered
                .get_or_insert(batch.first_seq.saturating_sub(1));
            if batch.last_seq > delivered {
                self.waiting.insert(batch.first_seq, batch);
            }
        }
        if self.waiting.len() > LIVE_CAPACITY {
            // A gap that does not fill (the log unreadable): move past it; subscribers pull
            // what they missed.
            if let Some((&first, _)) = self.waiting.first_key_value() {
                self.delivered = Some(first - 1);
            }
        }
        let mut ready = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            let delivered = self.delivered.unwrap_or(0);
            if entry.get().first_seq > delivered + 1 {
                break;
            }
            let batch = entry.remove();
            if batch.last_seq > delivered {
                self.delivered = Some(batch.last_seq);
                ready.push(batch);
            }
        }
        ready
    }

    /// The sequence numbers missing before the first waiting batch, if any.
    fn gap(&self) -> Option<(u64, u64)> {
        let (&first, _) = self.waiting.first_key_value()?;
        Some((self.delivered.unwrap_or(0) + 1, first - 1))
    }
}

/// Coordination state of one store.
#[derive(Debug)]
pub struct StoreSlot {
    /// Serializes pushes with deletes (see the module docs).
    pub lock: tokio::sync::Mutex<()>,
    /// Stored batches, for live subscribers.
    pub live: broadcast::Sender<Arc<LiveBatch>>,
    /// What subscribers here were sent (see [`Sequencer`]).
    sequence: Mutex<Sequencer>,
    /// Whether a task is filling a gap (`crate::relay::fill_gaps`).
    pub filling: std::sync::atomic::AtomicBool,
}

impl StoreSlot {
    fn sequencer(&self) -> std::sync::MutexGuard<'_, Sequencer> {
        // Never poisoned in practice: nothing below can panic while it is locked.
        self.sequence.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, ready: Vec<Arc<LiveBatch>>) {
        for batch in ready {
            // No receiver is fine: nobody is listening live.
            let _ = self.live.send(batch);
        }
    }

    /// Sends `events` (one stored batch, in sequence order) to the live subscribers, in
    /// sequence order with what was sent before; returns the gap that holds it back, if any
    /// (the caller reads the missing events from the log and broadcasts them).
    pub fn broadcast(&self, events: &[ConfirmedEvent]) -> Option<(u64, u64)> {
        let Some(last) = events.last() else {
            return self.gap();
        };
        let mut seq = self.sequencer();
        if self.live.receiver_count() == 0 {
            // Nobody listens: no batch to build; the sequence moves on (a subscriber that comes
            // pulls up to the head it is told).
            seq.delivered = Some(seq.delivered.unwrap_or(0).max(last.seq.0));
            seq.waiting.clear();
            return None;
        }
        let ready = seq.offer(Some(Arc::new(LiveBatch::new(events))));
        let gap = seq.gap();
        // Sent under the sequencer's lock, so two callers cannot interleave their batches.
        self.send(ready);
        gap
    }

    /// A subscriber was told the store's head is `seq` (it pulls up to it): where the sequence
    /// starts, when nothing was sent here yet. Later, batches keep flowing from where they
    /// were (a batch at or below a subscriber's head is dropped by that subscriber's filter,
    /// not for the others).
    pub fn note_subscribed(&self, seq: u64) {
        let mut s = self.sequencer();
        if s.delivered.is_none() {
            s.delivered = Some(seq);
            let ready = s.offer(None);
            self.send(ready);
        }
    }

    /// The last sequence number subscribers here have (0: none yet).
    pub fn delivered(&self) -> u64 {
        self.sequencer().delivered.unwrap_or(0)
    }

    /// The events missing before a batch that waits, if any.
    pub fn gap(&self) -> Option<(u64, u64)> {
        self.sequencer().gap()
    }
}

/// The slots of the stores in use: a slot nobody holds and nobody listens to is dropped once the
/// map has grown past twice its size after the last pruning (and at least [`PRUNE_FROM`]
/// entries), so a server that sees many stores over time keeps only the busy ones.
#[derive(Debug, Default)]
pub struct Stores {
    slots: Mutex<HashMap<StoreId, Arc<StoreSlot>>>,
}

/// Size of the slot map below which nothing is pruned.
pub const PRUNE_FROM: usize = 1024;

/// Drops the idle slots of `slots` when it has grown enough (see [`Stores`]).
fn prune(slots: &mut HashMap<StoreId, Arc<StoreSlot>>) {
    let len = slots.len();
    if len < PRUNE_FROM || !len.is_power_of_two() {
        return;
    }
    // Idle: only the map holds it (no push, delete, stream or gap filler), nobody listens.
    // Under the map's lock nobody can take it meanwhile.
    slots.retain(|_, s| Arc::strong_count(s) > 1 || s.live.receiver_count() > 0);
}

impl Stores {
    /// The slot of `store`, created on first use.
    pub fn slot(&self, store: &StoreId) -> Arc<StoreSlot> {
        let mut slots = self.lock_slots();
        if !slots.contains_key(store) {
            prune(&mut slots);
        }
        slots
            .entry(store.clone())
            .or_insert_with(|| {
                Arc::new(StoreSlot {
                    lock: tokio::sync::Mutex::new(()),
                    live: broadcast::channel(LIVE_CAPACITY).0,
                    sequence: Mutex::new(Sequencer::default()),
                    filling: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .clone()
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<StoreId, Arc<StoreSlot>>> {
        // Never poisoned in practice: nothing below can panic while the map is locked.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of `store` if it has live subscribers now.
    pub fn live_slot(&self, store: &StoreId) -> Option<Arc<StoreSlot>> {
        self.lock_slots()
            .get(store)
            .filter(|s| s.live.receiver_count() > 0)
            .cloned()
    }

    /// Every store with live subscribers now.
    pub fn live_slots(&self) -> Vec<(StoreId, Arc<StoreSlot>)> {
        self.lock_slots()
            .iter()
            .filter(|(_, s)| s.live.receiver_count() > 0)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync::core::event::{FileDeleted, FileEvent};
    use filesync::core::ids::{ClientId, EventId, FileId, Millis, Seq};

    fn batch(first: u64, last: u64) -> Vec<ConfirmedEvent> {
        (first..=last)
            .map(|seq| ConfirmedEvent {
                seq: Seq(seq),
                id: EventId {
                    client: ClientId::new("c").unwrap(),
                    n: seq,
                },
                event: FileEvent::Deleted(FileDeleted {
                    id: FileId::new("f").unwrap(),
                    deleted_at: Millis(1),
                }),
            })
            .collect()
    }

    #[test]
    fn subscribers_get_batches_in_order_each_once() {
        let slot = Stores::default().slot(&StoreId::new("s").unwrap());
        let mut rx = slot.live.subscribe();
        slot.note_subscribed(2);
        let received = |rx: &mut broadcast::Receiver<Arc<LiveBatch>>| {
            let mut out = Vec::new();
            while let Ok(b) = rx.try_recv() {
                out.push((b.first_seq, b.last_seq));
            }
            out
        };
        assert_eq!(slot.broadcast(&batch(3, 4)), None);
        // 7..8 before 5..6 (relayed late): held back, and the gap is named.
        assert_eq!(slot.broadcast(&batch(7, 8)), Some((5, 6)));
        assert_eq!(received(&mut rx), [(3, 4)]);
        // The gap's batch: both go, in order.
        assert_eq!(slot.broadcast(&batch(5, 6)), None);
        assert_eq!(received(&mut rx), [(5, 6), (7, 8)]);
        // Repeats are not sent again; a later subscriber does not move the sequence.
        slot.broadcast(&batch(7, 8));
        slot.note_subscribed(20);
        assert_eq!(received(&mut rx), []);
        slot.broadcast(&batch(9, 9));
        assert_eq!(received(&mut rx), [(9, 9)]);
        assert_eq!(slot.delivered(), 9);
    }

    #[test]
    fn idle_slots_are_dropped_as_the_map_grows_and_busy_ones_stay() {
        let stores = Stores::default();
        let held = stores.slot(&StoreId::new("held").unwrap());
        let listened = stores.slot(&StoreId::new("listened").unwrap());
        let _rx = listened.live.subscribe();
        drop(listened);
        for i in 0..4 * PRUNE_FROM {
            stores.slot(&StoreId::new(format!("s{i}")).unwrap());
        }
        let len = stores.lock_slots().len();
        assert!(len <= 2 * PRUNE_FROM, "{len} slots kept");
        let slots = stores.lock_slots();
        assert!(Arc::ptr_eq(&slots[&StoreId::new("held").unwrap()], &held));
        assert!(slots.contains_key(&StoreId::new("listened").unwrap()));
    }

    #[test]
    fn a_gap_that_never_fills_is_skipped_past_the_capacity() {
        let slot = Stores::default().slot(&StoreId::new("s").unwrap());
        let _rx = slot.live.subscribe();
        slot.note_subscribed(1);
        for i in 0..LIVE_CAPACITY as u64 {
            slot.broadcast(&batch(10 + i, 10 + i));
        }
        // Still waiting for 2..=9 at the capacity...
        assert_eq!(slot.gap(), Some((2, 9)));
        // ...and moved past it beyond.
        slot.broadcast(&batch(10 + LIVE_CAPACITY as u64, 10 + LIVE_CAPACITY as u64));
        assert_eq!(slot.delivered(), 10 + LIVE_CAPACITY as u64);
        assert_eq!(slot.gap(), None);
    }

    #[test]
    fn without_subscribers_nothing_is_built_and_the_sequence_moves_on() {
        let slot = Stores::default().slot(&StoreId::new("s").unwrap());
        assert_eq!(slot.broadcast(&batch(5, 6)), None);
        assert_eq!(slot.delivered(), 6);
        // The first subscriber then continues from there.
        let mut rx = slot.live.subscribe();
        slot.broadcast(&batch(7, 7));
        assert_eq!(rx.try_recv().map(|b| b.first_seq).ok(), Some(7));
    }
}
