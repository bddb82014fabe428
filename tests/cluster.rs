//! Real processes on 127.0.0.1: `pbft-replica` and `pbft-client` as users run
//! them (DESIGN.md §8 — what simulation cannot cover: QUIC, RocksDB recovery
//! after `kill -9`, the binaries, exit codes).
//!
//! Every test generates a fresh testnet (`common::cluster`). Crash recovery
//! and catch-up under load are in `recovery.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::cluster::*;
use common::{fields, run_bounded, text};

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
    // A transfer beyond the balance is refused before it is ordered
    // (issue 24, defect 3), with exit code 6 and the reason.
    let out = c.transfer_output(0, 1, BALANCE * 10);
    assert_eq!(
        out.status.code(),
        Some(6),
        "insufficient funds must exit 6: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("it would fail: insufficient funds"),
        "{}",
        text(&out.stderr)
    );
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
    forged_submissions_are_refused_next_to_a_good_one(&c);

    c.stop_all();
    let stores: Vec<Inspected> = (0..N).map(|i| c.inspect(i)).collect();
    assert_same_chain(&stores);
    assert!(stores[0].height >= 8);
    for s in &stores {
        assert_eq!(s.total_supply, (BALANCE * CLIENTS as u64) as u128);
    }
}

/// What the client-library checks share: a runtime, the genesis, client 0's
/// key and client 1's account.
fn library_setup(
    c: &Cluster,
) -> (
    tokio::runtime::Runtime,
    pbft_ledger::genesis::Genesis,
    pbft_ledger::crypto::KeyPair,
    pbft_ledger::crypto::PublicKey,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let genesis = pbft_ledger::genesis::Genesis::load(&c.root.join("genesis.json")).unwrap();
    let key = pbft_ledger::keyfile::read(Path::new(&c.key(0))).unwrap();
    let to = pbft_ledger::crypto::PublicKey::from_hex(&c.accounts[1]).unwrap();
    (rt, genesis, key, to)
}

/// Through the client library: a re-submitted transaction is answered from
/// the replicas' reply cache (same height and receipt, PBFT §4.1); another
/// transaction reusing that nonce is a conflict; an old nonce is stale.
fn resubmissions_use_the_reply_cache(c: &Cluster) {
    use pbft_ledger::client::proto::SubmitRejected;
    use pbft_ledger::client::{Client, ClientError};
    use pbft_ledger::tx::Transaction;
    let (rt, genesis, key, to) = library_setup(c);
    rt.block_on(async {
        let client = Client::new(genesis.clone(), key.clone(), Duration::from_secs(15)).unwrap();
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

/// Through the client library: transfers submitted together (the replicas
/// check the signatures of the submissions that arrive together in one
/// batch): a forged one — its signature altered, or signed by another key —
/// is refused as "bad signature" by every replica, and the well-signed one
/// next to it commits; then the committed one with its amount altered is
/// refused the same way.
fn forged_submissions_are_refused_next_to_a_good_one(c: &Cluster) {
    use pbft_ledger::client::proto::SubmitRejected;
    use pbft_ledger::client::{Client, ClientError};
    use pbft_ledger::crypto::KeyPair;
    use pbft_ledger::tx::{Receipt, Transaction};
    let (rt, genesis, key, to) = library_setup(c);
    rt.block_on(async {
        let client = Client::new(genesis.clone(), key.clone(), Duration::from_secs(15)).unwrap();
        let nonce = client.next_nonce().await.unwrap();
        let good_tx = Transaction::transfer(genesis.network, &key, to, 1, nonce);
        let good = good_tx.clone();
        let mut flipped = Transaction::transfer(genesis.network, &key, to, 50, nonce + 1);
        flipped.signature[40] ^= 0x10;
        let mut other_signer = Transaction::transfer(
            genesis.network,
            &KeyPair::from_label("thief"),
            to,
            50,
            nonce + 2,
        );
        other_signer.from = key.public();
        let (good, flipped, other_signer) = tokio::join!(
            client.submit(&good),
            client.submit(&flipped),
            client.submit(&other_signer)
        );
        assert_eq!(
            good.expect("the good transfer commits").receipt,
            Receipt::Ok
        );
        // The good transfer with its amount altered and its signature kept:
        // every backup checked that signature in the PRE-PREPARE and
        // remembers the transfer, so this asks the remembered check to
        // match the whole transaction, not its sender, nonce and signature.
        let mut altered = good_tx.clone();
        altered.amount = 49;
        let altered = client.submit(&altered).await;
        for err in [
            flipped.unwrap_err(),
            other_signer.unwrap_err(),
            altered.unwrap_err(),
        ] {
            match err {
                ClientError::Rejected {
                    reason: SubmitRejected::BadSignature,
                    count,
                } => assert!(count >= 2, "refused by f+1 replicas: {count}"),
                other => panic!("expected a bad-signature refusal, got {other}"),
            }
        }
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

/// Issue 20: genesis names replicas by DNS name (`localhost`, which
/// /etc/hosts resolves). Expect: the mesh forms and transfers commit; a
/// restarted replica is dialled again by name. Then one replica's name
/// does not resolve at all: the others log it, keep retrying, never exit,
/// and the three of them (a quorum) still commit.
#[test]
fn replicas_named_by_dns_and_a_name_that_never_resolves() {
    let mut c = Cluster::generate();
    c.name_hosts(&["localhost"; N]);
    c.start_all();
    c.transfer_ok(0, 1, 5);
    c.stop(3);
    c.start(3);
    c.wait_connected();
    c.transfer_ok(1, 0, 2);
    c.stop_all();
    let stores: Vec<Inspected> = (0..N).map(|i| c.inspect(i)).collect();
    assert_same_chain(&stores);

    let mut c = Cluster::generate();
    c.name_hosts(&["localhost", "localhost", "localhost", "replica-3.invalid"]);
    for i in 0..3 {
        c.start(i);
    }
    c.transfer_ok(0, 1, 5);
    c.transfer_ok(1, 0, 1);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        let log = std::fs::read_to_string(c.log(i)).unwrap();
        assert!(
            log.contains("cannot resolve 'replica-3.invalid'"),
            "replica {i} did not log the failed lookup:\n{}",
            c.log_tail(i)
        );
        assert!(
            c.children[i]
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
                .is_none(),
            "replica {i} exited"
        );
    }
    c.stop_all();
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
/// `start` and by `inspect`), and so is another replica's store; a store
/// in use is refused as locked (4); a config with an unknown key exits 3
/// naming the key; a key that is not in genesis exits 3; a genesis with two
/// replicas on one address exits 3 naming both.
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

    // Issue 24, defect 8: replica 1 on replica 0's data directory (a
    // swapped volume) is refused, naming both, before it votes.
    copy_dir(&a.home(0).join("data"), &a.home(1).join("data"));
    let out = start(&a.home(1));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("store belongs to replica 0") && err.contains("this is replica 1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");

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

    // Issue 24, defect 10: two replicas on one address in genesis are
    // refused, naming both (before, the replica started).
    let genesis = b.home(3).join("genesis.json");
    let mut g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&genesis).unwrap()).unwrap();
    g["replicas"][3]["p2p_addr"] = g["replicas"][2]["p2p_addr"].clone();
    std::fs::write(&genesis, serde_json::to_string_pretty(&g).unwrap()).unwrap();
    let out = start(&b.home(3));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("replicas[3].p2p_addr")
            && text(&out.stderr).contains("is also replicas[2].p2p_addr"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !b.home(3).join("data").exists(),
        "a refused start created a store"
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
