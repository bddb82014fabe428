//! What happens to a simulated cluster: the honest faults of one run.
//!
//! Every seed draws its own fault *rates* as well as the faults themselves
//! (swarm testing): some seeds are calm, some lose a tenth of all messages,
//! some crash the primary twice. Faults stop at `faults_end`; after it the
//! network is reliable, every crashed replica restarts, and liveness is judged.

use crate::adversary::Kind;
use crate::types::{ReplicaId, Time};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct Crash {
    pub at: Time,
    pub replica: ReplicaId,
    /// `None`: stays down until faults end.
    pub down_ms: Option<u64>,
    /// `Some`: the replica dies inside a write instead of between two
    /// inputs, and is down for `down_ms` from then.
    pub in_write: Option<WriteCrash>,
    /// How it goes down (between two inputs; a crash inside a write is a
    /// power loss).
    pub how: Stop,
}

/// How a replica goes down: the ways an operator or the world stops one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stop {
    /// The machine loses power: writes not yet synced are lost.
    #[default]
    PowerLoss,
    /// The process is killed (`kill -9`, OOM): the machine keeps what it
    /// wrote, synced or not.
    Kill,
    /// SIGTERM: the node saves its votes (`Node::save_votes`) and exits.
    Clean,
    /// The process is killed and its disk wiped (or replaced): it restarts
    /// on an empty store, its view record (kept apart) intact.
    Wipe,
}

/// A crash inside the store's writes: from the crash time on, the `nth`
/// write the replica makes is the one it dies in — between the writes of
/// one input (a vote persisted, the block not yet executed), or in the
/// middle of a write. That write's batch survives whole (`applied`: synced
/// but never acknowledged) or not at all (a torn WAL tail, dropped on
/// recovery); messages the input produced are never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteCrash {
    pub nth: u32,
    pub applied: bool,
}

#[derive(Clone, Debug)]
pub struct Partition {
    pub start: Time,
    pub end: Time,
    /// Replicas cut off from the rest (both directions).
    pub isolated: Vec<ReplicaId>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub replicas: u32,
    pub clients: usize,
    /// Transfers each client submits while faults are active.
    pub txs_per_client: u64,
    /// Transfers each client submits after faults end (so laggards see traffic).
    pub tail_txs_per_client: u64,
    pub loss: f64,
    pub duplicate: f64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    pub crashes: Vec<Crash>,
    pub partitions: Vec<Partition>,
    /// Crash the primary of view 0 at this time (a named shape of crash).
    pub faults_end: Time,
    /// How long after `faults_end` liveness may take.
    pub settle_ms: u64,
    pub checkpoint_interval: u64,
    pub watermark_window: u64,
    pub batch_txs_max: usize,
    pub request_timeout_ms: u64,
    /// The adversary, if any, and the replicas it controls.
    pub adversary: Option<Kind>,
    pub byzantine: Vec<ReplicaId>,
    /// Twins: per round, the honest replicas that talk to the second
    /// instance, and the one replica allowed to lead (send PRE-PREPAREs and
    /// NEW-VIEWs) in the round.
    pub twin_rounds: Vec<TwinRound>,
    /// Faults other than the adversary's (crash, partition, loss, slow
    /// links) are absent: no view change may happen unless the adversary
    /// is a primary (L3).
    pub calm: bool,
    /// The consensus parameters, if not derived from the fields above (see
    /// [`Scenario::with_consensus`]).
    pub consensus: Option<crate::consensus::Config>,
    /// Each replica's wall clock: a constant offset from true time (by
    /// replica index; missing ones are exact) and steps that are corrected
    /// later (see [`Scenario::clocks`]). Timers run on true time, as the
    /// runtime's run on a monotonic clock.
    pub clock_offsets_ms: Vec<i64>,
    pub clock_steps: Vec<ClockStep>,
    /// How often a client restarts, forgetting its nonce and balance,
    /// before a transfer: the chance per transfer that it first asks every
    /// replica for them (see [`Scenario::client_queries`]). 0 in explicit
    /// scenarios.
    pub query_rate: f64,
    /// Whether the replicas run the proposal monitor (`consensus/monitor.rs`);
    /// off only to show what the request timer alone catches.
    pub proposal_monitor: bool,
}

/// A replica's wall clock stepped by `by_ms` (NTP, a VM resumed) from `at`
/// until `at + for_ms`, when it is corrected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockStep {
    pub at: Time,
    pub replica: ReplicaId,
    pub by_ms: i64,
    pub for_ms: u64,
}

