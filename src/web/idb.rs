//! The state store on IndexedDB: one database per store id (`filesync:<storeId>`) with the
//! tables of [`crate::core::store`] as object stores. Every engine batch is one `readwrite`
//! transaction, so it lands whole or not at all.
//!
//! Records are stored as JSON text (JS strings), since layout version 2. Loading reads each
//! table with `getAllKeys` + `getAll` in one read-only transaction; JS packs each table into
//! one string of `key<TAB>json` lines, so the records cross into wasm in four copies, not one
//! call per field, and [`decode_records`] parses them straight into typed records: broken ones
//! are reported, not fatal. (Layout 1 stored plain JS objects, which cost ~3x more to read:
//! IndexedDB's structured clone of objects, then `serde_wasm_bindgen` into `serde_json::Value`
//! field by field; see docs/BENCHMARKS.md.) Opening a layout-1 database converts every record
//! to text in the upgrade transaction, once. A value that is not a string (a layout-1 record
//! planted later, or anything odd) is read through `JSON.stringify`.
//!
//! Layout 3 adds the `view` object store: one record, the hub's last snapshot of the files as
//! tabs see them ([`IdbStateStore::save_view`]), so a cold start can show them before the
//! tables are loaded. It is a cache, never a source of truth: the first batch written after
//! it deletes it in the same transaction, so a view that exists matches the tables.
//!
//! Durability is IndexedDB's default (survives a tab or browser crash; an OS crash may lose
//! the last writes).

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::error::WebError;
use super::global;
use crate::core::store::{
    decode_records, meta, CorruptRecord, Key, Loaded, Op, StateStore, StoreError, Table,
};
use crate::core::{DecodeError, StoreId, Term};

/// Version of the IndexedDB layout (object stores and how records are held). A database
/// created by a newer layout fails to open with `VersionError`, reported as
/// `StoreError::TooNew`. 1: records as JS objects; 2: records as JSON text; 3: adds the
/// `view` object store.
pub const IDB_VERSION: u32 = 3;

/// The object store of the files view, and its one key.
const VIEW: &str = "view";
const VIEW_KEY: &str = "snapshot";

#[wasm_bindgen(module = "/src/web/idb.js")]
extern "C" {
    #[wasm_bindgen(js_name = idbRequest)]
    fn idb_request(r: &web_sys::IdbRequest) -> js_sys::Promise;
    #[wasm_bindgen(js_name = idbDone)]
    fn idb_done(tx: &web_sys::IdbTransaction) -> js_sys::Promise;
    #[wasm_bindgen(js_name = idbOpen)]
    fn idb_open(
        factory: &web_sys::IdbFactory,
        name: &str,
        version: u32,
        stores: &js_sys::Array,
    ) -> js_sys::Promise;
    #[wasm_bindgen(js_name = idbLoadText)]
    fn idb_load_text(
        db: &web_sys::IdbDatabase,
        tables: &js_sys::Array,
        slow_only: bool,
    ) -> js_sys::Promise;
    #[wasm_bindgen(js_name = idbPeekView)]
    fn idb_peek_view(factory: &web_sys::IdbFactory, name: &str, version: u32) -> js_sys::Promise;
    #[wasm_bindgen(js_name = idbDelete)]
    fn idb_delete(factory: &web_sys::IdbFactory, name: &str) -> js_sys::Promise;
}

/// How many records the view store holds under its key (0 or 1).
async fn view_count(db: &web_sys::IdbDatabase) -> Result<f64, JsValue> {
    let request = db
        .transaction_with_str(VIEW)?
        .object_store(VIEW)?
        .count_with_key(&JsValue::from_str(VIEW_KEY))?;
    let n = JsFuture::from(idb_request(&request)).await?;
    Ok(n.as_f64().unwrap_or(0.0))
}

fn store_error(api: &'static str, e: &JsValue) -> StoreError {
    match WebError::from_js(api, e) {
        WebError::Quota { message } => StoreError::Quota { message },
        WebError::Unavailable { message, .. } => StoreError::Unavailable { message },
        WebError::Version { .. } => StoreError::TooNew {
            found: 0,
            supported: crate::core::store::SCHEMA_VERSION,
        },
        other => StoreError::Io {
            message: other.to_string(),
        },
    }
}

fn key_js(k: &Key) -> JsValue {
    match k {
        Key::Num(n) => JsValue::from_f64(*n as f64),
        Key::Str(s) => JsValue::from_str(s),
    }
}

