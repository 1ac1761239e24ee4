//! [`PostgresEventStore`]: the event store on PostgreSQL, for several server instances over
//! one database (`--database-url`).
//!
//! Every push and every blob delete of a store runs in one transaction that first locks the
//! store's row in `stores` (`SELECT ... FOR UPDATE`, the row created on first use): pushes to
//! one store are serialized across instances, so sequence numbers have no gaps or duplicates,
//! a retried push that reaches another instance finds its events by id, and the blob check of
//! a push and the reference check of a delete cannot interleave. Pulls and heads read
//! committed rows without locking. Connections come from a `deadpool-postgres` pool; schema
//! changes are numbered migrations applied at start under an advisory lock, so instances
//! starting together migrate once.
//!
//! TLS: the URL's `sslmode` decides (`disable`; `prefer`, the default: TLS when the server
//! offers it; `require`). Certificates are always verified, against the platform's roots and
//! the certificates of `--database-ca-file` (a managed database's CA bundle).

use std::collections::BTreeSet;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use filesync::core::event::{ClientEvent, ConfirmedEvent, FileInfo};
use filesync::core::ids::{ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId};
use filesync::core::table::{fold, FileRow};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    as_stored, attached_contents, decode_event, to_i64, to_u64, BlobCheck, BlobDelete, EventStore,
    PushResult,
};
use crate::error::StoreError;

/// Migrations, applied in order; `MIGRATIONS[i]` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the log, the per-store head (and lock), the materialized files.
    "CREATE TABLE stores (
        store TEXT PRIMARY KEY,
        head BIGINT NOT NULL
    );
    CREATE TABLE events (
        store TEXT NOT NULL,
        seq BIGINT NOT NULL,
        client TEXT NOT NULL,
        n BIGINT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        PRIMARY KEY (store, seq)
    );
    CREATE UNIQUE INDEX events_by_id ON events (store, client, n);
    CREATE TABLE files (
        store TEXT NOT NULL,
        id TEXT NOT NULL,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        uploaded BOOLEAN NOT NULL,
        name TEXT NOT NULL,
        mime_type TEXT NOT NULL,
        size BIGINT NOT NULL,
        metadata_json TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT,
        PRIMARY KEY (store, id)
    );
    CREATE INDEX files_live_by_content ON files (store, content_hash) WHERE deleted_at IS NULL;",
];

/// The advisory lock instances take while migrating (`'filesync'` in ASCII).
const MIGRATION_LOCK: i64 = 0x6669_6c65_7379_6e63;

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The event store on PostgreSQL.
pub struct PostgresEventStore {
    pool: Pool,
    /// This instance's id in the notifications of its pushes (see [`crate::relay`]).
    instance: String,
    /// How connections make TLS (the relay's connection too).
    tls: MakeRustlsConnect,
}

/// The TLS connector: the platform's roots and the certificates in `ca_file` (PEM).
pub fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable platform certificates are skipped; a missing trust store leaves the CA file.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Db(format!("database CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(StoreError::Db(format!(
                "database CA file {} holds no certificate",
                path.display()
            )));
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(db)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore").finish_non_exhaustive()
    }
}

