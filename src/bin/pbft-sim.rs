//! `pbft-sim`: deterministic simulation campaigns and exact seed replay.

use clap::{Parser, Subcommand};
use pbft_ledger::sim::{self, campaign, SimOptions};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pbft-sim",
    version,
    about = "Deterministic PBFT simulation campaigns"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a campaign of seeds and check every invariant.
    Run {
        /// Number of seeds to run.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start_seed: u64,
        /// Replicas per cluster (3f+1: 4, 7, ...).
        #[arg(long, default_value_t = 4)]
        replicas: u32,
        /// Worker threads (default: available cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Re-run one seed exactly and print its trace hash.
    Replay {
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        replicas: u32,
        /// Print the scenario and the event trace.
        #[arg(long)]
        verbose: bool,
    },
}

fn check_replicas(n: u32) -> Result<(), String> {
    pbft_ledger::cluster::Cluster::new(n)
        .map(|_| ())
        .map_err(|e| format!("--replicas: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            seeds,
            start_seed,
            replicas,
            threads,
        } => {
            if let Err(e) = check_replicas(replicas) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let opts = SimOptions {
                replicas,
                verbose: false,
            };
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let summary = campaign::run(start_seed, seeds, &opts, threads, progress, &|o| {
                println!("seed {}: {}", o.seed, o.violations.join("; "));
            });
            println!("{}", summary.line());
            if summary.violations > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Replay {
            seed,
            replicas,
            verbose,
        } => {
            if let Err(e) = check_replicas(replicas) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let opts = SimOptions { replicas, verbose };
            let o = sim::run_seed(seed, &opts);
            if verbose {
                println!("scenario: {}", o.scenario);
                for line in &o.trace {
                    println!("{line}");
                }
            }
            for v in &o.violations {
                println!("violation: {v}");
            }
            println!(
                "seed: {} trace-hash: {} commits: {} view-changes: {} steps: {} virtual-ms: {} violations: {}",
                o.seed,
                o.trace_hash,
                o.commits,
                o.view_changes,
                o.steps,
                o.virtual_ms,
                o.violations.len()
            );
            if o.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
