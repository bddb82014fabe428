//! Checkpoints and garbage collection (PBFT §4.3), and catch-up.
//!
//! Every `K` seqs a replica signs ⟨CHECKPOINT, n, d⟩ with `d` covering the
//! block hash and the state root after `n`. 2f+1 matching CHECKPOINTs make `n`
//! *stable*: the low watermark moves to `n`, the log at or below it is
//! dropped, and the proof is persisted (VIEW-CHANGEs carry it).
//!
//! A replica that sees peers ahead of it — a stable checkpoint it has not
//! executed, a NEW-VIEW above its window, or f+1 peers showing progress beyond
//! it — fetches committed batches from them. Every batch must come with a
//! commit certificate of 2f+1 COMMITs from distinct replicas over that exact
//! batch digest, so no single peer is trusted; peers are asked in turn, and a
//! fetch that stalls moves on to the next peer.

use super::messages::{Checkpoint, Commit, CommittedBatch, Message};
use super::timers::Timer;
use super::{Action, CommittedEntry, Fetch, PersistOp, Refusal, Replica, CHECKPOINTS_PER_REPLICA};
use crate::crypto::{Digest, Signed, Verified};
use crate::tx::{batch_digest, Batch, BATCH_BYTES_MAX};
use crate::types::{ReplicaId, Seq};
use std::collections::BTreeSet;
use std::sync::Arc;

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

    /// Starts (or extends) catching up to `target`.
    pub(super) fn start_fetch(&mut self, target: Seq) {
        if target <= self.last_executed {
            return;
        }
        match &mut self.fetch {
            Some(f) if f.target >= target => return,
            Some(f) => {
                // Evidence of a real target: no longer a probe that may end.
                f.target = target;
                f.probe = None;
            }
            None => {
                self.fetch = Some(Fetch {
                    target,
                    peer_cursor: self.me.0,
                    probe: None,
                })
            }
        }
        self.send_fetch();
    }

    /// After a restart: asks the peers, one after another, for batches
    /// committed above ours while we were down. Nothing else would show an
    /// idle network's progress to us (no request timer runs without
    /// requests, and CHECKPOINTs and COMMITs are not sent again). Each range
    /// that arrives asks for the next; once every peer in a row let a
    /// retransmission timeout pass without sending one, we are level.
    pub fn probe_for_missed_batches(&mut self) {
        if self.fetch.is_some() {
            return;
        }
        self.fetch = Some(Fetch {
            target: Seq(self.last_executed.0 + self.cfg.fetch_batches_max),
            peer_cursor: self.me.0,
            probe: Some(0),
        });
        self.send_fetch();
    }

    /// Ends catching up (the fetch timer runs exactly while it goes on).
    pub(super) fn end_fetch(&mut self) {
        self.fetch = None;
        self.timers.stop(Timer::Fetch);
    }

    /// Asks the next peer for the next range of committed batches.
    fn send_fetch(&mut self) {
        let n = self.cluster.n();
        let from = self.last_executed.next();
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        f.peer_cursor = (f.peer_cursor + 1) % n;
        if f.peer_cursor == self.me.0 {
            f.peer_cursor = (f.peer_cursor + 1) % n;
        }
        let to = Seq(f.target.0.min(from.0 + self.cfg.fetch_batches_max - 1));
        let peer = ReplicaId(f.peer_cursor);
        self.timers
            .set(Timer::Fetch, self.now.plus_millis(self.cfg.retransmit_ms));
        self.actions.push_back(Action::Send {
            to: peer,
            message: Message::Fetch { from, to },
        });
    }

    pub(super) fn on_fetch_timer(&mut self) {
        if self
            .fetch
            .as_ref()
            .is_some_and(|f| f.target <= self.last_executed)
        {
            self.end_fetch();
            return;
        }
        let peers = self.cluster.n() - 1;
        if let Some(f) = self.fetch.as_mut() {
            if let Some(silent) = f.probe.as_mut() {
                *silent += 1;
                if *silent >= peers {
                    self.end_fetch();
                    return;
                }
            }
        }
        self.send_fetch();
    }

    /// Committed batches from a peer: each is checked against its commit
    /// certificate before it is queued for execution.
    pub(super) fn on_batches(&mut self, from: ReplicaId, batches: Vec<CommittedBatch>) {
        if self.fetch.is_none() {
            return self.ignore(Refusal::BatchesNotFetching);
        }
        let limit = Seq(self.last_executed.0 + self.fetch_window());
        let mut accepted = 0;
        for cb in batches
            .into_iter()
            .take(self.cfg.fetch_batches_max as usize)
        {
            if cb.seq <= self.last_executed || cb.seq > limit || self.fetched.contains_key(&cb.seq)
            {
                continue;
            }
            match self.check_committed_batch(&cb) {
                Ok(entry) => {
                    self.fetched.insert(cb.seq, entry);
                    accepted += 1;
                }
                Err(reason) => {
                    tracing::debug!(replica = %self.me, peer = %from, seq = %cb.seq, %reason, "rejected fetched batch");
                    self.ignore(reason);
                }
            }
        }
        self.stats.batches_fetched += accepted;
        if accepted > 0 {
            if let Some(silent) = self.fetch.as_mut().and_then(|f| f.probe.as_mut()) {
                *silent = 0;
            }
        }
        let before = self.last_executed;
        self.try_execute();
        if self.last_executed > before {
            if let Some(f) = &self.fetch {
                if f.target > self.last_executed {
                    self.send_fetch();
                }
            }
        }
    }

    /// Verifies a committed batch: 2f+1 COMMITs from distinct replicas, all
    /// for this seq, one view and the digest of these exact bytes.
    pub(super) fn check_committed_batch(
        &mut self,
        cb: &CommittedBatch,
    ) -> Result<CommittedEntry, Refusal> {
        if cb.batch.len() > BATCH_BYTES_MAX {
            return Err(Refusal::BatchesBatchTooLarge);
        }
        if !self.distinct_signers(&cb.certificate) {
            return Err(Refusal::BatchesCertificateRepeatsSigner);
        }
        let digest = batch_digest(&cb.batch);
        let mut signers = BTreeSet::new();
        let mut view = None;
        let mut certificate = Vec::new();
        for c in &cb.certificate {
            let verified = self.verifier.verify::<Commit>(c);
            #[cfg(feature = "teeth")]
            let verified = if crate::teeth::active(crate::teeth::Tooth::CommitSignatureNotChecked) {
                self.verifier.decode_unverified::<Commit>(c)
            } else {
                verified
            };
            let Ok(v) = verified else {
                return Err(Refusal::BatchesCertificateBadSignature);
            };
            if v.seq != cb.seq || v.digest != digest {
                return Err(Refusal::BatchesCertificateMismatch);
            }
            if *view.get_or_insert(v.view) != v.view {
                return Err(Refusal::BatchesCertificateMixesViews);
            }
            if signers.insert(v.signer()) {
                certificate.push(c.clone());
            }
        }
        let counted = signers.len();
        #[cfg(feature = "teeth")]
        let counted = if crate::teeth::active(crate::teeth::Tooth::SignersNotDeduplicated) {
            cb.certificate.len()
        } else {
            counted
        };
        if counted < self.cluster.quorum() {
            return Err(Refusal::BatchesCertificateBelowQuorum);
        }
        let batch = Batch::decode(&cb.batch).map_err(|_| Refusal::BatchesMalformedBatch)?;
        if !self.signatures_hold(&batch) {
            return Err(Refusal::BatchesBadlySignedTx);
        }
        Ok(CommittedEntry {
            digest,
            batch: Arc::new(batch),
            bytes: cb.batch.clone().into(),
            certificate,
        })
    }
}
