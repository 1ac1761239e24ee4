//! One conformance suite for every byte store implementation (`web::bytes`): OPFS with
//! `move()`, OPFS with the in-place writes of browsers without `move()` forced, and the IndexedDB
//! fallback. Compiled into
//! a page suite (`tests/browser_bytes.rs`) and a dedicated-worker suite
//! (`tests/browser_bytes_worker.rs`).
//!
//! Quota is NOT tested for real: headless Chromium gives the origin a quota of ~10 GiB (a share
//! of the disk), no web API lowers it, and the DevTools override
//! (`Storage.overrideQuotaForOrigin`) is out of reach of wasm-bindgen-test. The cleanup path a
//! quota error takes (the write fails mid-stream, the temp is removed, nothing is stored) is the
//! one `failed_read_stores_nothing` exercises with a real browser error instead.

use filesync::core::{ContentHash, StoreId};
use filesync::web::bytes::{ByteStore, StoreKind, WriteError};
use filesync::web::error::WebError;
use filesync::web::hash::{digest_webcrypto, hash_blob_webcrypto};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemWritableFileStream};

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// OPFS, renaming with `FileSystemHandle.move()`.
    Opfs,
    /// OPFS, with the two-pass in-place writes of browsers without `move()` forced.
    OpfsNoMove,
    /// The IndexedDB fallback.
    Idb,
}

impl Backend {
    fn is_opfs(self) -> bool {
        matches!(self, Backend::Opfs | Backend::OpfsNoMove)
    }
}

// ---- helpers ----

fn unique_store(tag: &str) -> StoreId {
    let r = (js_sys::Math::random() * 1e15) as u64;
    StoreId::new(format!("test-{tag}-{r:x}")).unwrap()
}

