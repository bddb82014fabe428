//! The message log (PBFT §4.2–4.3): one [`Slot`] per seq inside the
//! watermark window `(h, h + L]`, the stable checkpoint `h` with its proof,
//! and the execution point.
//!
//! The log owns the window rules: which seqs a message may occupy
//! ([`Log::in_window`]), which ones this replica may vote at
//! ([`Log::may_vote_at`]), and what survives a view change in a slot
//! ([`Slot::reset_to`]). Why two bounds: a NEW-VIEW may place entries
//! above our window while we lag (`new_view_ceiling`); we hold them, but
//! vote for them only once our own window reaches them.

use super::messages::{Checkpoint, Commit, Message, PrePrepare, Prepare, PreparedProof};
use super::{PersistOp, VoteKind};
use crate::crypto::{Digest, Signed, Verified};
use crate::tx::Batch;
use crate::types::{ReplicaId, Seq, Time, View};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A committed batch waiting for (or past) execution.
#[derive(Clone, Debug)]
pub(super) struct CommittedEntry {
    pub(super) digest: Digest,
    pub(super) batch: Arc<Batch>,
    pub(super) bytes: Arc<[u8]>,
    pub(super) certificate: Vec<Signed<Commit>>,
}

/// One seq of the log, holding the current view's messages.
///
/// Every message it holds is for its `view` and its seq, and a PREPARE or
/// COMMIT is filed under its signer; a PRE-PREPARE is held with its batch
/// (see [`Log::check_invariants`]).
#[derive(Clone, Debug, Default)]
pub(super) struct Slot {
    pub(super) view: View,
    pub(super) pre_prepare: Option<Verified<PrePrepare>>,
    pub(super) batch: Option<(Arc<Batch>, Arc<[u8]>)>,
    pub(super) prepares: BTreeMap<ReplicaId, Verified<Prepare>>,
    pub(super) commits: BTreeMap<ReplicaId, Verified<Commit>>,
    pub(super) sent_commit: bool,
    /// Peers whose re-sent votes we answered since our own last retransmission
    /// (at most one answer each, so two replicas never bounce duplicates).
    pub(super) answered: BTreeSet<ReplicaId>,
    /// Prepared certificate from the highest view this replica prepared in.
    pub(super) prepared: Option<(View, PreparedProof)>,
    pub(super) committed: Option<CommittedEntry>,
    /// Signers whose vote arrived after it could matter and was neither
    /// checked nor kept (see `Replica::skip_late_vote`; at most 2n).
    pub(super) late: BTreeSet<(VoteKind, ReplicaId)>,
    /// When a backup accepted the primary's fresh PRE-PREPARE here (not
    /// one a NEW-VIEW carried): the start of the round the proposal
    /// monitor measures.
    pub(super) pre_prepared_at: Option<Time>,
}

impl Slot {
    /// Our PRE-PREPARE in this slot with its batch, if we are its primary.
    pub(super) fn own_pre_prepare(&self, me: ReplicaId) -> Option<(Signed<PrePrepare>, Vec<u8>)> {
        match (&self.pre_prepare, &self.batch) {
            (Some(pp), Some((_, bytes))) if pp.signer() == me => {
                Some((pp.signed().clone(), bytes.to_vec()))
            }
            _ => None,
        }
    }

    /// Drops the messages of an older view, keeping what survives a view
    /// change: the prepared certificate and a committed batch.
    pub(super) fn reset_to(&mut self, view: View) {
        let prepared = self.prepared.take();
        let committed = self.committed.take();
        *self = Slot {
            view,
            prepared,
            committed,
            ..Slot::default()
        };
    }

    /// The commit certificate, once this slot commits locally: prepared
    /// (our COMMIT sent) and `quorum` matching COMMITs (2f+1) for its
    /// PRE-PREPARE; `None` before, or if it committed already.
    pub(super) fn commit_certificate(&self, quorum: usize) -> Option<CommittedEntry> {
        if self.committed.is_some() || !self.sent_commit {
            return None;
        }
        let pp = self.pre_prepare.as_ref()?;
        let (view, digest) = (pp.view, pp.digest);
        let certificate: Vec<_> = self
            .commits
            .values()
            .filter(|c| c.digest == digest && c.view == view)
            .map(|c| c.signed().clone())
            .take(quorum)
            .collect();
        if certificate.len() < quorum {
            return None;
        }
        let (batch, bytes) = self.batch.clone().expect("pre-prepare kept with its batch");
        Some(CommittedEntry {
            digest,
            batch,
            bytes,
            certificate,
        })
    }

    /// Our own PREPARE and COMMIT held here (`me`'s), as messages.
    fn own_votes(&self, me: ReplicaId) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(p) = self.prepares.get(&me) {
            out.push(Message::Prepare(p.signed().clone()));
        }
        if let Some(c) = self.commits.get(&me) {
            out.push(Message::Commit(c.signed().clone()));
        }
        out
    }

    /// Whether f+1 (`weak`) COMMITs for one digest are in: prepared at a
    /// correct replica.
    fn weakly_committed(&self, weak: usize) -> bool {
        let mut counts: BTreeMap<Digest, usize> = BTreeMap::new();
        for c in self.commits.values() {
            *counts.entry(c.digest).or_default() += 1;
        }
        counts.values().any(|n| *n >= weak)
    }
}

