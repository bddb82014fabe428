//! Per-key rate limits for work a peer or a client can make a replica do on
//! demand (serving a fetch, signing a reply afresh): a leaky bucket per key,
//! a burst, then one per interval. The map is bounded in entries: keys whose
//! bucket has drained are forgotten once it holds `keys_max`, and if all are
//! still busy the new key is refused (a flood of keys cannot grow memory).

use crate::types::Time;
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Pacer<K: Ord + Copy> {
    /// Per key, when its allowance is next whole: each use moves it
    /// `interval_ms` forward; a use is allowed while it is at most
    /// `(burst - 1) * interval_ms` ahead of now.
    due: BTreeMap<K, Time>,
    burst: u64,
    interval_ms: u64,
    keys_max: usize,
    refused: u64,
}

impl<K: Ord + Copy> Pacer<K> {
    pub fn new(burst: u64, interval_ms: u64, keys_max: usize) -> Pacer<K> {
        debug_assert!(burst >= 1 && keys_max >= 1);
        Pacer {
            due: BTreeMap::new(),
            burst,
            interval_ms,
            keys_max,
            refused: 0,
        }
    }

    /// Whether `key` may have one more use at `now` (and counts it).
    pub fn allow(&mut self, key: K, now: Time) -> bool {
        let slack = now.plus_millis((self.burst - 1) * self.interval_ms);
        if !self.due.contains_key(&key) && self.due.len() >= self.keys_max {
            self.due.retain(|_, due| *due > now);
            if self.due.len() >= self.keys_max {
                self.refused += 1;
                return false;
            }
        }
        let due = self.due.get(&key).copied().unwrap_or(now).max(now);
        if due > slack {
            self.refused += 1;
            return false;
        }
        self.due.insert(key, due.plus_millis(self.interval_ms));
        true
    }

    /// Uses refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_and_keys_bounded() {
        let mut p = Pacer::new(3, 100, 2);
        let t = Time::from_millis(1_000);
        assert!((0..3).all(|_| p.allow(1u32, t)), "the burst");
        assert!(!p.allow(1, t));
        assert!(!p.allow(1, t.plus_millis(99)));
        assert!(p.allow(1, t.plus_millis(100)), "one more per interval");
        assert!(p.allow(2, t), "another key has its own bucket");
        assert!(!p.allow(3, t), "a third key while both are busy");
        assert_eq!(p.refused(), 3);
        // Key 2 drains by t + 100: its place goes to key 3.
        assert!(p.allow(3, t.plus_millis(150)));
        assert_eq!(p.due.len(), 2);
    }
}
