//! The state-store conformance suite against IndexedDB, and IndexedDB's own cases (layout 1,
//! newer layouts, broken records, the files view). One body, run in a page (`browser_idb`), a
//! dedicated worker (`browser_idb_worker`) and a SharedWorker (`browser_idb_shared_worker`,
//! where the hub runs): nothing here reaches for `window`.

use super::conformance;

use filesync::core::store::{Key, MemoryStore, Op, StateStore, Table};
use filesync::core::{Mode, StoreId};
use filesync::web::idb::IdbStateStore;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::wasm_bindgen_test;

// Raw IndexedDB steps for the layout-1 test, as functions built at run time (no inline_js
// snippet: an extra snippet module made the test page's module loading stall now and then
// under wasm-bindgen-test-runner).
fn js_fn(args: &str, body: &str) -> js_sys::Function {
    js_sys::Function::new_with_args(args, body)
}

const MAKE_LAYOUT_1: &str = r#"  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () => { for (const s of stores) r.result.createObjectStore(s); };
    r.onsuccess = () => {
      const db = r.result;
      const tx = db.transaction(stores, 'readwrite');
      for (const [t, k, v] of records) tx.objectStore(t).put(v, k);
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onerror = () => reject(tx.error);
    };
    r.onerror = () => reject(r.error);
  });
"#;

const READ_RAW: &str = r#"  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => {
      const db = r.result;
      const g = db.transaction([store]).objectStore(store).get(key);
      g.onsuccess = () => { db.close(); resolve(g.result); };
      g.onerror = () => reject(g.error);
    };
    r.onerror = () => reject(r.error);
  });
"#;

fn make_layout_1(name: &str, stores: &js_sys::Array, records: &js_sys::Array) -> js_sys::Promise {
    js_fn("name, stores, records", MAKE_LAYOUT_1)
        .call3(&JsValue::NULL, &JsValue::from_str(name), stores, records)
        .unwrap()
        .unchecked_into()
}

fn read_raw(name: &str, store: &str, key: &JsValue) -> js_sys::Promise {
    js_fn("name, store, key", READ_RAW)
        .call3(
            &JsValue::NULL,
            &JsValue::from_str(name),
            &JsValue::from_str(store),
            key,
        )
        .unwrap()
        .unchecked_into()
}

/// Plants raw records as the store writes them (JSON text), or, with `layout_1`, as plain JS
/// values, the way layout 1 stored them (a database written before the upgrade, or a record
/// planted by hand).
struct Idb {
    layout_1: bool,
}

impl conformance::Harness for Idb {
    type Store = IdbStateStore;

    async fn open(&self, name: &str) -> IdbStateStore {
        IdbStateStore::open(&StoreId::new(name).unwrap())
            .await
            .expect("open IndexedDB")
    }

    async fn put_raw(
        &self,
        store: &IdbStateStore,
        table: Table,
        key: Key,
        value: serde_json::Value,
    ) {
        let js = if self.layout_1 {
            js_value(&value)
        } else {
            JsValue::from_str(&value.to_string())
        };
        store
            .put_raw(table, &key, &js)
            .await
            .expect("put a raw record");
    }
}

fn js_value(v: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e12) as u64)
}

#[wasm_bindgen_test]
async fn indexed_db_store_conforms() {
    conformance::run_all(&Idb { layout_1: false }, &unique("idb")).await;
}

#[wasm_bindgen_test]
async fn records_planted_as_js_objects_read_like_text() {
    conformance::run_all(&Idb { layout_1: true }, &unique("idb-objects")).await;
}

fn key_js(k: &Key) -> JsValue {
    match k {
        Key::Num(n) => JsValue::from_f64(*n as f64),
        Key::Str(s) => JsValue::from_str(s),
    }
}

