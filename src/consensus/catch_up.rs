//! Catch-up: everything that makes a replica notice it is behind, and
//! the fetch that brings it level (PBFT §4.3's state transfer, by batches).
//!
//! Evidence that peers are ahead: 2f+1 matching COMMITs above our height or
//! window (`note_far_commit`, `note_commit_quorum`), f+1 replicas showing by
//! CHECKPOINTs that they executed further (`note_progress`), a stable
//! checkpoint we have not executed, a NEW-VIEW above our window, and, when
//! the request timer finds us stuck, f+1 matching COMMITs (`stuck_below`).
//! After a restart nothing may show it on an idle network, so the replica
//! probes (`probe_for_missed_batches`). A peer that suspects the view we are
//! making progress in is probably behind: we help it (`help_lagging`).
//!
//! Fetching: peers are asked in turn for ranges of committed batches; every
//! batch must come with a commit certificate of 2f+1 COMMITs from distinct
//! replicas over that exact batch digest, so no single peer is trusted. A
//! fetch that stalls for a retransmission interval ([`Timer::Fetch`]) moves
//! on to the next peer.

use super::messages::{Commit, CommittedBatch, Message};
use super::timers::Timer;
use super::{teeth, Action, CommittedEntry, Refusal, Replica};
use crate::crypto::{Digest, Verified};
use crate::tx::{batch_digest, Batch, BATCH_BYTES_MAX};
use crate::types::{ReplicaId, Seq};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Catch-up in progress: asking peers for committed batches up to `target`.
#[derive(Clone, Debug)]
pub(super) struct Fetch {
    pub(super) target: Seq,
    pub(super) peer_cursor: u32,
    /// `Some(peers silent in a row)` while probing after a restart for
    /// batches committed while we were down (`Replica::probe_for_missed_batches`):
    /// the target moves on with every range that arrives, and the probe ends
    /// once every peer let a retransmission timeout pass without one.
    pub(super) probe: Option<u32>,
}

/// What shows this replica behind its peers, and the fetch that brings it
/// level.
#[derive(Clone, Debug, Default)]
pub(super) struct CatchUp {
    /// Highest seq we saw 2f+1 matching COMMITs for (committed somewhere).
    pub(super) known_committed: Seq,
    /// Highest seq we saw f+1 matching COMMITs for: prepared at a correct
    /// replica, so likely committed there. Checked only when the request
    /// timer finds us stuck, as a reason to fetch.
    pub(super) weakly_committed: Seq,
    /// COMMITs seen above our window, as evidence we are behind: the
    /// highest [`FAR_COMMIT_SEQS`] seqs above our height, one digest per
    /// signer each.
    pub(super) far_commits: BTreeMap<Seq, BTreeMap<ReplicaId, Digest>>,
    /// (peer, our height) pairs we already helped after a SUSPECT (at most
    /// `4n`).
    pub(super) lagging_answered: BTreeSet<(ReplicaId, Seq)>,
    /// The fetch in progress; [`Timer::Fetch`] runs exactly while it is
    /// `Some` (`Replica::check_invariants`).
    pub(super) fetch: Option<Fetch>,
    /// Checked committed batches above our height, waiting for their turn
    /// to execute (within `Config::fetch_window` of our height).
    pub(super) fetched: BTreeMap<Seq, CommittedEntry>,
    /// Highest seq each replica has shown, by a CHECKPOINT, that it executed
    /// (bounded by `n`).
    pub(super) progress_claims: BTreeMap<ReplicaId, Seq>,
}

/// Seqs of far COMMITs kept (the highest).
const FAR_COMMIT_SEQS: usize = 4;

