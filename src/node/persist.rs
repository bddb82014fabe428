//! What the keys of a store mean: the mapping between the core's
//! [`PersistOp`]s, committed blocks and the column families, and their
//! encodings. A replica reads and writes them only through
//! [`ReplicaStore`](super::store::ReplicaStore).
//!
//! ```text
//! consensus  "view"                      -> PersistOp::View
//!            "vc" / "nv"                 -> our latest VIEW-CHANGE / NEW-VIEW
//!            "stable"                    -> PersistOp::StableCheckpoint
//!            "saved"                     -> empty: the replica stopped cleanly
//!                                           and saved its votes (see below)
//!            "abstain"                   -> PersistOp::Abstain: no new PRE-PREPARE
//!                                           or PREPARE up to this view (kept)
//!            "abstain-commits"           -> the same, COMMITs too (a lost store)
//!            'o' seq(be) view(be) kind   -> our PRE-PREPARE / PREPARE / COMMIT
//!            'p' seq(be)                 -> prepared certificate (highest view)
//! blocks     'b' height(be)              -> header bytes ++ batch bytes
//!            'x' tx id                   -> height(be) ++ index(be) ++ receipt
//! certs      height(be)                  -> commit certificate
//! state      account                     -> balance ++ nonce
//! meta       "genesis" / "schema" / "tip"
//! ```
//!
//! Votes and certificates at or below a stable checkpoint are deleted in the
//! same write that records the checkpoint. A running replica writes its
//! COMMITs (with their prepared certificates) but not its PRE-PREPAREs and
//! PREPAREs; a clean stop writes those too, with "saved", and the next start
//! deletes "saved" before it votes again. A start without "saved" on a store
//! that existed is a restart after a crash (`Recovered::votes_lost`); the
//! core then writes "abstain" for the view it crashed in, and every later
//! start reads it back, clean stop or not.

use crate::codec;
use crate::consensus::messages::{Commit, CommittedBatch};
use crate::consensus::PersistOp;
use crate::crypto::{Digest, Payload, Signed};
use crate::ledger::{BlockHeader, HEADER_BYTES};
use crate::storage::{Cf, StorageError, Store, WriteBatch};
use crate::tx::{Batch, Receipt};
use crate::types::Seq;

/// 2: the store records the replica it belongs to (`KEY_REPLICA`).
/// 3: state roots are the bucketed commitment (`ledger::commitment`); a
/// store of 2 holds tips and checkpoints under the old root.
pub const SCHEMA_VERSION: u32 = 3;
/// The replica that wrote the store: its id (u32, big-endian) and public key.
pub const KEY_REPLICA: &[u8] = b"replica";
pub const KEY_VIEW: &[u8] = b"view";
pub const KEY_VC: &[u8] = b"vc";
pub const KEY_NV: &[u8] = b"nv";
pub const KEY_STABLE: &[u8] = b"stable";
pub const KEY_GENESIS: &[u8] = b"genesis";
pub const KEY_SCHEMA: &[u8] = b"schema";
pub const KEY_TIP: &[u8] = b"tip";
pub const KEY_SAVED: &[u8] = b"saved";
pub const KEY_ABSTAIN: &[u8] = b"abstain";
pub const KEY_ABSTAIN_COMMITS: &[u8] = b"abstain-commits";

/// Largest consensus record read back: records are this replica's own
/// writes, and a legal NEW-VIEW or VIEW-CHANGE may exceed the default frame
/// cap (issue 17, defect 10: such a store was refused at the next start).
const OP_BYTES_MAX: usize = 1 << 30;

fn seq_key(tag: u8, seq: Seq) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(&seq.0.to_be_bytes());
    k
}

fn vote_key(seq: Seq, view: u64, kind: u8) -> Vec<u8> {
    let mut k = seq_key(b'o', seq);
    k.extend_from_slice(&view.to_be_bytes());
    k.push(kind);
    k
}

pub fn block_key(height: u64) -> Vec<u8> {
    seq_key(b'b', Seq(height))
}

pub fn tx_key(id: &Digest) -> Vec<u8> {
    let mut k = vec![b'x'];
    k.extend_from_slice(&id.0);
    k
}

