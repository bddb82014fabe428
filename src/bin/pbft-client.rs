//! `pbft-client`: submit transfers to a PBFT ledger network and query it.
//! Argument parsing only; the work is in `pbft_ledger::client`.

use clap::{Parser, Subcommand};
use pbft_ledger::client::bench::{BenchOptions, CONCURRENCY_MAX};
use pbft_ledger::client::cli::{self, CliError};
use pbft_ledger::client::output::{self, Format, Report};
use pbft_ledger::client::relay;
use pbft_ledger::client::watch::{self, WatchOptions};
use pbft_ledger::crypto::{Digest, PublicKey};
use pbft_ledger::exit;
use pbft_ledger::node::config::LogFormat;
use pbft_ledger::operator::telemetry;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pbft-client",
    version,
    about = "Client of a PBFT replicated ledger"
)]
struct Cli {
    /// Testnet directory holding genesis.json.
    #[arg(long, global = true, value_name = "DIR", env = "PBFT_NETWORK")]
    network: Option<PathBuf>,
    /// Genesis file (instead of --network).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "network")]
    genesis: Option<PathBuf>,
    /// Key file of the sending account (hex seed).
    #[arg(long, global = true, value_name = "FILE", env = "PBFT_KEY")]
    key: Option<PathBuf>,
    /// Bound on every network operation, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    timeout_ms: u64,
    /// How results are printed: aligned text, or one JSON document on stdout
    /// (errors too, as {"error": {"code", "exit_code", "message"}}).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Log filter for diagnostics on stderr (RUST_LOG syntax).
    #[arg(long, global = true, value_name = "FILTER", default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transfer funds from --key's account; waits for f+1 matching replies.
    Transfer {
        /// Receiving account (64 hex digits).
        #[arg(long, value_name = "ACCOUNT", value_parser = cli::parse_account)]
        to: PublicKey,
        /// Amount to move (a positive integer).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        amount: u64,
    },
    /// Balance and nonce of an account.
    Balance {
        #[arg(value_parser = cli::parse_account)]
        account: PublicKey,
    },
    /// Where a transaction landed, by its hash.
    Tx {
        #[arg(value_parser = cli::parse_digest)]
        hash: Digest,
    },
    /// A committed block's header.
    Block { height: u64 },
    /// Each replica's view, height and primary, or that it is unreachable.
    Status {
        /// Also print each replica's view-change counters and the input its
        /// core refused, by reason.
        #[arg(long)]
        stats: bool,
    },
    /// Load the network with pre-signed transfers from --concurrency sender
    /// accounts (derived from --key's and funded by it, untimed) and report
    /// committed tx/s, latency percentiles, failures and retries.
    Bench {
        /// Transfers to commit.
        #[arg(long, value_name = "N", default_value_t = 10_000,
              value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        txs: u64,
        /// Sender accounts, each with one transfer in flight (closed loop:
        /// C outstanding; open loop: at most C).
        #[arg(long, value_name = "C", default_value_t = 64,
              value_parser = clap::value_parser!(u64).range(1..=CONCURRENCY_MAX as u64))]
        concurrency: u64,
        /// Open-loop offered rate in tx/s (transfer j is due at j/R s; latency
        /// counts from then). Without it: closed loop.
        #[arg(long, value_name = "R", value_parser = parse_rate)]
        rate: Option<f64>,
        /// Print the report as one JSON object (the same as --output json).
        #[arg(long)]
        json: bool,
        /// Bound on the whole run (setup included), in seconds.
        #[arg(long, value_name = "S", default_value_t = 600,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        deadline_s: u64,
        /// Async runtime threads: 1 (the default) runs everything on one
        /// thread, 0 uses one per core. On the 2-core benchmark machine, where
        /// the replicas share the cores, a second worker only added
        /// cross-thread wake-ups (client CPU per transfer 0.11 -> 0.065 ms,
        /// 256 in flight 5.4-6.0k -> 7.6-7.8k tx/s).
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(0..=256))]
        threads: u64,
    },
    /// (Feature `byzantine`.) Act as a hostile client against every replica
    /// for a bounded time, then print what it sent: a fault-injection tool.
    #[cfg(feature = "byzantine")]
    Hostile {
        #[arg(value_enum)]
        behaviour: pbft_ledger::client::hostile::Behaviour,
        /// How long to keep at it.
        #[arg(long, value_name = "S", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..=3_600))]
        seconds: u64,
        /// Requests (or new handshakes) per second, over all replicas.
        #[arg(long, value_name = "R", default_value_t = 1_000,
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        rate: u64,
        /// Local address to send from (127.0.0.2 plays another host on
        /// one machine).
        #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
        bind: std::net::IpAddr,
    },
    /// A live view of every replica: reachable or not, height, view,
    /// primary, view change, stable checkpoint, peers, pending requests and
    /// the commit rate since the previous refresh. Each replica gets at most
    /// the smaller of --interval-ms and --timeout-ms to answer.
    Watch {
        /// Time between refreshes, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1_000,
              value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
        interval_ms: u64,
        /// Stop after N refreshes (default: until Ctrl-C).
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// A UDP relay for measuring over a slow network on one machine: each
    /// --link forwards datagrams from LISTEN to TARGET (and the answers
    /// back), each delayed by --delay-ms plus up to --jitter-ms (never
    /// reordered) and dropped with --loss-percent. Runs until SIGINT,
    /// SIGTERM or --duration-s, then prints each link's counts on stderr.
    /// Needs no network directory.
    Relay {
        /// LISTEN=TARGET, two IP:PORT addresses; repeat for more links.
        #[arg(long = "link", value_name = "LISTEN=TARGET", required = true,
              value_parser = relay::parse_link)]
        links: Vec<relay::Link>,
        /// One-way delay added in each direction, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=60_000))]
        delay_ms: u64,
        /// Extra delay per datagram, uniform in [0, J] milliseconds.
        #[arg(long, value_name = "J", default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=60_000))]
        jitter_ms: u64,
        /// Percentage of datagrams dropped, in each direction (0..=100).
        #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_percent)]
        loss_percent: f64,
        /// Seed for the loss and jitter draws (a repeatable run).
        #[arg(long, value_name = "S")]
        seed: Option<u64>,
        /// Stop after S seconds (default: until SIGINT or SIGTERM).
        #[arg(long, value_name = "S",
              value_parser = clap::value_parser!(u64).range(1..=604_800))]
        duration_s: Option<u64>,
        /// Bytes that may wait in one direction of one link; more are
        /// dropped (counted as queue-full).
        #[arg(long, value_name = "B", default_value_t = relay::QUEUE_BYTES_MAX as u64,
              value_parser = clap::value_parser!(u64).range(1_500..=(1u64 << 32)))]
        queue_bytes_max: u64,
    },
    /// Write a new key file and print its account.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn main() {
    restore_default_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    // `bench --json` is `--output json`, as before `--output` existed.
    let format = match cli.command {
        Command::Bench { json: true, .. } => Format::Json,
        _ => cli.output,
    };
    if let Err(e) = telemetry::init(&cli.log_level, LogFormat::Plain) {
        finish(
            format,
            Err(CliError {
                code: exit::USAGE,
                message: format!("--log-level: {e}"),
            }),
        );
    }
    let outcome = run(cli);
    finish(format, outcome)
}

