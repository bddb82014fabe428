//! Client requests (PBFT §4.1): the pending set, the request timer that makes
//! backups suspect a primary, and how a primary forms batches.
//!
//! Every replica keeps the requests it knows of until they execute. A backup
//! starts its timer when it holds a request; if nothing executes before it
//! fires, it suspects the primary and starts a view change — unless it is
//! merely behind (peers show progress it has not executed), in which case it
//! catches up first. The primary proposes whenever it holds unproposed
//! requests and fewer than `pipeline_depth` batches are in flight; under load
//! batches grow on their own while the pipeline is full (adaptive batching).

use super::messages::PrePrepare;
use super::timers::Timer;
use super::{teeth, Action, Config, Refusal, Replica, Status, VoteKind};
use crate::crypto::PublicKey;
use crate::tx::{batch_digest, Batch, Transaction, VerifiedCache, VerifiedTx};
use crate::types::{Seq, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

type TxKey = (PublicKey, u64);

/// Requests known but not yet executed, bounded in total and per client.
///
/// Every index below holds only keys present in `txs`, so all of them are
/// bounded by `max` (a hostile client cannot grow any of them).
#[derive(Clone, Debug)]
pub struct Pending {
    txs: BTreeMap<TxKey, PendingTx>,
    per_client: BTreeMap<PublicKey, usize>,
    /// Requests not yet proposed by us as primary, by arrival number.
    unproposed: BTreeMap<u64, TxKey>,
    /// Arrival numbers of every held request (the oldest one is what the
    /// request timer waits for).
    arrivals: BTreeSet<u64>,
    next_arrival: u64,
    max: usize,
    per_client_max: usize,
}

#[derive(Clone, Debug)]
struct PendingTx {
    tx: Transaction,
    arrival: u64,
    /// When it arrived (the proposal monitor measures how long the primary
    /// leaves it unproposed).
    at: Time,
}

/// Why a request was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    Duplicate,
    Full,
    ClientFull,
}

