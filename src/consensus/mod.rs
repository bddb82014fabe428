//! The PBFT core (L3): a deterministic, sans-IO state machine.
//!
//! It follows Castro & Liskov, *Practical Byzantine Fault Tolerance and
//! Proactive Recovery* (TOCS 2002): normal case §4.2, garbage collection §4.3,
//! view change §4.4, with batching and several seqs in flight inside the
//! watermark window `(h, h + L]`.
//!
//! ```text
//!            now + Input                       poll_action()
//!   Message / Request / Executed / Tick ──▶ ┌──────────────┐ ──▶ Persist (durable before
//!                                           │   Replica    │       any later Send)
//!            verify (crypto) → Verified<T>  │ view, log,   │ ──▶ Send / Broadcast
//!            ignore_* guards (counted)      │ checkpoints, │ ──▶ Execute (seq order, once)
//!                                           │ view changes │ ──▶ EnteredView
//!                                           └──────────────┘
//!                                       next_deadline() ──▶ the driver's timer
//! ```
//!
//! The core performs no I/O, reads no clock (time arrives with every input),
//! draws no randomness and never touches tokio, quinn or rocksdb; a tidy test
//! keeps it that way. The same core runs in production (`node::runtime`) and in
//! the deterministic simulator (`sim`).
//!
//! Output order carries meaning: the driver executes actions in order, and a
//! `Persist` must be durable before any later `Send`/`Broadcast`. That is what
//! makes a replica never forget a COMMIT, a prepared certificate, a
//! VIEW-CHANGE or a NEW-VIEW it sent, even across a crash. PRE-PREPAREs and
//! PREPAREs are sent without a `Persist` (they are on every block's path):
//! a driver stopping cleanly saves them ([`Replica::unsaved_votes`]), and a
//! replica restarted after a crash (`Recovered::votes_lost`) signs none in
//! the view it crashed in, so it never contradicts one it forgot (no
//! double-signing, TESTING.md S7).
//!
//! Peer input is never trusted: bytes become [`Verified`] only through
//! [`crate::crypto::Verifier`], and anything Byzantine or stale is dropped by an
//! `ignore_*` guard with a reason and a counter. A broken *local* invariant is
//! an assertion.

mod catch_up;
mod checkpoint;
mod guard;
mod inbox;
mod invariants;
pub mod messages;
mod normal;
pub mod pacer;
mod refusal;
pub use refusal::Refusal;
mod proofs;
mod requests;
mod restore;
mod timers;
mod view_change;

#[cfg(test)]
mod tests;

use crate::cluster::Cluster;
use crate::crypto::{Digest, KeyPair, NetworkId, Payload, Signed, Verified, Verifier};
use crate::tx::{Batch, Transaction, VerifiedCache, VerifiedTx, BATCH_BYTES_MAX};
use crate::types::{ReplicaId, Seq, Time, View};
use messages::*;
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use timers::{Timer, TimerTable};

pub use requests::Pending;

/// Protocol parameters; part of genesis, identical at every replica.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `K`: a CHECKPOINT is taken every `checkpoint_interval` seqs.
    pub checkpoint_interval: u64,
    /// `L`: seqs in `(h, h + L]` may be in flight; a multiple of K, at least 2K.
    pub watermark_window: u64,
    /// Most transactions in one batch.
    pub batch_txs_max: usize,
    /// Most proposed-but-unexecuted batches a primary keeps in flight.
    /// Requests arriving while the pipeline is full wait and join the next
    /// batch, so a lower depth means bigger batches under load. Default 1:
    /// on loopback the per-batch cost (signatures, syncs, messages)
    /// dominates, and at 1,000 tx/s offered depth 1 gave p50 13–15 ms
    /// against 22–24 ms with depth 2 or 4 (same closed-loop throughput).
    /// Raise it when the network round trip, not the replicas, is the limit.
    pub pipeline_depth: u64,
    /// How long a backup waits for a known request to execute before it
    /// suspects the primary; also the first view-change timeout.
    pub request_timeout_ms: u64,
    /// Cap on the doubling view-change timeout.
    pub view_change_timeout_max_ms: u64,
    /// Interval for re-sending a VIEW-CHANGE and retrying a fetch.
    pub retransmit_ms: u64,
    /// Most requests held pending in total, and per client.
    pub pending_requests_max: usize,
    pub pending_per_client_max: usize,
    /// A fresh PRE-PREPARE's timestamp must be within this of the backup's clock.
    pub timestamp_skew_max_ms: u64,
    /// Most messages buffered for views above the current one.
    pub future_messages_max: usize,
    /// Most committed batches asked for (or served) in one fetch.
    pub fetch_batches_max: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            checkpoint_interval: 16,
            watermark_window: 64,
            batch_txs_max: 512,
            pipeline_depth: 1,
            request_timeout_ms: 2_000,
            view_change_timeout_max_ms: 30_000,
            retransmit_ms: 500,
            pending_requests_max: 50_000,
            pending_per_client_max: 1_024,
            timestamp_skew_max_ms: 60_000,
            future_messages_max: 1_024,
            fetch_batches_max: 32,
        }
    }
}

