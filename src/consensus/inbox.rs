//! Peer input on its way in: the sender check, the wasted-check allowance,
//! votes handled without a signature check, signature checks, routing by
//! view, and the bounded buffer of messages for future views.

use super::pacer::Pacer;
use super::*;
use crate::tx::BATCH_BYTES_MAX;

/// A verified normal-case message, routed by view.
#[derive(Clone, Debug)]
pub(super) enum ViewMessage {
    PrePrepare(Verified<PrePrepare>, Vec<u8>),
    Prepare(Verified<Prepare>),
    Commit(Verified<Commit>),
}

impl ViewMessage {
    /// Bytes it holds while buffered (payload, signature, batch).
    pub(super) fn bytes(&self) -> usize {
        const SIGNED_OVERHEAD: usize = 64 + 8;
        match self {
            ViewMessage::PrePrepare(p, batch) => {
                p.signed().payload.len() + SIGNED_OVERHEAD + batch.len()
            }
            ViewMessage::Prepare(p) => p.signed().payload.len() + SIGNED_OVERHEAD,
            ViewMessage::Commit(c) => c.signed().payload.len() + SIGNED_OVERHEAD,
        }
    }

    pub(super) fn view(&self) -> View {
        match self {
            ViewMessage::PrePrepare(p, _) => p.view,
            ViewMessage::Prepare(p) => p.view,
            ViewMessage::Commit(c) => c.view,
        }
    }
}

/// Wasted signature checks a peer may cause at once before its messages go
/// unchecked (see [`Inbox::wasted_checks`]).
pub const WASTED_CHECKS_BURST: u64 = 1024;
/// Then one wasted check per this many milliseconds: at ~50 µs a check,
/// a flooding peer gets at most ~5 % of the loop thread.
pub const WASTED_CHECK_INTERVAL_MS: u64 = 1;

/// Bytes of future-view messages kept per sender: two full batches (the
/// PRE-PREPAREs of the next view's primary, say) and their votes. With
/// `n` senders a replica holds at most `n` times this.
pub const FUTURE_BYTES_PER_SENDER: usize = 2 * BATCH_BYTES_MAX + 64 * 1024;

/// What peer input leaves behind on its way in.
pub(super) struct Inbox {
    /// Messages for views above ours, in arrival order: per sender at most
    /// `Replica::future_share` of them and [`FUTURE_BYTES_PER_SENDER`]
    /// bytes, each at most two views above the one we are in or changing
    /// to.
    pub(super) future: VecDeque<(ReplicaId, ViewMessage)>,
    /// Per sender, signature checks that were wasted: the message failed
    /// its check or was refused after it (stale, duplicate, out of window).
    /// A sender that wastes more than [`WASTED_CHECKS_BURST`] at once, then
    /// one per [`WASTED_CHECK_INTERVAL_MS`], has its messages that need a
    /// check dropped unchecked until its allowance refills (issue 17,
    /// defect 5: a peer flooding frames that each cost a check could take
    /// the loop thread). Honest peers waste a few checks per view change,
    /// far below the rate.
    pub(super) wasted_checks: Pacer<ReplicaId>,
    /// Inputs refused as useless so far (every [`Replica::ignore`]; not
    /// [`Replica::ignore_kept`]).
    pub(super) refusals: u64,
}

impl Inbox {
    pub(super) fn new(n: usize) -> Inbox {
        Inbox {
            future: VecDeque::new(),
            wasted_checks: Pacer::new(WASTED_CHECKS_BURST, WASTED_CHECK_INTERVAL_MS, n),
            refusals: 0,
        }
    }

    /// Bytes held by buffered future-view messages.
    pub(super) fn future_bytes(&self) -> usize {
        self.future.iter().map(|(_, m)| m.bytes()).sum()
    }
}

