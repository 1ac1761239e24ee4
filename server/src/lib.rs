//! filesync-server: the reference backend of filesync.
//!
//! It implements docs/PROTOCOL.md: the event sync API (push, pull, live over SSE), the signer
//! API of livestore-filesync (sign upload, sign download, delete) and, in proxy mode, the signed
//! file URLs that move the bytes. Events are decoded and folded with the same code the clients
//! run (`filesync::core`), so the server's files table is the one every client materializes.
//!
//! Layout:
//! * [`events`]: the [`events::EventStore`] trait and its SQLite implementation.
//! * [`blobs`]: the [`blobs::BlobStore`] trait over `object_store` (local disk by default, or an
//!   S3-compatible bucket in proxy or presign mode).
//! * [`routes`]: the HTTP API; [`error`]: errors with stable codes; [`auth`]: bearer tokens and
//!   prefixes; [`keys`]: key validation; [`signing`]: HMAC-signed URLs; [`live`]: per-store
//!   locks and broadcast.
//!
//! [`serve`] binds, starts serving in the background and returns a [`Running`] handle with the
//! bound address; the binary (`src/main.rs`) is a thin CLI around it, and the tests start it on
//! port 0 the same way.
//!
//! Data dir layout: `events.sqlite` (+ `-wal`, `-shm`), `blobs/<store>/<sha256>`,
//! `signing-secret` (created when `--signing-secret` is not given).

pub mod auth;
pub mod blobs;
pub mod error;
pub mod events;
pub mod guard;
pub mod keys;
pub mod listen;
pub mod live;
pub mod multipart;
pub mod relay;
pub mod routes;
pub mod signing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;
use tower_http::trace::TraceLayer;

use crate::auth::Tokens;
use crate::blobs::{BlobStore, ObjectStoreBlobs, S3Config};
use crate::events::{EventStore, PostgresEventStore, SqliteEventStore};
use crate::signing::Signer;

/// Default largest blob: 5 TiB, the largest object S3 stores. Blobs past S3's 5 GiB single-PUT
/// limit go up in parts (the multipart extension), which every blob mode serves.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Default lifetime of signed URLs.
pub const DEFAULT_URL_TTL_SECS: u64 = 900;
/// Longest lifetime of signed URLs.
pub const MAX_URL_TTL_SECS: u64 = 3600;
/// File name of the event database inside the data dir.
pub const EVENTS_DB: &str = "events.sqlite";
/// Directory of blobs inside the data dir.
pub const BLOBS_DIR: &str = "blobs";
/// Pooled PostgreSQL connections per instance.
pub const DATABASE_CONNECTIONS: usize = 16;
/// Default of [`Config::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`Config::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`Config::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors kept for everything but connections (database, blob files, S3 clients): this
/// many, or a quarter of a lower limit.
const RESERVED_DESCRIPTORS: u64 = 128;
/// Default of [`Config::multipart_max_age`]: one day.
pub const DEFAULT_MULTIPART_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Everything [`serve`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind; port 0 picks a free port (see [`Running::addr`]).
    pub addr: SocketAddr,
    /// Where events, blobs and the generated signing secret live.
    pub data_dir: PathBuf,
    /// Static files served at `/` when the directory exists.
    pub www_dir: Option<PathBuf>,
    /// Base of signed URLs (`https://files.example.com`); `None`: `http://<Host header>`.
    pub public_url: Option<String>,
    /// Bearer tokens; empty: open mode.
    pub tokens: Tokens,
    /// HMAC secret of signed URLs; `None`: generated once per data dir.
    pub signing_secret: Option<String>,
    /// Largest blob accepted.
    pub max_blob_bytes: u64,
    /// Lifetime of signed URLs, capped at [`MAX_URL_TTL_SECS`].
    pub url_ttl_secs: u64,
    /// Interval of `: ping` comments on live streams.
    pub ping_interval: Duration,
    /// Multipart uploads older than this are aborted (at start, then every quarter of it, at
    /// most hourly).
    pub multipart_max_age: Duration,
    /// Most connections served at once; more wait in the listen queue. Lowered at start to fit
    /// under the process's descriptor limit.
    pub max_connections: usize,
    /// A request head must arrive within this; an idle keep-alive connection is closed after it.
    pub header_read_timeout: Duration,
    /// A peer that accepts no byte for this long is dropped (a live subscriber that stopped
    /// reading, a stalled download).
    pub write_timeout: Duration,
    /// Events in PostgreSQL at this URL (`postgres://user:password@host:port/db`) instead of
    /// SQLite in the data dir: for several instances serving the same stores.
    pub database_url: Option<String>,
    /// More trusted certificates (PEM) for TLS to the database (a managed database's CA).
    pub database_ca_file: Option<PathBuf>,
    /// Blobs in an S3-compatible bucket instead of `<data-dir>/blobs`.
    pub s3: Option<S3Config>,
    /// Who moves the bytes; [`BlobMode::Presign`] needs [`Config::s3`].
    pub blob_mode: BlobMode,
}

