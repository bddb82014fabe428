//! One Byzantine replica floods the others on a real four-replica network
//! (issue 17; cargo feature `byzantine`).
//!
//! A fresh testnet; an honest `pbft-client bench` measures the committed
//! transfers per second with four honest replicas (the better of two runs).
//! Then replica 3 is stopped cleanly and started again with
//! `--byzantine sig-flood`: it still takes part honestly, and besides sends
//! each other replica 20,000 frames a second that each cost a signature
//! check and bring nothing (its votes with broken signatures, validly
//! signed votes of past views). The same benchmark runs beside the flood.
//! It must commit every transfer at no less than half the unflooded rate,
//! every honest replica's peak resident memory must stay under a bound, and
//! each must show that it received the flood and stopped checking it
//! (refusals "over its allowance of wasted signature checks"). The figures
//! are printed (run with `--nocapture`).
//!
//! `cargo test --release --features byzantine --test byzantine_flood -- --nocapture`

#![cfg(feature = "byzantine")]

mod common;
use common::cluster::{peak_rss_kb, tx_per_s, Cluster, N};
use common::text;
use pbft_ledger::consensus::WASTED_CHECKS_BURST;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Long enough (a few seconds) for the flood to reach its steady state.
const TXS: u64 = 8_000;
const CONCURRENCY: u64 = 32;
const FLOODER: usize = 3;
/// Peak resident memory an honest replica may reach over the whole test.
const PEAK_RSS_MAX_KB: u64 = 400 * 1024;

/// Refused input by reason, per replica, from `status --stats`.
fn refusals(c: &Cluster) -> Vec<BTreeMap<String, u64>> {
    let out = c.client(&["status", "--stats"]);
    let mut all = vec![BTreeMap::new(); N];
    for line in text(&out.stdout).lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.get(2) != Some(&"ignored") {
            continue;
        }
        let (Some(i), Some(count)) = (
            w.get(1).and_then(|i| i.parse::<usize>().ok()),
            w.get(3).and_then(|n| n.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if i < N {
            all[i].insert(w[4..].join(" "), count);
        }
    }
    all
}

fn matching(reasons: &BTreeMap<String, u64>, needle: &str) -> u64 {
    reasons
        .iter()
        .filter(|(r, _)| r.contains(needle))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn a_flooding_replica_leaves_honest_throughput_and_memory_bounded() {
    let mut c = Cluster::generate();
    c.start_all();
    let unflooded = (0..2)
        .map(|_| tx_per_s(&c.bench(0, TXS, CONCURRENCY).wait()))
        .fold(0.0, f64::max);
    println!("four honest replicas: {unflooded:.0} tx/s");

    c.stop(FLOODER);
    let flood_start = Instant::now();
    c.start_with(FLOODER, &["--byzantine", "sig-flood"]);
    c.wait_connected();
    // Let the flood build up: the honest replicas' allowances run out.
    std::thread::sleep(Duration::from_secs(3));
    let before = refusals(&c);
    let flooded = tx_per_s(&c.bench(0, TXS, CONCURRENCY).wait());
    let after = refusals(&c);
    let flood_ms = flood_start.elapsed().as_millis() as u64;
    let honest: Vec<usize> = (0..N).filter(|i| *i != FLOODER).collect();
    let peaks: Vec<u64> = honest
        .iter()
        .map(|i| peak_rss_kb(c.children[*i].as_ref().expect("running").id()))
        .collect();
    let checked_bad: Vec<u64> = honest
        .iter()
        .map(|i| matching(&after[*i], "bad signature"))
        .collect();
    let unchecked: Vec<u64> = honest
        .iter()
        .map(|i| {
            matching(&after[*i], "wasted signature checks")
                - matching(&before[*i], "wasted signature checks")
        })
        .collect();
    println!(
        "flooded: {flooded:.0} tx/s ({:.0} % of unflooded); honest replicas' peak RSS {:?} MiB; \
         flood frames checked and refused {checked_bad:?}, dropped unchecked during the bench {unchecked:?}",
        100.0 * flooded / unflooded,
        peaks.iter().map(|kb| kb / 1024).collect::<Vec<_>>(),
    );
    assert!(
        flooded >= 0.5 * unflooded,
        "{flooded:.0} tx/s under the flood, below half of {unflooded:.0}"
    );
    for (k, i) in honest.iter().enumerate() {
        assert!(
            peaks[k] > 0 && peaks[k] <= PEAK_RSS_MAX_KB,
            "replica {i} peak RSS {} KiB",
            peaks[k]
        );
        // The flood reached it, went unchecked once the allowance was
        // spent, and what was checked stayed within the allowance: the
        // burst (and as much debt) plus one a millisecond since the flood
        // began, with a tenth to spare.
        assert!(
            unchecked[k] > 0,
            "replica {i}: no flood frames dropped unchecked ({:?})",
            after[*i]
        );
        let allowance = 2 * WASTED_CHECKS_BURST + flood_ms * 11 / 10;
        assert!(
            checked_bad[k] <= allowance,
            "replica {i}: {} flood frames checked in {flood_ms} ms, more than {allowance}",
            checked_bad[k]
        );
    }
    // Every replica is still up.
    let heights = c.heights();
    assert!(heights.iter().all(Option::is_some), "{heights:?}");
}
