//! An in-memory [`Store`] for the simulator and tests.
//!
//! The data lives behind an `Arc`, so a simulated replica can "crash" (drop its
//! node) and restart on the same durable contents. A synced write (`write`,
//! `write_group`) is durable once it returns, exactly like the RocksDB store
//! with `sync = true`. An unsynced one (`write_group_unsynced`) is readable at
//! once but durable only from the next synced write or `sync` on; until then
//! an undo log keeps what it overwrote, and [`MemoryStore::reopen`] (the
//! process restarts) rolls every unsynced write back — the harshest outcome
//! of a crash (a lost machine; a killed process would keep them in the page
//! cache), and the one RocksDB's WAL allows: a lost write takes every later
//! one with it, never an earlier one.
//!
//! A crash can also be armed *inside* the writes ([`MemoryStore::arm_crash`]):
//! the k-th next write is the one the process dies in. Its batch is either
//! applied whole or not at all — what RocksDB makes of a write interrupted
//! before its WAL record was complete, since recovery drops a torn tail
//! record whose checksum fails (`tests/storage.rs` tears a real WAL to show
//! it) — and from then on every write fails until the store is reopened. Of the
//! synced writes, the one in flight is the only one a crash can lose.

use super::{Cf, StorageError, Store, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

type Tables = BTreeMap<Cf, BTreeMap<Vec<u8>, Vec<u8>>>;

/// What an unsynced write changed: a key and the value it had before.
type Undo = Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>;

#[derive(Clone, Default, Debug)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    /// The undo log of the writes not yet synced, oldest first.
    unsynced: Arc<Mutex<Undo>>,
    crash: Arc<Mutex<CrashState>>,
}

