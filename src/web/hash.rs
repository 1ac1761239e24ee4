//! SHA-256 of file bytes in the browser, in bounded memory.
//!
//! Two paths, one answer ([`ContentHash`], the same value `ContentHash::of` gives natively):
//!
//! * **Streaming** ([`StreamingHasher`], [`hash_blob_streaming`]): the `sha2` crate in wasm fed
//!   chunk by chunk from `blob.stream()`. Memory stays bounded whatever the file size: one
//!   stream chunk (the browser's, up to a few MiB) plus a reusable copy buffer of
//!   [`COPY_PIECE_BYTES`] in wasm memory. Never `arrayBuffer()` of a whole large file.
//! * **WebCrypto one-shot** ([`digest_webcrypto`], [`hash_blob_webcrypto`]):
//!   `crypto.subtle.digest("SHA-256", buffer)`, 1.3-1.6x faster than the streaming path
//!   (measured, see [`WEBCRYPTO_MAX_BYTES`]) but it needs the whole input in one buffer, so [`hash_blob`] uses it only for blobs of at most
//!   [`WEBCRYPTO_MAX_BYTES`] (and falls back to streaming where `crypto.subtle` is missing, e.g.
//!   an insecure context).
//!
//! Everything is reached through the global scope, so it runs the same in a page, a dedicated
//! worker and a SharedWorker.

use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::error::WebError;
use super::global;
use crate::core::ContentHash;

/// Largest blob [`hash_blob`] (and a save to OPFS) hashes with WebCrypto in one shot (it reads
/// the whole blob into one buffer); larger blobs are streamed.
///
/// Picked by the browser benchmark (`BENCH_BROWSER_ONLY=webcrypto node
/// scripts/bench-browser.mjs`, docs/BENCHMARKS.md), headless Chromium 156 on the project's
/// 2-core machine, medians of three runs, in-memory blobs (WebCrypto ms / streaming ms):
/// 64 KiB 0.5-0.8 / 0.7-1.0, 1 MiB 2.9-3.7 / 4.3-4.5, 4 MiB 7.7-8.4 / 10.1-12.2,
/// 8 MiB 13-15 / 20-23, 16 MiB 24-31 / 37-44, 64 MiB 88-103 / 142-157. WebCrypto is faster
/// at every size (1.2-1.6x; no crossover in time), but holds the whole blob in one buffer
/// while streaming holds 1 MiB whatever the size. So the limit is a memory budget: at 16 MiB
/// a save keeps ~14 ms of its ~44 ms, and four saves at once at the limit still fit the 64 MiB
/// budget of the memory target; above it the gain (~0.8 ms per MiB) stays proportional while
/// the buffer grows with the file.
pub const WEBCRYPTO_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Largest piece of a JS chunk copied into wasm memory at a time: the bound on the hasher's own
/// buffer, whatever chunk size the browser's stream hands out.
pub const COPY_PIECE_BYTES: usize = 256 * 1024;

/// Incremental SHA-256 with a bounded copy buffer.
///
/// ```
/// # #[cfg(target_arch = "wasm32")] {
/// use filesync::web::hash::StreamingHasher;
/// let mut h = StreamingHasher::new();
/// h.update(b"ab");
/// h.update(b"c");
/// assert_eq!(h.finish(), filesync::core::ContentHash::of(b"abc"));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct StreamingHasher {
    sha: Sha256,
    piece: Vec<u8>,
    hashed: u64,
}

impl StreamingHasher {
    /// A hasher that has seen nothing yet.
    pub fn new() -> StreamingHasher {
        StreamingHasher::default()
    }

