//! The protocol's messages (L2), named as in Castro & Liskov (TOCS '02).
//!
//! Every replica-to-replica vote travels as a [`Signed<T>`] of its exact bytes,
//! so a certificate is simply the list of signed votes and can be re-checked by
//! anyone offline. PRE-PREPARE, PREPARE and COMMIT sign the digest of the
//! batch's exact bytes, never the batch itself (§4.2); the batch rides next to
//! the PRE-PREPARE.

use crate::crypto::{Digest, Domain, PublicKey, Signed};
use crate::impl_payload;
use crate::tx::{Receipt, Transaction};
use crate::types::{Seq, View};
use rkyv::{Archive, Deserialize, Serialize};

/// ⟨PRE-PREPARE, v, n, d⟩ signed by the primary of `view`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrePrepare {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}
impl_payload!(PrePrepare, Domain::PrePrepare);

/// ⟨PREPARE, v, n, d, i⟩ signed by backup `i` (the signer).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepare {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}
impl_payload!(Prepare, Domain::Prepare);

/// ⟨COMMIT, v, n, d, i⟩ signed by replica `i`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}
impl_payload!(Commit, Domain::Commit);

/// ⟨CHECKPOINT, n, d, i⟩: replica `i` executed up to `seq` and its block hash
/// and state root give `digest` (`ledger::checkpoint_digest`).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: Seq,
    pub digest: Digest,
}
impl_payload!(Checkpoint, Domain::Checkpoint);

/// A prepared certificate (the paper's P_m): a PRE-PREPARE, 2f matching
/// PREPAREs from distinct backups, and the batch the digest names.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PreparedProof {
    pub pre_prepare: Signed<PrePrepare>,
    pub prepares: Vec<Signed<Prepare>>,
    pub batch: Vec<u8>,
}

/// ⟨VIEW-CHANGE, v+1, n, C, P, i⟩ (§4.4).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ViewChange {
    pub new_view: View,
    /// `n`: the sender's stable checkpoint.
    pub stable_seq: Seq,
    /// `C`: 2f+1 CHECKPOINTs proving `stable_seq` (empty at genesis, seq 0).
    pub checkpoint_proof: Vec<Signed<Checkpoint>>,
    /// `P`: for each seq above `stable_seq` that prepared at the sender, the
    /// certificate from the highest view.
    pub prepared: Vec<PreparedProof>,
}
impl_payload!(ViewChange, Domain::ViewChange);

/// ⟨NEW-VIEW, v+1, V, O⟩ signed by the new primary.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewView {
    pub view: View,
    /// `V`: 2f+1 VIEW-CHANGEs for `view` from distinct replicas.
    pub view_changes: Vec<Signed<ViewChange>>,
    /// `O`: PRE-PREPAREs for every seq in `(min_s, max_s]`, recomputed by backups.
    pub pre_prepares: Vec<Signed<PrePrepare>>,
}
impl_payload!(NewView, Domain::NewView);

/// ⟨SUSPECT, v⟩: the signer's request timer expired in view `v`. A replica
/// leaves view `v` only once f+1 replicas suspect it (see `view_change`).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspect {
    pub view: View,
}
impl_payload!(Suspect, Domain::Suspect);

/// A replica's signed answer to a client for one executed transaction.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub view: View,
    pub client: PublicKey,
    pub nonce: u64,
    pub tx_id: Digest,
    /// Height of the block that holds the transaction.
    pub seq: Seq,
    pub receipt: Receipt,
}
impl_payload!(Reply, Domain::Reply);

/// A committed batch with its commit certificate (2f+1 COMMITs), as served to
/// a replica that is catching up.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CommittedBatch {
    pub seq: Seq,
    pub batch: Vec<u8>,
    pub certificate: Vec<Signed<Commit>>,
}

/// Everything replicas (and clients) send each other.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A client's signed transaction.
    Request(Transaction),
    PrePrepare {
        pre_prepare: Signed<PrePrepare>,
        batch: Vec<u8>,
    },
    Prepare(Signed<Prepare>),
    Commit(Signed<Commit>),
    Checkpoint(Signed<Checkpoint>),
    ViewChange(Signed<ViewChange>),
    NewView(Signed<NewView>),
    Suspect(Signed<Suspect>),
    /// "I am in `view` and see messages of a later one: send me the NEW-VIEW
    /// that took you there." Unsigned: it asks, it proves nothing.
    NewViewRequest {
        view: View,
    },
    /// Ask for committed batches `from..=to` (catch-up).
    Fetch {
        from: Seq,
        to: Seq,
    },
    /// Committed batches in increasing seq order.
    Batches(Vec<CommittedBatch>),
    Reply(Signed<Reply>),
}

impl Message {
    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Request(_) => "request",
            Message::PrePrepare { .. } => "pre-prepare",
            Message::Prepare(_) => "prepare",
            Message::Commit(_) => "commit",
            Message::Checkpoint(_) => "checkpoint",
            Message::ViewChange(_) => "view-change",
            Message::NewView(_) => "new-view",
            Message::Suspect(_) => "suspect",
            Message::NewViewRequest { .. } => "new-view-request",
            Message::Fetch { .. } => "fetch",
            Message::Batches(_) => "batches",
            Message::Reply(_) => "reply",
        }
    }

    pub fn to_frame(&self) -> Vec<u8> {
        crate::codec::encode_frame(self)
    }

    pub fn from_frame(frame: &[u8], max: usize) -> Result<Message, crate::codec::CodecError> {
        crate::codec::decode_frame(frame, max)
    }
}