/// One round of a Twins scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinRound {
    pub start: Time,
    pub end: Time,
    /// Honest replicas connected to the twin's second instance (the others
    /// talk to the first).
    pub second: Vec<ReplicaId>,
    /// Only this replica's proposals (PRE-PREPARE, NEW-VIEW) are delivered.
    pub leader: ReplicaId,
}

impl Scenario {
    /// A fault-free run.
    pub fn calm(replicas: u32) -> Scenario {
        Scenario {
            replicas,
            clients: 4,
            txs_per_client: 12,
            tail_txs_per_client: 3,
            loss: 0.0,
            duplicate: 0.0,
            delay_min_ms: 1,
            delay_max_ms: 5,
            crashes: Vec::new(),
            partitions: Vec::new(),
            faults_end: Time::from_millis(10_000),
            settle_ms: 120_000,
            checkpoint_interval: 4,
            watermark_window: 16,
            batch_txs_max: 8,
            request_timeout_ms: 1_000,
            adversary: None,
            byzantine: Vec::new(),
            twin_rounds: Vec::new(),
            calm: true,
            consensus: None,
            clock_offsets_ms: Vec::new(),
            clock_steps: Vec::new(),
            query_rate: 0.0,
            proposal_monitor: true,
        }
    }

    /// Runs the replicas on `config` (the fields the simulator also reads —
    /// checkpoint interval, window, batch size, request timeout — follow it).
    pub fn with_consensus(mut self, config: crate::consensus::Config) -> Scenario {
        self.checkpoint_interval = config.checkpoint_interval;
        self.watermark_window = config.watermark_window;
        self.batch_txs_max = config.batch_txs_max;
        self.request_timeout_ms = config.request_timeout_ms;
        self.consensus = Some(config);
        self
    }

    /// A random scenario: faults and their rates both come from `rng`.
    pub fn random(rng: &mut ChaCha8Rng, replicas: u32) -> Scenario {
        let mut s = Scenario::calm(replicas);
        let n = replicas;
        let f = (n - 1) / 3;
        s.calm = false;
        let faults_ms: u64 = rng.gen_range(5_000..=20_000);
        s.faults_end = Time::from_millis(faults_ms);
        s.clients = rng.gen_range(2..=6);
        s.txs_per_client = rng.gen_range(4..=16);
        s.checkpoint_interval = *pick(rng, &[2, 4, 8]);
        s.watermark_window = s.checkpoint_interval * rng.gen_range(2..=4);
        s.batch_txs_max = *pick(rng, &[1, 2, 4, 16]);
        s.request_timeout_ms = *pick(rng, &[300, 600, 1_000]);
        s.loss = *pick(rng, &[0.0, 0.0, 0.01, 0.05, 0.15]);
        s.duplicate = *pick(rng, &[0.0, 0.02, 0.1]);
        s.delay_min_ms = rng.gen_range(0..=3);
        s.delay_max_ms = s.delay_min_ms + *pick(rng, &[2, 10, 50, 200]);
        let crash_count = *pick(rng, &[0, 0, 1, 2, 4]);
        for _ in 0..crash_count {
            let at = Time::from_millis(rng.gen_range(100..faults_ms));
            // Bias towards the early primaries, whose crash forces a view change.
            let replica = if rng.gen_bool(0.5) {
                ReplicaId(rng.gen_range(0..2.min(n)))
            } else {
                ReplicaId(rng.gen_range(0..n))
            };
            let down_ms = if rng.gen_bool(0.8) {
                Some(rng.gen_range(50..6_000))
            } else {
                None
            };
            s.crashes.push(Crash {
                at,
                replica,
                down_ms,
                in_write: None,
                how: Stop::PowerLoss,
            });
        }
        let partition_count = *pick(rng, &[0, 0, 1, 2]);
        for _ in 0..partition_count {
            let start = rng.gen_range(100..faults_ms);
            let end = (start + rng.gen_range(200..8_000)).min(faults_ms);
            // Isolate one replica (often the primary), f replicas, or half.
            let size = *pick(rng, &[1, f.max(1), n / 2]);
            let mut isolated: Vec<ReplicaId> = Vec::new();
            while (isolated.len() as u32) < size {
                let r = ReplicaId(rng.gen_range(0..n));
                if !isolated.contains(&r) {
                    isolated.push(r);
                }
            }
            isolated.sort();
            s.partitions.push(Partition {
                start: Time::from_millis(start),
                end: Time::from_millis(end),
                isolated,
            });
        }
        s
    }