impl Replica {
    pub(super) fn on_message(&mut self, from: ReplicaId, message: Message) {
        if !self.cluster.contains(from) || from == self.me {
            self.ignore(Refusal::UnknownSender);
            return;
        }
        self.view_change.heard_at[from.index()] = Some(self.now);
        if let Some(c) = teeth::unchecked_commit(&self.verifier, &message) {
            return self.route(from, ViewMessage::Commit(c));
        }
        // Votes that cannot change anything are handled without a check.
        let skipped = match &message {
            Message::Prepare(p) => self.skip_late_vote(from, VoteKind::Prepare, p),
            Message::Commit(c) => self.skip_late_vote(from, VoteKind::Commit, c),
            _ => false,
        };
        if skipped {
            return;
        }
        let needs_check = !matches!(
            message,
            Message::NewViewRequest { .. } | Message::Fetch { .. } | Message::Reply(_)
        );
        if needs_check && !self.inbox.wasted_checks.has_room(from, self.now) {
            self.ignore(Refusal::WastedChecksSpent);
            return;
        }
        let refusals = self.inbox.refusals;
        self.dispatch(from, message);
        if needs_check && self.inbox.refusals > refusals {
            self.inbox.wasted_checks.charge(from, self.now);
        }
    }

    pub(super) fn dispatch(&mut self, from: ReplicaId, message: Message) {
        match message {
            Message::Request(tx) => self.on_unverified_request(tx),
            Message::PrePrepare { pre_prepare, batch } => {
                match self.verifier.verify(&pre_prepare) {
                    Ok(pp) => self.route(from, ViewMessage::PrePrepare(pp, batch)),
                    Err(_) => self.ignore(Refusal::PrePrepareBadSignature),
                }
            }
            Message::Prepare(p) => match self.verifier.verify(&p) {
                Ok(p) => self.route(from, ViewMessage::Prepare(p)),
                Err(_) => self.ignore(Refusal::PrepareBadSignature),
            },
            Message::Commit(c) => match self.verifier.verify(&c) {
                Ok(c) => self.route(from, ViewMessage::Commit(c)),
                Err(_) => self.ignore(Refusal::CommitBadSignature),
            },
            Message::Checkpoint(c) => match self.verifier.verify(&c) {
                Ok(c) => self.on_checkpoint(c),
                Err(_) => self.ignore(Refusal::CheckpointBadSignature),
            },
            Message::ViewChange(vc) => match self.verifier.verify(&vc) {
                Ok(vc) => self.on_view_change(vc),
                Err(_) => self.ignore(Refusal::ViewChangeBadSignature),
            },
            Message::NewView(nv) => match self.verifier.verify(&nv) {
                Ok(nv) => self.on_new_view(nv),
                Err(_) => self.ignore(Refusal::NewViewBadSignature),
            },
            Message::Suspect(sus) => match self.verifier.verify(&sus) {
                Ok(sus) => self.on_suspect(sus),
                Err(_) => self.ignore(Refusal::SuspectBadSignature),
            },
            Message::NewViewRequest { view } => self.help_straggler(from, view.next()),
            Message::Batches(batches) => self.on_batches(from, batches),
            Message::Fetch { .. } => self.ignore(Refusal::FetchReachedCore),
            Message::Reply(_) => self.ignore(Refusal::ReplyToReplica),
        }
    }

