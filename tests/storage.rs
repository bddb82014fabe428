//! Integration tests of the RocksDB store through the public API only.

use pbft_ledger::storage::rocks::RocksStore;
use pbft_ledger::storage::{Cf, StorageError, Store, WriteBatch};
use std::time::{Duration, Instant};

/// One ~100 KB block-sized batch spread over several column families.
fn block_batch(height: u64) -> WriteBatch {
    let mut b = WriteBatch::default();
    b.put(
        Cf::Blocks,
        height.to_be_bytes(),
        vec![height as u8; 64 * 1024],
    );
    b.put(Cf::Certs, height.to_be_bytes(), vec![1u8; 4 * 1024]);
    for i in 0u64..32 {
        let mut key = height.to_be_bytes().to_vec();
        key.extend_from_slice(&i.to_be_bytes());
        b.put(Cf::State, key, vec![i as u8; 1000]);
    }
    b.put(Cf::Consensus, b"view".to_vec(), height.to_be_bytes());
    b
}

#[test]
fn blocks_survive_reopen_and_lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = RocksStore::open(dir.path()).unwrap();
        for h in 1..=5 {
            s.write(block_batch(h)).unwrap();
        }
        assert!(matches!(
            RocksStore::open(dir.path()),
            Err(StorageError::Locked { .. })
        ));
    }
    let s = RocksStore::open_existing(dir.path()).unwrap();
    let (k, v) = s.last(Cf::Blocks).unwrap().unwrap();
    assert_eq!(k, 5u64.to_be_bytes());
    assert_eq!(v.len(), 64 * 1024);
    assert_eq!(s.scan(Cf::Blocks, &[], &[0xff], 100).unwrap().len(), 5);
    assert_eq!(
        s.get(Cf::Consensus, b"view").unwrap(),
        Some(5u64.to_be_bytes().to_vec())
    );
}

/// Measures a synced ~100 KB write batch on this machine and prints the
/// median (run with `--nocapture`); asserts nothing about speed.
#[test]
fn synced_100kb_batch_latency() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = RocksStore::open(dir.path()).unwrap();
    let batches: Vec<WriteBatch> = (0..60).map(block_batch).collect();
    let bytes: usize = batches[0]
        .writes
        .iter()
        .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len))
        .sum();
    let mut times: Vec<Duration> = Vec::new();
    for (i, b) in batches.into_iter().enumerate() {
        let t = Instant::now();
        s.write(b).unwrap();
        if i >= 10 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let pct = |p: usize| times[(times.len() - 1) * p / 100];
    println!(
        "synced write batch of {bytes} bytes, {} samples: p10 {:?}, median {:?}, p90 {:?}, max {:?}",
        times.len(),
        pct(10),
        pct(50),
        pct(90),
        times[times.len() - 1]
    );
}

/// Child half of [`lock_held_by_another_process_is_locked`]: opens the store
/// named by `PBFT_LOCK_HOLDER`, says so, and holds it until stdin closes.
#[test]
#[ignore = "run as a child process by lock_held_by_another_process_is_locked"]
fn lock_holder_child() {
    let Some(path) = std::env::var_os("PBFT_LOCK_HOLDER") else {
        return;
    };
    let _store = RocksStore::open(std::path::Path::new(&path)).unwrap();
    println!("HOLDING");
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

#[test]
fn lock_held_by_another_process_is_locked() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["lock_holder_child", "--exact", "--ignored", "--nocapture"])
        .env("PBFT_LOCK_HOLDER", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("HOLDING")),
        "child never opened the store"
    );
    for second in [
        RocksStore::open(dir.path()),
        RocksStore::open_existing(dir.path()),
    ] {
        match second {
            Err(e @ StorageError::Locked { .. }) => {
                println!("{e}");
                assert!(e.to_string().contains(&*dir.path().to_string_lossy()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }
    drop(child.stdin.take()); // the child exits when its stdin closes
    assert!(child.wait().unwrap().success());
    // Once the other process is gone, the store opens.
    RocksStore::open(dir.path()).unwrap();
}
