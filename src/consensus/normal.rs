//! Normal-case operation (PBFT §4.2): PRE-PREPARE, PREPARE, COMMIT, and
//! execution in seq order.
//!
//! * A backup accepts a PRE-PREPARE for `(v, n)` only from the primary of `v`,
//!   for `n` inside the watermark window, whose batch bytes hash to the signed
//!   digest and hold only correctly signed transactions, and only if it has not
//!   accepted another digest for `(v, n)`. It then persists and broadcasts its
//!   PREPARE.
//! * *Prepared*: the PRE-PREPARE plus 2f matching PREPAREs from distinct
//!   backups. The certificate is persisted (a later VIEW-CHANGE must carry it)
//!   together with our COMMIT, before the COMMIT is sent.
//! * *Committed-local*: prepared plus 2f+1 matching COMMITs from distinct
//!   replicas. Those COMMITs are the block's commit certificate.
//! * Execution is strictly in seq order; a committed seq waits for its
//!   predecessors.

use super::messages::{Commit, Message, PrePrepare, Prepare, PreparedProof};
use super::timers::Timer;
use super::{teeth, Action, Config, PersistOp, Refusal, Replica, Status, VoteKind};
use crate::crypto::{Digest, Verified};
use crate::tx::{batch_digest, Batch, BATCH_BYTES_MAX};
use crate::types::{ReplicaId, Seq};
use std::sync::Arc;

/// The normal case's own retransmission: re-send our votes when
/// [`Timer::VoteRetransmit`] fires if nothing executed since `mark`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct VoteRetransmit {
    /// Our height when the timer was armed.
    pub(super) mark: Seq,
    /// Expiries in a row that found no progress: the interval doubles with
    /// each ([`VoteRetransmit::interval_ms`]).
    pub(super) streak: u32,
}

impl VoteRetransmit {
    /// The retransmission interval, doubled per fruitless expiry, at most
    /// the request timeout.
    pub(super) fn interval_ms(&self, cfg: &Config) -> u64 {
        let shift = self.streak.min(20);
        cfg.retransmit_ms
            .saturating_mul(1 << shift)
            .min(cfg.request_timeout_ms)
    }
}

impl Replica {
    /// After our window moved: vote for the entries held above the old one
    /// (current view, PRE-PREPARE held, no PREPARE of ours yet).
    pub(super) fn vote_held_entries(&mut self) {
        let view = self.view;
        let held: Vec<(Seq, Digest)> = self
            .log
            .slots
            .iter()
            .filter(|(seq, slot)| {
                slot.view == view
                    && !slot.sent_commit
                    && self.log.may_vote_at(**seq)
                    && !slot.prepares.contains_key(&self.me)
            })
            .filter_map(|(seq, slot)| slot.pre_prepare.as_ref().map(|pp| (*seq, pp.digest)))
            .collect();
        let backup = self.cluster.primary(view) != self.me && self.guard.may_vote_afresh(view);
        for (seq, digest) in held {
            if backup && !self.guard.conflicts(VoteKind::Prepare, view, seq, digest) {
                let prepare = self.sign_vote(
                    VoteKind::Prepare,
                    view,
                    seq,
                    digest,
                    Prepare { view, seq, digest },
                );
                self.actions.push_back(Action::Broadcast(Message::Prepare(
                    prepare.signed().clone(),
                )));
                let me = self.me;
                self.log
                    .slot_mut(seq, self.view)
                    .prepares
                    .insert(me, prepare);
            }
            self.check_prepared(seq);
        }
    }

