//! Persistence: how the engine's state maps to records, and the interface every state store
//! implements (in memory here, IndexedDB in `crate::web::idb`).
//!
//! A [`PersistBatch`] becomes a list of [`Op`]s that a store applies in one atomic write; a
//! store loads back every record, and [`decode_records`] turns them into a [`Snapshot`]. A
//! record that does not decode (hand-edited, truncated, wrong types) is reported as a
//! [`CorruptRecord`] with its key and left out; the rest loads. Records are JSON text, so any
//! store that can hold strings can hold them, and tests can inject broken ones.
//!
//! Decoding is the largest part of a cold start, so it goes straight from the text into typed
//! records (strings borrowed from the text where they have no escapes), never through
//! `serde_json::Value`.
//!
//! Tables: `rows` (files table, by file id), `log` (confirmed events, by seq), `pending`
//! (this client's unconfirmed events, by number), `local` (per-client rows, by file id) and
//! `meta` (schema version, cursor, counters, client id, leader term counter, GC sets).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::collections::sort_by;
use super::engine::{PersistBatch, Snapshot};
use super::error::DecodeError;
use super::event::{
    check_info, check_metadata, check_path, check_remote_key, ClientEvent, ConfirmedEvent,
    WireEnvelope,
};
use super::ids::{ClientId, ContentHash, FileId, Millis, Seq, Term};
use super::local::{LocalRow, SyncError, TransferStatus};
use super::table::FileRow;

/// Version of the record layout. A store written by a newer version refuses to load.
pub const SCHEMA_VERSION: u64 = 1;

/// Confirmed events the audit log keeps: each event logged drops the one this many positions
/// before it, so the log stays bounded whatever the store's history.
pub const LOG_KEEP: u64 = 10_000;

/// Meta keys.
pub mod meta {
    pub const SCHEMA_VERSION: &str = "schemaVersion";
    pub const CURSOR: &str = "cursor";
    pub const NEXT_EVENT_N: &str = "nextEventN";
    pub const UNATTACHED: &str = "unattached";
    pub const GARBAGE: &str = "garbage";
    /// Multipart uploads under way: a JSON array of `"<sha256 hex> <resume text>"`.
    pub const UPLOADS: &str = "uploads";
    pub const CLIENT_ID: &str = "clientId";
    pub const LAST_TERM: &str = "lastTerm";
}

/// A table of the state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Rows,
    Log,
    Pending,
    Local,
    Meta,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 5] = [
        Table::Rows,
        Table::Log,
        Table::Pending,
        Table::Local,
        Table::Meta,
    ];

    /// The tables a restart reads. The log of confirmed events is an audit trail, written
    /// with every batch and never needed to restart (the rows are the state), so a cold start
    /// does not pay for reading it.
    pub const LOADED: [Table; 4] = [Table::Rows, Table::Pending, Table::Local, Table::Meta];

    /// Its name in the store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Rows => "rows",
            Table::Log => "log",
            Table::Pending => "pending",
            Table::Local => "local",
            Table::Meta => "meta",
        }
    }
}

/// A record key: numbers for positions, text for ids and meta names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Num(u64),
    Str(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Num(n) => write!(f, "{n}"),
            Key::Str(s) => f.write_str(s),
        }
    }
}

/// One write of an atomic batch. `value` is the record's JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put {
        table: Table,
        key: Key,
        value: String,
    },
    Delete {
        table: Table,
        key: Key,
    },
}

/// A record that could not be decoded; it was left out of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    pub table: Table,
    pub key: Key,
    pub error: DecodeError,
}

/// Everything a store holds, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub snapshot: Snapshot,
    /// Records left out because they did not decode.
    pub corrupt: Vec<CorruptRecord>,
    /// The browser's client id, once one was stored.
    pub client_id: Option<ClientId>,
    /// The last leader term handed out.
    pub last_term: Term,
}

