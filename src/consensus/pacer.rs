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

    /// Whether `key` has a use left at `now`, without taking it (for work
    /// charged afterwards, once it is known to have been wasted).
    pub fn has_room(&self, key: K, now: Time) -> bool {
        let slack = now.plus_millis((self.burst - 1) * self.interval_ms);
        self.due.get(&key).is_none_or(|due| *due <= slack)
    }

    /// Takes one use of `key` whether or not it had one left: a key that
    /// keeps wasting runs into debt, up to one more burst, and waits longer.
    pub fn charge(&mut self, key: K, now: Time) {
        if !self.due.contains_key(&key) && self.due.len() >= self.keys_max {
            self.due.retain(|_, due| *due > now);
            if self.due.len() >= self.keys_max {
                return;
            }
        }
        let limit = now.plus_millis(2 * self.burst * self.interval_ms);
        let due = self.due.get(&key).copied().unwrap_or(now).max(now);
        self.due
            .insert(key, due.plus_millis(self.interval_ms).min(limit));
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

    #[test]
    fn charged_work_runs_into_bounded_debt() {
        let mut p = Pacer::new(2, 10, 4);
        let t = Time::from_millis(1_000);
        assert!(p.has_room(7u32, t));
        p.charge(7, t);
        p.charge(7, t);
        assert!(!p.has_room(7, t), "the burst is spent");
        for _ in 0..100 {
            p.charge(7, t);
        }
        // Debt is capped at one more burst: room again after 2 * 2 * 10 ms.
        assert!(!p.has_room(7, t.plus_millis(29)));
        assert!(p.has_room(7, t.plus_millis(30)));
        assert_eq!(p.refused(), 0, "charging is not refusing");
    }
}