    pub(super) fn on_pre_prepare(
        &mut self,
        from: ReplicaId,
        pp: Verified<PrePrepare>,
        batch_bytes: Vec<u8>,
    ) {
        let (view, seq, digest) = (pp.view, pp.seq, pp.digest);
        if pp.signer() != self.cluster.primary(view) || from != pp.signer() {
            return self.ignore(Refusal::PrePrepareNotFromPrimary);
        }
        if !self.log.in_window(seq) {
            let top = self.log.high_watermark();
            if seq > top && seq.0 <= top.0.saturating_add(self.cfg.checkpoint_interval) {
                return self.keep_above_window(from, pp, batch_bytes);
            }
            return self.ignore(Refusal::PrePrepareOutsideWindow);
        }
        if teeth::equivocation_guard_off()
            && self
                .log
                .slots
                .get(&seq)
                .and_then(|s| s.pre_prepare.as_ref())
                .is_some_and(|p| p.digest != digest)
        {
            // Broken on purpose: the conflicting PRE-PREPARE replaces the one
            // we accepted, and the double-sign guard forgets our PREPARE.
            if let Some(batch) = self.check_fresh_batch(&batch_bytes, digest) {
                self.guard.forget(VoteKind::Prepare, view, seq);
                self.accept_pre_prepare(pp, Arc::new(batch), batch_bytes.into());
            }
            return;
        }
        if self
            .log
            .slots
            .get(&seq)
            .is_some_and(|s| s.pre_prepare.is_some())
        {
            let same = self.log.slots[&seq]
                .pre_prepare
                .as_ref()
                .is_some_and(|p| p.digest == digest);
            if same {
                // The primary re-sent it: it may lack our votes.
                self.answer_retransmission(from, seq);
                return self.ignore(Refusal::PrePrepareDuplicate);
            }
            return self.ignore(Refusal::PrePrepareEquivocation);
        }
        if self.guard.conflicts(VoteKind::Prepare, view, seq, digest) {
            return self.ignore(Refusal::PrePrepareConflictsWithOurPrepare);
        }
        let Some(batch) = self.check_fresh_batch(&batch_bytes, digest) else {
            return;
        };
        let now = self.now;
        self.accept_pre_prepare(pp, Arc::new(batch), batch_bytes.into());
        if let Some(slot) = self.log.slots.get_mut(&seq) {
            slot.pre_prepared_at = Some(now);
        }
    }

    /// Validates the batch of a fresh (normal-case) PRE-PREPARE.
    fn check_fresh_batch(&mut self, bytes: &[u8], digest: Digest) -> Option<Batch> {
        if bytes.len() > BATCH_BYTES_MAX {
            self.ignore(Refusal::PrePrepareBatchTooLarge);
            return None;
        }
        if batch_digest(bytes) != digest {
            self.ignore(Refusal::PrePrepareDigestMismatch);
            return None;
        }
        let Ok(batch) = Batch::decode(bytes) else {
            self.ignore(Refusal::PrePrepareMalformedBatch);
            return None;
        };
        if batch.txs.is_empty() || batch.txs.len() > self.cfg.batch_txs_max {
            self.ignore(Refusal::PrePrepareBatchSizeOutOfBounds);
            return None;
        }
        let now_ms = self.wall_ms();
        if batch.timestamp_ms.abs_diff(now_ms) > self.cfg.timestamp_skew_max_ms {
            self.ignore(Refusal::PrePrepareClockSkew);
            return None;
        }
        if !self.signatures_hold(&batch) {
            self.ignore(Refusal::PrePrepareBadlySignedTx);
            return None;
        }
        Some(batch)
    }

    /// Records an accepted PRE-PREPARE (fresh or from a NEW-VIEW) and, as a
    /// backup, prepares it and sends the PREPARE.
    pub(super) fn accept_pre_prepare(
        &mut self,
        pp: Verified<PrePrepare>,
        batch: Arc<Batch>,
        bytes: Arc<[u8]>,
    ) {
        if let Some(prepare) = self.record_pre_prepare(pp, batch, bytes) {
            self.actions
                .push_back(Action::Broadcast(Message::Prepare(prepare)));
        }
    }

    /// Stores the PRE-PREPARE in its slot and signs our PREPARE (backups
    /// only, and not in a view whose votes a crash erased). The caller sends
    /// it. It is not persisted: the double-sign guard survives a crash by
    /// `forgotten_view`, a clean stop by [`Replica::unsaved_votes`].
    pub(super) fn record_pre_prepare(
        &mut self,
        pp: Verified<PrePrepare>,
        batch: Arc<Batch>,
        bytes: Arc<[u8]>,
    ) -> Option<crate::crypto::Signed<Prepare>> {
        let (view, seq, digest) = (pp.view, pp.seq, pp.digest);
        let prepare_it = self.cluster.primary(view) != self.me
            && self.guard.may_vote_afresh(view)
            && self.log.may_vote_at(seq);
        if view == self.view {
            self.requests.pending.mark_proposed(&batch.txs);
        }
        let slot = self.log.slot_mut(seq, self.view);
        slot.pre_prepare = Some(pp);
        slot.batch = Some((batch, bytes));
        let mut out = None;
        if prepare_it {
            let prepare = self.sign_vote(
                VoteKind::Prepare,
                view,
                seq,
                digest,
                Prepare { view, seq, digest },
            );
            out = Some(prepare.signed().clone());
            let me = self.me;
            self.log
                .slot_mut(seq, self.view)
                .prepares
                .insert(me, prepare);
        }
        self.check_prepared(seq);
        out
    }

