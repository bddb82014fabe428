//! `pbft-replica inspect`: read a stopped replica's store (CometBFT's
//! `inspect`). The store is opened without creating anything, its genesis
//! record is checked before anything else is read, and nothing is written.

use crate::crypto::Digest;
use crate::genesis::Genesis;
use crate::node::config::{self, ConfigError};
use crate::node::store::ReplicaStore;
use crate::node::Node;
use crate::storage::rocks::RocksStore;
use crate::storage::StorageError;
use std::path::Path;

/// What `inspect` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub replica: u32,
    pub network: Digest,
    pub height: u64,
    pub view: u64,
    pub changing_to: Option<u64>,
    pub stable_checkpoint: u64,
    pub block_hash: Digest,
    pub state_root: Digest,
    pub accounts: usize,
    pub total_supply: u128,
    /// `(height, block hash, tx count)` for every block, if asked for.
    pub blocks: Vec<(u64, Digest, usize)>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl InspectError {
    pub fn exit_code(&self) -> i32 {
        match self {
            InspectError::Config(_) => crate::exit::CONFIG,
            InspectError::Storage(_) => crate::exit::STORAGE,
        }
    }
}

/// Reads the store of the replica whose home is `home`.
pub fn inspect(home: &Path, with_blocks: bool) -> Result<Report, InspectError> {
    let loaded = config::load(home)?;
    let rt = loaded.runtime;
    inspect_store(&rt.genesis, rt.me, rt.key, &rt.data_dir, with_blocks)
}

/// Reads the store at `data_dir` as replica `me` of `genesis`.
pub fn inspect_store(
    genesis: &Genesis,
    me: crate::types::ReplicaId,
    key: crate::crypto::KeyPair,
    data_dir: &Path,
    with_blocks: bool,
) -> Result<Report, InspectError> {
    let store = RocksStore::open_existing(data_dir)?;
    // Refuse before opening could initialise anything.
    match ReplicaStore::genesis_record(&store)? {
        None => {
            return Err(StorageError::Corrupt(format!(
                "{}: the store holds no genesis record (never initialised)",
                data_dir.display()
            ))
            .into())
        }
        Some(g) if g != genesis.network.0 .0 => {
            return Err(StorageError::GenesisMismatch {
                expected: genesis.network.0.to_hex(),
                found: hex::encode(g),
            }
            .into())
        }
        Some(_) => {}
    }
    let node = Node::open_to_inspect(genesis, me, key, store).map_err(|e| match e {
        crate::node::NodeError::Storage(s) => s,
    })?;
    let mut blocks = Vec::new();
    if with_blocks {
        for h in 1..=node.height() {
            let block = node.replica_store().block(h)?.ok_or_else(|| {
                StorageError::Corrupt(format!("block {h} is missing below the tip"))
            })?;
            blocks.push((h, block.header.hash(), block.batch()?.txs.len()));
        }
    }
    let r = node.replica();
    Ok(Report {
        replica: me.0,
        network: genesis.network.0,
        height: node.height(),
        view: r.view().0,
        changing_to: r.changing_to().map(|v| v.0),
        stable_checkpoint: r.low_watermark().0,
        block_hash: node.tip().block_hash,
        state_root: node.state_root(),
        accounts: node.bank().accounts().count(),
        total_supply: node.bank().total_supply(),
        blocks,
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "replica            {}", self.replica)?;
        writeln!(f, "network            {}", self.network)?;
        writeln!(f, "height             {}", self.height)?;
        match self.changing_to {
            Some(to) => writeln!(f, "view               {} (changing to {to})", self.view)?,
            None => writeln!(f, "view               {}", self.view)?,
        }
        writeln!(f, "stable_checkpoint  {}", self.stable_checkpoint)?;
        writeln!(f, "block_hash         {}", self.block_hash)?;
        writeln!(f, "state_root         {}", self.state_root)?;
        writeln!(f, "accounts           {}", self.accounts)?;
        writeln!(f, "total_supply       {}", self.total_supply)?;
        for (h, hash, txs) in &self.blocks {
            writeln!(f, "block {h} {hash} txs={txs}")?;
        }
        Ok(())
    }
}
