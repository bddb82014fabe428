//! The deterministic simulator (L5): a whole cluster from one seed.
//!
//! Real [`Node`]s — the production consensus core, ledger and bank — run on
//! [`MemoryStore`]s over a simulated network with a virtual clock. One seed
//! fixes everything: the scenario (fault rates and faults), message delays,
//! loss, duplication and reordering, crashes and restarts from durable
//! state — between two inputs or inside a replica's writes, the write torn
//! or applied whole ([`MemoryStore::arm_crash`]) — partitions, and the
//! clients' workload. As in the real runtime, a node ingests every input
//! that reaches it at one instant and then syncs their writes in one
//! group ([`Node::flush`], scheduled as `Event::Flush`); nothing it
//! produced leaves before that. Nothing reads the wall clock
//! or an unseeded RNG and every collection iterated is ordered, so a seed
//! replays exactly; the trace hash proves it.
//!
//! Safety is checked after every step ([`checker`]); after the faults stop the
//! run continues on a reliable network with every replica up, and liveness
//! is judged: every client's transfers commit, every replica reaches the
//! same height, and a crashed primary was replaced by a view change.

pub mod campaign;
pub mod checker;
pub mod scenario;
mod trace;

use crate::adversary::{self, Collusion, Kind, Strategy, Wire};
use crate::client::proto::{BalanceInfo, ClientRequest, ClientResponse};
use crate::client::{next_nonce_of, Gathered, ReplyDecision, ReplyQuorum};
use crate::consensus::messages::{Message, ReplyChecker, ReplyProof};
use crate::consensus::Config;
use crate::crypto::{Digest, KeyPair, PublicKey, Verifier};
use crate::genesis::{self, Genesis};
use crate::node::{MemoryViewRecord, Node, NodeInput, Outgoing};
use crate::storage::memory::MemoryStore;
use crate::tx::{Receipt, Transaction};
use crate::types::{ReplicaId, Seq, Time};
use checker::Checker;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scenario::Scenario;
use trace::{describe, Trace, TraceEvent};
use std::collections::{BTreeMap, BTreeSet};

/// Where a simulated message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Replica(ReplicaId),
    /// The second instance of the twinned replica.
    Twin,
    Client(usize),
    ByzantineClient,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: Endpoint,
        to: Endpoint,
        message: Message,
    },
    /// A node's timer: by node slot (replicas, then the twin instance).
    Wake(usize),
    Crash {
        replica: ReplicaId,
        how: scenario::Stop,
        in_write: Option<scenario::WriteCrash>,
        down_ms: Option<u64>,
    },
    Restart(ReplicaId),
    ClientTick(usize),
    FaultsEnd,
    /// Raw bytes from a Byzantine replica: decoded (or refused) on arrival.
    DeliverFrame {
        from: ReplicaId,
        to: ReplicaId,
        bytes: Vec<u8>,
    },
    AdversaryTick(ReplicaId),
    ByzantineClientTick,
    /// The end of a node's inputs at one instant: its group of writes is
    /// synced and what it produced leaves (like the runtime's loop after
    /// draining what had arrived).
    Flush(usize),
    /// A replica's client service refused a client's request, which would
    /// fail there (`Node::refusal`), and says so (an unsigned answer, like
    /// the real service's; the client needs f+1 alike).
    Refused {
        client: usize,
        replica: ReplicaId,
        tx_id: Digest,
        receipt: Receipt,
    },
    /// A replica turned a client's request away for now (`Node::deferral`:
    /// its pending set is full), and says "busy", as the real service does.
    Busy {
        client: usize,
        replica: ReplicaId,
        tx_id: Digest,
    },
    /// A client sends its outstanding request again to one replica (after
    /// a "busy" from it).
    Resend {
        client: usize,
        replica: ReplicaId,
        tx_id: Digest,
    },
    /// A client's balance query (number `id`) reaches a replica's client
    /// service, which answers from its executed state.
    QueryArrive {
        client: usize,
        replica: ReplicaId,
        id: u64,
    },
    /// A replica's answer to a client's query.
    QueryAnswer {
        client: usize,
        replica: ReplicaId,
        id: u64,
        response: ClientResponse,
    },
    /// The client's wait for the other replicas' answers after f+1 came in
    /// ends (the real client's `QUERY_GRACE`).
    QueryDone {
        client: usize,
        id: u64,
    },
}

const CLIENT_BALANCE: u64 = 1_000;
/// Frames a flooding adversary sends each replica per tick here: each costs
/// a real signature check, so campaigns keep it small (a real process
/// floods far harder: tests/byzantine_flood.rs).
const SIM_FLOOD_PER_TICK: usize = 8;

/// After f+1 answers to a query, how long a client waits for the others:
/// the real client's `QUERY_GRACE` (src/client/session.rs).
const QUERY_GRACE_MS: u64 = 300;
/// Times one transfer may be signed again because the nonce it had was
/// used already before the client counts as stuck (C2).
const NONCE_RETRIES_MAX: u32 = 8;

struct Outstanding {
    tx: Transaction,
    first_sent: Time,
    sent_at: Time,
    /// The signed replies, and whether they decided. Its nonce is
    /// "learned" if it was signed after the client restarted: the nonce
    /// (learned from the replicas, or counted on from there) may be used
    /// already — by a transfer signed before the restart that f+1 refused
    /// and that was admitted later, or because the answers lagged.
    replies: ReplyQuorum,
    /// Replicas that refused it, and the receipt it would have failed with.
    refusals: BTreeMap<ReplicaId, Receipt>,
    /// Times it was sent again after the client's timeout.
    resends: u32,
}

/// Why a client asks the replicas for its account (its number is hashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueryPurpose {
    /// It restarted (or its last nonce was used already): it learns its
    /// next nonce, and its balance, before signing.
    Nonce = 0,
    /// Its outstanding transfer, signed with a learned nonce, gets no
    /// answer: is that nonce used already?
    Check = 1,
}

/// A client's balance query in flight, and the answers so far.
struct PendingQuery {
    id: u64,
    purpose: QueryPurpose,
    started: Time,
    answers: BTreeMap<usize, Result<BalanceInfo, String>>,
    /// f+1 answered: the client waits `QUERY_GRACE_MS` for the others.
    grace: bool,
}

/// A transfer to sign again with the next nonce the replicas vouch for.
struct Retry {
    to: PublicKey,
    amount: u64,
    first_sent: Time,
}

/// The frames a replica holds for a peer that never reads them, as the
/// transport's per-peer outbound queue (`net::peer`) would.
#[derive(Default)]
struct OutQueue {
    frames: std::collections::VecDeque<usize>,
    bytes: usize,
}

struct Client {
    key: KeyPair,
    nonce: u64,
    submitted: u64,
    target: u64,
    outstanding: Option<Outstanding>,
    /// Ids of transfers this client saw commit, with their receipts, and
    /// of those f+1 replicas refused (with the receipt they would fail with).
    results: Vec<(Digest, Receipt)>,
    /// How many of `results` were refused, not ordered.
    refused: u64,
    latencies_ms: Vec<u64>,
    /// False after a restart: the next transfer waits for a balance query.
    nonce_known: bool,
    /// `nonce` came from a query and the next transfer is its first use.
    nonce_queried: bool,
    /// It restarted at least once (its nonces are no longer its own count).
    restarted: bool,
    /// The balance the last query read (2f+1 alike), for the next transfer.
    balance: Option<u64>,
    query: Option<PendingQuery>,
    retry: Option<Retry>,
    /// Times the current transfer was signed again (its nonce was used).
    retries_in_row: u32,
}

/// What one seed produced.
#[derive(Clone, Debug, Default)]
pub struct SeedOutcome {
    pub seed: u64,
    pub violations: Vec<String>,
    /// Height of the longest committed chain.
    pub commits: u64,
    /// Transfers the clients saw commit.
    pub txs_committed: u64,
    /// Transfers the clients gave up because f+1 replicas refused them
    /// (they would fail: `Node::refusal`).
    pub txs_refused: u64,
    /// Views entered after view 0 (highest view reached by any replica).
    pub view_changes: u64,
    pub trace_hash: Digest,
    pub trace: Vec<String>,
    pub steps: u64,
    pub virtual_ms: u64,
    pub scenario: String,
    pub batches_fetched: u64,
    pub stable_checkpoints: u64,
    pub latencies_ms: Vec<u64>,
    /// The adversary of this seed, if any.
    pub adversary: Option<Kind>,
    /// Virtual time at which the correct clients' last transfer committed.
    pub finish_ms: u64,
    /// Mean commit latency the correct clients saw.
    pub mean_latency_ms: f64,
    /// `mean_latency_ms` of the same seed without the adversary.
    pub baseline_mean_latency_ms: Option<f64>,
    /// Frames refused by a correct replica's decoder.
    pub frames_refused: u64,
    /// Highest view a correct replica reached.
    pub honest_view: u64,
    /// Input the correct replicas refused, by reason (summed).
    pub refused: BTreeMap<&'static str, u64>,
    /// Crashes that happened inside a write, and how many of those left
    /// their write applied (the others tore it).
    pub write_crashes: u64,
    pub write_crashes_applied: u64,
    /// Restarts that came back with a block committed in the write the
    /// replica died in (durable, never acknowledged or seen).
    pub unseen_blocks_recovered: u64,
    /// Replicas restarted on a wiped store.
    pub wipes: u64,
    /// Synced writes that grouped the writes of several inputs.
    pub grouped_syncs: u64,
    /// Balance queries the clients sent (to every replica each), answers
    /// that differed from the replica's honest one, and transfers signed
    /// again because the nonce a query gave was used already.
    pub queries: u64,
    pub query_lies: u64,
    pub nonce_retries: u64,
    /// Frames dropped from correct replicas' outbound queues for a peer
    /// that never reads, and the most bytes one such queue held.
    pub outbound_dropped: u64,
    pub outbound_peak_bytes: u64,
    /// Fetches the correct replicas did not serve (over a peer's rate).
    pub fetches_refused: u64,
}

