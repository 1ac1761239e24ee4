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
use std::sync::{Arc, Mutex};

use filesync::core::event::WireEnvelope;
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
}

/// Coordination state of one store.
#[derive(Debug)]
pub struct StoreSlot {
    /// Serializes pushes with deletes (see the module docs).
    pub lock: tokio::sync::Mutex<()>,
    /// Stored batches, for live subscribers.
    pub live: broadcast::Sender<Arc<LiveBatch>>,
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
                })
            })
            .clone()
    }
}
