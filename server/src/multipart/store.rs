//! Multipart uploads on an `object_store` backend: manifests and staged parts as objects
//! (proxy mode, local disk or S3), or the bucket's own multipart upload (presign mode).
//!
//! Layout, inside the blob store (under the S3 prefix when there is one):
//! * `_uploads/<id>/manifest`: the [`Manifest`], written first at creation, deleted last;
//! * `_uploads/<id>/<n>-<sha256 hex>`: part `n` (proxy mode on S3), kept only once its length
//!   and hash matched what its URL was signed for; naming the hash makes a re-sent part
//!   idempotent and lets completion check every ETag without reading a byte. On local disk the
//!   same name is an empty marker and the bytes are in `_uploads/<id>/data` (see
//!   [`super::disk`]).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions};
use object_store::{ObjectStoreExt, PutPayload};

use super::disk::DiskUpload;
use super::UPLOADS_DIR;
use super::{
    check_complete, check_staged, checksum_base64, CompletedPart, Manifest, Plan, UploadId,
};
use crate::blobs::{backend, path, BlobStore, BodyStream, Expect, ObjectStoreBlobs};
use crate::error::{ApiError, BlobError};
use crate::keys::BlobKey;

/// A signed part URL and the headers its `PUT` must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPart {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Multipart uploads of a blob store (docs/PROTOCOL.md, "Multipart uploads").
#[async_trait]
pub trait MultipartBlobs: Send + Sync {
    /// Creates an upload of `plan` for `key`; `now`: unix seconds.
    async fn create(&self, key: &BlobKey, plan: Plan, now: u64) -> Result<UploadId, ApiError>;

    /// The manifest of upload `id`, which must be for `key` (`upload_not_found` otherwise).
    async fn manifest(&self, key: &BlobKey, id: &UploadId) -> Result<Manifest, ApiError>;

    /// Presign mode: a presigned `UploadPart` URL for part `n` bound to its checksum (hex).
    /// `None` in proxy mode, where parts go to this server's own signed URLs.
    async fn presign_part(
        &self,
        key: &BlobKey,
        manifest: &Manifest,
        n: u64,
        sha256_hex: &str,
        ttl: Duration,
    ) -> Result<Option<SignedPart>, ApiError>;

    /// Proxy mode: stores part `n` of upload `id` if it is `len` bytes hashing to `sha256_hex`;
    /// returns its ETag.
    async fn put_part(
        &self,
        key: &BlobKey,
        id: &UploadId,
        n: u64,
        len: u64,
        sha256_hex: &str,
        body: BodyStream,
    ) -> Result<String, ApiError>;

    /// Completes upload `id`: the object under `key` exists afterwards, its hash checked where
    /// this server can (see the module docs). Completing a finished upload again succeeds.
    async fn complete(
        &self,
        key: &BlobKey,
        id: &UploadId,
        parts: &[CompletedPart],
        max_bytes: u64,
    ) -> Result<(), ApiError>;

    /// Aborts upload `id` and removes its parts; an unknown upload is fine.
    async fn abort(&self, key: &BlobKey, id: &UploadId) -> Result<(), ApiError>;

    /// Aborts every upload created at or before `cutoff` (unix seconds); returns how many.
    async fn sweep(&self, cutoff: u64) -> Result<usize, BlobError>;
}

fn upload_dir(id: &UploadId) -> ObjectPath {
    ObjectPath::from_iter([UPLOADS_DIR, id.as_str()])
}

fn manifest_path(id: &UploadId) -> ObjectPath {
    upload_dir(id).join("manifest")
}

fn part_path(id: &UploadId, n: u64, sha256_hex: &str) -> ObjectPath {
    upload_dir(id).join(format!("{n}-{sha256_hex}"))
}

/// The id of the `CompleteMultipartUpload` entry for one part: object_store's part id is the
/// ETag, or (when uploads carry checksums, as in presign mode) this small XML record of ETag and
/// checksum. ETags were checked to be `[A-Za-z0-9-]` (quoted or not), so nothing needs escaping.
fn native_part_id(part: &CompletedPart) -> PartId {
    PartId {
        content_id: format!(
            "<PartMetadata><e_tag>\"{}\"</e_tag><checksum_sha256>{}</checksum_sha256></PartMetadata>",
            part.bare_etag(),
            part.checksum_sha256.trim()
        ),
    }
}

impl ObjectStoreBlobs {
    async fn read_manifest(&self, id: &UploadId) -> Result<Option<Manifest>, ApiError> {
        let bytes = match self.store.get(&manifest_path(id)).await {
            Ok(got) => got.bytes().await.map_err(backend)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend(e).into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::internal("corrupt multipart manifest", e))
    }