impl SeedOutcome {
    /// Throughput under attack relative to the same seed without it. The
    /// clients are closed-loop (one transfer outstanding each), so their
    /// throughput is inversely proportional to their mean latency.
    pub fn throughput_ratio(&self) -> Option<f64> {
        let base = self.baseline_mean_latency_ms?;
        Some(base.max(0.5) / self.mean_latency_ms.max(0.5))
    }
}

/// Which adversary a campaign runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdversaryChoice {
    One(Kind),
    /// Seeds spread round-robin over the whole catalogue.
    All,
}

/// Options that do not change what a seed does.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    pub replicas: u32,
    /// Keep a human-readable trace (slower).
    pub verbose: bool,
    pub adversary: Option<AdversaryChoice>,
    /// Replicas under adversary control (default f). More than f is the
    /// negative control: violations are then expected.
    pub byzantine_replicas: Option<u32>,
    /// Also run each attacked seed without its adversary, for the
    /// throughput ratio.
    pub baseline: bool,
    /// Crash-anywhere campaign: every crash happens inside a write, and
    /// each seed has 3 to 8 more of them.
    pub crash_anywhere: bool,
}

/// Runs the random scenario of `seed`.
pub fn run_seed(seed: u64, opts: &SimOptions) -> SeedOutcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = opts.replicas.max(4);
    let mut scenario = Scenario::random(&mut rng, n);
    if let Some(choice) = opts.adversary {
        let kind = match choice {
            AdversaryChoice::One(k) => k,
            AdversaryChoice::All => {
                adversary::CATALOGUE[(seed % adversary::CATALOGUE.len() as u64) as usize].1
            }
        };
        let count = opts.byzantine_replicas.unwrap_or((n - 1) / 3);
        scenario.attack(&mut rng, kind, count);
    }
    let mut write_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7772_6974_6563_7261);
    scenario.crash_in_writes(&mut write_rng, opts.crash_anywhere);
    let mut stop_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6f70_6572_6174_6f72);
    scenario.operator_stops(&mut stop_rng);
    let mut clock_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x636c_6f63_6b73_2121);
    scenario.clocks(&mut clock_rng);
    let mut query_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7175_6572_6965_7321);
    scenario.client_queries(&mut query_rng);
    let calm = opts.baseline.then(|| Scenario {
        adversary: None,
        byzantine: Vec::new(),
        twin_rounds: Vec::new(),
        ..scenario.clone()
    });
    let mut outcome = run_scenario(seed, scenario, opts);
    if let Some(calm) = calm.filter(|_| outcome.adversary.is_some()) {
        let quiet = SimOptions {
            verbose: false,
            ..opts.clone()
        };
        outcome.baseline_mean_latency_ms = Some(run_scenario(seed, calm, &quiet).mean_latency_ms);
    }
    outcome
}

/// Runs a given scenario; `seed` drives delays, loss and the workload.
pub fn run_scenario(seed: u64, scenario: Scenario, opts: &SimOptions) -> SeedOutcome {
    let mut sim = Sim::new(seed, scenario, opts.verbose);
    sim.run();
    sim.finish()
}

struct Sim {
    scenario: Scenario,
    genesis: Genesis,
    keys: Vec<KeyPair>,
    nodes: Vec<Option<Node<MemoryStore>>>,
    stores: Vec<MemoryStore>,
    /// Each node slot's view record: outside the store, it survives a wipe.
    view_records: Vec<MemoryViewRecord>,
    wake_at: Vec<Option<Time>>,
    /// Node slots with an [`Event::Flush`] queued.
    flush_queued: Vec<bool>,
    clients: Vec<Client>,
    client_index: BTreeMap<PublicKey, usize>,
    verifier: Verifier,
    /// The simulated clients' reply checks (one memo of verified roots).
    replies: ReplyChecker,
    queue: BTreeMap<(Time, u64), Event>,
    next_id: u64,
    now: Time,
    net_rng: ChaCha8Rng,
    client_rng: ChaCha8Rng,
    faults_active: bool,
    checker: Checker,
    supply: u128,
    trace: Trace,
    steps: u64,
    seed: u64,
    max_view: u64,
    primary_down_long: bool,
    /// Crash time and the highest view then, per crashed replica.
    down_since: BTreeMap<ReplicaId, (Time, u64)>,
    /// Completed outages: (replica, down, up).
    outages: Vec<(ReplicaId, Time, Time)>,
    /// Last time a client's request had waited more than 10 request timeouts.
    last_stall: Option<Time>,
    /// Strategies of the Byzantine replicas, by replica.
    strategies: BTreeMap<ReplicaId, Box<dyn Strategy>>,
    byzantine: Vec<ReplicaId>,
    collusion: Collusion,
    adv_rng: ChaCha8Rng,
    frames_refused: u64,
    /// The frame cap every replica applies (as the runtime: the default,
    /// raised to the largest message the genesis parameters allow).
    frame_cap: usize,
    /// When the correct clients' last transfer committed.
    finish: Time,
    byzantine_client: Option<ByzantineClient>,
    /// The replica run as two instances (Twins); slot `n` is its second.
    twin_of: Option<ReplicaId>,
    /// Crashes armed inside a replica's writes: how long it stays down once
    /// the write comes.
    armed_down: BTreeMap<ReplicaId, Option<u64>>,
    /// Replicas that died in a write whose batch was applied: they may come
    /// back above what they were seen to commit, by the blocks that write
    /// held (a group may hold several).
    died_applied: BTreeSet<ReplicaId>,
    write_crashes: u64,
    write_crashes_applied: u64,
    /// Replicas restarted on a wiped store.
    wiped: u64,
    unseen_blocks_recovered: u64,
    grouped_syncs: u64,
    /// Client restarts, balance queries and their network (apart from
    /// `client_rng` and `net_rng`, so seeds without queries are unchanged).
    query_rng: ChaCha8Rng,
    next_query: u64,
    queries: u64,
    query_lies: u64,
    nonce_retries: u64,
    /// Replicas that never read what the others send them.
    never_reads: BTreeSet<ReplicaId>,
    /// (sender, peer that never reads) → the sender's queue for it.
    outbound: BTreeMap<(ReplicaId, ReplicaId), OutQueue>,
    /// The transport's bounds of one peer's queue: frames
    /// (`p2p.peer_queue_max`) and bytes (`net::peer_bytes_max` of the
    /// frame cap).
    outbound_frames_max: usize,
    outbound_bytes_max: usize,
    outbound_dropped: u64,
    outbound_peak_bytes: usize,
}

/// A client under adversary control: funded, with a real key.
struct ByzantineClient {
    key: KeyPair,
    nonce: u64,
    /// Its own transactions, for replays.
    sent: Vec<Transaction>,
}

/// Bound on simulated steps per seed: a run that needs more is a liveness bug.
const STEPS_MAX: u64 = 2_000_000;