impl Pending {
    pub fn new(max: usize, per_client_max: usize) -> Pending {
        Pending {
            txs: BTreeMap::new(),
            per_client: BTreeMap::new(),
            unproposed: BTreeMap::new(),
            arrivals: BTreeSet::new(),
            next_arrival: 0,
            max,
            per_client_max,
        }
    }
    pub fn len(&self) -> usize {
        self.txs.len()
    }
    /// Requests of `client` held.
    pub fn of_client(&self, client: &PublicKey) -> usize {
        self.per_client.get(client).copied().unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
    /// Whether exactly this transaction (signature included) is held: it
    /// was verified when it was added, so a batch carrying it need not be
    /// verified again.
    pub fn holds(&self, tx: &Transaction) -> bool {
        self.txs
            .get(&(tx.from, tx.nonce))
            .is_some_and(|p| p.tx == *tx)
    }
    /// Adds a request that arrived at `at`.
    pub fn insert(&mut self, tx: VerifiedTx, at: Time) -> Result<(), Rejected> {
        let tx = tx.into_inner();
        let key = (tx.from, tx.nonce);
        if self.txs.contains_key(&key) {
            return Err(Rejected::Duplicate);
        }
        if self.txs.len() >= self.max {
            return Err(Rejected::Full);
        }
        let count = self.per_client.entry(tx.from).or_default();
        if *count >= self.per_client_max {
            return Err(Rejected::ClientFull);
        }
        *count += 1;
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.txs.insert(key, PendingTx { tx, arrival, at });
        self.unproposed.insert(arrival, key);
        self.arrivals.insert(arrival);
        Ok(())
    }
    /// The arrival number of the oldest request held.
    pub fn oldest_arrival(&self) -> Option<u64> {
        self.arrivals.first().copied()
    }
    /// When the oldest request not yet proposed arrived: on a backup, not
    /// yet seen in a PRE-PREPARE of this view ([`Pending::mark_proposed`]).
    pub(super) fn oldest_unproposed_at(&self) -> Option<Time> {
        let (_, key) = self.unproposed.first_key_value()?;
        self.txs.get(key).map(|p| p.at)
    }
    /// Up to `max` unproposed requests in arrival order, with their arrival
    /// numbers, of those that arrived after `after`.
    pub(super) fn unproposed_after(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Vec<(u64, Transaction)> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        self.unproposed
            .range(from..)
            .filter_map(|(arrival, key)| self.txs.get(key).map(|p| (*arrival, p.tx.clone())))
            .take(max)
            .collect()
    }
    /// The primary proposed these (a backup saw them in its PRE-PREPARE):
    /// they no longer wait for a proposal.
    pub(super) fn mark_proposed(&mut self, txs: &[Transaction]) {
        for tx in txs {
            self.mark_proposed_key((tx.from, tx.nonce));
        }
    }
    fn mark_proposed_key(&mut self, key: TxKey) {
        if let Some(p) = self.txs.get(&key) {
            self.unproposed.remove(&p.arrival);
        }
    }
    /// Forgets every request of `client` with a nonce up to `nonce`: it
    /// executed, and older nonces can only fail as stale.
    pub fn executed(&mut self, client: PublicKey, nonce: u64) {
        let doomed: Vec<TxKey> = self
            .txs
            .range((client, 0)..=(client, nonce))
            .map(|(k, _)| *k)
            .collect();
        for key in doomed {
            if let Some(p) = self.txs.remove(&key) {
                self.unproposed.remove(&p.arrival);
                self.arrivals.remove(&p.arrival);
            }
            if let Some(c) = self.per_client.get_mut(&client) {
                *c -= 1;
                if *c == 0 {
                    self.per_client.remove(&client);
                }
            }
        }
    }
    /// Takes up to `max` unproposed requests in arrival order.
    fn take_batch(&mut self, max: usize) -> Vec<Transaction> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, key)) = self.unproposed.pop_first() else {
                break;
            };
            if let Some(p) = self.txs.get(&key) {
                out.push(p.tx.clone());
            }
        }
        out
    }
    fn has_unproposed(&self) -> bool {
        !self.unproposed.is_empty()
    }
    /// A new view: nothing is proposed by us any more, except what the
    /// NEW-VIEW itself re-proposes (`in_flight`).
    fn reset_proposals(&mut self, in_flight: &BTreeSet<TxKey>) {
        self.unproposed.clear();
        for (key, p) in &self.txs {
            if !in_flight.contains(key) {
                self.unproposed.insert(p.arrival, *key);
            }
        }
    }
    /// Requests waiting to be proposed (for tests of the bounds).
    #[cfg(test)]
    pub(super) fn unproposed_len(&self) -> usize {
        self.unproposed.len()
    }
}

/// Client requests this replica knows, and what it proposes of them as
/// primary.
pub(super) struct Requests {
    /// Requests known but not executed, bounded in total and per client.
    pub(super) pending: Pending,
    /// Client signatures checked in batches (PRE-PREPAREs, fetches): one
    /// that arrives again, from its client or re-proposed, is not checked
    /// again. Bounded by [`Config::verified_cache_max`].
    pub(super) verified: VerifiedCache,
    /// Arrival number of the request the request timer was started for
    /// (the oldest held then); `None` if it runs for other work.
    pub(super) timed_request: Option<u64>,
    /// The next seq to propose at as primary (a proposal never goes at or
    /// below our height, see `form_batches`).
    pub(super) next_seq: Seq,
    /// With deferred proposals (a driver grouping inputs), a primary forms
    /// batches only at [`Replica::propose_now`], so every request of the
    /// group can join one batch.
    pub(super) defer_proposals: bool,
}

impl Requests {
    pub(super) fn new(cfg: &Config) -> Requests {
        Requests {
            pending: Pending::new(cfg.pending_requests_max, cfg.pending_per_client_max),
            verified: VerifiedCache::new(cfg.verified_cache_max()),
            timed_request: None,
            next_seq: Seq(1),
            defer_proposals: false,
        }
    }
}

