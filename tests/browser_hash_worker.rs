//! `web::hash` in a dedicated worker: the bodies of `tests/browser_hash.rs`
//! (`tests/common/hash_cases.rs`), where `window` does not exist.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[path = "common/hash_cases.rs"]
mod hash_cases;
