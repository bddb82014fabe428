//! `pbft-sim`: deterministic simulation campaigns and exact seed replay.

use clap::{Parser, Subcommand};
use pbft_ledger::adversary::{self, CATALOGUE};
use pbft_ledger::sim::scenario::{Scenario, TWIN_CHOICES_PER_ROUND};
use pbft_ledger::sim::{self, campaign, AdversaryChoice, SimOptions};
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
        /// Put replicas (or clients) under an adversary: a name from
        /// `pbft-sim list`, or `all` to spread the seeds over every one.
        #[arg(long)]
        adversary: Option<String>,
        /// How many replicas the adversary controls (default f). More than
        /// f is the negative control: violations are expected then.
        #[arg(long)]
        byzantine_replicas: Option<u32>,
        /// Skip re-running attacked seeds without the adversary (no
        /// throughput ratio, half the time).
        #[arg(long)]
        no_baseline: bool,
        /// Crash-anywhere: every crash happens inside a replica's writes
        /// (the write torn or applied whole), and each seed has 3 to 8 more.
        #[arg(long)]
        crash_anywhere: bool,
    },
    /// List the adversaries with a one-line description each.
    List,
    /// Twins (n = 4, replica 0 runs as two instances with one key):
    /// partitions and leaders per round, every combination for few rounds,
    /// a sample of them for many.
    Twins {
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// Scenarios to run when there are more combinations than this.
        #[arg(long, default_value_t = 2_000)]
        sample: u64,
        #[arg(long, default_value_t = 0)]
        start_seed: u64,
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
        /// The adversary the seed ran with (as given to `run`).
        #[arg(long)]
        adversary: Option<String>,
        #[arg(long)]
        byzantine_replicas: Option<u32>,
        /// Replay Twins scenario number I of R rounds (as `twins` prints
        /// it; the seed is the job's seed): `--twins R:I`.
        #[arg(long, value_name = "R:I")]
        twins: Option<String>,
        /// The seed ran with `run --crash-anywhere`.
        #[arg(long)]
        crash_anywhere: bool,
    },
}

fn check_replicas(n: u32) -> Result<(), String> {
    pbft_ledger::cluster::Cluster::new(n)
        .map(|_| ())
        .map_err(|e| format!("--replicas: {e}"))
}

fn parse_adversary(name: Option<&str>) -> Result<Option<AdversaryChoice>, String> {
    match name {
        None => Ok(None),
        Some("all") => Ok(Some(AdversaryChoice::All)),
        Some(n) => adversary::by_name(n)
            .map(|k| Some(AdversaryChoice::One(k)))
            .ok_or_else(|| {
                let names: Vec<&str> = CATALOGUE.iter().map(|(n, _, _)| *n).collect();
                format!(
                    "--adversary: unknown adversary {n:?}; expected all or one of: {}",
                    names.join(", ")
                )
            }),
    }
}

/// Checks the options `run` and `replay` share and builds `SimOptions`.
fn sim_options(
    replicas: u32,
    adversary: Option<&str>,
    byzantine_replicas: Option<u32>,
    crash_anywhere: bool,
) -> Result<SimOptions, String> {
    check_replicas(replicas)?;
    let adversary = parse_adversary(adversary)?;
    if byzantine_replicas.is_some() && adversary.is_none() {
        return Err("--byzantine-replicas needs --adversary".into());
    }
    if byzantine_replicas.is_some_and(|k| k > replicas) {
        return Err(format!(
            "--byzantine-replicas: at most {replicas} replicas exist"
        ));
    }
    Ok(SimOptions {
        replicas,
        verbose: false,
        adversary,
        byzantine_replicas,
        baseline: false,
        crash_anywhere,
    })
}

/// `R:I` → (rounds, scenario index).
fn parse_twins(text: &str) -> Result<(u32, u64), String> {
    let (r, i) = text
        .split_once(':')
        .ok_or_else(|| format!("expected ROUNDS:INDEX, got {text:?}"))?;
    let rounds: u32 = r.parse().map_err(|_| format!("bad round count {r:?}"))?;
    let index: u64 = i.parse().map_err(|_| format!("bad scenario index {i:?}"))?;
    if rounds == 0 || rounds > 12 {
        return Err("rounds must be between 1 and 12".into());
    }
    Ok((rounds, index))
}