#[wasm_bindgen_test]
async fn a_layout_1_database_is_converted_to_text_and_loads_the_same() {
    // The state an engine writes, encoded as layout 1 did: each record a plain JS value.
    let rec = MemoryStore::new();
    conformance::drive(&rec, Mode::Remote).await;
    let expected = rec.load().await.unwrap();
    let records: js_sys::Array = rec
        .records()
        .iter()
        .map(|(t, k, v)| {
            let value: serde_json::Value = serde_json::from_str(v).unwrap();
            let row: js_sys::Array = [JsValue::from_str(t.name()), key_js(k), js_value(&value)]
                .into_iter()
                .collect();
            JsValue::from(row)
        })
        .collect();
    let stores: js_sys::Array = Table::ALL
        .iter()
        .map(|t| JsValue::from_str(t.name()))
        .collect();
    let id = StoreId::new(unique("idb-layout-1")).unwrap();
    let name = filesync::web::idb::database_name(&id);
    wasm_bindgen_futures::JsFuture::from(make_layout_1(&name, &stores, &records))
        .await
        .unwrap();
    let raw = |table: Table, key: Key| {
        let name = name.clone();
        async move {
            wasm_bindgen_futures::JsFuture::from(read_raw(&name, table.name(), &key_js(&key)))
                .await
                .unwrap()
        }
    };
    assert!(raw(Table::Meta, Key::Str("clientId".into()))
        .await
        .is_string());
    assert!(raw(Table::Meta, Key::Str("cursor".into()))
        .await
        .as_f64()
        .is_some());

    let store = IdbStateStore::open(&id).await.expect("open and convert");
    let loaded = store.load().await.expect("load the converted records");
    assert!(loaded.corrupt.is_empty(), "{:?}", loaded.corrupt);
    assert_eq!(loaded, expected);
    store.close();
    // Every record is JSON text now.
    assert_eq!(
        raw(Table::Meta, Key::Str("clientId".into()))
            .await
            .as_string()
            .as_deref(),
        Some("\"client-1\"")
    );
    assert_eq!(
        raw(Table::Meta, Key::Str("cursor".into()))
            .await
            .as_string()
            .as_deref(),
        Some("2")
    );
    let (table, key, _) = rec
        .records()
        .into_iter()
        .find(|(t, _, _)| *t == Table::Rows)
        .unwrap();
    let text = raw(table, key).await.as_string().expect("a row as text");
    assert!(text.starts_with('{'), "{text}");
    // And it keeps loading the same, with terms still growing past the converted one.
    let store = IdbStateStore::open(&id).await.unwrap();
    assert_eq!(store.load().await.unwrap(), expected);
    let t = store.next_term().await.unwrap();
    assert!(t > expected.last_term);
}

#[wasm_bindgen_test]
async fn values_that_are_not_json_are_reported_not_fatal() {
    use filesync::core::store::StateStore;
    let store = IdbStateStore::open(&StoreId::new(unique("idb-odd")).unwrap())
        .await
        .unwrap();
    // A Blob is a valid IndexedDB value but no record of ours.
    let blob = web_sys::Blob::new().unwrap();
    store
        .put_raw(Table::Rows, &Key::Str("blob".into()), &blob.into())
        .await
        .unwrap();
    let loaded = store.load().await.expect("load despite the odd value");
    assert_eq!(loaded.corrupt.len(), 1);
    assert_eq!(loaded.corrupt[0].key, Key::Str("blob".into()));
}

#[wasm_bindgen_test]
async fn a_database_from_a_newer_layout_is_refused() {
    let name = unique("idb-newer");
    let id = StoreId::new(name.clone()).unwrap();
    // Simulate a newer filesync: bump the IndexedDB version of the database.
    let factory = filesync::web::global::indexed_db().unwrap();
    let req = factory
        .open_with_u32(&filesync::web::idb::database_name(&id), 5)
        .unwrap();
    let db = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::new(&mut |resolve, _| {
        let r = req.clone();
        let cb = wasm_bindgen::closure::Closure::once_into_js(move || {
            let _ = resolve.call1(&wasm_bindgen::JsValue::NULL, &r.result().unwrap());
        });
        req.set_onsuccess(Some(wasm_bindgen::JsCast::unchecked_ref(&cb)));
    }))
    .await
    .unwrap();
    wasm_bindgen::JsCast::unchecked_into::<web_sys::IdbDatabase>(db).close();
    let err = IdbStateStore::open(&id).await.expect_err("newer layout");
    assert_eq!(err.code(), "schema_too_new");
}

