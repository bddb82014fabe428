//! Nodes (core + ledger + store) driven directly, four of them in memory:
//! durability.
//!
//! * Group commit: inputs ingested together share one synced write, nothing
//!   that depends on a vote in it leaves before it, and a crash before it
//!   loses them whole. A block's replies need no sync (the block committed,
//!   which is durable at a quorum): they leave at once, and a replica that
//!   crashes before its block is written executes it again, identically —
//!   even when every replica loses its block to a power loss.
//! * A replica's PRE-PREPAREs and PREPAREs are written only by a clean stop;
//!   restarted after a crash, a primary proposes nothing in that view — nor
//!   after a later clean stop and start (the rule is written and kept).
//! * A wiped or restored store is recognised by the view record, and a
//!   store of another replica, or a damaged one, is refused untouched.
//!
//! Clients and their replies are in `node_clients.rs`, catching up in
//! `node_catch_up.rs`.

mod common;

use common::node::{broadcast_of, drain, first_transfers, funded_clients, stored_votes, Cluster};
use pbft_ledger::consensus::messages::{Message, PrePrepare, Reply};
use pbft_ledger::consensus::Config;
use pbft_ledger::crypto::{KeyPair, Payload};
use pbft_ledger::node::{Node, NodeInput, Outgoing};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::storage::{Cf, Store};
use pbft_ledger::tx::{Batch, Receipt, Transaction, VerifiedTx};
use pbft_ledger::types::{ReplicaId, Seq, Time, View};
use std::collections::VecDeque;

#[test]
fn group_commit_holds_everything_until_the_flush_and_a_crash_loses_the_group() {
    let (clients, accounts) = funded_clients("group-client", 3);
    let payee = KeyPair::from_label("group-payee").public();
    let mut c = Cluster::new(&accounts);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let txs = first_transfers(net, &clients, payee, 5);

    // The primary ingests three requests: nothing is proposed, written or
    // sent before the flush, and then one batch holds all three.
    for tx in &txs {
        let v = VerifiedTx::check(tx.clone(), net).expect("well signed");
        c.nodes[0]
            .ingest(now, NodeInput::VerifiedRequest(v))
            .unwrap();
    }
    assert_eq!(c.nodes[0].unsynced_writes(), 0);
    assert!(drain(&mut c.nodes[0]).is_empty());
    c.nodes[0].flush().unwrap();
    assert_eq!(
        stored_votes(&c.stores[0]),
        0,
        "a PRE-PREPARE is not written (a crash makes the primary sit the view out)"
    );
    let sent = drain(&mut c.nodes[0]);
    let [Outgoing::Broadcast(pp @ Message::PrePrepare { batch, .. })] = sent.as_slice() else {
        panic!("one PRE-PREPARE broadcast expected: {sent:?}");
    };
    assert_eq!(
        Batch::decode(batch).unwrap().txs,
        txs,
        "one batch for the group"
    );
    let from = |r: u32, message: &Message| NodeInput::Message {
        from: ReplicaId(r),
        message: message.clone(),
    };

    // Backup 1 prepares: nothing to write, its PREPARE leaves at once.
    c.nodes[1].ingest(now, from(0, pp)).unwrap();
    assert_eq!(c.nodes[1].unsynced_writes(), 0);
    let sent = drain(&mut c.nodes[1]);
    let [Outgoing::Broadcast(prepare1 @ Message::Prepare(_))] = sent.as_slice() else {
        panic!("one PREPARE broadcast expected: {sent:?}");
    };

    // Backup 2 ingests the PRE-PREPARE and backup 1's PREPARE together: it
    // is prepared, and its certificate with its COMMIT is in the unsynced
    // group; the COMMIT is held back until the flush.
    c.nodes[2].ingest(now, from(0, pp)).unwrap();
    c.nodes[2].ingest(now, from(1, prepare1)).unwrap();
    assert_eq!(c.nodes[2].unsynced_writes(), 1);
    let early = drain(&mut c.nodes[2]);
    assert!(
        matches!(early.as_slice(), [Outgoing::Broadcast(Message::Prepare(_))]),
        "only the PREPARE, which needed no write: {early:?}"
    );
    assert_eq!(stored_votes(&c.stores[2]), 0);
    c.nodes[2].flush().unwrap();
    assert_eq!(stored_votes(&c.stores[2]), 1, "its COMMIT is durable");
    let late = drain(&mut c.nodes[2]);
    assert!(
        matches!(late.as_slice(), [Outgoing::Broadcast(Message::Commit(_))]),
        "{late:?}"
    );

    // Backup 3 dies before its flush: the group is gone whole (no vote
    // stored, none sent).
    c.nodes[3].ingest(now, from(0, pp)).unwrap();
    c.nodes[3].ingest(now, from(1, prepare1)).unwrap();
    assert_eq!(c.nodes[3].unsynced_writes(), 1);
    c.restart(3);
    assert_eq!(stored_votes(&c.stores[3]), 0);
    assert!(drain(&mut c.nodes[3]).is_empty());

    // Delivered again (retransmissions), everything commits and executes;
    // backup 3, restarted after a crash, sends no PREPARE in view 0 but is
    // prepared by 1's and 2's and commits.
    let mut queue = VecDeque::from([
        (3, from(0, pp)),
        (0, from(1, prepare1)),
        (3, from(1, prepare1)),
    ]);
    for o in early.iter().chain(&late) {
        if let Outgoing::Broadcast(message) = o {
            for t in [0, 1, 3] {
                queue.push_back((t, from(2, message)));
            }
        }
    }
    let replies = c.run_all(now, queue);
    for (i, tx) in txs.iter().enumerate() {
        let from: Vec<usize> = replies
            .iter()
            .filter(|(_, r)| r.tx_id == tx.id() && r.receipt == Receipt::Ok && r.seq == Seq(1))
            .map(|(r, _)| *r)
            .collect();
        assert_eq!(from.len(), 4, "tx {i}: replies from {from:?}");
    }
    for n in &c.nodes {
        assert_eq!(n.height(), 1);
        assert_eq!(n.unsynced_writes(), 0);
    }
}

