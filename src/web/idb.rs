//! The state store on IndexedDB: one database per store id (`filesync:<storeId>`) with the
//! tables of [`crate::core::store`] as object stores. Every engine batch is one `readwrite`
//! transaction, so it lands whole or not at all.
//!
//! Records are JSON-shaped values written as plain JS objects. Loading reads each table with
//! `getAllKeys` + `getAll` in one read-only transaction and hands the records to
//! [`decode_records`]: broken ones are reported, not fatal. Durability is IndexedDB's default
//! (survives a tab or browser crash; an OS crash may lose the last writes).

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::error::WebError;
use super::global;
use crate::core::store::{
    decode_records, meta, CorruptRecord, Key, Loaded, Op, StateStore, StoreError, Table,
};
use crate::core::{DecodeError, StoreId, Term};

/// Version of the IndexedDB layout (object stores). A database created by a newer layout
/// fails to open with `VersionError`, reported as `StoreError::TooNew`.
const IDB_VERSION: u32 = 1;

#[wasm_bindgen(inline_js = r#"
export function idbRequest(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
export function idbDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
  });
}
export function idbOpen(factory, name, version, stores) {
  return new Promise((resolve, reject) => {
    const r = factory.open(name, version);
    r.onupgradeneeded = () => {
      const db = r.result;
      for (const s of stores) if (!db.objectStoreNames.contains(s)) db.createObjectStore(s);
    };
    r.onsuccess = () => {
      const db = r.result;
      // Let a newer version of the page upgrade the database: step aside.
      db.onversionchange = () => db.close();
      resolve(db);
    };
    r.onerror = () => reject(r.error);
  });
}
export function idbDelete(factory, name) {
  return new Promise((resolve, reject) => {
    const r = factory.deleteDatabase(name);
    r.onsuccess = () => resolve();
    r.onerror = () => reject(r.error);
  });
}
"#)]
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
    #[wasm_bindgen(js_name = idbDelete)]
    fn idb_delete(factory: &web_sys::IdbFactory, name: &str) -> js_sys::Promise;
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

fn key_from_js(v: &JsValue) -> Option<Key> {
    if let Some(s) = v.as_string() {
        return Some(Key::Str(s));
    }
    let n = v.as_f64()?;
    (n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0).then_some(Key::Num(n as u64))
}

fn to_js(v: &serde_json::Value) -> Result<JsValue, StoreError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| StoreError::Io {
            message: format!("could not convert a record: {e}"),
        })
}

/// The name of the database of a store.
pub fn database_name(store: &StoreId) -> String {
    format!("filesync:{store}")
}

/// A store's state in IndexedDB.
#[derive(Debug, Clone)]
pub struct IdbStateStore {
    db: web_sys::IdbDatabase,
}

impl IdbStateStore {
    /// Opens (creating if needed) the database of `store`.
    pub async fn open(store: &StoreId) -> Result<IdbStateStore, StoreError> {
        let factory = global::indexed_db().map_err(|e| StoreError::Unavailable {
            message: e.to_string(),
        })?;
        let names: js_sys::Array = Table::ALL
            .iter()
            .map(|t| JsValue::from_str(t.name()))
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
        Ok(IdbStateStore { db })
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
        let names: js_sys::Array = tables.iter().map(|t| JsValue::from_str(t.name())).collect();
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| store_error("IDBDatabase.transaction", &e))
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
        let tx = self.transaction(&Table::LOADED, web_sys::IdbTransactionMode::Readonly)?;
        let mut requests = Vec::new();
        for t in Table::LOADED {
            let os = tx
                .object_store(t.name())
                .map_err(|e| store_error("IDBTransaction.objectStore", &e))?;
            let keys = os
                .get_all_keys()
                .map_err(|e| store_error("IDBObjectStore.getAllKeys", &e))?;
            let values = os
                .get_all()
                .map_err(|e| store_error("IDBObjectStore.getAll", &e))?;
            requests.push((t, idb_request(&keys), idb_request(&values)));
        }
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for (table, keys, values) in requests {
            let keys: js_sys::Array = JsFuture::from(keys)
                .await
                .map_err(|e| store_error("IDBObjectStore.getAllKeys", &e))?
                .unchecked_into();
            let values: js_sys::Array = JsFuture::from(values)
                .await
                .map_err(|e| store_error("IDBObjectStore.getAll", &e))?
                .unchecked_into();
            for (k, v) in keys.iter().zip(values.iter()) {
                let Some(key) = key_from_js(&k) else {
                    unreadable.push(CorruptRecord {
                        table,
                        key: Key::Str(format!("{k:?}")),
                        error: DecodeError::Malformed {
                            message: "key is neither text nor a whole number".into(),
                        },
                    });
                    continue;
                };
                match serde_wasm_bindgen::from_value::<serde_json::Value>(v) {
                    Ok(value) => records.push((table, key, value)),
                    Err(e) => unreadable.push(CorruptRecord {
                        table,
                        key,
                        error: DecodeError::Malformed {
                            message: e.to_string(),
                        },
                    }),
                }
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
        tables.sort();
        tables.dedup();
        if tables.is_empty() {
            return Ok(());
        }
        let tx = self.transaction(&tables, web_sys::IdbTransactionMode::Readwrite)?;
        let done = idb_done(&tx);
        let result = (|| {
            for op in ops {
                match op {
                    Op::Put { table, key, value } => {
                        let os = tx
                            .object_store(table.name())
                            .map_err(|e| store_error("IDBTransaction.objectStore", &e))?;
                        os.put_with_key(&to_js(value)?, &key_js(key))
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
            .map_err(|e| store_error("IDBObjectStore.get", &e))?
            .as_f64()
            .unwrap_or(0.0) as u64;
        let next = last + 1;
        os.put_with_key(&JsValue::from_f64(next as f64), &key)
            .map_err(|e| store_error("IDBObjectStore.put", &e))?;
        JsFuture::from(done)
            .await
            .map_err(|e| store_error("IDBTransaction", &e))?;
        Ok(Term(next))
    }
}