impl PostgresEventStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=...`, see the
    /// module docs for TLS; `ca_file`: more trusted certificates), with at most
    /// `max_connections` pooled connections, and migrates the schema.
    pub async fn connect(
        url: &str,
        max_connections: usize,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("database URL: {e}")))?;
        let tls = tls_connector(ca_file)?;
        let manager = Manager::from_config(
            config,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .build()
            .map_err(db)?;
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(db)?;
        let instance = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let store = PostgresEventStore {
            pool,
            instance,
            tls,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await
            .map_err(db)?;
        let current: Option<i32> = tx
            .query_one("SELECT MAX(version) FROM schema_version", &[])
            .await
            .map_err(db)?
            .get(0);
        let current = usize::try_from(current.unwrap_or(0)).unwrap_or(0);
        if current > MIGRATIONS.len() {
            return Err(StoreError::Db(format!(
                "database schema version {current} is newer than this server's {}",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.batch_execute(sql).await.map_err(db)?;
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// The TLS connector its connections use.
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// This instance's id in notifications (random per connection pool).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The schema version after connecting.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let client = self.client().await?;
        let v: Option<i32> = client
            .query_one("SELECT MAX(version) FROM schema_version", &[])
            .await
            .map_err(db)?
            .get(0);
        Ok(u32::try_from(v.unwrap_or(0)).unwrap_or(0))
    }
}

/// `sql` prepared on this connection (once per pooled connection: a statement sent as text
/// would cost a second round trip every time).
async fn prepared(
    tx: &impl GenericClient,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    tx.prepare_cached(sql).await.map_err(db)
}

/// Locks the store's row (creating it) inside `tx`, in one round trip; the store's head.
/// `ON CONFLICT DO UPDATE` locks an existing row like `SELECT ... FOR UPDATE`.
async fn lock_store(tx: &impl GenericClient, store: &StoreId) -> Result<u64, StoreError> {
    let stmt = prepared(
        tx,
        "INSERT INTO stores (store, head) VALUES ($1, 0)
         ON CONFLICT (store) DO UPDATE SET head = stores.head RETURNING head",
    )
    .await?;
    let head: i64 = tx
        .query_one(&stmt, &[&store.as_str()])
        .await
        .map_err(db)?
        .get(0);
    to_u64(head)
}

async fn find_by_id(
    tx: &impl GenericClient,
    store: &StoreId,
    id: &EventId,
) -> Result<Option<ConfirmedEvent>, StoreError> {
    let stmt = prepared(
        tx,
        "SELECT seq, name, args FROM events WHERE store = $1 AND client = $2 AND n = $3",
    )
    .await?;
    let row = tx
        .query_opt(
            &stmt,
            &[&store.as_str(), &id.client.as_str(), &to_i64(id.n)?],
        )
        .await
        .map_err(db)?;
    row.map(|r| {
        decode_event(
            r.get(0),
            id.client.as_str().to_string(),
            to_i64(id.n)?,
            r.get(1),
            r.get(2),
        )
    })
    .transpose()
}

async fn load_row(
    tx: &impl GenericClient,
    store: &StoreId,
    id: &FileId,
) -> Result<Option<FileRow>, StoreError> {
    let stmt = prepared(
        tx,
        "SELECT path, content_hash, uploaded, name, mime_type, size, metadata_json,
                created_at, updated_at, deleted_at
         FROM files WHERE store = $1 AND id = $2",
    )
    .await?;
    let Some(r) = tx
        .query_opt(&stmt, &[&store.as_str(), &id.as_str()])
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let hash: String = r.get(1);
    let content_hash =
        ContentHash::parse(&hash).map_err(|e| StoreError::Corrupt(format!("file {id}: {e}")))?;
    let uploaded: bool = r.get(2);
    let deleted: Option<i64> = r.get(9);
    Ok(Some(FileRow {
        id: id.clone(),
        path: r.get(0),
        content_hash,
        remote_key: uploaded.then(|| RemoteKey::for_content(store, &content_hash)),
        info: FileInfo {
            name: r.get(3),
            mime_type: r.get(4),
            size: to_u64(r.get(5))?,
        },
        metadata_json: r.get(6),
        created_at: Millis(to_u64(r.get(7))?),
        updated_at: Millis(to_u64(r.get(8))?),
        deleted_at: deleted.map(to_u64).transpose()?.map(Millis),
    }))
}

async fn save_row(
    tx: &impl GenericClient,
    store: &StoreId,
    row: &FileRow,
) -> Result<(), StoreError> {
    let deleted = row.deleted_at.map(|d| to_i64(d.0)).transpose()?;
    let stmt = prepared(
        tx,
        "INSERT INTO files (store, id, path, content_hash, uploaded, name, mime_type, size,
            metadata_json, created_at, updated_at, deleted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (store, id) DO UPDATE SET path = excluded.path,
            content_hash = excluded.content_hash, uploaded = excluded.uploaded,
            name = excluded.name, mime_type = excluded.mime_type, size = excluded.size,
            metadata_json = excluded.metadata_json, created_at = excluded.created_at,
            updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
    )
    .await?;
    tx.execute(
        &stmt,
        &[
            &store.as_str(),
            &row.id.as_str(),
            &row.path,
            &row.content_hash.to_hex(),
            &row.remote_key.is_some(),
            &row.info.name,
            &row.info.mime_type,
            &to_i64(row.info.size)?,
            &row.metadata_json,
            &to_i64(row.created_at.0)?,
            &to_i64(row.updated_at.0)?,
            &deleted,
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn push(
        &self,
        store: &StoreId,
        events: &[ClientEvent],
        absent: BlobCheck<'_>,
    ) -> Result<PushResult, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut head = lock_store(&tx, store).await?;
        // Under the store's row lock: no delete of this store's blobs runs meanwhile.
        let absent: BTreeSet<ContentHash> = absent(attached_contents(events))
            .await
            .map_err(StoreError::Blob)?;
        let mut out = PushResult::default();
        for ev in events {
            if let Some(stored) = find_by_id(&tx, store, &ev.id).await? {
                out.events.push(stored);
                continue;
            }
            head += 1;
            let event = as_stored(&ev.event, &absent);
            let wire = event.to_wire();
            let insert = prepared(
                &tx,
                "INSERT INTO events (store, seq, client, n, name, args)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
            tx.execute(
                &insert,
                &[
                    &store.as_str(),
                    &to_i64(head)?,
                    &ev.id.client.as_str(),
                    &to_i64(ev.id.n)?,
                    &wire.name,
                    &wire.args.to_string(),
                ],
            )
            .await
            .map_err(db)?;
            let current = load_row(&tx, store, event.file_id()).await?;
            if let Some(next) = fold(current.as_ref(), &event) {
                save_row(&tx, store, &next).await?;
            }
            let confirmed = ConfirmedEvent {
                seq: Seq(head),
                id: ev.id.clone(),
                event,
            };
            out.events.push(confirmed.clone());
            out.new.push(confirmed);
        }
        if let (Some(first), Some(last)) = (out.new.first(), out.new.last()) {
            // The new head, and the notification other instances get when (and only if) this
            // commits, in one round trip.
            let note = crate::relay::payload(&self.instance, first.seq.0, last.seq.0, store);
            let stmt = prepared(
                &tx,
                "WITH moved AS (UPDATE stores SET head = $2 WHERE store = $1)
                 SELECT pg_notify($3, $4)",
            )
            .await?;
            tx.execute(
                &stmt,
                &[
                    &store.as_str(),
                    &to_i64(head)?,
                    &crate::relay::CHANNEL,
                    &note,
                ],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn pull(
        &self,
        store: &StoreId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<ConfirmedEvent>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let stmt = prepared(
            &client,
            "SELECT seq, client, n, name, args FROM events
             WHERE store = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .await?;
        let rows = client
            .query(&stmt, &[&store.as_str(), &to_i64(after.0)?, &limit])
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|r| decode_event(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    async fn head(&self, store: &StoreId) -> Result<Seq, StoreError> {
        let client = self.client().await?;
        let head: Option<i64> = client
            .query_opt(
                "SELECT head FROM stores WHERE store = $1 FOR UPDATE",
                &[&store.as_str()],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        Ok(Seq(head.map(to_u64).transpose()?.unwrap_or(0)))
    }

    async fn delete_unreferenced(
        &self,
        store: &StoreId,
        hash: &ContentHash,
        delete: BlobDelete<'_>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        lock_store(&tx, store).await?;
        let referenced: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM files
                     WHERE store = $1 AND content_hash = $2 AND deleted_at IS NULL)",
                &[&store.as_str(), &hash.to_hex()],
            )
            .await
            .map_err(db)?
            .get(0);
        if !referenced {
            // Under the store's row lock: no push naming this content commits meanwhile.
            delete().await.map_err(StoreError::Blob)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(!referenced)
    }
}
