//! Multipart uploads on local disk (proxy mode): every part is written in place, at its offset,
//! into one file per upload, so completing is one hash pass over bytes the page cache still
//! holds and a rename; the bytes are written to disk once, as with a single `PUT`.
//!
//! Layout, next to the manifest (`_uploads/<id>/`, see [`super::store`]):
//! * `data`: the blob being assembled, sparse until every part arrived;
//! * `<n>-<sha256 hex>`: an empty marker, created only after part `n`'s bytes were written,
//!   matched its length and hash, and were flushed to disk (`fdatasync`). Completion trusts
//!   markers, not the data file, to know which parts arrived.
//!
//! A refused part (wrong length or bytes) may have overwritten its own range of `data` before
//! the refusal: every marker of that part number is removed with it, so completion asks for the
//! part again instead of assembling stale bytes. Writes never reach past the part's range (its
//! length is capped), so no other part is touched. Whatever a misbehaving client manages, the
//! whole file is hashed before it becomes the blob.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use filesync::core::ids::ContentHash;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{CompletedPart, Manifest, UploadId, UPLOADS_DIR};
use crate::blobs::BodyStream;
use crate::error::{ApiError, BlobError};
use crate::keys::BlobKey;

/// Bytes gathered from the request body before one positional write.
const WRITE_BYTES: usize = 1024 * 1024;

/// One upload's folder on disk.
pub(crate) struct DiskUpload {
    dir: PathBuf,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, BlobError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| BlobError::Backend(e.to_string())),
        Err(e) => Err(BlobError::Backend(e.to_string())),
    }
}

/// Flushes a folder's entries (a created or renamed file survives a crash).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskUpload {
    /// The folder of upload `id` under the blob root `root`.
    pub(crate) fn new(root: &Path, id: &UploadId) -> DiskUpload {
        DiskUpload {
            dir: root.join(UPLOADS_DIR).join(id.as_str()),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes part `n` (`len` bytes at `offset`) if its bytes hash to `sha256_hex`.
    pub(crate) async fn put_part(
        &self,
        n: u64,
        offset: u64,
        len: u64,
        sha256_hex: &str,
        body: BodyStream,
    ) -> Result<(), BlobError> {
        let data = self.data();
        let file = Arc::new(
            blocking(move || {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(data)
            })
            .await?,
        );
        if let Err(refused) = write_part(&file, offset, len, sha256_hex, body).await {
            if let Err(e) = self.forget_part(n).await {
                tracing::warn!(%e, part = n, "removing a refused part's markers failed");
            }
            return Err(refused);
        }
        blocking(move || file.sync_data()).await?;
        let (dir, marker) = (self.dir.clone(), self.dir.join(format!("{n}-{sha256_hex}")));
        blocking(move || {
            File::create(marker)?;
            sync_dir(&dir)
        })
        .await
    }

    /// Removes every marker of part `n`.
    async fn forget_part(&self, n: u64) -> Result<(), BlobError> {
        let (dir, prefix) = (self.dir.clone(), format!("{n}-"));
        blocking(move || {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path())?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Makes the blob at `target` from the parts named in `parts`, if every one arrived with
    /// that ETag and the whole hashes to `key`. A mismatch is `HashMismatch` (the caller drops
    /// the upload).
    pub(crate) async fn complete(
        &self,
        key: &BlobKey,
        manifest: &Manifest,
        parts: &[CompletedPart],
        target: PathBuf,
    ) -> Result<(), ApiError> {
        // One listing of the folder, not a lookup per part (up to 10,000).
        let dir = self.dir.clone();
        let markers: HashSet<String> = blocking(move || {
            std::fs::read_dir(dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .await?;
        super::check_staged(parts, |_, name| Ok(markers.contains(name)))?;
        let (data, size) = (self.data(), manifest.plan.size);
        let actual = blocking(move || hash_file(&data, size)).await?;
        let Some(actual) = actual else {
            return Err(ApiError::InvalidRequest(
                "the assembled parts are not the upload's size (upload them again)".into(),
            ));
        };
        if actual != key.hash {
            return Err(BlobError::HashMismatch {
                expected: key.hash.to_hex(),
                actual: actual.to_hex(),
            }
            .into());
        }
        let data = self.data();
        blocking(move || {
            let folder = target.parent().unwrap_or(Path::new("/")).to_path_buf();
            std::fs::create_dir_all(&folder)?;
            std::fs::rename(data, &target)?;
            sync_dir(&folder)
        })
        .await?;
        Ok(())
    }
}

/// Streams `body` into `file` at `offset`, hashing it; refused unless it is exactly `len` bytes
/// hashing to `sha256_hex`.
async fn write_part(
    file: &Arc<File>,
    offset: u64,
    len: u64,
    sha256_hex: &str,
    mut body: BodyStream,
) -> Result<(), BlobError> {
    let mut hasher = Sha256::new();
    let mut done: u64 = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BYTES);
    let flush = |buf: Vec<u8>, at: u64| {
        let file = file.clone();
        blocking(move || file.write_all_at(&buf, at).map(|()| buf))
    };
    loop {
        let chunk = match body.next().await {
            None => break,
            Some(Err(e)) => return Err(BlobError::Body(e)),
            Some(Ok(chunk)) => chunk,
        };
        if done + (buf.len() + chunk.len()) as u64 > len {
            return Err(BlobError::Length { expected: len });
        }
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
        if buf.len() >= WRITE_BYTES {
            let n = buf.len() as u64;
            buf = flush(buf, offset + done).await?;
            buf.clear();
            done += n;
        }
    }
    if !buf.is_empty() {
        let n = buf.len() as u64;
        flush(buf, offset + done).await?;
        done += n;
    }
    if done != len {
        return Err(BlobError::Length { expected: len });
    }
    let actual = ContentHash::from_bytes(hasher.finalize().into()).to_hex();
    if actual != sha256_hex {
        return Err(BlobError::HashMismatch {
            expected: sha256_hex.to_string(),
            actual,
        });
    }
    Ok(())
}

/// The SHA-256 of the file at `path`, or `None` if it is not `size` bytes long.
fn hash_file(path: &Path, size: u64) -> std::io::Result<Option<ContentHash>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() != size {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0; WRITE_BYTES];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(Some(ContentHash::from_bytes(hasher.finalize().into())))
}
