//! Browser smoke tests: the wasm build loads in headless Chromium and sees the web APIs the
//! engine needs. Run by `scripts/test.sh` (every `tests/browser_*.rs` is a browser suite).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn version_is_the_crate_version() {
    assert_eq!(filesync::api::version(), env!("CARGO_PKG_VERSION"));
}

#[wasm_bindgen_test]
fn indexed_db_is_reachable_through_the_global_scope() {
    // Through the global scope, not `window()`, so the same path works in workers.
    let idb = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
        .expect("reading globalThis.indexedDB threw");
    assert!(
        idb.is_instance_of::<web_sys::IdbFactory>(),
        "globalThis.indexedDB is not an IDBFactory: {idb:?}"
    );
}

#[wasm_bindgen_test]
#[allow(unexpected_cfgs, clippy::assertions_on_constants)]
fn web_sys_unstable_apis_cfg_is_set() {
    // Set for the wasm target in .cargo/config.toml; a RUSTFLAGS variable would replace it and
    // the Web Locks bindings of web-sys would disappear.
    assert!(cfg!(web_sys_unstable_apis));
}
