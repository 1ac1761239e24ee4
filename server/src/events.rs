//! Event storage: the per-store log of confirmed events and the files table folded from it.
//!
//! # Contract of [`EventStore`]
//!
//! * [`EventStore::push`] is atomic: either every new event of the call is stored (with the
//!   files rows they change) or none is.
//! * It is idempotent by [`EventId`]: an id already stored in the store is not stored again and
//!   its stored version is returned in its place (also for a repeat inside one call).
//! * New events get the store's next sequence numbers, 1, 2, 3, ... with no gaps.
//! * A `v1.FileUpdated` whose content is in `absent` is stored with its remote key cleared.
//! * The files table follows [`filesync::core::table::fold`], the clients' own rule, so
//!   [`EventStore::is_referenced`] answers exactly what every client will materialize.
//!
//! Methods are blocking; the server calls them from `spawn_blocking`. Serialization: the server
//! holds a per-store lock around "check blob presence, push" and around "check references,
//! delete blob", so a blob cannot disappear between the presence check and the push, nor be
//! deleted while a push that references it is in flight. That lock lives in one process: a
//! backend shared by several server instances must provide the same serialization itself (for
//! example a `SELECT ... FOR UPDATE` on a per-store row taken by both operations, with the
//! presence check and the delete done inside that transaction).
//!
//! [`SqliteEventStore`] is the default backend: one SQLite file, WAL, `synchronous=FULL` so a
//! push acknowledged to a client survives a power cut. Schema changes are numbered migrations
//! recorded in the `schema_version` table.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use filesync::core::event::{ClientEvent, ConfirmedEvent, FileEvent, FileInfo};
use filesync::core::ids::{
    ClientId, ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId,
};
use filesync::core::table::{fold, FileRow};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::StoreError;

/// What a push stored.
#[derive(Debug, Clone, Default)]
pub struct PushResult {
    /// Every event of the request as stored, in request order.
    pub events: Vec<ConfirmedEvent>,
    /// The events this call stored (not repeats), in sequence order.
    pub new: Vec<ConfirmedEvent>,
}

/// Storage of events and materialized files, per store.
pub trait EventStore: Send + Sync + 'static {
    /// Stores `events` atomically and idempotently (see the module docs).
    fn push(
        &self,
        store: &StoreId,
        events: &[ClientEvent],
        absent: &BTreeSet<ContentHash>,
    ) -> Result<PushResult, StoreError>;

    /// Events with `seq > after`, in order, at most `limit`.
    fn pull(
        &self,
        store: &StoreId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<ConfirmedEvent>, StoreError>;

    /// The latest sequence number of the store (0 when empty).
    fn head(&self, store: &StoreId) -> Result<Seq, StoreError>;

    /// Whether a live file of the store has this content.
    fn is_referenced(&self, store: &StoreId, hash: &ContentHash) -> Result<bool, StoreError>;
}

/// Migrations, applied in order; `MIGRATIONS[i]` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the log, the per-store head, the materialized files.
    "CREATE TABLE stores (
        store TEXT PRIMARY KEY,
        head INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE events (
        store TEXT NOT NULL,
        seq INTEGER NOT NULL,
        client TEXT NOT NULL,
        n INTEGER NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        PRIMARY KEY (store, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX events_by_id ON events (store, client, n);
    CREATE TABLE files (
        store TEXT NOT NULL,
        id TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        uploaded INTEGER NOT NULL,
        name TEXT NOT NULL,
        mime_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        metadata_json TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER,
        PRIMARY KEY (store, id)
    ) WITHOUT ROWID;
    CREATE INDEX files_live_by_content ON files (store, content_hash) WHERE deleted_at IS NULL;",
];

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// SQLite values are signed; our numbers are below 2^63 (sizes and times are checked below
/// 2^53 by the decoder, sequence numbers count requests).
fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Db(format!("{v} does not fit in i64")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v}")))
}

/// The default event store: one SQLite database file.
pub struct SqliteEventStore {
    conn: Mutex<Connection>,
}

