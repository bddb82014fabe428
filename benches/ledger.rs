//! Benchmark of executing one block against banks of growing size (issue 24,
//! defect 6): `ledger/execute_T_txs_at_N_accounts` runs `ledger::execute`
//! (state root before, transfers, state root after) for a block of `T`
//! transfers, each to a fresh account, with `N` accounts already there.
//! Before the incremental commitment the state root hashed every account
//! twice per block: 1.3 ms at 10k accounts, 200 ms at 1M. Now the cost
//! follows the accounts a block touches.
//!
//! Before criterion runs, the bench times 300 one-transfer blocks at 10k
//! and at 1M accounts and fails if the larger bank is more than
//! `FLAT_RATIO_MAX` times slower per block (also under `cargo test
//! --benches`, so CI checks that the cost stays flat).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pbft_ledger::crypto::{self, Digest, Domain, KeyPair, NetworkId, PublicKey};
use pbft_ledger::ledger::bank::Bank;
use pbft_ledger::ledger::{self, ChainTip};
use pbft_ledger::tx::{batch_digest, Batch, Transaction};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NET: NetworkId = NetworkId(Digest([4; 32]));
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// Most a block at 1M accounts may cost per block against one at 10k
/// (the old full hash was ~150 times slower).
const FLAT_RATIO_MAX: f64 = 4.0;

/// A bank of `accounts` accounts (synthetic keys; the bank does not check
/// signatures) plus the funded sender.
fn bank_of(accounts: usize, sender: &KeyPair) -> Bank {
    let mut genesis: Vec<(PublicKey, u64)> = (0..accounts as u64 - 1)
        .map(|i| {
            let key = crypto::digest(Domain::Genesis, &[b"ledger-bench", &i.to_le_bytes()]);
            (PublicKey(key.0), 10)
        })
        .collect();
    genesis.push((sender.public(), u64::MAX / 2));
    Bank::new(&genesis).expect("genesis fits")
}

/// One block of `txs` transfers from `sender`, nonces from `nonce`, each to
/// a fresh key (so the bank also grows, as under a real load).
fn block(sender: &KeyPair, txs: usize, nonce: &mut u64) -> (Digest, Batch) {
    let batch = Batch {
        timestamp_ms: 1,
        txs: (0..txs)
            .map(|_| {
                *nonce += 1;
                let to = crypto::digest(Domain::Genesis, &[b"payee", &nonce.to_le_bytes()]);
                Transaction::transfer(NET, sender, PublicKey(to.0), 1, *nonce)
            })
            .collect(),
    };
    (batch_digest(&batch.encode()), batch)
}

fn run(bank: &mut Bank, tip: &mut ChainTip, digest: Digest, batch: &Batch) {
    let executed = ledger::execute(tip, bank, digest, batch);
    tip.height += 1;
    tip.block_hash = executed.block_hash;
    black_box(executed.state_root_after);
}

/// Median time of one one-transfer block over `rounds` blocks.
fn per_block(accounts: usize, rounds: usize) -> Duration {
    let sender = KeyPair::from_label("ledger-bench-sender");
    let mut bank = bank_of(accounts, &sender);
    let mut tip = ChainTip::genesis(Digest([0; 32]));
    let mut nonce = 0;
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let (digest, batch) = block(&sender, 1, &mut nonce);
            let start = Instant::now();
            run(&mut bank, &mut tip, digest, &batch);
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[rounds / 2]
}

fn flat_check() {
    let small = per_block(SIZES[0], 300);
    let large = per_block(SIZES[2], 300);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    eprintln!(
        "ledger: one-transfer block {small:?} at {} accounts, {large:?} at {} (x{ratio:.2})",
        SIZES[0], SIZES[2]
    );
    assert!(
        ratio <= FLAT_RATIO_MAX,
        "per-block cost grows with the accounts: {small:?} at {} vs {large:?} at {}",
        SIZES[0],
        SIZES[2]
    );
}

fn execute(c: &mut Criterion) {
    flat_check();
    let sender = KeyPair::from_label("ledger-bench-sender");
    let mut g = c.benchmark_group("ledger");
    g.sample_size(20);
    for accounts in SIZES {
        let mut bank = bank_of(accounts, &sender);
        let mut tip = ChainTip::genesis(Digest([0; 32]));
        let mut nonce = 0;
        for txs in [1usize, 64] {
            g.throughput(Throughput::Elements(txs as u64));
            g.bench_function(format!("execute_{txs}_txs_at_{accounts}_accounts"), |b| {
                b.iter_batched(
                    || block(&sender, txs, &mut nonce),
                    |(digest, batch)| run(&mut bank, &mut tip, digest, &batch),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, execute);
criterion_main!(benches);
