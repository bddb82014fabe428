//! An in-memory [`Store`] for the simulator and tests.
//!
//! The data lives behind an `Arc`, so a simulated replica can "crash" (drop its
//! node) and restart on the same durable contents. Every `write` counts as
//! synced: it is durable once it returns, exactly like the RocksDB store with
//! `sync = true`.

use super::{Cf, StorageError, Store, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

type Tables = BTreeMap<Cf, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Clone, Default, Debug)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
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
    fn write(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut t = self.tables.lock().unwrap();
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
                table.remove(&k);
            }
        }
        for w in batch.writes {
            let table = t.entry(w.cf).or_default();
            match w.value {
                Some(v) => {
                    table.insert(w.key, v);
                }
                None => {
                    table.remove(&w.key);
                }
            }
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
}
