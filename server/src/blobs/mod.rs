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
use filesync::core::ids::ContentHash;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::BlobError;
use crate::keys::BlobKey;

mod range;
mod s3;

pub use range::ByteRange;
pub use s3::{normalize_s3_prefix, S3Config, DEFAULT_VERIFY_MAX_BYTES, MAX_S3_PREFIX_BYTES};

/// A request body as a stream of chunks.
pub type BodyStream = BoxStream<'static, Result<Bytes, String>>;

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

    /// Multipart uploads into this store.
    fn multipart(&self) -> &dyn crate::multipart::store::MultipartBlobs;

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

/// How long a staging file must have been left unwritten before [`sweep_staging`] removes it:
/// an upload in flight writes to its staging file all the time, so one untouched for this
/// long belongs to a process that crashed (this one, or another instance sharing the dir).
pub const STAGING_ABANDONED: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Removes the staging files (`<hash>#<n>`) of uploads a crashed process left in a local blob
/// dir (`<dir>/<store>/`): those not written for `abandoned` (several instances may share
/// the dir, and uploads of the others may be in flight). Run at start. Returns how many files
/// were removed.
pub fn sweep_staging(
    dir: &std::path::Path,
    abandoned: std::time::Duration,
) -> std::io::Result<usize> {
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
            let staging =
                file.file_name().to_string_lossy().contains('#') && file.file_type()?.is_file();
            let idle = file
                .metadata()?
                .modified()?
                .elapsed()
                .is_ok_and(|age| age >= abandoned);
            if staging && idle {
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
#[derive(Clone)]
pub struct ObjectStoreBlobs {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Presign mode: the backend's URL signer.
    pub(crate) signer: Option<Arc<dyn Signer>>,
    /// Presign mode: the bucket's own multipart uploads (see [`crate::multipart`]).
    pub(crate) native: Option<Arc<dyn MultipartStore>>,
    /// Presign mode: objects up to this size are hashed when first referenced.
    pub(crate) verify_max_bytes: u64,
    /// Presign mode: keys whose content was verified (or found too large to verify).
    verified: Arc<Mutex<HashSet<String>>>,
    /// Local disk: the folder the store lives in (multipart parts are written in place there).
    pub(crate) disk_root: Option<Arc<std::path::Path>>,
}

impl std::fmt::Debug for ObjectStoreBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBlobs")
            .field("store", &self.store)
            .field("mode", &self.mode())
            .field("verify_max_bytes", &self.verify_max_bytes)
            .finish_non_exhaustive()
    }
}

/// Most keys remembered as verified before the memory is cleared (then verified again).
const VERIFIED_CAPACITY: usize = 100_000;

pub(crate) fn backend(e: object_store::Error) -> BlobError {
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
    pub(crate) fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Nothing panics while this lock is held.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn path(key: &BlobKey) -> ObjectPath {
    // Both parts are validated ids/hex, so this is exactly two plain segments.
    ObjectPath::from_iter([key.store.as_str().to_string(), key.hash.to_hex()])
}

impl ObjectStoreBlobs {
    /// Wraps any backend.
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectStoreBlobs {
        ObjectStoreBlobs {
            store,
            signer: None,
            native: None,
            verify_max_bytes: 0,
            verified: Arc::default(),
            disk_root: None,
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
        if presign {
            // Multipart uploads are created with SHA-256 part checksums, so the bucket refuses a
            // part whose bytes differ from the checksum its presigned URL is bound to.
            b = b.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
        }
        let s3 = Arc::new(PrefixStore::new(b.build().map_err(backend)?, prefix));
        let mut blobs = ObjectStoreBlobs::new(s3.clone());
        if presign {
            blobs.signer = Some(s3.clone());
            blobs.native = Some(s3);
            blobs.verify_max_bytes = config.verify_max_bytes;
        }
        Ok(blobs)
    }

    /// Hashes the stored object; `Ok(false)` when its bytes do not match the key.
    pub(crate) async fn content_matches(&self, key: &BlobKey) -> Result<bool, BlobError> {
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
        let actual = ContentHash::from_bytes(hasher.finalize().into());
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
        let mut blobs = ObjectStoreBlobs::new(Arc::new(fs));
        blobs.disk_root = Some(Arc::from(dir.canonicalize()?));
        Ok(blobs)
    }
}

/// What [`ObjectStoreBlobs::write_checked`] requires of a body before it keeps it.
pub(crate) struct Expect {
    /// The SHA-256 the bytes must have.
    pub hash: ContentHash,
    /// Most bytes accepted (`TooLarge` beyond).
    pub max_bytes: u64,
    /// The exact length required, if any.
    pub exact_len: Option<u64>,
}

impl ObjectStoreBlobs {
    /// Streams `body` to `at` while hashing it; the object is kept (the upload completed) only if
    /// the bytes meet `expect`, and nothing is left behind otherwise.
    pub(crate) async fn write_checked(
        &self,
        at: &ObjectPath,
        mut body: BodyStream,
        expect: Expect,
    ) -> Result<(), BlobError> {
        let upload = self.store.put_multipart(at).await.map_err(backend)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let limit = expect
            .exact_len
            .map_or(expect.max_bytes, |l| l.min(expect.max_bytes));
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(BlobError::Body(e)),
                Some(Ok(chunk)) => chunk,
            };
            total = total.saturating_add(chunk.len() as u64);
            if total > limit {
                break Some(match expect.exact_len {
                    Some(len) if len <= expect.max_bytes => BlobError::Length { expected: len },
                    _ => BlobError::TooLarge {
                        limit: expect.max_bytes,
                    },
                });
            }
            hasher.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(backend(e));
            }
            writer.put(chunk);
        };
        let failure = failure
            .or_else(|| {
                let len = expect.exact_len?;
                (total != len).then_some(BlobError::Length { expected: len })
            })
            .or_else(|| {
                let actual = ContentHash::from_bytes(hasher.finalize().into());
                (actual != expect.hash).then(|| BlobError::HashMismatch {
                    expected: expect.hash.to_hex(),
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
                    tracing::warn!(%abort, path = %at, "aborting a refused upload failed");
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BlobStore for ObjectStoreBlobs {
    fn multipart(&self) -> &dyn crate::multipart::store::MultipartBlobs {
        self
    }

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
        body: BodyStream,
        max_bytes: u64,
    ) -> Result<(), BlobError> {
        let expect = Expect {
            hash: key.hash,
            max_bytes,
            exact_len: None,
        };
        self.write_checked(&path(key), body, expect).await
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
}
