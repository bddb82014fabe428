//! The replica's store: one typed home for everything a replica keeps on
//! disk, over a [`Store`].
//!
//! [`ReplicaStore`] owns every key and encoding (the layout is in
//! [`persist`](super::persist), which says what each key means) and every
//! read and write a replica makes of them: opening a store — initialising
//! it from genesis, or checking that it belongs to this network, schema and
//! replica and recovering the chain, the application state and the consensus
//! state as a [`Recovered`] — the core's [`PersistOp`]s, executed blocks
//! with their commit certificates, state changes, transaction index and
//! tip, the clean stop's saved votes and marker, and the reads that serve
//! catch-up, resent requests and observers. `Node` calls these methods and
//! never names a key.
//!
//! Writes that `Node` groups (group commit: see `Unsynced` in `node`) are
//! built here as [`WriteBatch`]es and handed back to it unwritten; `Node`
//! decides when they become durable ([`ReplicaStore::write_group`],
//! [`ReplicaStore::write_group_unsynced`], [`ReplicaStore::sync`]) and what
//! waits for them. The writes made at once — the initialisation of an empty
//! store, the removal of a clean stop's marker at a start, and the clean
//! stop itself — are each one synced write.

use super::persist::{self, StoredBlock, TxLocation};
use super::CommittedBlock;
use crate::consensus::messages::{Commit, CommittedBatch};
use crate::consensus::{PersistOp, Recovered};
use crate::crypto::{Digest, PublicKey, Signed};
use crate::genesis::Genesis;
use crate::ledger::bank::Bank;
use crate::ledger::{self, ChainTip, Executed, StateMachine};
use crate::storage::{Cf, StorageError, Store, WriteBatch};
use crate::tx::Receipt;
use crate::types::{ReplicaId, Seq, View};

/// A replica's [`Store`], read and written only through typed methods.
pub struct ReplicaStore<S: Store> {
    store: S,
}

/// What a store held when it was opened: the state to run from.
pub struct Opened {
    pub bank: Bank,
    pub tip: ChainTip,
    /// The bank's state root (checked against the tip's).
    pub state_root: Digest,
    /// The consensus state, for `Replica::new`.
    pub recovered: Recovered,
}

/// The record binding a store to its replica: id (u32, big-endian) and
/// public key.
fn replica_identity(me: ReplicaId, key: &PublicKey) -> Vec<u8> {
    let mut v = me.0.to_be_bytes().to_vec();
    v.extend_from_slice(&key.0);
    v
}

/// "replica 1 (key ab12cd34…)" for an identity record, or what is wrong
/// with it.
fn describe_identity(record: &[u8]) -> String {
    match record.split_first_chunk::<4>() {
        Some((id, key)) if key.len() == 32 => format!(
            "replica {} (key {}…)",
            u32::from_be_bytes(*id),
            &hex::encode(key)[..16]
        ),
        _ => format!("a replica record of {} bytes", record.len()),
    }
}

impl<S: Store> ReplicaStore<S> {
    /// The network id a store records (its genesis record), read before
    /// anything else: `None` for a store never initialised.
    pub fn genesis_record(store: &S) -> Result<Option<Vec<u8>>, StorageError> {
        store.get(Cf::Meta, persist::KEY_GENESIS)
    }

