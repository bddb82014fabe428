//! Benchmarks of the storage paths a replica runs per block (DESIGN.md §7):
//! * `storage/rocks_synced_block_T_txs`: the one synced RocksDB write batch
//!   a replica makes when it executes a committed block of `T` transfers —
//!   built exactly as `node::Node` builds it (block header and batch, commit
//!   certificate of 3 signed COMMITs, changed accounts, one transaction-index
//!   record per transfer, chain tip);
//! * `storage/rocks_synced_vote`: the synced write of one persisted vote
//!   (a signed COMMIT), made before every PREPARE/COMMIT is sent — the floor
//!   of a synced write on this disk;
//! * `storage/memory_block_T_txs`: the same block batch into the in-memory
//!   store the simulator uses;
//! * `storage/execute_block_T_txs`: executing the block (bank transfers,
//!   state root, transaction root) and building its write batch, no I/O.
//!
//! The RocksDB store lives in a temporary directory on the same filesystem
//! as `TMPDIR` (set it to put the store on the disk a replica would use).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pbft_ledger::consensus::messages::Commit;
use pbft_ledger::consensus::PersistOp;
use pbft_ledger::crypto::{Digest, KeyPair, NetworkId, PublicKey, Signed};
use pbft_ledger::ledger::bank::Bank;
use pbft_ledger::ledger::{self, ChainTip, StateMachine};
use pbft_ledger::node::persist::{self, StoredBlock, TxLocation};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::storage::rocks::RocksStore;
use pbft_ledger::storage::{Cf, Store, WriteBatch};
use pbft_ledger::tx::{batch_digest, Batch, Receipt, Transaction};
use pbft_ledger::types::{ReplicaId, Seq, View};
use std::hint::black_box;

const NET: NetworkId = NetworkId(Digest([9; 32]));
/// Distinct sending accounts (as `pbft-client bench --concurrency 64`).
const SENDERS: usize = 64;

/// A block's worth of transfers: `txs` transfers from `SENDERS` funded
/// accounts to the next one, and a bank holding those accounts.
struct BlockFixture {
    bank: Bank,
    batch: Batch,
    batch_bytes: Vec<u8>,
    digest: Digest,
    certificate: Vec<Signed<Commit>>,
}

fn fixture(txs: usize) -> BlockFixture {
    let keys: Vec<KeyPair> = (0..SENDERS)
        .map(|s| KeyPair::from_label(&format!("storage-bench-{s}")))
        .collect();
    let accounts: Vec<(PublicKey, u64)> = keys.iter().map(|k| (k.public(), 1_000_000)).collect();
    let mut bank = Bank::new(&accounts).expect("genesis fits");
    let _ = bank.take_changes();
    let batch = Batch {
        timestamp_ms: 1,
        txs: (0..txs)
            .map(|j| {
                let s = j % SENDERS;
                let to = keys[(s + 1) % SENDERS].public();
                Transaction::transfer(NET, &keys[s], to, 1, (j / SENDERS) as u64 + 1)
            })
            .collect(),
    };
    let batch_bytes = batch.encode();
    let digest = batch_digest(&batch_bytes);
    let certificate = (0..3)
        .map(|i| {
            KeyPair::from_label(&format!("storage-bench-replica-{i}"))
                .sign(
                    NET,
                    ReplicaId(i),
                    Commit {
                        view: View(0),
                        seq: Seq(1),
                        digest,
                    },
                )
                .into_signed()
        })
        .collect();
    BlockFixture {
        bank,
        batch,
        batch_bytes,
        digest,
        certificate,
    }
}

/// Executes the block at `height` on a copy of the fixture's bank and builds
/// the write batch exactly as `node::Node::execute` does.
fn block_batch(f: &BlockFixture, height: u64) -> WriteBatch {
    let mut bank = f.bank.clone();
    let tip = ChainTip {
        height: height - 1,
        block_hash: Digest([1; 32]),
        timestamp_ms: 0,
    };
    let executed = ledger::execute(&tip, &mut bank, f.digest, &f.batch);
    let mut wb = WriteBatch::default();
    let block = StoredBlock {
        header: executed.header,
        batch_bytes: f.batch_bytes.clone(),
    };
    wb.put(Cf::Blocks, persist::block_key(height), block.encode());
    wb.put(
        Cf::Certs,
        height.to_be_bytes().to_vec(),
        persist::encode_certificate(&f.certificate),
    );
    for (k, v) in bank.take_changes() {
        match v {
            Some(v) => wb.put(Cf::State, k, v),
            None => wb.delete(Cf::State, k),
        }
    }
    for (i, (tx, receipt)) in f.batch.txs.iter().zip(&executed.receipts).enumerate() {
        assert_eq!(*receipt, Receipt::Ok);
        let loc = TxLocation {
            height,
            index: i as u32,
            receipt: *receipt,
        };
        // A distinct index key per height, as distinct transactions would have.
        let mut id = tx.id();
        id.0[..8].copy_from_slice(&height.to_be_bytes());
        wb.put(
            Cf::Blocks,
            persist::tx_key(&id),
            persist::encode_tx_location(&loc),
        );
    }
    wb.put(
        Cf::Meta,
        persist::KEY_TIP,
        persist::encode_tip(
            height,
            &executed.block_hash,
            executed.header.timestamp_ms,
            &executed.state_root_after,
        ),
    );
    wb
}

fn batch_bytes(wb: &WriteBatch) -> u64 {
    wb.writes
        .iter()
        .map(|w| (w.key.len() + w.value.as_ref().map_or(0, Vec::len)) as u64)
        .sum()
}

fn storage(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rocks = RocksStore::open(&dir.path().join("rocks")).expect("open rocksdb");
    let mut memory = MemoryStore::new();
    let mut g = c.benchmark_group("storage");
    g.sample_size(20);
    let mut height = 0u64;
    for txs in [64usize, 512] {
        let f = fixture(txs);
        let probe = block_batch(&f, 1);
        eprintln!(
            "storage: block of {txs} txs = {} writes, {} bytes",
            probe.writes.len(),
            batch_bytes(&probe)
        );
        g.throughput(Throughput::Elements(txs as u64));
        g.bench_function(format!("execute_block_{txs}_txs"), |b| {
            b.iter(|| black_box(block_batch(&f, 1)))
        });
        g.bench_function(format!("rocks_synced_block_{txs}_txs"), |b| {
            b.iter_batched(
                || {
                    height += 1;
                    let mut wb = probe.clone();
                    wb.writes[0].key = persist::block_key(height);
                    wb.writes[1].key = height.to_be_bytes().to_vec();
                    wb
                },
                |wb| rocks.write(wb).expect("rocksdb write"),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("memory_block_{txs}_txs"), |b| {
            b.iter_batched(
                || {
                    height += 1;
                    let mut wb = probe.clone();
                    wb.writes[0].key = persist::block_key(height);
                    wb
                },
                |wb| memory.write(wb).expect("memory write"),
                BatchSize::SmallInput,
            )
        });
    }
    let vote = KeyPair::from_label("storage-bench-replica-0").sign(
        NET,
        ReplicaId(0),
        Commit {
            view: View(0),
            seq: Seq(1),
            digest: Digest([5; 32]),
        },
    );
    let op = PersistOp::Commit(vote.into_signed());
    g.throughput(Throughput::Elements(1));
    g.bench_function("rocks_synced_vote", |b| {
        b.iter_batched(
            || {
                let mut wb = WriteBatch::default();
                persist::add_ops(&mut wb, std::slice::from_ref(&op));
                wb
            },
            |wb| rocks.write(wb).expect("rocksdb write"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
