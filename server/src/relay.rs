//! Live delivery across instances, when events are in PostgreSQL.
//!
//! A push that stores events sends, inside its transaction, a notification on [`CHANNEL`]
//! naming the instance, the batch's first and last sequence numbers and the store
//! ([`payload`]); PostgreSQL delivers it once the transaction commits, never before. Every
//! instance listens on a connection of its own ([`run`]) and, for a batch another instance
//! stored in a store it has live subscribers for, reads the batch from the log and broadcasts
//! it to them like its own.
//!
//! Notifications are not relied upon alone: while the listener is disconnected they are lost,
//! so after every (re)connection each store with subscribers is brought up to the database's
//! head (the events after the last batch this instance delivered: one cheap `head` read per
//! store). A relayed batch can arrive after a later batch of this instance: the store's
//! sequencer (`crate::live::Sequencer`) holds the later one back until the gap is filled, by
//! the notification on its way or, after [`GAP_WAIT`], by reading the gap from the log
//! ([`fill_gaps`]); a batch delivered by both paths is sent once.

use std::sync::Arc;
use std::time::Duration;

use filesync::core::ids::{Seq, StoreId};
use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::live::StoreSlot;
use crate::AppState;

/// The notification channel.
pub const CHANNEL: &str = "filesync_events";

/// How long the listener waits before connecting again.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// How long a gap before a waiting batch may stay before it is read from the log (the batch
/// that fills it is usually a notification on its way).
pub const GAP_WAIT: Duration = Duration::from_millis(200);

/// Fills the gaps that hold batches back in `slot` (see [`crate::live::Sequencer`]): waits
/// [`GAP_WAIT`] for the batch that belongs there, then reads what is still missing from the
/// log. One task per slot at a time.
pub fn fill_gaps(state: Arc<AppState>, store: StoreId, slot: Arc<StoreSlot>) {
    use std::sync::atomic::Ordering;
    if slot
        .filling
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    tokio::spawn(async move {
        while let Some(gap) = slot.gap() {
            tokio::time::sleep(GAP_WAIT).await;
            if slot.gap() != Some(gap) {
                continue; // filled meanwhile, or another gap: look again
            }
            let (from, to) = gap;
            let count = usize::try_from(to - from + 1).unwrap_or(usize::MAX);
            match state.events.pull(&store, Seq(from - 1), count).await {
                Ok(events) => {
                    slot.broadcast(&events);
                }
                Err(e) => {
                    tracing::warn!(%e, store = %store, "filling a live gap failed");
                    break;
                }
            }
        }
        slot.filling.store(false, Ordering::Release);
    });
}

/// A notification's text: `<instance> <first seq> <last seq> <store>` (store ids have no
/// spaces; they come last because they may hold other punctuation).
pub fn payload(instance: &str, first: u64, last: u64, store: &StoreId) -> String {
    format!("{instance} {first} {last} {store}")
}

/// A notification that [`payload`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub instance: String,
    pub first: u64,
    pub last: u64,
    pub store: StoreId,
}

/// Reads a notification; `None` for anything [`payload`] did not write.
pub fn parse(text: &str) -> Option<Stored> {
    let mut f = text.splitn(4, ' ');
    let stored = Stored {
        instance: f.next()?.to_string(),
        first: f.next()?.parse().ok()?,
        last: f.next()?.parse().ok()?,
        store: StoreId::new(f.next()?).ok()?,
    };
    (stored.first >= 1 && stored.first <= stored.last).then_some(stored)
}

/// Listens for other instances' batches until shutdown (see the module docs). `instance` is
/// this instance's id (its own notifications are skipped).
pub async fn run(state: Arc<AppState>, url: String, instance: String, tls: MakeRustlsConnect) {
    while !state.shutdown.is_cancelled() {
        match listen(&state, &url, &instance, tls.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(%e, "live relay disconnected; connecting again"),
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

/// One connection's life: `Ok` on shutdown, `Err` when the connection broke.
async fn listen(
    state: &Arc<AppState>,
    url: &str,
    instance: &str,
    tls: MakeRustlsConnect,
) -> Result<(), String> {
    let (client, mut conn) = tokio_postgres::connect(url, tls)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    let pump = tokio::spawn(messages.for_each(move |m| {
        let _ = tx.send(m);
        std::future::ready(())
    }));
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        // Listening: from here no batch is missed. Catch up with what came before.
        for (store, _) in state.stores.live_slots() {
            catch_up(state, &store).await;
        }
        loop {
            let message = tokio::select! {
                () = state.shutdown.cancelled() => return Ok(()),
                m = rx.recv() => m,
            };
            match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Some(stored) = parse(n.payload()).filter(|s| s.instance != instance) {
                        deliver(state, &stored).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the connection closed".into()),
            }
        }
    }
    .await;
    pump.abort();
    result
}

/// Broadcasts another instance's batch to this instance's subscribers of the store.
async fn deliver(state: &Arc<AppState>, stored: &Stored) {
    let Some(slot) = state.stores.live_slot(&stored.store) else {
        return;
    };
    let count = usize::try_from(stored.last - stored.first + 1).unwrap_or(usize::MAX);
    match state
        .events
        .pull(&stored.store, Seq(stored.first - 1), count)
        .await
    {
        Ok(events) => {
            if slot.broadcast(&events).is_some() {
                fill_gaps(state.clone(), stored.store.clone(), slot);
            }
        }
        Err(e) => tracing::warn!(%e, store = %stored.store, "reading a relayed batch failed"),
    }
}

/// Broadcasts whatever the store holds beyond the last batch delivered here.
async fn catch_up(state: &Arc<AppState>, store: &StoreId) {
    let Some(slot) = state.stores.live_slot(store) else {
        return;
    };
    let delivered = slot.delivered();
    let head = match state.events.head(store).await {
        Ok(h) => h.0,
        Err(e) => {
            tracing::warn!(%e, store = %store, "reading a store's head failed");
            return;
        }
    };
    if head <= delivered {
        return;
    }
    let count = usize::try_from(head - delivered).unwrap_or(usize::MAX);
    match state.events.pull(store, Seq(delivered), count).await {
        Ok(events) => {
            if slot.broadcast(&events).is_some() {
                fill_gaps(state.clone(), store.clone(), slot);
            }
        }
        Err(e) => tracing::warn!(%e, store = %store, "catching up a store failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_anything_else_is_ignored() {
        let store = StoreId::new("a:b.c-d").unwrap();
        let text = payload("inst1", 3, 7, &store);
        assert_eq!(
            parse(&text),
            Some(Stored {
                instance: "inst1".into(),
                first: 3,
                last: 7,
                store,
            })
        );
        for bad in [
            "",
            "i 1 2",
            "i x 2 s",
            "i 3 2 s",
            "i 0 2 s",
            "i 1 2 bad/store",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
