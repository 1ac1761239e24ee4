//! The byte store conformance suite in a SharedWorker, where `window` does not exist:
//! OPFS (`createWritable`, `move`) and IndexedDB reached through the worker's global scope.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_shared_worker);

#[path = "common/byte_store_conformance.rs"]
mod conformance;
