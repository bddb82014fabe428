//! A replica's `config.toml`, its validation, and the exit codes of the
//! binaries.
//!
//! The file lives in the replica's home directory; relative paths in it
//! resolve against that directory. Unknown keys are refused
//! (`deny_unknown_fields`), every key has a default, and an invalid value is
//! reported with the key's dotted name, e.g. `p2p.keep_alive_ms`.
//!
//! Protocol parameters are *not* here: they must be identical at every
//! replica, so they live in genesis (`consensus::Config`). This file holds
//! only what one operator may choose for one replica: where its files are,
//! how it logs, which addresses it binds and its local bounds and timeouts.

use crate::crypto::KeyPair;
use crate::genesis::Genesis;
use crate::net::{NetConfig, PeerAddr, PeerInfo};
use crate::types::ReplicaId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the configuration file in a replica's home.
pub const CONFIG_FILE: &str = "config.toml";

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "plain" => Ok(LogFormat::Plain),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not a log format (use plain or json)")),
        }
    }
}

/// `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaConfig {
    /// Genesis file (relative to the home directory).
    pub genesis_file: PathBuf,
    /// This replica's key file (hex seed, mode 0600).
    pub key_file: PathBuf,
    /// RocksDB directory.
    pub data_dir: PathBuf,
    /// Tracing filter directives, e.g. `info` or `pbft_ledger::net=debug,info`.
    pub log_level: String,
    /// `plain` or `json`.
    pub log_format: LogFormat,
    /// Threads of the async runtime: 1 = one thread for everything (a
    /// current-thread runtime), 0 = one per core.
    pub worker_threads: usize,
    pub p2p: P2pConfig,
    pub client: ClientConfig,
    pub ops: OpsConfig,
}

/// `[p2p]`: the replica mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Address to bind; empty means this replica's `p2p_addr` in genesis.
    pub listen: String,
    pub dial_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub keep_alive_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Outbound frames queued per peer (the oldest is dropped when full).
    pub peer_queue_max: usize,
    /// Inbound frames queued for the node (newer ones are dropped when full).
    pub inbound_queue_max: usize,
    /// Largest frame accepted from a peer.
    pub frame_bytes_max: usize,
}

/// `[client]`: the client endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Address to bind; empty means this replica's `client_addr` in genesis.
    pub listen: String,
    /// Client requests in flight (queued or awaiting an answer).
    pub queue_max: usize,
    /// How long a submitted transaction may wait to execute before the
    /// replica answers "timeout".
    pub submit_timeout_ms: u64,
    /// Submitted transactions awaiting execution; more are answered "busy".
    pub submit_waiters_max: usize,
}

/// `[ops]`: the operations HTTP endpoint (metrics, health, API, dashboard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address to bind; `""` disables the endpoint; absent means
    /// `127.0.0.1` and the client port + 1.
    pub listen: Option<String>,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig {
            genesis_file: "genesis.json".into(),
            key_file: "node.key".into(),
            data_dir: "data".into(),
            log_level: "info".into(),
            log_format: LogFormat::Plain,
            worker_threads: 1,
            p2p: P2pConfig::default(),
            client: ClientConfig::default(),
            ops: OpsConfig::default(),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> P2pConfig {
        P2pConfig {
            listen: String::new(),
            dial_timeout_ms: 2_000,
            idle_timeout_ms: 10_000,
            keep_alive_ms: 2_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            peer_queue_max: 4_096,
            inbound_queue_max: 8_192,
            frame_bytes_max: crate::codec::FRAME_BYTES_MAX,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            listen: String::new(),
            queue_max: 4_096,
            submit_timeout_ms: 30_000,
            submit_waiters_max: 4_096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type).
    #[error("{path}: {detail}")]
    Parse { path: String, detail: String },
    /// A value is out of range; the message names the key.
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
    /// Genesis could not be loaded.
    #[error(transparent)]
    Genesis(#[from] crate::genesis::GenesisError),
    /// The key file could not be read.
    #[error("key_file: {0}")]
    Key(#[from] crate::keyfile::KeyFileError),
}

/// Everything `runtime::run` needs, resolved and checked.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub genesis: Genesis,
    pub key: KeyPair,
    pub me: ReplicaId,
    pub data_dir: PathBuf,
    /// The view record (`node::FileViewRecord`): in the home, outside the
    /// data directory, so a wiped or restored store is recognised.
    pub view_record: PathBuf,
    pub net: NetConfig,
    pub client_listen: SocketAddr,
    /// The operations endpoint's address; `None` when disabled.
    pub ops_listen: Option<SocketAddr>,
    pub client_queue_max: usize,
    pub submit_timeout: Duration,
    pub submit_waiters_max: usize,
}

/// The view record's file name in a replica's home.
pub const VIEW_RECORD_FILE: &str = "view-record";

/// A loaded home directory: the file as written and what it resolves to.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: ReplicaConfig,
    pub runtime: RuntimeConfig,
}

/// Parses `config.toml` text. `path` only labels messages, which name the
/// offending key with its section (`client.bogus`) and its line.
pub fn parse(text: &str, path: &str) -> Result<ReplicaConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        let detail = match e.span().map(|s| s.start.min(text.len())) {
            Some(at) => {
                let line = text[..at].matches('\n').count() + 1;
                match key_at(text, at) {
                    Some(key) if message.starts_with("unknown field") => {
                        let expected = message.split_once(", ").map_or("", |(_, rest)| rest);
                        format!("line {line}: unknown key `{key}` ({expected})")
                    }
                    Some(key) => format!("line {line}: `{key}`: {message}"),
                    None => format!("line {line}: {message}"),
                }
            }
            None => message,
        };
        ConfigError::Parse {
            path: path.to_string(),
            detail,
        }
    })
}

