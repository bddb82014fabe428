//! The double-sign guard: a replica never signs two different votes of one
//! kind for one (view, seq), even across restarts (TESTING.md S7), and signs
//! none in views whose votes a crash or a lost store erased.

use super::*;

/// Kinds of vote in the double-sign guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum VoteKind {
    PrePrepare,
    Prepare,
    Commit,
}

/// Every vote this replica signed that could still matter, and the views
/// it must sit out.
#[derive(Clone, Debug, Default)]
pub(super) struct VoteGuard {
    /// The digest of each vote signed, by (kind, view, seq): only for views
    /// from the current one up and seqs above the stable checkpoint
    /// (bounded by `3 (2L + 1) 2`, see `Replica::footprint_limits`). One
    /// (kind, view, seq) never gets a second digest ([`VoteGuard::record`]).
    pub(super) votes: BTreeMap<(VoteKind, View, Seq), Digest>,
    /// The view this replica was in when it stopped without saving its
    /// PRE-PREPAREs and PREPAREs (`Recovered::votes_lost`). It sends no new
    /// ones in that view, so it never contradicts one it forgot: it takes
    /// part there only through COMMITs (whose prepared certificates are
    /// persisted before they are sent) until the next view.
    pub(super) forgotten_view: Option<View>,
    /// The view up to which this replica sends no COMMIT either: its store
    /// was lost (`Recovered::store_lost`), COMMITs with it.
    pub(super) forgotten_commits: Option<View>,
}

impl VoteGuard {
    /// Records a vote about to be signed; a conflicting one here is a bug
    /// in replica `me`, not peer misbehaviour.
    pub(super) fn record(
        &mut self,
        me: ReplicaId,
        kind: VoteKind,
        view: View,
        seq: Seq,
        digest: Digest,
    ) {
        if let Some(prev) = self.votes.insert((kind, view, seq), digest) {
            assert_eq!(
                prev, digest,
                "replica {me} would sign two different {kind:?} votes for {view:?} {seq:?}"
            );
        }
    }

    /// Learns a vote signed before a restart (no check: a store holds one
    /// vote per (kind, view, seq)).
    pub(super) fn restore(&mut self, kind: VoteKind, view: View, seq: Seq, digest: Digest) {
        self.votes.insert((kind, view, seq), digest);
    }

    /// Forgets one vote (only tooth `equivocation-guard-off` does).
    pub(super) fn forget(&mut self, kind: VoteKind, view: View, seq: Seq) {
        self.votes.remove(&(kind, view, seq));
    }

    /// Whether signing `kind` for `(view, seq)` with `digest` would conflict
    /// with a vote already signed (possibly before a restart).
    pub(super) fn conflicts(&self, kind: VoteKind, view: View, seq: Seq, digest: Digest) -> bool {
        self.votes
            .get(&(kind, view, seq))
            .is_some_and(|d| *d != digest)
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

    /// Sits out every view up to `view` (and, with `commits`, signs no
    /// COMMIT there either). Returns false if that was known already.
    pub(super) fn abstain_through(&mut self, view: View, commits: bool) -> bool {
        let known = self.forgotten_view.is_some_and(|f| f >= view)
            && (!commits || self.forgotten_commits.is_some_and(|f| f >= view));
        if known {
            return false;
        }
        self.forgotten_view = self.forgotten_view.max(Some(view));
        if commits {
            self.forgotten_commits = self.forgotten_commits.max(Some(view));
        }
        true
    }

    /// Forgets the votes at or below the stable checkpoint `seq`.
    pub(super) fn forget_through(&mut self, seq: Seq) {
        self.votes.retain(|(_, _, s), _| *s > seq);
    }

    /// Forgets the votes of views below `view`: we never sign there again.
    pub(super) fn forget_views_before(&mut self, view: View) {
        self.votes.retain(|(_, v, _), _| *v >= view);
    }

    /// The highest seq we signed a PRE-PREPARE for in `view`.
    pub(super) fn highest_pre_prepare(&self, view: View) -> Option<Seq> {
        self.votes
            .keys()
            .filter(|(kind, v, _)| *kind == VoteKind::PrePrepare && *v == view)
            .map(|(_, _, seq)| *seq)
            .max()
    }

    pub(super) fn len(&self) -> usize {
        self.votes.len()
    }
}

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
        self.guard.record(self.me, kind, view, seq, digest);
        self.key.sign(self.verifier.network(), self.me, value)
    }

    /// Sends no new PRE-PREPARE or PREPARE in views up to `view`, durably
    /// (the `Persist` precedes every later send).
    pub(super) fn abstain_through(&mut self, view: View, commits: bool) {
        if !self.guard.abstain_through(view, commits) {
            return;
        }
        self.actions
            .push_back(Action::Persist(vec![PersistOp::Abstain { view, commits }]));
    }

    /// Our PRE-PREPAREs (with their batches) and PREPAREs of the current
    /// view, which are never written while the replica runs (the double-sign
    /// guard needs them only across a restart, see `forgotten_view`). A
    /// driver stopping cleanly persists them, so the restarted replica keeps
    /// voting in the view.
    pub fn unsaved_votes(&self) -> Vec<PersistOp> {
        self.log.unsaved_votes(self.me, self.view)
    }
}