impl Config {
    /// The range each parameter must lie in (issue 24, defect 9: without
    /// upper bounds, values passed that stall a network or wrap an
    /// arithmetic step). Inside these ranges, and with the relations
    /// [`Config::validate`] checks, a network keeps committing: the
    /// property test `tests/sim_scenarios.rs`
    /// `every_configuration_validate_accepts_keeps_committing` runs
    /// simulated networks on configurations drawn from them, extremes
    /// included. `configs/replica.toml` and the README list them.
    pub const RANGES: [(&'static str, u64, u64); 12] = [
        ("checkpoint_interval", 1, 1_024),
        ("watermark_window", 2, 8_192),
        ("batch_txs_max", 1, crate::tx::BATCH_TXS_MAX as u64),
        ("pipeline_depth", 1, 256),
        // Below ~50 ms a backup suspects a primary on a loaded loopback.
        ("request_timeout_ms", 50, 600_000),
        ("view_change_timeout_max_ms", 50, 3_600_000),
        ("retransmit_ms", 10, 5_000),
        ("pending_requests_max", 1, 1_000_000),
        ("pending_per_client_max", 1, 65_536),
        // Clocks of real hosts differ: a second is the least skew allowed.
        ("timestamp_skew_max_ms", 1_000, 86_400_000),
        ("future_messages_max", 1, 65_536),
        ("fetch_batches_max", 1, 1_024),
    ];

    fn values(&self) -> [u64; 12] {
        [
            self.checkpoint_interval,
            self.watermark_window,
            self.batch_txs_max as u64,
            self.pipeline_depth,
            self.request_timeout_ms,
            self.view_change_timeout_max_ms,
            self.retransmit_ms,
            self.pending_requests_max as u64,
            self.pending_per_client_max as u64,
            self.timestamp_skew_max_ms,
            self.future_messages_max as u64,
            self.fetch_batches_max,
        ]
    }

    /// Checks each parameter's range and the relations between them; the
    /// error names the key.
    pub fn validate(&self) -> Result<(), String> {
        for ((key, min, max), value) in Config::RANGES.iter().zip(self.values()) {
            if !(*min..=*max).contains(&value) {
                return Err(format!("{key} ({value}) must be in {min}..={max}"));
            }
        }
        let k = self.checkpoint_interval;
        if self.watermark_window < 2 * k || !self.watermark_window.is_multiple_of(k) {
            return Err(format!(
                "watermark_window ({}) must be a multiple of checkpoint_interval ({k}) and at least twice it",
                self.watermark_window
            ));
        }
        if self.pipeline_depth > self.watermark_window {
            return Err("pipeline_depth must be in 1..=watermark_window".into());
        }
        if self.view_change_timeout_max_ms < self.request_timeout_ms {
            return Err("view_change_timeout_max_ms must be at least request_timeout_ms".into());
        }
        if self.retransmit_ms >= self.request_timeout_ms {
            return Err("retransmit_ms must be below request_timeout_ms".into());
        }
        if self.pending_per_client_max > self.pending_requests_max {
            return Err("pending_per_client_max must be at most pending_requests_max".into());
        }
        Ok(())
    }
}

/// What the driver feeds the core.
#[derive(Clone, Debug)]
pub enum Input {
    /// A message from replica `from`; the transport authenticated `from`, but
    /// signatures inside are still checked here.
    Message { from: ReplicaId, message: Message },
    /// A client's transaction (the driver already dropped nonces it executed);
    /// its signature is checked here.
    Request(Transaction),
    /// A client's transaction whose signature the driver already checked
    /// (the client endpoint, once per submission).
    VerifiedRequest(crate::tx::VerifiedTx),
    /// The driver executed `seq`; `checkpoint_digest` is
    /// `ledger::checkpoint_digest(block hash, state root after)`.
    Executed { seq: Seq, checkpoint_digest: Digest },
    /// Time passed; deadlines at or before `now` fire.
    Tick,
}

/// Something the core needs durable before it acts on it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PersistOp {
    /// The current view and, during a view change, the view being changed to.
    View {
        view: View,
        changing_to: Option<View>,
    },
    /// Our own PRE-PREPARE (as primary) with its batch: written only by a
    /// clean stop ([`Replica::unsaved_votes`]).
    PrePrepare {
        pre_prepare: Signed<PrePrepare>,
        batch: Vec<u8>,
    },
    /// Our own PREPARE: written only by a clean stop.
    Prepare(Signed<Prepare>),
    /// Our own COMMIT.
    Commit(Signed<Commit>),
    /// A prepared certificate, kept so a later VIEW-CHANGE can carry it.
    Prepared(PreparedProof),
    /// Our own VIEW-CHANGE.
    ViewChange(Signed<ViewChange>),
    /// Our own NEW-VIEW (as new primary).
    NewView(Signed<NewView>),
    /// A new stable checkpoint; everything of the log at or below it may go.
    StableCheckpoint {
        seq: Seq,
        proof: Vec<Signed<Checkpoint>>,
    },
    /// This replica sends no new PRE-PREPARE or PREPARE in any view up to
    /// `view` — and, with `commits`, no COMMIT either: a crash erased the
    /// record of the PRE-PREPAREs and PREPAREs it sent there; a lost or
    /// restored store erased its COMMITs too. Written before it sends
    /// anything after such a start, and kept, so a later clean stop and
    /// restart cannot forget the rule.
    Abstain { view: View, commits: bool },
}

