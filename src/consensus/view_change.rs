//! View change (PBFT §4.4) and its liveness rules (§4.5.2).
//!
//! A backup that suspects the primary stops accepting messages of the current
//! view and broadcasts ⟨VIEW-CHANGE, v+1, n, C, P⟩: its stable checkpoint with
//! proof, and a prepared certificate for every seq it prepared above it. The
//! primary of v+1 gathers 2f+1 valid VIEW-CHANGEs and broadcasts ⟨NEW-VIEW,
//! v+1, V, O⟩, where O re-proposes, for every seq above the highest stable
//! checkpoint, the batch prepared in the highest view, and null requests for
//! the gaps. Why backups recompute O instead of trusting it: a Byzantine new
//! primary could otherwise omit a prepared (perhaps committed) request.
//!
//! Suspicion before view change: a backup whose request timer expires does
//! not leave the view at once; it broadcasts a signed ⟨SUSPECT, v⟩, keeps
//! working in `v`, and re-sends it each time the timer expires again. It
//! starts the view change when f+1 replicas (so at least one correct one)
//! suspect `v`. Why: in the paper a replica that timed out alone — because it
//! was partitioned, say — sends a VIEW-CHANGE nobody joins, and may never
//! return to the live view, since accepting messages of `v` after signing a
//! VIEW-CHANGE for `v+1` would be unsafe. Waiting for f+1 suspicions keeps
//! such a replica in the view (it catches up once it hears from the others),
//! and one Byzantine replica alone still cannot force a view change. Once
//! any view change is under way the paper's rules below apply unchanged.
//!
//! Liveness: a replica joins a view change once f+1 replicas ask for views
//! above its own (so at least one correct replica suspects the primary); the
//! timeout for waiting on a NEW-VIEW doubles with each failed attempt, up to
//! a cap; a replica waiting for a NEW-VIEW re-sends its VIEW-CHANGE, and a
//! replica already in a later view answers a straggler's VIEW-CHANGE with the
//! NEW-VIEW that took it there.

use super::messages::{Message, NewView, PrePrepare, Suspect, ViewChange};
use super::pacer::Pacer;
use super::proofs::OSet;
use super::timers::Timer;
use super::{teeth, Action, Config, PersistOp, Refusal, Replica, ViewChangeReason, VoteKind};
use crate::cluster::Cluster;
use crate::crypto::{Signed, Verified};
use crate::tx::Batch;
use crate::types::{ReplicaId, Time, View};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where this replica stands in its current view (after TigerBeetle's
/// replica status). Why an enum rather than `changing_to: Option<View>`:
/// the handlers branch on the phase, not on a view number that may be
/// absent, and `match` names both phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Working in `Replica::view`: ordering, executing and, as primary,
    /// proposing.
    Normal,
    /// Between sending a VIEW-CHANGE for `to` and entering `to` (always
    /// above `Replica::view`): the current view's messages are refused and
    /// no vote is signed in it.
    ViewChange { to: View },
}

impl Status {
    /// `Some(v)` while a view change to `v` is in progress.
    pub fn changing_to(self) -> Option<View> {
        match self {
            Status::Normal => None,
            Status::ViewChange { to } => Some(to),
        }
    }
}

impl From<Option<View>> for Status {
    /// The status `PersistOp::View::changing_to` records.
    fn from(changing_to: Option<View>) -> Status {
        match changing_to {
            None => Status::Normal,
            Some(to) => Status::ViewChange { to },
        }
    }
}