    /// Deletes every object of upload `id`, the manifest last.
    async fn remove_upload(&self, id: &UploadId) -> Result<(), BlobError> {
        let manifest = manifest_path(id);
        let objects: Vec<_> = self
            .store
            .list(Some(&upload_dir(id)))
            .map_ok(|meta| meta.location)
            .try_filter(|p| std::future::ready(*p != manifest))
            .try_collect()
            .await
            .map_err(backend)?;
        for p in objects.iter().chain([&manifest]) {
            match self.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    /// Proxy mode: streams the staged parts, in order, into the object under `key`.
    async fn assemble(
        &self,
        key: &BlobKey,
        id: &UploadId,
        manifest: &Manifest,
        parts: &[CompletedPart],
        max_bytes: u64,
    ) -> Result<(), ApiError> {
        let staged: HashMap<String, u64> = self
            .store
            .list(Some(&upload_dir(id)))
            .map_ok(|meta| {
                (
                    meta.location.filename().unwrap_or("").to_string(),
                    meta.size,
                )
            })
            .try_collect()
            .await
            .map_err(backend)?;
        check_staged(parts, |part, name| {
            Ok(staged.get(name) == Some(&manifest.plan.part_len(part.part_number)?))
        })?;
        let paths: Vec<ObjectPath> = parts
            .iter()
            .map(|p| part_path(id, p.part_number, p.bare_etag()))
            .collect();
        let store = self.store.clone();
        let body: BodyStream = stream::iter(paths)
            .then(move |p| {
                let store = store.clone();
                async move { store.get(&p).await.map(|g| g.into_stream()) }
            })
            .try_flatten()
            .map_err(|e| e.to_string())
            .boxed();
        let expect = Expect {
            hash: key.hash,
            max_bytes,
            exact_len: Some(manifest.plan.size),
        };
        let written = self.write_checked(&path(key), body, expect).await;
        if let Err(BlobError::HashMismatch { .. }) = &written {
            // These parts can never make this key's content: drop them.
            self.remove_upload(id).await?;
        }
        Ok(written?)
    }
}

#[async_trait]
impl MultipartBlobs for ObjectStoreBlobs {
    async fn create(&self, key: &BlobKey, plan: Plan, now: u64) -> Result<UploadId, ApiError> {
        let id = UploadId::random()?;
        let backend_id = match &self.native {
            Some(native) => Some(native.create_multipart(&path(key)).await.map_err(backend)?),
            None => None,
        };
        let manifest = Manifest {
            key: key.as_string(),
            plan,
            created: now,
            backend_id,
        };
        let json = serde_json::to_vec(&manifest).map_err(|e| ApiError::internal("manifest", e))?;
        self.store
            .put(&manifest_path(&id), PutPayload::from(json))
            .await
            .map_err(backend)?;
        Ok(id)
    }

    async fn manifest(&self, key: &BlobKey, id: &UploadId) -> Result<Manifest, ApiError> {
        match self.read_manifest(id).await? {
            Some(m) if m.key == key.as_string() => Ok(m),
            _ => Err(ApiError::UploadNotFound),
        }
    }

    async fn presign_part(
        &self,
        key: &BlobKey,
        manifest: &Manifest,
        n: u64,
        sha256_hex: &str,
        ttl: Duration,
    ) -> Result<Option<SignedPart>, ApiError> {
        let (Some(signer), Some(backend_id)) = (&self.signer, &manifest.backend_id) else {
            return Ok(None);
        };
        let sum = checksum_base64(sha256_hex)
            .ok_or_else(|| ApiError::InvalidRequest("bad checksum".into()))?;
        let header = HeaderName::from_static("x-amz-checksum-sha256");
        let value = HeaderValue::from_str(&sum).map_err(|e| ApiError::internal("checksum", e))?;
        let opts = SignedUrlOptions::new()
            .with_query([
                ("partNumber", n.to_string()),
                ("uploadId", backend_id.clone()),
            ])
            .with_signed_header(header.clone(), value);
        let url = signer
            .signed_url_opts(Method::PUT, &path(key), ttl, &opts)
            .await
            .map_err(backend)?;
        Ok(Some(SignedPart {
            url: url.to_string(),
            headers: vec![(header.as_str().to_string(), sum)],
        }))
    }

    async fn put_part(
        &self,
        key: &BlobKey,
        id: &UploadId,
        n: u64,
        len: u64,
        sha256_hex: &str,
        body: BodyStream,
    ) -> Result<String, ApiError> {
        let manifest = self.manifest(key, id).await?;
        if let Some(root) = &self.disk_root {
            let offset = (n - 1) * manifest.plan.part_size;
            DiskUpload::new(root, id)
                .put_part(n, offset, len, sha256_hex, body)
                .await?;
            return Ok(sha256_hex.to_string());
        }
        let hash = filesync::core::ids::ContentHash::parse(sha256_hex)
            .map_err(|_| ApiError::InvalidRequest("bad checksum".into()))?;
        let expect = Expect {
            hash,
            max_bytes: len,
            exact_len: Some(len),
        };
        self.write_checked(&part_path(id, n, sha256_hex), body, expect)
            .await?;
        Ok(sha256_hex.to_string())
    }

    async fn complete(
        &self,
        key: &BlobKey,
        id: &UploadId,
        parts: &[CompletedPart],
        max_bytes: u64,
    ) -> Result<(), ApiError> {
        let Some(manifest) = self.read_manifest(id).await? else {
            // Completed before (a retry whose first answer was lost), or gone.
            return if self.exists(key).await? {
                Ok(())
            } else {
                Err(ApiError::UploadNotFound)
            };
        };
        if manifest.key != key.as_string() {
            return Err(ApiError::UploadNotFound);
        }
        check_complete(&manifest.plan, parts)?;
        match (&self.native, &manifest.backend_id) {
            (Some(native), Some(backend_id)) => {
                let ids = parts.iter().map(native_part_id).collect();
                native
                    .complete_multipart(&path(key), backend_id, ids)
                    .await
                    .map_err(|e| {
                        tracing::info!(%e, key = %key.as_string(), "bucket refused to complete an upload");
                        ApiError::InvalidRequest(
                            "the bucket refused the parts (a part is missing or its ETag is wrong)"
                                .into(),
                        )
                    })?;
                // Hashed now (up to the verify size), so the push naming it does not again.
                if !self.is_present(key).await? {
                    self.remove_upload(id).await?;
                    return Err(ApiError::HashMismatch {
                        expected: key.hash.to_hex(),
                        actual: "other content".into(),
                    });
                }
            }
            _ => match &self.disk_root {
                Some(root) => {
                    let target = root.join(key.store.as_str()).join(key.hash.to_hex());
                    let done = DiskUpload::new(root, id)
                        .complete(key, &manifest, parts, target)
                        .await;
                    if let Err(ApiError::HashMismatch { .. }) = &done {
                        // These parts can never make this key's content: drop them.
                        self.remove_upload(id).await?;
                    }
                    done?
                }
                None => self.assemble(key, id, &manifest, parts, max_bytes).await?,
            },
        }
        self.remove_upload(id).await?;
        Ok(())
    }

    async fn abort(&self, key: &BlobKey, id: &UploadId) -> Result<(), ApiError> {
        let Some(manifest) = self.read_manifest(id).await? else {
            return Ok(());
        };
        if manifest.key != key.as_string() {
            return Err(ApiError::UploadNotFound);
        }
        abort_upload(self, id, Some(&manifest)).await?;
        Ok(())
    }

    async fn sweep(&self, cutoff: u64) -> Result<usize, BlobError> {
        let root = ObjectPath::from(UPLOADS_DIR);
        let objects: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(backend)?;
        let mut ids: Vec<String> = objects
            .iter()
            .filter_map(|m| m.location.parts().nth(1).map(|p| p.as_ref().to_string()))
            .collect();
        ids.sort();
        ids.dedup();
        let mut swept = 0;
        for raw in ids {
            let Ok(id) = UploadId::parse(&raw) else {
                continue;
            };
            let stale = match self.read_manifest(&id).await {
                Ok(Some(m)) => (m.created <= cutoff).then_some(Some(m)),
                // Parts without a manifest: a part that landed while its upload was removed.
                Ok(None) => Some(None),
                Err(e) => {
                    tracing::warn!(%e, upload = %raw, "unreadable multipart manifest; leaving it");
                    None
                }
            };
            if let Some(manifest) = stale {
                abort_upload(self, &id, manifest.as_ref()).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }
}

/// Aborts the bucket's upload (presign mode) and removes this upload's objects.
async fn abort_upload(
    blobs: &ObjectStoreBlobs,
    id: &UploadId,
    manifest: Option<&Manifest>,
) -> Result<(), BlobError> {
    let native_id = manifest.and_then(|m| Some((m, m.backend_id.as_ref()?)));
    if let (Some(native), Some((manifest, backend_id))) = (&blobs.native, native_id) {
        if let Ok(key) = crate::keys::parse(&manifest.key) {
            match native.abort_multipart(&path(&key), backend_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
    }
    blobs.remove_upload(id).await
}