fn threads_or_cores(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Prints the summary (and per-adversary lines); exit 1 iff violations.
fn report(summary: &campaign::Summary) -> ExitCode {
    for line in summary.adversary_lines() {
        println!("{line}");
    }
    println!("{}", summary.line());
    if summary.violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let print_failure = |o: &sim::SeedOutcome| {
        let adversary = o
            .adversary
            .map_or(String::new(), |k| format!(" [{}]", k.name()));
        println!("seed {}{adversary}: {}", o.seed, o.violations.join("; "));
    };
    match cli.command {
        Command::List => {
            for (name, _, description) in CATALOGUE {
                println!("{name:<20} {description}");
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            seeds,
            start_seed,
            replicas,
            threads,
            adversary,
            byzantine_replicas,
            no_baseline,
            crash_anywhere,
        } => {
            let opts = match sim_options(
                replicas,
                adversary.as_deref(),
                byzantine_replicas,
                crash_anywhere,
            ) {
                Ok(o) => SimOptions {
                    baseline: o.adversary.is_some() && !no_baseline,
                    ..o
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let summary = campaign::run(
                start_seed,
                seeds,
                &opts,
                threads_or_cores(threads),
                progress,
                &print_failure,
            );
            report(&summary)
        }
        Command::Twins {
            rounds,
            sample,
            start_seed,
            threads,
        } => {
            if rounds == 0 || rounds > 12 {
                eprintln!("error: --rounds must be between 1 and 12");
                return ExitCode::from(2);
            }
            let total = TWIN_CHOICES_PER_ROUND
                .checked_pow(rounds)
                .unwrap_or(u64::MAX);
            let exhaustive = total <= sample;
            let count = total.min(sample);
            println!(
                "twins: {rounds} rounds, {total} combinations, running {} ({count})",
                if exhaustive { "all" } else { "a random sample" }
            );
            let job = |i: u64| {
                let index = if exhaustive {
                    i
                } else {
                    // A fixed pseudo-random sample: index drawn from the job number.
                    let h = blake3::hash(&(start_seed ^ i.rotate_left(17)).to_le_bytes());
                    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")) % total
                };
                let mut o = sim::run_scenario(
                    start_seed + i,
                    Scenario::twins(rounds, index),
                    &SimOptions {
                        replicas: 4,
                        ..SimOptions::default()
                    },
                );
                if !o.violations.is_empty() {
                    let replay = format!(
                        "replay with: pbft-sim replay --seed {} --twins {rounds}:{index}",
                        start_seed + i
                    );
                    o.violations.insert(0, replay);
                }
                o
            };
            let summary = campaign::run_jobs(
                count,
                threads_or_cores(threads),
                progress,
                &print_failure,
                &job,
            );
            report(&summary)
        }
        Command::Replay {
            seed,
            replicas,
            verbose,
            adversary,
            byzantine_replicas,
            twins,
            crash_anywhere,
        } => {
            let opts = match sim_options(
                replicas,
                adversary.as_deref(),
                byzantine_replicas,
                crash_anywhere,
            ) {
                Ok(o) => SimOptions { verbose, ..o },
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let twins = match twins.as_deref().map(parse_twins).transpose() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: --twins: {e}");
                    return ExitCode::from(2);
                }
            };
            let o = match twins {
                Some((rounds, index)) => {
                    sim::run_scenario(seed, Scenario::twins(rounds, index), &opts)
                }
                None => sim::run_seed(seed, &opts),
            };
            if verbose {
                println!("scenario: {}", o.scenario);
                for line in &o.trace {
                    println!("{line}");
                }
            }
            for v in &o.violations {
                println!("violation: {v}");
            }
            if verbose {
                for (reason, n) in &o.refused {
                    println!("refused {n:>6} {reason}");
                }
            }
            println!(
                "seed: {} trace-hash: {} commits: {} view-changes: {} write-crashes: {} steps: {} virtual-ms: {} violations: {}",
                o.seed,
                o.trace_hash,
                o.commits,
                o.view_changes,
                o.write_crashes,
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
