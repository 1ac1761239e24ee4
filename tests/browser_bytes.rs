//! The byte store conformance suite (`tests/common/byte_store_conformance.rs`) in a page:
//! OPFS with `move()`, OPFS written in place (as without `move()`), and the IndexedDB fallback.
//! The same suite runs in a dedicated worker (`tests/browser_bytes_worker.rs`).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/byte_store_conformance.rs"]
mod conformance;
