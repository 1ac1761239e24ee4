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

/// Sorts `v` by `cmp`, stably, through one shared copy of the standard library's sort.
///
/// `slice::sort_by` compiles its whole algorithm (~4 KB of wasm) once per element type and
/// comparison; the engine sorts a dozen kinds of things. This sorts a permutation of indices
/// (`u32`s, always the same type) with the comparison behind a `dyn`, then moves the elements
/// into place along the permutation's cycles: the only per-type code left is that last loop.
/// The indirect call per comparison and the scattered reads cost time (sorting 100,000 hashes
/// this way doubled a cold start's sort), so the hot sorts keep the standard one: hashes,
/// sorted with `sort_unstable` everywhere (one instance for all of them). This is for the
/// rest: short lists, once per load or per step.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut order = {
        let v = &*v;
        sorted_order(v.len(), &mut |a, b| cmp(&v[a], &v[b]))
    };
    // `order[i]` is where the element that belongs at `i` is now; follow each cycle once,
    // marking done positions with their own index.
    for start in 0..v.len() {
        let mut at = start;
        loop {
            let from = order[at] as usize;
            order[at] = at as u32;
            if from == start || from == at {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

/// Sorts `v` by its order, stably (see [`sort_by`]).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// The stable order of `len` items compared by `cmp` (by index): the one instance of the
/// standard sort.
#[inline(never)]
fn sorted_order(len: usize, cmp: &mut dyn FnMut(usize, usize) -> std::cmp::Ordering) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    order.sort_by(|&a, &b| cmp(a as usize, b as usize));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every permutation of a few elements (with equal keys) sorts like the standard stable
    /// sort.
    #[test]
    fn sorts_like_the_standard_stable_sort() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let v: Vec<(u8, usize)> = (0..len)
                .map(|i| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ((rng % 7) as u8, i)
                })
                .collect();
            let mut ours = v.clone();
            sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
            let mut std = v;
            std.sort_by_key(|a| a.0);
            assert_eq!(ours, std, "length {len}");
        }
        let mut words = vec!["b", "a", "c", "a"];
        sort(&mut words);
        assert_eq!(words, ["a", "a", "b", "c"]);
    }
}
