//! The byte store on the Origin Private File System.
//!
//! Layout: `filesync/<storeId>/blobs/<sha256hex>` (entries) and `filesync/<storeId>/tmp/<name>`
//! (writes in progress, or leftovers of interrupted ones).
//!
//! # Writing with `move()` (Chromium, Firefox, Safari 17+...)
//!
//! Create `tmp/<random>`, open a writable on it, stream the blob into it while hashing (one
//! pass), then, with the writable still open, check the hash against the expected one and against
//! what is already stored. Discard (abort + remove the temp) on a mismatch, an error or a
//! duplicate; otherwise `close()` (the browser commits a writable's data atomically there) and
//! rename it to `blobs/<hash>` with `FileSystemHandle.move()` at once. Until the rename nothing is
//! under a final name, so a crash leaves at most a temp, which `cleanup_temp` (run by `open`)
//! removes.
//!
//! # Writing without `move()`
//!
//! A temp cannot be renamed, and copying it would leave it unlocked (removable by another tab's
//! cleanup) for as long as the copy takes. So there is no temp: a first pass hashes the blob
//! (nothing written), then, if the entry is missing, a writable on `blobs/<hash>` receives the
//! blob in a second pass that hashes again, and it is committed by `close()` only if both passes
//! agree (blobs are immutable; a `File` changed on disk fails to read). Creating the writable's
//! file makes an EMPTY file appear under the final name until the commit, and a crash can leave it
//! behind; so an empty file under any name but the empty content's hash counts as missing (`has`,
//! `read`, `list` in this mode, and the "already stored" check of a write, which replaces it).
//!
//! # Resuming downloads
//!
//! A download (with `move()` and the hash worker) streams into `tmp/part-<sha256hex>`, one
//! partial file per content, through a sync access handle in the hash worker. A failure or an
//! abort leaves the bytes written so far there, across reloads; the next attempt asks the
//! server for the rest (`runtime::resume`), re-hashes the held prefix from the disk and appends.
//! The whole file is checked against the content hash before it is renamed to
//! `blobs/<sha256hex>`; wrong bytes remove it. Cleanups keep partial files for
//! [`PARTIAL_KEEP_MS`] after their last write; other temps go at once. Elsewhere (no `move()`,
//! no hash worker, the IndexedDB fallback) a download starts over.
//!
//! # Several tabs
//!
//! Chromium locks a file while a writable is open on it: `removeEntry` fails with
//! `NoModificationAllowedError`, so another tab's cleanup skips temps being written. It can still
//! take a temp in the two short gaps where it is unlocked (after `getFileHandle`, before
//! `createWritable`; after `close()`, before `move()`): that step then fails with `NotFoundError`
//! or `NoModificationAllowedError` and the write starts over with a new temp (the blob can be read
//! again), at most [`WRITE_ATTEMPTS`] times. Two tabs storing the same content both succeed: the
//! second rename or commit replaces identical bytes.

use std::cell::Cell;
use std::fmt;

use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemWritableFileStream};

use super::{check_expected, Listing, WriteError};
use crate::core::{ContentHash, StoreId};
use crate::web::error::WebError;
use crate::web::{global, hash};

const API: &str = "OPFS";
/// Names of downloads' partial files start with this (other temps never do).
const PARTIAL_PREFIX: &str = "part-";
/// How long a partial file unused is kept for a download to resume (then a cleanup removes it).
pub const PARTIAL_KEEP_MS: f64 = 24.0 * 3600.0 * 1000.0;
/// How many times a write starts over when another tab's cleanup took its temp, or another tab
/// holds the entry's file (see the module docs).
pub const WRITE_ATTEMPTS: u32 = 5;