/// What the core asks the driver to do, in order.
#[derive(Clone, Debug)]
pub enum Action {
    /// Make these durable (one synced write) before executing any later action.
    Persist(Vec<PersistOp>),
    Send {
        to: ReplicaId,
        message: Message,
    },
    /// To every other replica.
    Broadcast(Message),
    /// Execute the committed batch at `seq`. Seqs arrive strictly in order,
    /// each exactly once; reply with [`Input::Executed`].
    Execute {
        seq: Seq,
        digest: Digest,
        batch: Arc<Batch>,
        batch_bytes: Arc<[u8]>,
        certificate: Vec<Signed<Commit>>,
    },
    /// The replica entered `view` (after a NEW-VIEW) — for logs and metrics.
    EnteredView(View),
}

/// What a restarted replica recovers from its store.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Every persisted op above the stable checkpoint, in write order.
    pub ops: Vec<PersistOp>,
    /// The last seq the ledger executed (its height).
    pub last_executed: Seq,
    /// Checkpoint digest at `last_executed`, if it is a checkpoint seq.
    pub last_checkpoint_digest: Option<Digest>,
    /// The replica stopped without saving its PRE-PREPAREs and PREPAREs (a
    /// crash; see [`Replica::unsaved_votes`]): it may have sent some in its
    /// recovered view that `ops` does not hold, so it sends no new ones
    /// there.
    pub votes_lost: bool,
    /// The store is not the one this replica voted with: it is empty or
    /// older than the last view the replica recorded entering (a wiped
    /// disk, a backup put back). It may have sent any vote, COMMITs
    /// included, in views up to this one, so it sends none there.
    pub store_lost: Option<View>,
}

/// Counters of what the core did and what it refused.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Dropped peer or client input by reason.
    pub ignored: BTreeMap<Refusal, u64>,
    pub view_changes_started: u64,
    pub new_views_entered: u64,
    pub batches_executed: u64,
    pub batches_fetched: u64,
    pub stable_checkpoints: u64,
}

/// Kinds of vote in the double-sign guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum VoteKind {
    PrePrepare,
    Prepare,
    Commit,
}

/// A committed batch waiting for (or past) execution.
#[derive(Clone, Debug)]
struct CommittedEntry {
    digest: Digest,
    batch: Arc<Batch>,
    bytes: Arc<[u8]>,
    certificate: Vec<Signed<Commit>>,
}

/// One seq of the log, holding the current view's messages.
#[derive(Clone, Debug, Default)]
struct Slot {
    view: View,
    pre_prepare: Option<Verified<PrePrepare>>,
    batch: Option<(Arc<Batch>, Arc<[u8]>)>,
    prepares: BTreeMap<ReplicaId, Verified<Prepare>>,
    commits: BTreeMap<ReplicaId, Verified<Commit>>,
    sent_commit: bool,
    /// Peers whose re-sent votes we answered since our own last retransmission
    /// (at most one answer each, so two replicas never bounce duplicates).
    answered: std::collections::BTreeSet<ReplicaId>,
    /// Prepared certificate from the highest view this replica prepared in.
    prepared: Option<(View, PreparedProof)>,
    committed: Option<CommittedEntry>,
    /// Signers whose vote arrived after it could matter and was neither
    /// checked nor kept (see `Replica::skip_late_vote`; at most 2n).
    late: std::collections::BTreeSet<(VoteKind, ReplicaId)>,
}

