//! The RocksDB [`Store`] that real replicas run on.
//!
//! # Concept
//!
//! One RocksDB database per replica, with one column family per [`Cf`]
//! (`blocks`, `certs`, `state`, `consensus`, `meta`; DESIGN.md §5). A
//! [`Store::write`] turns the whole [`WriteBatch`] into **one** RocksDB write
//! batch spanning every column family it touches, and writes it with
//! `WriteOptions::set_sync(true)`.
//!
//! # Why
//!
//! * **Synced writes.** RocksDB's default (`sync = false`) survives a process
//!   crash but not power loss. PBFT's safety depends on a replica never
//!   forgetting a vote it has sent, so a `Persist` action must be on disk
//!   *before* the following `Send`; `write` therefore returns only after the
//!   WAL has been fsynced.
//! * **One batch per block.** A committed block, its certificate, the state it
//!   produced and the consensus bookkeeping are written in one atomic batch, so
//!   a crash at any instant leaves either all of them or none (no torn block),
//!   and the cost is one fsync per block rather than one per key (group
//!   commit). Range deletions (log truncation after a checkpoint) are placed
//!   first in the batch and the puts/deletes after them, in order; RocksDB
//!   applies the entries of one batch in sequence, so the semantics match
//!   [`MemoryStore`](super::memory::MemoryStore) exactly.
//! * **LOCK.** RocksDB holds an exclusive `LOCK` file for as long as the
//!   database is open. A second replica process (or a second handle in the same
//!   process) pointed at the same directory is refused with
//!   [`StorageError::Locked`], which the binaries map to a clear message and a
//!   dedicated exit code, instead of two writers corrupting one log.
//!
//! * **WAL recovery refuses damage.** RocksDB's default recovery mode
//!   (point-in-time) replays the WAL up to the first bad record and drops
//!   everything after it without an error: bytes flipped inside the log
//!   silently lost five later synced batches in `tests/storage.rs` — for a
//!   replica, votes it sent, after which it could vote twice. With
//!   `TolerateCorruptedTailRecords` a WAL that merely ends short (a write
//!   cut off by a crash: the in-flight batch is dropped whole) still opens,
//!   and any checksum failure refuses the store as corrupt. The price: a
//!   last record damaged in place (its tail zeroed, length kept), which a
//!   power loss on a file system without ordered data writes can leave, is
//!   refused too and needs an operator — a replica that stops is one of the
//!   f faults PBFT tolerates; one that forgets its votes is not.
//!
//! Damaged files are reported as [`StorageError::Corrupt`]; opening never
//! panics. A directory holding RocksDB data files but no `CURRENT` file is
//! refused rather than silently re-initialised (which would orphan the old
//! data).

use super::{Cf, StorageError, Store, WriteBatch};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, ErrorKind, Options, ReadOptions,
    WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// A [`Store`] backed by RocksDB, with one column family per [`Cf`].
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Database-wide and per-column-family options (kept deliberately plain).
fn options(create: bool) -> Options {
    let mut o = Options::default();
    o.create_if_missing(create);
    o.create_missing_column_families(create);
    o.set_paranoid_checks(true);
    // A short WAL tail is a crash; any other damage refuses the store.
    o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    o.set_compression_type(DBCompressionType::Lz4);
    // Bound the informational LOG files RocksDB keeps in the store directory.
    o.set_keep_log_file_num(4);
    o.set_write_buffer_size(WRITE_BUFFER_BYTES);
    o
}

/// Memtable size per column family. RocksDB's default (64 MiB) let a
/// replica's resident memory grow to ≈ 58 MB over a 60,000-transfer
/// benchmark; at 4 MiB it peaked at ≈ 35 MB, with the same CPU per
/// transfer (bench.sh, 2 runs each).
const WRITE_BUFFER_BYTES: usize = 4 << 20;

fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    Cf::ALL
        .iter()
        .map(|cf| ColumnFamilyDescriptor::new(cf.name(), options(false)))
        .collect()
}

/// True for RocksDB's "someone else holds the LOCK file" failures: another
/// process (`While lock file: ...`) or another handle in this process
/// (`lock hold by current process ...`).
fn is_lock_error(msg: &str) -> bool {
    msg.contains("While lock file") || msg.contains("lock hold by current process")
}