/// Why a state store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The data was written by a newer version of filesync.
    TooNew { found: u64, supported: u64 },
    /// Storage is full.
    Quota { message: String },
    /// Storage cannot be used here (private mode, blocked, missing API).
    Unavailable { message: String },
    /// Any other storage failure.
    Io { message: String },
}

impl StoreError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::TooNew { .. } => "schema_too_new",
            StoreError::Quota { .. } => "quota_exceeded",
            StoreError::Unavailable { .. } => "storage_unavailable",
            StoreError::Io { .. } => "storage",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TooNew { found, supported } => write!(
                f,
                "stored data has schema version {found}; this version of filesync reads up to {supported}"
            ),
            StoreError::Quota { message } => write!(f, "storage quota exceeded: {message}"),
            StoreError::Unavailable { message } => write!(f, "storage unavailable: {message}"),
            StoreError::Io { message } => write!(f, "storage failed: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A durable state store. Single-threaded (wasm), hence no `Send` bounds on the futures.
#[allow(async_fn_in_trait)]
pub trait StateStore {
    /// Every record of the [`Table::LOADED`] tables, decoded; corrupt ones reported and left
    /// out.
    async fn load(&self) -> Result<Loaded, StoreError>;
    /// Applies the ops atomically: all or nothing.
    async fn write(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// Hands out the next leader term: larger than every earlier one, durably.
    async fn next_term(&self) -> Result<Term, StoreError>;
}

/// The stored shape of a files-table row. Strings are `Cow`: borrowed from the row when
/// encoding, from the JSON text when decoding (unless they hold escapes).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RowRecord<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow)]
    content_hash: Cow<'a, str>,
    #[serde(default, borrow)]
    remote_key: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    mime_type: Cow<'a, str>,
    size: u64,
    #[serde(default, borrow)]
    metadata_json: Option<Cow<'a, str>>,
    created_at: u64,
    updated_at: u64,
    #[serde(default)]
    deleted_at: Option<u64>,
}

/// The stored shape of a per-client row.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalRecord<'a> {
    #[serde(borrow)]
    file_id: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow)]
    content_hash: Cow<'a, str>,
    #[serde(default, borrow)]
    local_hash: Option<Cow<'a, str>>,
    upload_status: TransferStatus,
    download_status: TransferStatus,
    #[serde(default)]
    last_sync_error: Option<SyncError>,
    /// Written only when true (older records have no such field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    authored: bool,
    /// The same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pinned: bool,
    /// The same (older records have none: the engine takes the size from the file's row).
    #[serde(default, skip_serializing_if = "is_zero")]
    local_size: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    accessed: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    evicted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn to_text<T: Serialize + ?Sized>(v: &T) -> String {
    // Our record types serialize infallibly (no maps with non-string keys, no failing impls).
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn from_text<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
        message: e.to_string(),
    })
}

/// The record (JSON text) of a files-table row.
pub fn row_record(r: &FileRow) -> String {
    to_text(&RowRecord {
        id: Cow::Borrowed(r.id.as_str()),
        path: Cow::Borrowed(&r.path),
        content_hash: Cow::Owned(r.content_hash.to_hex()),
        remote_key: r
            .remote_key
            .as_ref()
            .map_or(Cow::Borrowed(""), |k| Cow::Owned(k.to_string())),
        name: Cow::Borrowed(&r.info.name),
        mime_type: Cow::Borrowed(&r.info.mime_type),
        size: r.info.size,
        metadata_json: r.metadata_json.as_deref().map(Cow::Borrowed),
        created_at: r.created_at.0,
        updated_at: r.updated_at.0,
        deleted_at: r.deleted_at.map(|t| t.0),
    })
}