/// Adds the writes for the core's ops to `batch`.
pub fn add_ops(batch: &mut WriteBatch, ops: &[PersistOp]) {
    for op in ops {
        let value = codec::encode(op);
        match op {
            PersistOp::View { .. } => batch.put(Cf::Consensus, KEY_VIEW, value),
            PersistOp::ViewChange(_) => batch.put(Cf::Consensus, KEY_VC, value),
            PersistOp::NewView(_) => batch.put(Cf::Consensus, KEY_NV, value),
            PersistOp::Abstain { .. } => {
                // One record per kind: a later rule replaces an earlier one
                // of its kind only if it reaches further (the core writes
                // only those).
                let key = match op {
                    PersistOp::Abstain { commits: true, .. } => KEY_ABSTAIN_COMMITS,
                    _ => KEY_ABSTAIN,
                };
                batch.put(Cf::Consensus, key, value)
            }
            PersistOp::PrePrepare { pre_prepare, .. } => {
                let (seq, view) =
                    vote_coords::<crate::consensus::messages::PrePrepare>(pre_prepare);
                batch.put(Cf::Consensus, vote_key(seq, view, 0), value)
            }
            PersistOp::Prepare(p) => {
                let (seq, view) = vote_coords(p);
                batch.put(Cf::Consensus, vote_key(seq, view, 1), value)
            }
            PersistOp::Commit(c) => {
                let (seq, view) = vote_coords(c);
                batch.put(Cf::Consensus, vote_key(seq, view, 2), value)
            }
            PersistOp::Prepared(proof) => {
                let (seq, _) =
                    vote_coords::<crate::consensus::messages::PrePrepare>(&proof.pre_prepare);
                batch.put(Cf::Consensus, seq_key(b'p', seq), value)
            }
            PersistOp::StableCheckpoint { seq, .. } => {
                let upto = seq.next();
                batch.delete_range(Cf::Consensus, seq_key(b'o', Seq(0)), seq_key(b'o', upto));
                batch.delete_range(Cf::Consensus, seq_key(b'p', Seq(0)), seq_key(b'p', upto));
                batch.put(Cf::Consensus, KEY_STABLE, value)
            }
        }
    }
}

/// `(seq, view)` of one of our own votes; our own bytes always decode.
fn vote_coords<T: Payload + VoteCoords>(s: &Signed<T>) -> (Seq, u64) {
    let v = T::decode(&s.payload).expect("our own vote decodes");
    v.coords()
}

trait VoteCoords {
    fn coords(&self) -> (Seq, u64);
}
macro_rules! coords {
    ($($t:ty),*) => {$(
        impl VoteCoords for $t {
            fn coords(&self) -> (Seq, u64) {
                (self.seq, self.view.0)
            }
        }
    )*};
}
coords!(
    crate::consensus::messages::PrePrepare,
    crate::consensus::messages::Prepare,
    crate::consensus::messages::Commit
);

fn decode_op(bytes: &[u8]) -> Result<PersistOp, StorageError> {
    codec::decode(bytes, OP_BYTES_MAX)
        .map_err(|e| StorageError::Corrupt(format!("consensus record does not decode: {e}")))
}

/// Reads back every persisted op, in an order the core can replay:
/// stable checkpoint, view, NEW-VIEW, VIEW-CHANGE, then the log by seq.
pub fn load_ops(store: &dyn Store) -> Result<Vec<PersistOp>, StorageError> {
    let mut ops = Vec::new();
    for key in [
        KEY_STABLE,
        KEY_VIEW,
        KEY_NV,
        KEY_VC,
        KEY_ABSTAIN,
        KEY_ABSTAIN_COMMITS,
    ] {
        if let Some(v) = store.get(Cf::Consensus, key)? {
            ops.push(decode_op(&v)?);
        }
    }
    for tag in [b'o', b'p'] {
        for (_, v) in store.scan(Cf::Consensus, &[tag], &[tag + 1], usize::MAX)? {
            ops.push(decode_op(&v)?);
        }
    }
    Ok(ops)
}

/// A committed block as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    pub header: BlockHeader,
    pub batch_bytes: Vec<u8>,
}

