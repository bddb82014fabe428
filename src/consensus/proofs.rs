//! Certificate checks used by the view change (PBFT §4.4), and the O-set.
//!
//! A VIEW-CHANGE is only as good as its proofs: the stable checkpoint must be
//! backed by 2f+1 matching CHECKPOINTs and every prepared certificate by a
//! PRE-PREPARE from that view's primary plus 2f matching PREPAREs from distinct
//! backups, over the digest of the batch it carries. A forged VIEW-CHANGE (a
//! fake certificate) is rejected here, before it can influence a NEW-VIEW.
//!
//! The O-set is a pure function of the VIEW-CHANGEs in a NEW-VIEW, so every
//! backup recomputes it and compares: a Byzantine new primary cannot drop a
//! prepared request or insert its own.

use super::messages::{Checkpoint, PrePrepare, Prepare, PreparedProof, ViewChange};
use super::{teeth, Refusal, Replica};
use crate::crypto::{Digest, Signed, Verified};
use crate::tx::{batch_digest, BATCH_BYTES_MAX};
use crate::types::{Seq, View};
use std::collections::{BTreeMap, BTreeSet};

/// One seq of the O-set: the digest to re-propose and its batch bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct OEntry {
    pub seq: Seq,
    pub digest: Digest,
    pub batch: Vec<u8>,
}

/// What a NEW-VIEW re-proposes.
#[derive(Clone, Debug)]
pub(super) struct OSet {
    /// `min-s`: the latest stable checkpoint among the VIEW-CHANGEs.
    pub min_s: Seq,
    pub checkpoint_proof: Vec<Signed<Checkpoint>>,
    /// Every seq in `(min_s, max_s]`, in order.
    pub entries: Vec<OEntry>,
}

impl Replica {
    /// Whether a list of signed votes is short enough and names each signer
    /// once — checked *before* any signature is: one valid signature
    /// repeated a hundred thousand times in a proof would otherwise cost as
    /// many checks on the loop thread (issue 17, defect 8). Honest proofs
    /// never repeat a signer and never hold more than one vote per replica.
    pub(super) fn distinct_signers<T>(&self, list: &[Signed<T>]) -> bool {
        if list.len() > self.cluster.n() as usize {
            return false;
        }
        if teeth::signers_not_deduplicated() {
            return true;
        }
        let mut seen = BTreeSet::new();
        list.iter().all(|s| seen.insert(s.signer))
    }

