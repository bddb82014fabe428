//! The deterministic simulator (L7): a whole cluster from one seed.
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
//!
//! This file holds the public API ([`run_seed`], [`run_scenario`],
//! [`SimOptions`], [`SeedOutcome`], [`AdversaryChoice`]), the simulator's
//! state and its event loop; each concern has its file: `network` (links,
//! partitions, Twins routing, outbound queues), `nodes` (the node slots:
//! ingest, flush, outputs), `clients` (the simulated clients, their queries
//! and retries), `faults` (crashes, restarts, clean stops, disk wipes),
//! `byzantine` (the adversaries' strategies and the Byzantine client),
//! `liveness` (liveness and the end-of-run certificate check) and `trace`
//! (the typed trace events and the trace hash).

mod byzantine;
pub mod campaign;
pub mod checker;
mod clients;
pub mod diagram;
mod drawing;
mod faults;
mod liveness;
mod network;
mod nodes;
pub mod scenario;
mod trace;

use crate::adversary::{self, Collusion, Kind, Strategy, Wire};
use crate::client::proto::{BalanceInfo, ClientRequest, ClientResponse};
use crate::client::{next_nonce_of, Gathered, RefusalQuorum, ReplyDecision, ReplyQuorum};
use crate::consensus::messages::{Message, ReplyChecker, ReplyProof};
use crate::consensus::Config;
use crate::crypto::{Digest, KeyPair, PublicKey, Verifier};
use crate::genesis::{self, Genesis};
use crate::node::{MemoryViewRecord, Node, NodeInput, Outgoing};
use crate::storage::memory::MemoryStore;
use crate::tx::{Receipt, Transaction};
use crate::types::{ReplicaId, Seq, Time};
use byzantine::ByzantineClient;
use checker::Checker;
use clients::{Client, CLIENT_BALANCE};
use network::{Endpoint, OutQueue};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};
use trace::{describe, Trace, TraceEvent};

#[derive(Debug)]
enum Event {
    Deliver {
        from: Endpoint,
        to: Endpoint,
        message: Message,
        /// When it was sent and by whom (for the diagram only).
        sent: Time,
        origin: diagram::Origin,
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
    /// Node slot `slot`'s transport completed a round trip of `rtt_us` to
    /// `peer` outside the protocol's traffic: a connection's handshake or a
    /// keep-alive ping (`Sim::schedule_probe`). `generation` ties it to
    /// one life of the slot's process.
    Probe {
        slot: usize,
        peer: ReplicaId,
        generation: u64,
        rtt_us: u64,
    },
    ClientTick(usize),
    FaultsEnd,
    /// Raw bytes from a Byzantine replica: decoded (or refused) on arrival.
    DeliverFrame {
        from: ReplicaId,
        to: ReplicaId,
        bytes: Vec<u8>,
        sent: Time,
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
    /// The run's space-time diagram, if `SimOptions::diagram` asked for it.
    pub diagram: Option<diagram::Diagram>,
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
    /// Record the run's space-time diagram (`SeedOutcome::diagram`): a
    /// side channel, the trace hash is the same with or without it.
    pub diagram: bool,
    /// Run the replicas without the proposal monitor (see
    /// [`Scenario::proposal_monitor`]).
    pub no_proposal_monitor: bool,
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
            diagram: false,
            ..opts.clone()
        };
        outcome.baseline_mean_latency_ms = Some(run_scenario(seed, calm, &quiet).mean_latency_ms);
    }
    outcome
}

/// Runs a given scenario; `seed` drives delays, loss and the workload.
pub fn run_scenario(seed: u64, mut scenario: Scenario, opts: &SimOptions) -> SeedOutcome {
    scenario.proposal_monitor &= !opts.no_proposal_monitor;
    let mut sim = Sim::new(seed, scenario, opts.verbose, opts.diagram);
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
    /// The smoothed round trip each node slot's transport would measure to
    /// each peer, in microseconds (`Sim::observe_rtt`).
    link_rtt_us: BTreeMap<(usize, ReplicaId), u64>,
    /// Each replica slot's process life, counted by restarts (its probes
    /// of an earlier life are dropped).
    probe_generation: Vec<u64>,
    /// How often an idle connection pings (the transport's keep-alive).
    keep_alive_ms: u64,
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
    /// The space-time diagram being recorded (only if asked).
    drawing: Option<Box<drawing::Recorder>>,
}

/// Bound on simulated steps per seed: a run that needs more is a liveness bug.
const STEPS_MAX: u64 = 2_000_000;

impl Sim {
    fn new(seed: u64, scenario: Scenario, verbose: bool, draw: bool) -> Sim {
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
        let frame_cap = crate::codec::FRAME_BYTES_MAX.max(crate::consensus::message_bytes_max(
            genesis.config(),
            n as usize,
        ));
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
                    .map(|mut node| {
                        node.check_invariants_always();
                        node.watch_proposals(scenario.proposal_monitor);
                        node
                    })
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
                used_nonce: 0,
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
            link_rtt_us: BTreeMap::new(),
            probe_generation: vec![0; scenario.replicas as usize],
            keep_alive_ms: net.keep_alive.as_millis() as u64,
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
            drawing: draw.then(|| Box::new(drawing::Recorder::new(&scenario, twin_of, slots))),
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
        for r in 0..sim.scenario.replicas {
            sim.start_probes(ReplicaId(r));
        }
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

    /// Keeps a trace line (made only for a verbose trace).
    fn log(&mut self, line: impl FnOnce() -> String) {
        self.trace.log(self.now, line);
    }

    /// Hashes `event`, happening now, into the trace.
    fn record(&mut self, event: TraceEvent<'_>) {
        self.trace.record(self.now, event);
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
            self.draw_violations();
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
            Event::Deliver {
                from,
                to,
                message,
                sent,
                origin,
            } => self.deliver(from, to, message, sent, origin),
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
            Event::DeliverFrame {
                from,
                to,
                bytes,
                sent,
            } => self.deliver_frame(from, to, bytes, sent),
            Event::AdversaryTick(r) => self.adversary_tick(r),
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
            } => self.arm_crash(r, w, down_ms),
            Event::Restart(r) => self.restart(r),
            Event::Probe {
                slot,
                peer,
                generation,
                rtt_us,
            } => self.on_probe(slot, peer, generation, rtt_us),
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
            } => self.on_busy(client, replica, tx_id),
            Event::Resend {
                client,
                replica,
                tx_id,
            } => self.on_resend(client, replica, tx_id),
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
            Event::FaultsEnd => self.faults_end(),
        }
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
        self.draw_violations();
        let end_us = self.now.0;
        let scenario_text = self.scenario.describe();
        let diagram = self.drawing.take().map(|rec| diagram::Diagram {
            end_us,
            title: format!("seed {}: {scenario_text}", self.seed),
            ..rec.diagram
        });
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
            diagram,
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
}
