//! The double-sign guard: a replica never signs two different votes of one
//! kind for one (view, seq), even across restarts (TESTING.md S7), and signs
//! none in views whose votes a crash or a lost store erased.

use super::*;

impl Replica {
    /// Signs a vote after checking the double-sign guard; a conflicting vote
    /// here is a bug in this replica, not peer misbehaviour.
    pub(super) fn sign_vote<T: Payload>(
        &mut self,
        kind: VoteKind,
        view: View,
        seq: Seq,
        digest: Digest,
        value: T,
    ) -> Verified<T> {
        if let Some(prev) = self.votes.insert((kind, view, seq), digest) {
            assert_eq!(
                prev, digest,
                "replica {} would sign two different {kind:?} votes for {view:?} {seq:?}",
                self.me
            );
        }
        self.key.sign(self.verifier.network(), self.me, value)
    }

    /// Sends no new PRE-PREPARE or PREPARE in views up to `view`, durably
    /// (the `Persist` precedes every later send).
    pub(super) fn abstain_through(&mut self, view: View, commits: bool) {
        let known = self.forgotten_view.is_some_and(|f| f >= view)
            && (!commits || self.forgotten_commits.is_some_and(|f| f >= view));
        if known {
            return;
        }
        self.forgotten_view = self.forgotten_view.max(Some(view));
        if commits {
            self.forgotten_commits = self.forgotten_commits.max(Some(view));
        }
        self.actions
            .push_back(Action::Persist(vec![PersistOp::Abstain { view, commits }]));
    }

    /// Whether we may sign a COMMIT in `view`: not in a view whose COMMITs
    /// a lost store erased.
    pub(super) fn may_commit_in(&self, view: View) -> bool {
        self.forgotten_commits.is_none_or(|f| view > f)
    }

    /// Whether we may sign a PRE-PREPARE or PREPARE we have not signed
    /// before in `view`: not in a view whose such votes a crash erased.
    pub(super) fn may_vote_afresh(&self, view: View) -> bool {
        self.forgotten_view.is_none_or(|f| view > f)
    }

    /// Our PRE-PREPAREs (with their batches) and PREPAREs of the current
    /// view, which are never written while the replica runs (the double-sign
    /// guard needs them only across a restart, see `forgotten_view`). A
    /// driver stopping cleanly persists them, so the restarted replica keeps
    /// voting in the view.
    pub fn unsaved_votes(&self) -> Vec<PersistOp> {
        let mut ops = Vec::new();
        for slot in self.slots.values().filter(|s| s.view == self.view) {
            if let Some((pre_prepare, batch)) = slot.own_pre_prepare(self.me) {
                ops.push(PersistOp::PrePrepare { pre_prepare, batch });
            }
            if let Some(p) = slot.prepares.get(&self.me) {
                ops.push(PersistOp::Prepare(p.signed().clone()));
            }
        }
        ops
    }

    /// Whether signing `kind` for `(view, seq)` with `digest` would conflict
    /// with a vote already signed (possibly before a restart).
    pub(super) fn vote_conflicts(
        &self,
        kind: VoteKind,
        view: View,
        seq: Seq,
        digest: Digest,
    ) -> bool {
        self.votes
            .get(&(kind, view, seq))
            .is_some_and(|d| *d != digest)
    }
}
