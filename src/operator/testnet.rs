//! `pbft-replica testnet`: keys, genesis and per-replica homes for a local
//! network (after CometBFT's `testnet`).
//!
//! ```text
//! DIR/genesis.json
//! DIR/replica-I/{config.toml, genesis.json, node.key}
//! DIR/clients/client-K.key          (funded in genesis)
//! DIR/clients/client-K.pub          (its account, hex)
//! ```
//!
//! Ports follow the CometBFT/BFT-SMaRt convention of spaced blocks per
//! replica: p2p `base + 10*i`, client `base + 10*i + 1`.

use crate::consensus::Config;
use crate::crypto::{KeyPair, PublicKey};
use crate::genesis::{self, GenesisError};
use crate::keyfile::{self, KeyFileError};
use crate::node::config::{render, ReplicaConfig};
use std::path::{Path, PathBuf};

/// Default first port.
pub const BASE_PORT: u16 = 26000;

/// `testnet --profile`: the consensus parameters to start from, for where
/// the replicas run (explicit options such as `--pipeline-depth` override
/// them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Replicas on one machine or a LAN: the defaults ([`Config::default`]).
    #[default]
    Lan,
    /// Replicas tens of milliseconds apart (measured up to 50 ms one way
    /// with `scripts/wan-table.sh`; README, "Benchmark").
    Wan,
}

impl Profile {
    /// The consensus parameters of this profile.
    pub fn consensus(self) -> Config {
        let mut c = Config::default();
        if self == Profile::Wan {
            c.pipeline_depth = WAN_PIPELINE_DEPTH;
            c.request_timeout_ms = WAN_REQUEST_TIMEOUT_MS;
        }
        c
    }
}

/// `--profile wan`'s pipeline depth: with one batch in flight a primary
/// proposes at most once per three one-way delays (PRE-PREPARE, PREPARE,
/// COMMIT); more batches in flight keep it proposing while earlier ones
/// are agreed on. 8, not 4: at 25 ms one way on the idle machine depth 8
/// gave 4,703–4,868 tx/s against depth 4's 4,329–4,515 (interleaved runs,
/// README "Benchmark"); under load the two were within 2 %.
pub const WAN_PIPELINE_DEPTH: u64 = 8;
/// `--profile wan`'s request timeout: a backup's timer for a request must
/// outlast the request's commit under load across a slow network, or a
/// correct primary is suspected.
pub const WAN_REQUEST_TIMEOUT_MS: u64 = 5_000;

#[derive(Clone, Debug)]
pub struct TestnetOptions {
    pub replicas: u32,
    pub out: PathBuf,
    pub base_port: u16,
    pub host: String,
    pub clients: u32,
    pub balance: u64,
    pub chain_id: String,
    pub consensus: Config,
    /// One IP or DNS name per replica instead of `host` for all (IPv6 in
    /// brackets): replica I is then `hosts[I]` on ports base, base+1 and
    /// base+2 (each replica has its own address, as in a cluster) and binds
    /// them on every interface. A host named twice spaces the ports as a
    /// single host does (base+10*I), so the addresses stay distinct.
    pub hosts: Option<Vec<String>>,
}

