//! The ledger (L3): hash-chained blocks built from committed batches, merkle
//! transaction roots, and the replicated application behind [`StateMachine`].
//!
//! PBFT orders *batches* (what the primary proposes); the ledger turns each
//! committed batch into a block when it executes it:
//!
//! ```text
//! header(h) = { height: h, parent_hash: hash(header(h-1)), batch_digest,
//!               tx_root, state_root (after executing h-1), timestamp_ms }
//! ```
//!
//! Why the header is derived at execution rather than proposed by the primary:
//! several seqs are in flight inside the watermark window, so a primary cannot
//! know the state root after a block that has not executed yet; and after a view
//! change a prepared batch can be re-proposed next to null requests, so a parent
//! hash fixed at proposal time could point at a block that never commits. Every
//! field above is a deterministic function of the committed batches, so correct
//! replicas compute identical headers. The commit certificate (2f+1 COMMITs) is
//! over `batch_digest`, and checkpoint certificates (2f+1 CHECKPOINTs) are over
//! the block hash and the state root, which certifies the chain itself.

pub mod bank;
pub mod commitment;

use crate::crypto::{self, Digest, Domain};
use crate::tx::{Batch, Receipt, Transaction};

/// The header of a block; its hash is the block hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub height: u64,
    pub parent_hash: Digest,
    /// Digest of the batch bytes that 2f+1 replicas committed.
    pub batch_digest: Digest,
    pub tx_root: Digest,
    /// Application state root before this block executed.
    pub state_root: Digest,
    /// The batch's timestamp, made monotonic: `max(batch, parent)`.
    pub timestamp_ms: u64,
}

pub const HEADER_BYTES: usize = 8 + 32 * 4 + 8;

impl BlockHeader {
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(&self.height.to_le_bytes());
        b[8..40].copy_from_slice(&self.parent_hash.0);
        b[40..72].copy_from_slice(&self.batch_digest.0);
        b[72..104].copy_from_slice(&self.tx_root.0);
        b[104..136].copy_from_slice(&self.state_root.0);
        b[136..144].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        b
    }
    pub fn from_bytes(b: &[u8]) -> Option<BlockHeader> {
        if b.len() != HEADER_BYTES {
            return None;
        }
        let d = |r: std::ops::Range<usize>| Digest(b[r].try_into().unwrap());
        Some(BlockHeader {
            height: u64::from_le_bytes(b[..8].try_into().unwrap()),
            parent_hash: d(8..40),
            batch_digest: d(40..72),
            tx_root: d(72..104),
            state_root: d(104..136),
            timestamp_ms: u64::from_le_bytes(b[136..144].try_into().unwrap()),
        })
    }
    pub fn hash(&self) -> Digest {
        crypto::digest(Domain::BlockHeader, &[&self.to_bytes()])
    }
}

/// Merkle root over the transactions (body and signature), in block order;
/// see [`crypto::merkle`] for the tree's shape (no two different lists share
/// a root) and [`tx_leaf`] for the leaves.
pub fn tx_root(txs: &[Transaction]) -> Digest {
    let leaves: Vec<Digest> = txs.iter().map(tx_leaf).collect();
    crypto::merkle::root(&leaves)
}

/// A transaction's leaf in its block's [`tx_root`] tree:
/// `digest(MerkleLeaf, body ‖ signature)`.
pub fn tx_leaf(tx: &Transaction) -> Digest {
    crypto::digest(Domain::MerkleLeaf, &[&tx.body(), &tx.signature])
}

/// The digest a CHECKPOINT message signs for a seq: the block hash at that
/// height and the application state root after executing it.
pub fn checkpoint_digest(block_hash: Digest, state_root_after: Digest) -> Digest {
    crypto::digest(
        Domain::CheckpointState,
        &[&block_hash.0, &state_root_after.0],
    )
}

/// A deterministic replicated application.
pub trait StateMachine {
    /// Executes one ordered batch and returns one receipt per transaction.
    /// Signatures were already checked by consensus.
    fn apply(&mut self, batch: &Batch) -> Vec<Receipt>;
    /// A digest of the whole application state.
    fn state_root(&self) -> Digest;
    /// Key-value changes since the last call, for the `state` column family.
    fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)>;
    /// Every key-value pair of the state (for snapshots and state transfer).
    fn export(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Replaces the state with exported pairs; fails on malformed records.
    fn import(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String>;
}

/// Where the chain stands after the last executed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainTip {
    pub height: u64,
    pub block_hash: Digest,
    pub timestamp_ms: u64,
}

impl ChainTip {
    /// Height 0 is genesis; its "block hash" is the network id.
    pub fn genesis(network: Digest) -> ChainTip {
        ChainTip {
            height: 0,
            block_hash: network,
            timestamp_ms: 0,
        }
    }
}

/// The result of executing one committed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    pub header: BlockHeader,
    pub block_hash: Digest,
    pub receipts: Vec<Receipt>,
    pub state_root_after: Digest,
}

/// Builds the next block over `tip` from a committed batch and applies it.
pub fn execute<S: StateMachine>(
    tip: &ChainTip,
    app: &mut S,
    batch_digest: Digest,
    batch: &Batch,
) -> Executed {
    let header = BlockHeader {
        height: tip.height + 1,
        parent_hash: tip.block_hash,
        batch_digest,
        tx_root: tx_root(&batch.txs),
        state_root: app.state_root(),
        timestamp_ms: batch.timestamp_ms.max(tip.timestamp_ms),
    };
    let receipts = app.apply(batch);
    Executed {
        block_hash: header.hash(),
        header,
        receipts,
        state_root_after: app.state_root(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, NetworkId};

    fn txs(n: usize) -> Vec<Transaction> {
        let net = NetworkId(Digest([3; 32]));
        let k = KeyPair::from_label("m");
        (0..n)
            .map(|i| Transaction::transfer(net, &k, k.public(), 1, i as u64 + 1))
            .collect()
    }

    #[test]
    fn tx_root_covers_each_transaction_and_its_signature() {
        // The tree itself (order, count, doubled leaves) is tested in
        // crypto::merkle; here: what a leaf covers.
        let t = txs(5);
        let root = tx_root(&t);
        assert_ne!(root, tx_root(&t[..4]));
        let mut resigned = t.clone();
        resigned[2].signature[0] ^= 1;
        assert_ne!(root, tx_root(&resigned), "the signature is in the leaf");
        let mut other = t.clone();
        other[4].amount += 1;
        assert_ne!(root, tx_root(&other), "the body is in the leaf");
    }

    #[test]
    fn header_bytes_round_trip() {
        let h = BlockHeader {
            height: 9,
            parent_hash: Digest([1; 32]),
            batch_digest: Digest([2; 32]),
            tx_root: Digest([3; 32]),
            state_root: Digest([4; 32]),
            timestamp_ms: 77,
        };
        assert_eq!(BlockHeader::from_bytes(&h.to_bytes()), Some(h));
        let mut h2 = h;
        h2.timestamp_ms += 1;
        assert_ne!(h.hash(), h2.hash());
    }
}
