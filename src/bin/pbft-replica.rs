//! `pbft-replica`: generate a testnet, run a replica, inspect a stopped one.
//! Argument parsing only; the work is in `pbft_ledger::node`.

use clap::{Args, Parser, Subcommand};
use pbft_ledger::exit;
use pbft_ledger::keyfile;
use pbft_ledger::node::config::LogFormat;
use pbft_ledger::node::runtime;
use pbft_ledger::operator::{inspect, kubernetes, probe, start, testnet};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pbft-replica",
    version,
    about = "A replica of a PBFT replicated ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write keys, genesis and one home directory per replica for a local network.
    Testnet(Box<TestnetArgs>),
    /// Run the replica whose home is --home until SIGTERM/SIGINT.
    Start {
        /// The replica's home (holds config.toml).
        #[arg(long, value_name = "DIR", env = "PBFT_HOME")]
        home: PathBuf,
        /// First copy DIR/<hostname>/config.toml, DIR/genesis.json and
        /// DIR/<hostname>/node.key into the home (a Kubernetes pod
        /// `replica-I` picks its own files; see `testnet --kubernetes`).
        /// The key is copied once (mode 0600); a home holding another
        /// replica's key is refused.
        #[arg(long, value_name = "DIR")]
        provision_from: Option<PathBuf>,
        /// `plain` or `json` (overrides config.toml's log_format).
        #[arg(long, value_name = "FORMAT")]
        log_format: Option<LogFormat>,
        /// Log filter, e.g. `info` or `pbft_ledger::net=debug,info`
        /// (overrides RUST_LOG and config.toml's log_level).
        #[arg(long, value_name = "FILTER")]
        log_level: Option<String>,
        /// Run as a Byzantine replica: its traffic passes through this
        /// adversary (equivocate, silent, forge-signatures, flood,
        /// stale-replay, or another adversary catalogue name). Only in
        /// builds with `--features byzantine`; for testing.
        #[arg(long, value_name = "BEHAVIOUR")]
        byzantine: Option<String>,
    },
    /// Write a new key file and print its public key.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Ask a running replica's operations endpoint whether it is healthy
    /// (exit 0) or not (exit 1, with the reason); for scripts and container
    /// health checks.
    Probe {
        /// The replica's home: the endpoint is its `ops.listen`.
        #[arg(
            long,
            value_name = "DIR",
            env = "PBFT_HOME",
            required_unless_present = "addr"
        )]
        home: Option<PathBuf>,
        /// The endpoint's address instead of the home's (ip:port).
        #[arg(long, value_name = "ADDR", conflicts_with = "home")]
        addr: Option<std::net::SocketAddr>,
        /// Ask `/readyz` (taking part in ordering) instead of `/healthz`
        /// (the process and its loop are alive).
        #[arg(long)]
        ready: bool,
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Show height, view, stable checkpoint and tip of a stopped replica's store.
    Inspect {
        #[arg(long, value_name = "DIR", env = "PBFT_HOME")]
        home: PathBuf,
        /// Also list every block's hash.
        #[arg(long)]
        blocks: bool,
    },
}

#[derive(Args)]
struct TestnetArgs {
    /// Number of replicas (3f+1: 4, 7, 10, ...).
    #[arg(long, default_value_t = 4)]
    replicas: u32,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replica i uses p2p port base+10*i and client port base+10*i+1.
    #[arg(long, default_value_t = testnet::BASE_PORT)]
    base_port: u16,
    /// Host (IP) written into genesis for every replica.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// One host per replica, comma-separated: IPs or DNS names (IPv6 in
    /// brackets), e.g. `--hosts db-a.example,db-b.example,10.0.0.3,10.0.0.4`.
    /// Each replica binds every interface and the others dial its host; a
    /// name is looked up again at every reconnect. Distinct hosts all use
    /// ports base, +1, +2; a host named twice gets spaced ports.
    #[arg(long, value_name = "H0,H1,...", value_delimiter = ',',
          conflicts_with_all = ["host", "kubernetes"])]
    hosts: Option<Vec<String>>,
    /// Funded client accounts to create (DIR/clients/client-K.key).
    #[arg(long, default_value_t = 2)]
    clients: u32,
    /// Genesis balance of each client account.
    #[arg(long, default_value_t = 1_000_000)]
    balance: u64,
    #[arg(long, default_value = "pbft-testnet")]
    chain_id: String,
    /// Consensus parameters to start from: lan (the defaults) or wan
    /// (replicas tens of milliseconds apart: a deeper pipeline and a longer
    /// request timeout). The options below override single parameters.
    #[arg(long, value_enum, default_value_t = testnet::Profile::Lan)]
    profile: testnet::Profile,
    /// consensus.request_timeout_ms (also the first view-change timeout).
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// consensus.view_change_timeout_max_ms.
    #[arg(long)]
    view_change_timeout_max_ms: Option<u64>,
    /// consensus.retransmit_ms.
    #[arg(long)]
    retransmit_ms: Option<u64>,
    /// consensus.checkpoint_interval (K).
    #[arg(long)]
    checkpoint_interval: Option<u64>,
    /// consensus.watermark_window (L, a multiple of K, at least 2K).
    #[arg(long)]
    watermark_window: Option<u64>,
    /// consensus.batch_txs_max.
    #[arg(long)]
    batch_txs_max: Option<usize>,
    /// consensus.pipeline_depth: batches a primary keeps in flight.
    #[arg(long)]
    pipeline_depth: Option<u64>,
    /// Also write Kubernetes manifests for this testnet to DIR (apply with
    /// `kubectl apply -k DIR`). Every replica then listens on --base-port,
    /// +1 and +2, and genesis names its pod: replica-I.pbft.NS.svc.
    #[arg(long, value_name = "DIR", requires = "namespace")]
    kubernetes: Option<PathBuf>,
    /// The manifests' namespace (with --kubernetes).
    #[arg(long, value_name = "NS", requires = "kubernetes")]
    namespace: Option<String>,
    /// The replicas' image (with --kubernetes).
    #[arg(long, value_name = "IMAGE", requires = "kubernetes",
          default_value = kubernetes::DEFAULT_IMAGE)]
    image: String,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Testnet(a) => run_testnet(*a),
        Command::Start {
            home,
            provision_from,
            log_format,
            log_level,
            byzantine,
        } => match role(byzantine.as_deref()) {
            Ok(role) => match provision_from.map(|from| provision(&from, &home)) {
                Some(Err(code)) => code,
                _ => start::start(&home, log_format, log_level, role),
            },
            Err(message) => {
                eprintln!("error: {message}");
                exit::USAGE
            }
        },
        Command::Keygen { out } => match keyfile::generate(&out) {
            Ok(key) => {
                println!("{}", key.public());
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILURE
            }
        },
        Command::Probe {
            home,
            addr,
            ready,
            timeout_ms,
        } => run_probe(home, addr, ready, timeout_ms),
        Command::Inspect { home, blocks } => match inspect::inspect(&home, blocks) {
            Ok(report) => {
                print!("{report}");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                e.exit_code()
            }
        },
    };
    std::process::exit(code);
}

