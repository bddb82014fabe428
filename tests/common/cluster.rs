//! A generated testnet of real `pbft-replica` processes on 127.0.0.1 and the
//! `pbft-client` runs against it, for the real-process tests (`cluster.rs`,
//! `recovery.rs`).
//!
//! Every [`Cluster`] generates a fresh testnet in a temporary directory with
//! its own ports and short consensus timeouts (`request_timeout_ms` 500,
//! checkpoints every 4 blocks). Every replica is a child process the guard
//! kills by PID when the test ends, passes or panics; every wait is bounded.

use super::{fields, run_bounded, text};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const REPLICA: &str = env!("CARGO_BIN_EXE_pbft-replica");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_pbft-client");
pub const N: usize = 4;
pub const BALANCE: u64 = 1_000_000;
pub const CLIENTS: usize = 2;
/// Bound on a replica becoming ready / stopping.
pub const READY_LIMIT: Duration = Duration::from_secs(20);
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Bound on one client process (its own --timeout-ms is lower).
pub const CLIENT_LIMIT: Duration = Duration::from_secs(30);
pub const CLIENT_TIMEOUT_MS: &str = "15000";

/// A base port whose 4 replicas' p2p and client ports are all free, distinct
/// per call within this process and spread across processes by pid.
pub fn free_base_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 30_000 + ((std::process::id() as u16 % 100) * 200 + k * 40) % 30_000;
        let free = (0..N as u16).all(|i| {
            [base + 10 * i, base + 10 * i + 1]
                .iter()
                .all(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return base;
        }
    }
}

/// A generated testnet and the replica processes running from it.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub children: Vec<Option<Child>>,
    pub accounts: Vec<String>,
    /// The network namespace every process runs in, if any (dropped after
    /// the children: `Drop` kills them first).
    netns: Option<Netns>,
    pub base_port: u16,
}

/// A network namespace of our own (deleted on drop): its loopback is private,
/// so a test may cut links there without touching the host's.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let name = format!(
            "pbft-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs `ip ARGS`; panics with its message if it fails (these tests need
