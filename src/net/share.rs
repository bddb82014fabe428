//! Shares of an endpoint's capacity counted per holder (a client key, a
//! source address): a unit is taken only if every share it counts against
//! has room, and is given back when dropped. Entries exist only while
//! something is held, so the map is bounded by what is held.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) struct Shares<K: Hash + Eq + Copy> {
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Copy> Default for Shares<K> {
    fn default() -> Self {
        Shares {
            held: Arc::default(),
        }
    }
}

/// One unit of a share; given back when dropped.
#[derive(Debug)]
pub(crate) struct Unit<K: Hash + Eq + Copy> {
    held: Arc<Mutex<HashMap<K, usize>>>,
    of: K,
}

impl<K: Hash + Eq + Copy> Drop for Unit<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.of) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.of);
            }
        }
    }
}

impl<K: Hash + Eq + Copy> Shares<K> {
    /// One unit of each `(holder, cap)` share, or none if any holder already
    /// holds its cap.
    pub(crate) fn take<const N: usize>(&self, shares: [(K, usize); N]) -> Option<[Unit<K>; N]> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if shares
            .iter()
            .any(|(of, cap)| held.get(of).copied().unwrap_or(0) >= *cap)
        {
            return None;
        }
        Some(shares.map(|(of, _)| {
            *held.entry(of).or_insert(0) += 1;
            Unit {
                held: self.held.clone(),
                of,
            }
        }))
    }

    /// Units `of` holds now.
    #[cfg(test)]
    pub(crate) fn held(&self, of: &K) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(of).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_count_against_every_share_and_come_back() {
        let s: Shares<u8> = Shares::default();
        let a = s.take([(1, 2), (9, 3)]).expect("room");
        let b = s.take([(2, 2), (9, 3)]).expect("room");
        let c = s.take([(1, 2), (9, 3)]).expect("room");
        assert!(s.take([(3, 2), (9, 3)]).is_none(), "share 9 is full");
        assert_eq!(s.held(&1), 2);
        assert!(s.take([(3, 2)]).is_some(), "a share of its own");
        drop(a);
        assert_eq!(s.held(&9), 2);
        assert!(s.take([(1, 2), (9, 3)]).is_some());
        drop((b, c));
        assert_eq!(s.held(&9), 0);
        assert!(s.held.lock().unwrap().is_empty(), "no entry left behind");
    }
}
