//! Checkpoints and garbage collection (PBFT §4.3).
//!
//! Every `K` seqs a replica signs ⟨CHECKPOINT, n, d⟩ with `d` covering the
//! block hash and the state root after `n`. 2f+1 matching CHECKPOINTs make `n`
//! *stable*: the low watermark moves to `n`, the log at or below it is
//! dropped, and the proof is persisted (VIEW-CHANGEs carry it).
//!
//! A stable checkpoint this replica has not executed starts catching up
//! (`catch_up.rs`).

use super::messages::{Checkpoint, Message};
use super::{Action, PersistOp, Refusal, Replica, CHECKPOINTS_PER_REPLICA};
use crate::crypto::{Digest, Signed, Verified};
use crate::types::Seq;

impl Replica {
    pub(super) fn on_executed(&mut self, seq: Seq, checkpoint_digest: Digest) {
        assert!(
            seq <= self.last_executed,
            "driver reported executing {seq:?} beyond what the core handed out ({:?})",
            self.last_executed
        );
        if !seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return;
        }
        self.own_checkpoints.insert(seq, checkpoint_digest);
        let ckpt = self.sign(Checkpoint {
            seq,
            digest: checkpoint_digest,
        });
        self.actions
            .push_back(Action::Broadcast(Message::Checkpoint(
                ckpt.signed().clone(),
            )));
        self.record_checkpoint(ckpt);
        self.check_stable(seq);
    }

    pub(super) fn on_checkpoint(&mut self, c: Verified<Checkpoint>) {
        if c.seq <= self.low {
            return self.ignore(Refusal::CheckpointNotAboveStable);
        }
        if !c.seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return self.ignore(Refusal::CheckpointNotACheckpointSeq);
        }
        let seq = c.seq;
        self.note_progress(c.signer(), seq);
        if !self.record_checkpoint(c) {
            return;
        }
        self.check_stable(seq);
    }

    /// Stores a checkpoint vote, keeping at most `CHECKPOINTS_PER_REPLICA`
    /// (the newest) per signer. Returns false for a duplicate.
    pub(super) fn record_checkpoint(&mut self, c: Verified<Checkpoint>) -> bool {
        let signer = c.signer();
        let votes = self.checkpoints.entry(c.seq).or_default();
        if votes.contains_key(&signer) {
            self.ignore(Refusal::CheckpointDuplicate);
            return false;
        }
        votes.insert(signer, c);
        let mine: Vec<Seq> = self
            .checkpoints
            .iter()
            .filter(|(_, m)| m.contains_key(&signer))
            .map(|(s, _)| *s)
            .collect();
        if mine.len() > CHECKPOINTS_PER_REPLICA {
            let oldest = mine[0];
            if let Some(m) = self.checkpoints.get_mut(&oldest) {
                m.remove(&signer);
                if m.is_empty() {
                    self.checkpoints.remove(&oldest);
                }
            }
        }
        true
    }

    /// If 2f+1 replicas agree on the checkpoint at `seq`, make it stable (once
    /// we have executed it ourselves) or fetch what we are missing.
    pub(super) fn check_stable(&mut self, seq: Seq) {
        if seq <= self.low {
            return;
        }
        let quorum = self.cluster.quorum();
        #[cfg(feature = "teeth")]
        let quorum = if crate::teeth::active(crate::teeth::Tooth::CheckpointFromF) {
            self.cluster.f() as usize
        } else if crate::teeth::active(crate::teeth::Tooth::CheckpointFromFPlusOne) {
            self.cluster.weak_quorum()
        } else {
            quorum
        };
        let Some(votes) = self.checkpoints.get(&seq) else {
            return;
        };
        let mut digests: Vec<Digest> = votes.values().map(|c| c.digest).collect();
        digests.sort();
        digests.dedup();
        for digest in digests {
            let proof: Vec<Signed<Checkpoint>> = votes
                .values()
                .filter(|c| c.digest == digest)
                .map(|c| c.signed().clone())
                .take(quorum)
                .collect();
            if proof.len() < quorum {
                continue;
            }
            if seq > self.last_executed {
                self.start_fetch(seq);
                return;
            }
            // Without our own digest (we executed past it before a restart),
            // the certificate itself proves the state of a quorum.
            if let Some(own) = self.own_checkpoints.get(&seq) {
                assert_eq!(
                    *own, digest,
                    "replica {}: 2f+1 replicas certify a different state at {seq:?} than ours",
                    self.me
                );
            }
            self.make_stable(seq, proof);
            return;
        }
    }

    /// Moves the low watermark to `seq` and truncates the log.
    pub(super) fn make_stable(&mut self, seq: Seq, proof: Vec<Signed<Checkpoint>>) {
        assert!(seq > self.low, "stable checkpoints only move forward");
        assert!(
            seq <= self.last_executed,
            "a stable checkpoint we have not executed"
        );
        self.low = seq;
        self.stable_proof = proof.clone();
        self.stats.stable_checkpoints += 1;
        self.slots.retain(|s, _| *s > seq);
        self.checkpoints.retain(|s, _| *s > seq);
        self.own_checkpoints.retain(|s, _| *s >= seq);
        self.votes.retain(|(_, _, s), _| *s > seq);
        self.actions
            .push_back(Action::Persist(vec![PersistOp::StableCheckpoint {
                seq,
                proof,
            }]));
        tracing::debug!(replica = %self.me, %seq, "stable checkpoint");
        self.vote_held_entries();
        self.try_propose();
    }
}