/// Decodes and validates a files-table row from its JSON text.
pub fn decode_row(text: &str) -> Result<FileRow, DecodeError> {
    let r: RowRecord<'_> = from_text(text)?;
    let content_hash = ContentHash::parse(&r.content_hash)?;
    Ok(FileRow {
        id: FileId::new(r.id.into_owned())?,
        path: check_path(r.path.into_owned())?,
        remote_key: check_remote_key(&r.remote_key, &content_hash)?,
        content_hash,
        info: check_info(r.name.into_owned(), r.mime_type.into_owned(), r.size)?,
        metadata_json: r
            .metadata_json
            .map(|m| check_metadata(m.into_owned()))
            .transpose()?,
        created_at: Millis(r.created_at),
        updated_at: Millis(r.updated_at),
        deleted_at: r.deleted_at.map(Millis),
    })
}

/// The record (JSON text) of a per-client row.
pub fn local_record(r: &LocalRow) -> String {
    to_text(&LocalRecord {
        file_id: Cow::Borrowed(r.file_id.as_str()),
        path: Cow::Borrowed(&r.path),
        content_hash: Cow::Owned(r.content_hash.to_hex()),
        local_hash: r.local_hash.map(|h| Cow::Owned(h.to_hex())),
        upload_status: r.upload,
        download_status: r.download,
        last_sync_error: r.last_error.clone(),
        authored: r.authored,
        pinned: r.pinned,
        local_size: r.local_size,
        accessed: r.accessed.0,
        evicted: r.evicted,
    })
}

/// Decodes and validates a per-client row from its JSON text.
pub fn decode_local(text: &str) -> Result<LocalRow, DecodeError> {
    let r: LocalRecord<'_> = from_text(text)?;
    Ok(LocalRow {
        file_id: FileId::new(r.file_id.into_owned())?,
        path: check_path(r.path.into_owned())?,
        content_hash: ContentHash::parse(&r.content_hash)?,
        local_hash: r
            .local_hash
            .as_deref()
            .map(ContentHash::parse)
            .transpose()?,
        upload: r.upload_status,
        download: r.download_status,
        last_error: r.last_sync_error,
        authored: r.authored,
        pinned: r.pinned,
        local_size: r.local_size,
        accessed: Millis(r.accessed),
        evicted: r.evicted,
    })
}

fn hashes_text(set: &[ContentHash]) -> String {
    let hex: Vec<String> = set.iter().map(|h| h.to_hex()).collect();
    to_text(&hex)
}

fn decode_hashes(text: &str) -> Result<Vec<ContentHash>, DecodeError> {
    let list: Vec<Cow<'_, str>> = from_text(text)?;
    list.iter().map(|s| ContentHash::parse(s)).collect()
}

fn uploads_text(uploads: &[(ContentHash, String)]) -> String {
    let list: Vec<String> = uploads
        .iter()
        .map(|(h, resume)| format!("{} {resume}", h.to_hex()))
        .collect();
    to_text(&list)
}

fn decode_uploads(text: &str) -> Result<Vec<(ContentHash, String)>, DecodeError> {
    let list: Vec<Cow<'_, str>> = from_text(text)?;
    let mut out = Vec::with_capacity(list.len());
    for s in &list {
        let (hex, resume) = s.split_once(' ').unwrap_or((s, ""));
        out.push((ContentHash::parse(hex)?, resume.to_string()));
    }
    Ok(out)
}

fn put(table: Table, key: Key, value: String) -> Op {
    Op::Put { table, key, value }
}

fn meta_key(name: &str) -> Key {
    Key::Str(name.to_string())
}