    /// Crash-anywhere: half of the crashes (all of them with `anywhere`)
    /// happen inside a write rather than between inputs; `anywhere` also
    /// adds 3 to 8 more such crashes of random replicas, some overlapping.
    /// Drawn from an `rng` of its own, so the rest of a seed's scenario is
    /// the same with and without it. A calm scenario stays calm.
    pub fn crash_in_writes(&mut self, rng: &mut ChaCha8Rng, anywhere: bool) {
        if self.calm {
            return;
        }
        let faults_ms = self.faults_end.as_millis();
        if anywhere {
            for _ in 0..rng.gen_range(3..=8) {
                self.crashes.push(Crash {
                    at: Time::from_millis(rng.gen_range(100..faults_ms.max(101))),
                    replica: ReplicaId(rng.gen_range(0..self.replicas)),
                    down_ms: Some(rng.gen_range(50..4_000)),
                    in_write: None,
                    how: Stop::PowerLoss,
                });
            }
        }
        for c in &mut self.crashes {
            if anywhere || rng.gen_bool(0.5) {
                c.in_write = Some(WriteCrash {
                    nth: rng.gen_range(1..=3),
                    applied: rng.gen_bool(0.5),
                });
            }
        }
    }

    /// Operators' stops: each crash between two inputs becomes a power
    /// loss, a `kill -9` or a clean stop, and a third of the replicas that
    /// come back are stopped again soon after — cleanly or not — so every
    /// order (crash, restart, clean stop, restart; clean stop, restart,
    /// crash, ...) occurs. Drawn from an `rng` of its own, so the rest of a
    /// seed's scenario does not change. A calm scenario stays calm.
    /// Per-replica wall clocks (issue 24, defect 7: the simulator had one
    /// clock for all): offsets of up to ±2 s, and in some seeds steps of
    /// up to ±2 h — far beyond the skew a PRE-PREPARE may have — that are
    /// corrected before the faults end. A stepped primary's batches are
    /// refused for skew until then (a view change replaces it); a stepped
    /// backup refuses them; after the correction nothing may stay stuck.
    pub fn clocks(&mut self, rng: &mut ChaCha8Rng) {
        if self.calm {
            return;
        }
        self.clock_offsets_ms = (0..self.replicas)
            .map(|_| rng.gen_range(-2_000..=2_000))
            .collect();
        let faults_ms = self.faults_end.as_millis();
        let steps = *pick(rng, &[0, 0, 1, 2]);
        for _ in 0..steps {
            let at = rng.gen_range(100..faults_ms.saturating_sub(200).max(101));
            let magnitude = *pick(rng, &[5_000, 90_000, 7_200_000]);
            let by_ms = if rng.gen_bool(0.5) {
                magnitude
            } else {
                -magnitude
            };
            let for_ms = rng.gen_range(50..=(faults_ms - at).max(51));
            self.clock_steps.push(ClockStep {
                at: Time::from_millis(at),
                replica: ReplicaId(rng.gen_range(0..self.replicas)),
                by_ms,
                for_ms: for_ms.min(faults_ms - at),
            });
        }
    }

    /// Replica `r`'s wall clock at true time `now`, in milliseconds. True
    /// time is the wall clock's origin, as in the runtime (whose timer clock
    /// is anchored at the wall time), so an adversary that stamps batches
    /// with its timer clock stamps them as a replica would. (With an epoch
    /// added here, every batch the `censor` adversary injected was refused
    /// for skew, the chain stopped, and the tooth it is there to catch went
    /// uncaught.)
    pub fn wall_ms(&self, r: ReplicaId, now: Time) -> u64 {
        let t = now.as_millis() as i64;
        let offset = self.clock_offsets_ms.get(r.index()).copied().unwrap_or(0);
        let steps: i64 = self
            .clock_steps
            .iter()
            .filter(|s| s.replica == r && s.at.as_millis() as i64 <= t)
            .filter(|s| t < (s.at.as_millis() + s.for_ms) as i64)
            .map(|s| s.by_ms)
            .sum();
        (t + offset + steps).max(0) as u64
    }