    /// Feeds bytes already in wasm memory.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.hashed += bytes.len() as u64;
    }

    /// Feeds a JS chunk, copied into wasm memory at most [`COPY_PIECE_BYTES`] at a time.
    pub fn update_js(&mut self, chunk: &js_sys::Uint8Array) {
        let len = chunk.length();
        let piece = COPY_PIECE_BYTES.min(len as usize);
        if self.piece.len() < piece {
            self.piece.resize(piece, 0);
        }
        let mut start = 0u32;
        while start < len {
            let end = len.min(start + COPY_PIECE_BYTES as u32);
            let n = (end - start) as usize;
            chunk.subarray(start, end).copy_to(&mut self.piece[..n]);
            self.sha.update(&self.piece[..n]);
            start = end;
        }
        self.hashed += u64::from(len);
    }

    /// Number of bytes fed so far.
    pub fn bytes_hashed(&self) -> u64 {
        self.hashed
    }

    /// The digest of everything fed.
    #[must_use]
    pub fn finish(self) -> ContentHash {
        ContentHash::from_bytes(self.sha.finalize().into())
    }
}

/// Bytes read from a blob per step of [`BlobChunks`].
pub const CHUNK_BYTES: u32 = 1024 * 1024;

#[wasm_bindgen::prelude::wasm_bindgen(module = "/src/web/hash.js")]
extern "C" {
    type WorkerFill;
    #[wasm_bindgen(js_name = workerFill)]
    fn worker_fill(
        url: &str,
        module: bool,
        handle: &JsValue,
        stream: &web_sys::ReadableStream,
        from: f64,
        progress: &js_sys::Function,
    ) -> Option<WorkerFill>;
    #[wasm_bindgen(js_name = workerDigest)]
    fn worker_digest(url: &str, module: bool, blob: &web_sys::Blob) -> Option<js_sys::Promise>;
    #[wasm_bindgen(js_name = hashWorkerRuns)]
    fn hash_worker_runs() -> bool;
    fn base64(bytes: &[u8]) -> String;
    #[wasm_bindgen(method, getter)]
    fn done(this: &WorkerFill) -> js_sys::Promise;
    #[wasm_bindgen(method)]
    fn abort(this: &WorkerFill);

    type HashJob;
    #[wasm_bindgen(js_name = hashJob)]
    fn hash_job(url: &str, module: bool) -> Option<HashJob>;
    #[wasm_bindgen(method)]
    fn update(this: &HashJob, chunk: &js_sys::Uint8Array) -> JsValue;
    #[wasm_bindgen(method)]
    fn finish(this: &HashJob) -> js_sys::Promise;
    #[wasm_bindgen(method)]
    fn discard(this: &HashJob);

    type ChunkReader;
    #[wasm_bindgen(catch, js_name = chunkReader)]
    fn chunk_reader(source: &JsValue, size: u32) -> Result<ChunkReader, JsValue>;
    #[wasm_bindgen(method)]
    fn next(this: &ChunkReader) -> js_sys::Promise;
    #[wasm_bindgen(method)]
    fn cancel(this: &ChunkReader);
}

/// Reads a blob chunk by chunk through `blob.stream()`, with a BYOB reader filling two reused
/// [`CHUNK_BYTES`] buffers in turn where the browser has one (bounded memory without garbage
/// per chunk), the default reader otherwise.
///
/// A chunk is valid until the call to [`BlobChunks::next`] after the next one, which reuses
/// its memory: finish with it (copy it, await its write) by then. So a chunk can be written
/// while the next one is read. Dropping the reader before the end cancels
/// the stream, so an early return never leaves the browser reading ahead for nothing.
pub struct BlobChunks {
    reader: ChunkReader,
    done: bool,
}

impl BlobChunks {
    /// Starts reading `blob`.
    pub fn new(blob: &web_sys::Blob) -> Result<BlobChunks, WebError> {
        BlobChunks::start(blob.as_ref())
    }

    /// Starts reading a byte stream (a `fetch` response body), which must not be locked.
    pub fn of_stream(stream: &web_sys::ReadableStream) -> Result<BlobChunks, WebError> {
        BlobChunks::start(stream.as_ref())
    }

    fn start(source: &JsValue) -> Result<BlobChunks, WebError> {
        let reader = chunk_reader(source, CHUNK_BYTES)
            .map_err(|e| WebError::from_js("ReadableStream", &e))?;
        Ok(BlobChunks {
            reader,
            done: false,
        })
    }