#[test]
fn a_blocks_replies_leave_before_its_write_is_synced_and_a_crash_executes_it_again() {
    let client = KeyPair::from_label("release-client");
    let payee = KeyPair::from_label("release-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let tx = Transaction::transfer(net, &client, payee, 5, 1);
    let from = |r: usize, message: &Message| NodeInput::Message {
        from: ReplicaId(r as u32),
        message: message.clone(),
    };

    // Pre-prepare and prepare, each input synced on its own: every replica
    // ends with its COMMIT durable and sent.
    let v = VerifiedTx::check(tx.clone(), net).expect("well signed");
    c.nodes[0]
        .handle(now, NodeInput::VerifiedRequest(v))
        .unwrap();
    let pp = broadcast_of(&drain(&mut c.nodes[0]), |m| {
        matches!(m, Message::PrePrepare { .. })
    });
    let prepares: Vec<(usize, Message)> = (1..4)
        .map(|r| {
            c.nodes[r].handle(now, from(0, &pp)).unwrap();
            let sent = drain(&mut c.nodes[r]);
            (r, broadcast_of(&sent, |m| matches!(m, Message::Prepare(_))))
        })
        .collect();
    let commits: Vec<(usize, Message)> = (0..4)
        .map(|r| {
            let mut sent = Vec::new();
            for (p, prepare) in prepares.iter().filter(|(p, _)| *p != r) {
                c.nodes[r].handle(now, from(*p, prepare)).unwrap();
                sent.extend(drain(&mut c.nodes[r]));
            }
            (r, broadcast_of(&sent, |m| matches!(m, Message::Commit(_))))
        })
        .collect();
    for r in 0..4 {
        assert_eq!(c.nodes[r].height(), 0, "replica {r} has not committed yet");
    }
    let replies_in = |sent: &[Outgoing]| -> Vec<Reply> {
        sent.iter()
            .filter_map(|o| match o {
                Outgoing::ToClient { reply, .. } => Some(*reply),
                _ => None,
            })
            .collect()
    };

    // Replica 2 hears the COMMITs of 0 and 1 (with its own, a quorum) in one
    // group: it executes, and the block's reply leaves before the block's
    // write is synced — the block has committed, which is already durable at
    // a quorum — while the committed-block event waits for the write.
    for (p, commit) in commits.iter().filter(|(p, _)| *p < 2) {
        c.nodes[2].ingest(now, from(*p, commit)).unwrap();
    }
    assert_eq!(c.nodes[2].height(), 1);
    assert_eq!(c.nodes[2].unsynced_writes(), 1, "the block's write");
    let early = replies_in(&drain(&mut c.nodes[2]));
    assert_eq!(early.len(), 1, "the reply left before the sync");
    assert_eq!(
        (early[0].tx_id, early[0].seq, early[0].receipt),
        (tx.id(), Seq(1), Receipt::Ok)
    );
    assert_eq!(c.nodes[2].drain_committed().count(), 0, "the block waits");
    // A group of blocks alone is written unsynced: readable at once, made
    // durable by the next synced write — here, with no traffic, by a sync
    // of its own once BLOCK_SYNC_DELAY_MS (20 ms) has passed.
    c.nodes[2].flush().unwrap();
    assert!(c.stores[2].unsynced_keys() > 0, "written unsynced");
    assert_eq!(c.nodes[2].drain_committed().count(), 0, "the block waits");
    let due = c.nodes[2].next_deadline().expect("a sync is due");
    assert!(due <= now.plus_millis(20), "{due:?}");
    c.nodes[2].handle(due, NodeInput::Tick).unwrap();
    assert_eq!(c.stores[2].unsynced_keys(), 0, "synced");
    let blocks: Vec<_> = c.nodes[2].drain_committed().collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].height, 1);

    // Replicas 0 and 1 commit the block too.
    for r in 0..2 {
        for (p, commit) in commits.iter().filter(|(p, _)| *p != r) {
            c.nodes[r].handle(now, from(*p, commit)).unwrap();
        }
        assert_eq!(c.nodes[r].height(), 1);
        let _ = drain(&mut c.nodes[r]);
    }

    // Replica 3 does as 2 did, sends its reply, and crashes before the
    // block's write is synced: it restarts at height 0 (with its prepared
    // certificate and COMMIT), asks a peer for what committed meanwhile and
    // executes the block again: the same reply and the same block.
    for (p, commit) in commits.iter().filter(|(p, _)| *p < 2) {
        c.nodes[3].ingest(now, from(*p, commit)).unwrap();
    }
    let sent_before_crash = replies_in(&drain(&mut c.nodes[3]));
    assert_eq!(sent_before_crash, early);
    c.restart(3);
    assert_eq!(c.nodes[3].height(), 0, "the block's write was lost");
    // The first input lets out the restart's probe (a FETCH) too.
    let again: Vec<Reply> = c
        .run(now, 3, NodeInput::Tick)
        .into_iter()
        .filter(|(r, _)| *r == 3)
        .map(|(_, reply)| reply)
        .collect();
    assert_eq!(c.nodes[3].height(), 1, "executed again after the crash");
    assert_eq!(again, early, "the same reply as before the crash");
    let due = c.nodes[3].next_deadline().expect("a sync is due");
    c.nodes[3].handle(due, NodeInput::Tick).unwrap();
    let block_again: Vec<_> = c.nodes[3].drain_committed().collect();
    assert_eq!(block_again, blocks, "the same block as replica 2's");
}

