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
        /// Run the replicas without the proposal monitor (only the request
        /// timer replaces a primary), as the teeth campaign of the request
        /// timer does.
        #[arg(long)]
        no_proposal_monitor: bool,
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
        /// The seed ran with `run --no-proposal-monitor`.
        #[arg(long)]
        no_proposal_monitor: bool,
        /// Write the run's space-time diagram to FILE: one self-contained
        /// HTML page (open it in a browser).
        #[arg(long, value_name = "FILE")]
        html: Option<std::path::PathBuf>,
        /// Diagram only: start of the time window (virtual ms).
        #[arg(long, value_name = "MS", requires = "html")]
        from_ms: Option<u64>,
        /// Diagram only: end of the time window (virtual ms, exclusive).
        #[arg(long, value_name = "MS", requires = "html")]
        to_ms: Option<u64>,
        /// Diagram only: the seqs to keep, `A..B` (both included);
        /// messages without a seq stay.
        #[arg(long, value_name = "A..B", requires = "html")]
        seqs: Option<String>,
        /// Diagram only: at most this many arrows (later ones are cut,
        /// and the page says so).
        #[arg(long, default_value_t = sim::diagram::MAX_ARROWS, requires = "html")]
        max_arrows: usize,
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
        diagram: false,
        no_proposal_monitor: false,
    })
}

/// `A..B` → (A, B), both included.
fn parse_seqs(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got {text:?}"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad seq {a:?}"))?;
    let b: u64 = b
        .trim_start_matches('=')
        .parse()
        .map_err(|_| format!("bad seq {b:?}"))?;
    if a > b {
        return Err(format!("empty range {text:?}"));
    }
    Ok((a, b))
}

/// The command that replays a failing seed of a `run` campaign and draws it.
fn replay_command(o: &sim::SeedOutcome, opts: &SimOptions) -> String {
    let mut cmd = format!("pbft-sim replay --seed {}", o.seed);
    if opts.replicas != 4 {
        cmd += &format!(" --replicas {}", opts.replicas);
    }
    if let Some(k) = o.adversary {
        cmd += &format!(" --adversary {}", k.name());
        if let Some(b) = opts.byzantine_replicas {
            cmd += &format!(" --byzantine-replicas {b}");
        }
    }
    if opts.crash_anywhere {
        cmd += " --crash-anywhere";
    }
    cmd + &format!(" --html seed-{}.html", o.seed)
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
            no_proposal_monitor,
        } => {
            let opts = match sim_options(
                replicas,
                adversary.as_deref(),
                byzantine_replicas,
                crash_anywhere,
            ) {
                Ok(o) => SimOptions {
                    baseline: o.adversary.is_some() && !no_baseline,
                    no_proposal_monitor,
                    ..o
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let print_run_failure = |o: &sim::SeedOutcome| {
                print_failure(o);
                println!("  replay with: {}", replay_command(o, &opts));
            };
            let summary = campaign::run(
                start_seed,
                seeds,
                &opts,
                threads_or_cores(threads),
                progress,
                &print_run_failure,
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
                        "replay with: pbft-sim replay --seed {} --twins {rounds}:{index} --html seed-{}.html",
                        start_seed + i,
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
            no_proposal_monitor,
            html,
            from_ms,
            to_ms,
            seqs,
            max_arrows,
        } => {
            let opts = match sim_options(
                replicas,
                adversary.as_deref(),
                byzantine_replicas,
                crash_anywhere,
            ) {
                Ok(o) => SimOptions {
                    verbose,
                    diagram: html.is_some(),
                    no_proposal_monitor,
                    ..o
                },
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
            let seqs = match seqs.as_deref().map(parse_seqs).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: --seqs: {e}");
                    return ExitCode::from(2);
                }
            };
            let cut = sim::diagram::Cut {
                from_us: from_ms.unwrap_or(0).saturating_mul(1000),
                to_us: to_ms.map_or(u64::MAX, |t| t.saturating_mul(1000)),
                seqs,
                max_arrows,
            };
            if cut.to_us <= cut.from_us {
                eprintln!("error: --to-ms must be above --from-ms");
                return ExitCode::from(2);
            }
            let o = match twins {
                Some((rounds, index)) => {
                    sim::run_scenario(seed, Scenario::twins(rounds, index), &opts)
                }
                None => sim::run_seed(seed, &opts),
            };
            if let (Some(path), Some(diagram)) = (&html, &o.diagram) {
                let model = diagram.model(&cut);
                let page = model.to_html();
                if let Err(e) = std::fs::write(path, &page) {
                    eprintln!("error: --html {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                eprintln!(
                    "diagram: {} ({} bytes): {} of {} recorded events, {} arrows{}",
                    path.display(),
                    page.len(),
                    model.arrows.len() + model.bands.len() + model.marks.len(),
                    diagram.items.len(),
                    model.arrows.len(),
                    if model.arrows_cut > 0 {
                        format!(", {} more cut over --max-arrows", model.arrows_cut)
                    } else {
                        String::new()
                    }
                );
            }
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
