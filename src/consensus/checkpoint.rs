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
use super::{teeth, Action, PersistOp, Refusal, Replica, Status};
use crate::crypto::{Digest, Signed, Verified};
use crate::types::{ReplicaId, Seq};
use std::collections::BTreeMap;

/// Checkpoint votes kept per replica: enough to span the window and a little
/// beyond, so a lagging replica can still assemble a proof.
pub(super) const CHECKPOINTS_PER_REPLICA: usize = 8;

/// The CHECKPOINTs heard above the stable checkpoint, and our own digests.
#[derive(Clone, Debug, Default)]
pub(super) struct Checkpoints {
    /// Verified CHECKPOINTs by seq and signer, above the stable checkpoint:
    /// at most [`CHECKPOINTS_PER_REPLICA`] (the newest) per signer, so at
    /// most `n` times that in all.
    pub(super) votes: BTreeMap<Seq, BTreeMap<ReplicaId, Verified<Checkpoint>>>,
    /// Our own checkpoint digest at each checkpoint seq we executed, from
    /// the stable checkpoint up.
    pub(super) own: BTreeMap<Seq, Digest>,
}

impl Checkpoints {
    /// Stores a checkpoint vote, keeping at most [`CHECKPOINTS_PER_REPLICA`]
    /// (the newest) per signer. Returns false for a duplicate.
    pub(super) fn record(&mut self, c: Verified<Checkpoint>) -> bool {
        let signer = c.signer();
        let votes = self.votes.entry(c.seq).or_default();
        if votes.contains_key(&signer) {
            return false;
        }
        votes.insert(signer, c);
        let mine: Vec<Seq> = self
            .votes
            .iter()
            .filter(|(_, m)| m.contains_key(&signer))
            .map(|(s, _)| *s)
            .collect();
        if mine.len() > CHECKPOINTS_PER_REPLICA {
            let oldest = mine[0];
            if let Some(m) = self.votes.get_mut(&oldest) {
                m.remove(&signer);
                if m.is_empty() {
                    self.votes.remove(&oldest);
                }
            }
        }
        true
    }

    /// Keeps a CHECKPOINT of a NEW-VIEW's proof unless its signer's vote
    /// for that seq is in already.
    pub(super) fn adopt(&mut self, c: Verified<Checkpoint>) {
        if !self
            .votes
            .get(&c.seq)
            .is_some_and(|m| m.contains_key(&c.signer()))
        {
            self.votes.entry(c.seq).or_default().insert(c.signer(), c);
        }
    }

    /// `quorum` matching CHECKPOINTs for `seq`, with their digest (the
    /// lowest digest that has them).
    pub(super) fn certificate(
        &self,
        seq: Seq,
        quorum: usize,
    ) -> Option<(Digest, Vec<Signed<Checkpoint>>)> {
        let votes = self.votes.get(&seq)?;
        let mut digests: Vec<Digest> = votes.values().map(|c| c.digest).collect();
        digests.sort();
        digests.dedup();
        digests.into_iter().find_map(|digest| {
            let proof: Vec<Signed<Checkpoint>> = votes
                .values()
                .filter(|c| c.digest == digest)
                .map(|c| c.signed().clone())
                .take(quorum)
                .collect();
            (proof.len() >= quorum).then_some((digest, proof))
        })
    }

    /// Drops what the new stable checkpoint `seq` makes useless (our own
    /// digest at `seq` stays, for a VIEW-CHANGE's sake and the restart's).
    pub(super) fn make_stable(&mut self, seq: Seq) {
        self.votes.retain(|s, _| *s > seq);
        self.own.retain(|s, _| *s >= seq);
    }

    /// CHECKPOINTs held, for the footprint.
    pub(super) fn vote_count(&self) -> usize {
        self.votes.values().map(|m| m.len()).sum()
    }
}

impl Replica {
    pub(super) fn on_executed(&mut self, seq: Seq, checkpoint_digest: Digest) {
        assert!(
            seq <= self.log.last_executed,
            "driver reported executing {seq:?} beyond what the core handed out ({:?})",
            self.log.last_executed
        );
        if !seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return;
        }
        self.checkpoints.own.insert(seq, checkpoint_digest);
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
        if c.seq <= self.log.low {
            return self.ignore(Refusal::CheckpointNotAboveStable);
        }
        if !c.seq.0.is_multiple_of(self.cfg.checkpoint_interval) {
            return self.ignore(Refusal::CheckpointNotACheckpointSeq);
        }
        let seq = c.seq;
        self.catch_up.note_progress(c.signer(), seq);
        if !self.record_checkpoint(c) {
            return;
        }
        self.check_stable(seq);
    }

    /// Stores a checkpoint vote. Returns false for a duplicate (refused).
    pub(super) fn record_checkpoint(&mut self, c: Verified<Checkpoint>) -> bool {
        if !self.checkpoints.record(c) {
            self.ignore(Refusal::CheckpointDuplicate);
            return false;
        }
        true
    }

    /// If 2f+1 replicas agree on the checkpoint at `seq`, make it stable (once
    /// we have executed it ourselves) or fetch what we are missing.
    pub(super) fn check_stable(&mut self, seq: Seq) {
        if seq <= self.log.low {
            return;
        }
        let quorum = teeth::checkpoint_quorum(
            self.cluster.quorum(),
            self.cluster.f() as usize,
            self.cluster.weak_quorum(),
        );
        let Some((digest, proof)) = self.checkpoints.certificate(seq, quorum) else {
            return;
        };
        if seq > self.log.last_executed {
            self.start_fetch(seq);
            return;
        }
        // Without our own digest (we executed past it before a restart),
        // the certificate itself proves the state of a quorum.
        if let Some(own) = self.checkpoints.own.get(&seq) {
            assert_eq!(
                *own, digest,
                "replica {}: 2f+1 replicas certify a different state at {seq:?} than ours",
                self.me
            );
        }
        self.make_stable(seq, proof);
    }

    /// Moves the low watermark to `seq` and truncates the log.
    pub(super) fn make_stable(&mut self, seq: Seq, proof: Vec<Signed<Checkpoint>>) {
        self.log.make_stable(seq, proof.clone());
        self.stats.stable_checkpoints += 1;
        self.checkpoints.make_stable(seq);
        self.guard.forget_through(seq);
        self.actions
            .push_back(Action::Persist(vec![PersistOp::StableCheckpoint {
                seq,
                proof,
            }]));
        tracing::debug!(replica = %self.me, %seq, "stable checkpoint");
        if self.status == Status::Normal {
            self.replay_future();
        }
        self.vote_held_entries();
        self.try_propose();
    }
}