/// The worst case of unsynced block writes: every replica executes a
/// transfer, replies, and loses power before anything syncs its block. The
/// block is gone everywhere, but it committed — each replica's COMMIT was
/// synced with its prepared certificate (and batch) before it was sent — so
/// when the client sends the transfer again the replicas change view (the
/// primary, restarted after a crash, sits view 0 out), the new primary
/// proposes the prepared batch again, and the same block executes at the
/// same height: the same hash and the same answer for the client.
#[test]
fn a_network_that_loses_power_after_replying_executes_the_same_block_again() {
    let client = KeyPair::from_label("power-client");
    let payee = KeyPair::from_label("power-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let tx = Transaction::transfer(net, &client, payee, 5, 1);
    let v = VerifiedTx::check(tx.clone(), net).expect("well signed");
    let first = c.run(now, 0, NodeInput::VerifiedRequest(v));
    assert_eq!(first.len(), 4, "every replica replied: {first:?}");
    let hash = c.nodes[0]
        .block(1)
        .unwrap()
        .expect("executed")
        .header
        .hash();
    for r in 0..4 {
        assert!(
            c.stores[r].unsynced_keys() > 0,
            "replica {r}: block unsynced"
        );
        c.stores[r].reopen(); // power loss: unsynced writes are gone
        c.restart(r);
        assert_eq!(c.nodes[r].height(), 0, "replica {r} lost its block");
    }

    let mut t = now.plus_millis(100);
    let mut again = Vec::new();
    for r in 0..4 {
        again.extend(c.run(t, r, NodeInput::Request(tx.clone())));
    }
    for _ in 0..40 {
        if c.nodes.iter().all(|n| n.height() == 1) {
            break;
        }
        t = t.plus_millis(250);
        for r in 0..4 {
            again.extend(c.run(t, r, NodeInput::Tick));
        }
    }
    for r in 0..4 {
        assert_eq!(c.nodes[r].height(), 1, "replica {r} executed it again");
        let block = c.nodes[r].block(1).unwrap().expect("stored");
        assert_eq!(block.header.hash(), hash, "replica {r}: the same block");
        assert!(c.nodes[r].replica().view() > View(0), "after a view change");
    }
    let answered: Vec<usize> = again
        .iter()
        .filter(|(_, reply)| {
            (reply.tx_id, reply.seq, reply.receipt) == (tx.id(), Seq(1), Receipt::Ok)
        })
        .map(|(r, _)| *r)
        .collect();
    assert!(answered.len() >= 2, "f+1 answers again: {answered:?}");
}

#[test]
fn a_clean_stop_saves_the_views_votes_and_after_a_crash_the_primary_sits_the_view_out() {
    let client = KeyPair::from_label("saved-votes-client");
    let payee = KeyPair::from_label("saved-votes-payee").public();
    let config = Config {
        pipeline_depth: 4,
        ..Config::default()
    };
    let mut c = Cluster::with_config(&[(client.public(), 100)], config);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let tx = |nonce| {
        let tx = Transaction::transfer(net, &client, payee, 1, nonce);
        NodeInput::VerifiedRequest(VerifiedTx::check(tx, net).expect("well signed"))
    };
    let proposed = |out: Vec<Outgoing>| -> Vec<Seq> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Broadcast(Message::PrePrepare { pre_prepare, .. }) => Some(
                    PrePrepare::decode(&pre_prepare.payload)
                        .expect("decodes")
                        .seq,
                ),
                _ => None,
            })
            .collect()
    };
    // The primary proposes s1; nobody hears it.
    c.nodes[0].handle(now, tx(1)).unwrap();
    assert_eq!(proposed(drain(&mut c.nodes[0])), [Seq(1)]);
    assert_eq!(stored_votes(&c.stores[0]), 0);

    // A clean stop saves it; looking at the store leaves it as it is; the
    // start takes the marker away and the primary goes on above s1.
    c.nodes[0].save_votes().unwrap();
    assert_eq!(stored_votes(&c.stores[0]), 1);
    let saved = |c: &Cluster| c.stores[0].get(Cf::Consensus, b"saved").unwrap();
    assert_eq!(saved(&c), Some(Vec::new()));
    Node::open_to_inspect(
        &c.genesis,
        ReplicaId(0),
        c.keys[0].clone(),
        c.stores[0].clone(),
    )
    .expect("opens to inspect");
    assert_eq!(saved(&c), Some(Vec::new()), "inspecting keeps the marker");
    c.restart(0);
    assert_eq!(saved(&c), None);
    c.nodes[0].handle(now, tx(2)).unwrap();
    assert_eq!(proposed(drain(&mut c.nodes[0])), [Seq(2)]);

    // A crash (no save): the restarted primary cannot know it used s2 (not
    // saved), so it proposes nothing in view 0.
    c.restart(0);
    c.nodes[0].handle(now, tx(3)).unwrap();
    assert_eq!(proposed(drain(&mut c.nodes[0])), Vec::<Seq>::new());
    assert_eq!(c.nodes[0].replica().view(), View(0));

    // Issue 17, defect 1: a clean stop of that restarted run, and a start,
    // must not lift the rule (the clean stop saves only this run's votes,
    // none of which is s2's): it still proposes nothing in view 0, and
    // neither does any later start, clean or not.
    for clean in [true, true, false, true] {
        if clean {
            c.nodes[0].save_votes().unwrap();
        }
        c.restart(0);
        c.nodes[0].handle(now, tx(3)).unwrap();
        assert_eq!(
            proposed(drain(&mut c.nodes[0])),
            Vec::<Seq>::new(),
            "restarted after a {} stop, it proposed again in the view whose proposals a crash erased",
            if clean { "clean" } else { "crash" }
        );
        assert_eq!(c.nodes[0].replica().view(), View(0));
    }
}

