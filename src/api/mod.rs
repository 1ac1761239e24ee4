//! The `#[wasm_bindgen]` surface of the npm package.

use wasm_bindgen::prelude::*;

/// The crate version, for the smoke test and the page footer.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