/// The log: slots above the stable checkpoint, the checkpoint itself, and
/// how far execution got.
#[derive(Debug)]
pub(super) struct Log {
    /// `L`: the watermark window (`Config::watermark_window`).
    window: u64,
    /// `h`: the stable checkpoint. Only moves forward
    /// (`Replica::make_stable`); every slot lies above it.
    pub(super) low: Seq,
    /// 2f+1 matching CHECKPOINTs for `low` (empty at genesis).
    pub(super) stable_proof: Vec<Signed<Checkpoint>>,
    /// One slot per seq above `low`, at most up to [`Log::high_watermark`]
    /// (bounded by `2L + 1`, see `Replica::footprint_limits`); no slot holds
    /// a view above the replica's.
    pub(super) slots: BTreeMap<Seq, Slot>,
    /// Highest seq a NEW-VIEW may place above our window while we catch up.
    pub(super) new_view_ceiling: Seq,
    /// The last seq handed to the driver for execution: seqs execute
    /// strictly in order, each once.
    pub(super) last_executed: Seq,
}

impl Log {
    pub(super) fn new(window: u64, last_executed: Seq) -> Log {
        Log {
            window,
            low: Seq(0),
            stable_proof: Vec::new(),
            slots: BTreeMap::new(),
            new_view_ceiling: Seq(0),
            last_executed,
        }
    }

    /// `h + L`: the top of our own window.
    pub(super) fn window_top(&self) -> Seq {
        Seq(self.low.0 + self.window)
    }

    /// The highest seq we may hold a slot for: the window above the stable
    /// checkpoint, or what a NEW-VIEW placed there while we catch up.
    pub(super) fn high_watermark(&self) -> Seq {
        Seq((self.low.0 + self.window).max(self.new_view_ceiling.0))
    }

    pub(super) fn in_window(&self, seq: Seq) -> bool {
        seq > self.low && seq <= self.high_watermark()
    }

    /// Whether we may send our own PREPARE or COMMIT for `seq`: only inside
    /// `(h, h + L]` of our own stable checkpoint, the range our VIEW-CHANGE
    /// reports prepared certificates for. A NEW-VIEW may place entries above
    /// it while we lag (`new_view_ceiling`); we hold them, but vote for them
    /// only once our window has moved up to them (`vote_held_entries`) —
    /// otherwise a COMMIT of ours could help commit a seq that our next
    /// VIEW-CHANGE, bounded by our old window, would leave out (issue 17,
    /// defect 2).
    pub(super) fn may_vote_at(&self, seq: Seq) -> bool {
        seq.0 <= self.low.0.saturating_add(self.window)
    }

    /// The slot for `seq` in `view` (the replica's): created if missing,
    /// reset if it held an older view.
    pub(super) fn slot_mut(&mut self, seq: Seq, view: View) -> &mut Slot {
        let slot = self.slots.entry(seq).or_insert_with(|| Slot {
            view,
            ..Slot::default()
        });
        if slot.view < view {
            slot.reset_to(view);
        }
        slot
    }

    /// The slot for a restored vote of `view`, reset if it held an older
    /// view; `None` if it already holds a later view.
    pub(super) fn restored_slot(&mut self, seq: Seq, view: View) -> Option<&mut Slot> {
        let slot = self.slot_mut(seq, view);
        (slot.view == view).then_some(slot)
    }

    /// Slots of views older than `view` start afresh in it.
    pub(super) fn reset_older_slots(&mut self, view: View) {
        for slot in self.slots.values_mut() {
            if slot.view < view {
                slot.reset_to(view);
            }
        }
    }

    /// Moves the stable checkpoint to `seq` and drops the slots at or
    /// below it.
    pub(super) fn make_stable(&mut self, seq: Seq, proof: Vec<Signed<Checkpoint>>) {
        assert!(seq > self.low, "stable checkpoints only move forward");
        assert!(
            seq <= self.last_executed,
            "a stable checkpoint we have not executed"
        );
        self.low = seq;
        self.stable_proof = proof;
        self.slots.retain(|s, _| *s > seq);
    }

    /// Our prepared certificates inside `(h, h + L]`, for a VIEW-CHANGE.
    pub(super) fn prepared_proofs(&self) -> Vec<PreparedProof> {
        self.slots
            .range(self.low.next()..=self.window_top())
            .filter_map(|(_, slot)| slot.prepared.as_ref().map(|(_, p)| p.clone()))
            .collect()
    }

    /// Whether a slot above our height holds a PRE-PREPARE, or `weak`
    /// COMMITs (f+1: prepared at a correct replica).
    pub(super) fn awaits_execution(&self, weak: usize) -> bool {
        self.slots
            .range(self.last_executed.next()..)
            .any(|(_, slot)| slot.pre_prepare.is_some() || slot.commits.len() >= weak)
    }