/// A verified normal-case message, routed by view.
#[derive(Clone, Debug)]
enum ViewMessage {
    PrePrepare(Verified<PrePrepare>, Vec<u8>),
    Prepare(Verified<Prepare>),
    Commit(Verified<Commit>),
}

impl ViewMessage {
    /// Bytes it holds while buffered (payload, signature, batch).
    fn bytes(&self) -> usize {
        const SIGNED_OVERHEAD: usize = 64 + 8;
        match self {
            ViewMessage::PrePrepare(p, batch) => {
                p.signed().payload.len() + SIGNED_OVERHEAD + batch.len()
            }
            ViewMessage::Prepare(p) => p.signed().payload.len() + SIGNED_OVERHEAD,
            ViewMessage::Commit(c) => c.signed().payload.len() + SIGNED_OVERHEAD,
        }
    }

    fn view(&self) -> View {
        match self {
            ViewMessage::PrePrepare(p, _) => p.view,
            ViewMessage::Prepare(p) => p.view,
            ViewMessage::Commit(c) => c.view,
        }
    }
}

/// Catch-up in progress: asking peers for committed batches up to `target`.
#[derive(Clone, Debug)]
struct Fetch {
    target: Seq,
    peer_cursor: u32,
    /// `Some(peers silent in a row)` while probing after a restart for
    /// batches committed while we were down (`Replica::probe_for_missed_batches`):
    /// the target moves on with every range that arrives, and the probe ends
    /// once every peer let a retransmission timeout pass without one.
    probe: Option<u32>,
}

/// A PBFT replica.
pub struct Replica {
    cfg: Config,
    cluster: Cluster,
    me: ReplicaId,
    key: KeyPair,
    verifier: Verifier,
    /// The timer clock: monotonic (the highest time fed in).
    now: Time,
    /// Wall-clock milliseconds, for batch timestamps and the skew check
    /// only (issue 24, defect 7): a wall-clock step must not move or freeze
    /// the timers. `None` until set; then `now` stands in for it (the
    /// simulator and tests run on one clock).
    wall_ms: Option<u64>,

    view: View,
    /// `Some(v)` between sending VIEW-CHANGE for `v` and entering `v`.
    changing_to: Option<View>,
    /// Failed view-change attempts since the last executed batch.
    vc_attempts: u32,
    /// Request-timer expiries since the last executed batch or new view.
    timer_strikes: u32,
    /// Latest view each replica suspects (bounded by `n`).
    suspects: BTreeMap<ReplicaId, View>,
    /// Latest valid VIEW-CHANGE per sender (bounded by `n`).
    view_changes: BTreeMap<ReplicaId, Verified<ViewChange>>,
    own_view_change: Option<Signed<ViewChange>>,
    /// The NEW-VIEW that brought us into the current view (re-sent to stragglers).
    latest_new_view: Option<Signed<NewView>>,
    /// When we last sent each replica our NEW-VIEW (bounded by `n`): a
    /// straggler is answered again only after a request timeout, so a lost
    /// answer is repaired and a Byzantine asker gains no amplification.
    new_view_answered: BTreeMap<ReplicaId, Time>,
    /// When we last asked each peer for a NEW-VIEW (bounded by `n`).
    new_view_requested: BTreeMap<ReplicaId, Time>,
    /// Highest seq we saw 2f+1 matching COMMITs for (committed somewhere).
    known_committed: Seq,
    /// Highest seq we saw f+1 matching COMMITs for: prepared at a correct
    /// replica, so likely committed there. Checked only when the request
    /// timer finds us stuck, as a reason to fetch.
    weakly_committed: Seq,
    /// COMMITs seen above our window, as evidence we are behind (bounded).
    far_commits: BTreeMap<Seq, BTreeMap<ReplicaId, Digest>>,
    /// (peer, our height) pairs we already helped after a SUSPECT (bounded).
    lagging_answered: std::collections::BTreeSet<(ReplicaId, Seq)>,