    /// The next chunk, or `None` at the end of the blob.
    pub async fn next(&mut self) -> Result<Option<js_sys::Uint8Array>, WebError> {
        if self.done {
            return Ok(None);
        }
        let value = match JsFuture::from(self.reader.next()).await {
            Ok(v) => v,
            Err(e) => {
                // A failed stream is errored for good; nothing left to cancel.
                self.done = true;
                return Err(WebError::from_js("ReadableStream", &e));
            }
        };
        if value.is_null() {
            self.done = true;
            return Ok(None);
        }
        value
            .dyn_into::<js_sys::Uint8Array>()
            .map(Some)
            .map_err(|v| WebError::Other {
                name: "TypeError".into(),
                message: format!("blob stream yielded a non-Uint8Array chunk: {v:?}"),
            })
    }
}

impl Drop for BlobChunks {
    fn drop(&mut self) {
        if !self.done {
            self.reader.cancel();
        }
    }
}

thread_local! {
    /// The script the hash worker runs (the package's worker script) and whether it is a
    /// module worker, once a tab set it.
    static HASH_WORKER_URL: std::cell::RefCell<Option<(String, bool)>> =
        const { std::cell::RefCell::new(None) };
}

/// A download written into an OPFS file by the hash worker, which hashes it as it writes
/// (through a sync access handle, so the page neither reads nor copies the bytes). Dropped
/// before it finished, it aborts the worker's write.
pub struct OffThreadFill {
    fill: WorkerFill,
    _progress: wasm_bindgen::closure::Closure<dyn FnMut(f64)>,
    finished: bool,
}

impl OffThreadFill {
    /// Starts writing `stream` into `file` (an OPFS `FileSystemFileHandle` nobody else has open)
    /// in the hash worker, after the file's first `from` bytes (hashed first; `0` empties the
    /// file), calling `progress` with the file's bytes so far. On a failure the bytes written
    /// stay in the file. `None` where no hash worker runs (then the caller writes and hashes
    /// itself).
    pub fn start(
        file: &JsValue,
        stream: &web_sys::ReadableStream,
        from: u64,
        progress: impl FnMut(f64) + 'static,
    ) -> Option<OffThreadFill> {
        let (url, module) = HASH_WORKER_URL.with(|u| u.borrow().clone())?;
        let progress = wasm_bindgen::closure::Closure::<dyn FnMut(f64)>::new(progress);
        let fill = worker_fill(
            &url,
            module,
            file,
            stream,
            from as f64,
            progress.as_ref().unchecked_ref(),
        )?;
        Some(OffThreadFill {
            fill,
            _progress: progress,
            finished: false,
        })
    }

    /// Whether a fill can run here: a hash worker is configured and none failed.
    pub fn available() -> bool {
        HASH_WORKER_URL.with(|u| u.borrow().is_some()) && hash_worker_runs()
    }

    /// The hash of the file's bytes, and how many.
    pub async fn finish(mut self) -> Result<(ContentHash, u64), WebError> {
        let result = JsFuture::from(self.fill.done()).await;
        self.finished = true;
        let filled = result.map_err(|e| WebError::from_js("hash worker", &e))?;
        let get = |k: &str| js_sys::Reflect::get(&filled, &JsValue::from_str(k)).ok();
        let hex = get("hex").and_then(|v| v.as_string()).unwrap_or_default();
        let bytes = get("bytes").and_then(|v| v.as_f64()).unwrap_or(0.0) as u64;
        let hash = ContentHash::parse(&hex).map_err(|e| WebError::Other {
            name: "TypeError".into(),
            message: format!("hash worker: {e}"),
        })?;
        Ok((hash, bytes))
    }
}

impl Drop for OffThreadFill {
    fn drop(&mut self) {
        if !self.finished {
            self.fill.abort();
        }
    }
}