impl CatchUp {
    /// Keeps a COMMIT above our window; `quorum` (2f+1) matching ones for a
    /// seq mean it committed, `weak` (f+1) that it prepared at a correct
    /// replica. Keeps at most [`FAR_COMMIT_SEQS`] seqs, all above our
    /// height `executed`.
    pub(super) fn note_far_commit(
        &mut self,
        c: &Verified<Commit>,
        quorum: usize,
        weak: usize,
        executed: Seq,
    ) {
        let votes = self.far_commits.entry(c.seq).or_default();
        votes.insert(c.signer(), c.digest);
        let matching = votes.values().filter(|d| **d == c.digest).count();
        if matching >= quorum {
            self.known_committed = self.known_committed.max(c.seq);
        }
        if matching >= weak {
            self.weakly_committed = self.weakly_committed.max(c.seq);
        }
        while self.far_commits.len() > FAR_COMMIT_SEQS {
            self.far_commits.pop_first();
        }
        self.far_commits.retain(|s, _| *s > executed);
    }

    /// Remembers the highest seq `replica` has shown progress on.
    pub(super) fn note_progress(&mut self, replica: ReplicaId, seq: Seq) {
        let claim = self.progress_claims.entry(replica).or_default();
        *claim = (*claim).max(seq);
    }

    /// The highest seq at least `weak` (f+1) replicas, so at least one
    /// correct one, have shown by a CHECKPOINT that they executed.
    pub(super) fn claimed_progress(&self, weak: usize) -> Seq {
        let mut claims: Vec<Seq> = self.progress_claims.values().copied().collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        claims.get(weak - 1).copied().unwrap_or_default()
    }

    /// Whether `peer` is still to be helped at our height `height`;
    /// remembers that it is (keeping at most `4n` pairs, the newest).
    pub(super) fn first_help(&mut self, peer: ReplicaId, height: Seq, n: usize) -> bool {
        if !self.lagging_answered.insert((peer, height)) {
            return false;
        }
        if self.lagging_answered.len() > 4 * n {
            let oldest = *self.lagging_answered.iter().next().expect("non-empty");
            self.lagging_answered.remove(&oldest);
        }
        true
    }
}