    pub(super) fn on_prepare(&mut self, p: Verified<Prepare>) {
        let (view, seq) = (p.view, p.seq);
        if p.signer() == self.cluster.primary(view) {
            return self.ignore(Refusal::PrepareFromPrimary);
        }
        if !self.log.in_window(seq) {
            return self.ignore(Refusal::PrepareOutsideWindow);
        }
        let signer = p.signer();
        let slot = self.log.slot_mut(seq, self.view);
        if let Some(prev) = slot.prepares.get(&signer) {
            if prev.digest == p.digest {
                self.answer_retransmission(signer, seq);
                return self.ignore(Refusal::PrepareDuplicate);
            }
            return self.ignore(Refusal::PrepareEquivocation);
        }
        slot.prepares.insert(signer, p);
        self.check_prepared(seq);
    }

    pub(super) fn on_commit(&mut self, c: Verified<Commit>) {
        let seq = c.seq;
        if seq > self.log.high_watermark() {
            // Evidence that this replica lags: a COMMIT that raises what we
            // know to be committed was worth its check.
            let known = (
                self.catch_up.known_committed,
                self.catch_up.weakly_committed,
            );
            self.note_far_commit(&c);
            let reason = Refusal::CommitAboveWindow;
            if (
                self.catch_up.known_committed,
                self.catch_up.weakly_committed,
            ) != known
            {
                return self.ignore_kept(reason);
            }
            return self.ignore(reason);
        }
        if !self.log.in_window(seq) {
            return self.ignore(Refusal::CommitOutsideWindow);
        }
        let signer = c.signer();
        let slot = self.log.slot_mut(seq, self.view);
        if let Some(prev) = slot.commits.get(&signer) {
            if prev.digest == c.digest {
                self.answer_retransmission(signer, seq);
                return self.ignore(Refusal::CommitDuplicate);
            }
            return self.ignore(Refusal::CommitEquivocation);
        }
        slot.commits.insert(signer, c);
        self.note_commit_quorum(seq);
        self.check_committed(seq);
    }

    /// A peer re-sent a vote for `seq`: it has not made progress there, so it
    /// may be missing ours. Send it our PREPARE and COMMIT for the slot.
    pub(super) fn answer_retransmission(&mut self, peer: ReplicaId, seq: Seq) {
        for message in self.log.answer_retransmission(peer, seq, self.me) {
            self.actions.push_back(Action::Send { to: peer, message });
        }
    }

    /// Nothing executed for a retransmission interval while work waits:
    /// re-send our votes of the view now, not only when the request timer
    /// fires. A message dropped for lying just above a replica's window
    /// (its stable checkpoint a message behind ours) is otherwise resent
    /// only after a whole request timeout: with `checkpoint_interval` 1
    /// and a window of 2, each such drop stalled the network for one (the
    /// property test of the configuration ranges found it, at request
    /// timeouts of minutes). The interval doubles while nothing executes,
    /// up to the request timeout, so a long stall costs few resends.
    pub(super) fn on_vote_retransmit_timer(&mut self) {
        if self.status != Status::Normal
            || !self.has_work()
            || self.log.last_executed != self.vote_retransmit.mark
        {
            self.vote_retransmit.streak = 0;
            return;
        }
        self.vote_retransmit.streak = self.vote_retransmit.streak.saturating_add(1);
        self.retransmit_votes();
    }

    /// Re-broadcasts our own votes for every uncommitted slot of this view
    /// (and restarts the normal-case retransmission interval).
    pub(super) fn retransmit_votes(&mut self) {
        self.timers.stop(Timer::VoteRetransmit);
        let mut out = self.log.own_votes_to_resend(self.me, self.view);
        // Our latest checkpoint, if it is not stable yet: peers may have lost
        // our CHECKPOINT in a crash, and without 2f+1 of them the window
        // never moves (an omission seed churned through 100 views with the
        // window full, the replicas that had executed first having sent
        // their CHECKPOINTs before the others restarted).
        if let Some((&seq, &digest)) = self.checkpoints.own.last_key_value() {
            if seq > self.log.low {
                let ckpt = self.sign(super::messages::Checkpoint { seq, digest });
                out.push(Message::Checkpoint(ckpt.signed().clone()));
            }
        }
        for m in out {
            self.actions.push_back(Action::Broadcast(m));
        }
    }

