//! Durable storage (L4): a small key-value interface with column families and
//! atomic, synced write batches, implemented by RocksDB ([`rocks`]) for real
//! replicas and by an in-memory map ([`memory`]) for the simulator and tests.
//!
//! What keys mean is decided above this layer (`node::persist`, read and
//! written through `node::store::ReplicaStore`); a store only
//! promises that one [`WriteBatch`] becomes durable atomically before `write`
//! returns. That is the property the consensus core relies on: a `Persist`
//! action is durable before any later `Send`.

pub mod memory;
#[cfg(feature = "rocksdb")]
pub mod rocks;

/// Column families (DESIGN.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Committed blocks by height.
    Blocks,
    /// Commit certificates by height.
    Certs,
    /// Application state (bank accounts).
    State,
    /// View, own votes, prepared certificates, stable checkpoint.
    Consensus,
    /// Genesis hash, schema version.
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::Blocks, Cf::Certs, Cf::State, Cf::Consensus, Cf::Meta];
    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks",
            Cf::Certs => "certs",
            Cf::State => "state",
            Cf::Consensus => "consensus",
            Cf::Meta => "meta",
        }
    }
}

/// One write in a batch: `None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub cf: Cf,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Writes applied atomically, in order, by one [`Store::write`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub writes: Vec<Write>,
    /// Delete every key in `[from, to)` of a column family, before `writes`.
    pub delete_ranges: Vec<(Cf, Vec<u8>, Vec<u8>)>,
}

impl WriteBatch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push(Write {
            cf,
            key: key.into(),
            value: Some(value.into()),
        });
    }
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.writes.push(Write {
            cf,
            key: key.into(),
            value: None,
        });
    }
    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.delete_ranges.push((cf, from.into(), to.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.delete_ranges.is_empty()
    }
    pub fn len(&self) -> usize {
        self.writes.len() + self.delete_ranges.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Another process holds the store's lock.
    #[error("store at {path} is locked by another process: {detail}")]
    Locked { path: String, detail: String },
    /// The store's files or records are damaged.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store belongs to another network.
    #[error("store belongs to network {found}, but this genesis is network {expected}")]
    GenesisMismatch { expected: String, found: String },
    /// The store was written by an incompatible version of this program.
    #[error("store schema version {found} is not supported (expected {expected})")]
    Schema { expected: u32, found: u32 },
    /// The store was written by another replica of this network (a swapped
    /// data directory or volume): running on it would vote with that
    /// replica's history.
    #[error("store belongs to {found}, but this is {expected}; each replica needs its own data directory")]
    OtherReplica { expected: String, found: String },
    /// An I/O or engine failure.
    #[error("storage I/O error: {0}")]
    Io(String),
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A durable key-value store with column families.
pub trait Store: Send {
    /// Applies `batch` atomically and returns once it is durable.
    fn write(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        self.write_group(vec![batch])
    }
    /// Applies `batches` one after the other (each one's ranges, then its
    /// writes), all of them atomically, and returns once they are durable:
    /// one sync for many (group commit).
    fn write_group(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError>;
    /// Applies `batches` atomically, as [`Store::write_group`] does, but
    /// returns without waiting for them to be durable: they are read at
    /// once, and become durable with the next synced write or
    /// [`Store::sync`], which make everything written before them durable.
    /// A crash may lose them, and a lost write takes every later unsynced
    /// one with it — never an earlier write.
    fn write_group_unsynced(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every `(key, value)` with `from <= key < to`, in key order, at most `limit`.
    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError>;
    /// The greatest key in a column family with its value.
    fn last(&self, cf: Cf) -> Result<Option<KeyValue>, StorageError>;
}
