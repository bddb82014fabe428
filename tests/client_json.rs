//! `pbft-client --output json` and `pbft-client watch` against four real
//! replica processes on 127.0.0.1 (a fresh testnet, `common::cluster`):
//! the binary's stdout parsed with serde_json, exit codes as in text mode,
//! and `watch --count` ending by itself with every replica's row, also when
//! one replica is down. Every client run is bounded (`CLIENT_LIMIT`).

use std::process::Output;
use std::time::{Duration, Instant};

mod common;
use common::cluster::*;
use common::text;
use serde_json::Value;

/// The single JSON document on stdout.
fn document(out: &Output) -> Value {
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON document expected; stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn is_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 64
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// `balance --output json`, retried (bounded) while a replica is still
/// executing the last transfer (no 2f+1 agreement yet: exit 1).
fn balance_json(c: &Cluster, k: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = c.client(&["--output", "json", "balance", &c.accounts[k]]);
        let v = document(&out);
        if out.status.success() {
            return v;
        }
        assert_eq!(out.status.code(), Some(1), "{v}");
        assert_eq!(v["error"]["code"], "failure", "{v}");
        assert!(
            Instant::now() < deadline,
            "no 2f+1 agreement on balance: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `watch --count 2` lines (JSON or text) within a bound.
fn watch(c: &Cluster, json: bool) -> (Vec<String>, Duration) {
    let start = Instant::now();
    let mut args = vec!["watch", "--count", "2", "--interval-ms", "300"];
    if json {
        args.splice(0..0, ["--output", "json"]);
    }
    let out = c.client(&args);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "two refreshes, one line each: {lines:?}");
    (lines, took)
}

/// Setup: four replicas. Expect: `transfer`, `tx`, `balance`, `block` and
/// `status` print one JSON document with the documented fields; failures
/// print `{"error": ...}` with the text mode's exit codes; `watch --count 2
/// --output json` prints two lines with every replica's height and, from
/// the second refresh on, its commit rate.
#[test]
fn json_output_and_watch_against_a_real_network() {
    let mut c = Cluster::generate();
    c.start_all();

    // transfer
    let out = c.client(&[
        "--output",
        "json",
        "--key",
        &c.key(0),
        "transfer",
        "--to",
        &c.accounts[1],
        "--amount",
        "25",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let t = document(&out);
    assert!(is_hex64(&t["tx_id"]), "{t}");
    assert_eq!(t["from"], c.accounts[0].as_str());
    assert_eq!(t["to"], c.accounts[1].as_str());
    assert_eq!(t["amount"], 25);
    assert_eq!(t["nonce"], 1);
    assert_eq!(t["receipt"], "ok");
    assert_eq!(t["needed"], 2);
    let height = t["height"].as_u64().expect("height is a number");
    assert!(height >= 1, "{t}");
    let replicas = t["replicas"].as_array().expect("replicas");
    assert!(replicas.len() >= 2, "{t}");
    assert!(t["latency_ms"].as_f64().is_some_and(|l| l > 0.0), "{t}");
    assert!(t.get("error").is_none());

    // tx
    let out = c.client(&["--output", "json", "tx", t["tx_id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let x = document(&out);
    assert_eq!((&x["tx_id"], &x["height"]), (&t["tx_id"], &t["height"]));
    assert_eq!((&x["amount"], &x["receipt"]), (&t["amount"], &t["receipt"]));

    // balance
    let b = balance_json(&c, 1);
    assert_eq!(b["account"], c.accounts[1].as_str());
    assert_eq!(b["balance"], BALANCE + 25);
    assert_eq!(b["nonce"], 0);
    assert_eq!(b["exists"], true);
    assert!(b["agreed"].as_u64().is_some_and(|a| a >= 3), "{b}");
    assert_eq!(b["replicas"], 4);

    // block
    let out = c.client(&["--output", "json", "block", &height.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let blk = document(&out);
    assert_eq!(blk["height"], height);
    assert!(
        is_hex64(&blk["block_hash"]) && is_hex64(&blk["parent_hash"]),
        "{blk}"
    );
    assert!(blk["tx_count"].as_u64().is_some_and(|n| n >= 1), "{blk}");

    // status
    let out = c.client(&["--output", "json", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = document(&out);
    assert_eq!(s["reachable"], 4, "{s}");
    let rows = s["replicas"].as_array().expect("replicas");
    assert_eq!(rows.len(), 4);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["replica"], i);
        assert_eq!(r["reachable"], true);
        assert!(r["height"].as_u64().is_some_and(|h| h >= height), "{r}");
        assert!(is_hex64(&r["block_hash"]), "{r}");
        assert_eq!(r["connected_peers"], 3);
    }

    // Errors: the text mode's exit codes, an error object on stdout.
    let out = c.client(&[
        "--output",
        "json",
        "--key",
        &c.key(0),
        "transfer",
        "--to",
        &c.accounts[1],
        "--amount",
        &(BALANCE * 10).to_string(),
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let e = document(&out);
    assert_eq!(e["error"]["code"], "rejected", "{e}");
    assert_eq!(e["error"]["exit_code"], 6);
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("insufficient funds")),
        "{e}"
    );
    let out = c.client(&["--output", "json", "block", "1000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(document(&out)["error"]["code"], "failure");
    let out = c.client(&["--output", "json", "balance", "not-an-account"]);
    assert_eq!(out.status.code(), Some(2));
    let e = document(&out);
    assert_eq!(e["error"]["code"], "usage", "{e}");
    assert_eq!(e["error"]["exit_code"], 2);

    // watch, JSON: two lines, every replica's height, rates from the second.
    let (lines, _) = watch(&c, true);
    for (k, line) in lines.iter().enumerate() {
        let f: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(f["refresh"], k as u64 + 1, "{f}");
        assert_eq!(f["interval_ms"], 300);
        let rows = f["replicas"].as_array().expect("replicas");
        assert_eq!(rows.len(), 4, "{f}");
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r["replica"], i, "{f}");
            assert_eq!(r["reachable"], true, "{f}");
            assert!(r["height"].as_u64().is_some_and(|h| h >= height), "{f}");
            assert!(r["view"].is_u64() && r["primary"].is_u64(), "{f}");
            assert!(r["stable_checkpoint"].is_u64() && r["pending_requests"].is_u64());
            assert_eq!(r["connected_peers"], 3, "{f}");
            if k == 0 {
                assert!(
                    r["blocks_per_s"].is_null() && r["tx_per_s"].is_null(),
                    "{f}"
                );
            } else {
                // No transfers in between: the network committed nothing.
                assert_eq!(r["blocks_per_s"], 0.0, "{f}");
                assert_eq!(r["tx_per_s"], 0.0, "{f}");
            }
        }
    }

    // watch, text to a pipe: one line per refresh.
    let (lines, _) = watch(&c, false);
    for line in &lines {
        for i in 0..4 {
            assert!(line.contains(&format!("replica {i} height ")), "{line}");
        }
    }

    // A replica down shows as unreachable and holds up no other.
    c.kill(3);
    let (lines, took) = watch(&c, true);
    for line in &lines {
        let f: Value = serde_json::from_str(line).unwrap();
        let rows = f["replicas"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        for r in &rows[..3] {
            assert_eq!(r["reachable"], true, "{f}");
            assert!(r["height"].is_u64(), "{f}");
        }
        assert_eq!(rows[3]["reachable"], false, "{f}");
        assert!(rows[3]["error"].is_string(), "{f}");
        assert!(rows[3].get("height").is_none(), "{f}");
    }
    assert!(
        took < Duration::from_secs(8),
        "two refreshes of 300 ms with a replica down took {took:?}"
    );
}
