//! A replica wired to its ledger and store (L6), driven synchronously.
//!
//! [`Node`] owns the consensus [`Replica`], the bank, the chain tip and a
//! [`Store`]. It feeds inputs to the core and executes the core's actions in
//! order: `Persist` becomes a write; `Execute` builds the block, writes
//! block, certificate, state changes and transaction index as one write,
//! signs a reply per transaction and tells the core the checkpoint digest.
//! Writes are grouped (group commit): the driver [`Node::ingest`]s whatever
//! inputs have arrived, then [`Node::flush`] makes all their writes durable
//! in one synced, atomic store write. What they produced — messages,
//! replies, committed-block events — is released by the rule of
//! `Unsynced`: nothing leaves before the consensus state it depends on is
//! durable, and committed-block events wait for their block. The flush comes
//! in two halves ([`Node::begin_flush`], [`Node::finish_flush`]) so a driver
//! can send what is already released while the write syncs.
//! [`Node::handle`] is one input and its flush. Messages to send collect in
//! an outbox the driver drains — the tokio runtime for real replicas, the
//! simulator's network otherwise. The same `Node` runs in both.

pub mod config;
pub mod persist;
#[cfg(feature = "rocksdb")]
pub mod runtime;
pub mod service;

use crate::consensus::messages::{Message, Reply, ReplyProof};
use crate::consensus::pacer::Pacer;
use crate::consensus::{Action, Input, Recovered, Replica};
use crate::crypto::{Digest, KeyPair, PublicKey, Signed};
use crate::genesis::Genesis;
use crate::ledger::bank::{Account, Bank};
use crate::ledger::{self, ChainTip, StateMachine};
use crate::storage::{Cf, StorageError, Store, WriteBatch};
use crate::tx::Receipt;
use crate::types::{ReplicaId, Seq, Time, View};
use persist::{StoredBlock, TxLocation};
use std::collections::{BTreeMap, VecDeque};

/// Something for the driver to deliver.
#[derive(Clone, Debug)]
pub enum Outgoing {
    ToReplica {
        to: ReplicaId,
        message: Message,
    },
    Broadcast(Message),
    /// An executed transaction's reply, and the proof that this replica
    /// signed it (the client checks only `proof`).
    ToClient {
        client: PublicKey,
        reply: Reply,
        proof: ReplyProof,
    },
}

/// Input to a node.
#[derive(Clone, Debug)]
pub enum NodeInput {
    Message {
        from: ReplicaId,
        message: Message,
    },
    /// A client's transaction; the core checks its signature.
    Request(crate::tx::Transaction),
    /// A client's transaction whose signature the driver checked.
    VerifiedRequest(crate::tx::VerifiedTx),
    Tick,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store failed or holds something unusable; the replica must stop.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Largest fetch a node serves at once, whatever a peer asks for.
const SERVE_FETCH_MAX: u64 = 64;
/// Most bytes of blocks in one fetch answer (the rest is asked for next).
pub const FETCH_REPLY_BYTES_MAX: usize = crate::codec::FRAME_BYTES_MAX / 2;
/// Fetches served per peer: a burst of `FETCH_BURST`, then one per
/// `FETCH_INTERVAL_MS` (a correct replica catching up has one fetch out
/// at a time and rotates peers: a few per second per peer); the rest are
/// dropped, so a peer asking again and again cannot make us read and send
/// blocks without bound.
const FETCH_BURST: u64 = 4;
const FETCH_INTERVAL_MS: u64 = 20;
/// Replies signed afresh for resent, already executed requests whose reply
/// is no longer cached, per client: a burst of `REPLAY_BURST`, then one per
/// `REPLAY_INTERVAL_MS` (issue 24, defect 5: each cost a signature, and
/// before, a forced sync). A correct client resends a request a few times
/// at most; the others are dropped unanswered, and the client's next
/// resend, later, is answered.
const REPLAY_BURST: u64 = 4;
const REPLAY_INTERVAL_MS: u64 = 250;
/// Clients tracked by the replay pacer at once.
const REPLAY_CLIENTS_MAX: usize = 16_384;
/// Requests refused at admission kept to be reconsidered after later blocks
/// (`Node::reconsider_refused`); the oldest goes first.
const REFUSED_KEPT_MAX: usize = 1_024;

/// Writes awaiting their sync and everything that must wait for it.
///
/// The release rule. A consensus write (the core's `Persist`: a COMMIT with
/// its prepared certificate, a VIEW-CHANGE, the view, a checkpoint) holds
/// back every message and reply produced after it until the group is
/// synced: a peer or client must never see a vote this replica could forget.
/// An executed block's write holds back only the committed-block event.
/// Messages and replies produced after it leave at once (if no consensus
/// write precedes them): they depend on the block having *committed*, and
/// that is already durable — every COMMIT of the quorum was synced, with its
/// prepared certificate and batch, before it was sent, so a replica that
/// loses the block in a crash executes it again (from its certificate via a
/// view change, or from a peer's fetch), at the same height with the same
/// result. So the next PRE-PREPARE and the block's replies do not wait for
/// the block's fdatasync, which is off the commit path.
///
/// Nor does a group of block writes alone get an fdatasync of its own: it
/// is written unsynced ([`Store::write_group_unsynced`]: readable at once)
/// and made durable by the next synced write, which syncs everything before
/// it — in a running network the group of the next COMMIT, so a block costs
/// one fdatasync, not two. Its committed-block events wait for that sync in
/// `Node::awaiting_sync`; if none comes within `BLOCK_SYNC_DELAY_MS` (an
/// idle network) or `BLOCKS_UNSYNCED_MAX` blocks wait, the node syncs for
/// them alone.
#[derive(Default)]
struct Unsynced {
    batches: Vec<WriteBatch>,
    /// Whether a consensus write is among `batches` (messages wait).
    holds_messages: bool,
    outbox: VecDeque<Outgoing>,
    committed: VecDeque<CommittedBlock>,
}

/// The writes of one group, taken by [`Node::begin_flush`]: the driver makes
/// them durable (one synced, atomic write; with no batches, a sync of what
/// was written unsynced) and then calls [`Node::finish_flush`].
#[must_use = "the writes must be synced and the flush finished"]
pub struct PendingWrite {
    pub batches: Vec<WriteBatch>,
}

/// Longest a block written unsynced waits for a sync before the node syncs
/// for it alone (its committed-block event waits as long).
const BLOCK_SYNC_DELAY_MS: u64 = 20;
/// Most blocks written unsynced at once (bounds the events held for them).
const BLOCKS_UNSYNCED_MAX: usize = 64;

/// A committed-block event, for observers (the simulator's checker, logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBlock {
    pub height: u64,
    pub block_hash: Digest,
    pub batch_digest: Digest,
    /// Every transaction's id, sender, nonce and receipt, in block order.
    pub txs: Vec<(Digest, PublicKey, u64, crate::tx::Receipt)>,
}

