//! filesync: local-first file sync for web apps that run in many tabs.
//!
//! * [`core`] is the sans-IO engine: pure Rust, no clock, no I/O, tested natively.
//! * `web` (wasm32 only) holds the browser adapters: IndexedDB, OPFS, Web Locks, workers.
//! * `api` (wasm32 only) is the `#[wasm_bindgen]` surface used by the npm package.

pub mod core;
pub mod runtime;

#[cfg(target_arch = "wasm32")]
pub mod web;

#[cfg(target_arch = "wasm32")]
pub mod api;