/// The writes of one persist batch (apply them atomically).
pub fn batch_ops(b: &PersistBatch) -> Vec<Op> {
    let mut ops = Vec::with_capacity(
        b.rows.len() + b.log.len() + b.pending_put.len() + b.local_put.len() + 6,
    );
    for r in &b.rows {
        ops.push(put(Table::Rows, Key::Str(r.id.to_string()), row_record(r)));
    }
    for e in &b.log {
        ops.push(put(Table::Log, Key::Num(e.seq.0), to_text(&e.to_wire())));
        if e.seq.0 > LOG_KEEP {
            ops.push(Op::Delete {
                table: Table::Log,
                key: Key::Num(e.seq.0 - LOG_KEEP),
            });
        }
    }
    for p in &b.pending_put {
        ops.push(put(Table::Pending, Key::Num(p.id.n), to_text(&p.to_wire())));
    }
    for id in &b.pending_delete {
        ops.push(Op::Delete {
            table: Table::Pending,
            key: Key::Num(id.n),
        });
    }
    for r in &b.local_put {
        ops.push(put(
            Table::Local,
            Key::Str(r.file_id.to_string()),
            local_record(r),
        ));
    }
    for id in &b.local_delete {
        ops.push(Op::Delete {
            table: Table::Local,
            key: Key::Str(id.to_string()),
        });
    }
    ops.push(put(
        Table::Meta,
        meta_key(meta::SCHEMA_VERSION),
        SCHEMA_VERSION.to_string(),
    ));
    ops.push(put(
        Table::Meta,
        meta_key(meta::CURSOR),
        b.cursor.0.to_string(),
    ));
    ops.push(put(
        Table::Meta,
        meta_key(meta::NEXT_EVENT_N),
        b.next_event_n.to_string(),
    ));
    if let Some(u) = &b.unattached {
        ops.push(put(Table::Meta, meta_key(meta::UNATTACHED), hashes_text(u)));
    }
    if let Some(g) = &b.garbage {
        ops.push(put(Table::Meta, meta_key(meta::GARBAGE), hashes_text(g)));
    }
    if let Some(u) = &b.uploads {
        ops.push(put(Table::Meta, meta_key(meta::UPLOADS), uploads_text(u)));
    }
    ops
}

/// The write that records this browser's client id.
pub fn client_id_op(id: &ClientId) -> Op {
    put(Table::Meta, meta_key(meta::CLIENT_ID), to_text(id.as_str()))
}

/// The write that records the last term handed out.
pub fn last_term_op(term: Term) -> Op {
    put(Table::Meta, meta_key(meta::LAST_TERM), term.0.to_string())
}

