//! Real processes on 127.0.0.1: `pbft-replica` and `pbft-client` as users run
//! them (DESIGN.md §8 — what simulation cannot cover: QUIC, RocksDB recovery
//! after `kill -9`, the binaries, exit codes).
//!
//! Every test generates a fresh testnet in a temporary directory with its own
//! ports and short consensus timeouts (`request_timeout_ms` 500, checkpoints
//! every 4 blocks). Every replica is a child process owned by a [`Cluster`]
//! guard that kills it by PID when the test ends, passes or panics; every
//! wait is bounded.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{fields, run_bounded, text};

const REPLICA: &str = env!("CARGO_BIN_EXE_pbft-replica");
const CLIENT: &str = env!("CARGO_BIN_EXE_pbft-client");
const N: usize = 4;
const BALANCE: u64 = 1_000;
const CLIENTS: usize = 2;
/// Bound on a replica becoming ready / stopping.
const READY_LIMIT: Duration = Duration::from_secs(20);
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Bound on one client process (its own --timeout-ms is lower).
const CLIENT_LIMIT: Duration = Duration::from_secs(30);
const CLIENT_TIMEOUT_MS: &str = "15000";

/// A base port whose 4 replicas' p2p and client ports are all free, distinct
/// per call within this process and spread across processes by pid.
fn free_base_port() -> u16 {
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
struct Cluster {
    _dir: tempfile::TempDir,
    root: PathBuf,
    children: Vec<Option<Child>>,
    accounts: Vec<String>,
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
    fn generate() -> Cluster {
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
        }
    }

    fn home(&self, i: usize) -> PathBuf {
        self.root.join(format!("replica-{i}"))
    }

    fn log(&self, i: usize) -> PathBuf {
        self.root.join(format!("logs/replica-{i}.log"))
    }

    fn key(&self, k: usize) -> String {
        self.root
            .join(format!("clients/client-{k}.key"))
            .display()
            .to_string()
    }

    fn log_tail(&self, i: usize) -> String {
        let t = std::fs::read_to_string(self.log(i)).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Starts replica `i` and waits (bounded) for this run's ready line.
    fn start(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "replica {i} already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let offset = log.metadata().unwrap().len() as usize;
        let child = Command::new(REPLICA)
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
    fn start_all(&mut self) {
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
    fn signal(&mut self, i: usize, signal: libc::c_int) -> ExitStatus {
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
    fn stop(&mut self, i: usize) {
        let status = self.signal(i, libc::SIGTERM);
        assert_eq!(
            status.code(),
            Some(0),
            "replica {i} exit:\n{}",
            self.log_tail(i)
        );
    }

    fn stop_all(&mut self) {
        for i in 0..N {
            if self.children[i].is_some() {
                self.stop(i);
            }
        }
    }

    /// `kill -9`.
    fn kill(&mut self, i: usize) {
        let status = self.signal(i, libc::SIGKILL);
        assert_eq!(status.code(), None, "replica {i} should die by signal");
    }

    fn client(&self, args: &[&str]) -> Output {
        run_bounded(
            Command::new(CLIENT)
                .args(["--network", self.root.to_str().unwrap()])
                .args(["--timeout-ms", CLIENT_TIMEOUT_MS])
                .args(args),
            CLIENT_LIMIT,
        )
    }

    /// A transfer from client `from` to client `to`'s account; returns the
    /// exit code and the printed fields.
    fn transfer(&self, from: usize, to: usize, amount: u64) -> (i32, BTreeMap<String, String>) {
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

    fn transfer_ok(&self, from: usize, to: usize, amount: u64) -> BTreeMap<String, String> {
        let (code, f) = self.transfer(from, to, amount);
        assert_eq!(code, 0, "{f:?}");
        assert_eq!(f["receipt"], "ok");
        f
    }

    fn balance(&self, k: usize) -> u64 {
        let out = self.client(&["balance", &self.accounts[k]]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        fields(&text(&out.stdout))["balance"].parse().unwrap()
    }

    /// `status` as `(replica → Some((view, height, tip prefix)))`.
    fn status(&self) -> Vec<Option<(u64, u64, String)>> {
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

    /// `inspect --blocks` of a stopped replica.
    fn inspect(&self, i: usize) -> Inspected {
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
        }
    }
}

#[derive(Debug)]
struct Inspected {
    height: u64,
    view: u64,
    block_hash: String,
    total_supply: u128,
    blocks: Vec<(u64, String)>,
}

/// Every store holds the same chain: same block hash at every height.
fn assert_same_chain(stores: &[Inspected]) {
    let first = &stores[0];
    for (i, s) in stores.iter().enumerate() {
        assert_eq!(s.height, first.height, "replica {i} height: {stores:?}");
        assert_eq!(s.block_hash, first.block_hash, "replica {i} tip");
        assert_eq!(s.blocks, first.blocks, "replica {i} blocks");
        assert_eq!(s.blocks.len() as u64, s.height);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Setup: four replicas. Expect: transfers commit with f+1 matching replies
/// (one failing for lack of funds, exit code 6); after a clean stop all four
/// stores hold the same block hash at every height and the bank's total
/// supply equals genesis (TESTING.md S9).
#[test]
fn four_replicas_agree_and_conserve_supply() {
    let mut c = Cluster::generate();
    c.start_all();
    let mut latencies = Vec::new();
    for round in 0..6 {
        let (from, to) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let f = c.transfer_ok(from, to, 10 + round);
        latencies.push(f["latency"].trim_end_matches(" ms").parse::<f64>().unwrap());
    }
    eprintln!(
        "single-transfer commit latency: median {:.1} ms of {latencies:?}",
        median(latencies.clone())
    );
    let (code, f) = c.transfer(0, 1, BALANCE * 10);
    assert_eq!(code, 6, "insufficient funds must exit 6");
    assert_eq!(f["receipt"], "insufficient funds");
    // 10+12+14 out of client 0, 11+13+15 into it.
    assert_eq!(c.balance(0), BALANCE - 36 + 39);
    assert_eq!(c.balance(1), BALANCE + 36 - 39);
    let tx = c.transfer_ok(0, 1, 1);
    let out = c.client(&["tx", &tx["tx"]]);
    assert!(out.status.success());
    assert_eq!(fields(&text(&out.stdout))["height"], tx["height"]);
    let out = c.client(&["block", &tx["height"]]);
    let b = fields(&text(&out.stdout));
    assert!(b["commit_signers"].parse::<u32>().unwrap() >= 3, "{b:?}");
    resubmissions_use_the_reply_cache(&c);

    c.stop_all();
    let stores: Vec<Inspected> = (0..N).map(|i| c.inspect(i)).collect();
    assert_same_chain(&stores);
    assert!(stores[0].height >= 8);
    for s in &stores {
        assert_eq!(s.total_supply, (BALANCE * CLIENTS as u64) as u128);
    }
}

/// Through the client library: a re-submitted transaction is answered from
/// the replicas' reply cache (same height and receipt, PBFT §4.1); another
/// transaction reusing that nonce is a conflict; an old nonce is stale.
fn resubmissions_use_the_reply_cache(c: &Cluster) {
    use pbft_ledger::client::proto::SubmitRejected;
    use pbft_ledger::client::{Client, ClientError};
    use pbft_ledger::crypto::PublicKey;
    use pbft_ledger::tx::Transaction;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let genesis = pbft_ledger::genesis::Genesis::load(&c.root.join("genesis.json")).unwrap();
        let key = pbft_ledger::node::keyfile::read(Path::new(&c.key(0))).unwrap();
        let client = Client::new(genesis.clone(), key.clone(), Duration::from_secs(15)).unwrap();
        let to = PublicKey::from_hex(&c.accounts[1]).unwrap();
        let nonce = client.next_nonce().await.unwrap();
        let tx = Transaction::transfer(genesis.network, &key, to, 2, nonce);
        let first = client.submit(&tx).await.unwrap();
        let again = client.submit(&tx).await.unwrap();
        assert_eq!((first.height, first.receipt), (again.height, again.receipt));
        let other = Transaction::transfer(genesis.network, &key, to, 3, nonce);
        let err = client.submit(&other).await.unwrap_err();
        assert!(matches!(err, ClientError::NonceConflict { .. }), "{err}");
        let old = Transaction::transfer(genesis.network, &key, to, 3, 1);
        let err = client.submit(&old).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Rejected {
                    reason: SubmitRejected::StaleNonce { .. },
                    ..
                }
            ),
            "{err}"
        );
        client.close().await;
    });
}

/// Setup: four replicas, one transfer committed in view 0, then `kill -9` of
/// replica 0 (the primary of view 0). Expect: the survivors commit the next
/// transfer after a view change (PBFT §4.4); replica 0 restarts from its
/// RocksDB store, rejoins and reaches the same height and block hash.
#[test]
fn primary_crash_view_change_and_rejoin() {
    let mut c = Cluster::generate();
    c.start_all();
    c.transfer_ok(0, 1, 5);
    c.kill(0);
    let killed = Instant::now();
    let f = c.transfer_ok(0, 1, 5);
    eprintln!(
        "kill -9 of the primary to the next committed transfer: {} ms (client-measured submit latency {})",
        killed.elapsed().as_millis(),
        f["latency"]
    );
    let status = c.status();
    assert!(status[0].is_none(), "replica 0 is dead: {status:?}");
    for s in &status[1..] {
        assert!(
            s.as_ref().unwrap().0 >= 1,
            "survivors moved to a later view: {status:?}"
        );
    }
    for _ in 0..3 {
        c.transfer_ok(1, 0, 3);
    }

    c.start(0);
    // Keep the network busy until replica 0 shows the others' height and tip
    // (it catches up from peers' stable checkpoints and joins the view).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        c.transfer_ok(0, 1, 1);
        let s = c.status();
        if let (Some(zero), Some(one)) = (&s[0], &s[1]) {
            if zero.1 == one.1
                && zero.2 == one.2
                && s.iter().all(|x| x.as_ref().map(|x| x.1) == Some(one.1))
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica 0 did not catch up: {s:?}\n{}",
            c.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.stop_all();
    let stores: Vec<Inspected> = (0..N).map(|i| c.inspect(i)).collect();
    assert_same_chain(&stores);
    assert!(stores[1].view >= 1);
    for s in &stores {
        assert_eq!(s.total_supply, (BALANCE * CLIENTS as u64) as u128);
    }
}

/// Setup: four replicas. Expect: SIGTERM stops a replica with exit code 0;
/// its store reopens (`inspect`, then a restart that serves again); SIGINT
/// is clean too.
#[test]
fn sigterm_is_clean_and_store_reopens() {
    let mut c = Cluster::generate();
    c.start_all();
    c.transfer_ok(0, 1, 7);
    c.stop(3);
    let before = c.inspect(3);
    assert!(before.height >= 1);
    c.start(3);
    c.transfer_ok(1, 0, 2);
    let s = c.status();
    assert!(s.iter().all(Option::is_some), "{s:?}");
    let status = c.signal(2, libc::SIGINT);
    assert_eq!(status.code(), Some(0), "SIGINT exit:\n{}", c.log_tail(2));
    c.stop_all();
    let after = c.inspect(3);
    assert!(after.height >= before.height);
    assert_eq!(
        c.inspect(2).total_supply,
        (BALANCE * CLIENTS as u64) as u128
    );
}

/// Expect: a store from another network is refused with exit code 4 (by
/// `start` and by `inspect`); a store in use is refused as locked (4); a
/// config with an unknown key exits 3 naming the key; a key that is not in
/// genesis exits 3.
#[test]
fn refuses_foreign_store_bad_config_and_unknown_key() {
    let mut a = Cluster::generate();
    let b = Cluster::generate();
    a.start(0);
    // While it runs, its store is locked.
    let out = run_bounded(
        Command::new(REPLICA).args(["inspect", "--home", a.home(0).to_str().unwrap()]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("locked"),
        "{}",
        text(&out.stderr)
    );
    a.stop(0);

    copy_dir(&a.home(0).join("data"), &b.home(0).join("data"));
    let start = |home: &Path| {
        run_bounded(
            Command::new(REPLICA).args(["start", "--home", home.to_str().unwrap()]),
            Duration::from_secs(20),
        )
    };
    let out = start(&b.home(0));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("belongs to network"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    let out = run_bounded(
        Command::new(REPLICA).args(["inspect", "--home", b.home(0).to_str().unwrap()]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(4));

    let config = b.home(1).join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("bogus_key = 1\n{original}")).unwrap();
    let out = start(&b.home(1));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("bogus_key"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        &config,
        original.replace("[p2p]\n", "[p2p]\nlisten_adr = \"x\"\n"),
    )
    .unwrap();
    let out = start(&b.home(1));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("p2p.listen_adr"),
        "{}",
        text(&out.stderr)
    );

    let key = b.home(2).join("node.key");
    std::fs::remove_file(&key).unwrap();
    let out = run_bounded(
        Command::new(REPLICA).args(["keygen", "--out", key.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let out = start(&b.home(2));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("not a replica in genesis"),
        "{}",
        text(&out.stderr)
    );
}

/// Expect: with no replica running, the client fails within its timeout
/// with a one-line error and exit code 5; malformed input is a usage error
/// (exit 2); none of it panics.
#[test]
fn client_errors_are_bounded_and_clear() {
    let c = Cluster::generate();
    let started = Instant::now();
    let out = run_bounded(
        Command::new(CLIENT)
            .args([
                "--network",
                c.root.to_str().unwrap(),
                "--timeout-ms",
                "1500",
            ])
            .args([
                "--key",
                &c.key(0),
                "transfer",
                "--to",
                &c.accounts[1],
                "--amount",
                "5",
            ]),
        CLIENT_LIMIT,
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no replica reachable"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = run_bounded(
        Command::new(CLIENT).args([
            "--network",
            c.root.to_str().unwrap(),
            "--timeout-ms",
            "1000",
            "status",
        ]),
        CLIENT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(text(&out.stdout).matches("unreachable").count(), N);
    for args in [
        vec![
            "--key",
            &c.key(0),
            "transfer",
            "--to",
            "nothex",
            "--amount",
            "5",
        ],
        vec![
            "--key",
            &c.key(0),
            "transfer",
            "--to",
            &c.accounts[1],
            "--amount",
            "-3",
        ],
        vec![
            "--key",
            &c.key(0),
            "transfer",
            "--to",
            &c.accounts[1],
            "--amount",
            "0",
        ],
        vec!["balance", "abc"],
        vec!["tx", "1234"],
    ] {
        let out = c.client(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"));
    }
    let out = run_bounded(
        Command::new(CLIENT).args(["--genesis", "/nonexistent/genesis.json", "status"]),
        CLIENT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(3));
    // Output into a closed pipe (`status | head -0`) ends the client
    // quietly, by SIGPIPE, instead of a `println!` panic.
    let mut child = Command::new(CLIENT)
        .args([
            "--network",
            c.root.to_str().unwrap(),
            "--timeout-ms",
            "300",
            "status",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGPIPE),
        "{:?} {err}",
        out.status
    );
}

fn copy_dir(from: &Path, to: &Path) {
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