/// The last view a replica entered, kept apart from its store (the runtime:
/// a small file in the replica's home, outside the data directory).
///
/// A replica's store holds the record of its votes; a wiped data directory,
/// a replaced volume or a backup put back loses some of it, and the replica
/// could then vote again, differently, where it voted before (issue 17,
/// defect 12). The view record survives that: a store that is empty while a
/// record exists, or whose view is behind the record, is known to be lost,
/// and the replica sends no PRE-PREPARE, PREPARE or COMMIT up to the
/// recorded view. A first start at genesis has no record. A view is recorded
/// before any vote of it leaves.
pub trait ViewRecord: Send {
    /// The highest view recorded, if any.
    fn last(&self) -> Option<View>;
    /// Records `view` durably if it is above the last one.
    fn record(&mut self, view: View) -> Result<(), StorageError>;
}

/// A [`ViewRecord`] in memory, shared by its clones (the simulator keeps
/// one per replica across restarts and wipes; [`Node::open`] uses a fresh
/// one, which never recognises a lost store).
#[derive(Clone, Default, Debug)]
pub struct MemoryViewRecord(std::sync::Arc<std::sync::Mutex<Option<View>>>);

impl ViewRecord for MemoryViewRecord {
    fn last(&self) -> Option<View> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn record(&mut self, view: View) -> Result<(), StorageError> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *v = (*v).max(Some(view));
        Ok(())
    }
}

/// A [`ViewRecord`] in a file: the view in decimal, replaced atomically
/// (written to a temporary file, synced, renamed, the directory synced).
pub struct FileViewRecord {
    path: std::path::PathBuf,
    last: Option<View>,
}

