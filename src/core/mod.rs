//! The sans-IO sync engine: every decision of filesync, and no I/O.
//!
//! Nothing here reads a clock, touches storage or the network, or awaits. A driver (the browser
//! runtime, or the deterministic simulation in `tests/`) feeds [`Engine`] inputs stamped with
//! the current time, performs the [`Command`]s it outputs, hands [`Event`]s to the app, and
//! calls back when [`Engine::poll_timeout`] says a timer is due.
//!
//! # The contract
//!
//! * `handle(now, input)` and `handle_timeout(now)` change state and queue outputs.
//! * After each of them, drain `poll_output()` until it returns `None`, performing commands in
//!   order. Results come back later as inputs (`Persisted`, `Pulled`, `TransferDone`...).
//! * Then sleep until `poll_timeout()` (or the next input) and call `handle_timeout`.
//! * Inputs from a leader carry its term; the engine refuses older terms with
//!   [`EngineError::StaleTerm`], and results of tasks it no longer knows with
//!   [`EngineError::UnknownTask`]. A refused input changes nothing.
//!
//! ```
//! use filesync::core::{Config, ClientId, Engine, Millis, Mode, Output, Snapshot, StoreId};
//!
//! let cfg = Config::new(StoreId::new("store").unwrap(), ClientId::new("browser-1").unwrap(), Mode::LocalOnly);
//! let mut engine = Engine::new(cfg, Snapshot::default(), Millis(0));
//! let mut now = Millis(0);
//! loop {
//!     while let Some(out) = engine.poll_output() {
//!         match out {
//!             Output::Command(cmd) => { /* perform it; feed its result back with handle() */ }
//!             Output::Event(ev) => { /* call the app's callbacks */ }
//!         }
//!     }
//!     match engine.poll_timeout() {
//!         Some(at) => { now = at; engine.handle_timeout(now); }
//!         None => break, // idle until the next input
//!     }
//! }
//! ```

pub mod collections;
pub mod engine;
pub mod error;
pub mod event;
pub mod history;
pub mod ids;
pub mod local;
pub mod progress;
pub mod retry;
pub mod status;
pub mod store;
pub mod table;
pub mod timer;

pub use engine::{
    Command, Config, Engine, Event, FileView, Input, Mode, OpId, Output, PersistBatch, RequestId,
    Snapshot, StorageUse, TaskId, TransferOrder,
};
pub use error::{DecodeError, EngineError, Failure};
pub use event::{
    ClientEvent, ConfirmedEvent, FileCreated, FileDeleted, FileEvent, FileInfo, FileUpdated,
    MetadataPatch,
};
pub use ids::{ClientId, ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId, Term};
pub use local::{Downloads, LocalRow, TransferKind, TransferStatus};
pub use retry::RetryPolicy;
pub use status::{DisplayState, SyncStatus};
pub use table::FileRow;