    /// Checks 2f+1 distinct, valid CHECKPOINTs for `seq` with one digest.
    pub(super) fn check_checkpoint_proof(
        &self,
        seq: Seq,
        proof: &[Signed<Checkpoint>],
    ) -> Result<(), Refusal> {
        if seq == Seq(0) {
            return if proof.is_empty() {
                Ok(())
            } else {
                Err(Refusal::ViewChangeGenesisCheckpointProof)
            };
        }
        if !seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return Err(Refusal::ViewChangeStableNotCheckpointSeq);
        }
        if !self.distinct_signers(proof) {
            return Err(Refusal::ViewChangeCheckpointProofRepeatsSigner);
        }
        let mut signers = BTreeSet::new();
        let mut digest = None;
        for c in proof {
            let Ok(c) = self.verifier.verify::<Checkpoint>(c) else {
                return Err(Refusal::ViewChangeCheckpointProofBadSignature);
            };
            if c.seq != seq || *digest.get_or_insert(c.digest) != c.digest {
                return Err(Refusal::ViewChangeCheckpointProofMismatch);
            }
            signers.insert(c.signer());
        }
        if signers.len() < self.cluster.quorum() {
            return Err(Refusal::ViewChangeCheckpointProofBelowQuorum);
        }
        Ok(())
    }

    /// Checks one prepared certificate carried by a VIEW-CHANGE for
    /// `new_view` whose stable checkpoint is `stable`.
    pub(super) fn check_prepared_proof(
        &self,
        proof: &PreparedProof,
        new_view: View,
        stable: Seq,
    ) -> Result<Verified<PrePrepare>, Refusal> {
        let Ok(pp) = self.verifier.verify::<PrePrepare>(&proof.pre_prepare) else {
            return Err(Refusal::ViewChangePreparedBadPrePrepare);
        };
        if pp.signer() != self.cluster.primary(pp.view) {
            return Err(Refusal::ViewChangePreparedNotFromPrimary);
        }
        if pp.view >= new_view {
            return Err(Refusal::ViewChangePreparedViewNotBelow);
        }
        if pp.seq <= stable || pp.seq.0 > stable.0 + self.cfg.watermark_window {
            return Err(Refusal::ViewChangePreparedOutsideWindow);
        }
        if proof.batch.len() > BATCH_BYTES_MAX || batch_digest(&proof.batch) != pp.digest {
            return Err(Refusal::ViewChangePreparedBatchMismatch);
        }
        if !self.distinct_signers(&proof.prepares) {
            return Err(Refusal::ViewChangePreparedRepeatsSigner);
        }
        let mut signers = BTreeSet::new();
        for p in &proof.prepares {
            let Ok(p) = self.verifier.verify::<Prepare>(p) else {
                return Err(Refusal::ViewChangePreparedBadPrepare);
            };
            if p.view != pp.view || p.seq != pp.seq || p.digest != pp.digest {
                return Err(Refusal::ViewChangePreparedPrepareMismatch);
            }
            if p.signer() == pp.signer() {
                return Err(Refusal::ViewChangePreparedCountsPrimary);
            }
            signers.insert(p.signer());
        }
        if teeth::signers_counted(signers.len(), proof.prepares.len()) < self.cluster.quorum() - 1 {
            return Err(Refusal::ViewChangePreparedBelowQuorum);
        }
        Ok(pp)
    }

    /// Checks every proof inside a VIEW-CHANGE.
    pub(super) fn check_view_change(&self, vc: &ViewChange) -> Result<(), Refusal> {
        if teeth::view_change_proof_not_checked() {
            return Ok(());
        }
        self.check_checkpoint_proof(vc.stable_seq, &vc.checkpoint_proof)?;
        if vc.prepared.len() as u64 > self.cfg.watermark_window {
            return Err(Refusal::ViewChangeTooManyPreparedProofs);
        }
        let mut seqs = BTreeSet::new();
        for proof in &vc.prepared {
            let pp = self.check_prepared_proof(proof, vc.new_view, vc.stable_seq)?;
            if !seqs.insert(pp.seq) {
                return Err(Refusal::ViewChangeTwoPreparedProofs);
            }
        }
        Ok(())
    }

    /// Computes the O-set from (already checked) VIEW-CHANGEs: for each seq
    /// above the highest stable checkpoint, the batch prepared in the highest
    /// view (ties broken by digest), or a null request where none prepared.
    pub(super) fn compute_o_set(&self, vcs: &[Verified<ViewChange>]) -> OSet {
        let best_stable = vcs
            .iter()
            .max_by_key(|vc| (vc.stable_seq, std::cmp::Reverse(vc.signer())))
            .expect("a NEW-VIEW has 2f+1 view-changes");
        let min_s = best_stable.stable_seq;
        let mut chosen: BTreeMap<Seq, (View, Digest, &Vec<u8>)> = BTreeMap::new();
        for vc in vcs {
            for proof in &vc.prepared {
                let pp = crate::crypto::Payload::decode(&proof.pre_prepare.payload);
                let Ok(PrePrepare { view, seq, digest }) = pp else {
                    continue;
                };
                if seq <= min_s {
                    continue;
                }
                let better = match chosen.get(&seq) {
                    None => true,
                    Some((v, d, _)) => {
                        (view, std::cmp::Reverse(digest)) > (*v, std::cmp::Reverse(*d))
                    }
                };
                if better {
                    chosen.insert(seq, (view, digest, &proof.batch));
                }
            }
        }
        let max_s = chosen.keys().next_back().copied().unwrap_or(min_s);
        let (null_digest, _, null_bytes) = Replica::null_batch();
        let entries = (min_s.0 + 1..=max_s.0)
            .map(Seq)
            .map(|seq| match chosen.get(&seq) {
                Some((_, digest, batch)) => OEntry {
                    seq,
                    digest: *digest,
                    batch: (*batch).clone(),
                },
                None => OEntry {
                    seq,
                    digest: null_digest,
                    batch: null_bytes.to_vec(),
                },
            })
            .collect();
        OSet {
            min_s,
            checkpoint_proof: best_stable.checkpoint_proof.clone(),
            entries,
        }
    }
}