    /// The highest seq above our height we committed ourselves, beyond a
    /// gap (`Seq(0)` if none).
    pub(super) fn committed_above_gap(&self) -> Seq {
        self.slots
            .range(self.last_executed.next()..)
            .filter(|(_, s)| s.committed.is_some())
            .map(|(seq, _)| *seq)
            .next_back()
            .unwrap_or_default()
    }

    /// The highest seq above our height with f+1 (`weak`) matching COMMITs
    /// (`Seq(0)` if none).
    pub(super) fn weakly_committed_above(&self, weak: usize) -> Seq {
        self.slots
            .range(self.last_executed.next()..)
            .filter(|(_, slot)| slot.weakly_committed(weak))
            .map(|(seq, _)| *seq)
            .next_back()
            .unwrap_or_default()
    }

    /// `peer` re-sent a vote for `seq`: our own votes there (`me`'s) to
    /// send it, at most once per peer between our own retransmissions.
    pub(super) fn answer_retransmission(
        &mut self,
        peer: ReplicaId,
        seq: Seq,
        me: ReplicaId,
    ) -> Vec<Message> {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return Vec::new();
        };
        if !slot.answered.insert(peer) {
            return Vec::new();
        }
        slot.own_votes(me)
    }

    /// Our own votes (`me`'s) of `view` for every seq above our height that
    /// has not committed, in seq order; every slot may answer each peer
    /// once again.
    pub(super) fn own_votes_to_resend(&mut self, me: ReplicaId, view: View) -> Vec<Message> {
        let mut out = Vec::new();
        let executed = self.last_executed;
        for (seq, slot) in self.slots.iter_mut() {
            slot.answered.clear();
            if slot.view != view || slot.committed.is_some() || *seq <= executed {
                continue;
            }
            if let Some((pre_prepare, batch)) = slot.own_pre_prepare(me) {
                out.push(Message::PrePrepare { pre_prepare, batch });
            }
            out.extend(slot.own_votes(me));
        }
        out
    }

    /// Our own PRE-PREPAREs (with their batches) and PREPAREs (`me`'s) of
    /// `view`, in seq order: what a clean stop persists
    /// (`Replica::unsaved_votes`).
    pub(super) fn unsaved_votes(&self, me: ReplicaId, view: View) -> Vec<PersistOp> {
        let mut ops = Vec::new();
        for slot in self.slots.values().filter(|s| s.view == view) {
            if let Some((pre_prepare, batch)) = slot.own_pre_prepare(me) {
                ops.push(PersistOp::PrePrepare { pre_prepare, batch });
            }
            if let Some(p) = slot.prepares.get(&me) {
                ops.push(PersistOp::Prepare(p.signed().clone()));
            }
        }
        ops
    }

    /// Our COMMIT (`me`'s) for the highest seq that committed here.
    pub(super) fn latest_own_commit(&self, me: ReplicaId) -> Option<Signed<Commit>> {
        self.slots
            .values()
            .rev()
            .filter(|s| s.committed.is_some())
            .find_map(|s| s.commits.get(&me).map(|c| c.signed().clone()))
    }

    /// Panics, naming the rule, if a slot is inconsistent; `view` is the
    /// replica's.
    pub(super) fn check_invariants(&self, me: ReplicaId, view: View) {
        if let Some((&first, _)) = self.slots.first_key_value() {
            assert!(
                first > self.low,
                "replica {me}: slot {first} at or below the stable checkpoint {}",
                self.low
            );
        }
        for (&seq, slot) in &self.slots {
            assert!(
                slot.view <= view,
                "replica {me}: slot {seq} holds view {} above ours",
                slot.view
            );
            assert_eq!(
                slot.pre_prepare.is_some(),
                slot.batch.is_some(),
                "replica {me}: slot {seq} holds a PRE-PREPARE without its batch or a batch without it"
            );
            if let Some(pp) = &slot.pre_prepare {
                assert!(
                    pp.view == slot.view && pp.seq == seq,
                    "replica {me}: slot {seq} holds a PRE-PREPARE for another view or seq"
                );
                if let Some(c) = &slot.committed {
                    assert_eq!(c.digest, pp.digest, "replica {me}: seq {seq} committed one batch and holds a PRE-PREPARE for another");
                }
            }
            for (signer, p) in &slot.prepares {
                assert!(
                    p.view == slot.view && p.seq == seq && p.signer() == *signer,
                    "replica {me}: slot {seq} holds a PREPARE for another view, seq or signer"
                );
            }
            for (signer, c) in &slot.commits {
                assert!(
                    c.view == slot.view && c.seq == seq && c.signer() == *signer,
                    "replica {me}: slot {seq} holds a COMMIT for another view, seq or signer"
                );
            }
            if let Some((prepared_in, _)) = &slot.prepared {
                assert!(
                    *prepared_in <= view,
                    "replica {me}: seq {seq} prepared in view {prepared_in}, above ours"
                );
            }
        }
    }
}
