//! Nodes (core + ledger + store) driven directly, four of them in memory.
//!
//! * Replies survive a restart: a replica that executed a transfer and then
//!   restarted still answers a client that re-sends it (its in-memory reply
//!   cache is gone, so the reply is signed afresh from the transaction
//!   index). Without it, a client whose replies were lost could stay below
//!   f+1 matching replies for ever (found by a silent-primary campaign seed).
//! * Group commit: inputs ingested together share one synced write, nothing
//!   that depends on a vote in it leaves before it, and a crash before it
//!   loses them whole. A block's replies need no sync (the block committed,
//!   which is durable at a quorum): they leave at once, and a replica that
//!   crashes before its block is written executes it again, identically —
//!   even when every replica loses its block to a power loss.
//! * A replica's PRE-PREPAREs and PREPAREs are written only by a clean stop;
//!   restarted after a crash, a primary proposes nothing in that view — nor
//!   after a later clean stop and start (the rule is written and kept).
//! * A replica restarted behind an idle network catches up by itself.
//! * A transaction is verified once per replica: a PRE-PREPARE may carry
//!   one the backup already holds (checked on arrival), but anything else —
//!   the same sender and nonce with another signature included — is checked.

use pbft_ledger::consensus::messages::{Message, PrePrepare, Reply, ReplyChecker};
use pbft_ledger::consensus::Config;
use pbft_ledger::crypto::{KeyPair, Payload, PublicKey};
use pbft_ledger::genesis::{self, Genesis};
use pbft_ledger::node::{Node, NodeInput, Outgoing};
use pbft_ledger::storage::memory::MemoryStore;
use pbft_ledger::storage::{Cf, Store};
use pbft_ledger::tx::{batch_digest, Batch, Receipt, Transaction, VerifiedTx};
use pbft_ledger::types::{ReplicaId, Seq, Time, View};
use std::collections::VecDeque;

struct Cluster {
    genesis: Genesis,
    keys: Vec<KeyPair>,
    stores: Vec<MemoryStore>,
    nodes: Vec<Node<MemoryStore>>,
    /// Replicas that receive nothing (down).
    down: Vec<usize>,
}

impl Cluster {
    fn new(accounts: &[(PublicKey, u64)]) -> Cluster {
        Cluster::with_config(accounts, Config::default())
    }

