//! The state-store conformance suite against the in-memory store (natively).
#![cfg(not(target_arch = "wasm32"))]

#[path = "common/state_store_conformance.rs"]
mod conformance;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use filesync::core::store::{Key, MemoryStore, Table};

/// Runs a future whose awaits complete at once (the memory store never waits).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Default)]
struct Memory {
    stores: RefCell<BTreeMap<String, MemoryStore>>,
}

impl conformance::Harness for Memory {
    type Store = MemoryStore;

    async fn open(&self, name: &str) -> MemoryStore {
        self.stores
            .borrow_mut()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    async fn put_raw(&self, store: &MemoryStore, table: Table, key: Key, value: serde_json::Value) {
        store.put_raw(table, key, value);
    }
}

#[test]
fn memory_store_conforms() {
    block_on(conformance::run_all(&Memory::default(), "memory"));
}