impl FileViewRecord {
    /// Reads the record at `path` (none if the file does not exist).
    pub fn open(path: std::path::PathBuf) -> Result<FileViewRecord, StorageError> {
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => Some(View(text.trim().parse().map_err(|_| {
                StorageError::Corrupt(format!(
                    "view record {} does not hold a view number",
                    path.display()
                ))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StorageError::Io(format!(
                    "cannot read view record {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(FileViewRecord { path, last })
    }
}

impl ViewRecord for FileViewRecord {
    fn last(&self) -> Option<View> {
        self.last
    }
    fn record(&mut self, view: View) -> Result<(), StorageError> {
        use std::io::Write;
        if self.last.is_some_and(|l| l >= view) {
            return Ok(());
        }
        let io = |e: std::io::Error| {
            StorageError::Io(format!("view record {}: {e}", self.path.display()))
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{}", view.0).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        self.last = Some(view);
        Ok(())
    }
}

/// Most clients whose last reply is kept. A resend beyond it is answered
/// from the transaction index instead (signed afresh), so the bound costs
/// only a signature for clients idle for a long time.
pub const REPLY_CACHE_MAX: usize = 65_536;

/// Each client's last reply, bounded by [`REPLY_CACHE_MAX`] entries (each
/// at most a reply and its merkle path: ≈ 1.3 KB): the client whose
/// latest reply is oldest is forgotten first.
#[derive(Default)]
struct ReplyCache {
    /// Client → (insertion number, reply, proof).
    map: BTreeMap<PublicKey, (u64, Reply, ReplyProof)>,
    /// Insertion number → client; an entry is live while `map` agrees.
    order: BTreeMap<u64, PublicKey>,
    next: u64,
}

impl ReplyCache {
    fn insert(&mut self, reply: Reply, proof: ReplyProof) {
        let n = self.next;
        self.next += 1;
        if let Some((old, ..)) = self.map.insert(reply.client, (n, reply, proof)) {
            self.order.remove(&old);
        }
        self.order.insert(n, reply.client);
        while self.map.len() > REPLY_CACHE_MAX {
            let Some((_, client)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&client);
        }
    }

    /// The cached reply for the client's `nonce`: for another transaction
    /// with that nonce too (its reply names the one that executed, so the
    /// client learns of the conflict).
    fn get(&self, client: &PublicKey, nonce: u64) -> Option<(Reply, ReplyProof)> {
        self.map
            .get(client)
            .filter(|(_, r, _)| r.nonce == nonce)
            .map(|(_, r, p)| (*r, p.clone()))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

pub struct Node<S: Store> {
    replica: Replica,
    bank: Bank,
    tip: ChainTip,
    state_root: Digest,
    store: S,
    key: KeyPair,
    me: ReplicaId,
    checkpoint_interval: u64,
    /// Each client's last reply (bounded: the oldest entries go first).
    reply_cache: ReplyCache,
    /// Replies to resent, executed requests not in the cache, signed at the
    /// end of the group ([`Node::sign_replays`]).
    replays: Vec<Reply>,
    view_record: Box<dyn ViewRecord>,
    requests_unfunded: u64,
    requests_deferred: u64,
    /// Requests refused at admission for a reason a later block may lift
    /// (see [`Node::reconsider_refused`]), with when they were refused.
    refused_for_now: VecDeque<(Time, crate::tx::Transaction)>,
    /// What may leave: everything produced before the first unsynced write.
    outbox: VecDeque<Outgoing>,
    committed: VecDeque<CommittedBlock>,
    /// Writes of ingested inputs not yet synced (group commit), and what was
    /// produced after them: released by [`Node::flush`] once synced.
    unsynced: Option<Unsynced>,
    /// Between [`Node::begin_flush`] and [`Node::finish_flush`].
    flushing: bool,
    /// Events of blocks written unsynced, released by the next sync; and
    /// when the first of them was written.
    awaiting_sync: VecDeque<CommittedBlock>,
    unsynced_since: Option<Time>,
    /// The latest time an input was ingested at.
    last_now: Time,
    /// Fetches served per peer (see `FETCH_BURST`).
    fetch_pacer: Pacer<ReplicaId>,
    /// Replies signed afresh per client (see `REPLAY_BURST`).
    replay_pacer: Pacer<PublicKey>,
    view_entered: Vec<View>,
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

impl<S: Store> Node<S> {
    /// Opens a node on `store` to run it: initialises an empty store from
    /// genesis, or recovers the chain, application state and consensus state
    /// from it (taking away a clean stop's marker, and asking the peers for
    /// what it may have missed).
    pub fn open(
        genesis: &Genesis,
        me: ReplicaId,
        key: KeyPair,
        store: S,
    ) -> Result<Node<S>, NodeError> {
        Node::open_with(
            genesis,
            me,
            key,
            store,
            Box::<MemoryViewRecord>::default(),
            true,
        )
    }

    /// [`Node::open`] with the replica's view record, kept apart from the
    /// store (see [`ViewRecord`]): a store that is empty or behind it is
    /// recognised as lost, and the replica sends no vote in the views it
    /// may have voted in with it.
    pub fn open_recorded(
        genesis: &Genesis,
        me: ReplicaId,
        key: KeyPair,
        store: S,
        view_record: Box<dyn ViewRecord>,
    ) -> Result<Node<S>, NodeError> {
        Node::open_with(genesis, me, key, store, view_record, true)
    }

    /// Opens an existing store only to look at it (`pbft-replica inspect`):
    /// as [`Node::open`], but the store keeps a clean stop's marker and
    /// nothing is asked of the peers. The node must not be run.
    pub fn open_to_inspect(
        genesis: &Genesis,
        me: ReplicaId,
        key: KeyPair,
        store: S,
    ) -> Result<Node<S>, NodeError> {
        Node::open_with(
            genesis,
            me,
            key,
            store,
            Box::<MemoryViewRecord>::default(),
            false,
        )
    }

    fn open_with(
        genesis: &Genesis,
        me: ReplicaId,
        key: KeyPair,
        mut store: S,
        mut view_record: Box<dyn ViewRecord>,
        run: bool,
    ) -> Result<Node<S>, NodeError> {
        let network = genesis.network.0;
        let mut existed = false;
        let identity = replica_identity(me, &key.public());
        match store.get(Cf::Meta, persist::KEY_GENESIS)? {
            Some(g) if g != network.0 => {
                return Err(StorageError::GenesisMismatch {
                    expected: network.to_hex(),
                    found: hex::encode(g),
                }
                .into())
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
                        ))
                        .into());
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
            }
            .into());
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
                }
                .into())
            }
            None => {
                return Err(StorageError::Corrupt(
                    "the store does not record which replica it belongs to".into(),
                )
                .into())
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
                    ))
                    .into());
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
                crate::consensus::PersistOp::View { view, changing_to } => {
                    Some((*view).max(changing_to.unwrap_or(*view)))
                }
                _ => None,
            })
            .max()
            .unwrap_or(View(0));
        let store_lost = view_record
            .last()
            .filter(|recorded| !existed || *recorded > stored_view);
        let recovered = Recovered {
            ops,
            last_executed: Seq(tip.height),
            last_checkpoint_digest: (tip.height > 0 && tip.height.is_multiple_of(k))
                .then(|| ledger::checkpoint_digest(tip.block_hash, state_root)),
            votes_lost: existed && !saved,
            store_lost,
        };
        let mut replica = Replica::new(
            genesis.config().clone(),
            genesis.cluster,
            me,
            key.clone(),
            genesis.verifier.clone(),
            recovered,
        );
        replica.defer_proposals(true);
        if run {
            view_record.record(replica.view())?;
        }
        if run {
            // The others may have gone on while we were down — or, on an
            // empty store (a new replica, or one whose disk was wiped or
            // replaced), since genesis — and an idle network would never
            // show it: ask (issue 17, defect 12: a wiped replica stayed at
            // height 0 on an idle network until the next transfer).
            replica.probe_for_missed_batches();
        }
        Ok(Node {
            replica,
            bank,
            tip,
            state_root,
            store,
            key,
            me,
            checkpoint_interval: k,
            reply_cache: ReplyCache::default(),
            replays: Vec::new(),
            view_record,
            requests_unfunded: 0,
            requests_deferred: 0,
            refused_for_now: VecDeque::new(),
            outbox: VecDeque::new(),
            committed: VecDeque::new(),
            unsynced: None,
            flushing: false,
            awaiting_sync: VecDeque::new(),
            unsynced_since: None,
            last_now: Time(0),
            fetch_pacer: Pacer::new(FETCH_BURST, FETCH_INTERVAL_MS, 1024),
            replay_pacer: Pacer::new(REPLAY_BURST, REPLAY_INTERVAL_MS, REPLAY_CLIENTS_MAX),
            view_entered: Vec::new(),
        })
    }

