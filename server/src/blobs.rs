//! Blob storage behind the server's own small trait, [`BlobStore`].
//!
//! Contract:
//! * Keys are [`BlobKey`]s (`<store>/<sha256 hex>`), already validated; an implementation never
//!   sees raw client text as a path.
//! * [`BlobStore::put_verified`] keeps the body only if its SHA-256 equals the key's hash and it
//!   is at most `max_bytes` long; otherwise nothing is kept (not even a partial object).
//!   Storing content that is already present succeeds (same bytes, same key).
//! * [`BlobStore::get`] streams the bytes, optionally one byte range of them.
//! * [`BlobStore::delete`] succeeds when the object is already absent.
//! * [`BlobStore::presign`] (presign mode only) returns a URL of the backend itself that allows
//!   one method on one key until the expiry.
//! * [`BlobStore::is_present`] is the push-time check: in proxy mode every stored object was
//!   verified on the way in, so it is [`BlobStore::exists`]; in presign mode the bytes reached the
//!   bucket without the server, so it also checks their hash once (see [`ObjectStoreBlobs`]).
//!
//! [`ObjectStoreBlobs`] implements it over any `object_store` backend. The body is written as a
//! multipart upload (for the local file system: a staging file `<hash>#<n>` next to the target)
//! while it is hashed; the upload is completed (renamed into place, fsynced) only after the hash
//! matched, and aborted otherwise. The default backend is `LocalFileSystem` under
//! `<data-dir>/blobs`, giving `<data-dir>/blobs/<store>/<hash>`; [`sweep_staging`] removes the
//! staging files a crashed process left behind. [`ObjectStoreBlobs::s3`] uses `AmazonS3` (any
//! S3-compatible endpoint), in proxy mode (the server streams to and from the bucket, verifying
//! hashes exactly as on disk) or presign mode (SigV4 presigned URLs; the client talks to the
//! bucket).
//!
//! Object-key prefix: with [`S3Config::prefix`] (e.g. `apps/photos/`) every object lives at
//! `<prefix><store>/<sha256>`. The bucket is wrapped in `object_store`'s `PrefixStore`, which is
//! both the store (reads, writes, heads, deletes, the presign-mode verification) and the signer:
//! its `Signer::signed_url` hands the prefixed path to `AmazonS3`, so the prefix is part of the
//! presigned URL's path and of its SigV4 signature. Keys on the wire (the signer API) never carry
//! it: [`BlobKey`]s stay `<store>/<sha256>`.
//!
//! Presign mode and integrity: S3 stores whatever a presigned `PUT` sends, so a client could put
//! bytes under a key that is not their hash. Every client verifies the SHA-256 of what it
//! downloads (a mismatch is an integrity error and the file is not marked present), so bad bytes
//! never become a file's content; they can only keep the file from downloading. To catch that at
//! the source, the push-time presence check (`v1.FileUpdated` with a `remoteKey`) verifies the
//! object's hash the first time a key is referenced: objects up to
//! [`S3Config::verify_max_bytes`] are read back from the bucket and hashed; a mismatch deletes the
//! object and counts as absent, so the event is stored with its remote key cleared and the
//! uploader uploads again. Verified keys are remembered in memory (a restart verifies again).
//! Larger objects are only checked for presence (HEAD), to keep pushes fast.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::BlobError;
use crate::keys::BlobKey;

/// A request body as a stream of chunks.
pub type BodyStream = BoxStream<'static, Result<Bytes, String>>;

/// A `Range: bytes=...` request, resolved against the size once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive end) or `bytes=a-` (`end: None`).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses one `bytes=` range. `None` for anything else (several ranges, other units,
    /// garbage): the caller then serves the whole object, as RFC 9110 allows.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(ByteRange::Suffix);
        }
        let start = a.parse().ok()?;
        let end = if b.is_empty() {
            None
        } else {
            let end: u64 = b.parse().ok()?;
            if end < start {
                return None;
            }
            Some(end)
        };
        Some(ByteRange::From { start, end })
    }

    /// The half-open byte range inside an object of `size` bytes, or `Err` if unsatisfiable.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, BlobError> {
        match self {
            ByteRange::From { start, end } if start < size => {
                let end = end.map_or(size, |e| e.saturating_add(1).min(size));
                Ok(start..end)
            }
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok(size.saturating_sub(n)..size),
            _ => Err(BlobError::Range { size }),
        }
    }
}

/// What [`BlobStore::get`] returns.
pub struct BlobRead {
    /// The size of the whole object.
    pub size: u64,
    /// The bytes streamed (the whole object unless a range was asked for).
    pub range: Range<u64>,
    /// Whether `range` is the answer to a range request.
    pub partial: bool,
    /// The bytes.
    pub stream: BoxStream<'static, Result<Bytes, BlobError>>,
}