impl Sim {
    fn new(seed: u64, scenario: Scenario, verbose: bool) -> Sim {
        let n = scenario.replicas;
        let keys: Vec<KeyPair> = (0..n)
            .map(|i| KeyPair::from_label(&format!("sim-{seed}-replica-{i}")))
            .collect();
        let client_keys: Vec<KeyPair> = (0..scenario.clients)
            .map(|i| KeyPair::from_label(&format!("sim-{seed}-client-{i}")))
            .collect();
        let cfg = scenario.consensus.clone().unwrap_or(Config {
            checkpoint_interval: scenario.checkpoint_interval,
            watermark_window: scenario.watermark_window,
            batch_txs_max: scenario.batch_txs_max,
            pipeline_depth: 2.min(scenario.watermark_window),
            request_timeout_ms: scenario.request_timeout_ms,
            view_change_timeout_max_ms: scenario.request_timeout_ms * 8,
            retransmit_ms: scenario.request_timeout_ms / 3,
            ..Config::default()
        });
        let addrs: Vec<(String, String)> = (0..n).map(|_| ("sim".into(), "sim".into())).collect();
        let mut balances: Vec<(PublicKey, u64)> = client_keys
            .iter()
            .map(|k| (k.public(), CLIENT_BALANCE))
            .collect();
        let byzantine_client =
            (scenario.adversary == Some(Kind::Clients)).then(|| ByzantineClient {
                key: KeyPair::from_label(&format!("sim-{seed}-byzantine-client")),
                nonce: 0,
                sent: Vec::new(),
            });
        if let Some(b) = &byzantine_client {
            balances.push((b.key.public(), CLIENT_BALANCE));
        }
        let twin_of = (scenario.adversary == Some(Kind::Twins))
            .then(|| scenario.byzantine.first().copied())
            .flatten();
        let slots = n as usize + usize::from(twin_of.is_some());
        let genesis = genesis::build(
            &format!("sim-{seed}"),
            &keys.iter().map(|k| k.public()).collect::<Vec<_>>(),
            &addrs,
            &balances,
            cfg,
        )
        .expect("simulated genesis is valid");
        let frame_cap = crate::codec::FRAME_BYTES_MAX.max(
            crate::consensus::messages::message_bytes_max(genesis.config(), n as usize),
        );
        // The runtime's transport bounds (node::config: the default
        // `[p2p]`, its frame cap raised to what genesis needs).
        let p2p = crate::node::config::P2pConfig::default();
        let mut net = crate::net::NetConfig::new(
            ReplicaId(0),
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Vec::new(),
        );
        net.peer_queue_max = p2p.peer_queue_max;
        net.frame_bytes_max = p2p.frame_bytes_max.max(frame_cap);
        let never_reads: BTreeSet<ReplicaId> = match scenario.adversary {
            Some(k) if k.never_reads() => scenario.byzantine.iter().copied().collect(),
            _ => BTreeSet::new(),
        };
        let stores: Vec<MemoryStore> = (0..slots).map(|_| MemoryStore::new()).collect();
        let view_records: Vec<MemoryViewRecord> =
            (0..slots).map(|_| MemoryViewRecord::default()).collect();
        let nodes = (0..slots)
            .map(|slot| {
                let id = if slot < n as usize {
                    ReplicaId(slot as u32)
                } else {
                    twin_of.expect("slot n exists only with a twin")
                };
                Some(
                    Node::open_recorded(
                        &genesis,
                        id,
                        keys[id.index()].clone(),
                        stores[slot].clone(),
                        Box::new(view_records[slot].clone()),
                    )
                    .expect("fresh memory store opens"),
                )
            })
            .collect();
        let clients: Vec<Client> = client_keys
            .into_iter()
            .map(|key| Client {
                key,
                nonce: 0,
                submitted: 0,
                target: scenario.txs_per_client,
                outstanding: None,
                results: Vec::new(),
                refused: 0,
                latencies_ms: Vec::new(),
                nonce_known: true,
                nonce_queried: false,
                restarted: false,
                balance: None,
                query: None,
                retry: None,
                retries_in_row: 0,
            })
            .collect();
        let client_index = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key.public(), i))
            .collect();
        let verifier = genesis.verifier.clone();
        let supply = genesis.total_supply();
        let strategies = scenario
            .byzantine
            .iter()
            .filter_map(|r| {
                scenario
                    .adversary
                    .and_then(|k| k.strategy())
                    .map(|s| (*r, s))
            })
            .collect();
        let byzantine = scenario.byzantine.clone();
        let mut checker = Checker::default();
        checker.byzantine = byzantine.iter().copied().collect();
        for c in &clients {
            checker.on_account_state(c.key.public(), true, CLIENT_BALANCE, 0);
        }
        let mut sim = Sim {
            genesis,
            keys,
            nodes,
            stores,
            view_records,
            wake_at: vec![None; slots],
            flush_queued: vec![false; slots],
            clients,
            client_index,
            verifier,
            replies: ReplyChecker::default(),
            queue: BTreeMap::new(),
            next_id: 0,
            now: Time::ZERO,
            net_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00),
            client_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x636c_6965_6e74_0000),
            faults_active: true,
            checker,
            supply,
            trace: Trace::new(verbose),
            steps: 0,
            seed,
            max_view: 0,
            primary_down_long: false,
            down_since: BTreeMap::new(),
            last_stall: None,
            outages: Vec::new(),
            strategies,
            byzantine,
            collusion: Collusion::default(),
            adv_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6164_7665_7273_6172),
            frames_refused: 0,
            frame_cap,
            finish: Time::ZERO,
            byzantine_client,
            twin_of,
            armed_down: BTreeMap::new(),
            died_applied: BTreeSet::new(),
            write_crashes: 0,
            write_crashes_applied: 0,
            wiped: 0,
            grouped_syncs: 0,
            unseen_blocks_recovered: 0,
            query_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x636c_6965_6e74_3f3f),
            next_query: 0,
            queries: 0,
            query_lies: 0,
            nonce_retries: 0,
            never_reads,
            outbound: BTreeMap::new(),
            outbound_frames_max: net.peer_queue_max,
            outbound_bytes_max: crate::net::peer_bytes_max(&net),
            outbound_dropped: 0,
            outbound_peak_bytes: 0,
            scenario,
        };
        let byzantine_replicas: Vec<ReplicaId> = sim.strategies.keys().copied().collect();
        for r in byzantine_replicas {
            let at = Time::from_millis(sim.adv_rng.gen_range(0..adversary::TICK_MS));
            sim.push(at, Event::AdversaryTick(r));
        }
        if sim.byzantine_client.is_some() {
            sim.push(Time::from_millis(50), Event::ByzantineClientTick);
        }
        sim.schedule_faults();
        for i in 0..sim.clients.len() {
            let at = Time::from_millis(sim.client_rng.gen_range(0..20));
            sim.push(at, Event::ClientTick(i));
        }
        sim
    }

    fn push(&mut self, at: Time, event: Event) {
        self.next_id += 1;
        self.queue.insert((at, self.next_id), event);
    }

    fn schedule_faults(&mut self) {
        for c in self.scenario.crashes.clone() {
            self.push(
                c.at,
                Event::Crash {
                    replica: c.replica,
                    how: c.how,
                    in_write: c.in_write,
                    down_ms: c.down_ms,
                },
            );
            if c.in_write.is_some() {
                // Restarted `down_ms` after the write it dies in.
                continue;
            }
            if let Some(ms) = c.down_ms {
                let back = c.at.plus_millis(ms).min(self.scenario.faults_end);
                self.push(back, Event::Restart(c.replica));
            }
        }
        self.push(self.scenario.faults_end, Event::FaultsEnd);
    }

    /// Keeps a trace line (made only for a verbose trace).
    fn log(&mut self, line: impl FnOnce() -> String) {
        self.trace.log(self.now, line);
    }

    /// Hashes `event`, happening now, into the trace.
    fn record(&mut self, event: TraceEvent<'_>) {
        self.trace.record(self.now, event);
    }

    fn partitioned(&self, now: Time, a: ReplicaId, b: ReplicaId) -> bool {
        if !self.faults_active {
            return false;
        }
        self.scenario.partitions.iter().any(|p| {
            p.start <= now && now < p.end && (p.isolated.contains(&a) != p.isolated.contains(&b))
        })
    }

    /// The replica an endpoint speaks for.
    fn endpoint_replica(&self, e: Endpoint) -> Option<ReplicaId> {
        match e {
            Endpoint::Replica(r) => Some(r),
            Endpoint::Twin => self.twin_of,
            _ => None,
        }
    }

    /// Twins: where a message between replicas really goes in the current
    /// round (`None`: the network drops it). Honest replicas of the round's
    /// second group talk to the twin's second instance, the others to the
    /// first; only the round's leader's proposals get through.
    fn twin_route(&self, from: Endpoint, to: Endpoint, message: &Message) -> Option<Endpoint> {
        let Some(t) = self.twin_of else {
            return Some(to);
        };
        let now = self.now;
        let round = self
            .scenario
            .twin_rounds
            .iter()
            .find(|r| r.start <= now && now < r.end);
        if let Some(round) = round {
            let proposal = matches!(message, Message::PrePrepare { .. } | Message::NewView(_));
            if proposal && self.endpoint_replica(from) != Some(round.leader) {
                return None;
            }
        }
        let second = |r: ReplicaId| round.is_some_and(|rd| rd.second.contains(&r));
        match (from, to) {
            (Endpoint::Replica(a), Endpoint::Replica(b)) if b == t && a != t => {
                Some(if second(a) { Endpoint::Twin } else { to })
            }
            (Endpoint::Replica(a), Endpoint::Replica(b)) if a == t => (!second(b)).then_some(to),
            (Endpoint::Twin, Endpoint::Replica(b)) => second(b).then_some(to),
            _ => Some(to),
        }
    }

    /// Puts a message on the simulated network.
    fn send(&mut self, from: Endpoint, to: Endpoint, message: Message) {
        self.send_delayed(from, to, message, 0)
    }

    /// Loss and delay of the network as it is now: (loss, duplicate, min, max).
    fn link(&self) -> (f64, f64, u64, u64) {
        if self.faults_active {
            (
                self.scenario.loss,
                self.scenario.duplicate,
                self.scenario.delay_min_ms,
                self.scenario.delay_max_ms,
            )
        } else {
            (0.0, 0.0, 1, 5)
        }
    }

    /// Raw frame bytes from a Byzantine replica, over the same network.
    fn send_frame(&mut self, from: ReplicaId, to: ReplicaId, bytes: Vec<u8>, extra_ms: u64) {
        if self.partitioned(self.now, from, to) {
            return;
        }
        let (loss, _, lo, hi) = self.link();
        if loss > 0.0 && self.net_rng.gen_bool(loss) {
            return;
        }
        let delay_us = self.net_rng.gen_range(lo * 1000..=hi * 1000) + extra_ms * 1000;
        let at = Time(self.now.0 + delay_us);
        self.push(at, Event::DeliverFrame { from, to, bytes });
    }

    /// Puts a message on the simulated network after `extra_ms` more.
    fn send_delayed(&mut self, from: Endpoint, to: Endpoint, message: Message, extra_ms: u64) {
        let Some(to) = self.twin_route(from, to, &message) else {
            return;
        };
        if let (Some(a), Endpoint::Replica(b)) = (self.endpoint_replica(from), to) {
            if self.never_reads.contains(&b) {
                self.queue_unread(a, b, &message);
                return;
            }
        }
        if let (Some(a), Some(b)) = (self.endpoint_replica(from), self.endpoint_replica(to)) {
            if self.partitioned(self.now, a, b) {
                return;
            }
        }
        let (loss, dup, lo, hi) = self.link();
        if loss > 0.0 && self.net_rng.gen_bool(loss) {
            return;
        }
        let copies = if dup > 0.0 && self.net_rng.gen_bool(dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay_us = self.net_rng.gen_range(lo * 1000..=hi * 1000) + extra_ms * 1000;
            let at = Time(self.now.0 + delay_us);
            self.push(
                at,
                Event::Deliver {
                    from,
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    fn run(&mut self) {
        let settle_deadline = self
            .scenario
            .faults_end
            .plus_millis(self.scenario.settle_ms);
        while let Some(((at, _), event)) = self.queue.pop_first() {
            self.now = at;
            self.steps += 1;
            if self.steps > STEPS_MAX {
                self.checker
                    .report(format!("liveness: more than {STEPS_MAX} steps"));
                break;
            }
            if at > settle_deadline {
                break;
            }
            self.step(event);
            if !self.faults_active && self.settled() {
                break;
            }
        }
        // The run ends between instants: the replicas still up finish
        // their current group (they are not crashed, only no longer watched).
        for slot in 0..self.flush_queued.len() {
            if self.flush_queued[slot] {
                self.flush_slot(slot);
            }
            // And sync the blocks they wrote unsynced, as each would within
            // BLOCK_SYNC_DELAY_MS, so their events reach the checker.
            if self.nodes[slot].is_some() && self.step_slot(slot, |node| node.sync_written()) {
                self.after_node_step(slot);
            }
        }
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, message } => {
                self.record(TraceEvent::Deliver {
                    from,
                    to,
                    kind: message.kind(),
                });
                let slot = match to {
                    Endpoint::Replica(r) => r.index(),
                    Endpoint::Twin => self.scenario.replicas as usize,
                    Endpoint::Client(c) => {
                        if let Message::Reply(reply) = message {
                            self.on_reply(c, reply);
                        }
                        return;
                    }
                    Endpoint::ByzantineClient => return,
                };
                if self.nodes[slot].is_none() {
                    return;
                }
                self.log(|| format!("{from:?} -> {to:?} {}", describe(&message)));
                let input = match (self.endpoint_replica(from), message) {
                    (None, Message::Request(tx)) => {
                        let busy = self.nodes[slot].as_ref().is_some_and(|n| n.deferral(&tx));
                        if let (Endpoint::Client(client), true, Some(replica)) =
                            (from, busy, self.endpoint_replica(to))
                        {
                            let at = self.now.plus_millis(self.scenario.delay_min_ms);
                            let tx_id = tx.id();
                            self.push(
                                at,
                                Event::Busy {
                                    client,
                                    replica,
                                    tx_id,
                                },
                            );
                        }
                        let refusal = self.nodes[slot].as_ref().and_then(|n| n.refusal(&tx));
                        if let (Endpoint::Client(client), Some(receipt), Some(replica)) =
                            (from, refusal, self.endpoint_replica(to))
                        {
                            let at = self.now.plus_millis(self.scenario.delay_min_ms);
                            let tx_id = tx.id();
                            self.push(
                                at,
                                Event::Refused {
                                    client,
                                    replica,
                                    tx_id,
                                    receipt,
                                },
                            );
                        }
                        NodeInput::Request(tx)
                    }
                    (Some(f), message) => {
                        // As on the wire: encoded, under the frame cap the
                        // runtime derives from genesis, decoded with its
                        // checks (issue 24: honest messages used to pass as
                        // values, so no seed could meet a message the codec
                        // or the cap refuses).
                        let frame = message.to_frame();
                        let cap = self.frame_cap;
                        match Message::from_frame(&frame, cap) {
                            Ok(message) => NodeInput::Message { from: f, message },
                            Err(e) => {
                                if !self.strategies.contains_key(&f) {
                                    self.checker.report(format!(
                                        "S10 codec: an honest {} of {} bytes from {f:?} does not pass the codec (cap {cap}): {e}",
                                        message.kind(),
                                        frame.len()
                                    ));
                                }
                                self.frames_refused += 1;
                                return;
                            }
                        }
                    }
                    (None, _) => return,
                };
                self.deliver_to_slot(slot, input);
            }
            Event::Flush(slot) => self.flush_slot(slot),
            Event::Wake(slot) => {
                if self.wake_at[slot] == Some(self.now) {
                    self.wake_at[slot] = None;
                }
                if self.nodes[slot].is_some() {
                    self.record(TraceEvent::Wake { slot });
                    self.deliver_to_slot(slot, NodeInput::Tick);
                }
            }
            Event::DeliverFrame { from, to, bytes } => {
                self.record(TraceEvent::Frame {
                    from,
                    to,
                    bytes: &bytes,
                });
                if self.nodes[to.index()].is_none() {
                    return;
                }
                match Message::from_frame(&bytes, crate::codec::FRAME_BYTES_MAX) {
                    Ok(message) => {
                        self.log(|| format!("{from:?} -> {to:?} frame {}", describe(&message)));
                        self.deliver_to_slot(to.index(), NodeInput::Message { from, message });
                    }
                    Err(e) => {
                        self.log(|| format!("{from:?} -> {to:?} frame refused: {e}"));
                        self.frames_refused += 1;
                    }
                }
            }
            Event::AdversaryTick(r) => {
                self.record(TraceEvent::AdversaryTick { replica: r });
                if self.nodes[r.index()].is_some() {
                    let sends = self.with_strategy(r, |strategy, ctx| strategy.tick(ctx));
                    for s in sends {
                        self.adversary_send(r, s);
                    }
                }
                self.push(
                    self.now.plus_millis(adversary::TICK_MS),
                    Event::AdversaryTick(r),
                );
            }
            Event::ByzantineClientTick => self.byzantine_client_tick(),
            Event::Crash {
                replica: r,
                in_write: None,
                how,
                ..
            } => self.stop(r, how),
            Event::Crash {
                replica: r,
                in_write: Some(w),
                down_ms,
                ..
            } => {
                if self.nodes[r.index()].is_some() {
                    self.record(TraceEvent::CrashArmed {
                        replica: r,
                        nth: w.nth,
                        applied: w.applied,
                    });
                    self.log(|| {
                        let how = if w.applied { "applied" } else { "torn" };
                        format!("CRASH ARMED {r:?}: dies in its write #{} ({how})", w.nth)
                    });
                    self.stores[r.index()].arm_crash(w.nth, w.applied);
                    self.armed_down.insert(r, down_ms);
                }
            }
            Event::Restart(r) => self.restart(r),
            Event::ClientTick(c) => self.client_tick(c),
            Event::Refused {
                client,
                replica,
                tx_id,
                receipt,
            } => self.on_refused(client, replica, tx_id, receipt),
            Event::Busy {
                client,
                replica,
                tx_id,
            } => {
                // The real client retries that replica after a short pause.
                self.record(TraceEvent::Busy {
                    client,
                    replica,
                    tx_id,
                });
                let pause = self.client_rng.gen_range(20..=100);
                self.push(
                    self.now.plus_millis(pause),
                    Event::Resend {
                        client,
                        replica,
                        tx_id,
                    },
                );
            }
            Event::Resend {
                client,
                replica,
                tx_id,
            } => {
                let tx = match &self.clients[client].outstanding {
                    Some(o) if o.tx.id() == tx_id => o.tx.clone(),
                    _ => return,
                };
                self.record(TraceEvent::Resend {
                    client,
                    replica,
                    tx_id,
                });
                self.send_request(Endpoint::Client(client), &tx, Some(&|r| r == replica.0));
            }
            Event::QueryArrive {
                client,
                replica,
                id,
            } => self.on_query_arrive(client, replica, id),
            Event::QueryAnswer {
                client,
                replica,
                id,
                response,
            } => self.on_query_answer(client, replica, id, response),
            Event::QueryDone { client, id } => {
                if self.clients[client]
                    .query
                    .as_ref()
                    .is_some_and(|q| q.id == id)
                {
                    self.finish_query(client);
                }
            }
            Event::FaultsEnd => {
                self.record(TraceEvent::FaultsEnd);
                self.log(|| "FAULTS END: network reliable, all replicas restart".into());
                self.faults_active = false;
                for store in &self.stores {
                    store.disarm();
                }
                self.armed_down.clear();
                for r in 0..self.scenario.replicas {
                    if self.nodes[r as usize].is_none() {
                        self.restart(ReplicaId(r));
                    }
                }
                for c in &mut self.clients {
                    c.target += self.scenario.tail_txs_per_client;
                }
                for c in 0..self.clients.len() {
                    self.push(self.now, Event::ClientTick(c));
                }
            }
        }
    }

    fn restart(&mut self, r: ReplicaId) {
        if self.nodes[r.index()].is_some() {
            return;
        }
        if let Some((since, view_then)) = self.down_since.remove(&r) {
            // L2: the primary was down long, the others were all up and
            // connected, a request stalled meanwhile, yet no view change.
            let timeout = self.scenario.request_timeout_ms;
            let long = self.now.saturating_sub_millis(since) > 20 * timeout;
            let was_primary = self.genesis.cluster.primary(crate::types::View(view_then)) == r;
            let now = self.now;
            let overlapping_outage = self
                .outages
                .iter()
                .any(|(o, down, up)| *o != r && *down < now && *up > since);
            let others_fine = self.down_since.is_empty()
                && !overlapping_outage
                && !self
                    .scenario
                    .partitions
                    .iter()
                    .any(|p| p.start < self.now && p.end > since);
            // A Byzantine replica that never reads takes no part in a view
            // change: with it and the crashed primary, more than f replicas
            // are out and PBFT promises no progress (seeds 1100525, 1100943).
            let absent = if self.scenario.adversary.is_some_and(|k| k.never_reads()) {
                self.byzantine.len()
            } else {
                0
            };
            let quorum_left = absent < self.genesis.cluster.f() as usize;
            let stalled = self.last_stall.is_some_and(|t| t > since);
            if long
                && was_primary
                && others_fine
                && quorum_left
                && stalled
                && self.max_view == view_then
            {
                self.primary_down_long = true;
            }
            self.outages.push((r, since, self.now));
        }
        self.record(TraceEvent::Restart { replica: r });
        self.stores[r.index()].reopen();
        self.armed_down.remove(&r);
        let died_applied = self.died_applied.remove(&r);
        match Node::open_recorded(
            &self.genesis,
            r,
            self.keys[r.index()].clone(),
            self.stores[r.index()].clone(),
            Box::new(self.view_records[r.index()].clone()),
        ) {
            Ok(node) => {
                let seen = self.checker.chain(r).len() as u64;
                if died_applied {
                    // The write it died in survived: the blocks it held
                    // (one synced write may group several) were committed
                    // unseen and are judged now (agreement, validity).
                    for height in seen + 1..=node.height() {
                        self.unseen_blocks_recovered += 1;
                        match node.committed_block(height) {
                            Ok(Some(block)) => self.checker.on_commit(r, &block),
                            other => self.checker.report(format!(
                                "S3 durability: {r:?} restarted at height {} but cannot read block {height}: {other:?}",
                                node.height()
                            )),
                        }
                    }
                }
                self.checker
                    .check_supply(r, node.bank().total_supply(), self.supply);
                self.checker
                    .on_restart(r, node.height(), node.tip().block_hash);
                self.log(|| format!("RESTART {r:?} at height {}", node.height()));
                self.nodes[r.index()] = Some(node);
                self.deliver_to_slot(r.index(), NodeInput::Tick);
            }
            Err(e) => self.checker.report(format!(
                "S3 durability: {r:?} failed to reopen its store: {e}"
            )),
        }
    }

    /// Takes replica `r` down between two inputs, the way `how` says.
    fn stop(&mut self, r: ReplicaId, how: scenario::Stop) {
        let Some(mut node) = self.nodes[r.index()].take() else {
            return;
        };
        match how {
            scenario::Stop::PowerLoss => {}
            scenario::Stop::Wipe => {
                // A new, empty disk: the replica restarts from genesis and
                // catches up; what it committed before is judged no more.
                self.stores[r.index()] = MemoryStore::new();
                self.checker.on_wipe(r);
                self.died_applied.remove(&r);
                self.wiped += 1;
            }
            scenario::Stop::Kill => {
                // The kernel keeps the unsynced blocks: the replica may come
                // back above what it was seen to commit.
                self.stores[r.index()].keep_unsynced();
                self.died_applied.insert(r);
            }
            scenario::Stop::Clean => {
                // As the runtime on SIGTERM: flush what was ingested, save
                // this view's votes; nothing more is sent.
                if let Err(e) = node.save_votes() {
                    match self.stores[r.index()].crashed() {
                        // A crash armed in its writes came during the stop:
                        // it died in that write, as it could for real.
                        Some(applied) => {
                            self.write_crashes += 1;
                            if applied {
                                self.write_crashes_applied += 1;
                            }
                            self.log(|| format!("CRASH IN CLEAN STOP {r:?} ({e})"));
                            if let Some(Some(down)) = self.armed_down.remove(&r) {
                                self.push(self.now.plus_millis(down), Event::Restart(r));
                            }
                        }
                        None => self
                            .checker
                            .report(format!("{r:?} failed to stop cleanly: {e}")),
                    }
                }
                let committed: Vec<_> = node.drain_committed().collect();
                for block in &committed {
                    self.checker.on_commit(r, block);
                }
                // Blocks whose events waited for a sync are durable now.
                self.died_applied.insert(r);
            }
        }
        drop(node);
        let what = match how {
            scenario::Stop::PowerLoss => "CRASH (power loss)",
            scenario::Stop::Kill => "CRASH (kill -9)",
            scenario::Stop::Clean => "CLEAN STOP",
            scenario::Stop::Wipe => "CRASH AND DISK WIPED",
        };
        self.went_down(r, what.into());
    }

    /// Replica `r` was taken down (its node is already gone).
    fn went_down(&mut self, r: ReplicaId, what: String) {
        self.record(TraceEvent::Down { replica: r });
        self.log(|| format!("{what} {r:?}"));
        self.wake_at[r.index()] = None;
        self.down_since.insert(r, (self.now, self.max_view));
    }

    /// Replica `r` died inside a write (an armed crash): what it committed
    /// before that write is durable and judged; the rest of the input —
    /// messages, replies — is lost with the process.
    fn died_in_write(&mut self, r: ReplicaId, applied: bool, error: &str) {
        let mut node = self.nodes[r.index()].take().expect("caller checked");
        let committed: Vec<_> = node.drain_committed().collect();
        drop(node);
        for block in &committed {
            self.checker.on_commit(r, block);
        }
        self.write_crashes += 1;
        if applied {
            self.write_crashes_applied += 1;
            self.died_applied.insert(r);
        }
        self.went_down(r, format!("CRASH IN WRITE ({error})"));
        if let Some(Some(down)) = self.armed_down.remove(&r) {
            self.push(self.now.plus_millis(down), Event::Restart(r));
        }
    }

    /// The replica a node slot runs.
    fn slot_id(&self, slot: usize) -> ReplicaId {
        if slot < self.scenario.replicas as usize {
            ReplicaId(slot as u32)
        } else {
            self.twin_of.expect("slot n exists only with a twin")
        }
    }

    fn slot_endpoint(&self, slot: usize) -> Endpoint {
        if slot < self.scenario.replicas as usize {
            Endpoint::Replica(ReplicaId(slot as u32))
        } else {
            Endpoint::Twin
        }
    }

    /// Runs `f` with replica `r`'s strategy and a context built from its
    /// node (the strategy is taken out for the call).
    fn with_strategy<T: Default>(
        &mut self,
        r: ReplicaId,
        f: impl FnOnce(&mut Box<dyn Strategy>, &mut adversary::Ctx) -> T,
    ) -> T {
        let Some(mut strategy) = self.strategies.remove(&r) else {
            return T::default();
        };
        let (view, height) = self.nodes[r.index()]
            .as_ref()
            .map_or((crate::types::View(0), 0), |n| {
                (n.replica().view(), n.height())
            });
        let colluders: Vec<ReplicaId> =
            self.byzantine.iter().copied().filter(|b| *b != r).collect();
        let mut ctx = adversary::Ctx {
            me: r,
            key: &self.keys[r.index()],
            network: self.genesis.network,
            cluster: self.genesis.cluster,
            view,
            height: Seq(height),
            now: self.now,
            request_timeout_ms: self.scenario.request_timeout_ms,
            colluders: &colluders,
            flood_per_tick: SIM_FLOOD_PER_TICK,
            rng: &mut self.adv_rng,
            collusion: &mut self.collusion,
        };
        let out = f(&mut strategy, &mut ctx);
        self.strategies.insert(r, strategy);
        out
    }

    fn adversary_send(&mut self, r: ReplicaId, s: adversary::Send) {
        match s.wire {
            Wire::Message(m) => {
                self.send_delayed(Endpoint::Replica(r), Endpoint::Replica(s.to), m, s.delay_ms)
            }
            Wire::Frame(bytes) => self.send_frame(r, s.to, bytes, s.delay_ms),
        }
    }

    fn deliver_to_slot(&mut self, slot: usize, input: NodeInput) {
        let now = self.now;
        let r = self.slot_id(slot);
        if let NodeInput::Message { from, message } = &input {
            if self.strategies.contains_key(&r) && slot == r.index() {
                let (from, message) = (*from, message.clone());
                self.with_strategy(r, |strategy, ctx| strategy.incoming(ctx, from, &message));
            }
        }
        if self.step_slot(slot, |node| node.ingest(now, input)) && !self.flush_queued[slot] {
            self.flush_queued[slot] = true;
            self.push(now, Event::Flush(slot));
        }
    }

    /// The queued end of `slot`'s inputs at this instant.
    fn flush_slot(&mut self, slot: usize) {
        self.flush_queued[slot] = false;
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        if node.unsynced_writes() > 1 {
            self.grouped_syncs += 1;
        }
        // As in the runtime: what is already released leaves while the
        // group's write syncs, so a crash inside that write (armed in the
        // store) cannot take it back.
        let mut pending = None;
        if !self.step_slot(slot, |node| {
            pending = node.begin_flush()?;
            Ok(())
        }) {
            return;
        }
        self.after_node_step(slot);
        if self.step_slot(slot, |node| {
            if let Some(pending) = pending {
                node.write_pending(pending)?;
            }
            node.finish_flush();
            Ok(())
        }) {
            self.after_node_step(slot);
        }
    }

    /// Runs `f` on the node in `slot`; a storage error (a crash armed in a
    /// write, or a real failure) or a panic takes the node down. Returns
    /// whether the node is still up.
    fn step_slot(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Node<MemoryStore>) -> Result<(), crate::node::NodeError>,
    ) -> bool {
        let r = self.slot_id(slot);
        let wall = self.scenario.wall_ms(r, self.now);
        let node = self.nodes[slot].as_mut().expect("caller checked");
        // Each replica reads its own wall clock (offset, maybe stepped).
        node.set_wall_clock(wall);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(node)));
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if slot == r.index() {
                    if let Some(applied) = self.stores[slot].crashed() {
                        self.died_in_write(r, applied, &e.to_string());
                        return false;
                    }
                }
                self.checker
                    .report(format!("{r:?} stopped on a node error: {e}"));
                self.nodes[slot] = None;
                false
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.checker.report(format!("{r:?} panicked: {msg}"));
                self.nodes[slot] = None;
                false
            }
        }
    }

    fn after_node_step(&mut self, slot: usize) {
        let n = self.scenario.replicas;
        let r = self.slot_id(slot);
        let me = self.slot_endpoint(slot);
        let honest = !self.checker.byzantine.contains(&r);
        let mut out = Vec::new();
        let mut committed = Vec::new();
        {
            let node = self.nodes[slot].as_mut().expect("alive");
            while let Some(o) = node.pop_outgoing() {
                out.push(o);
            }
            committed.extend(node.drain_committed());
            node.drain_views_entered();
            self.max_view = self.max_view.max(node.replica().view().0);
        }
        for block in &committed {
            self.log(|| {
                format!(
                    "{me:?} COMMIT height {} {:?} ({} txs)",
                    block.height,
                    block.block_hash,
                    block.txs.len()
                )
            });
            self.checker.on_commit(r, block);
        }
        if !committed.is_empty() {
            let node = self.nodes[slot].as_ref().expect("alive");
            let supply = node.bank().total_supply();
            self.checker.check_supply(r, supply, self.supply);
        }
        if honest {
            let node = self.nodes[slot].as_ref().expect("alive");
            let exceeded = node.footprint().exceeded(&node.footprint_limits());
            if !exceeded.is_empty() {
                self.checker.report(format!(
                    "S8 bounded: {r:?} exceeds its limits on {exceeded:?}"
                ));
            }
        }
        let strategy = self.strategies.contains_key(&r) && slot == r.index();
        for o in out {
            match o {
                Outgoing::ToReplica { to, message } => {
                    self.checker.on_send(r, &message);
                    if strategy {
                        let sends = self.with_strategy(r, |st, ctx| st.outgoing(ctx, to, message));
                        for s in sends {
                            self.adversary_send(r, s);
                        }
                    } else {
                        self.send(me, Endpoint::Replica(to), message);
                    }
                }
                Outgoing::Broadcast(message) => {
                    self.checker.on_send(r, &message);
                    for to in (0..n).map(ReplicaId).filter(|t| *t != r) {
                        if strategy {
                            let m = message.clone();
                            let sends = self.with_strategy(r, |st, ctx| st.outgoing(ctx, to, m));
                            for s in sends {
                                self.adversary_send(r, s);
                            }
                        } else {
                            self.send(me, Endpoint::Replica(to), message.clone());
                        }
                    }
                }
                Outgoing::ToClient { client, proof, .. } => {
                    let withheld = strategy
                        && self
                            .strategies
                            .get(&r)
                            .is_some_and(|s| !s.replies_to_clients());
                    if withheld {
                        continue;
                    }
                    if let Some(&c) = self.client_index.get(&client) {
                        self.send(me, Endpoint::Client(c), Message::Reply(proof));
                    }
                }
            }
        }
        if honest && slot == r.index() {
            // S8 counts what the transport holds for a peer that never
            // reads: bounded per peer, as `net::peer` bounds it.
            let exceeded: Vec<String> = self
                .outbound
                .iter()
                .filter(|((from, _), q)| {
                    *from == r
                        && (q.bytes > self.outbound_bytes_max
                            || q.frames.len() > self.outbound_frames_max)
                })
                .map(|((_, to), q)| {
                    format!(
                        "outbound queue for {to:?}: {} bytes in {} frames (bounds {} and {})",
                        q.bytes,
                        q.frames.len(),
                        self.outbound_bytes_max,
                        self.outbound_frames_max
                    )
                })
                .collect();
            if !exceeded.is_empty() {
                self.checker.report(format!(
                    "S8 bounded: {r:?} exceeds its limits on {exceeded:?}"
                ));
            }
        }
        // Schedule the node's next timer if it is earlier than the one pending.
        let deadline = self.nodes[slot].as_ref().and_then(|n| n.next_deadline());
        if let Some(d) = deadline {
            let d = d.max(self.now);
            if self.wake_at[slot].is_none_or(|w| d < w) {
                self.wake_at[slot] = Some(d);
                self.push(d, Event::Wake(slot));
            }
        }
    }

    fn client_timeout_ms(&self) -> u64 {
        self.scenario.request_timeout_ms * 2
    }

    fn client_tick(&mut self, c: usize) {
        let now = self.now;
        let timeout = self.client_timeout_ms();
        if self.clients[c].outstanding.as_ref().is_some_and(|o| {
            now.saturating_sub_millis(o.first_sent) > 10 * self.scenario.request_timeout_ms
        }) {
            self.last_stall = Some(now);
        }
        // A query that got fewer answers than it waits for ends at the
        // client's timeout, with what it has (as the real client's).
        if self.clients[c]
            .query
            .as_ref()
            .is_some_and(|q| now.saturating_sub_millis(q.started) >= timeout)
        {
            self.finish_query(c);
        }
        let querying = self.clients[c].query.is_some();
        let client = &self.clients[c];
        let wants_transfer = client.retry.is_some() || client.submitted < client.target;
        let (timed_out, check) = match &client.outstanding {
            Some(o) if now.saturating_sub_millis(o.sent_at) >= timeout => {
                (true, o.replies.learned_nonce() && o.resends >= 2 && !querying)
            }
            _ => (false, false),
        };
        let idle = client.outstanding.is_none();
        let resend = if timed_out {
            // A transfer signed after a restart that gets no answer at all
            // may have a nonce used already (a replica past it answers
            // nothing): the client asks whether it is.
            if check {
                self.start_query(c, QueryPurpose::Check);
            }
            self.clients[c].outstanding.as_ref().map(|o| o.tx.clone())
        } else if idle && wants_transfer && !querying {
            self.new_transfer(c)
        } else {
            None
        };
        if let Some(tx) = resend {
            if let Some(o) = &mut self.clients[c].outstanding {
                if o.sent_at != now {
                    o.resends += 1;
                }
                o.sent_at = now;
            }
            self.record(TraceEvent::ClientSend {
                client: c,
                nonce: tx.nonce,
            });
            self.send_request(Endpoint::Client(c), &tx, None);
        }
        if self.client_busy(c) {
            self.push(now.plus_millis(timeout / 2), Event::ClientTick(c));
        }
    }

    /// Whether client `c` still has something to do (or wait for).
    fn client_busy(&self, c: usize) -> bool {
        let client = &self.clients[c];
        client.outstanding.is_some()
            || client.query.is_some()
            || client.retry.is_some()
            || client.submitted < client.target
    }

    /// Client `c`'s next transfer (or the one it signs again), signed; or
    /// `None` while it must first learn its nonce. In seeds with client
    /// restarts a client sometimes forgets its nonce and balance first.
    fn new_transfer(&mut self, c: usize) -> Option<Transaction> {
        let now = self.now;
        let rate = self.scenario.query_rate;
        let client = &self.clients[c];
        if client.nonce_known
            && !client.nonce_queried
            && client.retry.is_none()
            && rate > 0.0
            && self.query_rng.gen_bool(rate)
        {
            let client = &mut self.clients[c];
            client.nonce_known = false;
            client.restarted = true;
            client.balance = None;
            self.log(|| format!("CLIENT {c} RESTARTS: forgets its nonce and balance"));
        }
        if !self.clients[c].nonce_known {
            self.start_query(c, QueryPurpose::Nonce);
            return None;
        }
        let client = &mut self.clients[c];
        let (to, amount, first_sent) = match client.retry.take() {
            Some(r) => (r.to, r.amount, r.first_sent),
            None => {
                client.submitted += 1;
                let known = client.balance.take();
                let others: Vec<PublicKey> = self
                    .client_index
                    .keys()
                    .filter(|k| **k != client.key.public())
                    .copied()
                    .collect();
                let to = others[self.client_rng.gen_range(0..others.len())];
                // Mostly affordable amounts, sometimes more than any balance.
                let amount = if self.client_rng.gen_bool(0.1) {
                    CLIENT_BALANCE * 10
                } else {
                    let a = self.client_rng.gen_range(1..=CLIENT_BALANCE / 4);
                    // What a restarted client read it holds bounds it.
                    known.map_or(a, |b| a.min(b.max(1)))
                };
                (to, amount, now)
            }
        };
        client.nonce = client.nonce.saturating_add(1);
        client.nonce_queried = false;
        let tx = Transaction::transfer(self.genesis.network, &client.key, to, amount, client.nonce);
        let key = client.key.public();
        let weak = self.genesis.cluster.weak_quorum();
        client.outstanding = Some(Outstanding {
            tx: tx.clone(),
            first_sent,
            sent_at: now,
            replies: ReplyQuorum::new(&tx, weak, client.restarted),
            refusals: BTreeMap::new(),
            resends: 0,
        });
        self.checker.on_client_sign(c, &key, tx.nonce);
        self.checker.submitted.insert(tx.id());
        Some(tx)
    }

    /// Client `c` asks every replica for its account (the real client's
    /// `Client::balance` / `next_nonce`): one query to each, over the
    /// clients' network, answered by the replica's client service.
    fn start_query(&mut self, c: usize, purpose: QueryPurpose) {
        self.next_query += 1;
        self.queries += 1;
        let id = self.next_query;
        self.record(TraceEvent::QueryStart {
            client: c,
            id,
            purpose,
        });
        self.log(|| format!("CLIENT {c} QUERY {id} ({purpose:?})"));
        self.clients[c].query = Some(PendingQuery {
            id,
            purpose,
            started: self.now,
            answers: BTreeMap::new(),
            grace: false,
        });
        for r in 0..self.scenario.replicas {
            if let Some(at) = self.query_hop() {
                let replica = ReplicaId(r);
                self.push(
                    at,
                    Event::QueryArrive {
                        client: c,
                        replica,
                        id,
                    },
                );
            }
        }
    }

    /// When a query or its answer arrives, if the network does not lose it
    /// (loss and delay as the replicas' links now, from `query_rng`).
    fn query_hop(&mut self) -> Option<Time> {
        let (loss, _, lo, hi) = self.link();
        if loss > 0.0 && self.query_rng.gen_bool(loss) {
            return None;
        }
        let delay_us = self.query_rng.gen_range(lo * 1000..=hi * 1000);
        Some(Time(self.now.0 + delay_us))
    }

    /// A replica's client service answers a balance query as
    /// `node::service` does — from the account in its executed state and
    /// its height — unless its adversary answers otherwise. A replica that
    /// is down answers nothing.
    fn on_query_arrive(&mut self, c: usize, r: ReplicaId, id: u64) {
        self.record(TraceEvent::QueryArrive {
            client: c,
            replica: r,
            id,
        });
        let account = self.clients[c].key.public();
        let Some(node) = self.nodes[r.index()].as_ref() else {
            return;
        };
        let a = node.account(&account);
        let truth = BalanceInfo {
            account,
            exists: a.is_some(),
            balance: a.map_or(0, |a| a.balance),
            nonce: a.map_or(0, |a| a.nonce),
            height: node.height(),
        };
        let honest = ClientResponse::Balance(truth);
        let response = if self.strategies.contains_key(&r) {
            let request = ClientRequest::Balance(account);
            let answer = self.with_strategy(r, |s, ctx| {
                Some(s.answer_query(ctx, &request, honest.clone()))
            });
            answer.unwrap_or_else(|| honest.clone())
        } else {
            honest.clone()
        };
        if !self.checker.byzantine.contains(&r) {
            self.checker
                .on_account_state(account, truth.exists, truth.balance, truth.nonce);
        }
        if response != honest {
            self.query_lies += 1;
        }
        if let Some(at) = self.query_hop() {
            self.push(
                at,
                Event::QueryAnswer {
                    client: c,
                    replica: r,
                    id,
                    response,
                },
            );
        }
    }

    /// An answer to client `c`'s query: kept if it is an answer about its
    /// account (what the real client's `Client::balance` extracts); once
    /// f+1 are in the client waits `QUERY_GRACE_MS` for the rest.
    fn on_query_answer(&mut self, c: usize, r: ReplicaId, id: u64, response: ClientResponse) {
        self.record(TraceEvent::QueryAnswer {
            client: c,
            replica: r,
            id,
        });
        let needed = self.genesis.cluster.weak_quorum();
        let n = self.scenario.replicas as usize;
        let account = self.clients[c].key.public();
        let Some(q) = self.clients[c].query.as_mut().filter(|q| q.id == id) else {
            return;
        };
        let answer = match response {
            ClientResponse::Balance(b) if b.account == account => Ok(b),
            _ => Err("unexpected answer".to_string()),
        };
        q.answers.entry(r.index()).or_insert(answer);
        let ok = q.answers.values().filter(|a| a.is_ok()).count();
        if q.answers.len() == n {
            self.finish_query(c);
        } else if ok >= needed && !q.grace {
            q.grace = true;
            let at = self.now.plus_millis(QUERY_GRACE_MS);
            self.push(at, Event::QueryDone { client: c, id });
        }
    }

    /// Client `c` combines its query's answers with the real client's rules:
    /// the next nonce is one above the last nonce f+1 answers vouch for
    /// (`client::next_nonce_of`), the balance is what 2f+1 agree on
    /// (`Gathered::agreed_by_quorum`). Fewer than f+1 answers: it asks again.
    fn finish_query(&mut self, c: usize) {
        let Some(q) = self.clients[c].query.take() else {
            return;
        };
        let needed = self.genesis.cluster.weak_quorum();
        let n = self.scenario.replicas as usize;
        let g = Gathered {
            answers: (0..n)
                .map(|i| {
                    let a = q.answers.get(&i).cloned();
                    (i, a.unwrap_or_else(|| Err("timed out".into())))
                })
                .collect(),
            needed,
        };
        if g.ok_count() < needed {
            self.log(|| format!("CLIENT {c} QUERY {} got {} answers", q.id, g.ok_count()));
            self.start_query(c, q.purpose);
            return;
        }
        let account = self.clients[c].key.public();
        let read = g
            .agreed_by_quorum(|b| (b.exists, b.balance, b.nonce))
            .map(|a| a.value);
        if let Some(b) = read {
            self.checker
                .on_client_read(c, &account, b.exists, b.balance, b.nonce);
        }
        let next = match next_nonce_of(&g) {
            Ok(next) => next,
            Err(e) => {
                let nonces: Vec<u64> = g.ok().map(|(_, b)| b.nonce).collect();
                self.checker.report(format!(
                    "C1 client nonce: client {c} cannot pick a nonce ({e}) from the last nonces {nonces:?}"
                ));
                // It tries again later; L1 judges whether it ever can.
                self.clients[c].nonce_known = false;
                return;
            }
        };
        self.log(|| {
            format!(
                "CLIENT {c} QUERY {} ({:?}): next nonce {next}",
                q.id, q.purpose
            )
        });
        let client = &mut self.clients[c];
        match q.purpose {
            QueryPurpose::Nonce => {
                client.nonce = next - 1;
                client.nonce_known = true;
                client.nonce_queried = true;
                client.balance = read.map(|b| b.balance);
                self.push(self.now, Event::ClientTick(c));
            }
            QueryPurpose::Check => {
                let used = client
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| next > o.tx.nonce);
                if used {
                    self.nonce_used(c, Some(next));
                }
            }
        }
    }

    /// Client `c`'s outstanding transfer has a nonce used already (by
    /// another transaction, or it executed as stale): it gives it up and
    /// signs the same transfer again with the next nonce — known (`next`)
    /// or to be learned from the replicas. C2: a transfer that needs more
    /// than `NONCE_RETRIES_MAX` nonces means the client keeps picking used
    /// ones.
    fn nonce_used(&mut self, c: usize, next: Option<u64>) {
        if self.clients[c].outstanding.is_none() {
            return;
        }
        self.nonce_retries += 1;
        let client = &mut self.clients[c];
        let Some(o) = client.outstanding.take() else {
            return;
        };
        client.retries_in_row += 1;
        client.retry = Some(Retry {
            to: o.tx.to,
            amount: o.tx.amount,
            first_sent: o.first_sent,
        });
        match next {
            Some(next) => {
                client.nonce = next - 1;
                client.nonce_queried = true;
            }
            None => client.nonce_known = false,
        }
        let tries = client.retries_in_row;
        self.record(TraceEvent::NonceUsed {
            client: c,
            nonce: o.tx.nonce,
        });
        self.log(|| {
            format!(
                "CLIENT {c} NONCE {} USED: signs the transfer again",
                o.tx.nonce
            )
        });
        if tries == NONCE_RETRIES_MAX + 1 {
            self.checker.report(format!(
                "C2 client progress: client {c} signed one transfer {tries} times, each time with a nonce used already (last {})",
                o.tx.nonce
            ));
        }
        self.push(self.now, Event::ClientTick(c));
    }

    /// Frames replica `from` sends a peer that never reads stay in its
    /// outbound queue for that peer, bounded as the transport bounds it
    /// (`net::Transport::send`: over `peer_queue_max` frames or
    /// `net::peer_bytes_max` bytes, the oldest are dropped).
    fn queue_unread(&mut self, from: ReplicaId, to: ReplicaId, message: &Message) {
        let len = message.to_frame().len();
        self.record(TraceEvent::QueuedUnread { from, to, len });
        let (frames_max, bytes_max) = (self.outbound_frames_max, self.outbound_bytes_max);
        let q = self.outbound.entry((from, to)).or_default();
        q.bytes += len;
        q.frames.push_back(len);
        while q.frames.len() > frames_max || (q.bytes > bytes_max && q.frames.len() > 1) {
            if let Some(old) = q.frames.pop_front() {
                q.bytes -= old;
            }
            self.outbound_dropped += 1;
        }
        self.outbound_peak_bytes = self.outbound_peak_bytes.max(q.bytes);
    }

    /// Sends a request to every replica (and the twin instance), or to the
    /// replicas `only` selects.
    fn send_request(
        &mut self,
        from: Endpoint,
        tx: &Transaction,
        only: Option<&dyn Fn(u32) -> bool>,
    ) {
        for r in 0..self.scenario.replicas {
            if only.is_some_and(|f| !f(r)) {
                continue;
            }
            self.send(
                from,
                Endpoint::Replica(ReplicaId(r)),
                Message::Request(tx.clone()),
            );
            if self.twin_of == Some(ReplicaId(r)) {
                self.send(from, Endpoint::Twin, Message::Request(tx.clone()));
            }
        }
    }

    /// A Byzantine client: bad signatures, replayed nonces, conflicting
    /// transactions for one nonce, reordered nonces, floods, signatures at
    /// the edges of the transaction rule (`crypto::txsig`: torsioned ones,
    /// valid; small-order R, non-canonical s or a small-order key, invalid),
    /// sent to some replicas only so the others meet them in a PRE-PREPARE
    /// (the batch check) — all with a real funded key (its valid
    /// transactions count as submitted).
    fn byzantine_client_tick(&mut self) {
        let Some(mut b) = self.byzantine_client.take() else {
            return;
        };
        let network = self.genesis.network;
        let me = Endpoint::ByzantineClient;
        let victims: Vec<PublicKey> = self.client_index.keys().copied().collect();
        let to = victims[self.client_rng.gen_range(0..victims.len())];
        let action = self.client_rng.gen_range(0..8);
        self.record(TraceEvent::ByzantineClientAct {
            action,
            nonce: b.nonce,
        });
        let valid = |b: &mut ByzantineClient, nonce: u64, amount: u64| {
            let tx = Transaction::transfer(network, &b.key, to, amount, nonce);
            b.sent.push(tx.clone());
            tx
        };
        match action {
            0 => {
                b.nonce += 1;
                let mut tx = Transaction::transfer(network, &b.key, to, 5, b.nonce);
                tx.signature[7] ^= 0x40;
                self.send_request(me, &tx, None);
            }
            1 => {
                if !b.sent.is_empty() {
                    let old = b.sent[self.client_rng.gen_range(0..b.sent.len())].clone();
                    self.send_request(me, &old, None);
                }
            }
            2 => {
                b.nonce += 1;
                let nonce = b.nonce;
                let first = valid(&mut b, nonce, 3);
                let second = valid(&mut b, nonce, 4);
                self.checker.submitted.insert(first.id());
                self.checker.submitted.insert(second.id());
                self.send_request(me, &first, Some(&|r| r % 2 == 0));
                self.send_request(me, &second, Some(&|r| r % 2 == 1));
            }
            3 => {
                let (n1, n2) = (b.nonce + 1, b.nonce + 2);
                b.nonce += 2;
                let later = valid(&mut b, n2, 1);
                let earlier = valid(&mut b, n1, 1);
                self.checker.submitted.insert(later.id());
                self.checker.submitted.insert(earlier.id());
                self.send_request(me, &later, None);
                self.send_request(me, &earlier, None);
            }
            5 => {
                // Valid under the rule, refused by verify_strict: every
                // replica must accept it, whichever check meets it.
                b.nonce += 1;
                let mut tx = Transaction::transfer(network, &b.key, to, 2, b.nonce);
                let t = self.client_rng.gen_range(1..8);
                tx.signature =
                    crate::crypto::txsig::sign_torsioned(&b.key, &tx.signing_digest(network), t);
                b.sent.push(tx.clone());
                self.checker.submitted.insert(tx.id());
                self.send_request(me, &tx, Some(&|r| r % 2 == 0));
            }
            6 => {
                // Invalid under the rule; never submitted, so S4 flags it if
                // any block holds it.
                b.nonce += 1;
                let mut tx = Transaction::transfer(network, &b.key, to, 6, b.nonce);
                let identity = curve25519_dalek::constants::EIGHT_TORSION[0].compress();
                match self.client_rng.gen_range(0..3) {
                    0 => tx.signature[..32].copy_from_slice(identity.as_bytes()),
                    1 => tx.signature = crate::crypto::txsig::with_non_canonical_s(&tx.signature),
                    _ => {
                        tx.from = PublicKey(identity.to_bytes());
                    }
                }
                self.send_request(me, &tx, Some(&|r| r % 2 == 1));
            }
            _ => {
                for _ in 0..40 {
                    b.nonce += 1;
                    let nonce = b.nonce;
                    let tx = valid(&mut b, nonce, 1);
                    self.checker.submitted.insert(tx.id());
                    self.send_request(me, &tx, None);
                }
            }
        }
        if b.sent.len() > 256 {
            b.sent.drain(..128);
        }
        self.byzantine_client = Some(b);
        self.push(self.now.plus_millis(100), Event::ByzantineClientTick);
    }

    /// A client accepts a result on f+1 matching signed replies, as the
    /// real client does ([`ReplyQuorum`]).
    fn on_reply(&mut self, c: usize, proof: ReplyProof) {
        let (signer, v) = match self.replies.check(&self.verifier, &proof) {
            Ok(checked) => checked,
            Err(e) => {
                self.checker
                    .report(format!("client {c} received a bad reply: {e}"));
                return;
            }
        };
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(o) = &mut client.outstanding else {
            return;
        };
        if !o.replies.add(signer, &v) {
            return;
        }
        match o.replies.decision() {
            None => {}
            // The reply a replica keeps for the client's last nonce names
            // another transaction: f+1 alike, and the nonce is used. Or a
            // learned nonce that was used already (a lagging replica's
            // answer). The transfer is signed again with a fresh one.
            Some(ReplyDecision::NonceConflict { .. } | ReplyDecision::StaleLearnedNonce) => {
                self.nonce_used(c, None)
            }
            Some(ReplyDecision::Committed { receipt, .. }) => {
                client.retries_in_row = 0;
                let latency = now.saturating_sub_millis(o.first_sent);
                client.results.push((o.tx.id(), receipt));
                client.latencies_ms.push(latency);
                self.finish = now;
                client.outstanding = None;
                self.record(TraceEvent::ClientAccept {
                    client: c,
                    nonce: v.nonce,
                });
                let think = self.client_rng.gen_range(0..5);
                self.push(now.plus_millis(think), Event::ClientTick(c));
            }
        }
    }

    /// A client gives up a transfer that f+1 replicas refused alike: it
    /// would fail, so it is not ordered (counted as a result with that
    /// receipt; the nonce was not used).
    fn on_refused(&mut self, c: usize, replica: ReplicaId, tx_id: Digest, receipt: Receipt) {
        self.record(TraceEvent::Refused {
            client: c,
            replica,
            tx_id,
        });
        let weak = self.genesis.cluster.weak_quorum();
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(o) = &mut client.outstanding else {
            return;
        };
        if o.tx.id() != tx_id {
            return;
        }
        o.refusals.insert(replica, receipt);
        if o.refusals.values().filter(|r| **r == receipt).count() < weak {
            return;
        }
        client.refused += 1;
        client.retries_in_row = 0;
        client.results.push((tx_id, receipt));
        client
            .latencies_ms
            .push(now.saturating_sub_millis(o.first_sent));
        client.outstanding = None;
        let think = self.client_rng.gen_range(0..5);
        self.push(now.plus_millis(think), Event::ClientTick(c));
    }

    /// The view that at least 2f+1 replicas are in (not changing), if any.
    /// Byzantine replicas count as their (honest) core reports: a quorum
    /// that needs one works until it stops cooperating, and then f+1 correct
    /// replicas suspect the primary and move on.
    fn operating_view(&self) -> Option<crate::types::View> {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for n in self
            .nodes
            .iter()
            .take(self.scenario.replicas as usize)
            .flatten()
        {
            if n.replica().changing_to().is_none() {
                *counts.entry(n.replica().view().0).or_default() += 1;
            }
        }
        let quorum = self.genesis.cluster.quorum();
        counts
            .into_iter()
            .find(|(_, c)| *c >= quorum)
            .map(|(v, _)| crate::types::View(v))
    }

    /// Liveness problems at this moment (after faults): clients not done; no
    /// quorum operating in one view; a replica of that view below the chain
    /// height. A replica left alone in a view change to a *later* view (its
    /// NEW-VIEW timer fired just before the NEW-VIEW arrived) cannot safely
    /// return, and one replica alone must not drag the others along, so it
    /// only has to have caught up to the last checkpoint: it rejoins at the
    /// next view change.
    fn liveness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let busy = c.outstanding.is_some()
                || c.query.is_some()
                || c.retry.is_some()
                || !c.nonce_known
                || c.submitted < c.target;
            if busy {
                problems.push(format!(
                    "L1 liveness: client {i} finished {} of {} transfers",
                    c.results.len(),
                    c.target
                ));
            }
        }
        let max = self.checker.max_height();
        let k = self.scenario.checkpoint_interval;
        // (replica, its (height, view, changing-to) if up)
        type State = (usize, Option<(u64, u64, Option<u64>)>);
        let states: Vec<State> = self
            .nodes
            .iter()
            .take(self.scenario.replicas as usize)
            .enumerate()
            .filter(|(i, _)| !self.checker.byzantine.contains(&ReplicaId(*i as u32)))
            .map(|(i, n)| {
                (
                    i,
                    n.as_ref().map(|n| {
                        (
                            n.height(),
                            n.replica().view().0,
                            n.replica().changing_to().map(|v| v.0),
                        )
                    }),
                )
            })
            .collect();
        let Some(view) = self.operating_view() else {
            problems.push(format!("L2 view sync: no 2f+1 replicas share a view; (height, view, changing-to) {states:?}"));
            return problems;
        };
        for (i, st) in &states {
            let ok = match st {
                None => false,
                Some((h, v, None)) => *v == view.0 && *h == max,
                Some((h, _, Some(t))) => *t > view.0 && *h >= max / k * k,
            };
            if !ok {
                problems.push(format!(
                    "L4 catch-up: r{i} (height, view, changing-to) {st:?}; quorum view {}, chain height {max}",
                    view.0
                ));
            }
        }
        problems
    }

    /// Nodes of correct replicas (twin instances and Byzantine replicas
    /// excluded).
    fn honest_nodes(&self) -> impl Iterator<Item = &Node<MemoryStore>> {
        self.nodes
            .iter()
            .take(self.scenario.replicas as usize)
            .enumerate()
            .filter(|(i, _)| !self.checker.byzantine.contains(&ReplicaId(*i as u32)))
            .filter_map(|(_, n)| n.as_ref())
    }

    fn settled(&self) -> bool {
        self.liveness_problems().is_empty()
    }

    fn finish(mut self) -> SeedOutcome {
        // Liveness, judged after faults stopped.
        let max = self.checker.max_height();
        for p in self.liveness_problems() {
            self.checker.report(p);
        }
        // L3: with no honest fault and no Byzantine primary, no view change.
        let byzantine_leads = self.scenario.byzantine.contains(&ReplicaId(0))
            || self
                .scenario
                .adversary
                .is_some_and(|k| k.wants_view_change());
        let honest_view = self
            .honest_nodes()
            .map(|n| n.replica().view().0)
            .max()
            .unwrap_or(0);
        if self.scenario.is_calm() && !byzantine_leads && honest_view > 0 {
            self.checker.report(format!(
                "L3 liveness: view changed to {honest_view} without a faulty primary or any honest fault"
            ));
        }
        if self.primary_down_long {
            self.checker.report(
                "L2 liveness: the primary was down for long but no view change happened".into(),
            );
        }
        // Every client result is what the chain holds (S4 from the client's side).
        for (i, c) in self.clients.iter().enumerate() {
            for (id, receipt) in &c.results {
                if receipt.is_ok() && !self.checker.succeeded(id) {
                    let v = format!("S4 client {i} saw {id:?} succeed but the chain disagrees");
                    self.checker.report(v);
                }
            }
        }
        // Chains match block for block, and certificates verify (S5), on one replica.
        self.check_certificates();
        let mut latencies = Vec::new();
        for c in &self.clients {
            latencies.extend(&c.latencies_ms);
        }
        let mean_latency = latencies.iter().sum::<u64>() as f64 / latencies.len().max(1) as f64;
        let (trace_hash, trace) = self.trace.finish();
        let stats: Vec<_> = self
            .honest_nodes()
            .map(|n| n.replica().stats().clone())
            .collect();
        SeedOutcome {
            seed: self.seed,
            violations: std::mem::take(&mut self.checker.violations),
            commits: max,
            txs_committed: self
                .clients
                .iter()
                .map(|c| c.results.len() as u64 - c.refused)
                .sum(),
            txs_refused: self.clients.iter().map(|c| c.refused).sum(),
            view_changes: self.max_view,
            trace_hash,
            trace,
            steps: self.steps,
            virtual_ms: self.now.as_millis(),
            scenario: self.scenario.describe(),
            batches_fetched: stats.iter().map(|s| s.batches_fetched).sum(),
            stable_checkpoints: stats.iter().map(|s| s.stable_checkpoints).sum(),
            latencies_ms: latencies,
            adversary: self.scenario.adversary,
            finish_ms: self.finish.as_millis(),
            mean_latency_ms: mean_latency,
            baseline_mean_latency_ms: None,
            frames_refused: self.frames_refused,
            write_crashes: self.write_crashes,
            write_crashes_applied: self.write_crashes_applied,
            unseen_blocks_recovered: self.unseen_blocks_recovered,
            wipes: self.wiped,
            grouped_syncs: self.grouped_syncs,
            queries: self.queries,
            query_lies: self.query_lies,
            nonce_retries: self.nonce_retries,
            outbound_dropped: self.outbound_dropped,
            outbound_peak_bytes: self.outbound_peak_bytes as u64,
            fetches_refused: self.honest_nodes().map(|n| n.fetches_refused()).sum(),
            honest_view,
            refused: stats.iter().fold(
                BTreeMap::from([(
                    "client request: would fail (refused to the client by f+1)",
                    self.clients.iter().map(|c| c.refused).sum(),
                )]),
                |mut all, s| {
                    for (reason, n) in &s.ignored {
                        *all.entry(reason.text()).or_default() += n;
                    }
                    all
                },
            ),
        }
    }

    /// S5: each stored commit certificate has 2f+1 distinct valid signers
    /// over this seq and the digest of the stored batch.
    fn check_certificates(&mut self) {
        let Some(node) = self.honest_nodes().next() else {
            return;
        };
        let quorum = self.genesis.cluster.quorum();
        let mut problems = Vec::new();
        for h in 1..=node.height() {
            let (Ok(Some(block)), Ok(Some(cert))) = (node.block(h), node.certificate(h)) else {
                problems.push(format!("S5 height {h}: block or certificate missing"));
                continue;
            };
            let committed = self.checker.chain(node.id()).get(h as usize - 1).copied();
            if committed != Some(block.header.hash()) {
                problems.push(format!(
                    "S3 height {h}: stored block differs from the committed one"
                ));
            }
            let digest = crate::tx::batch_digest(&block.batch_bytes);
            let signers: BTreeSet<ReplicaId> = cert
                .iter()
                .filter_map(|c| self.verifier.verify(c).ok())
                .filter(|c| c.seq == Seq(h) && c.digest == digest)
                .map(|c| c.signer())
                .collect();
            if signers.len() < quorum {
                problems.push(format!(
                    "S5 height {h}: certificate has {} valid signers",
                    signers.len()
                ));
            }
        }
        for p in problems {
            self.checker.report(p);
        }
    }
}