    /// Opens the store of replica `me` (public key `key`) of `genesis`:
    /// initialises an empty store from genesis, or checks that the store is
    /// this network's, of this schema and this replica's, and recovers it.
    /// `recorded` is the replica's view record, kept apart from the store
    /// (`ViewRecord`): an empty store with a record, or a store behind it,
    /// lost votes (`Recovered::store_lost`). With `run`, a clean stop's
    /// marker is taken away (durably) before anything else happens, so a
    /// crash of this run is never mistaken for a clean stop; without it
    /// (`inspect`), an existing store is only read.
    pub fn open(
        mut store: S,
        genesis: &Genesis,
        me: ReplicaId,
        key: &PublicKey,
        recorded: Option<View>,
        run: bool,
    ) -> Result<(ReplicaStore<S>, Opened), StorageError> {
        let network = genesis.network.0;
        let mut existed = false;
        let identity = replica_identity(me, key);
        match Self::genesis_record(&store)? {
            Some(g) if g != network.0 => {
                return Err(StorageError::GenesisMismatch {
                    expected: network.to_hex(),
                    found: hex::encode(g),
                })
            }
            Some(_) => existed = true,
            None => {
                // Only a store with nothing in it is initialised: records
                // without a genesis record are damage, or another program's.
                for cf in Cf::ALL {
                    if let Some((k, _)) = store.last(cf)? {
                        return Err(StorageError::Corrupt(format!(
                            "the store holds {} records (key {}) but no genesis record; refusing to initialise over them",
                            cf.name(),
                            hex::encode(k)
                        )));
                    }
                }
                let mut bank = Bank::new(&genesis.balances).map_err(StorageError::Corrupt)?;
                let mut batch = WriteBatch::default();
                for (k, v) in bank.take_changes() {
                    if let Some(v) = v {
                        batch.put(Cf::State, k, v);
                    }
                }
                batch.put(
                    Cf::Meta,
                    persist::KEY_SCHEMA,
                    persist::SCHEMA_VERSION.to_be_bytes().to_vec(),
                );
                batch.put(Cf::Meta, persist::KEY_REPLICA, identity.clone());
                batch.put(Cf::Meta, persist::KEY_GENESIS, network.0.to_vec());
                store.write(batch)?;
            }
        }
        let schema = store
            .get(Cf::Meta, persist::KEY_SCHEMA)?
            .ok_or_else(|| StorageError::Corrupt("the store has no schema record".into()))?;
        let found = u32::from_be_bytes(schema.as_slice().try_into().map_err(|_| {
            StorageError::Corrupt(format!(
                "the schema record is {} bytes, not 4",
                schema.len()
            ))
        })?);
        if found != persist::SCHEMA_VERSION {
            return Err(StorageError::Schema {
                expected: persist::SCHEMA_VERSION,
                found,
            });
        }
        // Issue 24, defect 8: a store is bound to the replica that wrote
        // it. Replica 2 on replica 1's data directory would vote with
        // replica 1's history (and replica 1's own votes would be lost).
        match store.get(Cf::Meta, persist::KEY_REPLICA)? {
            Some(found) if found == identity => {}
            Some(found) => {
                return Err(StorageError::OtherReplica {
                    expected: describe_identity(&identity),
                    found: describe_identity(&found),
                })
            }
            None => {
                return Err(StorageError::Corrupt(
                    "the store does not record which replica it belongs to".into(),
                ))
            }
        }
        let mut bank = Bank::default();
        let records = store.scan(Cf::State, &[], &[0xff; 33], usize::MAX)?;
        bank.import(&records).map_err(StorageError::Corrupt)?;
        let state_root = bank.state_root();
        let tip = match store.get(Cf::Meta, persist::KEY_TIP)? {
            None => ChainTip::genesis(network),
            Some(v) => {
                let (height, block_hash, timestamp_ms, root) = persist::decode_tip(&v)?;
                if root != state_root {
                    return Err(StorageError::Corrupt(format!(
                        "application state does not match the state root recorded at height {height}"
                    )));
                }
                ChainTip {
                    height,
                    block_hash,
                    timestamp_ms,
                }
            }
        };
        let k = genesis.config().checkpoint_interval;
        // Votes saved by a clean stop are in the log now; the marker goes
        // (durably) before this run signs anything, so a crash of this run
        // is never mistaken for a clean stop.
        let saved = store.get(Cf::Consensus, persist::KEY_SAVED)?.is_some();
        if saved && run {
            let mut batch = WriteBatch::default();
            batch.delete(Cf::Consensus, persist::KEY_SAVED);
            store.write(batch)?;
        }
        let ops = persist::load_ops(&store)?;
        // The store must be the one this replica voted with: the view record,
        // kept apart from it, says how far the replica got. An empty store
        // with a record, or a store behind the record, lost votes.
        let stored_view = ops
            .iter()
            .filter_map(|op| match op {
                PersistOp::View { view, changing_to } => {
                    Some((*view).max(changing_to.unwrap_or(*view)))
                }
                _ => None,
            })
            .max()
            .unwrap_or(View(0));
        let store_lost = recorded.filter(|recorded| !existed || *recorded > stored_view);
        let recovered = Recovered {
            ops,
            last_executed: Seq(tip.height),
            last_checkpoint_digest: (tip.height > 0 && tip.height.is_multiple_of(k))
                .then(|| ledger::checkpoint_digest(tip.block_hash, state_root)),
            // A start without a clean stop's marker on a store that existed
            // is a restart after a crash: the votes of the view it crashed
            // in that were never written are lost (the core then writes the
            // `Abstain` rule, which every later start reads back).
            votes_lost: existed && !saved,
            store_lost,
        };
        Ok((
            ReplicaStore { store },
            Opened {
                bank,
                tip,
                state_root,
                recovered,
            },
        ))
    }