/// Lets [`ChunkHasher`] hash in a dedicated worker running `url` (the package's worker
/// script, which hashes when started as a dedicated worker), a module worker or a classic one.
pub fn use_hash_worker(url: &str, module: bool) {
    HASH_WORKER_URL.with(|u| *u.borrow_mut() = Some((url.to_string(), module)));
}

/// SHA-256 of a stream of chunks, for large saves and downloads: in the hash worker where one
/// runs ([`use_hash_worker`]), so hashing (the slowest step, ~200 MB/s) runs on another core
/// in parallel with reading and writing instead of after them on this thread; here
/// otherwise. Either way the same digest.
pub struct ChunkHasher(Hashing);

enum Hashing {
    Here(StreamingHasher),
    Worker(HashJob),
}

impl ChunkHasher {
    /// A hasher in the hash worker if there is one, here if not.
    pub fn new() -> ChunkHasher {
        let url = HASH_WORKER_URL.with(|u| u.borrow().clone());
        match url.and_then(|(u, module)| hash_job(&u, module)) {
            Some(job) => ChunkHasher(Hashing::Worker(job)),
            None => ChunkHasher(Hashing::Here(StreamingHasher::new())),
        }
    }

    /// Feeds a chunk. Its bytes are copied before this returns its future, so the caller may
    /// reuse the chunk's memory once it awaited the future (which waits only when the worker
    /// has fallen behind by more than a few MiB).
    pub async fn update(&mut self, chunk: &js_sys::Uint8Array) -> Result<(), WebError> {
        match &mut self.0 {
            Hashing::Here(h) => h.update_js(chunk),
            Hashing::Worker(job) => {
                let wait = job.update(chunk);
                if !wait.is_undefined() {
                    JsFuture::from(js_sys::Promise::from(wait))
                        .await
                        .map_err(|e| WebError::from_js("hash worker", &e))?;
                }
            }
        }
        Ok(())
    }

    /// The digest of every chunk fed.
    pub async fn finish(mut self) -> Result<ContentHash, WebError> {
        match &mut self.0 {
            Hashing::Here(h) => Ok(std::mem::take(h).finish()),
            Hashing::Worker(job) => {
                let hex = JsFuture::from(job.finish())
                    .await
                    .map_err(|e| WebError::from_js("hash worker", &e))?;
                worker_hash(hex)
            }
        }
    }
}

impl Default for ChunkHasher {
    fn default() -> Self {
        ChunkHasher::new()
    }
}

impl Drop for ChunkHasher {
    fn drop(&mut self) {
        // A job dropped before its digest (an aborted write) frees its state in the worker;
        // after the digest this does nothing.
        if let Hashing::Worker(job) = &self.0 {
            job.discard();
        }
    }
}

/// SHA-256 of `blob`, picking the path: WebCrypto in one shot up to [`WEBCRYPTO_MAX_BYTES`]
/// (falling back to streaming when `crypto.subtle` is unavailable), streaming above.
pub async fn hash_blob(blob: &web_sys::Blob) -> Result<ContentHash, WebError> {
    if blob.size() <= WEBCRYPTO_MAX_BYTES as f64 {
        match hash_blob_webcrypto(blob).await {
            Err(WebError::Unavailable { .. }) => {}
            other => return other,
        }
    }
    hash_blob_streaming(blob).await
}

/// SHA-256 of `blob` read through its stream with [`StreamingHasher`]: bounded memory at any size.
pub async fn hash_blob_streaming(blob: &web_sys::Blob) -> Result<ContentHash, WebError> {
    let mut chunks = BlobChunks::new(blob)?;
    let mut hasher = StreamingHasher::new();
    while let Some(chunk) = chunks.next().await? {
        hasher.update_js(&chunk);
    }
    Ok(hasher.finish())
}