    fn with_config(accounts: &[(PublicKey, u64)], config: Config) -> Cluster {
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
    fn run(&mut self, now: Time, to: usize, input: NodeInput) -> Vec<(usize, Reply)> {
        self.run_all(now, VecDeque::from([(to, input)]))
    }

    /// Replica `r` restarts from its store.
    fn restart(&mut self, r: usize) {
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
    fn run_all(
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
    c.restart(2);
    let again = c.run(now, 2, NodeInput::Request(tx.clone()));
    assert_eq!(again.len(), 1, "{again:?}");
    let (from, reply) = &again[0];
    assert_eq!(*from, 2);
    assert_eq!(
        (reply.tx_id, reply.seq, reply.receipt, reply.nonce),
        (tx.id(), Seq(1), Receipt::Ok, 1)
    );

    // A different transfer with the same (already used) nonce never executed:
    // it is answered with the reply of the one that did (cached again by the
    // answer above), so its client learns of the conflict.
    let other = Transaction::transfer(c.genesis.network, &client, payee, 8, 1);
    let conflict = c.run(now, 2, NodeInput::Request(other.clone()));
    assert_eq!(conflict.len(), 1, "{conflict:?}");
    assert_eq!(
        conflict[0].1.tx_id,
        tx.id(),
        "the executed transaction's reply"
    );
    assert_ne!(conflict[0].1.tx_id, other.id());
}

/// Issue 24, defect 5: an executed request resent after its reply left the
/// cache is answered from the transaction index without syncing the
/// replica's unwritten group (before, each such resend flushed it: a sync
/// each, and the group's votes written early), and at a bounded rate per
/// client (each answer costs a signature).
#[test]
fn resent_executed_requests_force_no_sync_and_are_answered_at_a_bounded_rate() {
    let client = KeyPair::from_label("replay-client");
    let other = KeyPair::from_label("replay-other");
    let payee = KeyPair::from_label("replay-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100), (other.public(), 100)]);
    let net = c.genesis.network;
    let mut now = Time::from_millis(1_000);
    let first = Transaction::transfer(net, &client, payee, 1, 1);
    assert_eq!(c.run(now, 0, NodeInput::Request(first.clone())).len(), 4);
    // Nonce 2 executes too: the cache now holds nonce 2's reply, not 1's.
    let second = Transaction::transfer(net, &client, payee, 1, 2);
    assert_eq!(c.run(now, 0, NodeInput::Request(second)).len(), 4);

    // Replica 2 has an unwritten vote: a PREPARE for another client's
    // transfer, ingested but not flushed.
    let pending = Transaction::transfer(net, &other, payee, 1, 1);
    c.nodes[0]
        .handle(now, NodeInput::Request(pending))
        .expect("primary proposes");
    let pre_prepare = broadcast_of(&drain(&mut c.nodes[0]), |m| {
        matches!(m, Message::PrePrepare { .. })
    });
    let votes = stored_votes(&c.stores[2]);
    c.nodes[2]
        .ingest(
            now,
            NodeInput::Message {
                from: ReplicaId(0),
                message: pre_prepare,
            },
        )
        .expect("backup prepares");
    assert_eq!(
        stored_votes(&c.stores[2]),
        votes,
        "the vote is not written yet"
    );
    c.nodes[2]
        .ingest(now, NodeInput::Request(first.clone()))
        .expect("resend");
    assert_eq!(
        stored_votes(&c.stores[2]),
        votes,
        "a resent executed request forced the group's write"
    );
    c.nodes[2].flush().expect("flush");
    let answered = |sent: Vec<Outgoing>| {
        sent.into_iter()
            .filter(|o| matches!(o, Outgoing::ToClient { reply, .. } if reply.tx_id == first.id()))
            .count()
    };
    assert_eq!(
        answered(drain(&mut c.nodes[2])),
        1,
        "answered from the index"
    );

    // Resent again and again at one instant: the burst is answered, then
    // nothing until the client's allowance grows back.
    let mut replies = 0;
    for _ in 0..20 {
        c.nodes[2]
            .handle(now, NodeInput::Request(first.clone()))
            .expect("resend");
        replies += answered(drain(&mut c.nodes[2]));
    }
    assert!(
        (2..=4).contains(&replies),
        "{replies} replies to 20 quick resends"
    );
    assert!(c.nodes[2].replays_refused() >= 16);
    now = now.plus_millis(1_000);
    c.nodes[2]
        .handle(now, NodeInput::Request(first.clone()))
        .expect("resend later");
    assert_eq!(answered(drain(&mut c.nodes[2])), 1, "answered again later");
}

/// Issue 24, defect 5: replies to resent, executed requests that are not
/// cached are signed together — one signature for those of one block that
/// arrive in one group (before: one signature per resend).
#[test]
fn resent_requests_of_one_block_are_answered_under_one_signature() {
    let clients: Vec<KeyPair> = (0..3)
        .map(|i| KeyPair::from_label(&format!("batch-replay-{i}")))
        .collect();
    let payee = KeyPair::from_label("batch-replay-payee").public();
    let accounts: Vec<(PublicKey, u64)> = clients.iter().map(|k| (k.public(), 100)).collect();
    let mut c = Cluster::new(&accounts);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let txs: Vec<Transaction> = clients
        .iter()
        .map(|k| Transaction::transfer(net, k, payee, 1, 1))
        .collect();
    // One block: the primary takes all three in one group.
    let queue = txs
        .iter()
        .map(|tx| (0, NodeInput::Request(tx.clone())))
        .collect();
    let replies = c.run_all(now, queue);
    // The first request went alone (the primary proposed at once); the other
    // two waited and share the next block.
    let shared: Vec<&Transaction> = txs
        .iter()
        .filter(|tx| {
            replies
                .iter()
                .any(|(_, r)| r.tx_id == tx.id() && r.seq == Seq(2))
        })
        .collect();
    assert_eq!(shared.len(), 2, "{replies:?}");
    // Replica 2 restarts (its cache is gone); both are resent at once.
    c.restart(2);
    drain(&mut c.nodes[2]);
    for tx in shared {
        c.nodes[2]
            .ingest(now, NodeInput::Request(tx.clone()))
            .expect("resend");
    }
    c.nodes[2].flush().expect("flush");
    let proofs: Vec<_> = drain(&mut c.nodes[2])
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::ToClient { reply, proof, .. } => Some((reply, proof)),
            _ => None,
        })
        .collect();
    assert_eq!(proofs.len(), 2, "each resend answered");
    for (reply, proof) in &proofs {
        let (_, checked) = ReplyChecker::default()
            .check(&c.genesis.verifier, proof)
            .expect("the proof holds");
        assert_eq!(checked, *reply);
        assert_eq!(proof.root, proofs[0].1.root, "one signature for the block");
    }
}

/// A transfer its payer can afford only after an incoming one: the primary,
/// one block behind the backups when it arrives, refuses it (insufficient
/// funds) while the backups hold it. Once the primary executes that block it
/// reconsiders the refusal and orders the transfer. Before, it never did,
/// and the backups' request timers replaced an honest primary (a
/// view-change-storm campaign seed reported it as L3).
#[test]
fn a_primary_admits_a_transfer_it_refused_once_the_funds_arrive() {
    let funder = KeyPair::from_label("later-funder");
    let payer = KeyPair::from_label("later-payer");
    let payee = KeyPair::from_label("later-payee").public();
    let mut c = Cluster::new(&[(funder.public(), 100), (payer.public(), 1)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    // The backups execute the funding alone (the primary hears nothing back).
    let fund = Transaction::transfer(net, &funder, payer.public(), 50, 1);
    c.nodes[0]
        .handle(now, NodeInput::Request(fund))
        .expect("primary proposes");
    let proposal = broadcast_of(&drain(&mut c.nodes[0]), |m| {
        matches!(m, Message::PrePrepare { .. })
    });
    c.down = vec![0];
    let queue = (1..4)
        .map(|r| {
            (
                r,
                NodeInput::Message {
                    from: ReplicaId(0),
                    message: proposal.clone(),
                },
            )
        })
        .collect();
    c.run_all(now, queue);
    assert!((1..4).all(|r| c.nodes[r].height() == 1));
    assert_eq!(c.nodes[0].height(), 0);
    // The payer's transfer reaches everyone: the primary refuses it.
    let pay = Transaction::transfer(net, &payer, payee, 20, 1);
    for r in 0..4 {
        c.nodes[r]
            .handle(now, NodeInput::Request(pay.clone()))
            .expect("request");
        drain(&mut c.nodes[r]);
    }
    assert_eq!(c.nodes[0].requests_unfunded(), 1);
    // The primary catches up (its retransmission draws the backups' votes)
    // and must now order the transfer, in view 0.
    c.down.clear();
    let replies = c.run(now.plus_millis(600), 0, NodeInput::Tick);
    let paid: Vec<&Reply> = replies
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.tx_id == pay.id())
        .collect();
    assert!(
        paid.len() >= 2
            && paid
                .iter()
                .all(|r| r.receipt == Receipt::Ok && r.view == View(0)),
        "{replies:?}"
    );
}

/// Issue 24, defect 3: senders that never executed a transfer fill at most
/// three quarters of a replica's pending set; the rest is kept for senders
/// that executed before. Before, newcomers (each sending once) filled it
/// all and an established client was turned away.
#[test]
fn newcomers_fill_at_most_three_quarters_of_the_pending_set() {
    let veteran = KeyPair::from_label("share-veteran");
    let newcomers: Vec<KeyPair> = (0..8)
        .map(|i| KeyPair::from_label(&format!("share-newcomer-{i}")))
        .collect();
    let payee = KeyPair::from_label("share-payee").public();
    let mut accounts = vec![(veteran.public(), 100)];
    accounts.extend(newcomers.iter().map(|k| (k.public(), 100)));
    let config = Config {
        pending_requests_max: 8,
        pending_per_client_max: 4,
        ..Config::default()
    };
    let mut c = Cluster::with_config(&accounts, config);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let first = Transaction::transfer(net, &veteran, payee, 1, 1);
    assert_eq!(c.run(now, 0, NodeInput::Request(first)).len(), 4);
    // Backup 1 hears each newcomer (it holds them pending; only the
    // primary proposes).
    for k in &newcomers {
        let tx = Transaction::transfer(net, k, payee, 1, 1);
        c.nodes[1]
            .handle(now, NodeInput::Request(tx))
            .expect("ingest");
        drain(&mut c.nodes[1]);
    }
    assert_eq!(c.nodes[1].footprint().pending_requests, 6);
    assert_eq!(c.nodes[1].requests_deferred(), 2);
    let again = Transaction::transfer(net, &veteran, payee, 1, 2);
    assert!(!c.nodes[1].deferral(&again));
    c.nodes[1]
        .handle(now, NodeInput::Request(again))
        .expect("ingest");
    assert_eq!(
        c.nodes[1].footprint().pending_requests,
        7,
        "a sender that executed before is still admitted"
    );
}

/// Our own votes in a store (PRE-PREPARE, PREPARE and COMMIT records).
fn stored_votes(store: &MemoryStore) -> usize {
    store
        .scan(Cf::Consensus, b"o", b"p", usize::MAX)
        .expect("scan")
        .len()
}

/// What the node sends, but for the FETCHes of the probe every start makes
/// (for blocks committed while it was down, or since genesis on an empty
/// store), which these tests do not look at.
fn drain(node: &mut Node<MemoryStore>) -> Vec<Outgoing> {
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

#[test]
fn group_commit_holds_everything_until_the_flush_and_a_crash_loses_the_group() {
    let clients: Vec<KeyPair> = (0..3)
        .map(|i| KeyPair::from_label(&format!("group-client-{i}")))
        .collect();
    let payee = KeyPair::from_label("group-payee").public();
    let accounts: Vec<(PublicKey, u64)> = clients.iter().map(|k| (k.public(), 100)).collect();
    let mut c = Cluster::new(&accounts);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let txs: Vec<Transaction> = clients
        .iter()
        .map(|k| Transaction::transfer(net, k, payee, 5, 1))
        .collect();

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

/// The one message a replica broadcast among `sent`, of the kind `pick`
/// selects.
fn broadcast_of(sent: &[Outgoing], pick: fn(&Message) -> bool) -> Message {
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
fn a_held_transaction_is_not_verified_again_but_a_variant_of_it_is() {
    let client = KeyPair::from_label("held-client");
    let payee = KeyPair::from_label("held-payee").public();
    let mut c = Cluster::new(&[(client.public(), 100)]);
    let net = c.genesis.network;
    let now = Time::from_millis(1_000);
    let tx = Transaction::transfer(net, &client, payee, 5, 1);
    // Backup 1 holds the transfer, sent to it by the client.
    let held = VerifiedTx::check(tx.clone(), net).expect("well signed");
    c.nodes[1]
        .handle(now, NodeInput::VerifiedRequest(held))
        .unwrap();
    // The primary's key signs PRE-PREPAREs (a Byzantine primary would).
    let pre_prepare = |seq: u64, txs: Vec<Transaction>| {
        let batch = Batch {
            timestamp_ms: now.as_millis(),
            txs,
        }
        .encode();
        let pp = PrePrepare {
            view: View(0),
            seq: Seq(seq),
            digest: batch_digest(&batch),
        };
        let signed = c.keys[0].sign(net, ReplicaId(0), pp).into_signed();
        NodeInput::Message {
            from: ReplicaId(0),
            message: Message::PrePrepare {
                pre_prepare: signed,
                batch,
            },
        }
    };
    let bad_signature = "pre-prepare: batch holds a badly signed transaction";
    let refused = |n: &Node<MemoryStore>| {
        n.replica()
            .stats()
            .ignored
            .get(bad_signature)
            .copied()
            .unwrap_or(0)
    };
    // Same sender and nonce, another amount, the held transfer's signature:
    // not what the backup holds, so it is checked, and refused.
    let mut variant = tx.clone();
    variant.amount = 6;
    let input = pre_prepare(1, vec![variant]);
    c.nodes[1].handle(now, input).unwrap();
    assert_eq!(refused(&c.nodes[1]), 1);
    assert!(drain(&mut c.nodes[1]).is_empty(), "no PREPARE for it");
    // The held transfer itself is accepted and prepared.
    let input = pre_prepare(1, vec![tx.clone()]);
    c.nodes[1].handle(now, input).unwrap();
    assert_eq!(refused(&c.nodes[1]), 1);
    let sent = drain(&mut c.nodes[1]);
    assert!(
        matches!(sent.as_slice(), [Outgoing::Broadcast(Message::Prepare(_))]),
        "{sent:?}"
    );
    // A backup that does not hold it checks the signature: a forged one is
    // refused there too.
    let mut forged = tx.clone();
    forged.signature[0] ^= 1;
    let input = pre_prepare(1, vec![forged]);
    c.nodes[2].handle(now, input).unwrap();
    assert_eq!(refused(&c.nodes[2]), 1);
}

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
