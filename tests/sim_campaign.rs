//! A campaign of 1,000 random seeds (swarm testing: each seed draws its own
//! fault rates), and the proof that the checker can fail.

use pbft_ledger::consensus::messages::{Message, PrePrepare, Prepare};
use pbft_ledger::crypto::{Digest, KeyPair, NetworkId};
use pbft_ledger::node::CommittedBlock;
use pbft_ledger::sim::checker::Checker;
use pbft_ledger::sim::{campaign, SimOptions};
use pbft_ledger::types::{ReplicaId, Seq, View};

/// 1,000 seeds, 0 violations, and view changes happen in the seeds that
/// crash or partition a primary.
#[test]
fn thousand_seeds_without_violations() {
    let opts = SimOptions {
        replicas: 4,
        verbose: false,
        ..SimOptions::default()
    };
    let summary = campaign::run(10_000, 1_000, &opts, 2, false, &|o| {
        eprintln!("seed {}: {:?}", o.seed, o.violations);
    });
    eprintln!("{}", summary.line());
    assert_eq!(
        summary.violations,
        0,
        "failing seeds: {:?}",
        summary.failing.iter().map(|o| o.seed).collect::<Vec<_>>()
    );
    assert!(summary.seeds_with_view_change > 50, "{}", summary.line());
    assert!(summary.commits > 10_000);
}

/// Crash-anywhere (issue 5): 1,000 seeds in which every crash happens inside
/// a replica's writes — between the writes of one input or in the middle
/// of one, the write torn or applied whole — with 3 to 8 more crashes per
/// seed. Expect 0 violations: nothing committed is lost or changed (S3,
/// checked at every restart, including blocks that only the interrupted
/// write held), no restarted replica signs a conflicting vote (S7), supply
/// is conserved (S9) and every transfer still commits once faults end.
#[test]
fn crash_anywhere_campaign_without_violations() {
    let opts = SimOptions {
        replicas: 4,
        crash_anywhere: true,
        ..SimOptions::default()
    };
    let summary = campaign::run(20_000, 1_000, &opts, 2, false, &|o| {
        eprintln!("seed {}: {:?}", o.seed, o.violations);
    });
    eprintln!("{}", summary.line());
    assert_eq!(
        summary.violations,
        0,
        "failing seeds (replay with --crash-anywhere): {:?}",
        summary.failing.iter().map(|o| o.seed).collect::<Vec<_>>()
    );
    // The faults really happened, in both shapes, on the execute path too.
    assert!(summary.write_crashes > 300, "{}", summary.line());
    assert!(
        summary.write_crashes_applied > 100
            && summary.write_crashes - summary.write_crashes_applied > 100,
        "{}",
        summary.line()
    );
    assert!(summary.unseen_blocks_recovered > 5, "{}", summary.line());
    assert!(summary.batches_fetched > 0, "{}", summary.line());
    // Group commit ran: many synced writes held several inputs' writes, so
    // crashes also hit grouped writes.
    assert!(summary.grouped_syncs > 1_000, "{}", summary.line());
}

fn block(height: u64, hash: u8) -> CommittedBlock {
    CommittedBlock {
        height,
        block_hash: Digest([hash; 32]),
        batch_digest: Digest([hash; 32]),
        txs: Vec::new(),
    }
}

/// Fed conflicting commits, the checker reports an agreement violation.
#[test]
fn checker_reports_conflicting_commits() {
    let mut c = Checker::default();
    c.on_commit(ReplicaId(0), &block(1, 1));
    c.on_commit(ReplicaId(1), &block(1, 1));
    assert!(c.violations.is_empty());
    c.on_commit(ReplicaId(2), &block(1, 2));
    assert_eq!(c.violations.len(), 1);
    assert!(
        c.violations[0].starts_with("S1 agreement"),
        "{:?}",
        c.violations
    );
}

/// A skipped height, a restart that lost a block, and a double vote are
/// each reported.
#[test]
fn checker_reports_gaps_lost_blocks_and_equivocation() {
    let mut c = Checker::default();
    c.on_commit(ReplicaId(0), &block(1, 1));
    c.on_commit(ReplicaId(0), &block(3, 3));
    assert!(c.violations.iter().any(|v| v.starts_with("S2 chain")));

    let mut c = Checker::default();
    c.on_commit(ReplicaId(0), &block(1, 1));
    c.on_commit(ReplicaId(0), &block(2, 2));
    c.on_restart(ReplicaId(0), 1, Digest([1; 32]));
    assert!(c.violations.iter().any(|v| v.starts_with("S3 durability")));

    let mut c = Checker::default();
    let key = KeyPair::from_label("r0");
    let net = NetworkId(Digest([5; 32]));
    let vote = |d: u8| {
        key.sign(
            net,
            ReplicaId(0),
            Prepare {
                view: View(0),
                seq: Seq(1),
                digest: Digest([d; 32]),
            },
        )
        .into_signed()
    };
    c.on_send(ReplicaId(0), &Message::Prepare(vote(1)), 0);
    c.on_send(ReplicaId(0), &Message::Prepare(vote(1)), 0);
    assert!(c.violations.is_empty());
    c.on_send(ReplicaId(0), &Message::Prepare(vote(2)), 0);
    assert!(c
        .violations
        .iter()
        .any(|v| v.starts_with("S7 equivocation")));

    // S11: a correct replica proposes only above its height.
    let mut c = Checker::default();
    let proposal = |seq: u64| Message::PrePrepare {
        pre_prepare: key
            .sign(
                net,
                ReplicaId(0),
                PrePrepare {
                    view: View(0),
                    seq: Seq(seq),
                    digest: Digest([7; 32]),
                },
            )
            .into_signed(),
        batch: Vec::new(),
    };
    c.on_send(ReplicaId(0), &proposal(5), 4);
    assert!(c.violations.is_empty(), "{:?}", c.violations);
    c.on_send(ReplicaId(0), &proposal(4), 4);
    assert!(c.violations.iter().any(|v| v.starts_with("S11 proposals")));
}

/// Issue 17: a client's nonce of u64::MAX, or beyond the bank's nonce jump
/// above its account's last nonce, is reported (C1); so is an account state
/// no correct replica answered (C3).
#[test]
fn checker_reports_nonces_that_freeze_and_reads_of_lies() {
    let account = KeyPair::from_label("client").public();
    let mut c = Checker::default();
    c.on_client_sign(0, &account, 1);
    c.on_client_sign(0, &account, pbft_ledger::tx::NONCE_AHEAD_MAX);
    assert!(c.violations.is_empty(), "{:?}", c.violations);
    c.on_client_sign(0, &account, u64::MAX);
    c.on_client_sign(0, &account, pbft_ledger::tx::NONCE_AHEAD_MAX + 1);
    assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
    assert!(c
        .violations
        .iter()
        .all(|v| v.starts_with("C1 client nonce")));

    let mut c = Checker::default();
    c.on_account_state(account, true, 1_000, 0);
    c.on_client_read(0, &account, true, 1_000, 0);
    assert!(c.violations.is_empty());
    c.on_client_read(0, &account, true, u64::MAX, 0);
    assert!(
        c.violations[0].starts_with("C3 client read"),
        "{:?}",
        c.violations
    );
}