/// The byte store of one store id on OPFS. See the module docs for the layout and the write
/// protocol.
pub struct OpfsStore {
    store: StoreId,
    /// `filesync/`, parent of the store's directory (for `destroy`).
    root: FileSystemDirectoryHandle,
    blobs: FileSystemDirectoryHandle,
    tmp: FileSystemDirectoryHandle,
    /// Write through a temp and `FileSystemHandle.move()` (false: in place, two passes).
    use_move: Cell<bool>,
    /// Write attempts started over after contention with another tab (diagnostics).
    retries: Cell<u32>,
}

impl fmt::Debug for OpfsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpfsStore")
            .field("store", &self.store)
            .field("use_move", &self.use_move.get())
            .field("retries", &self.retries.get())
            .finish_non_exhaustive()
    }
}

/// Why one write attempt failed.
enum Attempt {
    /// Another tab's cleanup took the temp, or another tab holds the file: start over.
    Contended(WebError),
    Failed(WriteError),
}

impl From<WebError> for Attempt {
    fn from(e: WebError) -> Attempt {
        Attempt::Failed(WriteError::Web(e))
    }
}

impl OpfsStore {
    /// Opens (creating) `filesync/<store>/{blobs,tmp}` and removes temp leftovers.
    ///
    /// [`WebError::Unavailable`] when OPFS or `createWritable()` is missing in this scope (older
    /// Safari has OPFS without `createWritable`) or refused (private browsing).
    pub async fn open(store: &StoreId) -> Result<OpfsStore, WebError> {
        let storage = global::storage_manager()?;
        if !is_function(&storage, "getDirectory") {
            return Err(unavailable("navigator.storage.getDirectory is missing"));
        }
        let file_handle_proto = global::property(API, "FileSystemFileHandle")
            .and_then(|c| get(&c, "prototype"))
            .map_err(|_| unavailable("FileSystemFileHandle is missing"))?;
        if !is_function(&file_handle_proto, "createWritable") {
            return Err(unavailable(
                "FileSystemFileHandle.createWritable is missing in this scope",
            ));
        }
        let use_move = is_function(&file_handle_proto, "move");

        let origin_root: FileSystemDirectoryHandle = JsFuture::from(storage.get_directory())
            .await
            .map_err(|e| WebError::from_js(API, &e))?
            .dyn_into()
            .map_err(|v| unavailable(&format!("getDirectory gave {v:?}")))?;
        let root = dir(&origin_root, "filesync").await?;
        let store_dir = dir(&root, store.as_str()).await?;
        let s = OpfsStore {
            store: store.clone(),
            root,
            blobs: dir(&store_dir, "blobs").await?,
            tmp: dir(&store_dir, "tmp").await?,
            use_move: Cell::new(use_move),
            retries: Cell::new(0),
        };
        s.cleanup_temp().await?;
        Ok(s)
    }

    /// The store id.
    pub fn store_id(&self) -> &StoreId {
        &self.store
    }

    /// Whether writes go through a temp and `FileSystemHandle.move()` (true) or are written in
    /// place in two passes (false, where `move()` is missing).
    pub fn uses_move(&self) -> bool {
        self.use_move.get()
    }

    /// Forces the in-place writes of browsers without `move()` (true) even where `move()`
    /// exists, so tests can exercise them in Chromium. Not for production use.
    #[doc(hidden)]
    pub fn force_without_move(&self, without: bool) {
        self.use_move.set(!without && is_move_supported());
    }

    /// How many write attempts started over because of another tab (its cleanup took a temp, or
    /// it held the entry's file). Diagnostics and tests.
    pub fn write_retries(&self) -> u32 {
        self.retries.get()
    }