/// A key as `idbLoadText` writes it (`JSON.stringify(key)`): text or a whole number.
fn key_from_json(k: &str) -> Option<Key> {
    if k.starts_with('"') {
        return serde_json::from_str::<String>(k).ok().map(Key::Str);
    }
    let n = k.parse::<u64>().ok()?;
    (n <= 9_007_199_254_740_991).then_some(Key::Num(n))
}

/// The records of one table as `idbLoadText` packs them (`count` of them): (key, JSON text),
/// or the broken records. `None` if the fast form does not split into `count` records each
/// side (a key or a value holds a newline): read it again in the slow form.
fn unpack<'a>(
    table: Table,
    text: &'a str,
    count: usize,
    records: &mut Vec<(Table, Key, &'a str)>,
    unreadable: &mut Vec<CorruptRecord>,
) -> Option<()> {
    let mut bad = |key: Key, message: &str| {
        unreadable.push(CorruptRecord {
            table,
            key,
            error: DecodeError::Malformed {
                message: message.into(),
            },
        })
    };
    let Some(first) = text.chars().next() else {
        return Some(());
    };
    let body = &text[first.len_utf8()..];
    if first == '\u{1}' {
        for line in body.split('\n') {
            let (k, v) = line.split_once('\t').unwrap_or((line, ""));
            let Some(key) = key_from_json(k) else {
                bad(
                    Key::Str(k.to_string()),
                    "key is neither text nor a whole number",
                );
                continue;
            };
            if v.is_empty() {
                bad(key, "the stored value is not JSON text");
                continue;
            }
            records.push((table, key, v));
        }
        return Some(());
    }
    let (keys, values) = body.split_once('\0')?;
    if keys.split('\n').count() != count || values.split('\n').count() != count {
        return None;
    }
    let start = records.len();
    for (k, v) in keys.split('\n').zip(values.split('\n')) {
        let key = if first == '\u{2}' {
            Key::Str(k.to_string())
        } else {
            match k.parse::<u64>() {
                Ok(n) if n <= 9_007_199_254_740_991 => Key::Num(n),
                _ => {
                    // Not a whole number: read the table again in the slow form.
                    records.truncate(start);
                    return None;
                }
            }
        };
        records.push((table, key, v));
    }
    Some(())
}

/// The files view of `store` as the last hub saved it (see [`IdbStateStore::save_view`]),
/// read by a tab while its hub starts: resolves to the text (`""` when the record is not text),
/// or `null` when there is none (or no database: none is created; or a database of a newer
/// layout). Never rejects.
pub fn peek_view(store: &StoreId) -> js_sys::Promise {
    match global::indexed_db() {
        Ok(factory) => idb_peek_view(&factory, &database_name(store), IDB_VERSION),
        Err(_) => js_sys::Promise::resolve(&JsValue::NULL),
    }
}

/// The name of the database of a store.
pub fn database_name(store: &StoreId) -> String {
    format!("filesync:{store}")
}

/// A store's state in IndexedDB.
#[derive(Debug, Clone)]
pub struct IdbStateStore {
    db: web_sys::IdbDatabase,
    view: Rc<ViewState>,
}

/// What the store knows about the view record.
#[derive(Debug, Default)]
struct ViewState {
    /// A view record may exist (read or saved since the last batch deleted it): the next batch
    /// deletes it.
    live: Cell<bool>,
    /// Saves made, so a batch that completes after a newer save does not forget that one.
    saves: Cell<u64>,
    /// Batches in flight: a view saved now might not show them.
    writing: Cell<u32>,
}

impl IdbStateStore {
    /// Calls `f` when the browser closes the database under us (the user cleared the site's
    /// data, or the browser evicted it): every later transaction fails, and the database is
    /// gone. The caller keeps `f` alive.
    pub fn on_close(&self, f: &js_sys::Function) {
        self.db.set_onclose(Some(f));
    }

    /// Opens (creating if needed) the database of `store`.
    pub async fn open(store: &StoreId) -> Result<IdbStateStore, StoreError> {
        let factory = global::indexed_db().map_err(|e| StoreError::Unavailable {
            message: e.to_string(),
        })?;
        let names: js_sys::Array = Table::ALL
            .iter()
            .map(|t| t.name())
            .chain([VIEW])
            .map(JsValue::from_str)
            .collect();
        let db = JsFuture::from(idb_open(
            &factory,
            &database_name(store),
            IDB_VERSION,
            &names,
        ))
        .await
        .map_err(|e| store_error("indexedDB.open", &e))?;
        let db: web_sys::IdbDatabase = db.dyn_into().map_err(|_| StoreError::Io {
            message: "indexedDB.open did not return a database".into(),
        })?;
        // Counted, not read (a large store's view is megabytes). If the count fails, assume
        // a view: the next batch then deletes it, as it must if there is one.
        let live = view_count(&db).await.map_or(true, |n| n > 0.0);
        Ok(IdbStateStore {
            db,
            view: Rc::new(ViewState {
                live: Cell::new(live),
                ..ViewState::default()
            }),
        })
    }