    /// Handles, without checking its signature, a PREPARE or COMMIT that
    /// cannot change anything here: for the current view, sent by its own
    /// signer, at a seq we hold the same vote of that signer for (a repeat),
    /// or that we already sent our COMMIT for in this view (a PREPARE) or
    /// committed (a COMMIT). About 2 of the 6 votes a replica gets per block
    /// arrive after their quorum, and a signature check costs far more than
    /// the rest of a vote.
    ///
    /// A repeat means the signer has not progressed at that seq and may lack
    /// our votes (`answer_retransmission`). A late vote is not kept, so its
    /// signer is remembered (`Slot::late`): a second one is a repeat too.
    /// Since the transport authenticates `from`, only the signer itself can
    /// make us answer it, once per seq (`Slot::answered`).
    pub(super) fn skip_late_vote<T>(
        &mut self,
        from: ReplicaId,
        kind: VoteKind,
        vote: &Signed<T>,
    ) -> bool {
        let coords = match kind {
            VoteKind::Prepare => Prepare::decode(&vote.payload).map(|v| (v.view, v.seq)),
            VoteKind::Commit => Commit::decode(&vote.payload).map(|v| (v.view, v.seq)),
            VoteKind::PrePrepare => return false,
        };
        let Ok((view, seq)) = coords else {
            return false;
        };
        if vote.signer != from || view != self.view || self.status != Status::Normal {
            return false;
        }
        let Some(slot) = self.log.slots.get_mut(&seq) else {
            return false;
        };
        if slot.view != view {
            return false;
        }
        let same = |held: &[u8], signature: &[u8; 64]| {
            held == vote.payload.as_slice() && *signature == vote.signature
        };
        let (held, needed, duplicate, late) = match kind {
            VoteKind::Prepare => (
                slot.prepares
                    .get(&from)
                    .map(|p| same(&p.signed().payload, &p.signed().signature)),
                // Not `committed`: one committed in an earlier view must
                // still be prepared in this one, for our COMMIT that the
                // others may need.
                !slot.sent_commit,
                Refusal::PrepareDuplicate,
                Refusal::PrepareAfterQuorum,
            ),
            VoteKind::Commit => (
                slot.commits
                    .get(&from)
                    .map(|c| same(&c.signed().payload, &c.signed().signature)),
                slot.committed.is_none(),
                Refusal::CommitDuplicate,
                Refusal::CommitAfterQuorum,
            ),
            VoteKind::PrePrepare => return false,
        };
        let repeat = match held {
            Some(true) => true,
            // Another vote by this signer: checked, then judged as usual.
            Some(false) => return false,
            None if needed => return false,
            None => !slot.late.insert((kind, from)),
        };
        if repeat {
            self.answer_retransmission(from, seq);
            self.ignore(duplicate);
        } else {
            self.ignore(late);
        }
        true
    }

    /// Routes a normal-case message by its view: older views are stale, newer
    /// ones wait (bounded) until we enter that view.
    pub(super) fn route(&mut self, from: ReplicaId, msg: ViewMessage) {
        let view = msg.view();
        if view < self.view {
            self.ignore(Refusal::OlderView);
        } else if view > self.view {
            self.buffer_future(from, msg);
        } else if self.status != Status::Normal {
            self.ignore(Refusal::AbandonedView);
        } else {
            self.on_view_message(from, msg);
        }
    }

    pub(super) fn on_view_message(&mut self, from: ReplicaId, msg: ViewMessage) {
        match msg {
            ViewMessage::PrePrepare(pp, batch) => self.on_pre_prepare(from, pp, batch),
            ViewMessage::Prepare(p) => self.on_prepare(p),
            ViewMessage::Commit(c) => self.on_commit(c),
        }
    }

    /// Future-view messages kept per sender: an equal share of
    /// `future_messages_max`, at least one.
    pub(super) fn future_share(&self) -> usize {
        (self.cfg.future_messages_max / self.cluster.n() as usize).max(1)
    }

    /// Keeps a message for a future view. Each sender gets an equal share of
    /// the buffer, so a flooding replica only evicts its own messages.
    pub(super) fn buffer_future(&mut self, from: ReplicaId, msg: ViewMessage) {
        if let ViewMessage::PrePrepare(pp, batch) = &msg {
            // Checked now, not when the view comes: a PRE-PREPARE that could
            // never be accepted must not hold memory until then.
            if pp.signer() != self.cluster.primary(pp.view) || from != pp.signer() {
                return self.ignore(Refusal::PrePrepareNotFromPrimary);
            }
            if batch.len() > BATCH_BYTES_MAX {
                return self.ignore(Refusal::PrePrepareBatchTooLarge);
            }
        }
        if self.status == Status::Normal {
            self.ask_for_new_view(from);
        }
        let level = self.latest_view();
        if msg.view() > level.next().next() {
            self.ignore(Refusal::FarFutureView);
            return;
        }
        self.keep_buffered(from, msg);
    }

    /// Keeps a PRE-PREPARE of our view for a seq just above our window
    /// (`(H, H + checkpoint_interval]`): the primary's window is a
    /// checkpoint ahead of ours when the CHECKPOINTs that move it have not
    /// all reached us yet. Dropped, it would come again only with the
    /// primary's re-send after `retransmit_ms`, and the proposal monitor
    /// suspects the primary sooner (seed 902995 of an adversary campaign: a
    /// correct backup dropped one this way, a Byzantine one withheld its
    /// COMMIT, and the correct primary was replaced). Re-fed when our
    /// window moves ([`Replica::replay_future`], from `make_stable`); held
    /// in the per-sender, byte-bounded buffer of future-view messages.
    pub(super) fn keep_above_window(
        &mut self,
        from: ReplicaId,
        pp: Verified<PrePrepare>,
        batch: Vec<u8>,
    ) {
        if batch.len() > BATCH_BYTES_MAX {
            return self.ignore(Refusal::PrePrepareBatchTooLarge);
        }
        self.keep_buffered(from, ViewMessage::PrePrepare(pp, batch));
    }