/// The dotted key defined on the line holding byte `at`, qualified by the
/// nearest `[section]` header above it.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let section = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']')).then(|| l.trim_matches(['[', ']']).trim())
    });
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}

fn resolve(home: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

/// Reads only `home/config.toml` (no genesis, no key): for `inspect`.
pub fn read(home: &Path) -> Result<ReplicaConfig, ConfigError> {
    let path = home.join(CONFIG_FILE);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

/// Most async runtime threads a config may ask for.
const WORKER_THREADS_MAX: usize = 256;

impl ReplicaConfig {
    pub fn genesis_path(&self, home: &Path) -> PathBuf {
        resolve(home, &self.genesis_file)
    }
    pub fn key_path(&self, home: &Path) -> PathBuf {
        resolve(home, &self.key_file)
    }
    pub fn data_path(&self, home: &Path) -> PathBuf {
        resolve(home, &self.data_dir)
    }

    /// The range of each number in the file (issue 24, defect 9: upper
    /// bounds too, so that no value passes that stalls the replica or
    /// makes its memory unbounded). In the order `validate` checks them.
    pub const RANGES: [(&'static str, u64, u64); 11] = [
        ("p2p.dial_timeout_ms", 10, 600_000),
        ("p2p.idle_timeout_ms", 100, 3_600_000),
        ("p2p.keep_alive_ms", 10, 600_000),
        ("p2p.reconnect_min_ms", 1, 600_000),
        ("p2p.reconnect_max_ms", 1, 3_600_000),
        ("p2p.peer_queue_max", 1, 1 << 20),
        ("p2p.inbound_queue_max", 1, 1 << 20),
        // At least a full batch in a PRE-PREPARE; at most the largest
        // frame genesis may need (it refuses parameters whose full
        // NEW-VIEW is larger).
        (
            "p2p.frame_bytes_max",
            (crate::tx::BATCH_BYTES_MAX + 64 * 1024) as u64,
            256 << 20,
        ),
        ("client.queue_max", 1, 1 << 20),
        ("client.submit_timeout_ms", 1, 3_600_000),
        ("client.submit_waiters_max", 1, 1 << 20),
    ];

    /// Checks every value that does not need genesis; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.p2p;
        let values = [
            p.dial_timeout_ms,
            p.idle_timeout_ms,
            p.keep_alive_ms,
            p.reconnect_min_ms,
            p.reconnect_max_ms,
            p.peer_queue_max as u64,
            p.inbound_queue_max as u64,
            p.frame_bytes_max as u64,
            self.client.queue_max as u64,
            self.client.submit_timeout_ms,
            self.client.submit_waiters_max as u64,
        ];
        for ((key, min, max), value) in ReplicaConfig::RANGES.iter().zip(values) {
            if !(*min..=*max).contains(&value) {
                return Err(format!("{key} ({value}) must be in {min}..={max}"));
            }
        }
        if self.worker_threads > WORKER_THREADS_MAX {
            return Err(format!(
                "worker_threads ({}) must be at most {WORKER_THREADS_MAX} (0 = one per core)",
                self.worker_threads
            ));
        }
        if p.keep_alive_ms >= p.idle_timeout_ms {
            return Err(format!(
                "p2p.keep_alive_ms ({}) must be below p2p.idle_timeout_ms ({})",
                p.keep_alive_ms, p.idle_timeout_ms
            ));
        }
        if p.reconnect_max_ms < p.reconnect_min_ms {
            return Err(format!(
                "p2p.reconnect_max_ms ({}) must be at least p2p.reconnect_min_ms ({})",
                p.reconnect_max_ms, p.reconnect_min_ms
            ));
        }
        let ops_listen = self.ops.listen.clone().unwrap_or_default();
        for (key, value) in [
            ("p2p.listen", &p.listen),
            ("client.listen", &self.client.listen),
            ("ops.listen", &ops_listen),
        ] {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return Err(format!("{key} '{value}' is not an ip:port address"));
            }
        }
        if self.log_level.trim().is_empty() {
            return Err("log_level must not be empty".into());
        }
        Ok(())
    }
}

/// Loads `home/config.toml`, the genesis and the key it names, and resolves
/// them into a [`RuntimeConfig`].
pub fn load(home: &Path) -> Result<Loaded, ConfigError> {
    let config = read(home)?;
    let shown = home.join(CONFIG_FILE).display().to_string();
    let invalid = |detail: String| ConfigError::Invalid {
        path: shown.clone(),
        detail,
    };
    config.validate().map_err(invalid)?;
    let genesis = Genesis::load(&config.genesis_path(home))?;
    if genesis.p2p_addrs.len() != genesis.replica_keys.len() {
        return Err(invalid(format!(
            "genesis_file {} has no network addresses (a simulation genesis?)",
            config.genesis_path(home).display()
        )));
    }
    let key = crate::keyfile::read(&config.key_path(home))?;
    let me = genesis
        .replica_keys
        .iter()
        .position(|k| *k == key.public())
        .ok_or_else(|| {
            invalid(format!(
                "key_file {} holds key {}, which is not a replica in genesis",
                config.key_path(home).display(),
                key.public().to_hex()
            ))
        })?;
    let me = ReplicaId(me as u32);
    // Unset, a replica binds its genesis address; a genesis *name* is
    // bound as every IPv4 interface on its port (the name is what the
    // others dial; which interface carries it is the host's business).
    let addr = |configured: &str, from_genesis: &PeerAddr| match from_genesis {
        _ if !configured.is_empty() => configured.parse().expect("validated above"),
        PeerAddr::Ip(a) => *a,
        PeerAddr::Name { port, .. } => SocketAddr::from(([0, 0, 0, 0], *port)),
    };
    let peers = genesis
        .replica_keys
        .iter()
        .zip(&genesis.p2p_addrs)
        .enumerate()
        .map(|(i, (k, a))| PeerInfo {
            id: ReplicaId(i as u32),
            public_key: *k,
            addr: a.clone(),
        })
        .collect();
    let p = &config.p2p;
    let mut net = NetConfig::new(me, addr(&p.listen, &genesis.p2p_addrs[me.index()]), peers);
    net.dial_timeout = Duration::from_millis(p.dial_timeout_ms);
    net.idle_timeout = Duration::from_millis(p.idle_timeout_ms);
    net.keep_alive = Duration::from_millis(p.keep_alive_ms);
    net.reconnect_min = Duration::from_millis(p.reconnect_min_ms);
    net.reconnect_max = Duration::from_millis(p.reconnect_max_ms);
    net.peer_queue_max = p.peer_queue_max;
    net.inbound_queue_max = p.inbound_queue_max;
    // Every legal message must fit: raised to the largest one the genesis
    // parameters allow (issue 17, defect 10).
    let needed = crate::consensus::message_bytes_max(genesis.config(), genesis.replica_keys.len());
    net.frame_bytes_max = p.frame_bytes_max.max(needed);
    net.validate().map_err(|e| invalid(e.to_string()))?;
    let client_listen = addr(&config.client.listen, &genesis.client_addrs[me.index()]);
    let ops_listen = match config.ops.listen.as_deref() {
        Some("") => None,
        Some(configured) => Some(configured.parse().expect("validated above")),
        None => {
            let port = client_listen.port().checked_add(1).ok_or_else(|| {
                invalid(format!(
                    "ops.listen: the default (client port + 1) does not exist for client port {}; set ops.listen",
                    client_listen.port()
                ))
            })?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        }
    };
    let runtime = RuntimeConfig {
        client_listen,
        ops_listen,
        genesis,
        key,
        me,
        data_dir: config.data_path(home),
        view_record: home.join(VIEW_RECORD_FILE),
        net,
        client_queue_max: config.client.queue_max,
        submit_timeout: Duration::from_millis(config.client.submit_timeout_ms),
        submit_waiters_max: config.client.submit_waiters_max,
    };
    Ok(Loaded { config, runtime })
}

/// A `config.toml` with every key written out and documented; `testnet`
/// writes one per replica and `configs/replica.toml` is one of them.
pub fn render(c: &ReplicaConfig) -> String {
    let q = |p: &Path| toml_string(&p.display().to_string());
    let format = match c.log_format {
        LogFormat::Plain => "plain",
        LogFormat::Json => "json",
    };
    let ranges: String = ReplicaConfig::RANGES
        .iter()
        .map(|(key, min, max)| format!("#   {key:<28} {min}..={max}\n"))
        .collect();
    format!(
        r#"# pbft-replica configuration. Relative paths resolve against this file's
# directory (the replica's home). Unknown keys are refused. Protocol
# parameters are not here: they are in genesis ("consensus"), because every
# replica must use the same ones.
#
# Each number must lie in its range (a value outside is refused at start,
# naming the key; exit code 3):
{ranges}#   worker_threads               0..={WORKER_THREADS_MAX}

# Genesis file: replicas, keys, addresses, funded accounts, consensus params.
genesis_file = {genesis}
# This replica's ed25519 key (hex of the 32-byte seed, mode 0600). The replica
# id is the position of this key in genesis.
key_file = {key}
# RocksDB directory (created on first start).
data_dir = {data}
# Tracing filter directives (RUST_LOG syntax), e.g. "info" or
# "pbft_ledger::net=debug,info". `start --log-level` overrides it.
log_level = {level}
# "plain" or "json"; logs go to stderr. `start --log-format` overrides it.
log_format = "{format}"
# Threads of the async runtime (QUIC, client connections, the node loop).
# 1 runs everything on one thread: fastest when replicas share cores (a
# 4-replica testnet on one machine; no cross-thread wake-ups). 0 = one per
# core; a replica with a many-core machine of its own may use more.
worker_threads = {workers}

[p2p]
# Replica-to-replica QUIC/UDP address to bind; "" = this replica's p2p_addr in
# genesis (bind 0.0.0.0:PORT here to listen on every interface).
listen = {p2p_listen}
# Bound on one dial to a peer, handshake included.
dial_timeout_ms = {dial}
# A connection silent for this long is considered dead.
idle_timeout_ms = {idle}
# Keep-alive interval; must be below idle_timeout_ms.
keep_alive_ms = {keep}
# Reconnect backoff: jittered, doubling from min to max.
reconnect_min_ms = {rmin}
reconnect_max_ms = {rmax}
# Outbound frames queued per peer; the oldest is dropped when full (PBFT
# retransmits what matters).
peer_queue_max = {pq}
# Inbound frames queued for the node, an equal share per peer; a peer
# whose share is full has its newest dropped.
inbound_queue_max = {iq}
# Largest frame accepted from a peer, in bytes: a floor, raised to the
# largest message the genesis parameters allow (a full NEW-VIEW).
frame_bytes_max = {fb}

[client]
# Client QUIC/UDP address to bind; "" = this replica's client_addr in genesis.
listen = {client_listen}
# Client requests in flight (queued or awaiting an answer); more are refused
# as busy.
queue_max = {cq}
# A submitted transaction not executed within this time is answered "timeout".
submit_timeout_ms = {st}
# Submitted transactions awaiting execution at once; more are answered "busy".
submit_waiters_max = {sw}

[ops]
# Operations HTTP endpoint (Prometheus /metrics, /healthz, /readyz, the JSON
# API under /v1 and the dashboard at /): the TCP address to bind, or "" to
# disable it. Without this key: 127.0.0.1 and the client port + 1. It serves
# one replica's word without authentication: bind a public address only
# behind a firewall or a proxy you control.
{ops_listen}
"#,
        genesis = q(&c.genesis_file),
        key = q(&c.key_file),
        data = q(&c.data_dir),
        level = toml_string(&c.log_level),
        workers = c.worker_threads,
        p2p_listen = toml_string(&c.p2p.listen),
        dial = c.p2p.dial_timeout_ms,
        idle = c.p2p.idle_timeout_ms,
        keep = c.p2p.keep_alive_ms,
        rmin = c.p2p.reconnect_min_ms,
        rmax = c.p2p.reconnect_max_ms,
        pq = c.p2p.peer_queue_max,
        iq = c.p2p.inbound_queue_max,
        fb = c.p2p.frame_bytes_max,
        client_listen = toml_string(&c.client.listen),
        cq = c.client.queue_max,
        st = c.client.submit_timeout_ms,
        sw = c.client.submit_waiters_max,
        ops_listen = match &c.ops.listen {
            Some(listen) => format!("listen = {}", toml_string(listen)),
            None => "# listen = \"127.0.0.1:<client port + 1>\"".to_string(),
        },
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_parses_back_identically() {
        let mut c = ReplicaConfig::default();
        c.p2p.listen = "127.0.0.1:26000".into();
        c.log_format = LogFormat::Json;
        assert_eq!(parse(&render(&c), "x").unwrap(), c);
        for ops in ["", "0.0.0.0:9102"] {
            c.ops.listen = Some(ops.into());
            assert_eq!(parse(&render(&c), "x").unwrap(), c);
        }
        assert_eq!(parse("", "x").unwrap(), ReplicaConfig::default());
    }

    #[test]
    fn example_config_documents_every_key() {
        let text = include_str!("../../configs/replica.toml");
        let parsed = parse(text, "configs/replica.toml").unwrap();
        parsed.validate().unwrap();
        assert_eq!(text, render(&parsed), "configs/replica.toml is out of date");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = parse("log_level = \"info\"\nbogus_key = 1\n", "c.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bogus_key") && msg.contains("line 2"), "{msg}");
        let e = parse("[p2p]\nlisten_addr = \"x\"\n", "c.toml").unwrap_err();
        assert!(e.to_string().contains("`p2p.listen_addr`"), "{e}");
        let e = parse("[p2p]\nkeep_alive_ms = \"soon\"\n", "c.toml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("`p2p.keep_alive_ms`"),
            "{msg}"
        );
        let mut c = ReplicaConfig::default();
        c.p2p.keep_alive_ms = 20_000;
        assert!(c.validate().unwrap_err().contains("p2p.keep_alive_ms"));
        let mut c = ReplicaConfig::default();
        c.client.listen = "nowhere".into();
        assert!(c.validate().unwrap_err().contains("client.listen"));
        let mut c = ReplicaConfig::default();
        c.client.submit_timeout_ms = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .contains("client.submit_timeout_ms"));
        let mut c = ReplicaConfig {
            worker_threads: 100_000,
            ..ReplicaConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("worker_threads"));
        c.worker_threads = 0;
        assert_eq!(c.validate(), Ok(()));
    }

    /// Issue 24, defect 9: every number has an upper bound too; a value
    /// just outside either end is refused naming its key, the ends pass.
    #[test]
    fn every_number_is_refused_outside_its_range() {
        fn set(c: &mut ReplicaConfig, key: &str, v: u64) {
            let (p, cl) = (&mut c.p2p, &mut c.client);
            match key {
                "p2p.dial_timeout_ms" => p.dial_timeout_ms = v,
                "p2p.idle_timeout_ms" => p.idle_timeout_ms = v,
                "p2p.keep_alive_ms" => p.keep_alive_ms = v,
                "p2p.reconnect_min_ms" => p.reconnect_min_ms = v,
                "p2p.reconnect_max_ms" => p.reconnect_max_ms = v,
                "p2p.peer_queue_max" => p.peer_queue_max = v as usize,
                "p2p.inbound_queue_max" => p.inbound_queue_max = v as usize,
                "p2p.frame_bytes_max" => p.frame_bytes_max = v as usize,
                "client.queue_max" => cl.queue_max = v as usize,
                "client.submit_timeout_ms" => cl.submit_timeout_ms = v,
                "client.submit_waiters_max" => cl.submit_waiters_max = v as usize,
                other => panic!("no such key {other}"),
            }
        }
        for (key, min, max) in ReplicaConfig::RANGES {
            for (v, ok) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
                let mut c = ReplicaConfig::default();
                // Keep the relations: keep-alive below idle, min below max.
                c.p2p.idle_timeout_ms = 3_600_000;
                c.p2p.reconnect_max_ms = 3_600_000;
                c.p2p.reconnect_min_ms = 1;
                c.p2p.keep_alive_ms = 10;
                set(&mut c, key, v);
                match c.validate() {
                    Ok(()) => assert!(ok, "{key} = {v} accepted"),
                    Err(e) => {
                        assert!(!ok, "{key} = {v} refused: {e}");
                        assert!(e.contains(key), "{e}");
                    }
                }
            }
        }
    }
}
