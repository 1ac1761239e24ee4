//! The IndexedDB suite (`tests/common/idb_suite.rs`) in a dedicated worker.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[path = "common/state_store_conformance.rs"]
mod conformance;

#[path = "common/idb_suite.rs"]
mod suite;