/// What the view change and its liveness rules remember.
pub(super) struct ViewChangeState {
    /// Failed view-change attempts since the last executed batch: the
    /// NEW-VIEW timeout doubles with each ([`ViewChangeState::timeout_ms`]).
    pub(super) attempts: u32,
    /// Request-timer expiries since the last executed batch or new view;
    /// a backup suspects the primary at the second, or at the first if
    /// the primary was silent for the whole timeout ([`ViewChangeState::heard_at`]).
    pub(super) timer_strikes: u32,
    /// When something last came from each replica (authenticated by the
    /// transport, checked or not; bounded by `n`). A primary that said
    /// nothing for a whole request timeout while a request waited is gone
    /// or cut off: re-sending our votes cannot help, so waiting for a second
    /// expiry would only double the failover time (a killed primary cost two
    /// timeouts). A primary that talks but does not order our request still
    /// gets the second chance.
    pub(super) heard_at: Vec<Option<Time>>,
    /// Latest view each replica suspects (bounded by `n`).
    pub(super) suspects: BTreeMap<ReplicaId, View>,
    /// Latest valid VIEW-CHANGE per sender, filed under its signer, each
    /// for a view above ours (bounded by `n`; ours included while we ask).
    pub(super) received: BTreeMap<ReplicaId, Verified<ViewChange>>,
    /// Our VIEW-CHANGE while we wait for a NEW-VIEW (re-sent on
    /// [`Timer::Retransmit`]).
    pub(super) own: Option<Signed<ViewChange>>,
    /// The NEW-VIEW that brought us into the current view (re-sent to stragglers).
    pub(super) latest_new_view: Option<Signed<NewView>>,
    /// When we last sent each replica our NEW-VIEW (bounded by `n`): a
    /// straggler is answered again only after a request timeout, so a lost
    /// answer is repaired and a Byzantine asker gains no amplification.
    pub(super) new_view_answered: BTreeMap<ReplicaId, Time>,
    /// When we last asked each peer for a NEW-VIEW (bounded by `n`).
    pub(super) new_view_requested: BTreeMap<ReplicaId, Time>,
    /// Per sender, the highest view a VIEW-CHANGE of it was refused for:
    /// its proofs are not checked again for that view or below (issue 17:
    /// each check of a VIEW-CHANGE's certificates costs up to
    /// (2f+1)·(L+1) signatures, and a peer could resend one refused
    /// VIEW-CHANGE for ever).
    pub(super) refused: BTreeMap<ReplicaId, View>,
    /// Checks of VIEW-CHANGE certificates per sender: a burst, then one per
    /// half request timeout (an honest replica asks for a new view at most
    /// once per view-change timeout; its resends of one are not checked
    /// again).
    pub(super) checks: Pacer<ReplicaId>,
}

impl ViewChangeState {
    pub(super) fn new(cfg: &Config, n: usize) -> ViewChangeState {
        ViewChangeState {
            attempts: 0,
            timer_strikes: 0,
            heard_at: vec![None; n],
            suspects: BTreeMap::new(),
            received: BTreeMap::new(),
            own: None,
            latest_new_view: None,
            new_view_answered: BTreeMap::new(),
            new_view_requested: BTreeMap::new(),
            refused: BTreeMap::new(),
            checks: Pacer::new(4, (cfg.request_timeout_ms / 2).max(1), n),
        }
    }

    /// How long to wait for the NEW-VIEW: `first_ms` at the first
    /// attempt, doubled with each failed one, up to the cap (PBFT §4.5.2:
    /// the waits grow until correct replicas overlap in a view long
    /// enough). `first_ms` is the proposal monitor's deadline, a few
    /// measured rounds, but at most the request timeout: the new primary
    /// needs about one round to answer 2f+1 VIEW-CHANGEs, so a whole
    /// request timeout per new primary that never answers only slowed the
    /// rotation past it (Twins campaigns spent most of a round there).
    pub(super) fn timeout_ms(&self, cfg: &Config, first_ms: u64) -> u64 {
        let shift = self.attempts.saturating_sub(1).min(20);
        first_ms
            .min(cfg.request_timeout_ms)
            .saturating_mul(1 << shift)
            .min(cfg.view_change_timeout_max_ms)
    }

    /// Entering `view`: what concerned the views before it goes.
    fn enter(&mut self, view: View) {
        self.own = None;
        self.new_view_answered.clear();
        self.new_view_requested.clear();
        self.timer_strikes = 0;
        self.received.retain(|_, vc| vc.new_view > view);
    }

    /// Replicas that suspect `view`: by a SUSPECT for it, or by a
    /// VIEW-CHANGE for a later view.
    fn suspecting(&self, view: View, cluster: &Cluster) -> usize {
        cluster
            .replicas()
            .filter(|r| {
                self.suspects.get(r).is_some_and(|v| *v == view)
                    || self.received.get(r).is_some_and(|vc| vc.new_view > view)
            })
            .count()
    }