    pub(super) async fn write(
        &self,
        blob: &web_sys::Blob,
        expected: Option<ContentHash>,
    ) -> Result<ContentHash, WriteError> {
        let mut attempt = 1;
        loop {
            let result = if self.use_move.get() {
                self.write_through_temp(Source::Blob(blob), expected).await
            } else {
                self.write_in_place(blob, expected).await
            };
            match result {
                Ok(hash) => return Ok(hash),
                Err(Attempt::Contended(e)) if attempt >= WRITE_ATTEMPTS => return Err(e.into()),
                Err(Attempt::Contended(_)) => {
                    self.retries.set(self.retries.get() + 1);
                    // Lets the other tab's cleanup or write finish first.
                    gloo_timers::future::TimeoutFuture::new(10 * attempt).await;
                    attempt += 1;
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }

    /// Stores a byte stream (a download) if it hashes to `expected`, calling `progress` with
    /// the bytes read so far. A stream cannot be read twice, so there is one attempt: a
    /// contended write fails and the caller retries the download. Without `move()` the stream
    /// is gathered into a blob first (see the module docs).
    ///
    /// With `move()` and a hash worker the stream goes into the content's partial file (see
    /// "Resuming downloads" in the module docs), after its first `from` bytes (`from` as
    /// [`Self::held`] answered); elsewhere `from` must be 0.
    pub(super) async fn write_stream(
        &self,
        stream: &web_sys::ReadableStream,
        expected: ContentHash,
        from: u64,
        progress: Rc<dyn Fn(u64)>,
    ) -> Result<ContentHash, WriteError> {
        if self.use_move.get() && hash::OffThreadFill::available() {
            if let Some(written) = self
                .write_off_thread(stream, expected, from, progress.clone())
                .await
            {
                return written;
            }
        }
        if from > 0 {
            // The hash worker went away since `held`: the body is only the rest.
            let _ = stream.cancel();
            self.discard_partial(&expected).await;
            return Err(WriteError::Web(WebError::Other {
                name: "InvalidStateError".into(),
                message: "a resumed download needs the hash worker, which stopped".into(),
            }));
        }
        if !self.use_move.get() {
            let blob = super::gather(stream, &*progress).await?;
            return self.write(&blob, Some(expected)).await;
        }
        match self
            .write_through_temp(Source::Stream(stream, &*progress), Some(expected))
            .await
        {
            Ok(hash) => Ok(hash),
            Err(Attempt::Contended(e)) => Err(e.into()),
            Err(Attempt::Failed(e)) => Err(e),
        }
    }

    /// How many bytes of `hash`'s content an interrupted download left in its partial file
    /// (0: none, or this store cannot resume: no `move()` or no hash worker here).
    pub(super) async fn held(&self, hash: &ContentHash) -> u64 {
        if !self.use_move.get() || !hash::OffThreadFill::available() {
            return 0;
        }
        match file(&self.tmp, &partial_name(hash), false).await {
            Ok(handle) => get_file(&handle).await.map_or(0, |f| f.size() as u64),
            Err(_) => 0,
        }
    }

    /// Removes `hash`'s partial file (best effort: a leftover is removed by a later cleanup).
    pub(super) async fn discard_partial(&self, hash: &ContentHash) {
        self.remove_temp(&partial_name(hash)).await;
    }

    /// Has the hash worker write the stream into the content's partial file after its first
    /// `from` bytes, while it hashes the whole (through a sync access handle: the page neither
    /// reads nor copies the bytes), then checks the hash and renames the file like
    /// [`Self::write_through_temp`]. A failed write leaves the partial file for the next
    /// attempt; bytes that hash wrong remove it. `None` where no hash worker runs.
    async fn write_off_thread(
        &self,
        stream: &web_sys::ReadableStream,
        expected: ContentHash,
        from: u64,
        progress: Rc<dyn Fn(u64)>,
    ) -> Option<Result<ContentHash, WriteError>> {
        let name = partial_name(&expected);
        let temp = match file(&self.tmp, &name, true).await {
            Ok(t) => t,
            Err(e) => return Some(Err(e.into())),
        };
        let fill = hash::OffThreadFill::start(temp.as_ref(), stream, from, move |loaded| {
            progress(loaded as u64)
        })?;
        let checked: Result<(ContentHash, bool), WriteError> = async {
            let (hash, _) = fill.finish().await?;
            check_expected(hash, Some(expected))?;
            Ok((hash, self.has(&hash).await?))
        }
        .await;
        let hash = match checked {
            Ok((hash, false)) => hash,
            Ok((hash, true)) => {
                self.remove_temp(&name).await;
                return Some(Ok(hash));
            }
            Err(e @ WriteError::Mismatch { .. }) => {
                self.remove_temp(&name).await;
                return Some(Err(e));
            }
            // Kept: the next attempt resumes after the bytes it holds.
            Err(e) => return Some(Err(e)),
        };
        Some(match self.rename(&temp, &hash.to_hex()).await {
            Ok(()) => Ok(hash),
            Err(e) => match self.has(&hash).await {
                // A concurrent writer of the same content got there first.
                Ok(true) => {
                    self.remove_temp(&name).await;
                    Ok(hash)
                }
                _ => Err(e.into()),
            },
        })
    }

    /// One attempt of the write with `move()` (module docs).
    async fn write_through_temp(
        &self,
        source: Source<'_>,
        expected: Option<ContentHash>,
    ) -> Result<ContentHash, Attempt> {
        let name = temp_name();
        let temp = file(&self.tmp, &name, true).await?;
        let writable = match create_writable(&temp).await {
            Ok(w) => w,
            Err(e) => {
                self.remove_temp(&name).await;
                return Err(classify(e));
            }
        };
        // Everything that can reject the write is decided while the writable is still open (the
        // browser locks the temp meanwhile); only then is it committed and renamed at once.
        let checked: Result<(ContentHash, bool), WriteError> = async {
            let hash = fill(&writable, source).await?;
            check_expected(hash, expected)?;
            Ok((hash, self.has(&hash).await?))
        }
        .await;
        let hash = match checked {
            Ok((hash, false)) => hash,
            Ok((hash, true)) => {
                discard(&writable).await;
                self.remove_temp(&name).await;
                return Ok(hash);
            }
            Err(e) => {
                discard(&writable).await;
                self.remove_temp(&name).await;
                return Err(Attempt::Failed(e));
            }
        };
        if let Err(e) = await_js(writable.close()).await {
            // A quota error can surface here, when the browser commits the data.
            discard(&writable).await;
            self.remove_temp(&name).await;
            return Err(e.into());
        }
        let hex = hash.to_hex();
        match self.rename(&temp, &hex).await {
            Ok(()) => Ok(hash),
            Err(e) => {
                self.remove_temp(&name).await;
                if let Ok(true) = self.has(&hash).await {
                    // A concurrent writer of the same content got there first.
                    return Ok(hash);
                }
                Err(classify(e))
            }
        }
    }

    /// `temp.move(blobs, hex)`: replaces an existing `blobs/<hex>` (identical bytes, or the empty
    /// leftover of an interrupted in-place write).
    async fn rename(&self, temp: &FileSystemFileHandle, hex: &str) -> Result<(), WebError> {
        let promise = get(temp, "move")?
            .dyn_into::<js_sys::Function>()
            .map_err(|_| unavailable("FileSystemHandle.move is not a function"))?
            .call2(temp, &self.blobs, &JsValue::from_str(hex))
            .map_err(|e| WebError::from_js(API, &e))?;
        await_js(js_sys::Promise::resolve(&promise)).await
    }

    /// One attempt of the write without `move()` (module docs).
    async fn write_in_place(
        &self,
        blob: &web_sys::Blob,
        expected: Option<ContentHash>,
    ) -> Result<ContentHash, Attempt> {
        let hash = hash::hash_blob(blob).await?;
        check_expected(hash, expected).map_err(Attempt::Failed)?;
        if self.has(&hash).await? {
            return Ok(hash);
        }
        let hex = hash.to_hex();
        let target = file(&self.blobs, &hex, true).await?;
        let writable = match create_writable(&target).await {
            Ok(w) => w,
            Err(e) => {
                self.remove_if_empty(&hex).await;
                return Err(classify(e));
            }
        };
        let written = match fill(&writable, Source::Blob(blob)).await {
            Ok(again) if again == hash => await_js(writable.close()).await,
            Ok(again) => Err(WebError::Other {
                name: "NotReadableError".into(),
                message: format!("the blob changed while it was stored: {hash}, then {again}"),
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            discard(&writable).await;
            self.remove_if_empty(&hex).await;
            return Err(e.into());
        }
        Ok(hash)
    }

    /// Removes `blobs/<hex>` if it is the empty leftover of a failed in-place write. Best effort:
    /// another tab writing it holds its lock, and `has` ignores an empty leftover anyway.
    async fn remove_if_empty(&self, hex: &str) {
        if let Ok(false) = self.has_hex(hex).await {
            let _ = remove(&self.blobs, hex).await;
        }
    }

    /// Best effort: a temp left behind is removed by the next `cleanup_temp`.
    async fn remove_temp(&self, name: &str) {
        let _ = remove(&self.tmp, name).await;
    }

    pub(super) async fn read(&self, hash: &ContentHash) -> Result<web_sys::Blob, WebError> {
        let hex = hash.to_hex();
        let handle = file(&self.blobs, &hex, false).await?;
        let data = get_file(&handle).await?;
        if data.size() == 0.0 && *hash != empty_hash() {
            return Err(WebError::NotFound {
                message: format!("{hex}: only an interrupted copy's empty file"),
            });
        }
        Ok(data.into())
    }

    pub(super) async fn has(&self, hash: &ContentHash) -> Result<bool, WebError> {
        self.has_hex(&hash.to_hex()).await
    }

    async fn has_hex(&self, hex: &str) -> Result<bool, WebError> {
        let handle = match file(&self.blobs, hex, false).await {
            Ok(h) => h,
            Err(WebError::NotFound { .. }) => return Ok(false),
            // A directory under that name is not an entry.
            Err(WebError::Other { name, .. }) if name == "TypeMismatchError" => return Ok(false),
            Err(e) => return Err(e),
        };
        if hex == empty_hash().to_hex() {
            return Ok(true);
        }
        match get_file(&handle).await {
            Ok(f) => Ok(f.size() > 0.0),
            // Deleted between the two calls.
            Err(WebError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn delete(&self, hash: &ContentHash) -> Result<(), WebError> {
        remove(&self.blobs, &hash.to_hex()).await
    }

    pub(super) async fn list(&self) -> Result<Listing, WebError> {
        let mut listing = Listing::default();
        for name in keys(&self.blobs).await? {
            match ContentHash::parse(&name) {
                Ok(h) => listing.hashes.push(h),
                Err(_) => listing.ignored.push(name),
            }
        }
        if !self.use_move.get() {
            // Only in-place writes can leave empty files under final names (module docs).
            let mut kept = Vec::with_capacity(listing.hashes.len());
            for h in listing.hashes {
                if self.has(&h).await? {
                    kept.push(h);
                }
            }
            listing.hashes = kept;
        }
        crate::core::collections::sort(&mut listing.hashes);
        Ok(listing)
    }

    pub(super) async fn cleanup_temp(&self) -> Result<u32, WebError> {
        // Names first: removing while iterating a directory is not well defined.
        let options = web_sys::FileSystemRemoveOptions::new();
        // Anything under tmp/ is a leftover, a stray directory included.
        options.set_recursive(true);
        let mut removed = 0;
        let now = global::now_ms();
        for name in keys(&self.tmp).await? {
            if name.starts_with(PARTIAL_PREFIX) && !self.stale(&name, now).await {
                continue;
            }
            // Best effort per entry, so one stuck leftover never makes the store unopenable:
            // `NoModificationAllowedError` is a temp another tab is writing right now (locked),
            // `NotFoundError` one another tab's cleanup removed first.
            if await_js(self.tmp.remove_entry_with_options(&name, &options))
                .await
                .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether the partial file `name` went unused for [`PARTIAL_KEEP_MS`].
    async fn stale(&self, name: &str, now: f64) -> bool {
        match file(&self.tmp, name, false).await {
            Ok(handle) => get_file(&handle)
                .await
                .is_ok_and(|f| now - f.last_modified() > PARTIAL_KEEP_MS),
            // A directory under that name is a stray leftover.
            Err(_) => true,
        }
    }

    pub(super) async fn destroy(self) -> Result<(), WebError> {
        let options = web_sys::FileSystemRemoveOptions::new();
        options.set_recursive(true);
        match await_js(
            self.root
                .remove_entry_with_options(self.store.as_str(), &options),
        )
        .await
        {
            Ok(()) | Err(WebError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What a write stores: a blob (a save; can be read again) or a byte stream with a progress
/// callback (a download; read once).
enum Source<'a> {
    Blob(&'a web_sys::Blob),
    Stream(&'a web_sys::ReadableStream, &'a dyn Fn(u64)),
}

/// Streams the source into `writable`, hashing it in the same pass. Leaves the writable open.
async fn fill(
    writable: &FileSystemWritableFileStream,
    source: Source<'_>,
) -> Result<ContentHash, WebError> {
    let blob = match source {
        Source::Blob(blob) => blob,
        Source::Stream(stream, progress) => {
            let chunks = hash::BlobChunks::of_stream(stream)?;
            return write_chunks(writable, chunks, progress).await;
        }
    };
    if blob.size() <= hash::WEBCRYPTO_MAX_BYTES as f64 && hash::webcrypto_available() {
        // Small: one buffer, WebCrypto's faster digest, one write.
        let buffer: js_sys::Object = await_value("Blob.arrayBuffer", blob.array_buffer())
            .await?
            .unchecked_into();
        let written = writable
            .write_with_buffer_source(&buffer)
            .map_err(|e| WebError::from_js(API, &e))?;
        let hash = hash::digest_webcrypto(&buffer).await;
        await_js(written).await?;
        return hash;
    }
    write_chunks(writable, hash::BlobChunks::new(blob)?, &|_| {}).await
}

/// Writes every chunk, hashing it meanwhile (in the hash worker where there is one), with the
/// next chunk read while one is written: storage writes are the slowest step after the hash.
async fn write_chunks(
    writable: &FileSystemWritableFileStream,
    mut chunks: hash::BlobChunks,
    progress: &dyn Fn(u64),
) -> Result<ContentHash, WebError> {
    let mut hasher = hash::ChunkHasher::new();
    let mut loaded = 0u64;
    let mut writing: Option<(js_sys::Promise, u64)> = None;
    while let Some(chunk) = chunks.next().await? {
        // The previous chunk's buffer is read into next: its write must be done by then.
        if let Some((written, at)) = writing.take() {
            await_js(written).await?;
            progress(at);
        }
        let written = writable
            .write_with_js_u8_array(&chunk)
            .map_err(|e| WebError::from_js(API, &e))?;
        hasher.update(&chunk).await?;
        loaded += u64::from(chunk.length());
        writing = Some((written, loaded));
    }
    if let Some((written, at)) = writing {
        await_js(written).await?;
        progress(at);
    }
    hasher.finish().await
}

/// Aborts a writable: its data is discarded and the file's lock released. Rejects when the
/// stream already errored or closed, which leaves the same state.
async fn discard(writable: &FileSystemWritableFileStream) {
    let _ = JsFuture::from(writable.abort()).await;
}

/// A step on a file that another tab removed, is removing, or holds (`NotFoundError`,
/// `NoModificationAllowedError`) is worth starting over; anything else is the write's failure.
fn classify(e: WebError) -> Attempt {
    let contended = match &e {
        WebError::NotFound { .. } => true,
        WebError::Other { name, .. } => name == "NoModificationAllowedError",
        _ => false,
    };
    if contended {
        Attempt::Contended(e)
    } else {
        e.into()
    }
}

fn empty_hash() -> ContentHash {
    ContentHash::of(b"")
}

/// `<millis hex>-<random hex>`: unique enough across tabs, sortable by age when debugging.
/// The partial file of a download of `hash`'s content (see "Resuming downloads").
fn partial_name(hash: &ContentHash) -> String {
    format!("{PARTIAL_PREFIX}{}", hash.to_hex())
}

fn temp_name() -> String {
    let now = js_sys::Date::now() as u64;
    let random = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
    format!("{now:x}-{random:014x}")
}

fn unavailable(message: &str) -> WebError {
    WebError::Unavailable {
        api: API,
        message: message.to_string(),
    }
}

fn get(target: &JsValue, key: &str) -> Result<JsValue, WebError> {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).map_err(|e| WebError::from_js(API, &e))
}

fn is_function(target: &JsValue, key: &str) -> bool {
    get(target, key).is_ok_and(|v| v.is_function())
}

fn is_move_supported() -> bool {
    global::property(API, "FileSystemFileHandle")
        .and_then(|c| get(&c, "prototype"))
        .is_ok_and(|p| is_function(&p, "move"))
}

async fn await_value(api: &'static str, promise: js_sys::Promise) -> Result<JsValue, WebError> {
    JsFuture::from(promise)
        .await
        .map_err(|e| WebError::from_js(api, &e))
}

async fn await_js(promise: js_sys::Promise) -> Result<(), WebError> {
    await_value(API, promise).await.map(drop)
}

async fn dir(
    parent: &FileSystemDirectoryHandle,
    name: &str,
) -> Result<FileSystemDirectoryHandle, WebError> {
    let options = web_sys::FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    await_value(
        API,
        parent.get_directory_handle_with_options(name, &options),
    )
    .await?
    .dyn_into()
    .map_err(|v| WebError::Other {
        name: "TypeError".into(),
        message: format!("getDirectoryHandle({name}) gave {v:?}"),
    })
}

async fn file(
    parent: &FileSystemDirectoryHandle,
    name: &str,
    create: bool,
) -> Result<FileSystemFileHandle, WebError> {
    let options = web_sys::FileSystemGetFileOptions::new();
    options.set_create(create);
    await_value(API, parent.get_file_handle_with_options(name, &options))
        .await?
        .dyn_into()
        .map_err(|v| WebError::Other {
            name: "TypeError".into(),
            message: format!("getFileHandle({name}) gave {v:?}"),
        })
}

async fn get_file(handle: &FileSystemFileHandle) -> Result<web_sys::File, WebError> {
    await_value(API, handle.get_file())
        .await?
        .dyn_into()
        .map_err(|v| WebError::Other {
            name: "TypeError".into(),
            message: format!("getFile gave {v:?}"),
        })
}

async fn create_writable(
    handle: &FileSystemFileHandle,
) -> Result<FileSystemWritableFileStream, WebError> {
    await_value(API, handle.create_writable())
        .await?
        .dyn_into()
        .map_err(|v| WebError::Other {
            name: "TypeError".into(),
            message: format!("createWritable gave {v:?}"),
        })
}

/// `removeEntry(name)`, with the browser's error.
async fn remove_entry(parent: &FileSystemDirectoryHandle, name: &str) -> Result<(), WebError> {
    await_js(parent.remove_entry(name)).await
}

/// `removeEntry(name)`, where a missing entry is success.
async fn remove(parent: &FileSystemDirectoryHandle, name: &str) -> Result<(), WebError> {
    match remove_entry(parent, name).await {
        Ok(()) | Err(WebError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Entry names of `dir`, through its `keys()` async iterator.
async fn keys(dir: &FileSystemDirectoryHandle) -> Result<Vec<String>, WebError> {
    let iter = dir.keys();
    let mut names = Vec::new();
    loop {
        let next = iter.next().map_err(|e| WebError::from_js(API, &e))?;
        let step = await_value(API, next).await?;
        if get(&step, "done")?.is_truthy() {
            return Ok(names);
        }
        if let Some(name) = get(&step, "value")?.as_string() {
            names.push(name);
        }
    }
}