/// Who moves the bytes of blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobMode {
    /// This server: signer calls return its own HMAC-signed URLs and it streams the bytes to and
    /// from the backend, verifying hashes on the way in.
    #[default]
    Proxy,
    /// The bucket: signer calls return SigV4 presigned URLs of the S3 bucket.
    Presign,
    /// Another signer keeps the blobs (livestore-filesync's own backends, say): this server
    /// serves events only. It has no signer API and no file URLs, and stores attaches as they
    /// come (it cannot tell whether the other signer holds their bytes).
    External,
}

impl Config {
    /// Defaults for a data dir: loopback port 8787, open mode, no static files.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: data_dir.into(),
            www_dir: None,
            public_url: None,
            tokens: Tokens::open(),
            signing_secret: None,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            url_ttl_secs: DEFAULT_URL_TTL_SECS,
            ping_interval: routes::PING_INTERVAL,
            multipart_max_age: DEFAULT_MULTIPART_MAX_AGE,
            database_url: None,
            database_ca_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            s3: None,
            blob_mode: BlobMode::Proxy,
        }
    }
}

/// Shared state of the handlers.
pub struct AppState {
    pub events: Arc<dyn EventStore>,
    /// The blobs this server keeps (`None`: another signer keeps them, see
    /// [`BlobMode::External`]).
    pub blobs: Option<Arc<dyn BlobStore>>,
    pub tokens: Tokens,
    pub signer: Signer,
    pub public_url: Option<String>,
    pub local_addr: SocketAddr,
    pub max_blob_bytes: u64,
    pub url_ttl_secs: u64,
    pub ping_interval: Duration,
    /// See [`Config::multipart_max_age`].
    pub multipart_max_age: Duration,
    pub stores: live::Stores,
    /// Cancelled on shutdown; ends live streams so graceful shutdown does not wait for them.
    pub shutdown: CancellationToken,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data dir or a file in it could not be created or read.
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The event database could not be opened or migrated.
    #[error("event store: {0}")]
    Events(#[from] error::StoreError),
    /// The configuration is inconsistent (presign mode without a bucket, a bad S3 prefix).
    #[error("config: {0}")]
    Config(String),
    /// The blob backend could not be set up.
    #[error("blob store: {0}")]
    Blobs(#[from] error::BlobError),
    /// The address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server.
#[must_use = "dropping the handle leaves the server running in the background"]
pub struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, ends live streams, waits for requests in flight, then returns.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after its shutdown token is cancelled).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// Builds the whole application: API routes, static files, CORS and request tracing.
pub fn app(state: Arc<AppState>, www_dir: Option<&std::path::Path>) -> Router {
    let mut router = routes::router(state);
    router = match www_dir.filter(|d| d.is_dir()) {
        // The app's files keep their names from one release to the next (no hashes in them):
        // browsers must ask each time (a 304 when unchanged), or a deploy could give a page the
        // new glue with a cached old wasm.
        Some(dir) => router.fallback_service(SetResponseHeader::overriding(
            ServeDir::new(dir).append_index_html_on_directories(true),
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        )),
        None => router.fallback(routes::not_found),
    };
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::RANGE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::ETAG,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
        ])
        .max_age(Duration::from_secs(86_400));
    router
        .layer(axum::middleware::from_fn(guard::close_after_refusal))
        .layer(TraceLayer::new_for_http())
        .layer(cors)
}