    /// Replicas that asked for `target` or a later view.
    fn asking_for_at_least(&self, target: View) -> usize {
        self.received
            .values()
            .filter(|v| v.new_view >= target)
            .count()
    }

    /// Whether `replica` was not sent our NEW-VIEW within `interval_ms`
    /// before `now`.
    fn may_answer(&self, replica: ReplicaId, now: Time, interval_ms: u64) -> bool {
        self.new_view_answered
            .get(&replica)
            .is_none_or(|t| now >= t.plus_millis(interval_ms))
    }

    /// Whether we did not ask `peer` for a NEW-VIEW within `interval_ms`
    /// before `now`.
    pub(super) fn may_ask(&self, peer: ReplicaId, now: Time, interval_ms: u64) -> bool {
        self.new_view_requested
            .get(&peer)
            .is_none_or(|t| now >= t.plus_millis(interval_ms))
    }

    /// Checks what [`Replica::check_invariants`] asks of this part.
    pub(super) fn check_invariants(&self, me: ReplicaId) {
        for (sender, vc) in &self.received {
            assert_eq!(
                vc.signer(),
                *sender,
                "replica {me}: VIEW-CHANGE filed under another sender"
            );
        }
    }
}

impl Replica {
    /// Our request timer expired: tell everyone we suspect the primary.
    pub(super) fn suspect_primary(&mut self) {
        let view = self.view;
        self.view_change.suspects.insert(self.me, view);
        let s = self.sign(Suspect { view });
        self.actions
            .push_back(Action::Broadcast(Message::Suspect(s.into_signed())));
        self.check_suspects();
    }

    pub(super) fn on_suspect(&mut self, s: Verified<Suspect>) {
        if s.view < self.view {
            // It is still in a view we left: it missed the NEW-VIEW.
            self.help_straggler(s.signer(), s.view.next());
            return self.ignore(Refusal::SuspectOlderView);
        }
        let signer = s.signer();
        if s.view == self.view && self.status == Status::Normal {
            self.help_lagging(signer);
        }
        if self
            .view_change
            .suspects
            .get(&signer)
            .is_some_and(|v| *v >= s.view)
        {
            return self.ignore(Refusal::SuspectNotNewer);
        }
        self.view_change.suspects.insert(signer, s.view);
        self.check_suspects();
    }

    /// f+1 replicas suspect the current view: change it.
    fn check_suspects(&mut self) {
        if self.status != Status::Normal {
            return;
        }
        let view = self.view;
        // A VIEW-CHANGE for a later view implies its sender suspects this one.
        let count = self.view_change.suspecting(view, &self.cluster);
        if count >= self.cluster.weak_quorum() {
            self.start_view_change(view.next(), ViewChangeReason::Suspected);
        }
    }

    /// Leaves the current view and asks for `target`.
    pub(super) fn start_view_change(&mut self, target: View, reason: ViewChangeReason) {
        // A replica whose store was lost may have sent a VIEW-CHANGE for any
        // view up to the recorded one (with certificates it no longer
        // holds): it asks for the first view after it instead.
        let target = match self.guard.forgotten_commits {
            Some(f) if target <= f => f.next(),
            _ => target,
        };
        let level = self.latest_view();
        if target <= level {
            return;
        }
        self.view_change.attempts = self.view_change.attempts.saturating_add(1);
        self.view_change.timer_strikes = 0;
        self.status = Status::ViewChange { to: target };
        self.timers.stop(Timer::Request);
        self.timers.stop(Timer::VoteRetransmit);
        self.stats.view_changes_started += 1;
        *self.stats.view_changes_by_reason.entry(reason).or_default() += 1;
        tracing::info!(replica = %self.me, from = %self.view, to = %target, reason = reason.name(),
            "starting view change");

        let prepared = self.log.prepared_proofs();
        let vc = self.sign(ViewChange {
            new_view: target,
            stable_seq: self.log.low,
            checkpoint_proof: self.log.stable_proof.clone(),
            prepared,
        });
        self.actions.push_back(Action::Persist(vec![
            PersistOp::View {
                view: self.view,
                changing_to: Some(target),
            },
            PersistOp::ViewChange(vc.signed().clone()),
        ]));
        self.actions
            .push_back(Action::Broadcast(Message::ViewChange(vc.signed().clone())));
        self.view_change.own = Some(vc.signed().clone());
        self.view_change.received.insert(self.me, vc);
        self.timers.stop(Timer::ViewChange);
        self.timers.set(
            Timer::Retransmit,
            self.now.plus_millis(self.cfg.retransmit_ms),
        );
        self.inbox.future.retain(|(_, m)| m.view() >= target);
        self.arm_view_change_timer();
        self.maybe_send_new_view(target);
    }

