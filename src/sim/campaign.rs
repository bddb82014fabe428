//! Campaigns: many seeds, spread over threads, with a progress line and one
//! summary. Each seed is independent and deterministic, so the split over
//! threads changes nothing but the wall time.

use super::{run_seed, SeedOutcome, SimOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    /// Seeds with at least one violation.
    pub violations: u64,
    pub commits: u64,
    pub view_changes: u64,
    pub seeds_with_view_change: u64,
    pub txs_committed: u64,
    pub batches_fetched: u64,
    pub elapsed: Duration,
    pub failing: Vec<SeedOutcome>,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    /// Per adversary: (seeds, seeds with violations, median throughput
    /// relative to the same seeds without it, if baselines ran).
    pub by_adversary: Vec<(&'static str, u64, u64, Option<f64>)>,
    pub frames_refused: u64,
    /// Crashes inside a write, and those whose write survived whole.
    pub write_crashes: u64,
    pub write_crashes_applied: u64,
    /// Restarts that recovered a block only the crashed write held.
    pub unseen_blocks_recovered: u64,
    /// Replicas restarted on a wiped store.
    pub wipes: u64,
    /// Synced writes that grouped several inputs' writes.
    pub grouped_syncs: u64,
    /// Clients' balance queries, lying answers to them, and transfers
    /// signed again because a learned nonce was used already.
    pub queries: u64,
    pub query_lies: u64,
    pub nonce_retries: u64,
    /// Frames dropped from correct replicas' queues for a peer that never
    /// reads, and fetches they did not serve (over a peer's rate).
    pub outbound_dropped: u64,
    pub fetches_refused: u64,
    /// The most bytes one such queue held, over all seeds.
    pub outbound_peak_bytes: u64,
}

impl Summary {
    /// Median throughput under attack relative to no attack, over all
    /// attacked seeds that ran a baseline.
    pub fn throughput_ratio(&self) -> Option<f64> {
        let ratios: Vec<f64> = self.by_adversary.iter().filter_map(|a| a.3).collect();
        median(ratios)
    }

    /// One line per adversary (printed before the summary by `run`).
    pub fn adversary_lines(&self) -> Vec<String> {
        self.by_adversary
            .iter()
            .map(|(name, seeds, bad, ratio)| {
                format!(
                    "adversary {name:<20} seeds: {seeds:>6} violations: {bad:>4} throughput-vs-none: {}",
                    ratio.map_or("-".to_string(), |r| format!("{r:.2}"))
                )
            })
            .collect()
    }

    /// The one summary line `pbft-sim run` ends with.
    pub fn line(&self) -> String {
        let ratio = self
            .throughput_ratio()
            .map_or(String::new(), |r| format!(" throughput-vs-none: {r:.2}"));
        format!(
            "seeds: {} violations: {} commits: {} view-changes: {} seeds-with-view-change: {} txs: {} fetched-batches: {} latency-p50-ms: {} latency-p99-ms: {} frames-refused: {} write-crashes: {} write-crashes-applied: {} wipes: {} unseen-blocks-recovered: {} grouped-syncs: {} queries: {} query-lies: {} nonce-retries: {} outbound-dropped: {} outbound-peak-bytes: {} fetches-refused: {}{ratio} elapsed-s: {:.1}",
            self.seeds,
            self.violations,
            self.commits,
            self.view_changes,
            self.seeds_with_view_change,
            self.txs_committed,
            self.batches_fetched,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.frames_refused,
            self.write_crashes,
            self.write_crashes_applied,
            self.wipes,
            self.unseen_blocks_recovered,
            self.grouped_syncs,
            self.queries,
            self.query_lies,
            self.nonce_retries,
            self.outbound_dropped,
            self.outbound_peak_bytes,
            self.fetches_refused,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs seeds `start..start+count` on `threads` threads. `on_failure` is
/// called (from worker threads) for each failing seed as it is found;
/// `progress` shows a line on stderr when true.
pub fn run(
    start: u64,
    count: u64,
    opts: &SimOptions,
    threads: usize,
    progress: bool,
    on_failure: &(dyn Fn(&SeedOutcome) + Sync),
) -> Summary {
    run_jobs(count, threads, progress, on_failure, &|i| {
        run_seed(start + i, opts)
    })
}

/// Runs jobs `0..count` (each one seed's outcome) on `threads` threads.
pub fn run_jobs(
    count: u64,
    threads: usize,
    progress: bool,
    on_failure: &(dyn Fn(&SeedOutcome) + Sync),
    job: &(dyn Fn(u64) -> SeedOutcome + Sync),
) -> Summary {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let results: Arc<Mutex<Vec<SeedOutcome>>> = Arc::new(Mutex::new(Vec::new()));
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let mut outcome = job(i);
                outcome.latencies_ms.shrink_to_fit();
                outcome.trace.clear();
                if !outcome.violations.is_empty() {
                    on_failure(&outcome);
                }
                results.lock().unwrap().push(outcome);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if progress && (d.is_multiple_of(50) || d == count) {
                    let rate = d as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    eprint!("\r{d}/{count} seeds ({rate:.0}/s)   ");
                    let _ = std::io::stderr().flush();
                }
            });
        }
    });
    if progress {
        eprintln!();
    }
    let mut outcomes = std::mem::take(&mut *results.lock().unwrap());
    outcomes.sort_by_key(|o| o.seed);
    let mut latencies: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.latencies_ms.iter().copied())
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            0
        } else {
            latencies[((latencies.len() - 1) as f64 * p) as usize]
        }
    };
    let mut by_adversary = Vec::new();
    for (name, kind, _) in crate::adversary::CATALOGUE {
        let mine: Vec<&SeedOutcome> = outcomes
            .iter()
            .filter(|o| o.adversary == Some(*kind))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let bad = mine.iter().filter(|o| !o.violations.is_empty()).count() as u64;
        let ratio = median(mine.iter().filter_map(|o| o.throughput_ratio()).collect());
        by_adversary.push((*name, mine.len() as u64, bad, ratio));
    }
    Summary {
        by_adversary,
        frames_refused: outcomes.iter().map(|o| o.frames_refused).sum(),
        write_crashes: outcomes.iter().map(|o| o.write_crashes).sum(),
        write_crashes_applied: outcomes.iter().map(|o| o.write_crashes_applied).sum(),
        unseen_blocks_recovered: outcomes.iter().map(|o| o.unseen_blocks_recovered).sum(),
        wipes: outcomes.iter().map(|o| o.wipes).sum(),
        grouped_syncs: outcomes.iter().map(|o| o.grouped_syncs).sum(),
        queries: outcomes.iter().map(|o| o.queries).sum(),
        query_lies: outcomes.iter().map(|o| o.query_lies).sum(),
        nonce_retries: outcomes.iter().map(|o| o.nonce_retries).sum(),
        outbound_dropped: outcomes.iter().map(|o| o.outbound_dropped).sum(),
        fetches_refused: outcomes.iter().map(|o| o.fetches_refused).sum(),
        outbound_peak_bytes: outcomes
            .iter()
            .map(|o| o.outbound_peak_bytes)
            .max()
            .unwrap_or(0),
        seeds: count,
        violations: outcomes.iter().filter(|o| !o.violations.is_empty()).count() as u64,
        commits: outcomes.iter().map(|o| o.commits).sum(),
        view_changes: outcomes.iter().map(|o| o.view_changes).sum(),
        seeds_with_view_change: outcomes.iter().filter(|o| o.view_changes > 0).count() as u64,
        txs_committed: outcomes.iter().map(|o| o.txs_committed).sum(),
        batches_fetched: outcomes.iter().map(|o| o.batches_fetched).sum(),
        elapsed: started.elapsed(),
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
        failing: outcomes
            .into_iter()
            .filter(|o| !o.violations.is_empty())
            .collect(),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}
