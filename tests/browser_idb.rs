//! The state-store conformance suite against IndexedDB, in headless Chromium.
#![cfg(target_arch = "wasm32")]

#[path = "common/state_store_conformance.rs"]
mod conformance;

use filesync::core::store::{Key, Table};
use filesync::core::StoreId;
use filesync::web::idb::IdbStateStore;
use serde::Serialize;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

struct Idb;

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
        let js = value
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .unwrap();
        store
            .put_raw(table, &key, &js)
            .await
            .expect("put a raw record");
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e12) as u64)
}

#[wasm_bindgen_test]
async fn indexed_db_store_conforms() {
    conformance::run_all(&Idb, &unique("idb")).await;
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
    let factory = web_sys::window().unwrap().indexed_db().unwrap().unwrap();
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