    /// Starts the NEW-VIEW timer once 2f+1 replicas asked for our target
    /// view or a later one (§4.5.2 counts VIEW-CHANGEs for the target only).
    /// Why not on sending: a replica that alone asks for a view would
    /// otherwise climb views by itself and never meet the others. Why later
    /// views count: a replica whose timer already moved it past our target
    /// no longer backs the target, and counting only the target would leave
    /// the others waiting for a NEW-VIEW that cannot come (a campaign seed
    /// with a silent primary ended with two replicas waiting for view 1 and
    /// the third alone in view 2).
    fn arm_view_change_timer(&mut self) {
        let Status::ViewChange { to: target } = self.status else {
            return;
        };
        if self.timers.is_set(Timer::ViewChange) {
            return;
        }
        let count = self.view_change.asking_for_at_least(target);
        if count >= self.cluster.quorum() {
            self.timers.set(
                Timer::ViewChange,
                self.now.plus_millis(
                    self.view_change
                        .timeout_ms(&self.cfg, self.monitor.deadline_ms(&self.cfg)),
                ),
            );
        }
    }

    /// No NEW-VIEW arrived in time: try the next view, with a doubled timeout.
    pub(super) fn on_view_change_timer(&mut self) {
        if let Status::ViewChange { to: target } = self.status {
            tracing::info!(replica = %self.me, view = %target, "view change timed out");
            self.start_view_change(target.next(), ViewChangeReason::NewViewLate);
        }
    }

    /// Re-sends our VIEW-CHANGE while we wait for a NEW-VIEW.
    pub(super) fn on_retransmit_timer(&mut self) {
        if self.status == Status::Normal {
            return;
        }
        if let Some(vc) = self.view_change.own.clone() {
            self.actions
                .push_back(Action::Broadcast(Message::ViewChange(vc)));
        }
        // Waiting (perhaps alone) for a NEW-VIEW is no reason to stay behind:
        // the request timer that fetches is off during a view change. (A
        // flood seed ended with a replica alone in a view change, 11 blocks
        // behind the f+1 CHECKPOINTs it had received.)
        if self.behind_peers() {
            let target = self.catch_up_target();
            self.start_fetch(target);
        }
        self.timers.set(
            Timer::Retransmit,
            self.now.plus_millis(self.cfg.retransmit_ms),
        );
    }

    pub(super) fn on_view_change(&mut self, vc: Verified<ViewChange>) {
        let (target, signer) = (vc.new_view, vc.signer());
        if target <= self.view {
            self.help_straggler(signer, target);
            return self.ignore(Refusal::ViewChangeForEnteredView);
        }
        if self
            .view_change
            .received
            .get(&signer)
            .is_some_and(|prev| prev.new_view >= target)
        {
            return self.ignore(Refusal::ViewChangeNotNewer);
        }
        if self
            .view_change
            .refused
            .get(&signer)
            .is_some_and(|v| *v >= target)
        {
            return self.ignore(Refusal::ViewChangeSenderRefused);
        }
        if !self.view_change.checks.allow(signer, self.now) {
            return self.ignore(Refusal::ViewChangeChecksPaced);
        }
        if let Err(reason) = self.check_view_change(&vc) {
            self.view_change.refused.insert(signer, target);
            return self.ignore(reason);
        }
        if vc.stable_seq < self.log.low && self.status == Status::Normal {
            // It left our view behind and alone: it may be far behind too
            // (its checkpoint is older than ours). Help it catch up while it
            // waits; it rejoins at the next view change.
            self.help_lagging(signer);
        }
        self.view_change.received.insert(signer, vc);
        self.check_suspects();

        // Join once f+1 others ask for views above ours (§4.5.2).
        let level = self.latest_view();
        let higher: Vec<View> = self
            .view_change
            .received
            .iter()
            .filter(|(r, vc)| **r != self.me && vc.new_view > level)
            .map(|(_, vc)| vc.new_view)
            .collect();
        if higher.len() >= self.cluster.weak_quorum() {
            let smallest = *higher.iter().min().expect("non-empty");
            self.start_view_change(smallest, ViewChangeReason::Joined);
        }
        self.arm_view_change_timer();
        self.maybe_send_new_view(target);
    }

