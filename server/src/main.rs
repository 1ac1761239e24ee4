//! `filesync-server` binary: flags and environment to [`filesync_server::Config`], logging,
//! signals. Everything else is in the library.
//!
//! Once listening it prints exactly one line on stdout,
//! `filesync-server listening on http://HOST:PORT`, for scripts and tests to read (logs go to
//! stderr). SIGINT or SIGTERM stop it gracefully: no new connections, live streams end,
//! requests in flight get up to 10 s to finish.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use filesync_server::auth::Tokens;
use filesync_server::blobs::{normalize_s3_prefix, S3Config, DEFAULT_VERIFY_MAX_BYTES};
use filesync_server::{
    BlobMode, Config, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MULTIPART_MAX_AGE, DEFAULT_WRITE_TIMEOUT, MAX_URL_TTL_SECS,
};

/// Reference server of filesync: event sync API, livestore-filesync signer API, blob storage.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "FILESYNC_ADDR", default_value = "127.0.0.1:8787")]
    addr: SocketAddr,
    /// Port to listen on, replacing the port of --addr (0: any free port).
    #[arg(long, env = "FILESYNC_PORT")]
    port: Option<u16>,
    /// Directory of the event database, blobs and generated signing secret.
    #[arg(long, env = "FILESYNC_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Static files served at / when the directory exists.
    #[arg(long, env = "FILESYNC_WWW_DIR", default_value = "www")]
    www_dir: PathBuf,
    /// Base URL of signed file URLs (default: http://<Host header of the request>).
    #[arg(long, env = "FILESYNC_PUBLIC_URL")]
    public_url: Option<String>,
    /// Bearer tokens and their key prefixes: "tok1=storeA/,storeB/;tok2=*" (none: open server).
    #[arg(long, env = "FILESYNC_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// HMAC secret of signed URLs (default: random, kept in <data-dir>/signing-secret).
    #[arg(long, env = "FILESYNC_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<String>,
    /// Largest blob accepted, in bytes (default 5 TiB, S3's largest object).
    #[arg(long, env = "FILESYNC_MAX_BLOB_BYTES", default_value_t = DEFAULT_MAX_BLOB_BYTES)]
    max_blob_bytes: u64,
    /// Lifetime of signed URLs in seconds (at most 3600).
    #[arg(long, env = "FILESYNC_URL_TTL_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=MAX_URL_TTL_SECS))]
    url_ttl_secs: u64,
    /// Multipart uploads not completed within this many seconds are aborted and their parts
    /// deleted.
    #[arg(long, env = "FILESYNC_MULTIPART_MAX_AGE_SECS", default_value_t = DEFAULT_MULTIPART_MAX_AGE.as_secs())]
    multipart_max_age_secs: u64,
    /// Keep events in PostgreSQL (`postgres://user:password@host:port/db`) instead of SQLite in
    /// the data dir: several instances may then serve the same stores.
    #[arg(long, env = "FILESYNC_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// More trusted certificates (PEM) for TLS to the database, e.g. a managed database's CA
    /// bundle (the platform's roots are always trusted).
    #[arg(long, env = "FILESYNC_DATABASE_CA_FILE")]
    database_ca_file: Option<PathBuf>,
    /// Most connections served at once (more wait in the listen queue); lowered at start to
    /// fit the descriptor limit.
    #[arg(long, env = "FILESYNC_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds a client has to send a whole request head; also how long an idle keep-alive
    /// connection is kept.
    #[arg(long, env = "FILESYNC_HEADER_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    header_timeout_secs: u64,
    /// Seconds a client may accept no byte before it is dropped (a live subscriber that stopped
    /// reading, a stalled download).
    #[arg(long, env = "FILESYNC_WRITE_TIMEOUT_SECS", default_value_t = DEFAULT_WRITE_TIMEOUT.as_secs())]
    write_timeout_secs: u64,
    /// Who moves blob bytes: this server (proxy), the S3 bucket via presigned URLs (presign,
    /// needs --s3-bucket), or another signer this server does not know (external: events only,
    /// no signer API; attaches are stored as pushed).
    #[arg(long, env = "FILESYNC_BLOB_MODE", value_enum, default_value_t = Mode::Proxy)]
    blob_mode: Mode,
    /// S3 bucket of the blobs (setting it moves blobs from the data dir to the bucket).
    #[arg(long, env = "FILESYNC_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// http(s)://host:port of an S3-compatible server (default: AWS for --s3-region).
    #[arg(long, env = "FILESYNC_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region of the bucket (SigV4 signs it).
    #[arg(long, env = "FILESYNC_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Access key id (default: $AWS_ACCESS_KEY_ID).
    #[arg(long, env = "FILESYNC_S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// Secret access key (default: $AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "FILESYNC_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Session token of temporary credentials (default: $AWS_SESSION_TOKEN).
    #[arg(long, env = "FILESYNC_S3_SESSION_TOKEN", hide_env_values = true)]
    s3_session_token: Option<String>,
    /// Path-style URLs (endpoint/bucket/key); false: virtual-hosted (bucket.endpoint/key).
    #[arg(long, env = "FILESYNC_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    s3_path_style: bool,
    /// Presign mode: objects up to this size are read back and hashed when a push first
    /// references them.
    #[arg(long, env = "FILESYNC_S3_VERIFY_MAX_BYTES", default_value_t = DEFAULT_VERIFY_MAX_BYTES)]
    s3_verify_max_bytes: u64,
    /// Object-key prefix in the bucket (apps/photos/): objects are <prefix><store>/<sha256>.
    /// A relative path; a missing trailing / is added. Needs --s3-bucket.
    #[arg(long, env = "FILESYNC_S3_PREFIX")]
    s3_prefix: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Mode {
    Proxy,
    Presign,
    External,
}