impl StoredBlock {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.header.to_bytes().to_vec();
        v.extend_from_slice(&self.batch_bytes);
        v
    }
    pub fn decode(bytes: &[u8]) -> Result<StoredBlock, StorageError> {
        if bytes.len() < HEADER_BYTES {
            return Err(StorageError::Corrupt(
                "block record shorter than a header".into(),
            ));
        }
        let header = BlockHeader::from_bytes(&bytes[..HEADER_BYTES])
            .ok_or_else(|| StorageError::Corrupt("block header".into()))?;
        Ok(StoredBlock {
            header,
            batch_bytes: bytes[HEADER_BYTES..].to_vec(),
        })
    }
    pub fn batch(&self) -> Result<Batch, StorageError> {
        Batch::decode(&self.batch_bytes)
            .map_err(|e| StorageError::Corrupt(format!("block batch: {e}")))
    }
}

pub fn read_block(store: &dyn Store, height: u64) -> Result<Option<StoredBlock>, StorageError> {
    store
        .get(Cf::Blocks, &block_key(height))?
        .map(|b| StoredBlock::decode(&b))
        .transpose()
}

pub fn read_certificate(
    store: &dyn Store,
    height: u64,
) -> Result<Option<Vec<Signed<Commit>>>, StorageError> {
    store
        .get(Cf::Certs, &height.to_be_bytes())?
        .map(|b| {
            codec::decode::<Vec<Signed<Commit>>>(&b, OP_BYTES_MAX)
                .map_err(|e| StorageError::Corrupt(format!("certificate at {height}: {e}")))
        })
        .transpose()
}

pub fn encode_certificate(cert: &Vec<Signed<Commit>>) -> Vec<u8> {
    codec::encode(cert)
}

/// Committed batches `from..=to` for a peer that is catching up.
pub fn read_committed(
    store: &dyn Store,
    from: u64,
    to: u64,
    bytes_max: usize,
) -> Result<Vec<CommittedBatch>, StorageError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for h in from..=to {
        let (Some(block), Some(certificate)) = (read_block(store, h)?, read_certificate(store, h)?)
        else {
            break;
        };
        let cb = CommittedBatch {
            seq: Seq(h),
            batch: block.batch_bytes,
            certificate,
        };
        let size = committed_batch_bytes(&cb);
        if !out.is_empty() && bytes + size > bytes_max {
            break;
        }
        bytes += size;
        out.push(cb);
    }
    Ok(out)
}

/// An upper bound on a committed batch's encoded size.
pub fn committed_batch_bytes(cb: &CommittedBatch) -> usize {
    const PER_ITEM: usize = 16;
    cb.batch.len()
        + PER_ITEM
        + cb.certificate
            .iter()
            .map(|c| c.payload.len() + c.signature.len() + PER_ITEM)
            .sum::<usize>()
}

/// Where a transaction landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
    pub receipt: Receipt,
}

pub fn encode_tx_location(loc: &TxLocation) -> Vec<u8> {
    let mut v = loc.height.to_be_bytes().to_vec();
    v.extend_from_slice(&loc.index.to_be_bytes());
    v.push(loc.receipt.code());
    v
}

pub fn read_tx(store: &dyn Store, id: &Digest) -> Result<Option<TxLocation>, StorageError> {
    let Some(v) = store.get(Cf::Blocks, &tx_key(id))? else {
        return Ok(None);
    };
    if v.len() != 13 {
        return Err(StorageError::Corrupt("transaction index record".into()));
    }
    Ok(Some(TxLocation {
        height: u64::from_be_bytes(v[..8].try_into().unwrap()),
        index: u32::from_be_bytes(v[8..12].try_into().unwrap()),
        receipt: Receipt::from_code(v[12])
            .ok_or_else(|| StorageError::Corrupt("receipt code".into()))?,
    }))
}

/// The chain tip record in `meta`: height, block hash, timestamp, state root after.
pub fn encode_tip(height: u64, hash: &Digest, timestamp_ms: u64, state_root: &Digest) -> Vec<u8> {
    let mut v = height.to_be_bytes().to_vec();
    v.extend_from_slice(&hash.0);
    v.extend_from_slice(&timestamp_ms.to_be_bytes());
    v.extend_from_slice(&state_root.0);
    v
}

pub fn decode_tip(v: &[u8]) -> Result<(u64, Digest, u64, Digest), StorageError> {
    if v.len() != 8 + 32 + 8 + 32 {
        return Err(StorageError::Corrupt("chain tip record".into()));
    }
    Ok((
        u64::from_be_bytes(v[..8].try_into().unwrap()),
        Digest(v[8..40].try_into().unwrap()),
        u64::from_be_bytes(v[40..48].try_into().unwrap()),
        Digest(v[48..80].try_into().unwrap()),
    ))
}