/// Blob storage used by the signer and proxy routes.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// `"proxy"` (this server moves the bytes) or `"presign"` (the client talks to the bucket).
    fn mode(&self) -> &'static str;

    /// Whether the object exists.
    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError>;

    /// Stores `body` under `key` if it hashes to the key and fits `max_bytes`.
    async fn put_verified(
        &self,
        key: &BlobKey,
        body: BodyStream,
        max_bytes: u64,
    ) -> Result<(), BlobError>;

    /// Streams the object, or one range of it.
    async fn get(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<BlobRead, BlobError>;

    /// Deletes the object; absent is fine.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;

    /// Whether `key` holds content a file may reference (the push-time check). Proxy mode
    /// verified every object on the way in, so this is [`BlobStore::exists`].
    async fn is_present(&self, key: &BlobKey) -> Result<bool, BlobError> {
        self.exists(key).await
    }

    /// A URL of the backend allowing `method` on `key` for `ttl` (presign mode only).
    async fn presign(
        &self,
        method: PresignMethod,
        key: &BlobKey,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        let _ = (method, key, ttl);
        Err(BlobError::Backend(
            "presigned URLs need presign mode".into(),
        ))
    }
}

/// The two methods a presigned URL may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    /// Upload.
    Put,
    /// Download (`HEAD` too).
    Get,
}

/// Connection settings of an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS (`s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// `endpoint/bucket/key` (true) or `bucket.endpoint/key` (false, virtual-hosted).
    pub path_style: bool,
    /// Presign mode: objects up to this size are hashed when first referenced by a push.
    pub verify_max_bytes: u64,
    /// Object-key prefix (`apps/photos/`) under which every object lives; `None`: the bucket
    /// root. Checked by [`normalize_s3_prefix`] (a missing trailing `/` is added).
    pub prefix: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .field("verify_max_bytes", &self.verify_max_bytes)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Default of [`S3Config::verify_max_bytes`]: 16 MiB.
pub const DEFAULT_VERIFY_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Longest [`S3Config::prefix`], in bytes (S3 keys are at most 1,024; `<store>/<sha256>` needs
/// the rest).
pub const MAX_S3_PREFIX_BYTES: usize = 512;

/// Checks an object-key prefix and returns it normalized, ending with `/`: a relative path of
/// non-empty segments, none of them `.` or `..`, without control characters, at most
/// [`MAX_S3_PREFIX_BYTES`] long. `apps/photos` becomes `apps/photos/`.
pub fn normalize_s3_prefix(prefix: &str) -> Result<String, String> {
    if prefix.is_empty() {
        return Err("the S3 prefix is empty".into());
    }
    if prefix.starts_with('/') {
        return Err(format!(
            "the S3 prefix {prefix:?} starts with '/'; give a relative path like apps/photos/"
        ));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the S3 prefix {prefix:?} contains the control character {c:?}"
        ));
    }
    let body = prefix.strip_suffix('/').unwrap_or(prefix);
    for segment in body.split('/') {
        match segment {
            "" => {
                return Err(format!(
                    "the S3 prefix {prefix:?} has an empty segment ('//')"
                ))
            }
            "." | ".." => {
                return Err(format!(
                    "the S3 prefix {prefix:?} has a {segment:?} segment; give a normalized path"
                ))
            }
            _ => {}
        }
    }
    let normalized = format!("{body}/");
    if normalized.len() > MAX_S3_PREFIX_BYTES {
        return Err(format!(
            "the S3 prefix is {} bytes long; at most {MAX_S3_PREFIX_BYTES} are allowed",
            normalized.len()
        ));
    }
    Ok(normalized)
}