/// The S3 settings when a bucket is given; credentials fall back to the AWS_* variables.
fn s3_config(args: &Args) -> Result<Option<S3Config>, String> {
    let prefix = args
        .s3_prefix
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(normalize_s3_prefix)
        .transpose()
        .map_err(|e| format!("--s3-prefix: {e}"))?;
    let Some(bucket) = args.s3_bucket.clone().filter(|b| !b.is_empty()) else {
        if prefix.is_some() {
            return Err(
                "--s3-prefix needs --s3-bucket (blobs in the data dir have no prefix)".into(),
            );
        }
        return Ok(None);
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let access_key_id = args
        .s3_access_key_id
        .clone()
        .or_else(|| env("AWS_ACCESS_KEY_ID"))
        .ok_or("--s3-bucket needs an access key id (--s3-access-key-id or AWS_ACCESS_KEY_ID)")?;
    let secret_access_key = args
        .s3_secret_access_key
        .clone()
        .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
        .ok_or("--s3-bucket needs a secret (--s3-secret-access-key or AWS_SECRET_ACCESS_KEY)")?;
    Ok(Some(S3Config {
        endpoint: args.s3_endpoint.clone().filter(|e| !e.is_empty()),
        bucket,
        region: args.s3_region.clone(),
        access_key_id,
        secret_access_key,
        session_token: args
            .s3_session_token
            .clone()
            .or_else(|| env("AWS_SESSION_TOKEN")),
        path_style: args.s3_path_style,
        verify_max_bytes: args.s3_verify_max_bytes,
        prefix,
    }))
}

/// The next delivery of `signal`; never, without one.
#[cfg(unix)]
async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Starts listening for SIGINT and SIGTERM at once (the handlers are installed when this
/// returns), and returns a future that completes on the first of them. Called before the server
/// announces itself, so a signal sent right after the "listening" line stops it gracefully.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(%e, "cannot listen for {name}");
                None
            }
        };
        let (mut int, mut term) = (
            listen(SignalKind::interrupt(), "SIGINT"),
            listen(SignalKind::terminate(), "SIGTERM"),
        );
        async move {
            tokio::select! {
                () = recv(int.as_mut()) => {}
                () = recv(term.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let tokens = match args.tokens.as_deref().map(Tokens::parse).transpose() {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            eprintln!("filesync-server: {e}");
            return ExitCode::from(2);
        }
    };
    let s3 = match s3_config(&args) {
        Ok(s3) => s3,
        Err(e) => {
            eprintln!("filesync-server: {e}");
            return ExitCode::from(2);
        }
    };
    let mut addr = args.addr;
    if let Some(port) = args.port {
        addr.set_port(port);
    }
    let config = Config {
        addr,
        www_dir: Some(args.www_dir),
        public_url: args.public_url,
        tokens,
        signing_secret: args.signing_secret.filter(|s| !s.is_empty()),
        max_blob_bytes: args.max_blob_bytes,
        url_ttl_secs: args.url_ttl_secs,
        multipart_max_age: Duration::from_secs(args.multipart_max_age_secs),
        database_url: args.database_url.filter(|u| !u.is_empty()),
        database_ca_file: args.database_ca_file,
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        write_timeout: Duration::from_secs(args.write_timeout_secs.max(1)),
        s3,
        blob_mode: match args.blob_mode {
            Mode::Proxy => BlobMode::Proxy,
            Mode::Presign => BlobMode::Presign,
            Mode::External => BlobMode::External,
        },
        ..Config::new(args.data_dir)
    };
    let stop_requested = stop_signal();
    let running = match filesync_server::serve(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("filesync-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("filesync-server listening on {}", running.url());
    // Scripts wait for this line; make sure it is not stuck in a buffer.
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %running.addr(), "listening");

    let token = running.shutdown_token();
    tokio::spawn(async move {
        stop_requested.await;
        tracing::info!("stopping");
        token.cancel();
    });
    let stop = running.shutdown_token();
    let done = running.wait();
    tokio::pin!(done);
    let result = tokio::select! {
        r = &mut done => r,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => {
            tracing::warn!("requests still running after 10 s; exiting anyway");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("filesync-server: {e}");
            ExitCode::FAILURE
        }
    }
}
