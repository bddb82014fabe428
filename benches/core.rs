//! Benchmarks of the core hot paths (DESIGN.md §7):
//! * `cluster`: a 4-replica cluster in the deterministic simulator, fault
//!   free — the real nodes (consensus, bank, in-memory store) with every
//!   signature made and verified; throughput is committed transfers per
//!   second of wall time.
//! * `crypto`: ed25519 sign, `verify_strict` (replica messages), the
//!   transaction rule alone and in batches (`crypto::txsig`), dalek's batch
//!   verification for reference, blake3.
//! * `codec`: encoding and validated decoding of a PRE-PREPARE frame.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pbft_ledger::consensus::messages::{Message, PrePrepare};
use pbft_ledger::crypto::{self, Digest, Domain, KeyPair, NetworkId};
use pbft_ledger::sim::scenario::Scenario;
use pbft_ledger::sim::{run_scenario, SimOptions};
use pbft_ledger::tx::{batch_digest, Batch, Transaction};
use pbft_ledger::types::{ReplicaId, Seq, View};
use std::hint::black_box;

fn cluster(c: &mut Criterion) {
    let mut scenario = Scenario::calm(4);
    scenario.clients = 16;
    scenario.txs_per_client = 20;
    scenario.tail_txs_per_client = 0;
    scenario.batch_txs_max = 64;
    let opts = SimOptions::default();
    let probe = run_scenario(1, scenario.clone(), &opts);
    assert!(probe.violations.is_empty(), "{:?}", probe.violations);
    let mut g = c.benchmark_group("cluster");
    g.sample_size(10);
    g.throughput(Throughput::Elements(probe.txs_committed));
    g.bench_function("4_replicas_in_memory_transfers", |b| {
        b.iter(|| black_box(run_scenario(1, scenario.clone(), &opts)))
    });
    g.finish();
}

fn sample_txs(n: usize) -> (NetworkId, Vec<Transaction>) {
    let net = NetworkId(Digest([7; 32]));
    let k = KeyPair::from_label("bench");
    let to = KeyPair::from_label("bench-to").public();
    (
        net,
        (0..n)
            .map(|i| Transaction::transfer(net, &k, to, 1, i as u64 + 1))
            .collect(),
    )
}

fn crypto_paths(c: &mut Criterion) {
    let (net, txs) = sample_txs(100);
    let key = KeyPair::from_label("bench");
    let msg = txs[0].signing_digest(net);
    let mut g = c.benchmark_group("crypto");
    g.bench_function("ed25519_sign", |b| {
        b.iter(|| black_box(key.sign_digest(black_box(&msg))))
    });
    // Replica messages: verify_strict.
    let strict_key = key.public().verifying_key().expect("valid key");
    g.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| {
            black_box(crypto::verify_digest(
                &strict_key,
                black_box(&msg),
                &txs[0].signature,
            ))
        })
    });
    // Client transactions: the cofactored rule, alone and in batches.
    g.bench_function("tx_verify_single", |b| {
        b.iter(|| black_box(txs[0].verify(black_box(net))))
    });
    for n in [8usize, 32, 100] {
        let refs: Vec<&Transaction> = txs.iter().take(n).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("tx_verify_all_{n}"), |b| {
            b.iter(|| black_box(Transaction::verify_all(black_box(&refs), net)))
        });
    }
    g.throughput(Throughput::Elements(100));
    g.bench_function("ed25519_dalek_verify_batch_100", |b| {
        let digests: Vec<[u8; 32]> = txs.iter().map(|t| t.signing_digest(net).0).collect();
        let msgs: Vec<&[u8]> = digests.iter().map(|d| d.as_slice()).collect();
        let sigs: Vec<ed25519_dalek::Signature> = txs
            .iter()
            .map(|t| ed25519_dalek::Signature::from_bytes(&t.signature))
            .collect();
        let keys: Vec<ed25519_dalek::VerifyingKey> = txs
            .iter()
            .map(|t| t.from.verifying_key().unwrap())
            .collect();
        b.iter(|| black_box(ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()))
    });
    let big = vec![0xabu8; 1 << 20];
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("blake3_1MiB", |b| {
        b.iter(|| black_box(crypto::digest(Domain::Batch, &[&big])))
    });
    g.finish();
}

fn codec_paths(c: &mut Criterion) {
    let (net, txs) = sample_txs(64);
    let batch = Batch {
        timestamp_ms: 1,
        txs,
    };
    let bytes = batch.encode();
    let key = KeyPair::from_label("primary");
    let pp = key
        .sign(
            net,
            ReplicaId(0),
            PrePrepare {
                view: View(0),
                seq: Seq(1),
                digest: batch_digest(&bytes),
            },
        )
        .into_signed();
    let message = Message::PrePrepare {
        pre_prepare: pp,
        batch: bytes,
    };
    let frame = message.to_frame();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("encode_pre_prepare_64_txs", |b| {
        b.iter(|| black_box(message.to_frame()))
    });
    g.bench_function("decode_validate_pre_prepare_64_txs", |b| {
        b.iter_batched(
            || frame.clone(),
            |f| black_box(Message::from_frame(&f, usize::MAX).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, cluster, crypto_paths, codec_paths);
criterion_main!(benches);
