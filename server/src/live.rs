//! Per-store coordination inside one process: the lock that serializes pushes with deletes, and
//! the broadcast channel that feeds live (SSE) subscribers.
//!
//! Invariants:
//! * Everything that must see a consistent store (push: blob presence + store; delete: reference
//!   check + blob delete) runs under [`StoreSlot::lock`].
//! * Batches are broadcast while that lock is held, so subscribers receive them in sequence
//!   order.
//! * A subscriber that falls more than [`LIVE_CAPACITY`] batches behind is dropped (its stream
//!   ends); the client reconnects and pulls, which is always correct because pulls read the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Coordination state of one store.
#[derive(Debug)]
pub struct StoreSlot {
    /// Serializes pushes with deletes (see the module docs).
    pub lock: tokio::sync::Mutex<()>,
    /// Stored batches, for live subscribers.
    pub live: broadcast::Sender<Arc<LiveBatch>>,
    /// The last sequence number live subscribers here were sent (or, for a new subscriber,
    /// told is the head): where a catch-up after missed cross-instance notifications starts.
    delivered: AtomicU64,
}

impl StoreSlot {
    /// Sends `events` (in sequence order) to the live subscribers as one batch.
    pub fn broadcast(&self, events: &[ConfirmedEvent]) {
        let Some(last) = events.last() else {
            return;
        };
        self.note_delivered(last.seq.0);
        // No receiver is fine: nobody is listening live.
        let _ = self.live.send(Arc::new(LiveBatch::new(events)));
    }

    /// Records that subscribers have everything up to `seq`.
    pub fn note_delivered(&self, seq: u64) {
        self.delivered.fetch_max(seq, Ordering::Relaxed);
    }

    /// See [`StoreSlot::note_delivered`].
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// The slots of every store seen since start.
#[derive(Debug, Default)]
pub struct Stores {
    slots: Mutex<HashMap<StoreId, Arc<StoreSlot>>>,
}

impl Stores {
    /// The slot of `store`, created on first use.
    pub fn slot(&self, store: &StoreId) -> Arc<StoreSlot> {
        // Never poisoned in practice: nothing below can panic while the map is locked.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(store.clone())
            .or_insert_with(|| {
                Arc::new(StoreSlot {
                    lock: tokio::sync::Mutex::new(()),
                    live: broadcast::channel(LIVE_CAPACITY).0,
                    delivered: AtomicU64::new(0),
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
