//! `pbft-client bench` against four real replica processes on 127.0.0.1
//! (in the style of tests/cluster.rs: a fresh testnet in a temporary
//! directory, every replica a child process killed by PID when the test
//! ends, every wait bounded).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{run_bounded, text};

const REPLICA: &str = env!("CARGO_BIN_EXE_pbft-replica");
const CLIENT: &str = env!("CARGO_BIN_EXE_pbft-client");
const N: usize = 4;
const READY_LIMIT: Duration = Duration::from_secs(20);
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// Four replicas of a fresh testnet, killed when dropped.
struct Net {
    _dir: tempfile::TempDir,
    root: PathBuf,
    children: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Net {
    fn start() -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("net");
        let base = common::cluster::free_base_port(N).to_string();
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
                "1",
                "--balance",
                "1000000",
            ]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "testnet: {}", text(&out.stderr));
        let mut net = Net {
            _dir: dir,
            root,
            children: Vec::new(),
        };
        for i in 0..N {
            let log = std::fs::File::create(net.log(i)).unwrap();
            let child = Command::new(REPLICA)
                .args(["start", "--home"])
                .arg(net.root.join(format!("replica-{i}")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn replica");
            net.children.push(child);
        }
        let deadline = Instant::now() + READY_LIMIT;
        for i in 0..N {
            while !std::fs::read_to_string(net.log(i))
                .unwrap_or_default()
                .contains("event=\"ready\"")
            {
                assert!(
                    net.children[i].try_wait().unwrap().is_none(),
                    "replica {i} exited"
                );
                assert!(Instant::now() < deadline, "replica {i} not ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let full = format!("peers {}", N - 1);
        loop {
            let out = net.client(&["status"]);
            if text(&out.stdout)
                .lines()
                .filter(|l| l.contains(&full))
                .count()
                == N
            {
                break;
            }
            assert!(Instant::now() < deadline, "mesh never fully connected");
            std::thread::sleep(Duration::from_millis(100));
        }
        net
    }

    fn log(&self, i: usize) -> PathBuf {
        self.root.join(format!("replica-{i}.log"))
    }

    fn key(&self) -> PathBuf {
        self.root.join("clients/client-0.key")
    }

    fn client(&self, args: &[&str]) -> Output {
        client_at(&self.root, args)
    }
}

fn client_at(network: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(CLIENT)
            .arg("--network")
            .arg(network)
            .args(["--timeout-ms", "10000"])
            .args(args),
        CLIENT_LIMIT,
    )
}

fn bench_json(net: &Net, extra: &[&str]) -> serde_json::Value {
    let key = net.key();
    let mut args = vec!["--key", key.to_str().unwrap(), "bench"];
    args.extend_from_slice(extra);
    args.push("--json");
    let out = net.client(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "bench failed:\nstdout {}\nstderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).expect("bench --json prints JSON")
}

#[test]
fn bench_commits_every_transfer_and_reports_latency() {
    let net = Net::start();
    let r = bench_json(&net, &["--txs", "200", "--concurrency", "8"]);
    assert_eq!(r["txs"], 200, "{r}");
    assert_eq!(r["committed"], 200, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["concurrency"], 8, "{r}");
    assert_eq!(r["funded"], 8, "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    let lat = &r["latency_ms"];
    let p50 = lat["p50"].as_f64().unwrap();
    assert!(p50 > 0.0, "{r}");
    assert!(lat["p99"].as_f64().unwrap() >= p50, "{r}");
    assert!(lat["p999"].as_f64().unwrap() >= lat["p99"].as_f64().unwrap());
    assert!(r["tx_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["last_height"].as_u64().unwrap() >= r["first_height"].as_u64().unwrap());

    // A re-run (open loop) reuses the same sender accounts: they still hold
    // enough (funds circulate among them), so nothing is funded again and
    // their nonces continue where the first run left them.
    let r = bench_json(
        &net,
        &["--txs", "40", "--concurrency", "8", "--rate", "200"],
    );
    assert_eq!(r["committed"], 40, "{r}");
    assert_eq!(r["funded"], 0, "{r}");
    assert_eq!(r["rate"], 200.0, "{r}");

    // The funding account's balance paid for the first run's senders only.
    let funder = std::fs::read_to_string(net.root.join("clients/client-0.pub")).unwrap();
    let out = net.client(&["balance", funder.trim()]);
    assert!(
        text(&out.stdout).contains(&format!("balance  {}", 1_000_000 - 200)),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bench_usage_errors_exit_2_and_an_unreachable_network_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("net");
    let out = run_bounded(
        Command::new(REPLICA).args([
            "testnet",
            "--replicas",
            "4",
            "--out",
            root.to_str().unwrap(),
            "--base-port",
            &common::cluster::free_base_port(N).to_string(),
            "--clients",
            "1",
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    let key = root.join("clients/client-0.key");
    let key = key.to_str().unwrap();
    // No --key: the senders would have no funding account.
    let out = client_at(&root, &["bench", "--txs", "10"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--key"));
    for bad in [
        &["--key", key, "bench", "--txs", "0"][..],
        &["--key", key, "bench", "--concurrency", "0"],
        &["--key", key, "bench", "--rate", "-5"],
        &["--key", key, "bench", "--rate", "fast"],
    ] {
        let out = client_at(&root, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
    // Nothing runs: setup cannot reach f+1 replicas within --timeout-ms.
    let out = run_bounded(
        Command::new(CLIENT)
            .arg("--network")
            .arg(&root)
            .args(["--timeout-ms", "1000", "--key", key])
            .args(["bench", "--txs", "10", "--deadline-s", "5"]),
        CLIENT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
}