/// root and iproute2, as CI has).
fn ip(args: &[&str]) {
    let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(10));
    assert!(
        out.status.success(),
        "ip {}: {} (the partition test needs root and iproute2)",
        args.join(" "),
        text(&out.stderr)
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// Generates a fresh testnet; starts nothing.
    pub fn generate() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("net");
        let base = free_base_port().to_string();
        let clients = CLIENTS.to_string();
        let balance = BALANCE.to_string();
        let out = run_bounded(
            Command::new(REPLICA).args([
                "testnet",
                "--replicas",
                "4",
                "--out",
                root.to_str().unwrap(),
                "--base-port",
                &base,
                "--clients",
                &clients,
                "--balance",
                &balance,
                "--request-timeout-ms",
                "500",
                "--retransmit-ms",
                "100",
                "--view-change-timeout-max-ms",
                "4000",
                "--checkpoint-interval",
                "4",
                "--watermark-window",
                "8",
            ]),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "testnet failed: {}",
            text(&out.stderr)
        );
        std::fs::create_dir_all(root.join("logs")).unwrap();
        let accounts = (0..CLIENTS)
            .map(|k| {
                std::fs::read_to_string(root.join(format!("clients/client-{k}.pub")))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect();
        Cluster {
            _dir: dir,
            root,
            children: (0..N).map(|_| None).collect(),
            accounts,
            netns: None,
            base_port: base.parse().unwrap(),
        }
    }

    /// [`Cluster::generate`], with every replica and client process run in
    /// a network namespace of its own, so links can be cut
    /// ([`Cluster::isolate`]).
    pub fn generate_in_netns() -> Cluster {
        let mut c = Cluster::generate();
        c.netns = Some(Netns::create());
        c
    }

    /// A command for `program`, inside the cluster's namespace if it has one.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.0, program]);
                c
            }
            None => Command::new(program),
        }
    }

    /// The replica-to-replica UDP port of replica `i`.
    pub fn p2p_port(&self, i: usize) -> u16 {
        self.base_port + 10 * i as u16
    }

    /// Cuts replica `i` off from the other replicas (both directions; its
    /// client port stays reachable) with routing rules in the cluster's
    /// namespace: every packet to or from its p2p port is blackholed.
    pub fn isolate(&self, i: usize) {
        let ns = &self
            .netns
            .as_ref()
            .expect("isolate needs generate_in_netns")
            .0;
        let port = self.p2p_port(i).to_string();
        // Rules are consulted before the local table only if it moves back.
        ip(&["-n", ns, "rule", "del", "pref", "0", "lookup", "local"]);
        ip(&["-n", ns, "rule", "add", "pref", "100", "lookup", "local"]);
        for dir in ["dport", "sport"] {
            ip(&[
                "-n",
                ns,
                "rule",
                "add",
                "pref",
                "10",
                "ipproto",
                "udp",
                dir,
                &port,
                "blackhole",
            ]);
        }
    }

    /// Undoes [`Cluster::isolate`].
    pub fn heal(&self, i: usize) {
        let ns = &self.netns.as_ref().expect("heal needs generate_in_netns").0;
        let port = self.p2p_port(i).to_string();
        for dir in ["dport", "sport"] {
            ip(&[
                "-n",
                ns,
                "rule",
                "del",
                "pref",
                "10",
                "ipproto",
                "udp",
                dir,
                &port,
                "blackhole",
            ]);
        }
        ip(&["-n", ns, "rule", "add", "pref", "0", "lookup", "local"]);
        ip(&["-n", ns, "rule", "del", "pref", "100", "lookup", "local"]);
    }

    pub fn home(&self, i: usize) -> PathBuf {
        self.root.join(format!("replica-{i}"))
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.root.join(format!("logs/replica-{i}.log"))
    }

    pub fn key(&self, k: usize) -> String {
        self.root
            .join(format!("clients/client-{k}.key"))
            .display()
            .to_string()
    }

    pub fn log_tail(&self, i: usize) -> String {
        let t = std::fs::read_to_string(self.log(i)).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Starts replica `i` and waits (bounded) for this run's ready line.
    pub fn start(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "replica {i} already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let offset = log.metadata().unwrap().len() as usize;
        let child = self
            .command(REPLICA)
            .args(["start", "--home", self.home(i).to_str().unwrap()])
            .args(["--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn replica");
        self.children[i] = Some(child);
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let t = std::fs::read(self.log(i)).unwrap_or_default();
            if text(&t[offset.min(t.len())..]).contains("event=\"ready\"") {
                return;
            }
            if let Some(status) = self.children[i].as_mut().unwrap().try_wait().unwrap() {
                self.children[i] = None;
                panic!(
                    "replica {i} exited during start-up ({status}):\n{}",
                    self.log_tail(i)
                );
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} not ready:\n{}",
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts every replica, then waits (bounded) until every replica has
    /// a connection to every other one, so the first request does not race
    /// the mesh's reconnect backoff.
    pub fn start_all(&mut self) {
        for i in 0..N {
            self.start(i);
        }
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let out = self.client(&["status"]);
            let t = text(&out.stdout);
            let full = format!("peers {}", N - 1);
            if t.lines().filter(|l| l.contains(&full)).count() == N {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mesh never fully connected:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` to replica `i` by PID and waits (bounded) for it to exit.
    pub fn signal(&mut self, i: usize, signal: libc::c_int) -> ExitStatus {
        let mut child = self.children[i].take().expect("replica running");
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", child.id());
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "replica {i} did not exit after signal {signal}:\n{}",
                    self.log_tail(i)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; asserts a clean exit (code 0).
    pub fn stop(&mut self, i: usize) {
        let status = self.signal(i, libc::SIGTERM);
        assert_eq!(
            status.code(),
            Some(0),
            "replica {i} exit:\n{}",
            self.log_tail(i)
        );
    }

    pub fn stop_all(&mut self) {
        for i in 0..N {
            if self.children[i].is_some() {
                self.stop(i);
            }
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self, i: usize) {
        let status = self.signal(i, libc::SIGKILL);
        assert_eq!(status.code(), None, "replica {i} should die by signal");
    }

    pub fn client(&self, args: &[&str]) -> Output {
        run_bounded(
            self.command(CLIENT)
                .args(["--network", self.root.to_str().unwrap()])
                .args(["--timeout-ms", CLIENT_TIMEOUT_MS])
                .args(args),
            CLIENT_LIMIT,
        )
    }

    /// A transfer from client `from` to client `to`'s account; returns the
    /// exit code and the printed fields.
    pub fn transfer(&self, from: usize, to: usize, amount: u64) -> (i32, BTreeMap<String, String>) {
        let amount = amount.to_string();
        let out = self.client(&[
            "--key",
            &self.key(from),
            "transfer",
            "--to",
            &self.accounts[to],
            "--amount",
            &amount,
        ]);
        let code = out.status.code().unwrap_or(-1);
        let f = fields(&text(&out.stdout));
        if code != 0 && code != 6 {
            panic!(
                "transfer failed ({code}): {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        (code, f)
    }

    pub fn transfer_ok(&self, from: usize, to: usize, amount: u64) -> BTreeMap<String, String> {
        let (code, f) = self.transfer(from, to, amount);
        assert_eq!(code, 0, "{f:?}");
        assert_eq!(f["receipt"], "ok");
        f
    }

    pub fn balance(&self, k: usize) -> u64 {
        let out = self.client(&["balance", &self.accounts[k]]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        fields(&text(&out.stdout))["balance"].parse().unwrap()
    }

    /// `status` as `(replica → Some((view, height, tip prefix)))`.
    pub fn status(&self) -> Vec<Option<(u64, u64, String)>> {
        let out = self.client(&["status"]);
        let t = text(&out.stdout);
        t.lines()
            .map(|line| {
                let w: Vec<&str> = line.split_whitespace().collect();
                if w.get(2) != Some(&"reachable") {
                    return None;
                }
                let after = |k: &str| w[w.iter().position(|x| *x == k).unwrap() + 1].to_string();
                Some((
                    after("view").parse().unwrap(),
                    after("height").parse().unwrap(),
                    after("tip"),
                ))
            })
            .collect()
    }

    /// Starts `pbft-client bench` in the background: `txs` transfers from
    /// `concurrency` senders funded by client `funder`; see [`Bench::wait`].
    pub fn bench(&self, funder: usize, txs: u64, concurrency: u64) -> Bench {
        let child = self
            .command(CLIENT)
            .args(["--network", self.root.to_str().unwrap()])
            .args(["--timeout-ms", CLIENT_TIMEOUT_MS])
            .args(["--key", &self.key(funder)])
            .args(["bench", "--json", "--deadline-s", "120"])
            .args(["--txs", &txs.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pbft-client bench");
        Bench(Some(child))
    }

    /// Heights of the reachable replicas, by replica.
    pub fn heights(&self) -> Vec<Option<u64>> {
        self.status()
            .iter()
            .map(|s| s.as_ref().map(|s| s.1))
            .collect()
    }

    /// `inspect --blocks` of a stopped replica.
    pub fn inspect(&self, i: usize) -> Inspected {
        let out = run_bounded(
            Command::new(REPLICA).args([
                "inspect",
                "--blocks",
                "--home",
                self.home(i).to_str().unwrap(),
            ]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "inspect {i}: {}", text(&out.stderr));
        let t = text(&out.stdout);
        let f = fields(&t);
        Inspected {
            height: f["height"].parse().unwrap(),
            view: f["view"]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap(),
            block_hash: f["block_hash"].clone(),
            total_supply: f["total_supply"].parse().unwrap(),
            blocks: t
                .lines()
                .filter_map(|l| l.strip_prefix("block "))
                .map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w[0].parse().unwrap(), w[1].to_string())
                })
                .collect(),
            block_txs: t
                .lines()
                .filter_map(|l| l.strip_prefix("block "))
                .map(|l| {
                    let txs = l.split_whitespace().find_map(|w| w.strip_prefix("txs="));
                    txs.expect("txs= on every block line").parse().unwrap()
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
pub struct Inspected {
    pub height: u64,
    pub view: u64,
    pub block_hash: String,
    pub total_supply: u128,
    pub blocks: Vec<(u64, String)>,
    /// Transactions per block, by height from 1.
    pub block_txs: Vec<u64>,
}

/// A `pbft-client bench` run in the background (killed if dropped).
pub struct Bench(Option<Child>);

impl Bench {
    /// Waits (bounded) for the benchmark to end; returns its JSON report
    /// after asserting it exited 0 with every transfer committed.
    pub fn wait(mut self) -> serde_json::Value {
        let child = self.0.take().unwrap();
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(150)) {
            Ok(out) => out.expect("bench output"),
            Err(_) => {
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("pbft-client bench did not end within 150 s");
            }
        };
        assert!(
            out.status.success(),
            "bench failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bench report: {e}: {}", text(&out.stdout)));
        assert_eq!(report["failures"], 0, "{report}");
        assert_eq!(report["committed"], report["txs"], "{report}");
        report
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every store holds the same chain: same block hash at every height.
pub fn assert_same_chain(stores: &[Inspected]) {
    let first = &stores[0];
    for (i, s) in stores.iter().enumerate() {
        assert_eq!(s.height, first.height, "replica {i} height: {stores:?}");
        assert_eq!(s.block_hash, first.block_hash, "replica {i} tip");
        assert_eq!(s.blocks, first.blocks, "replica {i} blocks");
        assert_eq!(s.blocks.len() as u64, s.height);
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
