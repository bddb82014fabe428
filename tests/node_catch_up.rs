//! Nodes driven directly, four of them in memory: catching up.
//!
//! * A replica restarted behind an idle network, or on a wiped store,
//!   catches up by itself.
//! * FETCHes are served at a bounded rate per peer, and an answer is cut at
//!   a byte budget.

mod common;

use common::node::{drain, Cluster};
use pbft_ledger::consensus::messages::Message;
use pbft_ledger::crypto::KeyPair;
use pbft_ledger::node::{NodeInput, Outgoing};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::tx::Transaction;
use pbft_ledger::types::{ReplicaId, Seq, Time};

#[test]
fn fetches_are_served_at_a_bounded_rate_per_peer() {
    let client = KeyPair::from_label("fetch-client");
    let payee = KeyPair::from_label("fetch-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let t = Time::from_millis(1_000);
    let tx = Transaction::transfer(c.genesis.network, &client, payee, 5, 1);
    c.run(t, 0, NodeInput::Request(tx));
    assert_eq!(c.nodes[0].height(), 1);
    // How many of `count` fetches from `peer` at `now` replica 0 answers.
    let mut served = |peer: u32, now: Time, count: usize| {
        let node = &mut c.nodes[0];
        let mut answered = 0;
        for _ in 0..count {
            let fetch = Message::Fetch {
                from: Seq(1),
                to: Seq(u64::MAX),
            };
            node.handle(
                now,
                NodeInput::Message {
                    from: ReplicaId(peer),
                    message: fetch,
                },
            )
            .unwrap();
            answered += drain(node)
                .iter()
                .filter(|o| {
                    matches!(o, Outgoing::ToReplica { to, message: Message::Batches(b) }
                        if *to == ReplicaId(peer) && b.len() == 1)
                })
                .count();
        }
        answered
    };
    // A burst of four, then nothing until time passes; peers are separate.
    assert_eq!(served(1, t, 10), 4);
    assert_eq!(served(2, t, 1), 1);
    assert_eq!(served(1, t.plus_millis(20), 3), 1);
    assert_eq!(served(1, t.plus_millis(1_000), 10), 4);
    assert_eq!(c.nodes[0].fetches_refused(), 6 + 2 + 6);
}

#[test]
fn a_replica_restarted_behind_an_idle_network_catches_up() {
    let client = KeyPair::from_label("idle-laggard-client");
    let payee = KeyPair::from_label("idle-laggard-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    // Replica 3 is down while three transfers commit at the others.
    c.down.push(3);
    for nonce in 1..=3 {
        let tx = Transaction::transfer(net, &client, payee, 1, nonce);
        let replies = c.run(now, 0, NodeInput::Request(tx));
        assert_eq!(replies.len(), 3, "{replies:?}");
    }
    assert_eq!(c.nodes[0].height(), 3);
    assert_eq!(c.nodes[3].height(), 0);

    // It restarts; nobody sends anything new. Its own start (a tick) is
    // enough: it asks a peer for what it missed and executes it.
    c.down.clear();
    c.restart(3);
    c.run(now, 3, NodeInput::Tick);
    assert_eq!(c.nodes[3].height(), 3);
    assert_eq!(c.nodes[3].tip(), c.nodes[0].tip());
}

/// Issue 17, defect 12: a replica whose store was wiped (a new disk, a
/// deleted data directory) starts at height 0 and, with nobody sending
/// anything new, asks its peers for what it lacks all the same.
#[test]
fn a_replica_on_a_wiped_store_catches_up_on_an_idle_network() {
    let client = KeyPair::from_label("wiped-client");
    let payee = KeyPair::from_label("wiped-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    for nonce in 1..=3 {
        let tx = Transaction::transfer(net, &client, payee, 1, nonce);
        let replies = c.run(now, 0, NodeInput::Request(tx));
        assert!(replies.len() >= 3, "{replies:?}");
    }
    assert_eq!(c.nodes[3].height(), 3);
    c.stores[3] = MemoryStore::new();
    c.restart(3);
    assert_eq!(c.nodes[3].height(), 0);
    c.run(now, 3, NodeInput::Tick);
    assert_eq!(c.nodes[3].height(), 3);
    assert_eq!(c.nodes[3].tip(), c.nodes[0].tip());
}

/// Issue 17, defect 10: a fetch answer is cut at a byte budget (at least
/// one block), so blocks of 4,096 transfers never make an answer over the
/// frame cap; the fetcher asks again from where it got to.
#[test]
fn fetch_answers_are_cut_at_a_byte_budget() {
    use pbft_ledger::node::persist::{committed_batch_bytes, read_committed};
    let client = KeyPair::from_label("fetch-bytes-client");
    let payee = KeyPair::from_label("fetch-bytes-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    for nonce in 1..=3 {
        let tx = Transaction::transfer(net, &client, payee, 1, nonce);
        c.run(now, 0, NodeInput::Request(tx));
    }
    let store = &c.stores[0];
    let all = read_committed(store, 1, 3, usize::MAX).unwrap();
    assert_eq!(all.len(), 3);
    let one = committed_batch_bytes(&all[0]);
    assert_eq!(
        read_committed(store, 1, 3, 1).unwrap().len(),
        1,
        "at least one"
    );
    let two = one + committed_batch_bytes(&all[1]);
    assert_eq!(read_committed(store, 1, 3, two).unwrap().len(), 2);
    const { assert!(pbft_ledger::node::FETCH_REPLY_BYTES_MAX < pbft_ledger::codec::FRAME_BYTES_MAX) };
}
