//! Hash maps and sets for state whose order does not matter.
//!
//! Every `BTreeMap` key/value type compiles its own copy of the B-tree code (~10 KB of wasm
//! each); a hash map's per-type code is a fraction of that, so collections that are only
//! looked up, or iterated where order makes no difference, use these instead (the bundle is
//! downloaded by every visitor). The hasher has fixed keys, so iteration order depends only on
//! the operations made: a simulation seed replays the same way. Collections whose order is
//! part of the behaviour (files listed by id, events by number, the transfer queue) stay
//! B-trees.

/// Hash map with a fixed hasher (deterministic iteration order).
pub type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// Hash set with a fixed hasher (deterministic iteration order).
pub type FxSet<T> = rustc_hash::FxHashSet<T>;
