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
//!
//! [`ObjectStoreBlobs`] implements it over any `object_store` backend. The body is written as a
//! multipart upload (for the local file system: a staging file next to the target) while it is
//! hashed; the upload is completed (renamed into place, fsynced) only after the hash matched, and
//! aborted otherwise. The default backend is `LocalFileSystem` under `<data-dir>/blobs`, giving
//! `<data-dir>/blobs/<store>/<hash>`. An S3 backend (`AmazonS3`) plugs in the same way; presign
//! mode will add a `presign` method to this trait, used by the signer routes instead of the
//! proxy URLs (S3 cannot check hashes before an upload lands).

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path as ObjectPath;
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
}

/// Part size of uploads: S3's minimum, so the same code serves S3 multipart uploads.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts written at once per upload.
const PARTS_IN_FLIGHT: usize = 2;

/// [`BlobStore`] over an `object_store` backend.
#[derive(Debug, Clone)]
pub struct ObjectStoreBlobs {
    store: Arc<dyn ObjectStore>,
}

fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Backend(e.to_string()),
    }
}

fn path(key: &BlobKey) -> ObjectPath {
    // Both parts are validated ids/hex, so this is exactly two plain segments.
    ObjectPath::from_iter([key.store.as_str().to_string(), key.hash.to_hex()])
}

impl ObjectStoreBlobs {
    /// Wraps any backend.
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectStoreBlobs {
        ObjectStoreBlobs { store }
    }

    /// Local disk under `dir` (created if missing), fsyncing before an upload is acknowledged.
    pub fn local(dir: &std::path::Path) -> std::io::Result<ObjectStoreBlobs> {
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
        "proxy"
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