/// Opens the data dir, binds `config.addr` and serves in the background.
pub async fn serve(config: Config) -> Result<Running, ServeError> {
    let data_dir = config.data_dir.clone();
    let dir_err = |source| ServeError::DataDir {
        path: data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(dir_err)?;
    blobs::install_tls_provider();
    let signer = match &config.signing_secret {
        Some(s) => Signer::new(s.as_bytes()),
        None => Signer::load_or_create(&config.data_dir).map_err(dir_err)?,
    };
    // With PostgreSQL, this instance's id in the notifications of its pushes.
    let mut relay = None;
    let events: Arc<dyn EventStore> = match &config.database_url {
        Some(url) => {
            let ca = config.database_ca_file.as_deref();
            let pg = PostgresEventStore::connect(url, DATABASE_CONNECTIONS, ca).await?;
            tracing::info!(instance = pg.instance(), "events in PostgreSQL");
            relay = Some((url.clone(), pg.instance().to_string(), pg.tls()));
            Arc::new(pg)
        }
        None => {
            let db_path = config.data_dir.join(EVENTS_DB);
            let sqlite = tokio::task::spawn_blocking(move || SqliteEventStore::open(&db_path))
                .await
                .map_err(|e| dir_err(std::io::Error::other(e.to_string())))??;
            Arc::new(sqlite)
        }
    };
    let blobs = match (&config.s3, config.blob_mode) {
        (Some(_), BlobMode::External) => {
            return Err(ServeError::Config(
                "external blob mode keeps no blobs here: drop --s3-bucket".into(),
            ))
        }
        (None, BlobMode::External) => {
            tracing::info!("blobs kept by another signer: serving events only");
            None
        }
        (Some(s3), mode) => {
            let prefix = s3
                .prefix
                .as_deref()
                .map(blobs::normalize_s3_prefix)
                .transpose()
                .map_err(|e| ServeError::Config(format!("--s3-prefix: {e}")))?;
            tracing::info!(bucket = %s3.bucket, endpoint = ?s3.endpoint, ?prefix, ?mode, "blobs in S3");
            Some(ObjectStoreBlobs::s3(s3, mode == BlobMode::Presign)?)
        }
        (None, BlobMode::Presign) => {
            return Err(ServeError::Config(
                "presign mode needs an S3 bucket (--s3-bucket)".into(),
            ))
        }
        (None, BlobMode::Proxy) => {
            let dir = config.data_dir.join(BLOBS_DIR);
            let swept = blobs::sweep_staging(&dir, blobs::STAGING_ABANDONED).map_err(dir_err)?;
            if swept > 0 {
                tracing::info!(
                    files = swept,
                    "removed staging files of interrupted uploads"
                );
            }
            Some(ObjectStoreBlobs::local(&dir).map_err(dir_err)?)
        }
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.addr,
        source,
    })?;
    if config.tokens.is_open() {
        tracing::warn!("no tokens configured: the server is open, every request may read and write every store");
    }
    let shutdown = CancellationToken::new();
    let state = Arc::new(AppState {
        events,
        blobs: blobs.map(|b| Arc::new(b) as Arc<dyn BlobStore>),
        tokens: config.tokens.clone(),
        signer,
        public_url: config
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
        local_addr: addr,
        max_blob_bytes: config.max_blob_bytes,
        url_ttl_secs: config.url_ttl_secs.clamp(1, MAX_URL_TTL_SECS),
        ping_interval: config.ping_interval,
        multipart_max_age: config.multipart_max_age,
        stores: live::Stores::default(),
        shutdown: shutdown.clone(),
    });
    if let Some((url, instance, tls)) = relay {
        tokio::spawn(relay::run(state.clone(), url, instance, tls));
    }
    if let Some(blobs) = state.blobs.clone() {
        sweep_uploads(&*blobs, state.multipart_max_age).await;
        tokio::spawn(sweep_periodically(
            blobs,
            state.multipart_max_age,
            shutdown.clone(),
        ));
    }
    let app = app(state, config.www_dir.as_deref());
    let limits = listen::Limits {
        max_connections: connection_cap(config.max_connections),
        header_read_timeout: config.header_read_timeout,
        write_timeout: config.write_timeout,
    };
    let task = tokio::spawn(listen::serve(listener, app, limits, shutdown.clone()));
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// `wanted`, lowered to fit under the descriptor limit (raised to its hard maximum first).
fn connection_cap(wanted: usize) -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let reserved = RESERVED_DESCRIPTORS.min(limit / 4);
            let fits = limit.saturating_sub(reserved).max(1);
            let cap = (wanted as u64).min(fits) as usize;
            if cap < wanted {
                tracing::warn!(
                    wanted,
                    cap,
                    descriptors = limit,
                    "connection cap lowered to fit the descriptor limit"
                );
            }
            cap
        }
        Err(e) => {
            tracing::warn!(%e, "cannot read the descriptor limit");
            wanted
        }
    }
}

/// Aborts the multipart uploads older than `max_age`. Failures are logged: the next sweep tries
/// again, and several instances sweeping at once only repeat idempotent deletes.
async fn sweep_uploads(blobs: &dyn BlobStore, max_age: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match blobs
        .multipart()
        .sweep(now.saturating_sub(max_age.as_secs()))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(uploads = n, "aborted stale multipart uploads"),
        Err(e) => tracing::warn!(%e, "sweeping stale multipart uploads failed"),
    }
}

async fn sweep_periodically(
    blobs: Arc<dyn BlobStore>,
    max_age: Duration,
    shutdown: CancellationToken,
) {
    let every = (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => sweep_uploads(&*blobs, max_age).await,
        }
    }
}