    /// Appends to the buffer within the sender's share of messages and
    /// bytes, evicting the sender's own oldest messages first.
    fn keep_buffered(&mut self, from: ReplicaId, msg: ViewMessage) {
        let share = self.future_share();
        if teeth::no_cap_on_future_buffering() {
            // Broken on purpose: no eviction, so the buffer grows unbounded.
            self.inbox.future.push_back((from, msg));
            return;
        }
        // Each sender's share is bounded in messages and in bytes; a
        // flooding sender evicts only its own oldest messages.
        let size = msg.bytes();
        let mut evicted = false;
        loop {
            let (count, bytes) = self
                .inbox
                .future
                .iter()
                .filter(|(f, _)| *f == from)
                .fold((0, 0), |(c, b), (_, m)| (c + 1, b + m.bytes()));
            if count < share && bytes + size <= FUTURE_BYTES_PER_SENDER {
                break;
            }
            match self.inbox.future.iter().position(|(f, _)| *f == from) {
                Some(pos) => {
                    self.inbox.future.remove(pos);
                    evicted = true;
                }
                None => break,
            }
        }
        if evicted {
            self.ignore(Refusal::FutureBufferFull);
        }
        self.inbox.future.push_back((from, msg));
    }

    /// The sender `from` is in a later view we never saw a NEW-VIEW for:
    /// asks it for that NEW-VIEW, at most once per request timeout (the
    /// request or the answer may be lost: a Twins seed ended with a replica
    /// in view 1 for ever, its one request per peer sent while the network
    /// was still lossy), and arms [`Timer::NewViewRequest`] to ask again if
    /// nothing comes.
    fn ask_for_new_view(&mut self, from: ReplicaId) {
        let quiet = self
            .view_change
            .may_ask(from, self.now, self.cfg.request_timeout_ms);
        if !quiet {
            return;
        }
        self.view_change.new_view_requested.insert(from, self.now);
        self.actions.push_back(Action::Send {
            to: from,
            message: Message::NewViewRequest { view: self.view },
        });
        self.arm_new_view_request_timer();
    }

    /// Arms [`Timer::NewViewRequest`] a request timeout from now, unless
    /// it is already set.
    fn arm_new_view_request_timer(&mut self) {
        if !self.timers.is_set(Timer::NewViewRequest) {
            self.timers.set(
                Timer::NewViewRequest,
                self.now.plus_millis(self.cfg.request_timeout_ms),
            );
        }
    }

    /// [`Timer::NewViewRequest`] fired: still outside a view change with
    /// messages of a later view buffered, so no NEW-VIEW came. Asks their
    /// senders again; without this a replica that restarted into an old
    /// view while the others had moved on stayed there for as long as no
    /// new message arrived (its requests fell in the peers' answer
    /// interval and nothing made it ask again: seed 1403398, lying-answers).
    pub(super) fn on_new_view_request_timer(&mut self) {
        if self.status != Status::Normal {
            return;
        }
        let senders: std::collections::BTreeSet<ReplicaId> = self
            .inbox
            .future
            .iter()
            .filter(|(_, m)| m.view() > self.view)
            .map(|(from, _)| *from)
            .collect();
        for from in &senders {
            self.ask_for_new_view(*from);
        }
        if !senders.is_empty() {
            self.arm_new_view_request_timer();
        }
    }

    /// Re-feeds the buffered messages of our view: those of the view just
    /// entered, or the PRE-PREPAREs kept just above our window once it
    /// moved (those still above it are kept again). Later views' stay;
    /// earlier ones are dropped.
    pub(super) fn replay_future(&mut self) {
        let buffered = std::mem::take(&mut self.inbox.future);
        for (from, msg) in buffered {
            if msg.view() > self.view {
                self.inbox.future.push_back((from, msg));
            } else if msg.view() == self.view {
                self.on_view_message(from, msg);
            }
        }
    }
}
