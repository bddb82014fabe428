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
//!
//! The state has owners. [`Replica`] keeps what every handler needs (its
//! identity and keys, the clock, the view and its [`Status`], the timers and
//! the outgoing actions); the rest lives in parts, each a struct beside the
//! rules it keeps, documented on its fields and checked by
//! [`Replica::check_invariants`]:
//!
//! | part | file | owns |
//! |---|---|---|
//! | `Log` | `log.rs` | slots, the stable checkpoint `h` and its proof, the execution point; the window rules |
//! | `Checkpoints` | `checkpoint.rs` | CHECKPOINT votes and our own digests; finding a stable certificate |
//! | `VoteGuard` | `guard.rs` | every vote signed (the double-sign guard) and the views to sit out |
//! | `ViewChangeState` | `view_change.rs` | suspicions, VIEW-CHANGEs, the NEW-VIEW to re-send, view-change pacing |
//! | `CatchUp` | `catch_up.rs` | evidence of being behind, the fetch, fetched batches |
//! | `Inbox` | `inbox.rs` | future-view messages, the wasted-check allowance |
//! | `Requests` | `requests.rs` | client requests known but not executed ([`Pending`]), checked signatures, the primary's next seq |
//! | `VoteRetransmit` | `normal.rs` | when to re-send our votes in the normal case |
//! | `Monitor` | `monitor.rs` | the primary's pace as a backup sees it: the smoothed round, when it had room, what was forwarded |
//!
//! The phase files (`normal.rs`, `view_change.rs`, ...) hold the handlers:
//! `impl Replica` blocks that borrow the parts they need. Configuration is in
//! `config.rs`; the hooks of the deliberately broken variants (feature
//! `teeth`) in `teeth.rs`.

mod catch_up;
mod checkpoint;
mod config;
mod guard;
mod inbox;
mod invariants;
mod log;
pub mod messages;
mod monitor;
mod normal;
pub mod pacer;
mod proofs;
mod refusal;
mod requests;
mod restore;
mod teeth;
mod timers;
mod view_change;

#[cfg(test)]
mod tests;

pub use config::{message_bytes_max, Config};
pub use inbox::{FUTURE_BYTES_PER_SENDER, WASTED_CHECKS_BURST, WASTED_CHECK_INTERVAL_MS};
pub use refusal::Refusal;
pub use requests::Pending;
pub use view_change::Status;

use crate::cluster::Cluster;
use crate::crypto::{Digest, KeyPair, NetworkId, Payload, Signed, Verified, Verifier};
use crate::tx::{Batch, Transaction, VerifiedTx};
use crate::types::{ReplicaId, Seq, Time, View};
use catch_up::CatchUp;
use checkpoint::{Checkpoints, CHECKPOINTS_PER_REPLICA};
use guard::{VoteGuard, VoteKind};
use inbox::Inbox;
use log::{CommittedEntry, Log};
use messages::*;
use monitor::Monitor;
use normal::VoteRetransmit;
use requests::Requests;
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use timers::{Timer, TimerTable};
use view_change::ViewChangeState;

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

/// Why a replica started a view change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViewChangeReason {
    /// f+1 replicas (itself included, when its request timer expired)
    /// suspected the primary of the current view.
    Suspected,
    /// The view change it was in did not end with a NEW-VIEW in time: it
    /// asks for the next view.
    NewViewLate,
    /// f+1 other replicas asked for later views: it joined them (§4.5.2).
    Joined,
}

impl ViewChangeReason {
    pub const ALL: [ViewChangeReason; 3] = [
        ViewChangeReason::Suspected,
        ViewChangeReason::NewViewLate,
        ViewChangeReason::Joined,
    ];

    /// A label for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            ViewChangeReason::Suspected => "primary-suspected",
            ViewChangeReason::NewViewLate => "new-view-late",
            ViewChangeReason::Joined => "joined-others",
        }
    }
}

/// Counters of what the core did and what it refused.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Dropped peer or client input by reason.
    pub ignored: BTreeMap<Refusal, u64>,
    pub view_changes_started: u64,
    /// `view_changes_started`, by why each started.
    pub view_changes_by_reason: BTreeMap<ViewChangeReason, u64>,
    pub new_views_entered: u64,
    pub batches_executed: u64,
    pub batches_fetched: u64,
    pub stable_checkpoints: u64,
    /// Times the proposal monitor suspected a primary that left requests
    /// unproposed with room in its pipeline (`monitor.rs`).
    pub primaries_suspected_stalling: u64,
    /// Requests forwarded to a primary that left them unproposed.
    pub requests_forwarded: u64,
}