    /// `h`: the stable checkpoint and its proof.
    low: Seq,
    stable_proof: Vec<Signed<Checkpoint>>,
    slots: BTreeMap<Seq, Slot>,
    /// Highest seq a NEW-VIEW may place above our window while we catch up.
    new_view_ceiling: Seq,
    next_seq: Seq,
    /// With deferred proposals (a driver grouping inputs), a primary forms
    /// batches only at [`Replica::propose_now`], so every request of the
    /// group can join one batch.
    defer_proposals: bool,
    last_executed: Seq,
    checkpoints: BTreeMap<Seq, BTreeMap<ReplicaId, Verified<Checkpoint>>>,
    own_checkpoints: BTreeMap<Seq, Digest>,
    votes: BTreeMap<(VoteKind, View, Seq), Digest>,
    /// The view this replica was in when it stopped without saving its
    /// PRE-PREPAREs and PREPAREs (`Recovered::votes_lost`). It sends no new
    /// ones in that view, so it never contradicts one it forgot: it takes
    /// part there only through COMMITs (whose prepared certificates are
    /// persisted before they are sent) until the next view.
    forgotten_view: Option<View>,
    /// The view up to which this replica sends no COMMIT either: its store
    /// was lost (`Recovered::store_lost`), COMMITs with it.
    forgotten_commits: Option<View>,

    pending: Pending,
    /// Client signatures checked in batches (PRE-PREPAREs, fetches): one
    /// that arrives again, from its client or re-proposed, is not checked
    /// again. Bounded by [`verified_cache_max`].
    verified: VerifiedCache,
    /// Every deadline, by timer.
    timers: TimerTable,
    /// Arrival number of the request the request timer was started for
    /// (the oldest held then); `None` if it runs for other work.
    timed_request: Option<u64>,
    /// Normal case: re-send our votes when [`Timer::VoteRetransmit`] fires
    /// if nothing executed since `vote_retransmit_mark` (see
    /// `on_vote_retransmit_timer`); how many times in a row that found no
    /// progress (the interval doubles).
    vote_retransmit_mark: Seq,
    vote_retransmit_streak: u32,
    /// Per sender, the highest view a VIEW-CHANGE of it was refused for:
    /// its proofs are not checked again for that view or below (issue 17:
    /// each check of a VIEW-CHANGE's certificates costs up to
    /// (2f+1)·(L+1) signatures, and a peer could resend one refused
    /// VIEW-CHANGE for ever).
    refused_view_changes: BTreeMap<ReplicaId, View>,
    /// Checks of VIEW-CHANGE certificates per sender: a burst, then one per
    /// half request timeout (an honest replica asks for a new view at most
    /// once per view-change timeout; its resends of one are not checked
    /// again).
    view_change_checks: pacer::Pacer<ReplicaId>,
    /// Per sender, signature checks that were wasted: the message failed
    /// its check or was refused after it (stale, duplicate, out of window).
    /// A sender that wastes more than [`WASTED_CHECKS_BURST`] at once, then
    /// one per [`WASTED_CHECK_INTERVAL_MS`], has its messages that need a
    /// check dropped unchecked until its allowance refills (issue 17,
    /// defect 5: a peer flooding frames that each cost a check could take
    /// the loop thread). Honest peers waste a few checks per view change,
    /// far below the rate.
    wasted_checks: pacer::Pacer<ReplicaId>,
    /// Inputs refused as useless so far (every [`Replica::ignore`]; not
    /// [`Replica::ignore_kept`]).
    refusals: u64,
    fetch: Option<Fetch>,
    fetched: BTreeMap<Seq, CommittedEntry>,
    /// Highest seq each replica has shown, by a CHECKPOINT, that it executed.
    progress_claims: BTreeMap<ReplicaId, Seq>,
    future: VecDeque<(ReplicaId, ViewMessage)>,

    actions: VecDeque<Action>,
    stats: Stats,
    /// Whether [`Replica::check_invariants`] runs after every input (debug
    /// builds, unit tests, the simulator).
    invariant_checks: bool,
}