    /// A replica still asks for a view we already entered: it missed the
    /// NEW-VIEW. Send it, at most once per request timeout per replica (the
    /// answer may be lost, or arrive while the asker is down).
    pub(super) fn help_straggler(&mut self, replica: crate::types::ReplicaId, target: View) {
        if self.status != Status::Normal {
            return;
        }
        let Some(nv) = self.view_change.latest_new_view.clone() else {
            return;
        };
        let Ok(nv_view) = crate::crypto::Payload::decode(&nv.payload).map(|n: NewView| n.view)
        else {
            return;
        };
        let quiet = self
            .view_change
            .may_answer(replica, self.now, self.cfg.request_timeout_ms);
        if nv_view == self.view && nv_view >= target && quiet {
            self.view_change.new_view_answered.insert(replica, self.now);
            self.actions.push_back(Action::Send {
                to: replica,
                message: Message::NewView(nv),
            });
        }
    }

    /// As primary of `target`, sends NEW-VIEW once 2f+1 VIEW-CHANGEs for it
    /// (ours included) are in.
    fn maybe_send_new_view(&mut self, target: View) {
        if self.cluster.primary(target) != self.me
            || self.status != (Status::ViewChange { to: target })
        {
            return;
        }
        let quorum = teeth::quorum(self.cluster.quorum());
        let mut vcs: Vec<Verified<ViewChange>> = Vec::with_capacity(quorum);
        if let Some(own) = self
            .view_change
            .received
            .get(&self.me)
            .filter(|v| v.new_view == target)
        {
            vcs.push(own.clone());
        } else {
            return;
        }
        vcs.extend(
            self.view_change
                .received
                .iter()
                .filter(|(r, vc)| **r != self.me && vc.new_view == target)
                .map(|(_, vc)| vc.clone())
                .take(quorum - 1),
        );
        if vcs.len() < quorum {
            return;
        }
        let o = self.compute_o_set(&vcs);
        let pre_prepares: Vec<Verified<PrePrepare>> = o
            .entries
            .iter()
            .map(|e| {
                self.sign_vote(
                    VoteKind::PrePrepare,
                    target,
                    e.seq,
                    e.digest,
                    PrePrepare {
                        view: target,
                        seq: e.seq,
                        digest: e.digest,
                    },
                )
            })
            .collect();
        let nv = self.sign(NewView {
            view: target,
            view_changes: vcs.iter().map(|v| v.signed().clone()).collect(),
            pre_prepares: pre_prepares.iter().map(|p| p.signed().clone()).collect(),
        });
        tracing::info!(replica = %self.me, view = %target, reproposed = o.entries.len(), "sending new-view");
        self.actions.push_back(Action::Persist(vec![
            PersistOp::NewView(nv.signed().clone()),
            PersistOp::View {
                view: target,
                changing_to: None,
            },
        ]));
        self.actions
            .push_back(Action::Broadcast(Message::NewView(nv.signed().clone())));
        self.view_change.latest_new_view = Some(nv.into_signed());
        self.enter_view(target, o, pre_prepares);
    }