impl Replica {
    /// Starts (or extends) catching up to `target`.
    pub(super) fn start_fetch(&mut self, target: Seq) {
        if target <= self.log.last_executed {
            return;
        }
        match &mut self.catch_up.fetch {
            Some(f) if f.target >= target => return,
            Some(f) => {
                // Evidence of a real target: no longer a probe that may end.
                f.target = target;
                f.probe = None;
            }
            None => {
                self.catch_up.fetch = Some(Fetch {
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
        if self.catch_up.fetch.is_some() {
            return;
        }
        self.catch_up.fetch = Some(Fetch {
            target: Seq(self.log.last_executed.0 + self.cfg.fetch_batches_max),
            peer_cursor: self.me.0,
            probe: Some(0),
        });
        self.send_fetch();
    }

    /// Ends catching up (the fetch timer runs exactly while it goes on).
    pub(super) fn end_fetch(&mut self) {
        self.catch_up.fetch = None;
        self.timers.stop(Timer::Fetch);
    }

    /// Asks the next peer for the next range of committed batches.
    fn send_fetch(&mut self) {
        let n = self.cluster.n();
        let from = self.log.last_executed.next();
        let Some(f) = self.catch_up.fetch.as_mut() else {
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
            .catch_up
            .fetch
            .as_ref()
            .is_some_and(|f| f.target <= self.log.last_executed)
        {
            self.end_fetch();
            return;
        }
        let peers = self.cluster.n() - 1;
        if let Some(f) = self.catch_up.fetch.as_mut() {
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
        if self.catch_up.fetch.is_none() {
            return self.ignore(Refusal::BatchesNotFetching);
        }
        let limit = Seq(self.log.last_executed.0 + self.cfg.fetch_window());
        let mut accepted = 0;
        for cb in batches
            .into_iter()
            .take(self.cfg.fetch_batches_max as usize)
        {
            if cb.seq <= self.log.last_executed
                || cb.seq > limit
                || self.catch_up.fetched.contains_key(&cb.seq)
            {
                continue;
            }
            match self.check_committed_batch(&cb) {
                Ok(entry) => {
                    self.catch_up.fetched.insert(cb.seq, entry);
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
            if let Some(silent) = self.catch_up.fetch.as_mut().and_then(|f| f.probe.as_mut()) {
                *silent = 0;
            }
        }
        let before = self.log.last_executed;
        self.try_execute();
        if self.log.last_executed > before {
            if let Some(f) = &self.catch_up.fetch {
                if f.target > self.log.last_executed {
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
            let Ok(v) = teeth::verify_commit(&self.verifier, c) else {
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
        let counted = teeth::signers_counted(signers.len(), cb.certificate.len());
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

    /// Keeps a COMMIT above our window; 2f+1 matching ones for a seq mean we
    /// are behind. At most `FAR_COMMIT_SEQS` seqs are kept (the highest).
    pub(super) fn note_far_commit(&mut self, c: &Verified<Commit>) {
        self.catch_up.note_far_commit(
            c,
            self.cluster.quorum(),
            self.cluster.weak_quorum(),
            self.log.last_executed,
        );
    }

    /// 2f+1 matching COMMITs prove `seq` committed at a correct replica, even
    /// if we never saw its PRE-PREPARE: evidence that we may be behind.
    ///
    /// f+1 matching COMMITs for a digest other than the PRE-PREPARE we hold
    /// mean a correct replica prepared that digest, so ours can never commit
    /// in this view: the primary equivocated and showed us the losing side.
    /// We fetch the seq (a peer that commits it serves it with its 2f+1
    /// certificate) instead of waiting for a view change nobody else needs.
    pub(super) fn note_commit_quorum(&mut self, seq: Seq) {
        let Some(slot) = self.log.slots.get(&seq) else {
            return;
        };
        if seq <= self.catch_up.known_committed || seq <= self.log.last_executed {
            return;
        }
        let ours = slot.pre_prepare.as_ref().map(|p| p.digest);
        let mut counts: BTreeMap<Digest, usize> = BTreeMap::new();
        for c in slot.commits.values() {
            *counts.entry(c.digest).or_default() += 1;
        }
        if ours.is_none() && counts.values().any(|n| *n >= self.cluster.quorum()) {
            self.catch_up.known_committed = seq;
        }
        if counts.values().any(|n| *n >= self.cluster.weak_quorum()) {
            self.catch_up.weakly_committed = self.catch_up.weakly_committed.max(seq);
        }
        let lost = counts
            .iter()
            .any(|(d, n)| Some(*d) != ours && ours.is_some() && *n >= self.cluster.weak_quorum());
        if lost {
            self.ignore(Refusal::CommitOtherDigestFetching);
            self.start_fetch(seq);
        }
    }

    /// The highest seq we know committed somewhere: f+1 CHECKPOINTs, 2f+1
    /// COMMITs, or a slot we committed ourselves beyond a gap.
    pub(super) fn catch_up_target(&self) -> Seq {
        self.catch_up
            .claimed_progress(self.cluster.weak_quorum())
            .max(self.catch_up.known_committed)
            .max(self.log.committed_above_gap())
    }

    pub(super) fn behind_peers(&self) -> bool {
        self.catch_up_target() > self.log.last_executed
    }

    /// When the request timer finds us stuck: the highest seq that f+1
    /// COMMITs show prepared at a correct replica, if we have not executed
    /// it (we may have missed its PRE-PREPARE for good).
    pub(super) fn stuck_below(&self) -> Option<Seq> {
        let in_window = self.log.weakly_committed_above(self.cluster.weak_quorum());
        let target = self.catch_up.weakly_committed.max(in_window);
        (target > self.log.last_executed).then_some(target)
    }

    /// A peer suspects the view we are making progress in: it is probably
    /// behind. Send it our stable checkpoint proof (to move its window) and
    /// our COMMIT for the highest seq we committed (with the others' it forms
    /// a commit quorum, evidence to fetch from). Once per peer and height.
    pub(super) fn help_lagging(&mut self, peer: ReplicaId) {
        let n = self.cluster.n() as usize;
        if !self.catch_up.first_help(peer, self.log.last_executed, n) {
            return;
        }
        for c in self.log.stable_proof.clone() {
            self.actions.push_back(Action::Send {
                to: peer,
                message: Message::Checkpoint(c),
            });
        }
        if let Some(c) = self.log.latest_own_commit(self.me) {
            self.actions.push_back(Action::Send {
                to: peer,
                message: Message::Commit(c),
            });
        }
    }
}