async fn open(backend: Backend, id: &StoreId) -> ByteStore {
    let store = match backend {
        Backend::Opfs | Backend::OpfsNoMove => ByteStore::open_opfs(id).await,
        Backend::Idb => ByteStore::open_idb(id).await,
    }
    .unwrap_or_else(|e| panic!("open {backend:?}: {e}"));
    if let ByteStore::Opfs(s) = &store {
        s.force_without_move(backend == Backend::OpfsNoMove);
        assert_eq!(s.uses_move(), backend == Backend::Opfs);
    }
    store
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The test's own reference hash: WebCrypto, independent of the `sha2` code under test and much
/// faster than `sha2` in a debug build.
async fn reference_hash(bytes: &[u8]) -> ContentHash {
    digest_webcrypto(&js_sys::Uint8Array::from(bytes))
        .await
        .unwrap()
}

fn blob_of(bytes: &[u8]) -> web_sys::Blob {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    web_sys::Blob::new_with_u8_array_sequence(&parts).unwrap()
}

async fn bytes_of(blob: &web_sys::Blob) -> Vec<u8> {
    let buffer = JsFuture::from(blob.array_buffer()).await.unwrap();
    js_sys::Uint8Array::new(&buffer).to_vec()
}

async fn hashes(store: &ByteStore) -> Vec<ContentHash> {
    store.list().await.unwrap().hashes
}

fn sorted(mut v: Vec<ContentHash>) -> Vec<ContentHash> {
    v.sort();
    v
}

async fn promise<T: JsCast>(p: js_sys::Promise) -> T {
    JsFuture::from(p).await.unwrap().dyn_into().unwrap()
}

/// `filesync/<id>/<sub>` opened by hand, as another tab or an earlier session would see it.
async fn opfs_dir(id: &StoreId, sub: &str) -> FileSystemDirectoryHandle {
    let storage = filesync::web::global::storage_manager().unwrap();
    let mut dir: FileSystemDirectoryHandle = promise(storage.get_directory()).await;
    for name in ["filesync", id.as_str(), sub] {
        let options = web_sys::FileSystemGetDirectoryOptions::new();
        options.set_create(true);
        dir = promise(dir.get_directory_handle_with_options(name, &options)).await;
    }
    dir
}

async fn opfs_names(dir: &FileSystemDirectoryHandle) -> Vec<String> {
    let iter = dir.keys();
    let mut names = Vec::new();
    loop {
        let step = JsFuture::from(iter.next().unwrap()).await.unwrap();
        let done = js_sys::Reflect::get(&step, &"done".into()).unwrap();
        if done.is_truthy() {
            names.sort();
            return names;
        }
        names.push(
            js_sys::Reflect::get(&step, &"value".into())
                .unwrap()
                .as_string()
                .unwrap(),
        );
    }
}

async fn opfs_create(dir: &FileSystemDirectoryHandle, name: &str) -> FileSystemFileHandle {
    let options = web_sys::FileSystemGetFileOptions::new();
    options.set_create(true);
    promise(dir.get_file_handle_with_options(name, &options)).await
}

async fn opfs_write_file(dir: &FileSystemDirectoryHandle, name: &str, bytes: &[u8]) {
    let handle = opfs_create(dir, name).await;
    let w: FileSystemWritableFileStream = promise(handle.create_writable()).await;
    JsFuture::from(w.write_with_u8_array(bytes).unwrap())
        .await
        .unwrap();
    JsFuture::from(w.close()).await.unwrap();
}

/// Runs futures concurrently on this thread until all are done (no `futures` crate here).
async fn join_all(futures: Vec<Pin<Box<dyn Future<Output = ()> + '_>>>) {
    let mut pending: Vec<_> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        for slot in pending.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

// ---- the suite ----

pub async fn write_read_round_trip_keeps_bytes(backend: Backend) {
    let id = unique_store("roundtrip");
    let store = open(backend, &id).await;
    // Empty, tiny, small (WebCrypto path) and above the one-shot threshold (streaming path).
    let sizes = [0, 1, 100_000, 9 * MIB + 3];
    for (i, &n) in sizes.iter().enumerate() {
        let bytes = pattern(n, i as u32);
        let expected = reference_hash(&bytes).await;
        let hash = store.write(&blob_of(&bytes)).await.unwrap();
        assert_eq!(hash, expected, "{backend:?} write of {n} bytes");
        let back = store.read(&hash).await.unwrap();
        assert_eq!(back.size(), n as f64, "{backend:?} size of {n} bytes");
        assert_eq!(hash_blob_webcrypto(&back).await.unwrap(), expected);
        if n <= 100_000 {
            assert_eq!(bytes_of(&back).await, bytes);
        }
    }
    assert_eq!(hashes(&store).await.len(), sizes.len());
    store.destroy().await.unwrap();
}

pub async fn same_content_twice_is_one_entry(backend: Backend) {
    let id = unique_store("dedup");
    let store = open(backend, &id).await;
    let bytes = pattern(50_000, 3);
    let a = store.write(&blob_of(&bytes)).await.unwrap();
    let b = store.write(&blob_of(&bytes)).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(hashes(&store).await, vec![a]);
    assert_eq!(bytes_of(&store.read(&a).await.unwrap()).await, bytes);
    if backend.is_opfs() {
        assert!(opfs_names(&opfs_dir(&id, "tmp").await).await.is_empty());
    }
    store.destroy().await.unwrap();
}

pub async fn list_follows_writes_and_deletes(backend: Backend) {
    let id = unique_store("list");
    let store = open(backend, &id).await;
    assert!(hashes(&store).await.is_empty());
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(
            store
                .write(&blob_of(&pattern(1000 + i, i as u32)))
                .await
                .unwrap(),
        );
    }
    assert_eq!(hashes(&store).await, sorted(all.clone()));
    store.delete(&all[1]).await.unwrap();
    store.delete(&all[3]).await.unwrap();
    let left = sorted(vec![all[0], all[2], all[4]]);
    assert_eq!(hashes(&store).await, left);
    let listing = store.list().await.unwrap();
    assert!(listing.ignored.is_empty(), "{:?}", listing.ignored);
    store.destroy().await.unwrap();
}

pub async fn delete_is_idempotent(backend: Backend) {
    let id = unique_store("delete");
    let store = open(backend, &id).await;
    let never = ContentHash::of(b"never stored");
    store.delete(&never).await.unwrap();
    let h = store.write(&blob_of(b"to delete")).await.unwrap();
    store.delete(&h).await.unwrap();
    store.delete(&h).await.unwrap();
    assert!(!store.has(&h).await.unwrap());
    assert!(hashes(&store).await.is_empty());
    store.destroy().await.unwrap();
}

pub async fn has_reports_presence(backend: Backend) {
    let id = unique_store("has");
    let store = open(backend, &id).await;
    let h = ContentHash::of(b"present");
    assert!(!store.has(&h).await.unwrap());
    assert_eq!(store.write(&blob_of(b"present")).await.unwrap(), h);
    assert!(store.has(&h).await.unwrap());
    assert!(!store.has(&ContentHash::of(b"absent")).await.unwrap());
    store.destroy().await.unwrap();
}

pub async fn read_of_a_missing_hash_is_not_found(backend: Backend) {
    let id = unique_store("missing");
    let store = open(backend, &id).await;
    let err = store
        .read(&ContentHash::of(b"missing"))
        .await
        .expect_err("read of a missing entry");
    assert!(matches!(err, WebError::NotFound { .. }), "{err:?}");
    assert_eq!(err.code(), "not_found");
    store.destroy().await.unwrap();
}

pub async fn write_expected_mismatch_stores_nothing(backend: Backend) {
    let id = unique_store("expected");
    let store = open(backend, &id).await;
    let expected = ContentHash::of(b"what the server promised");
    // Both paths of a write: small (one-shot) and above the threshold (streamed).
    for bytes in [b"what arrived".to_vec(), pattern(9 * MIB, 5)] {
        let actual = reference_hash(&bytes).await;
        let err = store
            .write_expected(&blob_of(&bytes), expected)
            .await
            .expect_err("a mismatch");
        assert_eq!(err, WriteError::Mismatch { expected, actual });
        assert_eq!(err.code(), "hash_mismatch");
        assert!(!store.has(&expected).await.unwrap());
        assert!(!store.has(&actual).await.unwrap());
        assert!(hashes(&store).await.is_empty());
    }
    if backend.is_opfs() {
        assert!(opfs_names(&opfs_dir(&id, "tmp").await).await.is_empty());
    }
    let good = b"what the server promised";
    assert_eq!(
        store
            .write_expected(&blob_of(good), expected)
            .await
            .unwrap(),
        expected
    );
    assert_eq!(hashes(&store).await, vec![expected]);
    store.destroy().await.unwrap();
}

/// A blob whose read fails midway (an OPFS `File` whose file changed after `getFile()`: the
/// browser refuses the stale snapshot). The write must fail and leave nothing, like a quota
/// error would.
pub async fn failed_read_stores_nothing(backend: Backend) {
    let id = unique_store("failed");
    let store = open(backend, &id).await;
    let scratch = opfs_dir(&id, "scratch").await;
    for n in [100_000, 9 * MIB] {
        opfs_write_file(&scratch, "source", &pattern(n, 8)).await;
        let handle = opfs_create(&scratch, "source").await;
        let stale: web_sys::File = promise(handle.get_file()).await;
        opfs_write_file(&scratch, "source", b"changed").await;
        let err = store.write(&stale).await.expect_err("a stale File");
        assert!(!matches!(err, WebError::Quota { .. }), "{err:?}");
        assert!(hashes(&store).await.is_empty(), "{backend:?} after {err:?}");
        if backend.is_opfs() {
            assert!(opfs_names(&opfs_dir(&id, "tmp").await).await.is_empty());
        }
    }
    store.destroy().await.unwrap();
    if backend == Backend::Idb {
        // The scratch directory lives in OPFS even for the IndexedDB backend.
        let storage = filesync::web::global::storage_manager().unwrap();
        let root: FileSystemDirectoryHandle = promise(storage.get_directory()).await;
        let filesync: FileSystemDirectoryHandle =
            promise(root.get_directory_handle("filesync")).await;
        let options = web_sys::FileSystemRemoveOptions::new();
        options.set_recursive(true);
        JsFuture::from(filesync.remove_entry_with_options(id.as_str(), &options))
            .await
            .unwrap();
    }
}

pub async fn entries_survive_reopen(backend: Backend) {
    let id = unique_store("reopen");
    let store = open(backend, &id).await;
    let h = store.write(&blob_of(b"durable")).await.unwrap();
    drop(store);
    let store = open(backend, &id).await;
    assert!(store.has(&h).await.unwrap());
    assert_eq!(hashes(&store).await, vec![h]);
    assert_eq!(bytes_of(&store.read(&h).await.unwrap()).await, b"durable");
    store.destroy().await.unwrap();
    let store = open(backend, &id).await;
    assert!(hashes(&store).await.is_empty(), "destroy left entries");
    store.destroy().await.unwrap();
}

pub async fn kind_and_usage(backend: Backend) {
    let id = unique_store("kind");
    let store = open(backend, &id).await;
    let kind = if backend.is_opfs() {
        StoreKind::Opfs
    } else {
        StoreKind::IndexedDb
    };
    assert_eq!(store.kind(), kind);
    assert_eq!(
        store.kind().as_str(),
        if backend.is_opfs() {
            "opfs"
        } else {
            "indexeddb"
        }
    );
    assert_eq!(store.store_id(), &id);
    let usage = store.usage().await.unwrap();
    assert!(usage.quota > 0.0 && usage.usage >= 0.0, "{usage:?}");
    store.destroy().await.unwrap();
}

/// Several writes of the same and of different content at once, while the temp directory is
/// cleaned over and over (what another tab opening the store does): every write succeeds, each
/// content is stored once, nothing is left in tmp/.
pub async fn concurrent_writes_and_cleanups(backend: Backend) {
    let id = unique_store("concurrent");
    let store = open(backend, &id).await;
    let big = pattern(9 * MIB + 1, 21);
    let small = pattern(5000, 22);
    let contents = [&big, &small, &big, &small, &small];
    let done = Cell::new(0);
    let removed = Cell::new(0);
    let mut tasks: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = Vec::new();
    for bytes in contents {
        let (store, done) = (&store, &done);
        tasks.push(Box::pin(async move {
            let h = store.write(&blob_of(bytes)).await.unwrap();
            assert_eq!(h, reference_hash(bytes).await);
            done.set(done.get() + 1);
        }));
    }
    let (store_ref, done_ref, removed_ref) = (&store, &done, &removed);
    tasks.push(Box::pin(async move {
        while done_ref.get() < contents.len() {
            removed_ref.set(removed_ref.get() + store_ref.cleanup_temp().await.unwrap());
            // A macrotask turn: IndexedDB's cleanup is a no-op that never yields by itself.
            gloo_timers::future::TimeoutFuture::new(0).await;
        }
    }));
    let t0 = js_sys::Date::now();
    join_all(tasks).await;
    wasm_bindgen_test::console_log!(
        "{backend:?}: concurrent writes took {} ms, cleanups removed {} temps, {} writes retried",
        js_sys::Date::now() - t0,
        removed.get(),
        match &store {
            ByteStore::Opfs(s) => s.write_retries(),
            _ => 0,
        }
    );
    assert_eq!(
        hashes(&store).await,
        sorted(vec![
            reference_hash(&big).await,
            reference_hash(&small).await
        ])
    );
    assert_eq!(
        bytes_of(&store.read(&ContentHash::of(&small)).await.unwrap()).await,
        small
    );
    let back = store.read(&reference_hash(&big).await).await.unwrap();
    assert_eq!(
        hash_blob_webcrypto(&back).await.unwrap(),
        reference_hash(&big).await
    );
    if backend.is_opfs() {
        assert!(opfs_names(&opfs_dir(&id, "tmp").await).await.is_empty());
    }
    store.destroy().await.unwrap();
}

// ---- OPFS only ----

pub async fn open_prefers_opfs() {
    let id = unique_store("default");
    let store = ByteStore::open(&id).await.unwrap();
    assert_eq!(store.kind(), StoreKind::Opfs);
    store.destroy().await.unwrap();
}

pub async fn open_and_cleanup_remove_temp_leftovers(backend: Backend) {
    let id = unique_store("temp");
    let store = open(backend, &id).await;
    let h = store.write(&blob_of(b"kept")).await.unwrap();
    drop(store);
    // Leftovers of a crashed write: a half-written temp and a browser swap file.
    let tmp = opfs_dir(&id, "tmp").await;
    opfs_write_file(&tmp, "18f0000000-crashed", &pattern(70_000, 1)).await;
    opfs_write_file(&tmp, "18f0000000-other.crswap", b"swap").await;
    assert_eq!(opfs_names(&tmp).await.len(), 2);
    let store = open(backend, &id).await;
    assert!(opfs_names(&tmp).await.is_empty(), "open cleans tmp/");
    assert_eq!(hashes(&store).await, vec![h]);

    opfs_write_file(&tmp, "leftover", b"x").await;
    // A stray directory is junk too; it must not make the cleanup (and so `open`) fail.
    let options = web_sys::FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    let stray: FileSystemDirectoryHandle =
        promise(tmp.get_directory_handle_with_options("stray-dir", &options)).await;
    opfs_write_file(&stray, "inside", b"y").await;
    assert_eq!(store.cleanup_temp().await.unwrap(), 2);
    assert!(opfs_names(&tmp).await.is_empty());
    assert_eq!(store.cleanup_temp().await.unwrap(), 0);
    store.destroy().await.unwrap();
}

/// A temp another tab is still writing is locked by the browser: cleanup leaves it alone.
pub async fn cleanup_skips_temps_being_written(backend: Backend) {
    let id = unique_store("inflight");
    let store = open(backend, &id).await;
    let tmp = opfs_dir(&id, "tmp").await;
    let handle = opfs_create(&tmp, "inflight").await;
    let w: FileSystemWritableFileStream = promise(handle.create_writable()).await;
    JsFuture::from(w.write_with_u8_array(b"partial").unwrap())
        .await
        .unwrap();
    assert_eq!(store.cleanup_temp().await.unwrap(), 0);
    assert!(opfs_names(&tmp).await.contains(&"inflight".to_string()));
    JsFuture::from(w.close()).await.unwrap();
    assert_eq!(store.cleanup_temp().await.unwrap(), 1);
    assert!(opfs_names(&tmp).await.is_empty());
    store.destroy().await.unwrap();
}

/// Names under blobs/ that are not 64 lowercase hex are not entries; they are reported.
pub async fn foreign_names_are_ignored_and_reported(backend: Backend) {
    let id = unique_store("foreign");
    let store = open(backend, &id).await;
    let h = store.write(&blob_of(b"real")).await.unwrap();
    let blobs = opfs_dir(&id, "blobs").await;
    let upper = h.to_hex().to_uppercase();
    opfs_write_file(&blobs, "README", b"not an entry").await;
    opfs_write_file(&blobs, &upper, b"real").await;
    let listing = store.list().await.unwrap();
    assert_eq!(listing.hashes, vec![h]);
    let mut ignored = listing.ignored;
    ignored.sort();
    assert_eq!(ignored, vec![upper, "README".to_string()]);
    store.destroy().await.unwrap();
}

/// What a crash in the middle of an in-place write leaves (an empty file under a final name) is not
/// an entry, and a later write of that content replaces it.
pub async fn empty_file_under_a_final_name_is_missing(backend: Backend) {
    let id = unique_store("orphan");
    let store = open(backend, &id).await;
    let content = b"content whose in-place write crashed";
    let h = ContentHash::of(content);
    let blobs = opfs_dir(&id, "blobs").await;
    opfs_create(&blobs, &h.to_hex()).await;
    assert!(!store.has(&h).await.unwrap());
    let err = store.read(&h).await.expect_err("an empty orphan");
    assert_eq!(err.code(), "not_found");
    if backend == Backend::OpfsNoMove {
        // Only in-place writes can leave these, so only then does `list` check sizes.
        assert!(hashes(&store).await.is_empty());
    }
    assert_eq!(store.write(&blob_of(content)).await.unwrap(), h);
    assert!(store.has(&h).await.unwrap());
    assert_eq!(bytes_of(&store.read(&h).await.unwrap()).await, content);
    assert_eq!(hashes(&store).await, vec![h]);
    // The empty content itself is a real entry of size 0.
    let empty = store.write(&blob_of(b"")).await.unwrap();
    assert!(store.has(&empty).await.unwrap());
    assert_eq!(store.read(&empty).await.unwrap().size(), 0.0);
    store.destroy().await.unwrap();
}

/// Stamps every case of the suite as a test, for each backend.
macro_rules! suite {
    ($($module:ident => $backend:expr;)*) => {$(
        mod $module {
            use super::*;
            use wasm_bindgen_test::wasm_bindgen_test;

            #[wasm_bindgen_test]
            async fn write_read_round_trip_keeps_bytes() {
                super::write_read_round_trip_keeps_bytes($backend).await
            }
            #[wasm_bindgen_test]
            async fn same_content_twice_is_one_entry() {
                super::same_content_twice_is_one_entry($backend).await
            }
            #[wasm_bindgen_test]
            async fn list_follows_writes_and_deletes() {
                super::list_follows_writes_and_deletes($backend).await
            }
            #[wasm_bindgen_test]
            async fn delete_is_idempotent() {
                super::delete_is_idempotent($backend).await
            }
            #[wasm_bindgen_test]
            async fn has_reports_presence() {
                super::has_reports_presence($backend).await
            }
            #[wasm_bindgen_test]
            async fn read_of_a_missing_hash_is_not_found() {
                super::read_of_a_missing_hash_is_not_found($backend).await
            }
            #[wasm_bindgen_test]
            async fn write_expected_mismatch_stores_nothing() {
                super::write_expected_mismatch_stores_nothing($backend).await
            }
            #[wasm_bindgen_test]
            async fn failed_read_stores_nothing() {
                super::failed_read_stores_nothing($backend).await
            }
            #[wasm_bindgen_test]
            async fn entries_survive_reopen() {
                super::entries_survive_reopen($backend).await
            }
            #[wasm_bindgen_test]
            async fn kind_and_usage() {
                super::kind_and_usage($backend).await
            }
            #[wasm_bindgen_test]
            async fn concurrent_writes_and_cleanups() {
                super::concurrent_writes_and_cleanups($backend).await
            }
        }
    )*};
}

/// The OPFS-only cases (temps, foreign files, leftovers of in-place writes).
macro_rules! opfs_suite {
    ($($module:ident => $backend:expr;)*) => {$(
        mod $module {
            use super::*;
            use wasm_bindgen_test::wasm_bindgen_test;

            #[wasm_bindgen_test]
            async fn open_and_cleanup_remove_temp_leftovers() {
                super::open_and_cleanup_remove_temp_leftovers($backend).await
            }
            #[wasm_bindgen_test]
            async fn cleanup_skips_temps_being_written() {
                super::cleanup_skips_temps_being_written($backend).await
            }
            #[wasm_bindgen_test]
            async fn foreign_names_are_ignored_and_reported() {
                super::foreign_names_are_ignored_and_reported($backend).await
            }
            #[wasm_bindgen_test]
            async fn empty_file_under_a_final_name_is_missing() {
                super::empty_file_under_a_final_name_is_missing($backend).await
            }
        }
    )*};
}

suite! {
    opfs => Backend::Opfs;
    opfs_no_move => Backend::OpfsNoMove;
    idb => Backend::Idb;
}

opfs_suite! {
    opfs_only => Backend::Opfs;
    opfs_no_move_only => Backend::OpfsNoMove;
}

#[wasm_bindgen_test::wasm_bindgen_test]
async fn open_picks_opfs_in_chromium() {
    open_prefers_opfs().await
}