/// A crash armed inside the writes, and whether it has happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CrashState {
    /// Writes left before the one the process dies in (1: the next one).
    armed: Option<(u32, bool)>,
    /// The crash happened: `Some(whether its batch was applied)`.
    crashed: Option<bool>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
    /// Arms a crash in the `nth` next write (1 = the next one): that write's
    /// batch is applied whole if `applied`, dropped whole otherwise, and it
    /// and every later write fail until [`MemoryStore::reopen`].
    pub fn arm_crash(&self, nth: u32, applied: bool) {
        let mut c = self.crash.lock().unwrap();
        if c.crashed.is_none() {
            c.armed = Some((nth.max(1), applied));
        }
    }
    /// Forgets a crash armed but not yet reached.
    pub fn disarm(&self) {
        self.crash.lock().unwrap().armed = None;
    }
    /// `Some(applied)` once an armed crash happened (until reopened).
    pub fn crashed(&self) -> Option<bool> {
        self.crash.lock().unwrap().crashed
    }
    /// The process restarts: every unsynced write is lost, writes work
    /// again, nothing is armed.
    pub fn reopen(&self) {
        let mut t = self.tables.lock().unwrap();
        let mut undo = self.unsynced.lock().unwrap();
        for (cf, key, before) in undo.drain(..).rev() {
            let table = t.entry(cf).or_default();
            match before {
                Some(v) => table.insert(key, v),
                None => table.remove(&key),
            };
        }
        *self.crash.lock().unwrap() = CrashState::default();
    }

    /// The process was killed (`kill -9`) but the machine stayed up: the
    /// kernel keeps what was written, synced or not, so the unsynced writes
    /// become durable. Call before [`MemoryStore::reopen`].
    pub fn keep_unsynced(&self) {
        self.unsynced.lock().unwrap().clear();
    }

    /// Writes applied but not yet synced (keys changed).
    pub fn unsynced_keys(&self) -> usize {
        self.unsynced.lock().unwrap().len()
    }

    /// Counts a write against an armed crash: `Err` if the process is gone
    /// (before or in this write; the write is then dropped), else whether
    /// the process dies in this write after applying it.
    fn reach_write(&self) -> Result<bool, StorageError> {
        let mut c = self.crash.lock().unwrap();
        if c.crashed.is_some() {
            return Err(StorageError::Io(
                "simulated crash: the process is gone".into(),
            ));
        }
        let dies_here = match c.armed {
            Some((1, applied)) => {
                c.armed = None;
                c.crashed = Some(applied);
                Some(applied)
            }
            Some((k, applied)) => {
                c.armed = Some((k - 1, applied));
                None
            }
            None => None,
        };
        if dies_here == Some(false) {
            return Err(StorageError::Io(
                "simulated crash during a write (torn, dropped)".into(),
            ));
        }
        Ok(dies_here == Some(true))
    }

    /// Applies `batches` in order; what they overwrite goes to `undo`.
    fn apply(&self, batches: Vec<WriteBatch>, mut undo: Option<&mut Undo>) {
        let mut t = self.tables.lock().unwrap();
        for batch in batches {
            for (cf, from, to) in batch.delete_ranges {
                if from >= to {
                    continue;
                }
                let table = t.entry(cf).or_default();
                let doomed: Vec<Vec<u8>> = table
                    .range::<Vec<u8>, _>((Bound::Included(&from), Bound::Excluded(&to)))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    let before = table.remove(&k);
                    if let Some(undo) = undo.as_deref_mut() {
                        undo.push((cf, k, before));
                    }
                }
            }
            for w in batch.writes {
                let table = t.entry(w.cf).or_default();
                let before = match w.value {
                    Some(v) => table.insert(w.key.clone(), v),
                    None => table.remove(&w.key),
                };
                if let Some(undo) = undo.as_deref_mut() {
                    undo.push((w.cf, w.key, before));
                }
            }
        }
    }
    /// Total bytes of keys and values held (for memory-bound checks).
    pub fn bytes(&self) -> usize {
        let t = self.tables.lock().unwrap();
        t.values()
            .flat_map(|m| m.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
    /// Number of keys in one column family.
    pub fn keys(&self, cf: Cf) -> usize {
        self.tables.lock().unwrap().get(&cf).map_or(0, |m| m.len())
    }
}

impl Store for MemoryStore {
    fn write_group(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError> {
        let dies_after = self.reach_write()?;
        self.apply(batches, None);
        // The sync covers every write before it.
        self.unsynced.lock().unwrap().clear();
        if dies_after {
            return Err(StorageError::Io(
                "simulated crash during a write (applied, unacknowledged)".into(),
            ));
        }
        Ok(())
    }

    fn write_group_unsynced(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError> {
        let dies_after = self.reach_write()?;
        let mut undo = std::mem::take(&mut *self.unsynced.lock().unwrap());
        self.apply(batches, Some(&mut undo));
        *self.unsynced.lock().unwrap() = undo;
        if dies_after {
            return Err(StorageError::Io(
                "simulated crash during a write (applied, unacknowledged)".into(),
            ));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let dies_after = self.reach_write()?;
        self.unsynced.lock().unwrap().clear();
        if dies_after {
            return Err(StorageError::Io(
                "simulated crash during a sync (synced, unacknowledged)".into(),
            ));
        }
        Ok(())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tables
            .lock()
            .unwrap()
            .get(&cf)
            .and_then(|m| m.get(key).cloned()))
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let t = self.tables.lock().unwrap();
        let Some(table) = t.get(&cf) else {
            return Ok(Vec::new());
        };
        Ok(table
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        let t = self.tables.lock().unwrap();
        Ok(t.get(&cf)
            .and_then(|m| m.iter().next_back())
            .map(|(k, v)| (k.clone(), v.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_put_delete_range_scan_last() {
        let mut s = MemoryStore::new();
        let mut b = WriteBatch::default();
        for i in 0u8..10 {
            b.put(Cf::Blocks, vec![i], vec![i * 2]);
        }
        s.write(b).unwrap();
        let mut b = WriteBatch::default();
        b.delete_range(Cf::Blocks, vec![2], vec![5]);
        b.delete(Cf::Blocks, vec![9]);
        s.write(b).unwrap();
        let all = s.scan(Cf::Blocks, &[0], &[255], 100).unwrap();
        let keys: Vec<u8> = all.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, vec![0, 1, 5, 6, 7, 8]);
        assert_eq!(s.last(Cf::Blocks).unwrap(), Some((vec![8], vec![16])));
        assert_eq!(s.get(Cf::Blocks, &[3]).unwrap(), None);
        assert_eq!(s.scan(Cf::Blocks, &[0], &[255], 2).unwrap().len(), 2);
        // A clone shares the durable contents (crash and restart).
        let reopened = s.clone();
        assert_eq!(reopened.get(Cf::Blocks, &[1]).unwrap(), Some(vec![2]));
    }

    fn one(key: u8) -> WriteBatch {
        let mut b = WriteBatch::default();
        b.put(Cf::Meta, vec![key], vec![key]);
        b.put(Cf::State, vec![key], vec![key]);
        b
    }

    #[test]
    fn armed_crash_tears_the_nth_write_whole_and_stops_later_ones() {
        for applied in [false, true] {
            let mut s = MemoryStore::new();
            s.arm_crash(2, applied);
            s.write(one(1)).unwrap();
            assert!(s.crashed().is_none());
            assert!(s.write(one(2)).is_err());
            assert_eq!(s.crashed(), Some(applied));
            assert!(s.write(one(3)).is_err(), "writes after the crash fail");
            let expect = applied.then(|| vec![2]);
            assert_eq!(s.get(Cf::Meta, &[2]).unwrap(), expect);
            assert_eq!(s.get(Cf::State, &[2]).unwrap(), expect, "all or nothing");
            assert_eq!(s.get(Cf::Meta, &[3]).unwrap(), None);
            assert_eq!(s.get(Cf::Meta, &[1]).unwrap(), Some(vec![1]));
            s.reopen();
            s.write(one(4)).unwrap();
            assert_eq!(s.get(Cf::Meta, &[4]).unwrap(), Some(vec![4]));
        }
        let mut s = MemoryStore::new();
        s.arm_crash(1, true);
        s.disarm();
        s.write(one(5)).unwrap();
        assert!(s.crashed().is_none());
    }

    #[test]
    fn unsynced_writes_are_read_at_once_and_lost_by_a_restart_unless_synced_after() {
        let mut s = MemoryStore::new();
        s.write(one(1)).unwrap();
        // Overwrites, a delete and a range delete, all unsynced.
        let mut b = one(2);
        b.put(Cf::Meta, vec![1], vec![9]);
        b.delete(Cf::State, vec![1]);
        s.write_group_unsynced(vec![b]).unwrap();
        let mut b = WriteBatch::default();
        b.delete_range(Cf::Meta, vec![0], vec![2]);
        s.write_group_unsynced(vec![b]).unwrap();
        assert_eq!(s.get(Cf::Meta, &[2]).unwrap(), Some(vec![2]), "readable");
        assert_eq!(s.get(Cf::Meta, &[1]).unwrap(), None);
        assert!(s.unsynced_keys() > 0);
        s.reopen();
        assert_eq!(s.unsynced_keys(), 0);
        for cf in [Cf::Meta, Cf::State] {
            assert_eq!(s.get(cf, &[1]).unwrap(), Some(vec![1]), "{cf:?} as synced");
            assert_eq!(
                s.get(cf, &[2]).unwrap(),
                None,
                "{cf:?}: the unsynced put is gone"
            );
        }

        // A later synced write, or a sync, makes them durable.
        for via_sync in [false, true] {
            let mut s = MemoryStore::new();
            s.write_group_unsynced(vec![one(3)]).unwrap();
            if via_sync {
                s.sync().unwrap();
            } else {
                s.write(one(4)).unwrap();
            }
            s.reopen();
            assert_eq!(s.get(Cf::State, &[3]).unwrap(), Some(vec![3]));
        }

        // An armed crash counts unsynced writes and syncs too: a sync the
        // process dies in happened or did not.
        for synced in [false, true] {
            let mut s = MemoryStore::new();
            s.arm_crash(2, synced);
            s.write_group_unsynced(vec![one(5)]).unwrap();
            assert!(s.sync().is_err());
            assert!(s.write(one(6)).is_err());
            s.reopen();
            let expect = synced.then(|| vec![5]);
            assert_eq!(s.get(Cf::Meta, &[5]).unwrap(), expect);
        }
    }
}