/// The files view as a tab reads it (`peek_view`: its own connection).
async fn view(id: &StoreId) -> Option<String> {
    let v = wasm_bindgen_futures::JsFuture::from(filesync::web::idb::peek_view(id))
        .await
        .unwrap();
    v.as_string()
}

#[wasm_bindgen_test]
async fn the_files_view_lasts_until_the_next_batch() {
    let id = StoreId::new(unique("idb-view")).unwrap();
    // No database yet: no view, and peeking creates none.
    assert_eq!(view(&id).await, None);
    let factory = filesync::web::global::indexed_db().unwrap();
    let databases: js_sys::Function =
        js_sys::Reflect::get(&factory, &JsValue::from_str("databases"))
            .unwrap()
            .unchecked_into();
    let names = databases.call0(&factory).unwrap();
    let names = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(names))
        .await
        .unwrap();
    let name = filesync::web::idb::database_name(&id);
    let listed = js_sys::Array::from(&names).iter().any(|d| {
        js_sys::Reflect::get(&d, &JsValue::from_str("name")).ok() == Some(JsValue::from_str(&name))
    });
    assert!(!listed, "peeking created {name}");
    let store = IdbStateStore::open(&id).await.unwrap();
    assert_eq!(view(&id).await, None);
    assert!(
        !store.has_view(),
        "a new database has no view to save around"
    );
    assert!(store.save_view(r#"{"snapshot":1}"#).await.unwrap());
    assert!(store.has_view());
    // A tab (its own connection) reads it.
    assert_eq!(view(&id).await.as_deref(), Some(r#"{"snapshot":1}"#));
    let batch = |n: u32| {
        vec![Op::Put {
            table: Table::Rows,
            key: Key::Str(format!("r{n}")),
            value: "{}".into(),
        }]
    };
    // The first batch after it deletes it, in the same transaction.
    store.write(&batch(1)).await.unwrap();
    assert_eq!(view(&id).await, None);
    assert!(
        !store.has_view(),
        "the batch deleted it: the hub saves a new one"
    );
    // Saved while a batch is in flight, a view could miss that batch: refused.
    let ops = batch(2);
    let mut write = std::pin::pin!(store.write(&ops));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let started = std::future::Future::poll(write.as_mut(), &mut cx);
    assert!(started.is_pending(), "the batch is in flight");
    assert!(!store.save_view(r#"{"snapshot":2}"#).await.unwrap());
    write.await.unwrap();
    assert_eq!(view(&id).await, None);
    // Saved again, it lasts until the next batch again.
    assert!(store.save_view(r#"{"snapshot":3}"#).await.unwrap());
    assert_eq!(view(&id).await.as_deref(), Some(r#"{"snapshot":3}"#));
    store.write(&batch(3)).await.unwrap();
    assert_eq!(view(&id).await, None);
    // A view found when the database opens counts (the next hub does not write it again),
    // and the next batch still deletes it.
    assert!(store.save_view(r#"{"snapshot":4}"#).await.unwrap());
    store.close();
    let store = IdbStateStore::open(&id).await.unwrap();
    assert!(store.has_view(), "the stored view is known at open");
    assert_eq!(view(&id).await.as_deref(), Some(r#"{"snapshot":4}"#));
    store.write(&batch(4)).await.unwrap();
    assert_eq!(view(&id).await, None);
    assert!(!store.has_view());
}