impl SqliteEventStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<SqliteEventStore, StoreError> {
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        let store = SqliteEventStore {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version after opening.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let conn = self.lock()?;
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<u32>>(0)
        })
        .map(|v| v.unwrap_or(0))
        .map_err(db)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        // A panic while holding the lock cannot leave a transaction half-applied (rusqlite
        // rolls back on drop), so a poisoned lock is still safe to use.
        Ok(self.conn.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(db)?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
            [],
        )
        .map_err(db)?;
        let current: u32 = tx
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
                r.get::<_, Option<u32>>(0)
            })
            .map_err(db)?
            .unwrap_or(0);
        if current as usize > MIGRATIONS.len() {
            return Err(StoreError::Db(format!(
                "database schema version {current} is newer than this server's {}",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(db)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i as u32 + 1],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }
}

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

fn find_by_id(
    tx: &Transaction<'_>,
    store: &StoreId,
    id: &EventId,
) -> Result<Option<ConfirmedEvent>, StoreError> {
    let row = tx
        .query_row(
            "SELECT seq, name, args FROM events WHERE store = ?1 AND client = ?2 AND n = ?3",
            params![store.as_str(), id.client.as_str(), to_i64(id.n)?],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    row.map(|(seq, name, args)| {
        decode_event(
            seq,
            id.client.as_str().to_string(),
            to_i64(id.n)?,
            name,
            args,
        )
    })
    .transpose()
}

fn load_row(
    tx: &Transaction<'_>,
    store: &StoreId,
    id: &FileId,
) -> Result<Option<FileRow>, StoreError> {
    type Raw = (
        String,
        String,
        bool,
        String,
        String,
        i64,
        Option<String>,
        i64,
        i64,
        Option<i64>,
    );
    let raw: Option<Raw> = tx
        .query_row(
            "SELECT path, content_hash, uploaded, name, mime_type, size, metadata_json,
                    created_at, updated_at, deleted_at
             FROM files WHERE store = ?1 AND id = ?2",
            params![store.as_str(), id.as_str()],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            },
        )
        .optional()
        .map_err(db)?;
    let Some((
        path,
        hash,
        uploaded,
        name,
        mime_type,
        size,
        metadata_json,
        created,
        updated,
        deleted,
    )) = raw
    else {
        return Ok(None);
    };
    let content_hash =
        ContentHash::parse(&hash).map_err(|e| StoreError::Corrupt(format!("file {id}: {e}")))?;
    Ok(Some(FileRow {
        id: id.clone(),
        path,
        content_hash,
        remote_key: uploaded.then(|| RemoteKey::for_content(store, &content_hash)),
        info: FileInfo {
            name,
            mime_type,
            size: to_u64(size)?,
        },
        metadata_json,
        created_at: Millis(to_u64(created)?),
        updated_at: Millis(to_u64(updated)?),
        deleted_at: deleted.map(to_u64).transpose()?.map(Millis),
    }))
}

fn save_row(tx: &Transaction<'_>, store: &StoreId, row: &FileRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO files (store, id, path, content_hash, uploaded, name, mime_type,
            size, metadata_json, created_at, updated_at, deleted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            store.as_str(),
            row.id.as_str(),
            row.path,
            row.content_hash.to_hex(),
            row.remote_key.is_some(),
            row.info.name,
            row.info.mime_type,
            to_i64(row.info.size)?,
            row.metadata_json,
            to_i64(row.created_at.0)?,
            to_i64(row.updated_at.0)?,
            row.deleted_at.map(|d| to_i64(d.0)).transpose()?,
        ],
    )
    .map_err(db)?;
    Ok(())
}

