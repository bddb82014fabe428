//! Replies survive a restart: a replica that executed a transfer and then
//! restarted still answers a client that re-sends it (its in-memory reply
//! cache is gone, so the reply is signed afresh from the transaction index).
//! Without it, a client whose replies were lost could stay below f+1
//! matching replies for ever (found by a silent-primary campaign seed).

use pbft_ledger::consensus::messages::Reply;
use pbft_ledger::consensus::Config;
use pbft_ledger::crypto::{KeyPair, PublicKey};
use pbft_ledger::genesis::{self, Genesis};
use pbft_ledger::node::{Node, NodeInput, Outgoing};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::tx::{Receipt, Transaction};
use pbft_ledger::types::{ReplicaId, Seq, Time};
use std::collections::VecDeque;

struct Cluster {
    genesis: Genesis,
    keys: Vec<KeyPair>,
    stores: Vec<MemoryStore>,
    nodes: Vec<Node<MemoryStore>>,
}

impl Cluster {
    fn new(accounts: &[(PublicKey, u64)]) -> Cluster {
        let keys: Vec<KeyPair> = (0..4)
            .map(|i| KeyPair::from_label(&format!("node-replies-{i}")))
            .collect();
        let addrs: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", 9000 + i),
                    format!("127.0.0.1:{}", 9100 + i),
                )
            })
            .collect();
        let genesis = genesis::build(
            "node-replies",
            &keys.iter().map(|k| k.public()).collect::<Vec<_>>(),
            &addrs,
            accounts,
            Config::default(),
        )
        .expect("valid genesis");
        let stores: Vec<MemoryStore> = (0..4).map(|_| MemoryStore::new()).collect();
        let nodes = (0..4)
            .map(|i| {
                Node::open(
                    &genesis,
                    ReplicaId(i),
                    keys[i as usize].clone(),
                    stores[i as usize].clone(),
                )
                .expect("opens")
            })
            .collect();
        Cluster {
            genesis,
            keys,
            stores,
            nodes,
        }
    }

    /// Delivers `input` to replica `to`, then every message between replicas
    /// until none is left; returns the replies to clients.
    fn run(&mut self, now: Time, to: usize, input: NodeInput) -> Vec<(usize, Reply)> {
        let mut queue: VecDeque<(usize, NodeInput)> = VecDeque::from([(to, input)]);
        let mut replies = Vec::new();
        while let Some((r, input)) = queue.pop_front() {
            self.nodes[r].handle(now, input).expect("node step");
            while let Some(o) = self.nodes[r].pop_outgoing() {
                let from = ReplicaId(r as u32);
                match o {
                    Outgoing::ToReplica { to, message } => {
                        queue.push_back((to.index(), NodeInput::Message { from, message }))
                    }
                    Outgoing::Broadcast(message) => {
                        for t in (0..4).filter(|t| *t != r) {
                            queue.push_back((
                                t,
                                NodeInput::Message {
                                    from,
                                    message: message.clone(),
                                },
                            ));
                        }
                    }
                    Outgoing::ToClient { reply, .. } => {
                        let v = self.genesis.verifier.verify(&reply).expect("signed reply");
                        replies.push((r, *v.value()));
                    }
                }
            }
        }
        replies
    }
}

#[test]
fn replica_restarted_after_executing_still_replies() {
    let client = KeyPair::from_label("node-replies-client");
    let payee = KeyPair::from_label("node-replies-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let tx = Transaction::transfer(c.genesis.network, &client, payee, 7, 1);
    let now = Time::from_millis(1_000);
    // The primary alone hears it; the others learn it from its PRE-PREPARE.
    let replies = c.run(now, 0, NodeInput::Request(tx.clone()));
    let first: Vec<&Reply> = replies.iter().map(|(_, r)| r).collect();
    assert_eq!(first.len(), 4, "every replica replied once: {first:?}");
    assert!(first
        .iter()
        .all(|r| r.receipt == Receipt::Ok && r.seq == Seq(1)));

    // Replica 2 restarts from its store and the client re-sends the transfer.
    c.nodes[2] = Node::open(
        &c.genesis,
        ReplicaId(2),
        c.keys[2].clone(),
        c.stores[2].clone(),
    )
    .expect("reopens");
    let again = c.run(now, 2, NodeInput::Request(tx.clone()));
    assert_eq!(again.len(), 1, "{again:?}");
    let (from, reply) = &again[0];
    assert_eq!(*from, 2);
    assert_eq!(
        (reply.tx_id, reply.seq, reply.receipt, reply.nonce),
        (tx.id(), Seq(1), Receipt::Ok, 1)
    );

    // A different transfer with the same (already used) nonce never executed:
    // no reply for it.
    let other = Transaction::transfer(c.genesis.network, &client, payee, 8, 1);
    assert!(c.run(now, 2, NodeInput::Request(other)).is_empty());
}