/// A PBFT replica: its identity and clock, its view and [`Status`], and
/// the parts that own the rest of its state, each with its rules.
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
    /// Normal operation in `view`, or a view change to a later view.
    status: Status,
    /// Slots, the stable checkpoint and the execution point (`log.rs`).
    log: Log,
    /// CHECKPOINT votes and our own checkpoint digests (`checkpoint.rs`).
    checkpoints: Checkpoints,
    /// The double-sign guard and the views to sit out (`guard.rs`).
    guard: VoteGuard,
    /// Suspicions, VIEW-CHANGEs and NEW-VIEWs (`view_change.rs`).
    view_change: ViewChangeState,
    /// Evidence of being behind, and the fetch (`catch_up.rs`).
    catch_up: CatchUp,
    /// Future-view messages and the wasted-check allowance (`inbox.rs`).
    inbox: Inbox,

    /// Client requests, and the primary's proposals (`requests.rs`).
    requests: Requests,
    /// Every deadline, by timer.
    timers: TimerTable,
    /// When to re-send our votes in the normal case (`normal.rs`).
    vote_retransmit: VoteRetransmit,
    /// The primary's pace as this backup sees it (`monitor.rs`).
    monitor: Monitor,

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
        let n = cluster.n() as usize;
        let mut r = Replica {
            now: Time::ZERO,
            wall_ms: None,
            view: View(0),
            status: Status::Normal,
            log: Log::new(cfg.watermark_window, recovered.last_executed),
            checkpoints: Checkpoints::default(),
            guard: VoteGuard::default(),
            view_change: ViewChangeState::new(&cfg, n),
            catch_up: CatchUp::default(),
            inbox: Inbox::new(n),
            requests: Requests::new(&cfg),
            timers: TimerTable::default(),
            vote_retransmit: VoteRetransmit::default(),
            monitor: Monitor::default(),
            actions: VecDeque::new(),
            stats: Stats::default(),
            invariant_checks: cfg!(any(debug_assertions, test)),
            cfg,
            cluster,
            me,
            key,
            verifier,
        };
        r.restore(recovered);
        r
    }

    // ----- driver interface -------------------------------------------------

    /// Makes the primary propose only at [`Replica::propose_now`] (for a
    /// driver that feeds inputs in groups; see `Node::ingest`).
    pub fn defer_proposals(&mut self, defer: bool) {
        self.requests.defer_proposals = defer;
    }

    /// Turns the proposal monitor (`monitor.rs`) on or off; it is on
    /// unless a driver turns it off — the simulator does, to show what the
    /// request timer alone catches (the teeth campaign of a request timer
    /// that any execution resets: the monitor replaces a censoring primary
    /// before the timer matters).
    pub fn watch_proposals(&mut self, on: bool) {
        self.monitor.enabled = on;
        if !on {
            self.timers.stop(timers::Timer::Proposal);
        }
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
        self.watch_primary();
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
    /// Normal operation, or a view change to a later view.
    pub fn status(&self) -> Status {
        self.status
    }
    /// `Some(v)` while a view change to `v` is in progress.
    pub fn changing_to(&self) -> Option<View> {
        self.status.changing_to()
    }
    /// The view we are in or changing to: the latest we signed for.
    fn latest_view(&self) -> View {
        self.status.changing_to().unwrap_or(self.view)
    }
    pub fn is_primary(&self) -> bool {
        self.status == Status::Normal && self.cluster.primary(self.view) == self.me
    }
    pub fn primary(&self) -> ReplicaId {
        self.cluster.primary(self.view)
    }
    pub fn low_watermark(&self) -> Seq {
        self.log.low
    }
    /// `H`, the top of the watermark window `(h, H]`.
    pub fn high_watermark(&self) -> Seq {
        self.log.window_top()
    }
    /// `Some(target)` while fetching committed batches up to `target` from
    /// peers because this replica is behind (not the short probe after a
    /// restart, which looks for batches it may have missed).
    pub fn catching_up_to(&self) -> Option<Seq> {
        self.catch_up
            .fetch
            .as_ref()
            .filter(|f| f.probe.is_none())
            .map(|f| f.target)
    }
    pub fn stable_proof(&self) -> &[Signed<Checkpoint>] {
        &self.log.stable_proof
    }
    pub fn last_executed(&self) -> Seq {
        self.log.last_executed
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Client requests held pending.
    pub fn pending_len(&self) -> usize {
        self.requests.pending.len()
    }
    /// Requests of `client` held pending, and the most one client may hold.
    pub fn pending_of(&self, client: &crate::crypto::PublicKey) -> (usize, usize) {
        (
            self.requests.pending.of_client(client),
            self.cfg.pending_per_client_max,
        )
    }
    /// Whether exactly this request is held pending.
    pub fn holds_pending(&self, tx: &Transaction) -> bool {
        self.requests.pending.holds(tx)
    }
    pub fn cluster(&self) -> Cluster {
        self.cluster
    }
    pub fn network(&self) -> NetworkId {
        self.verifier.network()
    }
    pub fn pending_requests(&self) -> usize {
        self.requests.pending.len()
    }
    /// `tx` as checked, if exactly it (signature included) was checked
    /// recently in a batch (`verified`): a client's copy of a transaction
    /// this replica saw in a PRE-PREPARE needs no second signature check.
    pub fn verified_tx(&self, tx: &Transaction) -> Option<VerifiedTx> {
        self.requests.verified.get(tx)
    }
    /// Sizes of every bounded structure, for memory-bound checks (S8).
    pub fn footprint(&self) -> Footprint {
        Footprint {
            slots: self.log.slots.len(),
            future_messages: self.inbox.future.len(),
            future_bytes: self.inbox.future_bytes(),
            pending_requests: self.requests.pending.len(),
            checkpoint_votes: self.checkpoints.vote_count(),
            view_changes: self.view_change.received.len(),
            fetched: self.catch_up.fetched.len(),
            votes: self.guard.len(),
            verified_txs: self.requests.verified.len(),
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
            fetched: self.cfg.fetch_window() as usize,
            votes: 3 * (2 * window + 1) * 2,
            verified_txs: self.cfg.verified_cache_max(),
            reply_cache: 0,
        }
    }

    // ----- dispatch -----------------------------------------------------------

    /// Counts and logs dropped input. `reason` names the guard.
    fn ignore(&mut self, reason: Refusal) {
        self.ignore_kept(reason);
        self.inbox.refusals += 1;
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
}

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
