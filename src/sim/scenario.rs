//! What happens to a simulated cluster: the honest faults of one run.
//!
//! Every seed draws its own fault *rates* as well as the faults themselves
//! (swarm testing): some seeds are calm, some lose a tenth of all messages,
//! some crash the primary twice. Faults stop at `faults_end`; after it the
//! network is reliable, every crashed replica restarts, and liveness is judged.

use crate::types::{ReplicaId, Time};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct Crash {
    pub at: Time,
    pub replica: ReplicaId,
    /// `None`: stays down until faults end.
    pub down_ms: Option<u64>,
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
        }
    }

    /// A random scenario: faults and their rates both come from `rng`.
    pub fn random(rng: &mut ChaCha8Rng, replicas: u32) -> Scenario {
        let mut s = Scenario::calm(replicas);
        let n = replicas;
        let f = (n - 1) / 3;
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

    /// One line describing the scenario, for `replay --verbose`.
    pub fn describe(&self) -> String {
        format!(
            "n={} clients={} txs={}+{} loss={} dup={} delay={}..{}ms crashes={:?} partitions={:?} faults_end={}ms K={} L={} batch={} timeout={}ms",
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
                .map(|c| (c.at.as_millis(), c.replica.0, c.down_ms))
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
        )
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}
