//! The runtime: the one driver of the engine in the browser.
//!
//! * [`protocol`]: messages between the hub and the tabs, and the JSON shapes apps see.
//! * [`remote`]: the client side of the server protocol (URLs, bodies, answers).
//! * [`synced`]: when everything made in this browser is on the server (`whenSynced()`).
//! * [`reading`]: a read of bytes not here waits for their download or fails at once.
//! * `hub` (wasm32): owns the engine, IndexedDB and the byte store; runs in a SharedWorker
//!   (or in the leader tab where SharedWorker does not exist) and serves every tab.
//! * `tab` (wasm32): a tab's side: commits, a replica of the files and status, callbacks,
//!   leader election, local bytes.

pub mod multipart;
pub mod protocol;
pub mod reading;
pub mod remote;
pub mod resume;
pub mod synced;

#[cfg(target_arch = "wasm32")]
pub mod hub;

#[cfg(target_arch = "wasm32")]
mod sync;

#[cfg(target_arch = "wasm32")]
pub mod tab;

#[cfg(target_arch = "wasm32")]
mod transfer;