/// Decodes every record (table, key, JSON text) of a store. Fails only on a newer schema;
/// anything else that does not decode is reported in `corrupt` and left out.
pub fn decode_records<'a>(
    records: impl IntoIterator<Item = (Table, Key, &'a str)>,
) -> Result<Loaded, StoreError> {
    let mut out = Loaded::default();
    let mut corrupt = |table, key: &Key, error| {
        out.corrupt.push(CorruptRecord {
            table,
            key: key.clone(),
            error,
        })
    };
    let (mut rows, mut pending, mut local) = (Vec::new(), Vec::new(), Vec::new());
    let mut client_id = None;
    let (mut cursor, mut next_n, mut last_term) = (Seq(0), 0u64, Term(0));
    let (mut unattached, mut garbage, mut uploads) = (Vec::new(), Vec::new(), Vec::new());
    let is_key = |key: &Key, id: &str| matches!(key, Key::Str(k) if k == id);
    for (table, key, value) in records {
        match table {
            Table::Rows => match decode_row(value) {
                Ok(r) if is_key(&key, r.id.as_str()) => rows.push(r),
                Ok(r) => corrupt(table, &key, mismatch("id", &r.id.to_string())),
                Err(e) => corrupt(table, &key, e),
            },
            Table::Log => {
                match from_text::<WireEnvelope>(value).and_then(|w| ConfirmedEvent::from_wire(&w)) {
                    // The log is kept for debugging and audit; the snapshot is the rows.
                    Ok(e) if key == Key::Num(e.seq.0) => {}
                    Ok(e) => corrupt(table, &key, mismatch("seq", &e.seq.0.to_string())),
                    Err(e) => corrupt(table, &key, e),
                }
            }
            Table::Pending => {
                match from_text::<WireEnvelope>(value).and_then(|w| ClientEvent::from_wire(&w)) {
                    Ok(e) if key == Key::Num(e.id.n) => pending.push(e),
                    Ok(e) => corrupt(table, &key, mismatch("n", &e.id.n.to_string())),
                    Err(e) => corrupt(table, &key, e),
                }
            }
            Table::Local => match decode_local(value) {
                Ok(r) if is_key(&key, r.file_id.as_str()) => local.push(r),
                Ok(r) => corrupt(table, &key, mismatch("fileId", &r.file_id.to_string())),
                Err(e) => corrupt(table, &key, e),
            },
            Table::Meta => {
                let Key::Str(name) = &key else {
                    corrupt(table, &key, mismatch("meta key", &key.to_string()));
                    continue;
                };
                let number = || from_text::<u64>(value);
                let result = match name.as_str() {
                    meta::SCHEMA_VERSION => {
                        number().map(|v| if v > SCHEMA_VERSION { Some(v) } else { None })
                    }
                    meta::CURSOR => number().map(|v| {
                        cursor = Seq(v);
                        None
                    }),
                    meta::NEXT_EVENT_N => number().map(|v| {
                        next_n = v;
                        None
                    }),
                    meta::LAST_TERM => number().map(|v| {
                        last_term = Term(v);
                        None
                    }),
                    meta::UNATTACHED => decode_hashes(value).map(|v| {
                        unattached = v;
                        None
                    }),
                    meta::GARBAGE => decode_hashes(value).map(|v| {
                        garbage = v;
                        None
                    }),
                    meta::UPLOADS => decode_uploads(value).map(|v| {
                        uploads = v;
                        None
                    }),
                    meta::CLIENT_ID => {
                        from_text::<String>(value)
                            .and_then(ClientId::new)
                            .map(|id| {
                                client_id = Some(id);
                                None
                            })
                    }
                    _ => Ok(None),
                };
                match result {
                    Ok(Some(found)) => {
                        return Err(StoreError::TooNew {
                            found,
                            supported: SCHEMA_VERSION,
                        })
                    }
                    Ok(None) => {}
                    Err(e) => corrupt(table, &key, e),
                }
            }
        }
    }
    sort_by(&mut pending, |a, b| a.id.n.cmp(&b.id.n));
    // Never hand out an event number twice, even if the counter record was lost.
    let next_n = next_n.max(pending.last().map_or(0, |p| p.id.n + 1));
    let unique = |mut v: Vec<ContentHash>| {
        v.sort_unstable();
        v.dedup();
        v
    };
    out.snapshot = Snapshot {
        rows,
        cursor,
        pending,
        local,
        next_event_n: next_n,
        unattached: unique(unattached),
        garbage: unique(garbage),
        uploads,
    };
    out.client_id = client_id;
    out.last_term = last_term;
    Ok(out)
}

fn mismatch(field: &'static str, value: &str) -> DecodeError {
    DecodeError::InvalidField {
        field,
        reason: format!("{value:?} does not match the record's key"),
    }
}

/// A state store in memory: for native tests and the simulation, and the reference the
/// conformance suite holds other stores to. Records are kept encoded (JSON text), like a real
/// store, so tests can plant broken ones.
/// Clones share the same records, like two handles on one database.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    records: std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<(Table, Key), String>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every record as stored (table, key, JSON text), in key order: for tests and tools.
    pub fn records(&self) -> Vec<(Table, Key, String)> {
        self.records
            .borrow()
            .iter()
            .map(|((t, k), v)| (*t, k.clone(), v.clone()))
            .collect()
    }

    /// Writes a raw record (any JSON value, as its text), bypassing encoding (for corruption
    /// tests).
    pub fn put_raw(&self, table: Table, key: Key, value: Value) {
        self.records
            .borrow_mut()
            .insert((table, key), value.to_string());
    }
}