    /// Whether a files view may be stored: one was found at open or saved since, and no batch
    /// has deleted it since. The hub saves a view when there is none, so a start that changes
    /// nothing does not write the whole view again.
    pub fn has_view(&self) -> bool {
        self.view.live.get()
    }

    /// Whether a batch is in flight (a view saved now would be refused).
    pub fn writing(&self) -> bool {
        self.view.writing.get() > 0
    }

    /// Saves the files view: `text` must show the state every batch written so far left.
    /// Batches written after it delete it (IndexedDB runs transactions on the same object
    /// store in the order they were made). Saves nothing and answers `false` while a batch is
    /// in flight (it might land after the view): try again later.
    pub async fn save_view(&self, text: &str) -> Result<bool, StoreError> {
        if self.writing() {
            return Ok(false);
        }
        self.view.live.set(true);
        self.view.saves.set(self.view.saves.get() + 1);
        let tx = self
            .db
            .transaction_with_str_and_mode(VIEW, web_sys::IdbTransactionMode::Readwrite)
            .map_err(|e| store_error("IDBDatabase.transaction", &e))?;
        let done = idb_done(&tx);
        tx.object_store(VIEW)
            .and_then(|os| os.put_with_key(&JsValue::from_str(text), &JsValue::from_str(VIEW_KEY)))
            .map_err(|e| store_error("IDBObjectStore.put", &e))?;
        JsFuture::from(done)
            .await
            .map_err(|e| store_error("IDBTransaction", &e))?;
        Ok(true)
    }

    /// Deletes the whole database of `store` (all of its state). Close open handles first.
    pub async fn delete(store: &StoreId) -> Result<(), StoreError> {
        let factory = global::indexed_db().map_err(|e| StoreError::Unavailable {
            message: e.to_string(),
        })?;
        JsFuture::from(idb_delete(&factory, &database_name(store)))
            .await
            .map_err(|e| store_error("indexedDB.deleteDatabase", &e))?;
        Ok(())
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.db.close();
    }

    fn transaction(
        &self,
        tables: &[Table],
        mode: web_sys::IdbTransactionMode,
    ) -> Result<web_sys::IdbTransaction, StoreError> {
        self.transaction_named(tables.iter().map(|t| t.name()), mode)
    }