impl Replica {
    /// A replica starting from genesis, or from `recovered` state after a restart.
    pub fn new(
        cfg: Config,
        cluster: Cluster,
        me: ReplicaId,
        key: KeyPair,
        verifier: Verifier,
        recovered: Recovered,
    ) -> Replica {
        assert!(cluster.contains(me), "replica id outside the cluster");
        assert_eq!(verifier.replica_count(), cluster.n() as usize);
        let pending = Pending::new(cfg.pending_requests_max, cfg.pending_per_client_max);
        let verified = VerifiedCache::new(verified_cache_max(&cfg));
        let view_change_checks =
            pacer::Pacer::new(4, (cfg.request_timeout_ms / 2).max(1), cluster.n() as usize);
        let mut r = Replica {
            cfg,
            cluster,
            me,
            key,
            verifier,
            now: Time::ZERO,
            wall_ms: None,
            view: View(0),
            changing_to: None,
            vc_attempts: 0,
            timer_strikes: 0,
            suspects: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            own_view_change: None,
            latest_new_view: None,
            new_view_answered: Default::default(),
            new_view_requested: Default::default(),
            known_committed: Seq(0),
            weakly_committed: Seq(0),
            far_commits: BTreeMap::new(),
            lagging_answered: Default::default(),
            low: Seq(0),
            stable_proof: Vec::new(),
            slots: BTreeMap::new(),
            new_view_ceiling: Seq(0),
            next_seq: Seq(1),
            defer_proposals: false,
            last_executed: recovered.last_executed,
            checkpoints: BTreeMap::new(),
            own_checkpoints: BTreeMap::new(),
            votes: BTreeMap::new(),
            forgotten_view: None,
            forgotten_commits: None,
            pending,
            verified,
            timers: TimerTable::default(),
            timed_request: None,
            vote_retransmit_mark: Seq(0),
            vote_retransmit_streak: 0,
            refused_view_changes: BTreeMap::new(),
            view_change_checks,
            wasted_checks: pacer::Pacer::new(
                WASTED_CHECKS_BURST,
                WASTED_CHECK_INTERVAL_MS,
                cluster.n() as usize,
            ),
            refusals: 0,
            fetch: None,
            fetched: BTreeMap::new(),
            progress_claims: BTreeMap::new(),
            future: VecDeque::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
            invariant_checks: cfg!(any(debug_assertions, test)),
        };
        r.restore(recovered);
        r
    }

    // ----- driver interface -------------------------------------------------

    /// Makes the primary propose only at [`Replica::propose_now`] (for a
    /// driver that feeds inputs in groups; see `Node::ingest`).
    pub fn defer_proposals(&mut self, defer: bool) {
        self.defer_proposals = defer;
    }

    /// Proposes what deferred proposals held back (a no-op unless primary
    /// with unproposed requests and room in the pipeline). Drain
    /// [`Replica::poll_action`] afterwards.
    pub fn propose_now(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.form_batches();
        self.after_input();
    }

    /// Sets the wall clock (milliseconds since the Unix epoch) that batch
    /// timestamps and the timestamp-skew check use, which may step forward
    /// or back; the `now` of inputs runs the timers and must be monotonic.
    pub fn set_wall_clock(&mut self, wall_ms: u64) {
        self.wall_ms = Some(wall_ms);
    }

    /// Wall-clock milliseconds: the last [`Replica::set_wall_clock`], or
    /// the timer clock if none was set.
    pub(crate) fn wall_ms(&self) -> u64 {
        self.wall_ms.unwrap_or_else(|| self.now.as_millis())
    }