impl StateStore for MemoryStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        let records = self.records.borrow();
        decode_records(
            records
                .iter()
                .filter(|((t, _), _)| Table::LOADED.contains(t))
                .map(|((t, k), v)| (*t, k.clone(), v.as_str())),
        )
    }

    async fn write(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut records = self.records.borrow_mut();
        for op in ops {
            match op {
                Op::Put { table, key, value } => {
                    records.insert((*table, key.clone()), value.clone());
                }
                Op::Delete { table, key } => {
                    records.remove(&(*table, key.clone()));
                }
            }
        }
        Ok(())
    }

    async fn next_term(&self) -> Result<Term, StoreError> {
        let key = (Table::Meta, meta_key(meta::LAST_TERM));
        let mut records = self.records.borrow_mut();
        let last = records
            .get(&key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        records.insert(key, (last + 1).to_string());
        Ok(Term(last + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{FileDeleted, FileEvent};
    use crate::core::ids::EventId;

    #[test]
    fn the_audit_log_stays_bounded() {
        let event = |seq| ConfirmedEvent {
            seq: Seq(seq),
            id: EventId {
                client: ClientId::new("c").unwrap(),
                n: seq,
            },
            event: FileEvent::Deleted(FileDeleted {
                id: FileId::new("f").unwrap(),
                deleted_at: Millis(0),
            }),
        };
        let batch = PersistBatch {
            log: vec![event(LOG_KEEP), event(LOG_KEEP + 1)],
            ..PersistBatch::default()
        };
        let ops = batch_ops(&batch);
        let deletes: Vec<&Key> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Delete {
                    table: Table::Log,
                    key,
                } => Some(key),
                _ => None,
            })
            .collect();
        assert_eq!(deletes, vec![&Key::Num(1)]);
    }

    #[test]
    fn a_local_row_writes_its_flags_only_when_set_and_old_records_read_as_not() {
        let row = |authored, pinned, evicted, held: bool| LocalRow {
            file_id: FileId::new("f").unwrap(),
            path: "files/f".into(),
            content_hash: crate::core::ContentHash::of(b"x"),
            local_hash: held.then(|| crate::core::ContentHash::of(b"x")),
            local_size: if held { 1 } else { 0 },
            upload: TransferStatus::Done,
            download: TransferStatus::Done,
            last_error: None,
            authored,
            pinned,
            accessed: Millis(if held { 60_000 } else { 0 }),
            evicted,
        };
        for flags in [
            (true, false, false, false),
            (false, true, false, true),
            (true, true, true, true),
            (false, false, true, false),
        ] {
            let r = row(flags.0, flags.1, flags.2, flags.3);
            assert_eq!(decode_local(&local_record(&r)).unwrap(), r);
        }
        let theirs = local_record(&row(false, false, false, false));
        for field in ["authored", "pinned", "evicted", "localSize", "accessed"] {
            assert!(!theirs.contains(field), "{theirs}");
        }
        assert_eq!(
            decode_local(&theirs).unwrap(),
            row(false, false, false, false)
        );
    }

    /// Multipart uploads under way survive a restart as written, with their opaque resume
    /// texts (spaces included); a broken record is reported, not loaded.
    #[test]
    fn uploads_under_way_round_trip_and_a_broken_record_is_reported() {
        let uploads = vec![
            (
                ContentHash::of(b"a"),
                "id1 8388608 1 \"etag\" c3Vt".to_string(),
            ),
            (ContentHash::of(b"b"), String::new()),
        ];
        let batch = PersistBatch {
            uploads: Some(uploads.clone()),
            ..PersistBatch::default()
        };
        let store = MemoryStore::default();
        block_on(store.write(&batch_ops(&batch))).unwrap();
        let loaded = block_on(store.load()).unwrap();
        assert_eq!(loaded.snapshot.uploads, uploads);
        store.put_raw(
            Table::Meta,
            meta_key(meta::UPLOADS),
            serde_json::json!(["not-a-hash resume"]),
        );
        let loaded = block_on(store.load()).unwrap();
        assert!(loaded.snapshot.uploads.is_empty());
        assert_eq!(loaded.corrupt.len(), 1, "{:?}", loaded.corrupt);
    }

    /// Runs a future whose awaits complete at once (the memory store never waits).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
