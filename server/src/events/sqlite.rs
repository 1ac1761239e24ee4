//! [`SqliteEventStore`], the default backend: one SQLite file, WAL, `synchronous=FULL` so a
//! push acknowledged to a client survives a power cut. Schema changes are numbered migrations
//! recorded in the `schema_version` table.
//!
//! One process owns a data dir, so the per-store serialization of "check, then push" and
//! "check, then delete" is the process's lock (`crate::live::StoreSlot::lock`, held by the
//! routes); the connection itself is behind a mutex and used from `spawn_blocking`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use filesync::core::event::{ClientEvent, ConfirmedEvent, FileInfo};
use filesync::core::ids::{ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId};
use filesync::core::table::{fold, FileRow};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{
    as_stored, attached_contents, decode_event, to_i64, to_u64, BlobCheck, BlobDelete, EventStore,
    PushResult,
};
use crate::error::StoreError;

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

/// The default event store: one SQLite database file.
pub struct SqliteEventStore {
    conn: Arc<Mutex<Connection>>,
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
            conn: Arc::new(Mutex::new(conn)),
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

/// The blocking operations, run from `spawn_blocking` by the [`EventStore`] methods (and
/// directly by the unit tests).
impl SqliteEventStore {
    fn push_blocking(
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
            let event = as_stored(&ev.event, absent);
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

    fn pull_blocking(
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

    fn head_blocking(&self, store: &StoreId) -> Result<Seq, StoreError> {
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

    fn is_referenced_blocking(
        &self,
        store: &StoreId,
        hash: &ContentHash,
    ) -> Result<bool, StoreError> {
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

impl SqliteEventStore {
    /// Runs `f` on a handle of this store on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteEventStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = SqliteEventStore {
            conn: self.conn.clone(),
        };
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Db(format!("database task: {e}")))?
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn push(
        &self,
        store: &StoreId,
        events: &[ClientEvent],
        absent: BlobCheck<'_>,
    ) -> Result<PushResult, StoreError> {
        // Serialized with deletes by the caller's per-store lock (see the module docs).
        let absent = absent(attached_contents(events))
            .await
            .map_err(StoreError::Blob)?;
        let (store, events) = (store.clone(), events.to_vec());
        self.blocking(move |db| db.push_blocking(&store, &events, &absent))
            .await
    }

    async fn pull(
        &self,
        store: &StoreId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<ConfirmedEvent>, StoreError> {
        let store = store.clone();
        self.blocking(move |db| db.pull_blocking(&store, after, limit))
            .await
    }

    async fn head(&self, store: &StoreId) -> Result<Seq, StoreError> {
        let store = store.clone();
        self.blocking(move |db| db.head_blocking(&store)).await
    }

    async fn delete_unreferenced(
        &self,
        store: &StoreId,
        hash: &ContentHash,
        delete: BlobDelete<'_>,
    ) -> Result<bool, StoreError> {
        let (s, h) = (store.clone(), *hash);
        if self
            .blocking(move |db| db.is_referenced_blocking(&s, &h))
            .await?
        {
            return Ok(false);
        }
        delete().await.map_err(StoreError::Blob)?;
        Ok(true)
    }
}