    fn transaction_named<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        mode: web_sys::IdbTransactionMode,
    ) -> Result<web_sys::IdbTransaction, StoreError> {
        let names: js_sys::Array = names.map(JsValue::from_str).collect();
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| store_error("IDBDatabase.transaction", &e))
    }

    /// One batch in one transaction, with the view's deletion when `drop_view`.
    async fn write_batch(
        &self,
        ops: &[Op],
        tables: &[Table],
        drop_view: bool,
    ) -> Result<(), StoreError> {
        let names = tables
            .iter()
            .map(|t| t.name())
            .chain(drop_view.then_some(VIEW));
        let tx = self.transaction_named(names, web_sys::IdbTransactionMode::Readwrite)?;
        let done = idb_done(&tx);
        let result = (|| {
            if drop_view {
                tx.object_store(VIEW)
                    .and_then(|os| os.delete(&JsValue::from_str(VIEW_KEY)))
                    .map_err(|e| store_error("IDBObjectStore.delete", &e))?;
            }
            for op in ops {
                match op {
                    Op::Put { table, key, value } => {
                        let os = tx
                            .object_store(table.name())
                            .map_err(|e| store_error("IDBTransaction.objectStore", &e))?;
                        os.put_with_key(&JsValue::from_str(value), &key_js(key))
                            .map_err(|e| store_error("IDBObjectStore.put", &e))?;
                    }
                    Op::Delete { table, key } => {
                        let os = tx
                            .object_store(table.name())
                            .map_err(|e| store_error("IDBTransaction.objectStore", &e))?;
                        os.delete(&key_js(key))
                            .map_err(|e| store_error("IDBObjectStore.delete", &e))?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Nothing of the batch may land.
            let _ = tx.abort();
            let _ = JsFuture::from(done).await;
            return Err(e);
        }
        JsFuture::from(done)
            .await
            .map_err(|e| store_error("IDBTransaction", &e))?;
        Ok(())
    }

    /// Writes a raw value under a key, bypassing encoding: for tests that plant broken
    /// records, and for tools.
    pub async fn put_raw(
        &self,
        table: Table,
        key: &Key,
        value: &JsValue,
    ) -> Result<(), StoreError> {
        let tx = self.transaction(&[table], web_sys::IdbTransactionMode::Readwrite)?;
        let done = idb_done(&tx);
        let os = tx
            .object_store(table.name())
            .map_err(|e| store_error("IDBTransaction.objectStore", &e))?;
        os.put_with_key(value, &key_js(key))
            .map_err(|e| store_error("IDBObjectStore.put", &e))?;
        JsFuture::from(done)
            .await
            .map_err(|e| store_error("IDBTransaction", &e))?;
        Ok(())
    }
}

impl StateStore for IdbStateStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        let names: js_sys::Array = Table::LOADED
            .iter()
            .map(|t| JsValue::from_str(t.name()))
            .collect();
        let packed: js_sys::Array = JsFuture::from(idb_load_text(&self.db, &names, false))
            .await
            .map_err(|e| store_error("IDBObjectStore.getAll", &e))?
            .unchecked_into();
        let read = |p: &js_sys::Array| -> Vec<(String, usize)> {
            p.iter()
                .map(|t| {
                    let t: js_sys::Array = t.unchecked_into();
                    let count = t.get(1).as_f64().unwrap_or(0.0) as usize;
                    (t.get(0).as_string().unwrap_or_default(), count)
                })
                .collect()
        };
        let mut texts = read(&packed);
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        let mut again = false;
        for (table, (text, count)) in Table::LOADED.into_iter().zip(&texts) {
            again |= unpack(table, text, *count, &mut records, &mut unreadable).is_none();
        }
        if again {
            // Rare (hand-planted records): every table in the slow form, one record a line.
            drop(records);
            let packed: js_sys::Array = JsFuture::from(idb_load_text(&self.db, &names, true))
                .await
                .map_err(|e| store_error("IDBObjectStore.getAll", &e))?
                .unchecked_into();
            texts = read(&packed);
            records = Vec::new();
            unreadable.clear();
            for (table, (text, count)) in Table::LOADED.into_iter().zip(&texts) {
                let _ = unpack(table, text, *count, &mut records, &mut unreadable);
            }
        }
        let mut loaded = decode_records(records)?;
        loaded.corrupt.extend(unreadable);
        Ok(loaded)
    }

    async fn write(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut tables: Vec<Table> = ops
            .iter()
            .map(|op| match op {
                Op::Put { table, .. } | Op::Delete { table, .. } => *table,
            })
            .collect();
        crate::core::collections::sort(&mut tables);
        tables.dedup();
        if tables.is_empty() {
            return Ok(());
        }
        // The view no longer matches once this lands: it goes in the same transaction.
        let view = &self.view;
        let (drop_view, saves) = (view.live.get(), view.saves.get());
        view.writing.set(view.writing.get() + 1);
        let result = self.write_batch(ops, &tables, drop_view).await;
        view.writing.set(view.writing.get() - 1);
        if result.is_ok() && drop_view && view.saves.get() == saves {
            view.live.set(false);
        }
        result
    }

    async fn next_term(&self) -> Result<Term, StoreError> {
        let tx = self.transaction(&[Table::Meta], web_sys::IdbTransactionMode::Readwrite)?;
        let done = idb_done(&tx);
        let os = tx
            .object_store(Table::Meta.name())
            .map_err(|e| store_error("IDBTransaction.objectStore", &e))?;
        let key = JsValue::from_str(meta::LAST_TERM);
        let get = os
            .get(&key)
            .map_err(|e| store_error("IDBObjectStore.get", &e))?;
        // Read and write in the same transaction: two tabs can never get the same term.
        let last = JsFuture::from(idb_request(&get))
            .await
            .map_err(|e| store_error("IDBObjectStore.get", &e))?;
        // JSON text; a number if planted by hand.
        let last = last
            .as_string()
            .and_then(|t| t.parse::<u64>().ok())
            .or_else(|| last.as_f64().map(|n| n as u64))
            .unwrap_or(0);
        let next = last + 1;
        os.put_with_key(&JsValue::from_str(&next.to_string()), &key)
            .map_err(|e| store_error("IDBObjectStore.put", &e))?;
        JsFuture::from(done)
            .await
            .map_err(|e| store_error("IDBTransaction", &e))?;
        Ok(Term(next))
    }
}
