//! `web::hash` in a page: known answers, the streaming path against WebCrypto around chunk
//! boundaries, and a 64 MiB blob hashed through its stream. The same bodies run in a dedicated
//! worker (`tests/browser_hash_worker.rs`).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::wasm_bindgen_test_configure;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/hash_cases.rs"]
mod hash_cases;