    /// Handles one input and executes every resulting action; its writes
    /// are synced before it returns.
    pub fn handle(&mut self, now: Time, input: NodeInput) -> Result<(), NodeError> {
        self.ingest(now, input)?;
        self.flush()
    }

    /// Sets the wall clock batch timestamps and the skew check use
    /// (milliseconds since the Unix epoch; see `Replica::set_wall_clock`).
    /// The `now` of [`Node::ingest`] runs the timers and is monotonic.
    pub fn set_wall_clock(&mut self, wall_ms: u64) {
        self.replica.set_wall_clock(wall_ms);
    }

    /// Handles one input like [`Node::handle`], but its writes join one
    /// batch with those of the other inputs ingested since the last
    /// [`Node::flush`] (group commit: one synced write for many inputs).
    /// Nothing produced after the first such write — messages, replies,
    /// committed-block events — leaves before the flush, so no peer or
    /// client ever sees a vote or a block that is not durable. A crash
    /// before the flush loses the batch whole, which is the same as the
    /// crash happening before those inputs arrived (they count as lost
    /// messages, which PBFT tolerates). In-memory state runs ahead of the
    /// store until then; the store is read only after a flush.
    pub fn ingest(&mut self, now: Time, input: NodeInput) -> Result<(), NodeError> {
        self.last_now = self.last_now.max(now);
        match input {
            NodeInput::Message {
                from,
                message: Message::Fetch { from: lo, to: hi },
            } => {
                if self.fetch_allowed(from, now) {
                    self.flush()?;
                    self.serve_fetch(from, lo, hi)?
                }
            }
            NodeInput::Message { from, message } => {
                self.replica.on_input(now, Input::Message { from, message })
            }
            NodeInput::Request(tx) => {
                if self.admissible(&tx) && !self.answer_executed(&tx)? {
                    self.replica.on_input(now, Input::Request(tx))
                }
            }
            NodeInput::VerifiedRequest(tx) => {
                if self.admissible(&tx) && !self.answer_executed(&tx)? {
                    self.replica.on_input(now, Input::VerifiedRequest(tx))
                }
            }
            NodeInput::Tick => self.replica.on_input(now, Input::Tick),
        }
        let height = self.tip.height;
        self.run_actions(now)?;
        if self.tip.height != height && !self.refused_for_now.is_empty() {
            self.reconsider_refused(now);
            self.run_actions(now)?;
        }
        Ok(())
    }

    /// After blocks executed: requests refused at admission because the
    /// sender lacked an account or funds, or its nonce was too far ahead,
    /// are admitted now if they no longer would fail and their nonce is
    /// still unused; they are kept for one request timeout at most,
    /// [`REFUSED_KEPT_MAX`] of them. (A refusal says "it would fail now";
    /// as anyone may resend the signed bytes, a client that gave up a
    /// refused transfer must still treat it as able to execute until its
    /// nonce is used.) Replicas
    /// execute a block at slightly different times, so a transfer that its
    /// payer could afford only after an incoming one was refused by the
    /// primary alone and held by the backups: their request timers then
    /// replaced an honest primary (a view-change-storm campaign seed, L3).
    fn reconsider_refused(&mut self, now: Time) {
        // One request timeout: before the backups holding it suspect us.
        let keep_ms = self.replica.config().request_timeout_ms;
        let waiting = std::mem::take(&mut self.refused_for_now);
        for (at, tx) in waiting {
            if now.saturating_sub_millis(at) > keep_ms {
                continue;
            }
            let fresh = self
                .bank
                .account(&tx.from)
                .is_some_and(|a| tx.nonce > a.nonce);
            if !fresh {
                // Its nonce was used meanwhile (by another transfer of the
                // client's): it can never execute.
                continue;
            }
            if self.refusal(&tx).is_none() {
                // Its signature is checked again by the core (it may never
                // have been: a refusal comes first).
                self.replica.on_input(now, Input::Request(tx));
            } else {
                self.refused_for_now.push_back((at, tx));
            }
        }
    }

    /// Whether a client's request may be held and ordered: see
    /// [`Node::refusal`]. Counts the refused ones.
    fn admissible(&mut self, tx: &crate::tx::Transaction) -> bool {
        if let Some(receipt) = self.refusal(tx) {
            self.requests_unfunded += 1;
            if matches!(
                receipt,
                Receipt::UnknownAccount | Receipt::InsufficientFunds | Receipt::NonceTooFar
            ) && !self.refused_for_now.iter().any(|(_, t)| t == tx)
            {
                self.refused_for_now.push_back((self.last_now, tx.clone()));
                if self.refused_for_now.len() > REFUSED_KEPT_MAX {
                    self.refused_for_now.pop_front();
                }
            }
            return false;
        }
        if self.deferral(tx) {
            self.requests_deferred += 1;
            return false;
        }
        true
    }

    /// Whether a request is turned away for now (the client hears "busy"
    /// and resends later): its sender already has as many requests pending
    /// as one may, the pending set is full, or it is three quarters full
    /// and the sender never executed a transfer — the last quarter is kept
    /// for senders that executed before (issue 24, defect 3: any number of
    /// funded keys, each sending once, could fill the whole set and keep
    /// every established client out). Before, a request the full set
    /// dropped was never answered: its client waited out its timeout.
    pub fn deferral(&self, tx: &crate::tx::Transaction) -> bool {
        if self.replica.holds_pending(tx) {
            return false;
        }
        let (mine, mine_max) = self.replica.pending_of(&tx.from);
        if mine >= mine_max {
            return true;
        }
        let newcomer = self.bank.account(&tx.from).is_none_or(|a| a.nonce == 0);
        let max = self.replica.config().pending_requests_max;
        let held = self.replica.pending_len();
        held >= max || (newcomer && held >= max - max / 4)
    }

