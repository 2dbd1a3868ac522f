//! [`SortedMap`]: an ordered map kept in one `VecDeque`, sorted by key.
//!
//! Why not `BTreeMap`: every key/value type of a `BTreeMap` compiles to about 8 KB of
//! wasm (node splits, merges and their drop glue), against about 1 KB here, and the web
//! bundle has a size budget. The core's ordered maps are small, or filled in key order
//! (outbox orders, request ids), which a sorted deque serves as well: adding at the back
//! and removing at the front are O(1), a lookup is a binary search, and an insert or a
//! removal in the middle moves the shorter side.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::collections::vec_deque;
use std::fmt;

/// An ordered map: iteration is in key order, as with `BTreeMap`.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    items: VecDeque<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.items.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            items: VecDeque::new(),
        }
    }

    /// Where `key` is (`Ok`) or would go (`Err`).
    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // Keys mostly arrive in order: check the back before searching.
        match self.items.back() {
            None => return Err(0),
            Some((last, _)) if last.borrow() < key => return Err(self.items.len()),
            _ => {}
        }
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value at `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self.find(key).ok()?;
        Some(&self.items[at].1)
    }

    /// The value at `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self.find(key).ok()?;
        Some(&mut self.items[at].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.items[at].1, value)),
            Err(at) => {
                self.items.insert(at, (key, value));
                None
            }
        }
    }

    /// The value at `key`, made by `make` first when there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let at = match self.find(&key) {
            Ok(at) => at,
            Err(at) => {
                self.items.insert(at, (key, make()));
                at
            }
        };
        &mut self.items[at].1
    }

    /// Takes the value at `key` out.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = self.find(key).ok()?;
        self.items.remove(at).map(|(_, v)| v)
    }

    /// The entry with the greatest key.
    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.items.back().map(|(k, v)| (k, v))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.items.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    /// The values, in key order, to change.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> {
        self.items.iter_mut().map(|(_, v)| v)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    /// As with `BTreeMap`, a key given twice keeps its last value.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut items: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: among equal keys the last one given stays last, and is kept.
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: VecDeque<(K, V)> = VecDeque::with_capacity(items.len());
        for item in items {
            match kept.back_mut() {
                Some(last) if last.0 == item.0 => *last = item,
                _ => kept.push_back(item),
            }
        }
        Self { items: kept }
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = vec_deque::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use meridian_test_macros::meridian_test;

    use super::SortedMap;

    /// The outbox's pattern: keys added in order, removed mostly from the front.
    #[meridian_test]
    fn keeps_order_when_filled_in_order_and_drained_from_the_front() {
        let mut map = SortedMap::new();
        for k in 0..10u64 {
            assert_eq!(map.insert(k, k * 10), None);
        }
        assert_eq!(map.remove(&0), Some(0));
        assert_eq!(map.remove(&5), Some(50));
        assert_eq!(map.remove(&5), None);
        assert_eq!(map.insert(3, 33), Some(30));
        assert_eq!(*map.get_or_insert_with(20, || 200), 200);
        assert_eq!(*map.get_or_insert_with(20, || 0), 200);
        assert_eq!(
            map.keys().copied().collect::<Vec<_>>(),
            [1, 2, 3, 4, 6, 7, 8, 9, 20]
        );
        assert_eq!(map.last_key_value(), Some((&20, &200)));
        assert_eq!(map.get(&3), Some(&33));
        assert!(!map.contains_key(&0));
    }
}

// proptest does not build for wasm32-unknown-unknown: the property tests run natively.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::SortedMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
        GetOrInsert(u8, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            any::<u8>().prop_map(Op::Remove),
            (any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        ]
    }

    proptest! {
        /// Any sequence of operations leaves the map as a `BTreeMap` given the same
        /// sequence, with the same answers on the way.
        #[test]
        fn behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ours = SortedMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(ours.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(ours.remove(&k), model.remove(&k)),
                    Op::GetOrInsert(k, v) => {
                        let got = *ours.get_or_insert_with(k, || v);
                        prop_assert_eq!(got, *model.entry(k).or_insert(v));
                    }
                }
                prop_assert_eq!(ours.len(), model.len());
            }
            prop_assert!(ours.iter().eq(model.iter()));
            prop_assert_eq!(ours.last_key_value(), model.last_key_value());
            for k in 0..=u8::MAX {
                prop_assert_eq!(ours.get(&k), model.get(&k));
                prop_assert_eq!(ours.contains_key(&k), model.contains_key(&k));
            }
        }

        /// Collecting keeps each key's last value, as `BTreeMap` does.
        #[test]
        fn collects_as_a_btreemap(pairs in proptest::collection::vec((any::<u8>(), any::<u32>()), 0..100)) {
            let ours: SortedMap<u8, u32> = pairs.iter().copied().collect();
            let model: BTreeMap<u8, u32> = pairs.iter().copied().collect();
            prop_assert!(ours.into_iter().eq(model));
        }
    }
}