/// Issue 17, defect 12: the view record, kept apart from the store, tells
/// a replica that its store was lost. Primary 0 proposes s1 in view 0 (nobody
/// hears it); its disk is wiped; restarted on an empty store with its view
/// record, it proposes nothing in view 0 (it cannot know what it proposed
/// there), and neither does a later start on that store. A backup put back
/// (the store as it was before view 1, the record at view 1) is recognised
/// too. Without a record — a first start — it proposes at once.
#[test]
fn a_wiped_or_restored_store_is_recognised_by_the_view_record() {
    use pbft_ledger::node::MemoryViewRecord;
    let client = KeyPair::from_label("wiped-primary-client");
    let payee = KeyPair::from_label("wiped-primary-payee").public();
    let c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let tx = |nonce| {
        let tx = Transaction::transfer(net, &client, payee, 1, nonce);
        NodeInput::VerifiedRequest(VerifiedTx::check(tx, net).expect("well signed"))
    };
    let proposes = |node: &mut Node<MemoryStore>, nonce| -> bool {
        node.handle(now, tx(nonce)).unwrap();
        drain(node)
            .iter()
            .any(|o| matches!(o, Outgoing::Broadcast(Message::PrePrepare { .. })))
    };
    let open = |store: &MemoryStore, record: &MemoryViewRecord| {
        Node::open_recorded(
            &c.genesis,
            ReplicaId(0),
            c.keys[0].clone(),
            store.clone(),
            Box::new(record.clone()),
        )
        .expect("opens")
    };
    let record = MemoryViewRecord::default();
    let mut node = open(&MemoryStore::new(), &record);
    assert!(proposes(&mut node, 1), "a first start proposes at once");
    drop(node);

    // The disk is wiped; the record is not.
    let wiped = MemoryStore::new();
    let mut node = open(&wiped, &record);
    assert!(
        !proposes(&mut node, 2),
        "a wiped primary proposed again in view 0"
    );
    node.save_votes().unwrap();
    let mut node = open(&wiped, &record);
    assert!(
        !proposes(&mut node, 2),
        "the rule survives a clean stop and start"
    );
    drop(node);

    // A backup from view 0 put back while the record says view 1.
    let restored = MemoryStore::new();
    drop(open(&restored, &MemoryViewRecord::default()));
    let mut ahead = MemoryViewRecord::default();
    use pbft_ledger::node::ViewRecord;
    ahead.record(View(1)).unwrap();
    let mut node = open(&restored, &ahead);
    node.handle(now, NodeInput::Tick).unwrap();
    assert_eq!(node.replica().view(), View(0));
    let stored = restored.get(Cf::Consensus, b"abstain-commits").unwrap();
    assert!(
        stored.is_some(),
        "the rule is written to the restored store"
    );
}