    /// The receipt a client's request would execute with at this height,
    /// if it would fail: such a request is not held or ordered (issue 24,
    /// defect 3). Anything an unfunded key signs fails, so throwaway keys
    /// would only fill the pending set, the blocks and the reply cache (they
    /// cost a client nothing); so would transfers beyond the balance and
    /// nonces too far ahead. A used nonce is not refused here: it is
    /// answered from the reply cache or the transaction index. A replica
    /// behind the funding transfer refuses too; the others order it.
    pub fn refusal(&self, tx: &crate::tx::Transaction) -> Option<Receipt> {
        let Some(account) = self.bank.account(&tx.from) else {
            return Some(Receipt::UnknownAccount);
        };
        if tx.nonce <= account.nonce {
            None
        } else if tx.nonce - account.nonce > crate::tx::NONCE_AHEAD_MAX {
            Some(Receipt::NonceTooFar)
        } else if tx.amount == 0 || tx.from == tx.to {
            Some(Receipt::Invalid)
        } else if account.balance < tx.amount {
            Some(Receipt::InsufficientFunds)
        } else {
            None
        }
    }

    /// Sizes of every bounded structure of the core and the node (S8).
    pub fn footprint(&self) -> crate::consensus::Footprint {
        crate::consensus::Footprint {
            reply_cache: self.reply_cache.len(),
            ..self.replica.footprint()
        }
    }

    /// The bounds [`Node::footprint`] must stay within.
    pub fn footprint_limits(&self) -> crate::consensus::Footprint {
        crate::consensus::Footprint {
            reply_cache: REPLY_CACHE_MAX,
            ..self.replica.footprint_limits()
        }
    }

    /// Client requests refused because they would fail (see
    /// [`Node::refusal`]).
    pub fn requests_unfunded(&self) -> u64 {
        self.requests_unfunded
    }

    /// Client requests from newcomers turned away while the pending set was
    /// three quarters full (see [`Node::deferral`]).
    pub fn requests_deferred(&self) -> u64 {
        self.requests_deferred
    }

    /// Whether the request's nonce already executed; if so, its reply (if
    /// any, see [`Node::already_executed`]) goes to the client again.
    fn answer_executed(&mut self, tx: &crate::tx::Transaction) -> Result<bool, NodeError> {
        let Some(reply) = self.already_executed(tx)? else {
            return Ok(false);
        };
        if let Some((reply, proof)) = reply {
            self.push_out(Outgoing::ToClient {
                client: tx.from,
                reply,
                proof,
            });
        }
        Ok(true)
    }

    /// Queues something to send: held back while a consensus write is
    /// unsynced (the release rule of `Unsynced`).
    fn push_out(&mut self, out: Outgoing) {
        match &mut self.unsynced {
            Some(u) if u.holds_messages => u.outbox.push_back(out),
            _ => self.outbox.push_back(out),
        }
    }

    /// Records a committed block for observers: held back like messages.
    fn push_committed(&mut self, block: CommittedBlock) {
        match &mut self.unsynced {
            Some(u) => u.committed.push_back(block),
            None if !self.awaiting_sync.is_empty() => self.awaiting_sync.push_back(block),
            None => self.committed.push_back(block),
        }
    }

    /// Adds `batch` to the unsynced write; a consensus write (`holds`)
    /// holds back the messages produced after it.
    fn write_later(&mut self, batch: WriteBatch, holds: bool) {
        assert!(
            !self.flushing,
            "a write was produced between begin_flush and finish_flush"
        );
        let u = self.unsynced.get_or_insert_with(Unsynced::default);
        u.batches.push(batch);
        u.holds_messages |= holds;
    }

    /// Writes every ingested input's writes in one atomic write — synced
    /// unless they are blocks alone (see `Unsynced`) — then releases what
    /// waited for it. A no-op when nothing is unsynced.
    pub fn flush(&mut self) -> Result<(), NodeError> {
        if let Some(pending) = self.begin_flush()? {
            self.write_pending(pending)?;
        }
        self.finish_flush();
        Ok(())
    }

    /// The first half of [`Node::flush`]: lets a primary propose what the
    /// group brought, then takes the group's writes if they need a sync (a
    /// group of blocks alone is written here, unsynced, unless blocks
    /// written so are due a sync). What is already released
    /// ([`Node::pop_outgoing`]) may be sent while they sync; nothing may be
    /// ingested until [`Node::finish_flush`].
    pub fn begin_flush(&mut self) -> Result<Option<PendingWrite>, NodeError> {
        self.sign_replays();
        // A primary batches every request the group brought.
        self.replica.propose_now(self.last_now);
        self.run_actions(self.last_now)?;
        let sync_due = self
            .block_sync_deadline()
            .is_some_and(|at| at <= self.last_now)
            || self.awaiting_sync.len() >= BLOCKS_UNSYNCED_MAX;
        match self.unsynced.take() {
            Some(u) if !u.holds_messages && !sync_due => {
                // Blocks alone: no message waits for them (see `Unsynced`).
                debug_assert!(u.outbox.is_empty());
                self.store.write_group_unsynced(u.batches)?;
                self.unsynced_since.get_or_insert(self.last_now);
                self.awaiting_sync.extend(u.committed);
                Ok(None)
            }
            Some(mut u) => {
                let batches = std::mem::take(&mut u.batches);
                self.unsynced = Some(u);
                self.flushing = true;
                Ok(Some(PendingWrite { batches }))
            }
            None if sync_due => {
                self.flushing = true;
                Ok(Some(PendingWrite {
                    batches: Vec::new(),
                }))
            }
            None => Ok(None),
        }
    }