    /// Feeds one input at time `now`. Drain [`Replica::poll_action`] afterwards.
    pub fn on_input(&mut self, now: Time, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Message { from, message } => self.on_message(from, message),
            Input::Request(tx) => self.on_unverified_request(tx),
            Input::VerifiedRequest(tx) => self.on_request(tx),
            Input::Executed {
                seq,
                checkpoint_digest,
            } => self.on_executed(seq, checkpoint_digest),
            Input::Tick => {}
        }
        self.on_timers();
        self.after_input();
    }

    fn after_input(&self) {
        if self.invariant_checks {
            self.check_invariants();
        }
    }

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver should next send [`Input::Tick`].
    pub fn next_deadline(&self) -> Option<Time> {
        self.timers.next()
    }

    pub fn id(&self) -> ReplicaId {
        self.me
    }
    pub fn view(&self) -> View {
        self.view
    }
    /// `Some(v)` while a view change to `v` is in progress.
    pub fn changing_to(&self) -> Option<View> {
        self.changing_to
    }
    pub fn is_primary(&self) -> bool {
        self.changing_to.is_none() && self.cluster.primary(self.view) == self.me
    }
    pub fn primary(&self) -> ReplicaId {
        self.cluster.primary(self.view)
    }
    pub fn low_watermark(&self) -> Seq {
        self.low
    }
    pub fn stable_proof(&self) -> &[Signed<Checkpoint>] {
        &self.stable_proof
    }
    pub fn last_executed(&self) -> Seq {
        self.last_executed
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Client requests held pending.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
    /// Requests of `client` held pending, and the most one client may hold.
    pub fn pending_of(&self, client: &crate::crypto::PublicKey) -> (usize, usize) {
        (
            self.pending.of_client(client),
            self.cfg.pending_per_client_max,
        )
    }
    /// Whether exactly this request is held pending.
    pub fn holds_pending(&self, tx: &Transaction) -> bool {
        self.pending.holds(tx)
    }
    pub fn cluster(&self) -> Cluster {
        self.cluster
    }
    pub fn network(&self) -> NetworkId {
        self.verifier.network()
    }
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }
    /// `tx` as checked, if exactly it (signature included) was checked
    /// recently in a batch (`verified`): a client's copy of a transaction
    /// this replica saw in a PRE-PREPARE needs no second signature check.
    pub fn verified_tx(&self, tx: &Transaction) -> Option<VerifiedTx> {
        self.verified.get(tx)
    }
    /// Sizes of every bounded structure, for memory-bound checks (S8).
    pub fn footprint(&self) -> Footprint {
        Footprint {
            slots: self.slots.len(),
            future_messages: self.future.len(),
            future_bytes: self.future.iter().map(|(_, m)| m.bytes()).sum(),
            pending_requests: self.pending.len(),
            checkpoint_votes: self.checkpoints.values().map(|m| m.len()).sum(),
            view_changes: self.view_changes.len(),
            fetched: self.fetched.len(),
            votes: self.votes.len(),
            verified_txs: self.verified.len(),
            reply_cache: 0,
        }
    }
    /// The bounds [`Replica::footprint`] must stay within.
    pub fn footprint_limits(&self) -> Footprint {
        let n = self.cluster.n() as usize;
        let window = self.cfg.watermark_window as usize;
        Footprint {
            slots: 2 * window + 1,
            // Each sender keeps at least one (a cap below n is rounded up).
            future_messages: n * self.future_share(),
            future_bytes: n * FUTURE_BYTES_PER_SENDER,
            pending_requests: self.cfg.pending_requests_max,
            checkpoint_votes: n * CHECKPOINTS_PER_REPLICA,
            view_changes: n,
            fetched: self.fetch_window() as usize,
            votes: 3 * (2 * window + 1) * 2,
            verified_txs: verified_cache_max(&self.cfg),
            reply_cache: 0,
        }
    }

    // ----- dispatch -----------------------------------------------------------

    /// Counts and logs dropped input. `reason` names the guard.
    fn ignore(&mut self, reason: Refusal) {
        self.ignore_kept(reason);
        self.refusals += 1;
    }

    /// Counts a refusal of an input that was nonetheless used (so its
    /// signature check was not wasted).
    fn ignore_kept(&mut self, reason: Refusal) {
        tracing::debug!(replica = %self.me, view = %self.view, %reason, "ignored input");
        *self.stats.ignored.entry(reason).or_default() += 1;
    }

    fn sign<T: Payload>(&self, value: T) -> Verified<T> {
        self.key.sign(self.verifier.network(), self.me, value)
    }

    fn view_change_timeout_ms(&self) -> u64 {
        let shift = self.vc_attempts.saturating_sub(1).min(20);
        (self.cfg.request_timeout_ms << shift).min(self.cfg.view_change_timeout_max_ms)
    }

    fn fetch_window(&self) -> u64 {
        self.cfg
            .watermark_window
            .max(2 * self.cfg.fetch_batches_max)
    }

    fn on_timers(&mut self) {
        let now = self.now;
        for timer in Timer::FIRING_ORDER {
            if self.timers.expire(timer, now) {
                match timer {
                    Timer::Retransmit => self.on_retransmit_timer(),
                    Timer::Fetch => self.on_fetch_timer(),
                    Timer::ViewChange => self.on_view_change_timer(),
                    Timer::Request => self.on_request_timer(),
                    Timer::VoteRetransmit => self.on_vote_retransmit_timer(),
                    Timer::NewViewRequest => self.on_new_view_request_timer(),
                }
            }
        }
        if !self.timers.is_set(Timer::Request) && self.changing_to.is_none() && self.has_work() {
            self.start_request_timer();
        }
        if !self.has_work() {
            self.timers.stop(Timer::VoteRetransmit);
        } else if !self.timers.is_set(Timer::VoteRetransmit) && self.changing_to.is_none() {
            let shift = self.vote_retransmit_streak.min(20);
            let interval = self
                .cfg
                .retransmit_ms
                .saturating_mul(1 << shift)
                .min(self.cfg.request_timeout_ms);
            self.vote_retransmit_mark = self.last_executed;
            self.timers
                .set(Timer::VoteRetransmit, now.plus_millis(interval));
        }
    }

    /// Whether something should execute that has not: a pending request, a
    /// PRE-PREPARE above our height, or a seq that f+1 COMMITs show prepared
    /// at a correct replica. (A Byzantine backup alone can produce none of
    /// these, so it cannot make correct replicas time out and suspect.) The
    /// request timer runs while this holds, so a replica one block behind
    /// when the clients fall silent still retransmits, fetches, or suspects.
    pub(super) fn has_work(&self) -> bool {
        if !self.pending.is_empty() || self.weakly_committed > self.last_executed {
            return true;
        }
        let weak = self.cluster.weak_quorum();
        self.slots
            .range(self.last_executed.next()..)
            .any(|(_, slot)| slot.pre_prepare.is_some() || slot.commits.len() >= weak)
    }
}