impl Replica {
    /// A request whose signature is still to be checked; one we hold
    /// already was checked when it was added.
    pub(super) fn on_unverified_request(&mut self, tx: Transaction) {
        if self.requests.pending.holds(&tx) {
            return;
        }
        if let Some(tx) = self.requests.verified.get(&tx) {
            return self.on_request(tx);
        }
        match VerifiedTx::check(tx, self.verifier.network()) {
            Some(tx) => self.on_request(tx),
            None => self.ignore(Refusal::RequestBadSignature),
        }
    }

    /// Whether every transaction of a proposed or fetched batch is well
    /// signed. One we hold, or checked recently, is not checked again; the
    /// ones checked here are remembered (`Replica::verified_tx`), so the
    /// same transaction arriving from its client is not checked twice.
    pub(super) fn signatures_hold(&mut self, batch: &Batch) -> bool {
        let unchecked: Vec<Transaction> = batch
            .txs
            .iter()
            .filter(|tx| !self.requests.pending.holds(tx) && !self.requests.verified.contains(tx))
            .cloned()
            .collect();
        let mut all = true;
        for checked in VerifiedTx::check_all(unchecked, self.verifier.network()) {
            match checked {
                Some(tx) => self.requests.verified.insert(tx),
                None => all = false,
            }
        }
        all
    }

    pub(super) fn on_request(&mut self, tx: VerifiedTx) {
        // A backup that checked this transaction in a batch already saw
        // it proposed: it does not wait for a proposal (the proposal
        // monitor would otherwise blame the primary for a request the
        // client merely sent late). A primary proposes only what is
        // unproposed, so it keeps every request it is given.
        let seen_proposed = !self.is_primary() && self.requests.verified.contains(&tx);
        let key = (tx.from, tx.nonce);
        match self.requests.pending.insert(tx, self.now) {
            Ok(()) => {
                if seen_proposed {
                    self.requests.pending.mark_proposed_key(key);
                }
            }
            Err(Rejected::Duplicate) => return,
            Err(Rejected::Full) => {
                self.ignore(Refusal::RequestPendingFull);
                return;
            }
            Err(Rejected::ClientFull) => {
                self.ignore(Refusal::RequestClientPendingFull);
                return;
            }
        }
        if !self.timers.is_set(Timer::Request) && self.status == Status::Normal {
            self.start_request_timer();
        }
        self.try_propose();
    }

    /// Starts the request timer afresh, for the oldest request held (PBFT
    /// §4.4: a backup waits for a request it received; only that request's
    /// execution stops the timer — see `Replica::executed_progress`).
    pub(super) fn start_request_timer(&mut self) {
        self.timers.set(
            Timer::Request,
            self.now.plus_millis(self.cfg.request_timeout_ms),
        );
        self.requests.timed_request = self.requests.pending.oldest_arrival();
    }

    /// Whether the request the timer was started for still waits: batches
    /// that execute without it are no progress for it, so they neither
    /// restart the timer nor clear its strikes (a primary that commits only
    /// stale or other transactions is suspected all the same).
    pub(super) fn timed_request_waits(&self) -> bool {
        match (
            self.requests.timed_request,
            self.requests.pending.oldest_arrival(),
        ) {
            (Some(timed), Some(oldest)) => oldest <= timed,
            _ => false,
        }
    }