/// Removes the staging files (`<hash>#<n>`) of uploads a crashed process left in a local blob
/// dir (`<dir>/<store>/`). Run at start, before serving: one process owns a data dir, so no
/// upload is in flight then. Returns how many files were removed.
pub fn sweep_staging(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let stores = match std::fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for store in stores {
        let store = store?;
        if !store.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(store.path())? {
            let file = file?;
            if file.file_name().to_string_lossy().contains('#') && file.file_type()?.is_file() {
                std::fs::remove_file(file.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Part size of uploads: S3's minimum, so the same code serves S3 multipart uploads.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts written at once per upload.
const PARTS_IN_FLIGHT: usize = 2;

/// [`BlobStore`] over an `object_store` backend.
#[derive(Debug, Clone)]
pub struct ObjectStoreBlobs {
    store: Arc<dyn ObjectStore>,
    /// Presign mode: the backend's URL signer.
    signer: Option<Arc<dyn Signer>>,
    /// Presign mode: objects up to this size are hashed when first referenced.
    verify_max_bytes: u64,
    /// Presign mode: keys whose content was verified (or found too large to verify).
    verified: Arc<Mutex<HashSet<String>>>,
}

/// Most keys remembered as verified before the memory is cleared (then verified again).
const VERIFIED_CAPACITY: usize = 100_000;

fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Backend(e.to_string()),
    }
}

/// rustls (used by object_store's HTTP client for `https` endpoints) is built without a default
/// crypto provider, to avoid compiling aws-lc-sys; this installs ring's as the process default.
/// [`crate::serve`] calls it; a program building its own `reqwest` client before that (in this
/// dependency graph, reqwest has rustls without a provider) calls it first.
pub fn install_tls_provider() {
    // Err: a provider is already installed (by us or the embedding program); both are fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ObjectStoreBlobs {
    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Nothing panics while this lock is held.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn path(key: &BlobKey) -> ObjectPath {
    // Both parts are validated ids/hex, so this is exactly two plain segments.
    ObjectPath::from_iter([key.store.as_str().to_string(), key.hash.to_hex()])
}

impl ObjectStoreBlobs {
    /// Wraps any backend.
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectStoreBlobs {
        ObjectStoreBlobs {
            store,
            signer: None,
            verify_max_bytes: 0,
            verified: Arc::default(),
        }
    }

    /// An S3-compatible bucket; `presign` selects presign mode (else the server proxies).
    /// Objects live under [`S3Config::prefix`], in both modes and in presigned URLs.
    pub fn s3(config: &S3Config, presign: bool) -> Result<ObjectStoreBlobs, BlobError> {
        let prefix = match &config.prefix {
            Some(p) => normalize_s3_prefix(p).map_err(BlobError::Backend)?,
            None => String::new(),
        };
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(!config.path_style);
        if let Some(token) = &config.session_token {
            b = b.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            let endpoint = endpoint.trim_end_matches('/');
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        // An empty prefix is the bucket root. `Path::parse` keeps the validated segments as they
        // are (no percent-encoding), so the object key is exactly `<prefix><store>/<sha256>`.
        let prefix = ObjectPath::parse(&prefix).map_err(|e| BlobError::Backend(e.to_string()))?;
        // One value is both the store and the signer, so the prefix cannot apply to one and not
        // the other.
        let s3 = Arc::new(PrefixStore::new(b.build().map_err(backend)?, prefix));
        let mut blobs = ObjectStoreBlobs::new(s3.clone());
        if presign {
            blobs.signer = Some(s3);
            blobs.verify_max_bytes = config.verify_max_bytes;
        }
        Ok(blobs)
    }

    /// Hashes the stored object; `Ok(false)` when its bytes do not match the key.
    async fn content_matches(&self, key: &BlobKey) -> Result<bool, BlobError> {
        let mut stream = self
            .store
            .get(&path(key))
            .await
            .map_err(backend)?
            .into_stream();
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(chunk.map_err(backend)?);
        }
        let actual = filesync::core::ids::ContentHash::from_bytes(hasher.finalize().into());
        Ok(actual == key.hash)
    }

    /// Local disk under `dir` (created if missing), fsyncing before an upload is acknowledged.
    pub fn local(dir: &std::path::Path) -> std::io::Result<ObjectStoreBlobs> {
        // (`LocalFileSystem` has no presign mode.)
        std::fs::create_dir_all(dir)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(ObjectStoreBlobs::new(Arc::new(fs)))
    }
}

#[async_trait]
impl BlobStore for ObjectStoreBlobs {
    fn mode(&self) -> &'static str {
        if self.signer.is_some() {
            "presign"
        } else {
            "proxy"
        }
    }

    async fn is_present(&self, key: &BlobKey) -> Result<bool, BlobError> {
        if self.signer.is_none() {
            return self.exists(key).await;
        }
        let name = key.as_string();
        if self.lock_verified().contains(&name) {
            return self.exists(key).await;
        }
        let size = match self.store.head(&path(key)).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(backend(e)),
        };
        if size <= self.verify_max_bytes && !self.content_matches(key).await? {
            tracing::warn!(key = %name, "presigned upload does not hash to its key; deleting it");
            self.delete(key).await?;
            return Ok(false);
        }
        let mut verified = self.lock_verified();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(name);
        Ok(true)
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &BlobKey,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        let Some(signer) = &self.signer else {
            return Err(BlobError::Backend(
                "presigned URLs need presign mode".into(),
            ));
        };
        let method = match method {
            PresignMethod::Put => axum::http::Method::PUT,
            PresignMethod::Get => axum::http::Method::GET,
        };
        let url = signer
            .signed_url(method, &path(key), ttl)
            .await
            .map_err(backend)?;
        Ok(url.to_string())
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self.store.head(&path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn put_verified(
        &self,
        key: &BlobKey,
        mut body: BodyStream,
        max_bytes: u64,
    ) -> Result<(), BlobError> {
        let upload = self
            .store
            .put_multipart(&path(key))
            .await
            .map_err(backend)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(BlobError::Body(e)),
                Some(Ok(chunk)) => chunk,
            };
            total = total.saturating_add(chunk.len() as u64);
            if total > max_bytes {
                break Some(BlobError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(backend(e));
            }
            writer.put(chunk);
        };
        let failure = failure.or_else(|| {
            let actual = filesync::core::ids::ContentHash::from_bytes(hasher.finalize().into());
            (actual != key.hash).then(|| BlobError::HashMismatch {
                expected: key.hash.to_hex(),
                actual: actual.to_hex(),
            })
        });
        match failure {
            None => {
                writer.finish().await.map_err(backend)?;
                Ok(())
            }
            Some(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(%abort, key = %key.as_string(), "aborting a refused upload failed");
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<BlobRead, BlobError> {
        let p = path(key);
        let size = self.store.head(&p).await.map_err(backend)?.size;
        let (wanted, partial) = match range {
            Some(r) => (r.resolve(size)?, true),
            None => (0..size, false),
        };
        let stream: BoxStream<'static, Result<Bytes, BlobError>> = if wanted.is_empty() {
            // An empty object: object_store refuses zero-length ranges.
            futures_util::stream::empty().boxed()
        } else {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(wanted.clone())),
                ..Default::default()
            };
            let result = self.store.get_opts(&p, opts).await.map_err(backend)?;
            result.into_stream().map(|r| r.map_err(backend)).boxed()
        };
        Ok(BlobRead {
            size,
            range: wanted,
            partial,
            stream,
        })
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        if self.signer.is_some() {
            // Content under this key may be uploaded again, and must then be verified again.
            self.lock_verified().remove(&key.as_string());
        }
        match self.store.delete(&path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_prefixes_are_normalized_or_refused() {
        for (given, expected) in [
            ("apps/photos/", "apps/photos/"),
            ("apps/photos", "apps/photos/"),
            ("a", "a/"),
            ("deploy-1/blobs.v2/", "deploy-1/blobs.v2/"),
            ("données/", "données/"),
        ] {
            assert_eq!(
                normalize_s3_prefix(given).as_deref(),
                Ok(expected),
                "{given}"
            );
        }
        for bad in [
            "",
            "/",
            "/apps/",
            "apps//photos/",
            "apps/photos//",
            "../apps/",
            "apps/../x/",
            "./apps",
            "apps/./x",
            "apps\nx/",
            "apps/\u{7f}/",
            "apps\tx",
        ] {
            assert!(normalize_s3_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_s3_prefix(&"a".repeat(MAX_S3_PREFIX_BYTES)).is_err());
        assert!(normalize_s3_prefix(&"a".repeat(MAX_S3_PREFIX_BYTES - 1)).is_ok());
    }

    #[tokio::test]
    async fn presigned_urls_carry_the_prefix() {
        install_tls_provider();
        let config = |prefix: Option<&str>| S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "secret".into(),
            session_token: None,
            path_style: true,
            verify_max_bytes: 0,
            prefix: prefix.map(str::to_string),
        };
        let key = crate::keys::parse(&format!("s/{}", "a".repeat(64))).unwrap();
        let key = &key;
        let ttl = Duration::from_secs(60);
        let url = |prefix| async move {
            ObjectStoreBlobs::s3(&config(prefix), true)
                .unwrap()
                .presign(PresignMethod::Put, key, ttl)
                .await
                .unwrap()
        };
        let plain = url(None).await;
        assert!(plain.starts_with(&format!("http://127.0.0.1:9/b/s/{}?", "a".repeat(64))));
        let prefixed = url(Some("apps/photos")).await;
        assert!(
            prefixed.starts_with(&format!(
                "http://127.0.0.1:9/b/apps/photos/s/{}?",
                "a".repeat(64)
            )),
            "{prefixed}"
        );
        let sig = |u: &str| u.split("X-Amz-Signature=").nth(1).map(str::to_string);
        assert_ne!(sig(&plain), sig(&prefixed));
        assert!(ObjectStoreBlobs::s3(&config(Some("../x")), false).is_err());
    }

    #[test]
    fn ranges_parse_and_resolve() {
        let r = |s| ByteRange::parse(s);
        assert_eq!(r("bytes=0-9").unwrap().resolve(100).unwrap(), 0..10);
        assert_eq!(r("bytes=90-").unwrap().resolve(100).unwrap(), 90..100);
        assert_eq!(r("bytes=90-500").unwrap().resolve(100).unwrap(), 90..100);
        assert_eq!(r("bytes=-10").unwrap().resolve(100).unwrap(), 90..100);
        assert_eq!(r("bytes=-500").unwrap().resolve(100).unwrap(), 0..100);
        assert!(r("bytes=100-").unwrap().resolve(100).is_err());
        assert!(r("bytes=-0").unwrap().resolve(100).is_err());
        for bad in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }
}