    /// Client restarts (issue 17): in half of the seeds clients sometimes
    /// forget their nonce and balance and learn them again by asking every
    /// replica, as the real client does (`Client::next_nonce`), before the
    /// transfer; under the `lying-answers` adversary they do so often.
    /// Drawn from an `rng` of its own, so the rest of a seed's scenario is
    /// the same with and without it.
    pub fn client_queries(&mut self, rng: &mut ChaCha8Rng) {
        self.query_rate = if self.adversary == Some(Kind::LyingAnswers) {
            *pick(rng, &[0.3, 0.6, 1.0])
        } else {
            *pick(rng, &[0.0, 0.0, 0.05, 0.25])
        };
    }

    pub fn operator_stops(&mut self, rng: &mut ChaCha8Rng) {
        if self.calm {
            return;
        }
        const KINDS: [Stop; 3] = [Stop::PowerLoss, Stop::Kill, Stop::Clean];
        // A wiped replica lost the prepared certificates it held, which its
        // next VIEW-CHANGEs cannot report: like a Byzantine replica that
        // omits them, it counts as one of the f faults. So one replica at
        // most is wiped, and never beside an adversary.
        let wiped = (self.adversary.is_none() && rng.gen_bool(0.5))
            .then(|| ReplicaId(rng.gen_range(0..self.replicas)));
        let mut again = Vec::new();
        for c in &mut self.crashes {
            if c.in_write.is_none() {
                c.how = *pick(rng, &KINDS);
                if Some(c.replica) == wiped && c.down_ms.is_some() && rng.gen_bool(0.75) {
                    c.how = Stop::Wipe;
                }
            }
            let Some(down) = c.down_ms else { continue };
            if rng.gen_bool(1.0 / 3.0) {
                // Back up, then down again within a few request timeouts.
                let up = c.at.plus_millis(down);
                let stays = rng.gen_range(20..3 * self.request_timeout_ms.max(1));
                again.push(Crash {
                    at: up.plus_millis(stays),
                    replica: c.replica,
                    down_ms: Some(rng.gen_range(20..2_000)),
                    in_write: None,
                    how: *pick(rng, &KINDS),
                });
            }
        }
        let end = self.faults_end;
        self.crashes
            .extend(again.into_iter().filter(|c| c.at < end));
    }

    /// Puts `count` replicas under the control of adversary `kind`. A
    /// quarter of the seeds drop every honest fault, so throughput under
    /// attack and L3 (no view change without a faulty primary) are measured
    /// on a clean network.
    pub fn attack(&mut self, rng: &mut ChaCha8Rng, kind: Kind, count: u32) {
        let n = self.replicas;
        self.adversary = Some(kind);
        if rng.gen_bool(0.25) {
            self.make_calm();
        }
        let mut byz: Vec<ReplicaId> = Vec::new();
        if kind.wants_primary() || kind == Kind::Twins {
            byz.push(ReplicaId(0));
        }
        if kind.wants_view_change() {
            // The Byzantine replica leads view 1; view 0's primary crashes
            // while requests flow, so view 1 starts.
            byz.push(ReplicaId(1));
            self.crashes.retain(|c| c.replica != ReplicaId(0));
            self.crashes.push(Crash {
                // Early, while the clients' first transfers are in flight.
                at: Time::from_millis(rng.gen_range(30..300)),
                replica: ReplicaId(0),
                down_ms: Some(self.request_timeout_ms * 8),
                in_write: None,
                how: Stop::PowerLoss,
            });
        }
        if kind.never_reads() {
            // Long enough, with a chain long enough, for what the correct
            // replicas hold for a peer that never reads to reach the
            // transport's bound (`net::peer_bytes_max`, 32 MiB): a missing
            // bound is then an S8 violation.
            let end = rng.gen_range(30_000..=40_000);
            self.faults_end = Time::from_millis(end.max(self.faults_end.as_millis()));
            self.txs_per_client = self.txs_per_client.max(32);
        }
        if kind == Kind::Clients && count == (n - 1) / 3 {
            // Byzantine clients only, unless more replicas were asked for.
            return;
        }
        while (byz.len() as u32) < count.min(n) {
            let r = ReplicaId(rng.gen_range(0..n));
            if !byz.contains(&r) {
                byz.push(r);
            }
        }
        byz.truncate(count as usize);
        byz.sort();
        self.byzantine = byz;
        if kind == Kind::Twins {
            self.twin_rounds = random_twin_rounds(rng, self);
        }
    }

    /// No honest fault at all (and a fast network): then no view change may
    /// happen unless the adversary leads a view (L3).
    pub fn is_calm(&self) -> bool {
        self.calm
            && self.crashes.is_empty()
            && self.partitions.is_empty()
            && self.loss == 0.0
            && self.duplicate == 0.0
            && self.delay_max_ms <= 5
            && self.twin_rounds.is_empty()
    }

