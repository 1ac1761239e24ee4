//! Browser adapters: each wraps one browser API, classifies its failures into typed errors and
//! works in any global scope (window, dedicated worker, SharedWorker). They hold no sync logic:
//! the engine in `crate::core` decides, the runtime drives, these only perform.

pub mod bytes;
pub mod error;
pub mod global;
pub mod hash;
pub mod http;
pub mod idb;
pub mod locks;