    /// Syncs the blocks written unsynced now, without waiting for their
    /// deadline, and releases their events (the end of a simulation; a
    /// running replica syncs them within `BLOCK_SYNC_DELAY_MS`).
    pub fn sync_written(&mut self) -> Result<(), NodeError> {
        self.flush()?;
        if !self.awaiting_sync.is_empty() {
            self.store.sync()?;
            self.committed.extend(self.awaiting_sync.drain(..));
            self.unsynced_since = None;
        }
        Ok(())
    }

    /// When blocks written unsynced are due a sync of their own.
    fn block_sync_deadline(&self) -> Option<Time> {
        self.unsynced_since
            .map(|t| t.plus_millis(BLOCK_SYNC_DELAY_MS))
    }

    /// Makes `pending` durable through this node's own store.
    pub fn write_pending(&mut self, pending: PendingWrite) -> Result<(), NodeError> {
        if pending.batches.is_empty() {
            self.store.sync()?;
        } else {
            self.store.write_group(pending.batches)?;
        }
        Ok(())
    }

    /// The second half of [`Node::flush`], once the writes taken by
    /// [`Node::begin_flush`] are durable: releases what waited for them —
    /// and for the blocks written unsynced before them, which the sync
    /// covered. A no-op if `begin_flush` took nothing.
    pub fn finish_flush(&mut self) {
        if !std::mem::take(&mut self.flushing) {
            return;
        }
        self.committed.extend(self.awaiting_sync.drain(..));
        self.unsynced_since = None;
        if let Some(u) = self.unsynced.take() {
            debug_assert!(u.batches.is_empty(), "writes taken by begin_flush");
            self.outbox.extend(u.outbox);
            self.committed.extend(u.committed);
        }
    }

    /// For a clean stop: makes everything ingested durable, then saves the
    /// PRE-PREPAREs and PREPAREs this replica signed in its current view
    /// (never written while it runs) with the marker that says so, so the
    /// next start keeps voting in the view. Nothing may be handled after it.
    pub fn save_votes(&mut self) -> Result<(), NodeError> {
        self.flush()?;
        let mut batch = WriteBatch::default();
        persist::add_ops(&mut batch, &self.replica.unsaved_votes());
        batch.put(Cf::Consensus, persist::KEY_SAVED, Vec::new());
        self.store.write(batch)?;
        Ok(())
    }