    /// The write of the core's `Persist` ops (a consensus write), for the
    /// group.
    pub fn ops_write(&self, ops: &[PersistOp]) -> WriteBatch {
        let mut batch = WriteBatch::default();
        persist::add_ops(&mut batch, ops);
        batch
    }

    /// The write of an executed block, for the group, as one atomic batch:
    /// the block (header and batch bytes) at `seq`, its commit certificate,
    /// the state's changes (`state_changes`, from the bank), the index
    /// entry of every transaction that executed (a stale-nonce replay keeps
    /// the location of its first execution) and the new tip. `tx_ids` are
    /// the ids of the batch's transactions, in order.
    pub fn block_write(
        &mut self,
        seq: Seq,
        executed: &Executed,
        tx_ids: &[Digest],
        batch_bytes: &[u8],
        certificate: &Vec<Signed<Commit>>,
        state_changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<WriteBatch, StorageError> {
        let mut wb = WriteBatch::default();
        let block = StoredBlock {
            header: executed.header,
            batch_bytes: batch_bytes.to_vec(),
        };
        wb.put(Cf::Blocks, persist::block_key(seq.0), block.encode());
        wb.put(
            Cf::Certs,
            seq.0.to_be_bytes().to_vec(),
            persist::encode_certificate(certificate),
        );
        for (k, v) in state_changes {
            match v {
                Some(v) => wb.put(Cf::State, k, v),
                None => wb.delete(Cf::State, k),
            }
        }
        crate::teeth::write_state_alone(
            &mut wb.writes,
            |w| w.cf == Cf::State,
            |writes| {
                self.store.write(WriteBatch {
                    writes,
                    delete_ranges: Vec::new(),
                })
            },
        )?;
        for (i, (id, receipt)) in tx_ids.iter().zip(&executed.receipts).enumerate() {
            if *receipt != Receipt::StaleNonce {
                let loc = TxLocation {
                    height: seq.0,
                    index: i as u32,
                    receipt: *receipt,
                };
                wb.put(
                    Cf::Blocks,
                    persist::tx_key(id),
                    persist::encode_tx_location(&loc),
                );
            }
        }
        wb.put(
            Cf::Meta,
            persist::KEY_TIP,
            persist::encode_tip(
                seq.0,
                &executed.block_hash,
                executed.header.timestamp_ms,
                &executed.state_root_after,
            ),
        );
        Ok(wb)
    }

    /// A clean stop's write, synced: the votes the core never wrote while
    /// it ran (`Replica::unsaved_votes`) with the marker that says they are
    /// saved, in one batch.
    pub fn save_votes(&mut self, votes: &[PersistOp]) -> Result<(), StorageError> {
        let mut batch = self.ops_write(votes);
        batch.put(Cf::Consensus, persist::KEY_SAVED, Vec::new());
        self.store.write(batch)
    }

    /// Writes a group atomically and returns once it is durable
    /// ([`Store::write_group`]).
    pub fn write_group(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError> {
        self.store.write_group(batches)
    }

    /// Writes a group atomically, readable at once, durable with the next
    /// sync ([`Store::write_group_unsynced`]).
    pub fn write_group_unsynced(&mut self, batches: Vec<WriteBatch>) -> Result<(), StorageError> {
        self.store.write_group_unsynced(batches)
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.store.sync()
    }

    /// The underlying store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, StorageError> {
        persist::read_block(&self.store, height)
    }

    pub fn certificate(&self, height: u64) -> Result<Option<Vec<Signed<Commit>>>, StorageError> {
        persist::read_certificate(&self.store, height)
    }

    /// Where a transaction executed, if it did.
    pub fn tx(&self, id: &Digest) -> Result<Option<TxLocation>, StorageError> {
        persist::read_tx(&self.store, id)
    }

    /// Committed batches `from..=to` with their certificates for a peer
    /// catching up, at most `bytes_max` of them (at least one).
    pub fn committed(
        &self,
        from: u64,
        to: u64,
        bytes_max: usize,
    ) -> Result<Vec<CommittedBatch>, StorageError> {
        persist::read_committed(&self.store, from, to, bytes_max)
    }

    /// The committed-block event of a stored height, rebuilt from the
    /// block and the transaction index. A transaction without an index
    /// entry at this height was a stale-nonce replay.
    pub fn committed_block(&self, height: u64) -> Result<Option<CommittedBlock>, StorageError> {
        let Some(block) = self.block(height)? else {
            return Ok(None);
        };
        let batch = block.batch()?;
        let mut txs = Vec::with_capacity(batch.txs.len());
        for (i, tx) in batch.txs.iter().enumerate() {
            let id = tx.id();
            let receipt = match self.tx(&id)? {
                Some(loc) if loc.height == height && loc.index == i as u32 => loc.receipt,
                _ => Receipt::StaleNonce,
            };
            txs.push((id, tx.from, tx.nonce, receipt));
        }
        Ok(Some(CommittedBlock {
            height,
            block_hash: block.header.hash(),
            batch_digest: block.header.batch_digest,
            txs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Config;
    use crate::crypto::KeyPair;
    use crate::storage::memory::MemoryStore;

    fn genesis(chain: &str) -> (Genesis, Vec<KeyPair>) {
        let keys: Vec<KeyPair> = (0..4)
            .map(|i| KeyPair::from_label(&format!("replica-store-{i}")))
            .collect();
        let addrs: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", 9000 + i),
                    format!("127.0.0.1:{}", 9100 + i),
                )
            })
            .collect();
        let client = KeyPair::from_label("replica-store-client").public();
        let g = crate::genesis::build(
            chain,
            &keys.iter().map(|k| k.public()).collect::<Vec<_>>(),
            &addrs,
            &[(client, 100)],
            Config::default(),
        )
        .expect("valid genesis");
        (g, keys)
    }

    fn open(
        store: &MemoryStore,
        g: &Genesis,
        key: &KeyPair,
        recorded: Option<View>,
        run: bool,
    ) -> Result<Recovered, StorageError> {
        ReplicaStore::open(store.clone(), g, ReplicaId(0), &key.public(), recorded, run)
            .map(|(_, opened)| opened.recovered)
    }

    fn saved(store: &MemoryStore) -> bool {
        store
            .get(Cf::Consensus, persist::KEY_SAVED)
            .unwrap()
            .is_some()
    }

    /// The flags a start gives the core: a first start lost nothing; a
    /// start without a clean stop's marker lost the votes it never wrote;
    /// a clean stop's marker says none were lost, and is taken away by a
    /// start that runs (not by one that inspects); a view record ahead of
    /// the store, or any record with an empty store, says the store was
    /// lost.
    #[test]
    fn opening_recovers_the_saved_votes_lost_and_store_lost_flags() {
        let (g, keys) = genesis("replica-store");
        let store = MemoryStore::new();
        let r = open(&store, &g, &keys[0], None, true).unwrap();
        assert!(!r.votes_lost && r.store_lost.is_none() && r.ops.is_empty());
        // A start without the marker: a crash.
        let r = open(&store, &g, &keys[0], None, true).unwrap();
        assert!(r.votes_lost);
        // A clean stop (one vote-less save) and a look at the store.
        let (mut s, _) = ReplicaStore::open(
            store.clone(),
            &g,
            ReplicaId(0),
            &keys[0].public(),
            None,
            false,
        )
        .unwrap();
        s.save_votes(&[PersistOp::View {
            view: View(2),
            changing_to: None,
        }])
        .unwrap();
        assert!(saved(&store));
        let r = open(&store, &g, &keys[0], None, false).unwrap();
        assert!(!r.votes_lost);
        assert!(saved(&store), "inspecting keeps the marker");
        let r = open(&store, &g, &keys[0], Some(View(2)), true).unwrap();
        assert!(!r.votes_lost && r.store_lost.is_none());
        assert_eq!(r.ops.len(), 1);
        assert!(!saved(&store), "a start takes the marker away");
        let r = open(&store, &g, &keys[0], None, true).unwrap();
        assert!(r.votes_lost, "after the start, a crash again");
        // The record is ahead of the store's view: lost.
        let r = open(&store, &g, &keys[0], Some(View(3)), true).unwrap();
        assert_eq!(r.store_lost, Some(View(3)));
        // An empty store with a record: lost, and nothing else lost.
        let r = open(&MemoryStore::new(), &g, &keys[0], Some(View(0)), true).unwrap();
        assert_eq!(r.store_lost, Some(View(0)));
        assert!(!r.votes_lost);
    }

    /// A store of another network, of another schema version, or whose
    /// state does not match its tip is refused, and nothing is written.
    #[test]
    fn foreign_old_and_inconsistent_stores_are_refused() {
        let (g, keys) = genesis("replica-store");
        let (other, _) = genesis("replica-store-other");
        let store = MemoryStore::new();
        open(&store, &g, &keys[0], None, true).unwrap();
        let dump = |s: &MemoryStore| {
            Cf::ALL
                .iter()
                .flat_map(|cf| s.scan(*cf, &[], &[0xff; 64], usize::MAX).unwrap())
                .collect::<Vec<_>>()
        };
        let before = dump(&store);
        assert!(matches!(
            open(&store, &other, &keys[0], None, true),
            Err(StorageError::GenesisMismatch { .. })
        ));
        assert_eq!(dump(&store), before);

        let mut old = store.clone();
        let mut batch = WriteBatch::default();
        batch.put(Cf::Meta, persist::KEY_SCHEMA, 2u32.to_be_bytes().to_vec());
        old.write(batch).unwrap();
        match open(&store, &g, &keys[0], None, true) {
            Err(StorageError::Schema { expected, found }) => {
                assert_eq!((expected, found), (persist::SCHEMA_VERSION, 2))
            }
            other => panic!("opened a store of schema 2: {:?}", other.err()),
        }

        let store = MemoryStore::new();
        open(&store, &g, &keys[0], None, true).unwrap();
        let mut s = store.clone();
        let mut batch = WriteBatch::default();
        batch.put(
            Cf::Meta,
            persist::KEY_TIP,
            persist::encode_tip(1, &Digest([1; 32]), 5, &Digest([2; 32])),
        );
        s.write(batch).unwrap();
        let Err(e) = open(&store, &g, &keys[0], None, true) else {
            panic!("opened a store whose state does not match its tip");
        };
        assert!(
            e.to_string().contains("does not match the state root"),
            "{e}"
        );
    }

    /// The store's format, pinned: a scenario that writes every kind of
    /// record (genesis, blocks, certificates, the transaction index, the
    /// tip, state, votes, prepared certificates, a stable checkpoint that
    /// deletes below it, VIEW-CHANGE and NEW-VIEW, the clean stop's marker
    /// and a crash's abstain rule) leaves exactly these bytes in the four
    /// stores. Existing data directories must open: a change of key or
    /// encoding fails here.
    #[test]
    fn the_store_format_is_unchanged() {
        use crate::node::{Node, NodeInput, Outgoing};
        use crate::tx::Transaction;
        use crate::types::Time;
        use std::collections::VecDeque;
        let keys: Vec<KeyPair> = (0..4)
            .map(|i| KeyPair::from_label(&format!("store-format-{i}")))
            .collect();
        let client = KeyPair::from_label("store-format-client");
        let payee = KeyPair::from_label("store-format-payee").public();
        let addrs: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    format!("127.0.0.1:{}", 9000 + i),
                    format!("127.0.0.1:{}", 9100 + i),
                )
            })
            .collect();
        let genesis = crate::genesis::build(
            "store-format",
            &keys.iter().map(|k| k.public()).collect::<Vec<_>>(),
            &addrs,
            &[(client.public(), 1_000)],
            Config {
                checkpoint_interval: 2,
                ..Config::default()
            },
        )
        .expect("valid genesis");
        let stores: Vec<MemoryStore> = (0..4).map(|_| MemoryStore::new()).collect();
        let open = |i: usize| {
            let mut node = Node::open(
                &genesis,
                ReplicaId(i as u32),
                keys[i].clone(),
                stores[i].clone(),
            )
            .expect("opens");
            node.set_wall_clock(1_700_000_000_000);
            node
        };
        let mut nodes: Vec<Node<MemoryStore>> = (0..4).map(open).collect();
        // Delivers `first` and every message it causes among the replicas
        // not `down`, in order.
        let run = |nodes: &mut Vec<Node<MemoryStore>>,
                   now: Time,
                   first: (usize, NodeInput),
                   down: &[usize]| {
            let mut queue = VecDeque::from([first]);
            while let Some((r, input)) = queue.pop_front() {
                if down.contains(&r) {
                    continue;
                }
                nodes[r].handle(now, input).expect("node step");
                while let Some(o) = nodes[r].pop_outgoing() {
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
                        Outgoing::ToClient { .. } => {}
                    }
                }
            }
        };
        let net = genesis.network;
        let tx = |nonce| NodeInput::Request(Transaction::transfer(net, &client, payee, 1, nonce));
        let mut now = Time::from_millis(1_000);
        // Three blocks in view 0: a stable checkpoint at 2.
        for nonce in 1..=3 {
            run(&mut nodes, now, (0, tx(nonce)), &[]);
            now = now.plus_millis(10);
        }
        // The primary is down: the backups change to view 1 and order a
        // fourth block there.
        run(&mut nodes, now, (1, tx(4)), &[0]);
        run(&mut nodes, now, (2, tx(4)), &[0]);
        run(&mut nodes, now, (3, tx(4)), &[0]);
        for _ in 0..3 {
            now = now.plus_millis(5_000);
            for r in 1..4 {
                run(&mut nodes, now, (r, NodeInput::Tick), &[0]);
            }
        }
        // A resend of an executed request, answered from the index.
        run(&mut nodes, now, (2, tx(1)), &[0]);
        // Clean stops for 0, 1 and 2 (0 restarts, 1 stays stopped with its
        // marker); 3 crashes and restarts.
        for node in nodes.iter_mut().take(3) {
            node.save_votes().expect("saves");
        }
        nodes[0] = open(0);
        nodes[3] = open(3);
        now = now.plus_millis(10);
        run(&mut nodes, now, (3, NodeInput::Tick), &[1]);
        for n in &mut nodes {
            n.sync_written().expect("syncs");
        }
        assert!(nodes[2].height() >= 4, "height {}", nodes[2].height());
        let mut all = blake3::Hasher::new();
        for store in &stores {
            for cf in Cf::ALL {
                for (k, v) in store.scan(cf, &[], &[0xff; 64], usize::MAX).unwrap() {
                    all.update(cf.name().as_bytes());
                    all.update(&(k.len() as u64).to_be_bytes());
                    all.update(&k);
                    all.update(&(v.len() as u64).to_be_bytes());
                    all.update(&v);
                }
            }
        }
        let heights: Vec<u64> = nodes.iter().map(|n| n.height()).collect();
        let views: Vec<View> = nodes.iter().map(|n| n.replica().view()).collect();
        assert_eq!(
            (heights, views, all.finalize().to_hex().to_string()),
            (
                vec![3, 4, 4, 4],
                vec![View(0), View(1), View(1), View(1)],
                "60a0e47d2a8c9ded8875d52a7cb2bac3f9f1cabf87d6b06bf7bcdde68ace502a".to_string()
            )
        );
    }
}