/// Wasted signature checks a peer may cause at once before its messages go
/// unchecked (see `Replica::wasted_checks`).
pub const WASTED_CHECKS_BURST: u64 = 1024;
/// Then one wasted check per this many milliseconds: at ~50 µs a check,
/// a flooding peer gets at most ~5 % of the loop thread.
pub const WASTED_CHECK_INTERVAL_MS: u64 = 1;

/// Bytes of future-view messages kept per sender: two full batches (the
/// PRE-PREPAREs of the next view's primary, say) and their votes. With
/// `n` senders a replica holds at most `n` times this.
pub const FUTURE_BYTES_PER_SENDER: usize = 2 * BATCH_BYTES_MAX + 64 * 1024;

/// Client signatures remembered as checked: four full batches (a backup
/// gets a client's own copy of a transfer at most a few batches after the
/// PRE-PREPARE carrying it), at least 1,024.
fn verified_cache_max(cfg: &Config) -> usize {
    (4 * cfg.batch_txs_max).max(1024)
}

/// Checkpoint votes kept per replica: enough to span the window and a little
/// beyond, so a lagging replica can still assemble a proof.
const CHECKPOINTS_PER_REPLICA: usize = 8;

/// Sizes of the replica's bounded structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub slots: usize,
    pub future_messages: usize,
    /// Bytes held by buffered future-view messages.
    pub future_bytes: usize,
    pub pending_requests: usize,
    pub checkpoint_votes: usize,
    pub view_changes: usize,
    pub fetched: usize,
    pub votes: usize,
    pub verified_txs: usize,
    /// Clients whose last reply the node keeps (`Node::footprint`).
    pub reply_cache: usize,
}

impl Footprint {
    /// Names of the fields that exceed `limits`.
    pub fn exceeded(&self, limits: &Footprint) -> Vec<&'static str> {
        let pairs = [
            ("slots", self.slots, limits.slots),
            (
                "future_messages",
                self.future_messages,
                limits.future_messages,
            ),
            ("future_bytes", self.future_bytes, limits.future_bytes),
            (
                "pending_requests",
                self.pending_requests,
                limits.pending_requests,
            ),
            (
                "checkpoint_votes",
                self.checkpoint_votes,
                limits.checkpoint_votes,
            ),
            ("view_changes", self.view_changes, limits.view_changes),
            ("fetched", self.fetched, limits.fetched),
            ("votes", self.votes, limits.votes),
            ("verified_txs", self.verified_txs, limits.verified_txs),
            ("reply_cache", self.reply_cache, limits.reply_cache),
        ];
        pairs
            .into_iter()
            .filter(|(_, v, l)| v > l)
            .map(|(n, _, _)| n)
            .collect()
    }
}

impl Slot {
    /// Our PRE-PREPARE in this slot with its batch, if we are its primary.
    fn own_pre_prepare(&self, me: ReplicaId) -> Option<(Signed<PrePrepare>, Vec<u8>)> {
        match (&self.pre_prepare, &self.batch) {
            (Some(pp), Some((_, bytes))) if pp.signer() == me => {
                Some((pp.signed().clone(), bytes.to_vec()))
            }
            _ => None,
        }
    }

    /// Drops the messages of an older view, keeping what survives a view
    /// change: the prepared certificate and a committed batch.
    fn reset_to(&mut self, view: View) {
        let prepared = self.prepared.take();
        let committed = self.committed.take();
        *self = Slot {
            view,
            prepared,
            committed,
            ..Slot::default()
        };
    }
}