    pub(super) fn on_new_view(&mut self, nv: Verified<NewView>) {
        let target = nv.view;
        if nv.signer() != self.cluster.primary(target) {
            return self.ignore(Refusal::NewViewNotFromPrimary);
        }
        let acceptable = match self.status {
            Status::ViewChange { to: waiting } => target >= waiting,
            Status::Normal => target > self.view,
        };
        if !acceptable {
            return self.ignore(Refusal::NewViewNotAboveOurView);
        }
        if nv.view_changes.len() > self.cluster.n() as usize {
            return self.ignore(Refusal::NewViewTooManyViewChanges);
        }
        if !self.distinct_signers(&nv.view_changes) {
            return self.ignore(Refusal::NewViewViewChangeMismatch);
        }
        let mut vcs = Vec::with_capacity(nv.view_changes.len());
        let mut signers = BTreeSet::new();
        for s in &nv.view_changes {
            let Ok(vc) = self.verifier.verify::<ViewChange>(s) else {
                return self.ignore(Refusal::NewViewBadViewChangeSignature);
            };
            if vc.new_view != target || !signers.insert(vc.signer()) {
                return self.ignore(Refusal::NewViewViewChangeMismatch);
            }
            let known = self
                .view_change
                .received
                .get(&vc.signer())
                .is_some_and(|k| k.signed() == vc.signed());
            if !known {
                if let Err(reason) = self.check_view_change(&vc) {
                    return self.ignore(reason);
                }
            }
            vcs.push(vc);
        }
        let quorum = teeth::quorum(self.cluster.quorum());
        if signers.len() < quorum {
            return self.ignore(Refusal::NewViewBelowQuorum);
        }
        let o = teeth::o_set(self.compute_o_set(&vcs), &nv.pre_prepares);
        if o.entries.len() != nv.pre_prepares.len() {
            return self.ignore(Refusal::NewViewWrongOSet);
        }
        let mut pre_prepares = Vec::with_capacity(o.entries.len());
        for (entry, s) in o.entries.iter().zip(&nv.pre_prepares) {
            let Ok(pp) = self.verifier.verify::<PrePrepare>(s) else {
                return self.ignore(Refusal::NewViewBadPrePrepareSignature);
            };
            if pp.signer() != self.cluster.primary(target)
                || pp.view != target
                || pp.seq != entry.seq
                || pp.digest != entry.digest
            {
                return self.ignore(Refusal::NewViewWrongOSet);
            }
            pre_prepares.push(pp);
        }
        tracing::info!(replica = %self.me, view = %target, "accepted new-view");
        self.actions.push_back(Action::Persist(vec![
            PersistOp::NewView(nv.signed().clone()),
            PersistOp::View {
                view: target,
                changing_to: None,
            },
        ]));
        self.view_change.latest_new_view = Some(nv.into_signed());
        self.enter_view(target, o, pre_prepares);
    }

    /// Enters `view` with the checked O-set and its PRE-PREPAREs.
    fn enter_view(&mut self, view: View, o: OSet, pre_prepares: Vec<Verified<PrePrepare>>) {
        self.view = view;
        self.status = Status::Normal;
        self.timers.stop(Timer::ViewChange);
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::NewViewRequest);
        self.view_change.enter(view);
        self.monitor.enter_view();
        // We never sign for an older view again, so its double-sign guard
        // entries can go (repeated view changes without a new stable
        // checkpoint piled them up beyond the S8 bound in an omission seed).
        self.guard.forget_views_before(view);
        self.stats.new_views_entered += 1;
        self.actions.push_back(Action::EnteredView(view));

        let max_s = o.entries.last().map_or(o.min_s, |e| e.seq);
        // Before anything below can propose: seqs up to max_s belong to O.
        if self.cluster.primary(view) == self.me {
            self.requests.next_seq = max_s.max(self.log.last_executed).max(self.log.low).next();
        }
        self.log.new_view_ceiling = self.log.new_view_ceiling.max(max_s);

        self.log.reset_older_slots(view);
        let mut in_flight = BTreeSet::new();
        for (entry, pp) in o.entries.into_iter().zip(pre_prepares) {
            if entry.seq <= self.log.low {
                continue;
            }
            let Ok(batch) = Batch::decode(&entry.batch) else {
                self.ignore(Refusal::NewViewMalformedBatch);
                continue;
            };
            in_flight.extend(batch.txs.iter().map(|tx| (tx.from, tx.nonce)));
            self.accept_pre_prepare(pp, Arc::new(batch), entry.batch.into());
        }
        self.reset_proposals(&in_flight);
        // The O-set's stable checkpoint: adopt it, or catch up to it.
        if o.min_s > self.log.low {
            for c in &o.checkpoint_proof {
                if let Ok(c) = self.verifier.verify(c) {
                    self.checkpoints.adopt(c);
                }
            }
            self.check_stable(o.min_s);
        }
        self.replay_future();
        if self.has_work() {
            self.start_request_timer();
        } else {
            self.timers.stop(Timer::Request);
        }
        self.try_execute();
        self.try_propose();
    }
}
