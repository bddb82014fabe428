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
}

impl Summary {
    /// The one summary line `pbft-sim run` ends with.
    pub fn line(&self) -> String {
        format!(
            "seeds: {} violations: {} commits: {} view-changes: {} seeds-with-view-change: {} txs: {} fetched-batches: {} latency-p50-ms: {} latency-p99-ms: {} elapsed-s: {:.1}",
            self.seeds,
            self.violations,
            self.commits,
            self.view_changes,
            self.seeds_with_view_change,
            self.txs_committed,
            self.batches_fetched,
            self.latency_p50_ms,
            self.latency_p99_ms,
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
                let mut outcome = run_seed(start + i, opts);
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
    Summary {
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