impl EventStore for SqliteEventStore {
    fn push(
        &self,
        store: &StoreId,
        events: &[ClientEvent],
        absent: &BTreeSet<ContentHash>,
    ) -> Result<PushResult, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(db)?;
        let mut head: u64 = tx
            .query_row(
                "SELECT head FROM stores WHERE store = ?1",
                params![store.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(db)?
            .map(to_u64)
            .transpose()?
            .unwrap_or(0);
        let mut out = PushResult::default();
        for ev in events {
            if let Some(stored) = find_by_id(&tx, store, &ev.id)? {
                out.events.push(stored);
                continue;
            }
            head += 1;
            let mut event = ev.event.clone();
            if let FileEvent::Updated(u) = &mut event {
                if u.remote_key.is_some() && absent.contains(&u.content_hash) {
                    u.remote_key = None;
                }
            }
            let wire = event.to_wire();
            tx.execute(
                "INSERT INTO events (store, seq, client, n, name, args)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    store.as_str(),
                    to_i64(head)?,
                    ev.id.client.as_str(),
                    to_i64(ev.id.n)?,
                    wire.name,
                    wire.args.to_string(),
                ],
            )
            .map_err(db)?;
            let current = load_row(&tx, store, event.file_id())?;
            if let Some(next) = fold(current.as_ref(), &event) {
                save_row(&tx, store, &next)?;
            }
            let confirmed = ConfirmedEvent {
                seq: Seq(head),
                id: ev.id.clone(),
                event,
            };
            out.events.push(confirmed.clone());
            out.new.push(confirmed);
        }
        if !out.new.is_empty() {
            tx.execute(
                "INSERT INTO stores (store, head) VALUES (?1, ?2)
                 ON CONFLICT (store) DO UPDATE SET head = excluded.head",
                params![store.as_str(), to_i64(head)?],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn pull(
        &self,
        store: &StoreId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<ConfirmedEvent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, client, n, name, args FROM events
                 WHERE store = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![store.as_str(), to_i64(after.0)?, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, client, n, name, args) = row.map_err(db)?;
            out.push(decode_event(seq, client, n, name, args)?);
        }
        Ok(out)
    }

    fn head(&self, store: &StoreId) -> Result<Seq, StoreError> {
        let conn = self.lock()?;
        let head = conn
            .query_row(
                "SELECT head FROM stores WHERE store = ?1",
                params![store.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(db)?;
        Ok(Seq(head.map(to_u64).transpose()?.unwrap_or(0)))
    }

    fn is_referenced(&self, store: &StoreId, hash: &ContentHash) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM files
                 WHERE store = ?1 AND content_hash = ?2 AND deleted_at IS NULL)",
            params![store.as_str(), hash.to_hex()],
            |r| r.get::<_, bool>(0),
        )
        .map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync::core::event::{FileCreated, FileDeleted, FileUpdated, MetadataPatch};

    fn store() -> StoreId {
        StoreId::new("s").unwrap()
    }

    fn id(n: u64) -> EventId {
        EventId {
            client: ClientId::new("c").unwrap(),
            n,
        }
    }

    fn info() -> FileInfo {
        FileInfo {
            name: "a.txt".into(),
            mime_type: "text/plain".into(),
            size: 1,
        }
    }

    fn created(n: u64, file: &str, content: &[u8]) -> ClientEvent {
        ClientEvent {
            id: id(n),
            event: FileEvent::Created(FileCreated {
                id: FileId::new(file).unwrap(),
                path: file.into(),
                content_hash: ContentHash::of(content),
                info: info(),
                metadata_json: None,
                created_at: Millis(1),
                updated_at: Millis(1),
            }),
        }
    }

    fn uploaded(n: u64, file: &str, content: &[u8]) -> ClientEvent {
        let h = ContentHash::of(content);
        ClientEvent {
            id: id(n),
            event: FileEvent::Updated(FileUpdated {
                id: FileId::new(file).unwrap(),
                path: file.into(),
                remote_key: Some(RemoteKey::for_content(&store(), &h)),
                content_hash: h,
                info: info(),
                metadata: MetadataPatch::Keep,
                updated_at: Millis(2),
                expected_content_hash: Some(h),
                previous_content_hash: None,
            }),
        }
    }

    fn deleted(n: u64, file: &str) -> ClientEvent {
        ClientEvent {
            id: id(n),
            event: FileEvent::Deleted(FileDeleted {
                id: FileId::new(file).unwrap(),
                deleted_at: Millis(3),
            }),
        }
    }

    #[test]
    fn push_is_idempotent_gapless_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sqlite");
        let db = SqliteEventStore::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), 1);
        let none = BTreeSet::new();
        let a = created(1, "f1", b"x");
        let r = db.push(&store(), &[a.clone(), a.clone()], &none).unwrap();
        assert_eq!(r.new.len(), 1);
        assert_eq!(r.events.iter().map(|e| e.seq.0).collect::<Vec<_>>(), [1, 1]);
        let r = db
            .push(&store(), &[a, created(2, "f2", b"y")], &none)
            .unwrap();
        assert_eq!(r.events.iter().map(|e| e.seq.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(r.new.len(), 1);
        // Another store has its own numbering and ids.
        let other = StoreId::new("t").unwrap();
        assert_eq!(
            db.push(&other, &[created(1, "f1", b"x")], &none)
                .unwrap()
                .new[0]
                .seq
                .0,
            1
        );
        drop(db);
        let db = SqliteEventStore::open(&path).unwrap();
        assert_eq!(db.head(&store()).unwrap(), Seq(2));
        assert_eq!(db.pull(&store(), Seq(0), 10).unwrap().len(), 2);
        assert_eq!(db.pull(&store(), Seq(1), 10).unwrap()[0].seq, Seq(2));
        assert_eq!(db.pull(&store(), Seq(0), 1).unwrap().len(), 1);
    }

    #[test]
    fn references_follow_the_fold_and_absent_blobs_clear_keys() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteEventStore::open(&dir.path().join("e.sqlite")).unwrap();
        let h = ContentHash::of(b"x");
        let absent: BTreeSet<_> = [h].into();
        db.push(&store(), &[created(1, "f1", b"x")], &absent)
            .unwrap();
        assert!(db.is_referenced(&store(), &h).unwrap());
        let r = db
            .push(&store(), &[uploaded(2, "f1", b"x")], &absent)
            .unwrap();
        match &r.events[0].event {
            FileEvent::Updated(u) => assert_eq!(u.remote_key, None),
            e => panic!("{e:?}"),
        }
        let r = db
            .push(&store(), &[uploaded(3, "f1", b"x")], &BTreeSet::new())
            .unwrap();
        match &r.events[0].event {
            FileEvent::Updated(u) => assert!(u.remote_key.is_some()),
            e => panic!("{e:?}"),
        }
        db.push(&store(), &[deleted(4, "f1")], &absent).unwrap();
        assert!(!db.is_referenced(&store(), &h).unwrap());
        assert!(!db.is_referenced(&StoreId::new("t").unwrap(), &h).unwrap());
    }
}