/// Maps a RocksDB error to a [`StorageError`], naming the store's path.
fn map_err(path: &Path, e: rocksdb::Error) -> StorageError {
    let kind = e.kind();
    let msg = e.into_string();
    let shown = path.display();
    if kind == ErrorKind::Corruption {
        return StorageError::Corrupt(format!("{shown}: {msg}"));
    }
    if kind == ErrorKind::IOError && is_lock_error(&msg) {
        return StorageError::Locked {
            path: shown.to_string(),
            detail: msg,
        };
    }
    // A file the store's metadata refers to has vanished: the store is damaged,
    // not merely unreachable.
    if matches!(kind, ErrorKind::IOError | ErrorKind::NotFound)
        && msg.contains("No such file")
        && (msg.contains("MANIFEST") || msg.contains(".sst") || msg.contains(".log"))
    {
        return StorageError::Corrupt(format!("{shown}: a store file is missing: {msg}"));
    }
    StorageError::Io(format!("{shown}: {msg}"))
}

/// Whether `dir` contains RocksDB data files (MANIFEST, SST or WAL files).
fn has_data_files(dir: &Path) -> Result<bool, StorageError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::Io(format!("{}: cannot list directory: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            StorageError::Io(format!("{}: cannot list directory: {e}", dir.display()))
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("MANIFEST-") || name.ends_with(".sst") || name.ends_with(".log") {
            return Ok(true);
        }
    }
    Ok(false)
}

impl RocksStore {
    /// Opens (creating if missing) a store at `path` with every column family
    /// in [`Cf::ALL`].
    ///
    /// Fails with [`StorageError::Locked`] if another process or handle has the
    /// store open, and [`StorageError::Corrupt`] if its files are damaged
    /// (including a directory with data files but no `CURRENT` file).
    pub fn open(path: &Path) -> Result<RocksStore, StorageError> {
        if path.is_dir() && !path.join("CURRENT").exists() && has_data_files(path)? {
            return Err(StorageError::Corrupt(format!(
                "{}: holds RocksDB data files but no CURRENT file; refusing to \
                 initialise a new store over them",
                path.display()
            )));
        }
        Self::open_with(path, true)
    }

    /// Opens an existing store for inspection (e.g. of a crashed replica).
    ///
    /// Nothing is created: if `path` is not a directory holding a store, this
    /// fails with an error naming the path. The store is opened read-write
    /// (so the `LOCK` is taken and a running replica's store is refused with
    /// [`StorageError::Locked`] rather than read while it changes), but the
    /// caller is expected only to read from it.
    pub fn open_existing(path: &Path) -> Result<RocksStore, StorageError> {
        if !path.is_dir() {
            return Err(StorageError::Io(format!(
                "{}: no store here (not a directory)",
                path.display()
            )));
        }
        if !path.join("CURRENT").exists() {
            return Err(if has_data_files(path)? {
                StorageError::Corrupt(format!(
                    "{}: holds RocksDB data files but no CURRENT file",
                    path.display()
                ))
            } else {
                StorageError::Io(format!(
                    "{}: no store here (no CURRENT file)",
                    path.display()
                ))
            });
        }
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<RocksStore, StorageError> {
        let db = DB::open_cf_descriptors(&options(create), path, descriptors())
            .map_err(|e| map_err(path, e))?;
        let store = RocksStore {
            db,
            path: path.to_path_buf(),
        };
        for cf in Cf::ALL {
            store.handle(cf)?;
        }
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn handle(&self, cf: Cf) -> Result<&ColumnFamily, StorageError> {
        self.db.cf_handle(cf.name()).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "{}: column family {} is missing",
                self.path.display(),
                cf.name()
            ))
        })
    }

    fn err(&self, e: rocksdb::Error) -> StorageError {
        map_err(&self.path, e)
    }
}

