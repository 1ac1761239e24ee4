//! Event storage: the per-store log of confirmed events and the files table folded from it, on
//! SQLite (the embedded default, [`SqliteEventStore`]) or PostgreSQL ([`PostgresEventStore`],
//! for several instances over one database).
//!
//! # Contract of [`EventStore`]
//!
//! * [`EventStore::push`] is atomic: either every new event of the call is stored (with the
//!   files rows they change) or none is.
//! * It is idempotent by [`EventId`]: an id already stored in the store is not stored again and
//!   its stored version is returned in its place (also for a repeat inside one call, and for a
//!   retry that reaches another instance).
//! * New events get the store's next sequence numbers, 1, 2, 3, ... with no gaps, whatever
//!   number of instances push to the store at once.
//! * A `v1.FileUpdated` whose content the push's blob check reports absent is stored with its
//!   remote key cleared.
//! * The files table follows [`filesync::core::table::fold`], the clients' own rule, so the
//!   reference check of [`EventStore::delete_unreferenced`] answers exactly what every client
//!   will materialize.
//! * "Check the blobs, then store the events" ([`EventStore::push`] with its [`BlobCheck`]) and
//!   "check the references, then delete the blob" ([`EventStore::delete_unreferenced`] with its
//!   [`BlobDelete`]) are serialized per store, so a blob cannot disappear between a push's
//!   presence check and its commit, nor be deleted while a push that references it is in
//!   flight. SQLite: one process owns the file, and the routes hold the process's per-store
//!   lock around both. PostgreSQL: both run inside a transaction holding the store's row lock
//!   (`SELECT ... FOR UPDATE`), so the rule holds across instances.

mod postgres;
mod sqlite;

use std::collections::BTreeSet;

use async_trait::async_trait;
use filesync::core::event::{ClientEvent, ConfirmedEvent, FileEvent};
use filesync::core::ids::{ClientId, ContentHash, EventId, Seq, StoreId};
use futures_util::future::BoxFuture;

use crate::error::{BlobError, StoreError};

pub use postgres::{tls_connector, PostgresEventStore};
pub use sqlite::SqliteEventStore;

/// What a push stored.
#[derive(Debug, Clone, Default)]
pub struct PushResult {
    /// Every event of the request as stored, in request order.
    pub events: Vec<ConfirmedEvent>,
    /// The events this call stored (not repeats), in sequence order.
    pub new: Vec<ConfirmedEvent>,
}

/// A push's blob check: given the contents its attaches name, which are absent.
pub type BlobCheck<'a> = &'a (dyn Fn(BTreeSet<ContentHash>) -> BoxFuture<'static, Result<BTreeSet<ContentHash>, BlobError>>
         + Send
         + Sync);

/// The blob delete [`EventStore::delete_unreferenced`] runs when nothing references the blob.
pub type BlobDelete<'a> = &'a (dyn Fn() -> BoxFuture<'static, Result<(), BlobError>> + Send + Sync);

/// Storage of events and materialized files, per store (see the module docs).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores `events` atomically and idempotently; `absent` says which attached contents are
    /// missing, serialized with deletes of the store's blobs.
    async fn push(
        &self,
        store: &StoreId,
        events: &[ClientEvent],
        absent: BlobCheck<'_>,
    ) -> Result<PushResult, StoreError>;

    /// Events with `seq > after`, in order, at most `limit`.
    async fn pull(
        &self,
        store: &StoreId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<ConfirmedEvent>, StoreError>;

    /// The latest sequence number of the store (0 when empty).
    async fn head(&self, store: &StoreId) -> Result<Seq, StoreError>;

    /// Runs `delete` unless a live file of the store has this content, serialized with the
    /// store's pushes; whether it ran.
    async fn delete_unreferenced(
        &self,
        store: &StoreId,
        hash: &ContentHash,
        delete: BlobDelete<'_>,
    ) -> Result<bool, StoreError>;
}

/// The contents that `events` attach (a `v1.FileUpdated` with a remote key): what a push's
/// blob check looks at.
pub fn attached_contents(events: &[ClientEvent]) -> BTreeSet<ContentHash> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            FileEvent::Updated(u) if u.remote_key.is_some() => Some(u.content_hash),
            _ => None,
        })
        .collect()
}

/// `event` as stored: an attach of an absent content loses its remote key.
fn as_stored(event: &FileEvent, absent: &BTreeSet<ContentHash>) -> FileEvent {
    let mut event = event.clone();
    if let FileEvent::Updated(u) = &mut event {
        if u.remote_key.is_some() && absent.contains(&u.content_hash) {
            u.remote_key = None;
        }
    }
    event
}

/// Database integers are signed; our numbers are below 2^63 (sizes and times are checked below
/// 2^53 by the decoder, sequence numbers count requests).
fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Db(format!("{v} does not fit in i64")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v}")))
}

/// An event read back from a row.
fn decode_event(
    seq: i64,
    client: String,
    n: i64,
    name: String,
    args: String,
) -> Result<ConfirmedEvent, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("event {seq}: {e}"));
    let args: &serde_json::value::RawValue =
        serde_json::from_str(&args).map_err(|e| corrupt(&e))?;
    let event = FileEvent::from_parts(&name, args).map_err(|e| corrupt(&e))?;
    Ok(ConfirmedEvent {
        seq: Seq(to_u64(seq)?),
        id: EventId {
            client: ClientId::new(client).map_err(|e| corrupt(&e))?,
            n: to_u64(n)?,
        },
        event,
    })
}
