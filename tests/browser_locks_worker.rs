//! The Web Locks suite (`tests/common/locks_suite.rs`) in a dedicated worker.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[path = "common/locks_suite.rs"]
mod suite;