/// Prints a command's outcome and exits with its code.
fn finish(format: Format, outcome: Result<Report, CliError>) -> ! {
    let r = output::render(format, &outcome);
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(r.code)
}

/// A command line clap refused: its own message on stderr (help and
/// --version go to stdout, exit 0) and, when `--output json` was asked
/// for, the error as JSON on stdout too. Exit 2.
fn usage_error(e: clap::Error) -> ! {
    if !e.use_stderr() {
        e.exit();
    }
    let _ = e.print();
    if json_requested(std::env::args_os().skip(1)) {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or("invalid command line");
        let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
        let err = CliError {
            code: exit::USAGE,
            message,
        };
        println!(
            "{}",
            serde_json::json!({ "error": output::error_json(&err) })
        );
    }
    std::process::exit(exit::USAGE)
}

/// Whether a command line clap could not parse asked for JSON output.
fn json_requested(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<std::ffi::OsString> = args.collect();
    args.iter().enumerate().any(|(k, a)| {
        a == "--output=json" || (a == "--output" && args.get(k + 1).is_some_and(|v| v == "json"))
    })
}

/// Rust starts programs with SIGPIPE ignored, so printing to a closed pipe
/// (`pbft-client status | head -1`) made `println!` panic. A command-line
/// tool should end quietly instead, as the shell's own tools do.
fn restore_default_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists;
    // it only resets one signal's disposition to the default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("'{s}' is not a positive rate in tx/s")),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}' is not a percentage in 0..=100")),
    }
}