/// Every record of every column family, to compare a store before and
/// after a refused open.
fn dump(store: &MemoryStore) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for cf in Cf::ALL {
        for (k, v) in store.scan(cf, &[], &[0xff; 64], usize::MAX).unwrap() {
            all.push((cf, k, v));
        }
    }
    all
}

/// Issue 24, defect 8: a store is bound to the replica that wrote it.
/// Replica 1 opened on replica 0's store (a swapped data directory) is
/// refused, naming both; so are a store without a schema record and a
/// store with records but no genesis record — and none of the refused
/// opens writes anything. Before the fix all three opened (replica 1 ran
/// on replica 0's vote history; the last was initialised over).
#[test]
fn another_replicas_store_and_damaged_stores_are_refused_untouched() {
    use pbft_ledger::node::NodeError;
    use pbft_ledger::storage::{StorageError, WriteBatch};
    let client = KeyPair::from_label("swap-client");
    let payee = KeyPair::from_label("swap-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let tx = Transaction::transfer(net, &client, payee, 1, 1);
    c.run(Time::from_millis(1_000), 0, NodeInput::Request(tx));
    let swapped = c.stores[0].clone();
    let before = dump(&swapped);
    let open = |r: u32, store: &MemoryStore| {
        Node::open(
            &c.genesis,
            ReplicaId(r),
            c.keys[r as usize].clone(),
            store.clone(),
        )
    };
    match open(1, &swapped) {
        Err(NodeError::Storage(e @ StorageError::OtherReplica { .. })) => {
            let text = e.to_string();
            assert!(
                text.contains("store belongs to replica 0") && text.contains("this is replica 1"),
                "{text}"
            );
        }
        other => panic!("replica 1 opened replica 0's store: {:?}", other.err()),
    }
    assert_eq!(
        dump(&swapped),
        before,
        "the refused open wrote to the store"
    );

    let mut no_schema = WriteBatch::default();
    no_schema.delete(Cf::Meta, b"schema".to_vec());
    let store = MemoryStore::new();
    drop(open(2, &store).expect("a fresh store opens"));
    let mut s = store.clone();
    s.write(no_schema).unwrap();
    let before = dump(&store);
    let e = open(2, &store)
        .err()
        .expect("a store without a schema opened");
    assert!(e.to_string().contains("no schema record"), "{e}");
    assert_eq!(dump(&store), before);

    let store = MemoryStore::new();
    let mut stray = WriteBatch::default();
    stray.put(Cf::State, vec![7; 32], vec![1; 16]);
    let mut s = store.clone();
    s.write(stray).unwrap();
    let before = dump(&store);
    let e = open(3, &store)
        .err()
        .expect("a store with records but no genesis was initialised");
    assert!(
        e.to_string().contains("holds state records")
            && e.to_string().contains("no genesis record"),
        "{e}"
    );
    assert_eq!(dump(&store), before);
}
