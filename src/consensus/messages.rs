//! The protocol's messages (L2), named as in Castro & Liskov (TOCS '02).
//!
//! Every replica-to-replica vote travels as a [`Signed<T>`] of its exact bytes,
//! so a certificate is simply the list of signed votes and can be re-checked by
//! anyone offline. PRE-PREPARE, PREPARE and COMMIT sign the digest of the
//! batch's exact bytes, never the batch itself (§4.2); the batch rides next to
//! the PRE-PREPARE.

use crate::codec;
use crate::crypto::{
    self, merkle, Digest, Domain, KeyPair, NetworkId, Payload, PublicKey, Signed, Verifier,
};
use crate::impl_payload;
use crate::tx::{Receipt, Transaction};
use crate::types::{ReplicaId, Seq, View};
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

/// A replica's answer to a client for one executed transaction. It is not
/// signed on its own: it is a leaf of the block's reply tree, whose root the
/// replica signs once ([`ReplyRoot`], [`ReplyProof`]).
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

/// Size cap of an encoded [`Reply`] in a proof.
pub const REPLY_BYTES_MAX: usize = 256;

/// Longest path a [`ReplyProof`] may carry: enough for 2^32 leaves.
pub const REPLY_PATH_MAX: usize = 32;

/// Signed by a replica once per executed block (DESIGN §7: one signature
/// per block, not per transaction): the root of a merkle tree
/// (`crypto::merkle`) whose `count` leaves are the block's replies, in
/// block order, each hashed as `digest(ReplyLeaf, encoded reply)`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyRoot {
    pub view: View,
    pub seq: Seq,
    pub count: u32,
    pub root: Digest,
}
impl_payload!(ReplyRoot, Domain::ReplyRoot);

/// What a client receives for one executed transaction: the reply's exact
/// bytes, its position in the block's reply tree, the path to the root and
/// the replica's signature over the root.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReplyProof {
    pub reply: Vec<u8>,
    pub index: u32,
    pub path: Vec<Digest>,
    pub root: Signed<ReplyRoot>,
}

impl ReplyProof {
    /// Signs the replies of one block (all for `view` and `seq`) with one
    /// signature and returns one proof per reply, in the same order.
    pub fn sign_block(
        key: &KeyPair,
        network: NetworkId,
        me: ReplicaId,
        view: View,
        seq: Seq,
        replies: &[Reply],
    ) -> Vec<ReplyProof> {
        let encoded: Vec<Vec<u8>> = replies.iter().map(codec::encode).collect();
        let leaves: Vec<Digest> = encoded.iter().map(|e| reply_leaf(e)).collect();
        let (root, paths) = merkle::root_and_paths(&leaves);
        let root = key
            .sign(
                network,
                me,
                ReplyRoot {
                    view,
                    seq,
                    count: replies.len() as u32,
                    root,
                },
            )
            .into_signed();
        encoded
            .into_iter()
            .zip(paths)
            .enumerate()
            .map(|(i, (reply, path))| ReplyProof {
                reply,
                index: i as u32,
                path,
                root: root.clone(),
            })
            .collect()
    }

    /// The reply, decoded without any check (for the replica that made it).
    pub fn reply_unchecked(&self) -> Result<Reply, codec::CodecError> {
        codec::decode(&self.reply, REPLY_BYTES_MAX)
    }
}

fn reply_leaf(encoded: &[u8]) -> Digest {
    crypto::digest(Domain::ReplyLeaf, &[encoded])
}

/// Why a [`ReplyProof`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The root's signature does not verify (or its signer is unknown).
    BadSignature,
    /// The reply or the root does not decode, or the path is too long.
    Malformed,
    /// The path does not lead from the reply to the signed root.
    NotInTree,
    /// The reply's view or seq differs from the signed root's.
    Mismatch,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplyError::BadSignature => "reply signature invalid",
            ReplyError::Malformed => "reply malformed",
            ReplyError::NotInTree => "reply not under the signed root",
            ReplyError::Mismatch => "reply and signed root disagree",
        })
    }
}

/// Checks [`ReplyProof`]s for a client. Root signatures already checked are
/// remembered (a block's replies share one root, so a client with many
/// transfers in a block verifies each replica's signature once); the memory
/// is bounded and forgets the oldest first.
#[derive(Debug, Default)]
pub struct ReplyChecker {
    verified: std::collections::HashSet<Digest>,
    order: std::collections::VecDeque<Digest>,
}

/// Signed roots a [`ReplyChecker`] remembers.
const CHECKED_ROOTS_MAX: usize = 1024;