    /// No honest faults and a fast network.
    pub fn make_calm(&mut self) {
        self.calm = true;
        self.crashes.clear();
        self.partitions.clear();
        self.loss = 0.0;
        self.duplicate = 0.0;
        self.delay_min_ms = 1;
        self.delay_max_ms = 5;
    }

    /// One line describing the scenario, for `replay --verbose`.
    pub fn describe(&self) -> String {
        format!(
            "adversary={} byzantine={:?} twin-rounds={} n={} clients={} txs={}+{} loss={} dup={} delay={}..{}ms crashes={:?} partitions={:?} faults_end={}ms K={} L={} batch={} timeout={}ms queries={}",
            self.adversary.map_or("none", |k| k.name()),
            self.byzantine.iter().map(|r| r.0).collect::<Vec<_>>(),
            self.twin_rounds.len(),
            self.replicas,
            self.clients,
            self.txs_per_client,
            self.tail_txs_per_client,
            self.loss,
            self.duplicate,
            self.delay_min_ms,
            self.delay_max_ms,
            self.crashes
                .iter()
                .map(|c| (
                    c.at.as_millis(),
                    c.replica.0,
                    c.down_ms,
                    c.in_write.map(|w| (w.nth, if w.applied { "applied" } else { "torn" }))
                ))
                .collect::<Vec<_>>(),
            self.partitions
                .iter()
                .map(|p| (p.start.as_millis(), p.end.as_millis(), p.isolated.iter().map(|r| r.0).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            self.faults_end.as_millis(),
            self.checkpoint_interval,
            self.watermark_window,
            self.batch_txs_max,
            self.request_timeout_ms,
            self.query_rate,
        )
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Random Twins rounds covering the faulty period (used by `run --adversary
/// twins`; `pbft-sim twins` enumerates them instead).
fn random_twin_rounds(rng: &mut ChaCha8Rng, s: &Scenario) -> Vec<TwinRound> {
    let round_ms = s.request_timeout_ms * 3;
    let rounds = (s.faults_end.as_millis() / round_ms).max(1);
    let honest: Vec<ReplicaId> = (0..s.replicas)
        .map(ReplicaId)
        .filter(|r| !s.byzantine.contains(r))
        .collect();
    (0..rounds)
        .map(|i| TwinRound {
            start: Time::from_millis(i * round_ms),
            end: Time::from_millis((i + 1) * round_ms),
            second: honest
                .iter()
                .copied()
                .filter(|_| rng.gen_bool(0.5))
                .collect(),
            leader: ReplicaId(rng.gen_range(0..s.replicas)),
        })
        .collect()
}

/// Twins at n = 4 with replica 0 doubled: per round, which of the three
/// honest replicas talk to the second instance (8 choices) and which
/// replica leads (4 choices).
pub const TWIN_CHOICES_PER_ROUND: u64 = 8 * 4;

impl Scenario {
    /// The Twins scenario number `index` of `rounds` rounds: `index` read in
    /// base [`TWIN_CHOICES_PER_ROUND`], one digit per round. PBFT fixes each
    /// view's primary, so a round's leader is imposed by the network: only
    /// its PRE-PREPAREs and NEW-VIEWs are delivered in that round.
    pub fn twins(rounds: u32, index: u64) -> Scenario {
        let mut s = Scenario::calm(4);
        s.request_timeout_ms = 300;
        s.txs_per_client = 6;
        let round_ms = s.request_timeout_ms * 3;
        s.faults_end = Time::from_millis(round_ms * rounds as u64);
        s.adversary = Some(Kind::Twins);
        s.byzantine = vec![ReplicaId(0)];
        s.calm = false;
        let honest = [ReplicaId(1), ReplicaId(2), ReplicaId(3)];
        let mut digits = index;
        for i in 0..rounds as u64 {
            let choice = digits % TWIN_CHOICES_PER_ROUND;
            digits /= TWIN_CHOICES_PER_ROUND;
            let (mask, leader) = (choice % 8, choice / 8);
            s.twin_rounds.push(TwinRound {
                start: Time::from_millis(i * round_ms),
                end: Time::from_millis((i + 1) * round_ms),
                second: honest
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| mask & (1 << b) != 0)
                    .map(|(_, r)| *r)
                    .collect(),
                leader: ReplicaId(leader as u32),
            });
        }
        s
    }
}