    /// The request timer fired: nothing executed for a whole timeout while
    /// requests were pending. Fetch if peers are ahead; re-send our own votes
    /// of the view (a lost message is the likeliest cause); if the next expiry
    /// still finds no progress, suspect the primary.
    pub(super) fn on_request_timer(&mut self) {
        if !self.has_work() || self.status != Status::Normal {
            return;
        }
        self.timers.set(
            Timer::Request,
            self.now.plus_millis(self.cfg.request_timeout_ms),
        );
        if self.behind_peers() {
            // Others committed what we have not: fetch it. Strikes still
            // count, but any executed batch resets them, so a replica that is
            // catching up never suspects while a stuck fetch cannot hide a
            // faulty primary.
            let target = self.catch_up_target();
            self.start_fetch(target);
        } else if let Some(target) = self.stuck_below() {
            self.start_fetch(target);
        }
        self.view_change.timer_strikes = self.view_change.timer_strikes.saturating_add(1);
        let primary_silent = self.view_change.heard_at[self.primary().index()]
            .is_none_or(|t| t.plus_millis(self.cfg.request_timeout_ms) < self.now);
        self.retransmit_votes();
        if self.is_primary() && !self.guard.may_vote_afresh(self.view) {
            // A primary restarted after a crash cannot propose in this view:
            // it asks for the next one at once.
            tracing::info!(replica = %self.me, view = %self.view, pending = self.requests.pending.len(),
                "request timer expired; restarted primary cannot propose in this view, suspecting itself");
            self.suspect_primary();
        } else if self.view_change.timer_strikes >= 2 && !self.is_primary() {
            tracing::info!(replica = %self.me, view = %self.view, pending = self.requests.pending.len(),
                "request timer expired again; suspecting the primary");
            self.suspect_primary();
        } else if primary_silent && !self.is_primary() {
            tracing::info!(replica = %self.me, view = %self.view, pending = self.requests.pending.len(),
                "request timer expired and the primary sent nothing for a whole timeout; suspecting it");
            self.suspect_primary();
        }
    }

    /// Whether something should execute that has not: a pending request, a
    /// PRE-PREPARE above our height, or a seq that f+1 COMMITs show prepared
    /// at a correct replica. (A Byzantine backup alone can produce none of
    /// these, so it cannot make correct replicas time out and suspect.) The
    /// request timer runs while this holds, so a replica one block behind
    /// when the clients fall silent still retransmits, fetches, or suspects.
    pub(super) fn has_work(&self) -> bool {
        if !self.requests.pending.is_empty()
            || self.catch_up.weakly_committed > self.log.last_executed
        {
            return true;
        }
        self.log.awaits_execution(self.cluster.weak_quorum())
    }

    /// Proposes batches while we are primary, hold unproposed requests, and
    /// have room in the watermark window and the pipeline.
    pub(super) fn try_propose(&mut self) {
        if !self.requests.defer_proposals {
            self.form_batches();
        }
    }

    pub(super) fn form_batches(&mut self) {
        while self.is_primary()
            && self.guard.may_vote_afresh(self.view)
            && self.requests.pending.has_unproposed()
        {
            // Never at or below our height: a primary that caught up by
            // fetching executed seqs above its last proposal (found by
            // `check_invariants`: a slot below the stable checkpoint, seed
            // 2100264 with bad-new-view; the simulator's rule S11).
            let seq = teeth::proposal_seq(self.requests.next_seq, self.log.last_executed.next());
            if seq > self.log.window_top() {
                break;
            }
            if seq.0.saturating_sub(self.log.last_executed.0) > self.cfg.pipeline_depth {
                break;
            }
            let txs = self.requests.pending.take_batch(self.cfg.batch_txs_max);
            if txs.is_empty() {
                break;
            }
            let batch = Batch {
                timestamp_ms: self.wall_ms().max(1),
                txs,
            };
            self.propose(seq, batch);
        }
    }

    fn propose(&mut self, seq: Seq, batch: Batch) {
        let bytes: Arc<[u8]> = batch.encode().into();
        let digest = batch_digest(&bytes);
        let view = self.view;
        let pp = self.sign_vote(
            VoteKind::PrePrepare,
            view,
            seq,
            digest,
            PrePrepare { view, seq, digest },
        );
        self.requests.next_seq = seq.next();
        self.actions
            .push_back(Action::Broadcast(super::messages::Message::PrePrepare {
                pre_prepare: pp.signed().clone(),
                batch: bytes.to_vec(),
            }));
        let slot = self.log.slot_mut(seq, view);
        slot.pre_prepare = Some(pp);
        slot.batch = Some((Arc::new(batch), bytes));
        self.check_prepared(seq);
    }

    /// Called after a NEW-VIEW: what the new primary re-proposed is in flight.
    pub(super) fn reset_proposals(&mut self, in_flight: &BTreeSet<(PublicKey, u64)>) {
        self.requests.pending.reset_proposals(in_flight);
    }
}