impl TestnetOptions {
    pub fn new(replicas: u32, out: PathBuf) -> TestnetOptions {
        TestnetOptions {
            replicas,
            out,
            base_port: BASE_PORT,
            host: "127.0.0.1".into(),
            clients: 2,
            balance: 1_000_000,
            chain_id: "pbft-testnet".into(),
            consensus: Config::default(),
            hosts: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// The output directory already holds a network; nothing is overwritten.
    #[error("{0} already holds a testnet (genesis.json exists); remove it first")]
    Exists(String),
    /// The options are out of range; the message names the option.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Testnet {
    pub genesis_path: PathBuf,
    pub network: crate::crypto::NetworkId,
    pub homes: Vec<PathBuf>,
    pub client_keys: Vec<(PathBuf, PublicKey)>,
}

impl TestnetError {
    /// The process exit code (see [`crate::exit`]).
    pub fn exit_code(&self) -> i32 {
        use crate::exit;
        match self {
            TestnetError::Invalid(_) | TestnetError::Genesis(_) => exit::CONFIG,
            TestnetError::Exists(_) | TestnetError::Key(_) | TestnetError::Io { .. } => {
                exit::FAILURE
            }
        }
    }
}

impl TestnetOptions {
    /// Replica `i`'s host and first (p2p) port: client is +1, ops +2.
    pub fn endpoint(&self, i: u32) -> (&str, u32) {
        match &self.hosts {
            Some(hosts) => {
                let repeated = hosts
                    .iter()
                    .enumerate()
                    .any(|(j, h)| hosts[..j].contains(h));
                let step = if repeated { 10 * i } else { 0 };
                (hosts[i as usize].as_str(), self.base_port as u32 + step)
            }
            None => (self.host.as_str(), self.base_port as u32 + 10 * i),
        }
    }
}

/// What `testnet` prints: every replica's home and ports, every client key.
pub fn summary(opts: &TestnetOptions, t: &Testnet) -> String {
    let mut s = format!(
        "wrote a {}-replica testnet to {} (network {})\n",
        opts.replicas,
        opts.out.display(),
        t.network.0
    );
    for (i, home) in t.homes.iter().enumerate() {
        let (host, p) = opts.endpoint(i as u32);
        s += &format!(
            "  replica {i}  {}  p2p {host}:{p}  client {host}:{}  ops http://{host}:{}/\n",
            home.display(),
            p + 1,
            p + 2
        );
    }
    for (path, account) in &t.client_keys {
        s += &format!(
            "  client  {}  account {account}  balance {}\n",
            path.display(),
            opts.balance
        );
    }
    s
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TestnetError + '_ {
    move |source| TestnetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The Prometheus scrape configuration `generate` writes beside genesis.
pub const PROMETHEUS_CONFIG: &str = "prometheus.yml";

/// A Prometheus configuration that scrapes every replica's `/metrics`
/// (`prometheus --config.file=DIR/prometheus.yml`), each series labelled
/// with its replica's index.
pub fn prometheus_config(opts: &TestnetOptions) -> String {
    let mut s = String::from(
        "# Written by `pbft-replica testnet`: scrapes every replica's operations\n\
         # endpoint (ops.listen in its config.toml).\n\
         global:\n  scrape_interval: 1s\n  evaluation_interval: 5s\n\
         scrape_configs:\n  - job_name: pbft\n    static_configs:\n",
    );
    for i in 0..opts.replicas {
        let (host, p) = opts.endpoint(i);
        let port = p + 2;
        s += &format!("      - targets: ['{host}:{port}']\n        labels: {{replica: '{i}'}}\n");
    }
    s
}

/// Generates the testnet described by `opts`.
pub fn generate(opts: &TestnetOptions) -> Result<Testnet, TestnetError> {
    let n = opts.replicas;
    crate::cluster::Cluster::new(n)
        .map_err(|e| TestnetError::Invalid(format!("--replicas: {e}")))?;
    let top = opts.base_port as u32 + 10 * (n - 1) + 2;
    if top > u16::MAX as u32 || opts.base_port == 0 {
        return Err(TestnetError::Invalid(format!(
            "--base-port {}: ports base..base+10*(n-1)+2 must fit in 1..=65535",
            opts.base_port
        )));
    }
    if let Some(hosts) = &opts.hosts {
        if hosts.len() != n as usize {
            return Err(TestnetError::Invalid(format!(
                "{} hosts for {n} replicas: name one per replica",
                hosts.len()
            )));
        }
        for h in hosts {
            crate::net::PeerAddr::parse(&format!("{h}:{}", opts.base_port)).map_err(|why| {
                TestnetError::Invalid(format!("--hosts: {why} (an IPv6 address goes in brackets)"))
            })?;
        }
    }
    let genesis_path = opts.out.join("genesis.json");
    if genesis_path.exists() {
        return Err(TestnetError::Exists(opts.out.display().to_string()));
    }
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;

    let replica_keys: Vec<KeyPair> = (0..n).map(|_| KeyPair::generate()).collect();
    let client_keys: Vec<KeyPair> = (0..opts.clients).map(|_| KeyPair::generate()).collect();
    let addrs: Vec<(String, String)> = (0..n)
        .map(|i| {
            let (host, p) = opts.endpoint(i);
            (format!("{host}:{p}"), format!("{host}:{}", p + 1))
        })
        .collect();
    let accounts: Vec<(PublicKey, u64)> = client_keys
        .iter()
        .map(|k| (k.public(), opts.balance))
        .collect();
    let publics: Vec<PublicKey> = replica_keys.iter().map(|k| k.public()).collect();
    let genesis = genesis::build(
        &opts.chain_id,
        &publics,
        &addrs,
        &accounts,
        opts.consensus.clone(),
    )?;

    let mut homes = Vec::new();
    for (i, key) in replica_keys.iter().enumerate() {
        let home = opts.out.join(format!("replica-{i}"));
        std::fs::create_dir_all(&home).map_err(io(&home))?;
        keyfile::write(&home.join("node.key"), key)?;
        let g = home.join("genesis.json");
        genesis.save(&g).map_err(io(&g))?;
        let c = home.join(crate::node::config::CONFIG_FILE);
        // The operations endpoint: p2p port + 2 (= client port + 1).
        let mut config = ReplicaConfig::default();
        let (host, p) = opts.endpoint(i as u32);
        config.ops.listen = Some(format!("{host}:{}", p + 2));
        if opts.hosts.is_some() {
            // Its own address is not necessarily an interface of the
            // replica's machine (a cluster's service IP, a name, a NAT'd
            // address): bind every one.
            let any = if host.starts_with('[') {
                "[::]"
            } else {
                "0.0.0.0"
            };
            config.p2p.listen = format!("{any}:{p}");
            config.client.listen = format!("{any}:{}", p + 1);
            config.ops.listen = Some(format!("{any}:{}", p + 2));
        }
        std::fs::write(&c, render(&config)).map_err(io(&c))?;
        homes.push(home);
    }
    let mut clients = Vec::new();
    for (k, key) in client_keys.iter().enumerate() {
        let path = opts.out.join("clients").join(format!("client-{k}.key"));
        keyfile::write(&path, key)?;
        // The account (public key) beside it, for scripts: `--to $(cat …pub)`.
        let public = path.with_extension("pub");
        std::fs::write(&public, format!("{}\n", key.public())).map_err(io(&public))?;
        clients.push((path, key.public()));
    }
    let prometheus = opts.out.join(PROMETHEUS_CONFIG);
    std::fs::write(&prometheus, prometheus_config(opts)).map_err(io(&prometheus))?;
    // Written last: its presence marks a complete testnet.
    genesis.save(&genesis_path).map_err(io(&genesis_path))?;
    Ok(Testnet {
        genesis_path,
        network: genesis.network,
        homes,
        client_keys: clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_valid_and_wan_deepens_the_pipeline() {
        assert_eq!(Profile::Lan.consensus(), Config::default());
        let wan = Profile::Wan.consensus();
        wan.validate().unwrap();
        assert_eq!(wan.pipeline_depth, WAN_PIPELINE_DEPTH);
        assert_eq!(wan.request_timeout_ms, WAN_REQUEST_TIMEOUT_MS);
        assert!(wan.pipeline_depth > Config::default().pipeline_depth);
        assert!(wan.request_timeout_ms > Config::default().request_timeout_ms);
    }

    #[test]
    fn writes_loadable_homes_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = TestnetOptions::new(4, dir.path().join("net"));
        opts.base_port = 31000;
        let t = generate(&opts).unwrap();
        assert_eq!(t.homes.len(), 4);
        assert_eq!(t.client_keys.len(), 2);
        for (i, home) in t.homes.iter().enumerate() {
            let loaded = crate::node::config::load(home).unwrap();
            assert_eq!(loaded.runtime.me.index(), i);
            assert_eq!(loaded.runtime.genesis.network, t.network);
            assert_eq!(loaded.runtime.net.listen.port(), 31000 + 10 * i as u16);
            assert_eq!(loaded.runtime.client_listen.port(), 31001 + 10 * i as u16);
            let ops = loaded.runtime.ops_listen.expect("testnet enables ops");
            assert_eq!(ops.port(), 31002 + 10 * i as u16);
        }
        let prometheus = std::fs::read_to_string(opts.out.join(PROMETHEUS_CONFIG)).unwrap();
        for i in 0..4 {
            let target = format!("- targets: ['127.0.0.1:{}']", 31002 + 10 * i);
            assert!(prometheus.contains(&target), "{prometheus}");
        }
        assert!(matches!(generate(&opts), Err(TestnetError::Exists(_))));
        let mut bad = TestnetOptions::new(5, dir.path().join("other"));
        bad.base_port = 31100;
        assert!(generate(&bad)
            .unwrap_err()
            .to_string()
            .contains("--replicas"));
    }

    #[test]
    fn ops_listen_defaults_to_the_client_port_plus_one_and_empty_disables_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = TestnetOptions::new(4, dir.path().join("net"));
        opts.base_port = 31200;
        let t = generate(&opts).unwrap();
        let home = &t.homes[1];
        let path = home.join(crate::node::config::CONFIG_FILE);
        let mut c = crate::node::config::read(home).unwrap();
        for (listen, expected) in [
            (None, Some("127.0.0.1:31212")),
            (Some(""), None),
            (Some("0.0.0.0:9102"), Some("0.0.0.0:9102")),
        ] {
            c.ops.listen = listen.map(String::from);
            std::fs::write(&path, render(&c)).unwrap();
            let ops = crate::node::config::load(home).unwrap().runtime.ops_listen;
            assert_eq!(
                ops.map(|a| a.to_string()).as_deref(),
                expected,
                "{listen:?}"
            );
        }
        c.ops.listen = Some("localhost".into());
        assert!(c.validate().unwrap_err().contains("ops.listen 'localhost'"));
    }

    /// Issue 20: `--hosts` names one host (IP or DNS name) per replica;
    /// each binds every interface and advertises its host; distinct hosts
    /// share one port block, a repeated host spaces them.
    #[test]
    fn hosts_give_each_replica_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = TestnetOptions::new(4, dir.path().join("names"));
        opts.base_port = 31300;
        opts.hosts = Some(vec![
            "db-a.example".into(),
            "10.1.0.2".into(),
            "[fd00::3]".into(),
            "replica-3".into(),
        ]);
        let t = generate(&opts).unwrap();
        let expected = [
            "db-a.example:31300",
            "10.1.0.2:31300",
            "[fd00::3]:31300",
            "replica-3:31300",
        ];
        for (i, home) in t.homes.iter().enumerate() {
            let r = crate::node::config::load(home).unwrap().runtime;
            let shown: Vec<String> = r.genesis.p2p_addrs.iter().map(|a| a.to_string()).collect();
            assert_eq!(shown, expected);
            let any = if i == 2 { "[::]" } else { "0.0.0.0" };
            assert_eq!(r.net.listen.to_string(), format!("{any}:31300"));
            assert_eq!(r.client_listen.to_string(), format!("{any}:31301"));
            assert_eq!(r.ops_listen.unwrap().to_string(), format!("{any}:31302"));
        }
        let prometheus = std::fs::read_to_string(opts.out.join(PROMETHEUS_CONFIG)).unwrap();
        assert!(
            prometheus.contains("- targets: ['replica-3:31302']"),
            "{prometheus}"
        );

        let mut local = TestnetOptions::new(4, dir.path().join("local"));
        local.base_port = 31400;
        local.hosts = Some(vec!["localhost".into(); 4]);
        let t = generate(&local).unwrap();
        let r = crate::node::config::load(&t.homes[3]).unwrap().runtime;
        assert_eq!(r.genesis.client_addrs[3].to_string(), "localhost:31431");
        assert_eq!(r.net.listen.to_string(), "0.0.0.0:31430");

        for (hosts, why) in [
            (vec!["a", "b", "c"], "3 hosts for 4 replicas"),
            (
                vec!["a", "b", "c", "bad_name"],
                "--hosts: 'bad_name:31500' is neither",
            ),
            (vec!["a", "b", "c", "fd00::1"], "in brackets"),
        ] {
            let mut bad = TestnetOptions::new(4, dir.path().join("bad"));
            bad.base_port = 31500;
            bad.hosts = Some(hosts.into_iter().map(String::from).collect());
            let e = generate(&bad).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
            assert_eq!(e.exit_code(), crate::exit::CONFIG);
            assert!(
                !dir.path().join("bad").exists(),
                "wrote files for bad options"
            );
        }
    }
}
