//! Protocol parameters ([`Config`]): part of genesis, identical at every
//! replica, with the ranges and relations [`Config::validate`] checks.

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

    /// How far above its height a replica keeps fetched batches (and how
    /// far a fetch reaches): the window, or two fetch ranges if larger.
    pub(super) fn fetch_window(&self) -> u64 {
        self.watermark_window.max(2 * self.fetch_batches_max)
    }

    /// Client signatures remembered as checked: four full batches (a backup
    /// gets a client's own copy of a transfer at most a few batches after the
    /// PRE-PREPARE carrying it), at least 1,024.
    pub(super) fn verified_cache_max(&self) -> usize {
        (4 * self.batch_txs_max).max(1024)
    }
}

/// An upper bound on the encoded size of any message a correct replica of
/// an `n`-replica network with protocol parameters `cfg` may send: a
/// NEW-VIEW carrying `n` VIEW-CHANGEs that each carry a prepared
/// certificate, full batch included, for every seq of the window. The mesh's
/// frame cap is raised to it (`node::config`), so every legal message fits
/// (issue 17, defect 10: with `batch_txs_max = 4096`, or at n = 7, a full
/// NEW-VIEW was over the default 16 MiB and the view change could never
/// complete). Fetch answers are split instead (`node::FETCH_REPLY_BYTES_MAX`).
pub fn message_bytes_max(cfg: &Config, n: usize) -> usize {
    // A signed vote or checkpoint with its encoding overhead, generously.
    const SIGNED: usize = 256;
    const OVERHEAD: usize = 1024;
    let window = cfg.watermark_window as usize;
    let batch = crate::tx::batch_bytes_max(cfg.batch_txs_max);
    let prepared = SIGNED * (n + 1) + batch + OVERHEAD;
    let view_change = SIGNED * (n + 1) + window * prepared + OVERHEAD;
    let new_view = n * view_change + window * SIGNED + OVERHEAD;
    let pre_prepare = SIGNED + batch + OVERHEAD;
    new_view.max(pre_prepare)
}