    /// Writes ingested but not yet synced (each input's `Persist` and
    /// block counts one).
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.as_ref().map_or(0, |u| u.batches.len())
    }

    /// `Some(reply or None)` if the request's nonce already executed: the
    /// cached reply, or one signed afresh from the transaction index (the
    /// cache is in memory: after a restart, a client whose replies were lost
    /// would otherwise never hear f+1 of them again — a silent-primary seed
    /// left a client resending for ever), or `None` for a nonce that was
    /// superseded and never executed as this transaction.
    fn already_executed(
        &mut self,
        tx: &crate::tx::Transaction,
    ) -> Result<Option<Option<(Reply, ReplyProof)>>, NodeError> {
        let Some(account) = self.bank.account(&tx.from) else {
            return Ok(None);
        };
        if tx.nonce > account.nonce {
            return Ok(None);
        }
        let id = tx.id();
        let cached = self.reply_cache.get(&tx.from, tx.nonce);
        if cached.is_some() {
            return Ok(Some(cached));
        }
        // Issue 24, defect 5: no forced sync (before, every uncached resend
        // flushed the group: a sync each) and a bounded rate of signatures.
        // The index holds every block written, synced or not; a block still
        // in the unwritten group has its replies in the cache, unless 65,536
        // clients were answered since — then the client's next resend, after
        // the group is written, is answered.
        if !self.replay_pacer.allow(tx.from, self.last_now) {
            return Ok(Some(None));
        }
        let Ok(Some(loc)) = persist::read_tx(&self.store, &id) else {
            return Ok(Some(None));
        };
        // Signed with the group's other such replies of its block, one
        // signature for all (`sign_replays`).
        if !self.replays.iter().any(|r| r.tx_id == id) {
            self.replays.push(Reply {
                view: self.replica.view(),
                client: tx.from,
                nonce: tx.nonce,
                tx_id: id,
                seq: Seq(loc.height),
                receipt: loc.receipt,
            });
        }
        Ok(Some(None))
    }

    /// Signs the group's replies to resent, executed requests: one
    /// signature per block they come from (issue 24, defect 5: before, one
    /// per resend), and sends them. A client's latest reply is cached, so
    /// its later resends cost nothing.
    fn sign_replays(&mut self) {
        let mut by_block: BTreeMap<(View, Seq), Vec<Reply>> = BTreeMap::new();
        for r in std::mem::take(&mut self.replays) {
            by_block.entry((r.view, r.seq)).or_default().push(r);
        }
        for replies in by_block.into_values() {
            let proofs = self.sign_replies(&replies);
            for (reply, proof) in replies.into_iter().zip(proofs) {
                if self
                    .bank
                    .account(&reply.client)
                    .is_some_and(|a| a.nonce == reply.nonce)
                {
                    self.reply_cache.insert(reply, proof.clone());
                }
                self.push_out(Outgoing::ToClient {
                    client: reply.client,
                    reply,
                    proof,
                });
            }
        }
    }

    /// One signature over `replies` (all of one block, same view and seq):
    /// a proof per reply, in order. No replies, no signature.
    fn sign_replies(&self, replies: &[Reply]) -> Vec<ReplyProof> {
        let Some(first) = replies.first() else {
            return Vec::new();
        };
        ReplyProof::sign_block(
            &self.key,
            self.replica.network(),
            self.me,
            first.view,
            first.seq,
            replies,
        )
    }

    /// Whether `peer` may have a fetch served now.
    fn fetch_allowed(&mut self, peer: ReplicaId, now: Time) -> bool {
        if self.fetch_pacer.allow(peer, now) {
            return true;
        }
        tracing::debug!(replica = %self.me, %peer, refused = self.fetch_pacer.refused(),
            "fetch over the per-peer rate dropped");
        false
    }

    /// Fetch requests dropped for exceeding a peer's rate.
    pub fn fetches_refused(&self) -> u64 {
        self.fetch_pacer.refused()
    }

    /// Resent requests left unanswered for exceeding a client's rate of
    /// replies signed afresh.
    pub fn replays_refused(&self) -> u64 {
        self.replay_pacer.refused()
    }

    fn serve_fetch(&mut self, peer: ReplicaId, from: Seq, to: Seq) -> Result<(), NodeError> {
        let lo = from.0.max(1);
        let hi =
            to.0.min(self.tip.height)
                .min(lo.saturating_add(SERVE_FETCH_MAX - 1));
        if lo > hi {
            return Ok(());
        }
        // At most half a default frame: a fetch of full blocks is answered
        // in part, and the fetcher asks again from where it got to (issue
        // 17, defect 10: 32 blocks of 4,096 transfers were over the cap).
        let batches = persist::read_committed(&self.store, lo, hi, FETCH_REPLY_BYTES_MAX)?;
        if !batches.is_empty() {
            self.push_out(Outgoing::ToReplica {
                to: peer,
                message: Message::Batches(batches),
            });
        }
        Ok(())
    }

    fn run_actions(&mut self, now: Time) -> Result<(), NodeError> {
        while let Some(action) = self.replica.poll_action() {
            match action {
                Action::Persist(ops) => {
                    // The view record follows the view and the view being
                    // changed to, before the write that holds back every
                    // message of it.
                    for op in &ops {
                        if let crate::consensus::PersistOp::View { view, changing_to } = op {
                            self.view_record
                                .record((*view).max(changing_to.unwrap_or(*view)))?;
                        }
                    }
                    let mut batch = WriteBatch::default();
                    persist::add_ops(&mut batch, &ops);
                    self.write_later(batch, true);
                }
                Action::Send { to, message } => self.push_out(Outgoing::ToReplica { to, message }),
                Action::Broadcast(message) => self.push_out(Outgoing::Broadcast(message)),
                Action::Execute {
                    seq,
                    digest,
                    batch,
                    batch_bytes,
                    certificate,
                } => {
                    let checkpoint =
                        self.execute(seq, digest, &batch, &batch_bytes, &certificate)?;
                    self.replica.on_input(
                        now,
                        Input::Executed {
                            seq,
                            checkpoint_digest: checkpoint,
                        },
                    );
                }
                Action::EnteredView(view) => {
                    // Before any vote of the view can leave (the NEW-VIEW's
                    // write holds them back until the flush).
                    self.view_record.record(view)?;
                    tracing::info!(replica = %self.me, %view, primary = %self.replica.primary(), "entered view");
                    self.view_entered.push(view);
                }
            }
        }
        Ok(())
    }

    fn execute(
        &mut self,
        seq: Seq,
        digest: Digest,
        batch: &crate::tx::Batch,
        batch_bytes: &[u8],
        certificate: &Vec<Signed<crate::consensus::messages::Commit>>,
    ) -> Result<Digest, NodeError> {
        assert_eq!(seq.0, self.tip.height + 1, "execution out of order");
        let executed = ledger::execute(&self.tip, &mut self.bank, digest, batch);
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
        for (k, v) in self.bank.take_changes() {
            match v {
                Some(v) => wb.put(Cf::State, k, v),
                None => wb.delete(Cf::State, k),
            }
        }
        #[cfg(feature = "teeth")]
        if crate::teeth::active(crate::teeth::Tooth::ExecuteNotAtomic) {
            // Broken on purpose: the state changes become durable alone.
            let state = std::mem::take(&mut wb.writes)
                .into_iter()
                .partition::<Vec<_>, _>(|w| w.cf == Cf::State);
            wb.writes = state.1;
            self.store.write(WriteBatch {
                writes: state.0,
                delete_ranges: Vec::new(),
            })?;
        }
        let mut tx_ids = Vec::with_capacity(batch.txs.len());
        for (i, (tx, receipt)) in batch.txs.iter().zip(&executed.receipts).enumerate() {
            let id = tx.id();
            tx_ids.push(id);
            // A replayed transaction keeps the location of its first execution.
            if *receipt != crate::tx::Receipt::StaleNonce {
                let loc = TxLocation {
                    height: seq.0,
                    index: i as u32,
                    receipt: *receipt,
                };
                wb.put(
                    Cf::Blocks,
                    persist::tx_key(&id),
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
        // An executed block holds back no message (see `Unsynced`).
        self.write_later(wb, false);
        self.tip = ChainTip {
            height: seq.0,
            block_hash: executed.block_hash,
            timestamp_ms: executed.header.timestamp_ms,
        };
        self.state_root = executed.state_root_after;
        let view = self.replica.view();
        let replies: Vec<Reply> = batch
            .txs
            .iter()
            .zip(&executed.receipts)
            .zip(&tx_ids)
            .filter(|((_, receipt), _)| **receipt != crate::tx::Receipt::StaleNonce)
            .map(|((tx, receipt), id)| Reply {
                view,
                client: tx.from,
                nonce: tx.nonce,
                tx_id: *id,
                seq,
                receipt: *receipt,
            })
            .collect();
        let proofs = self.sign_replies(&replies);
        for (reply, proof) in replies.into_iter().zip(proofs) {
            self.reply_cache.insert(reply, proof.clone());
            self.push_out(Outgoing::ToClient {
                client: reply.client,
                reply,
                proof,
            });
        }
        self.push_committed(CommittedBlock {
            height: seq.0,
            block_hash: executed.block_hash,
            batch_digest: digest,
            txs: batch
                .txs
                .iter()
                .zip(&tx_ids)
                .zip(&executed.receipts)
                .map(|((tx, id), r)| (*id, tx.from, tx.nonce, *r))
                .collect(),
        });
        Ok(ledger::checkpoint_digest(
            executed.block_hash,
            executed.state_root_after,
        ))
    }

    // ----- driver and observer interface -----------------------------------

    pub fn next_deadline(&self) -> Option<Time> {
        let core = self.replica.next_deadline();
        match (core, self.block_sync_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    pub fn pop_outgoing(&mut self) -> Option<Outgoing> {
        self.outbox.pop_front()
    }
    /// Blocks committed since the last call, in height order.
    pub fn drain_committed(&mut self) -> impl Iterator<Item = CommittedBlock> + '_ {
        self.committed.drain(..)
    }
    /// Views entered since the last call.
    pub fn drain_views_entered(&mut self) -> Vec<View> {
        std::mem::take(&mut self.view_entered)
    }
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
    pub fn id(&self) -> ReplicaId {
        self.me
    }
    pub fn height(&self) -> u64 {
        self.tip.height
    }
    pub fn tip(&self) -> ChainTip {
        self.tip
    }
    pub fn state_root(&self) -> Digest {
        self.state_root
    }
    pub fn bank(&self) -> &Bank {
        &self.bank
    }
    pub fn account(&self, key: &PublicKey) -> Option<Account> {
        self.bank.account(key)
    }
    pub fn store(&self) -> &S {
        &self.store
    }
    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, NodeError> {
        Ok(persist::read_block(&self.store, height)?)
    }
    pub fn certificate(
        &self,
        height: u64,
    ) -> Result<Option<Vec<Signed<crate::consensus::messages::Commit>>>, NodeError> {
        Ok(persist::read_certificate(&self.store, height)?)
    }
    pub fn tx(&self, id: &Digest) -> Result<Option<TxLocation>, NodeError> {
        Ok(persist::read_tx(&self.store, id)?)
    }
    /// The committed-block event of a stored height, rebuilt from the store:
    /// for an observer that missed it (a crash between the synced block
    /// write and its acknowledgement). A transaction without an index entry
    /// at this height was a stale-nonce replay.
    pub fn committed_block(&self, height: u64) -> Result<Option<CommittedBlock>, NodeError> {
        let Some(block) = persist::read_block(&self.store, height)? else {
            return Ok(None);
        };
        let batch = block.batch()?;
        let mut txs = Vec::with_capacity(batch.txs.len());
        for (i, tx) in batch.txs.iter().enumerate() {
            let id = tx.id();
            let receipt = match persist::read_tx(&self.store, &id)? {
                Some(loc) if loc.height == height && loc.index == i as u32 => loc.receipt,
                _ => crate::tx::Receipt::StaleNonce,
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
    pub fn checkpoint_interval(&self) -> u64 {
        self.checkpoint_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Digest, NetworkId};

    fn reply(client: u32, nonce: u64) -> Reply {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&client.to_le_bytes());
        Reply {
            view: View(0),
            client: PublicKey(key),
            nonce,
            tx_id: Digest([nonce as u8; 32]),
            seq: Seq(1),
            receipt: Receipt::Ok,
        }
    }

    /// Issue 17, defect 9: the reply cache holds at most `REPLY_CACHE_MAX`
    /// clients; the one whose latest reply is oldest goes first, and a
    /// client answered again moves to the back.
    #[test]
    fn the_reply_cache_is_bounded_and_forgets_the_oldest_client() {
        let key = KeyPair::from_label("reply-cache");
        let proof = ReplyProof::sign_block(
            &key,
            NetworkId(Digest([1; 32])),
            ReplicaId(0),
            View(0),
            Seq(1),
            &[reply(0, 1)],
        )
        .pop()
        .expect("one proof");
        let mut cache = ReplyCache::default();
        for c in 0..REPLY_CACHE_MAX as u32 {
            cache.insert(reply(c, 1), proof.clone());
        }
        assert_eq!(cache.len(), REPLY_CACHE_MAX);
        // Client 0 is answered again (nonce 2): it is now the newest.
        cache.insert(reply(0, 2), proof.clone());
        assert_eq!(cache.len(), REPLY_CACHE_MAX, "one entry per client");
        for c in 0..10u32 {
            cache.insert(reply(REPLY_CACHE_MAX as u32 + c, 1), proof.clone());
        }
        assert_eq!(cache.len(), REPLY_CACHE_MAX);
        let get = |c: u32, nonce: u64| cache.get(&reply(c, nonce).client, nonce).is_some();
        assert!(get(0, 2), "refreshed, kept");
        assert!(!get(0, 1), "only the latest reply per client");
        assert!((1..11).all(|c| !get(c, 1)), "the ten oldest went");
        assert!(get(11, 1) && get(REPLY_CACHE_MAX as u32 + 9, 1));
        let (cached, _) = cache.get(&reply(11, 1).client, 1).expect("kept");
        assert_eq!(cached, reply(11, 1));
    }
}