fn run(cli: Cli) -> Result<Report, CliError> {
    if let Command::Keygen { out } = &cli.command {
        return cli::keygen(out);
    }
    if let Command::Relay {
        links,
        delay_ms,
        jitter_ms,
        loss_percent,
        seed,
        duration_s,
        queue_bytes_max,
    } = cli.command
    {
        let mut opts = relay::RelayOptions::new(
            links,
            relay::Impairment {
                delay: Duration::from_millis(delay_ms),
                jitter: Duration::from_millis(jitter_ms),
                loss: loss_percent / 100.0,
            },
        );
        opts.seed = seed;
        opts.queue_bytes_max = queue_bytes_max as usize;
        return cli::relay(&opts, duration_s.map(Duration::from_secs));
    }
    let genesis = cli::load_genesis(&cli::genesis_path(
        cli.network.as_deref(),
        cli.genesis.as_deref(),
    )?)?;
    let key = match (&cli.command, &cli.key) {
        (_, Some(path)) => Some(cli::load_key(path)?),
        (Command::Transfer { .. }, None) => {
            return Err(CliError {
                code: exit::USAGE,
                message: "transfer needs --key FILE (the sending account)".into(),
            })
        }
        (Command::Bench { .. }, None) => {
            return Err(CliError {
                code: exit::USAGE,
                message: "bench needs --key FILE (the account that funds the senders)".into(),
            })
        }
        #[cfg(feature = "byzantine")]
        (
            Command::Hostile {
                behaviour: pbft_ledger::client::hostile::Behaviour::Replay,
                ..
            },
            None,
        ) => {
            return Err(CliError {
                code: exit::USAGE,
                message: "hostile replay needs --key FILE (a funded account)".into(),
            })
        }
        _ => None,
    };
    let runtime = match &cli.command {
        Command::Bench { threads, .. } if *threads != 1 => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if *threads > 1 {
                b.worker_threads(*threads as usize);
            }
            b
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .map_err(|e| CliError {
        code: exit::FAILURE,
        message: format!("cannot start the async runtime: {e}"),
    })?;
    let timeout = match &cli.command {
        // Each replica gets at most one interval to answer a refresh.
        Command::Watch { interval_ms, .. } => cli.timeout_ms.min(*interval_ms),
        _ => cli.timeout_ms,
    };
    let timeout = Duration::from_millis(timeout);
    let format = cli.output;
    runtime.block_on(async move {
        let client = cli::connect(genesis, key, timeout)?;
        let result = match cli.command {
            Command::Transfer { to, amount } => cli::transfer(&client, to, amount).await,
            Command::Balance { account } => cli::balance(&client, account).await,
            Command::Tx { hash } => cli::tx(&client, hash).await,
            Command::Block { height } => cli::block(&client, height).await,
            Command::Status { stats } => cli::status(&client, stats).await,
            Command::Bench {
                txs,
                concurrency,
                rate,
                json: _,
                deadline_s,
                threads: _,
            } => {
                let opts = BenchOptions {
                    txs,
                    concurrency: concurrency as usize,
                    rate,
                    deadline: Duration::from_secs(deadline_s),
                    progress: std::io::stderr().is_terminal(),
                };
                cli::bench(&client, &opts).await
            }
            #[cfg(feature = "byzantine")]
            Command::Hostile {
                behaviour,
                seconds,
                rate,
                bind,
            } => pbft_ledger::client::hostile::run(
                &client,
                behaviour,
                Duration::from_secs(seconds),
                rate,
                bind,
            )
            .await
            .map_err(|e| CliError {
                code: exit::FAILURE,
                message: format!("hostile {behaviour:?}: {e}"),
            })
            .and_then(|r| {
                let text = format!(
                    "hostile {behaviour:?}: sent {} answered {} closed_on_us {}\n",
                    r.sent, r.answered, r.closed_on_us
                );
                let json = serde_json::json!({
                    "behaviour": clap::ValueEnum::to_possible_value(&behaviour)
                        .map(|v| v.get_name().to_string()),
                    "sent": r.sent,
                    "answered": r.answered,
                    "closed_on_us": r.closed_on_us,
                });
                output::Document::new(&json, text).map(Report::ok)
            }),
            Command::Watch { interval_ms, count } => {
                let opts = WatchOptions {
                    interval: Duration::from_millis(interval_ms),
                    count,
                    format,
                    terminal: std::io::stdout().is_terminal(),
                };
                watch::run(&client, &opts)
                    .await
                    .map(|()| Report::streamed())
            }
            // Handled above, before the network is loaded.
            Command::Keygen { .. } | Command::Relay { .. } => Ok(Report::streamed()),
        };
        client.close().await;
        result
    })
}