/// SHA-256 of `blob` with WebCrypto. Reads the WHOLE blob into one `ArrayBuffer`: callers keep it
/// to small blobs ([`hash_blob`] does, below [`WEBCRYPTO_MAX_BYTES`]).
pub async fn hash_blob_webcrypto(blob: &web_sys::Blob) -> Result<ContentHash, WebError> {
    // Checked before reading so a missing `crypto.subtle` costs no read.
    let subtle = subtle_crypto()?;
    let buffer = JsFuture::from(blob.array_buffer())
        .await
        .map_err(|e| WebError::from_js("Blob.arrayBuffer", &e))?;
    digest_with(&subtle, buffer.unchecked_ref()).await
}

/// `crypto.subtle.digest("SHA-256", data)` of an `ArrayBuffer` or a view on one.
pub async fn digest_webcrypto(data: &js_sys::Object) -> Result<ContentHash, WebError> {
    digest_with(&subtle_crypto()?, data).await
}

async fn digest_with(
    subtle: &web_sys::SubtleCrypto,
    data: &js_sys::Object,
) -> Result<ContentHash, WebError> {
    let promise = subtle
        .digest_with_str_and_buffer_source("SHA-256", data)
        .map_err(|e| WebError::from_js("crypto.subtle", &e))?;
    let digest = JsFuture::from(promise)
        .await
        .map_err(|e| WebError::from_js("crypto.subtle", &e))?;
    let bytes = js_sys::Uint8Array::new(&digest);
    if bytes.length() != 32 {
        return Err(WebError::Other {
            name: "TypeError".into(),
            message: format!("SHA-256 digest has {} bytes", bytes.length()),
        });
    }
    let mut out = [0u8; 32];
    bytes.copy_to(&mut out);
    Ok(ContentHash::from_bytes(out))
}

/// Whether `crypto.subtle` exists in this scope (it is missing in insecure contexts).
pub fn webcrypto_available() -> bool {
    subtle_crypto().is_ok()
}

/// `globalThis.crypto.subtle`; `Unavailable` where it is missing (insecure contexts).
fn subtle_crypto() -> Result<web_sys::SubtleCrypto, WebError> {
    let crypto = global::property("crypto", "crypto")?;
    let subtle = js_sys::Reflect::get(&crypto, &JsValue::from_str("subtle"))
        .map_err(|e| WebError::from_js("crypto.subtle", &e))?;
    if subtle.is_undefined() || subtle.is_null() {
        return Err(WebError::Unavailable {
            api: "crypto.subtle",
            message: "crypto.subtle is missing (insecure context?)".into(),
        });
    }
    subtle.dyn_into().map_err(|v| WebError::Unavailable {
        api: "crypto.subtle",
        message: format!("not a SubtleCrypto: {v:?}"),
    })
}

/// A digest the hash worker answered (hex text).
fn worker_hash(hex: JsValue) -> Result<ContentHash, WebError> {
    ContentHash::parse(&hex.as_string().unwrap_or_default()).map_err(|e| WebError::Other {
        name: "TypeError".into(),
        message: format!("hash worker: {e}"),
    })
}

/// The SHA-256 of `blob` in standard base64 (a multipart part's `x-amz-checksum-sha256`):
/// read and hashed by the hash worker where there is one (this page never holds the bytes),
/// here through reused buffers otherwise; a part's bytes are never all in memory (WebCrypto
/// would need them whole, and garbage buffers of 8 MiB pile up faster than V8 collects them:
/// +170 MiB of heap over a 1 GiB upload).
pub async fn part_checksum(blob: &web_sys::Blob) -> Result<String, WebError> {
    let url = HASH_WORKER_URL.with(|u| u.borrow().clone());
    if let Some(digest) = url.and_then(|(u, module)| worker_digest(&u, module, blob)) {
        let hex = JsFuture::from(digest)
            .await
            .map_err(|e| WebError::from_js("hash worker", &e))?;
        return Ok(base64(worker_hash(hex)?.as_bytes()));
    }
    let mut chunks = BlobChunks::new(blob)?;
    let mut hasher = ChunkHasher::new();
    while let Some(chunk) = chunks.next().await? {
        hasher.update(&chunk).await?;
    }
    Ok(base64(hasher.finish().await?.as_bytes()))
}