impl RocksStore {
    /// Every batch of a group in one atomic RocksDB write; `sync` waits for
    /// the WAL's fdatasync (which also covers every unsynced write before
    /// it: RocksDB syncs each live WAL file on a synced write).
    fn write_batches(&self, batches: Vec<WriteBatch>, sync: bool) -> Result<(), StorageError> {
        let mut wb = rocksdb::WriteBatch::default();
        for batch in &batches {
            for (cf, from, to) in &batch.delete_ranges {
                // RocksDB rejects an empty or inverted range; the memory store
                // treats it as a no-op, and so do we.
                if from >= to {
                    continue;
                }
                wb.delete_range_cf(self.handle(*cf)?, from, to);
            }
            for w in &batch.writes {
                let h = self.handle(w.cf)?;
                match &w.value {
                    Some(v) => wb.put_cf(h, &w.key, v),
                    None => wb.delete_cf(h, &w.key),
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(|e| self.err(e))
    }
}

impl Store for RocksStore {
    fn write_group(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError> {
        self.write_batches(batches, true)
    }

    fn write_group_unsynced(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError> {
        // Appended to the WAL (a write(2), no fdatasync): survives the
        // process, not the machine, until the next sync.
        self.write_batches(batches, false)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        // FlushWAL(sync = true) is SyncWAL: every live WAL file.
        self.db.flush_wal(true).map_err(|e| self.err(e))
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(self.handle(cf)?, key)
            .map_err(|e| self.err(e))
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        if from >= to || limit == 0 {
            return Ok(out);
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(to);
        let mut it = self.db.raw_iterator_cf_opt(self.handle(cf)?, ro);
        it.seek(from);
        while out.len() < limit {
            let Some((k, v)) = it.item() else { break };
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        it.status().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut it = self.db.raw_iterator_cf(self.handle(cf)?);
        it.seek_to_last();
        let item = it.item().map(|(k, v)| (k.to_vec(), v.to_vec()));
        it.status().map_err(|e| self.err(e))?;
        Ok(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::fs;

    fn random_key(rng: &mut ChaCha8Rng) -> Vec<u8> {
        let len = rng.gen_range(0..=3);
        (0..len).map(|_| rng.gen_range(0u8..6)).collect()
    }

    fn random_batch(rng: &mut ChaCha8Rng) -> WriteBatch {
        let mut b = WriteBatch::default();
        for _ in 0..rng.gen_range(0..3) {
            let cf = Cf::ALL[rng.gen_range(0..Cf::ALL.len())];
            b.delete_range(cf, random_key(rng), random_key(rng));
        }
        for _ in 0..rng.gen_range(0..12) {
            let cf = Cf::ALL[rng.gen_range(0..Cf::ALL.len())];
            let key = random_key(rng);
            if rng.gen_bool(0.7) {
                let len = rng.gen_range(0..16);
                let value: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                b.put(cf, key, value);
            } else {
                b.delete(cf, key);
            }
        }
        b
    }

    /// Every key is shorter than 4 bytes of values < 6, so this covers all.
    fn everything(s: &dyn Store, cf: Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        s.scan(cf, &[], &[0xff], usize::MAX).unwrap()
    }

    fn assert_same(rocks: &RocksStore, mem: &MemoryStore, rng: &mut ChaCha8Rng, step: usize) {
        for cf in Cf::ALL {
            assert_eq!(
                everything(rocks, cf),
                everything(mem, cf),
                "contents of {cf:?} after batch {step}"
            );
            assert_eq!(rocks.last(cf).unwrap(), mem.last(cf).unwrap(), "last");
            for _ in 0..4 {
                let (from, to) = (random_key(rng), random_key(rng));
                let limit = rng.gen_range(0..6);
                assert_eq!(
                    rocks.scan(cf, &from, &to, limit).unwrap(),
                    mem.scan(cf, &from, &to, limit).unwrap(),
                    "scan {cf:?} {from:?}..{to:?} limit {limit} after batch {step}"
                );
                let k = random_key(rng);
                assert_eq!(rocks.get(cf, &k).unwrap(), mem.get(cf, &k).unwrap());
            }
        }
    }

    #[test]
    fn equivalent_to_memory_store_on_random_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut rocks = RocksStore::open(dir.path()).unwrap();
        let mut mem = MemoryStore::new();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        for step in 0..200 {
            let batch = random_batch(&mut rng);
            rocks.write(batch.clone()).unwrap();
            mem.write(batch).unwrap();
            assert_same(&rocks, &mem, &mut rng, step);
            // Push some data into SST files too, so reads merge memtable,
            // range tombstones and on-disk tables.
            if step % 50 == 49 {
                rocks.db.flush().unwrap();
            }
        }
        // And the same after a reopen (WAL replay + SSTs).
        drop(rocks);
        let rocks = RocksStore::open(dir.path()).unwrap();
        assert_same(&rocks, &mem, &mut rng, 200);
    }

    #[test]
    fn delete_range_then_put_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RocksStore::open(dir.path()).unwrap();
        let mut b = WriteBatch::default();
        for i in 0u8..10 {
            b.put(Cf::Blocks, vec![i], vec![i * 2]);
        }
        s.write(b).unwrap();
        // Range deletes come first even if pushed after the writes.
        let mut b = WriteBatch::default();
        b.put(Cf::Blocks, vec![3], b"new".to_vec());
        b.delete_range(Cf::Blocks, vec![2], vec![5]);
        b.delete_range(Cf::Blocks, vec![7], vec![7]); // empty: no-op
        b.delete_range(Cf::Blocks, vec![9], vec![8]); // inverted: no-op
        b.delete(Cf::Blocks, vec![9]);
        s.write(b).unwrap();
        let keys: Vec<u8> = s
            .scan(Cf::Blocks, &[0], &[255], 100)
            .unwrap()
            .iter()
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(keys, vec![0, 1, 3, 5, 6, 7, 8]);
        assert_eq!(s.get(Cf::Blocks, &[3]).unwrap(), Some(b"new".to_vec()));
        assert_eq!(s.get(Cf::Blocks, &[2]).unwrap(), None);
        assert_eq!(s.last(Cf::Blocks).unwrap(), Some((vec![8], vec![16])));
        assert_eq!(s.last(Cf::Certs).unwrap(), None);
        assert_eq!(s.scan(Cf::Blocks, &[0], &[255], 2).unwrap().len(), 2);
        assert!(s.scan(Cf::Blocks, &[5], &[5], 10).unwrap().is_empty());
        assert!(s.scan(Cf::Blocks, &[0], &[255], 0).unwrap().is_empty());
        // Column families are independent.
        assert_eq!(s.get(Cf::State, &[0]).unwrap(), None);
    }

    #[test]
    fn persists_across_drop_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RocksStore::open(dir.path()).unwrap();
            let mut b = WriteBatch::default();
            b.put(Cf::Meta, b"genesis".to_vec(), b"abc".to_vec());
            b.put(Cf::Blocks, 1u64.to_be_bytes(), b"block1".to_vec());
            b.put(Cf::Blocks, 2u64.to_be_bytes(), b"block2".to_vec());
            s.write(b).unwrap();
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.get(Cf::Meta, b"genesis").unwrap(), Some(b"abc".to_vec()));
        assert_eq!(
            s.last(Cf::Blocks).unwrap(),
            Some((2u64.to_be_bytes().to_vec(), b"block2".to_vec()))
        );
        drop(s);
        let s = RocksStore::open_existing(dir.path()).unwrap();
        assert_eq!(s.get(Cf::Meta, b"genesis").unwrap(), Some(b"abc".to_vec()));
        assert_eq!(s.path(), dir.path());
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RocksStore::open(dir.path()).unwrap();
        for second in [
            RocksStore::open(dir.path()),
            RocksStore::open_existing(dir.path()),
        ] {
            match second {
                Err(e @ StorageError::Locked { .. }) => {
                    eprintln!("{e}");
                    let StorageError::Locked { path, detail } = e else {
                        unreachable!()
                    };
                    assert!(path.contains(&*dir.path().to_string_lossy()));
                    assert!(!detail.is_empty());
                }
                other => panic!("expected Locked, got {other:?}"),
            }
        }
    }

    #[test]
    fn open_existing_refuses_a_non_store() {
        let dir = tempfile::tempdir().unwrap();
        let err = RocksStore::open_existing(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
        assert!(err.to_string().contains(&*dir.path().to_string_lossy()));
        // A missing directory is refused and not created.
        let missing = dir.path().join("nope");
        let err = RocksStore::open_existing(&missing).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!missing.exists());
        // A plain file is not a store either.
        let file = dir.path().join("file");
        fs::write(&file, b"hello").unwrap();
        assert!(RocksStore::open_existing(&file).is_err());
        assert!(RocksStore::open(&file).is_err());
    }

    /// Writes some data, flushes it to SST files and closes the store.
    fn populated_store() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RocksStore::open(dir.path()).unwrap();
        for round in 0u64..4 {
            let mut b = WriteBatch::default();
            for i in 0u64..200 {
                let k = (round * 1000 + i).to_be_bytes();
                b.put(Cf::Blocks, k, vec![i as u8; 100]);
                b.put(Cf::State, k, vec![round as u8; 50]);
            }
            s.write(b).unwrap();
        }
        s.db.flush_cf(s.handle(Cf::Blocks).unwrap()).unwrap();
        s.db.flush_cf(s.handle(Cf::State).unwrap()).unwrap();
        drop(s);
        dir
    }

    fn files_matching(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| pred(&p.file_name().unwrap().to_string_lossy()))
            .collect();
        v.sort();
        v
    }

    /// Opens a damaged store (both ways) and reads everything; the first
    /// error must be Corrupt or Io with a message, and nothing may panic.
    fn expect_damage(dir: &Path) -> StorageError {
        let open = |existing: bool| {
            if existing {
                RocksStore::open_existing(dir)
            } else {
                RocksStore::open(dir)
            }
        };
        let mut first = None;
        for existing in [true, false] {
            let err = match open(existing) {
                Err(e) => e,
                Ok(s) => {
                    let mut err = None;
                    for cf in Cf::ALL {
                        if let Err(e) = s.scan(cf, &[], &[0xff; 9], usize::MAX) {
                            err = Some(e);
                            break;
                        }
                    }
                    match err {
                        Some(e) => e,
                        None => {
                            panic!("damaged store at {} opened and read cleanly", dir.display())
                        }
                    }
                }
            };
            assert!(
                matches!(err, StorageError::Corrupt(_) | StorageError::Io(_)),
                "{err:?}"
            );
            assert!(!err.to_string().is_empty());
            eprintln!("damaged store, open_existing={existing}: {err:?}");
            first.get_or_insert(err);
        }
        first.unwrap()
    }

    #[test]
    fn garbage_current_is_corrupt() {
        let dir = populated_store();
        fs::write(dir.path().join("CURRENT"), b"\x00\x01garbage").unwrap();
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains("CURRENT"), "{err}");
    }

    #[test]
    fn current_naming_a_missing_manifest_is_corrupt() {
        let dir = populated_store();
        fs::write(dir.path().join("CURRENT"), b"MANIFEST-999999\n").unwrap();
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn missing_current_with_data_is_corrupt_not_reinitialised() {
        let dir = populated_store();
        fs::remove_file(dir.path().join("CURRENT")).unwrap();
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
        assert!(!dir.path().join("CURRENT").exists());
    }

    #[test]
    fn garbled_manifest_is_an_error() {
        let dir = populated_store();
        for m in files_matching(dir.path(), |n| n.starts_with("MANIFEST-")) {
            let mut bytes = fs::read(&m).unwrap();
            for b in bytes.iter_mut().skip(7) {
                *b ^= 0x5a;
            }
            fs::write(&m, bytes).unwrap();
        }
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn truncated_sst_is_an_error() {
        let dir = populated_store();
        let ssts = files_matching(dir.path(), |n| n.ends_with(".sst"));
        assert!(!ssts.is_empty());
        for sst in ssts {
            let len = fs::metadata(&sst).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&sst)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn garbled_sst_data_is_an_error() {
        let dir = populated_store();
        let ssts = files_matching(dir.path(), |n| n.ends_with(".sst"));
        assert!(!ssts.is_empty());
        for sst in ssts {
            let mut bytes = fs::read(&sst).unwrap();
            // Garble the start (data blocks) and leave the footer intact, so
            // the damage is found by block checksums.
            let n = bytes.len() / 3;
            for b in bytes.iter_mut().take(n) {
                *b ^= 0xa5;
            }
            fs::write(&sst, bytes).unwrap();
        }
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn deleted_sst_is_an_error() {
        let dir = populated_store();
        for sst in files_matching(dir.path(), |n| n.ends_with(".sst")) {
            fs::remove_file(sst).unwrap();
        }
        let err = expect_damage(dir.path());
        assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    }
}