    /// Prepared = PRE-PREPARE + 2f matching PREPAREs from distinct backups.
    pub(super) fn check_prepared(&mut self, seq: Seq) {
        let quorum = teeth::quorum(self.cluster.quorum());
        let Some(slot) = self.log.slots.get(&seq) else {
            return;
        };
        if slot.sent_commit {
            return;
        }
        let Some(pp) = &slot.pre_prepare else {
            return;
        };
        let (view, digest) = (pp.view, pp.digest);
        let matching: Vec<_> = slot
            .prepares
            .values()
            .filter(|p| p.digest == digest && p.view == view)
            .map(|p| p.signed().clone())
            .take(quorum - 1)
            .collect();
        if matching.len() < quorum - 1 {
            return;
        }
        if !self.log.may_vote_at(seq) {
            // Held until our window reaches it (`vote_held_entries`).
            return;
        }
        if !self.guard.may_commit_in(view) {
            // A lost store may have held a COMMIT of ours for another
            // digest here; we catch up by fetching instead.
            return;
        }
        if self.guard.conflicts(VoteKind::Commit, view, seq, digest) {
            return self.ignore(Refusal::PreparedConflictsWithOurCommit);
        }
        let bytes = slot
            .batch
            .as_ref()
            .expect("pre-prepare kept with its batch")
            .1
            .clone();
        let proof = PreparedProof {
            pre_prepare: pp.signed().clone(),
            prepares: matching,
            batch: bytes.to_vec(),
        };
        let commit = self.sign_vote(
            VoteKind::Commit,
            view,
            seq,
            digest,
            Commit { view, seq, digest },
        );
        let slot = self.log.slots.get_mut(&seq).expect("slot exists");
        slot.sent_commit = true;
        slot.prepared = Some((view, proof.clone()));
        slot.commits.insert(self.me, commit.clone());
        self.actions.push_back(Action::Persist(vec![
            PersistOp::Prepared(proof),
            PersistOp::Commit(commit.signed().clone()),
        ]));
        self.actions
            .push_back(Action::Broadcast(Message::Commit(commit.into_signed())));
        self.check_committed(seq);
    }

    /// Committed-local = prepared + 2f+1 matching COMMITs from distinct replicas.
    pub(super) fn check_committed(&mut self, seq: Seq) {
        let quorum = teeth::quorum(self.cluster.quorum());
        let Some(slot) = self.log.slots.get_mut(&seq) else {
            return;
        };
        let Some(entry) = slot.commit_certificate(quorum) else {
            return;
        };
        slot.committed = Some(entry);
        if let Some(at) = slot.pre_prepared_at {
            self.monitor.sample_round(self.now, at);
        }
        self.try_execute();
    }

    /// Hands committed batches to the driver strictly in seq order.
    pub(super) fn try_execute(&mut self) {
        let mut progressed = false;
        loop {
            let seq = self.log.last_executed.next();
            let entry = match self.log.slots.get(&seq).and_then(|s| s.committed.clone()) {
                Some(e) => e,
                None => match self.catch_up.fetched.remove(&seq) {
                    Some(e) => e,
                    None => break,
                },
            };
            self.catch_up.fetched.remove(&seq);
            for tx in &entry.batch.txs {
                self.requests.pending.executed(tx.from, tx.nonce);
            }
            self.log.last_executed = seq;
            self.stats.batches_executed += 1;
            progressed = true;
            self.actions.push_back(Action::Execute {
                seq,
                digest: entry.digest,
                batch: entry.batch,
                batch_bytes: entry.bytes,
                certificate: entry.certificate,
            });
        }
        if progressed {
            self.view_change.attempts = 0;
            // A replica catching up executes fetched batches that may not
            // hold the request yet: that is progress towards it.
            let censored = teeth::censored(self.timed_request_waits() && !self.behind_peers());
            if !censored {
                self.view_change.timer_strikes = 0;
                if !self.has_work() || self.status != Status::Normal {
                    self.timers.stop(Timer::Request);
                    self.requests.timed_request = None;
                } else {
                    self.start_request_timer();
                }
            }
            let next_range = Seq(self.log.last_executed.0 + self.cfg.fetch_batches_max);
            match self.catch_up.fetch.as_mut() {
                // A probe that reached its target asks for the next range.
                Some(f) if f.probe.is_some() => f.target = f.target.max(next_range),
                Some(f) if f.target <= self.log.last_executed => self.end_fetch(),
                _ => {}
            }
            self.try_propose();
        }
    }

    /// A digest for the null request that fills gaps in a new view.
    pub(super) fn null_batch() -> (Digest, Arc<Batch>, Arc<[u8]>) {
        let batch = Batch::null();
        let bytes: Arc<[u8]> = batch.encode().into();
        (batch_digest(&bytes), Arc::new(batch), bytes)
    }
}
