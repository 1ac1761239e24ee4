//! filesync: local-first file sync for web apps that run in many tabs.
//!
//! * [`core`] is the sans-IO engine: pure Rust, no clock, no I/O, tested natively.
//! * `api` (wasm32 only) is the `#[wasm_bindgen]` surface used by the npm package.

pub mod core;

#[cfg(target_arch = "wasm32")]
pub mod api;