/// The role `--byzantine` asks for.
#[cfg(feature = "byzantine")]
fn role(byzantine: Option<&str>) -> Result<runtime::Role, String> {
    match byzantine {
        None => Ok(runtime::Role::Honest),
        Some(name) => runtime::byzantine::behaviour(name).map(runtime::Role::Byzantine),
    }
}

/// The role `--byzantine` asks for: this build has none but honest.
#[cfg(not(feature = "byzantine"))]
fn role(byzantine: Option<&str>) -> Result<runtime::Role, String> {
    match byzantine {
        None => Ok(runtime::Role::Honest),
        Some(_) => {
            Err("this build has no Byzantine behaviours; rebuild with --features byzantine".into())
        }
    }
}

fn run_testnet(a: TestnetArgs) -> i32 {
    let mut consensus = a.profile.consensus();
    let set = |v: Option<u64>, field: &mut u64| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(a.request_timeout_ms, &mut consensus.request_timeout_ms);
    set(
        a.view_change_timeout_max_ms,
        &mut consensus.view_change_timeout_max_ms,
    );
    set(a.retransmit_ms, &mut consensus.retransmit_ms);
    set(a.checkpoint_interval, &mut consensus.checkpoint_interval);
    set(a.watermark_window, &mut consensus.watermark_window);
    set(a.pipeline_depth, &mut consensus.pipeline_depth);
    if let Some(b) = a.batch_txs_max {
        consensus.batch_txs_max = b;
    }
    let k8s = match (a.kubernetes, a.namespace) {
        (Some(dir), Some(namespace)) => Some(kubernetes::KubernetesOptions {
            dir,
            namespace,
            image: a.image,
        }),
        _ => None,
    };
    let hosts = match k8s.as_ref().map(|k| kubernetes::hosts(k, a.replicas)) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
        Some(Ok(hosts)) => Some(hosts),
        None => a.hosts,
    };
    let opts = testnet::TestnetOptions {
        replicas: a.replicas,
        out: a.out,
        base_port: a.base_port,
        host: a.host,
        clients: a.clients,
        balance: a.balance,
        chain_id: a.chain_id,
        consensus,
        hosts,
    };
    match testnet::generate(&opts) {
        Ok(t) => {
            print!("{}", testnet::summary(&opts, &t));
            if let Some(k) = &k8s {
                match kubernetes::generate(&opts, k, &t) {
                    Ok(files) => {
                        println!(
                            "wrote {} Kubernetes manifests to {} (namespace {}): kubectl apply -k {}",
                            files.len(),
                            k.dir.display(),
                            k.namespace,
                            k.dir.display()
                        );
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return e.exit_code();
                    }
                }
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// `start --provision-from`: installs this host's files into the home.
fn provision(from: &std::path::Path, home: &std::path::Path) -> Result<(), i32> {
    let installed = kubernetes::hostname()
        .and_then(|name| kubernetes::provision(from, &name, home).map(|src| (name, src)));
    match installed {
        Ok((name, src)) => {
            eprintln!(
                "provisioned {} from {} (hostname {name})",
                home.display(),
                src.display()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("error: --provision-from {}: {e}", from.display());
            Err(exit::CONFIG)
        }
    }
}

fn run_probe(
    home: Option<PathBuf>,
    addr: Option<std::net::SocketAddr>,
    ready: bool,
    timeout_ms: u64,
) -> i32 {
    let listen = match (addr, home) {
        (Some(addr), _) => addr,
        (None, Some(home)) => match pbft_ledger::node::config::load(&home) {
            Ok(loaded) => match loaded.runtime.ops_listen {
                Some(addr) => addr,
                None => {
                    eprintln!("error: the operations endpoint is disabled (ops.listen = \"\")");
                    return exit::CONFIG;
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CONFIG;
            }
        },
        (None, None) => unreachable!("clap requires --home or --addr"),
    };
    let path = if ready { "/readyz" } else { "/healthz" };
    let addr = probe::connect_addr(listen);
    match probe::get(addr, path, Duration::from_millis(timeout_ms.max(1))) {
        Ok((200, body)) => {
            println!("{}", body.trim());
            exit::OK
        }
        Ok((code, body)) => {
            println!("{}", body.trim());
            eprintln!("error: {path} answered {code}");
            exit::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}