impl ReplyChecker {
    /// The replica that signed `proof` and its reply, if the proof holds.
    pub fn check(
        &mut self,
        verifier: &Verifier,
        proof: &ReplyProof,
    ) -> Result<(ReplicaId, Reply), ReplyError> {
        let signed = &proof.root;
        // The memo key covers everything the signature check looked at.
        let key = Digest(
            *blake3::Hasher::new()
                .update(&signed.signer.0.to_le_bytes())
                .update(&signed.signature)
                .update(&signed.payload)
                .finalize()
                .as_bytes(),
        );
        let root = if self.verified.contains(&key) {
            ReplyRoot::decode(&signed.payload).map_err(|_| ReplyError::Malformed)?
        } else {
            let root = match verifier.verify(signed) {
                Ok(v) => *v.value(),
                Err(crate::crypto::VerifyError::Malformed)
                | Err(crate::crypto::VerifyError::TooLarge) => return Err(ReplyError::Malformed),
                Err(_) => return Err(ReplyError::BadSignature),
            };
            if self.order.len() >= CHECKED_ROOTS_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.verified.remove(&old);
                }
            }
            self.verified.insert(key);
            self.order.push_back(key);
            root
        };
        if proof.path.len() > REPLY_PATH_MAX {
            return Err(ReplyError::Malformed);
        }
        let reached = merkle::root_from_path(
            reply_leaf(&proof.reply),
            proof.index as usize,
            root.count as usize,
            &proof.path,
        );
        if reached != Some(root.root) {
            return Err(ReplyError::NotInTree);
        }
        let reply: Reply =
            codec::decode(&proof.reply, REPLY_BYTES_MAX).map_err(|_| ReplyError::Malformed)?;
        if reply.view != root.view || reply.seq != root.seq {
            return Err(ReplyError::Mismatch);
        }
        Ok((signed.signer, reply))
    }
}

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
    Reply(ReplyProof),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::Receipt;

    struct Net {
        network: NetworkId,
        keys: Vec<KeyPair>,
        verifier: Verifier,
    }

    fn net() -> Net {
        let network = NetworkId(Digest([9; 32]));
        let keys: Vec<KeyPair> = (0..4)
            .map(|i| KeyPair::from_label(&format!("reply-root-{i}")))
            .collect();
        let publics: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
        let verifier = Verifier::new(network, &publics).expect("valid keys");
        Net {
            network,
            keys,
            verifier,
        }
    }

    fn replies(n: usize, seq: u64) -> Vec<Reply> {
        (0..n)
            .map(|i| Reply {
                view: View(2),
                client: KeyPair::from_label(&format!("client-{i}")).public(),
                nonce: i as u64 + 1,
                tx_id: Digest([i as u8; 32]),
                seq: Seq(seq),
                receipt: Receipt::Ok,
            })
            .collect()
    }

    fn sign(net: &Net, signer: u32, replies: &[Reply]) -> Vec<ReplyProof> {
        ReplyProof::sign_block(
            &net.keys[signer as usize],
            net.network,
            ReplicaId(signer),
            View(2),
            replies[0].seq,
            replies,
        )
    }

    #[test]
    fn every_reply_of_a_block_checks_against_one_signature() {
        let net = net();
        let r = replies(7, 5);
        let proofs = sign(&net, 1, &r);
        assert_eq!(proofs.len(), 7);
        assert!(proofs.iter().all(|p| p.root == proofs[0].root));
        let mut checker = ReplyChecker::default();
        for (reply, proof) in r.iter().zip(&proofs) {
            assert_eq!(
                checker.check(&net.verifier, proof),
                Ok((ReplicaId(1), *reply))
            );
        }
        assert_eq!(checker.verified.len(), 1, "one root, verified once");
    }

    #[test]
    fn forged_or_altered_replies_are_refused() {
        let net = net();
        let r = replies(5, 8);
        let proofs = sign(&net, 2, &r);
        let mut checker = ReplyChecker::default();
        assert!(checker.check(&net.verifier, &proofs[3]).is_ok());

        // Another reply's bytes, another index, another path: not in the tree.
        let mut p = proofs[3].clone();
        p.reply = proofs[4].reply.clone();
        assert_eq!(checker.check(&net.verifier, &p), Err(ReplyError::NotInTree));
        let mut p = proofs[3].clone();
        p.index = 2;
        assert_eq!(checker.check(&net.verifier, &p), Err(ReplyError::NotInTree));
        let mut p = proofs[3].clone();
        p.path = proofs[0].path.clone();
        assert_eq!(checker.check(&net.verifier, &p), Err(ReplyError::NotInTree));
        let mut p = proofs[3].clone();
        p.path = vec![Digest::ZERO; REPLY_PATH_MAX + 1];
        assert_eq!(checker.check(&net.verifier, &p), Err(ReplyError::Malformed));

        // The (already verified) root with a changed signature, or claimed
        // by another replica: the signature check runs again and fails.
        let mut p = proofs[3].clone();
        p.root.signature[0] ^= 1;
        assert_eq!(
            checker.check(&net.verifier, &p),
            Err(ReplyError::BadSignature)
        );
        let mut p = proofs[3].clone();
        p.root.signer = ReplicaId(3);
        assert_eq!(
            checker.check(&net.verifier, &p),
            Err(ReplyError::BadSignature)
        );

        // A Byzantine replica signs a correct tree of replies whose seq is
        // not the one its root states.
        let mut wrong = r.clone();
        wrong[1].seq = Seq(9);
        let byz = sign(&net, 3, &wrong);
        assert!(checker.check(&net.verifier, &byz[0]).is_ok());
        assert_eq!(
            checker.check(&net.verifier, &byz[1]),
            Err(ReplyError::Mismatch)
        );
    }

    #[test]
    fn the_memory_of_verified_roots_is_bounded() {
        let net = net();
        let mut checker = ReplyChecker::default();
        for seq in 1..=(CHECKED_ROOTS_MAX as u64 + 10) {
            let proof = sign(&net, 0, &replies(1, seq)).remove(0);
            assert!(checker.check(&net.verifier, &proof).is_ok());
        }
        assert_eq!(checker.verified.len(), CHECKED_ROOTS_MAX);
        assert_eq!(checker.order.len(), CHECKED_ROOTS_MAX);
    }
}
