//! Four nodes (core + ledger + store) in memory, driven directly, for the
//! node tests (`node.rs`, `node_clients.rs`, `node_catch_up.rs`).

use pbft_ledger::consensus::messages::{Message, Reply, ReplyChecker};
use pbft_ledger::consensus::Config;
use pbft_ledger::crypto::{KeyPair, NetworkId, PublicKey};
use pbft_ledger::genesis::{self, Genesis};
use pbft_ledger::node::{Node, NodeInput, Outgoing};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::storage::{Cf, Store};
use pbft_ledger::tx::Transaction;
use pbft_ledger::types::{ReplicaId, Time};
use std::collections::VecDeque;

/// Four replicas, each a [`Node`] on its own [`MemoryStore`], and the
/// messages between them delivered by hand.
pub struct Cluster {
    pub genesis: Genesis,
    pub keys: Vec<KeyPair>,
    pub stores: Vec<MemoryStore>,
    pub nodes: Vec<Node<MemoryStore>>,
    /// Replicas that receive nothing (down).
    pub down: Vec<usize>,
}

impl Cluster {
    pub fn new(accounts: &[(PublicKey, u64)]) -> Cluster {
        Cluster::with_config(accounts, Config::default())
    }

    pub fn with_config(accounts: &[(PublicKey, u64)], config: Config) -> Cluster {
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
            config,
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
            down: Vec::new(),
        }
    }

    /// Delivers `input` to replica `to`, then every message between replicas
    /// until none is left; returns the replies to clients.
    pub fn run(&mut self, now: Time, to: usize, input: NodeInput) -> Vec<(usize, Reply)> {
        self.run_all(now, VecDeque::from([(to, input)]))
    }

    /// Replica `r` restarts from its store.
    pub fn restart(&mut self, r: usize) {
        self.nodes[r] = Node::open(
            &self.genesis,
            ReplicaId(r as u32),
            self.keys[r].clone(),
            self.stores[r].clone(),
        )
        .expect("reopens");
    }

    /// Delivers every queued input and every message they cause, one input
    /// per synced write; returns the replies to clients.
    pub fn run_all(
        &mut self,
        now: Time,
        mut queue: VecDeque<(usize, NodeInput)>,
    ) -> Vec<(usize, Reply)> {
        let mut replies = Vec::new();
        while let Some((r, input)) = queue.pop_front() {
            if self.down.contains(&r) {
                continue;
            }
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
                    Outgoing::ToClient { reply, proof, .. } => {
                        // What the client will check: the proof, signed by `r`.
                        let (signer, checked) = ReplyChecker::default()
                            .check(&self.genesis.verifier, &proof)
                            .expect("reply proof holds");
                        assert_eq!(signer.index(), r);
                        assert_eq!(checked, reply);
                        replies.push((r, reply));
                    }
                }
            }
        }
        replies
    }
}

/// Our own votes in a store (PRE-PREPARE, PREPARE and COMMIT records).
pub fn stored_votes(store: &MemoryStore) -> usize {
    store
        .scan(Cf::Consensus, b"o", b"p", usize::MAX)
        .expect("scan")
        .len()
}

/// What the node sends, but for the FETCHes of the probe every start makes
/// (for blocks committed while it was down, or since genesis on an empty
/// store), which these tests do not look at.
pub fn drain(node: &mut Node<MemoryStore>) -> Vec<Outgoing> {
    std::iter::from_fn(|| node.pop_outgoing())
        .filter(|o| {
            !matches!(
                o,
                Outgoing::ToReplica {
                    message: Message::Fetch { .. },
                    ..
                }
            )
        })
        .collect()
}

/// The one message a replica broadcast among `sent`, of the kind `pick`
/// selects.
pub fn broadcast_of(sent: &[Outgoing], pick: fn(&Message) -> bool) -> Message {
    let found: Vec<&Message> = sent
        .iter()
        .filter_map(|o| match o {
            Outgoing::Broadcast(m) if pick(m) => Some(m),
            _ => None,
        })
        .collect();
    let [one] = found.as_slice() else {
        panic!("one such broadcast expected: {sent:?}");
    };
    (*one).clone()
}

/// `n` clients (keys labelled `{label}-{i}`) and the genesis accounts that
/// fund each of them with 100.
pub fn funded_clients(label: &str, n: usize) -> (Vec<KeyPair>, Vec<(PublicKey, u64)>) {
    let clients: Vec<KeyPair> = (0..n)
        .map(|i| KeyPair::from_label(&format!("{label}-{i}")))
        .collect();
    let accounts = clients.iter().map(|k| (k.public(), 100)).collect();
    (clients, accounts)
}

/// One transfer of `amount` to `payee` from each of `clients`, nonce 1.
pub fn first_transfers(
    net: NetworkId,
    clients: &[KeyPair],
    payee: PublicKey,
    amount: u64,
) -> Vec<Transaction> {
    clients
        .iter()
        .map(|k| Transaction::transfer(net, k, payee, amount, 1))
        .collect()
}
