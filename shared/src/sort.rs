//! Stable sorting for cold paths (parsing, canonical forms, plans), through one shared copy of
//! the standard library's sort.
//!
//! Every call of the generic `sort_by` with its own element type or closure compiles its own
//! copy of the sort, about 5 KB of WebAssembly each at kappa-core's opt-level; a dozen of them
//! were 4% of the module. Here only a sort of indices, with a comparison behind a pointer, is
//! compiled, once; what stays generic is a short permutation. It also suits large elements
//! (a group run's lanes): each is moved along its cycle a few times, where the standard sort
//! moves elements about and buffers half of them. The hot paths over small elements (the fold,
//! the t-digest, the terms buckets' order) keep the inlined sort.

use std::cmp::Ordering;

/// Sorts `items` by `cmp`, keeping equal items in their order (like `slice::sort_by`).
pub fn stable_by<T>(items: &mut [T], cmp: impl Fn(&T, &T) -> Ordering) {
    let mut order = sorted_indices(items.len(), &|a, b| cmp(&items[a], &items[b]));
    // Position `i` takes the item at `order[i]`: follow each cycle of the permutation once,
    // marking a visited position by pointing it at itself.
    for start in 0..order.len() {
        let mut current = start;
        loop {
            let next = order[current];
            order[current] = current;
            if next == start {
                break;
            }
            items.swap(current, next);
            current = next;
        }
    }
}

/// Sorts `items` in their natural order, keeping equal items in their order.
pub fn stable<T: Ord>(items: &mut [T]) {
    stable_by(items, T::cmp);
}

/// `0..len` sorted by `cmp`; not generic, so compiled once.
#[inline(never)]
fn sorted_indices(len: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same order as the standard library's stable sort, ties included.
        #[test]
        fn sorts_like_the_standard_stable_sort(items in proptest::collection::vec((0u8..6, any::<u16>()), 0..80)) {
            let mut expected = items.clone();
            expected.sort_by_key(|a| a.0);
            let mut sorted = items;
            stable_by(&mut sorted, |a, b| a.0.cmp(&b.0));
            prop_assert_eq!(sorted, expected);
        }
    }

    #[test]
    fn natural_order() {
        let mut words = vec!["pear", "apple", "fig", "apple"];
        stable(&mut words);
        assert_eq!(words, ["apple", "apple", "fig", "pear"]);
    }
}
