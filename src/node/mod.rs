//! A replica wired to its ledger and store (L6), driven synchronously.
//!
//! [`Node`] owns the consensus [`Replica`], the bank, the chain tip and a
//! [`Store`], which it reads and writes only through the typed
//! [`ReplicaStore`] (`store`: every key and encoding, opening and recovery).
//! It feeds inputs to the core and executes the core's actions in order:
//! `Persist` becomes a write; `Execute` builds the block, writes block,
//! certificate, state changes and transaction index as one write, signs a
//! reply per transaction (`replies`) and tells the core the checkpoint
//! digest.
//! Writes are grouped (group commit): the driver [`Node::ingest`]s whatever
//! inputs have arrived, then [`Node::flush`] makes all their writes durable
//! in one synced, atomic store write. What they produced — messages,
//! replies, committed-block events — is released by the rule of
//! `Unsynced`: nothing leaves before the consensus state it depends on is
//! durable, and committed-block events wait for their block. The flush comes
//! in two halves ([`Node::begin_flush`], [`Node::finish_flush`]) so a driver
//! can send what is already released while the write syncs (`flush`).
//! [`Node::handle`] is one input and its flush. Messages to send collect in
//! an outbox the driver drains — the tokio runtime for real replicas, the
//! simulator's network otherwise. The same `Node` runs in both.

mod admission;
pub mod config;
mod flush;
pub mod persist;
mod replies;
#[cfg(feature = "rocksdb")]
pub mod runtime;
pub mod service;
pub mod store;
mod view_record;

use crate::consensus::messages::{Message, PrePrepare, Reply, ReplyProof};
use crate::consensus::pacer::Pacer;
use crate::consensus::{Action, Input, Replica};
use crate::crypto::{Digest, KeyPair, Payload, PublicKey, Signed};
use crate::genesis::Genesis;
use crate::ledger::bank::{Account, Bank};
use crate::ledger::{self, ChainTip, StateMachine};
use crate::storage::{StorageError, Store};
use crate::types::{ReplicaId, Seq, Time, View};
pub use flush::PendingWrite;
use flush::Unsynced;
use persist::{StoredBlock, TxLocation};
use replies::ReplyCache;
pub use replies::REPLY_CACHE_MAX;
use std::collections::VecDeque;
use store::{Opened, ReplicaStore};
pub use view_record::{FileViewRecord, MemoryViewRecord, ViewRecord};

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

/// A committed-block event, for observers (the simulator's checker, logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBlock {
    pub height: u64,
    pub block_hash: Digest,
    pub batch_digest: Digest,
    /// Every transaction's id, sender, nonce and receipt, in block order.
    pub txs: Vec<(Digest, PublicKey, u64, crate::tx::Receipt)>,
}

pub struct Node<S: Store> {
    replica: Replica,
    bank: Bank,
    tip: ChainTip,
    state_root: Digest,
    store: ReplicaStore<S>,
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
        store: S,
        mut view_record: Box<dyn ViewRecord>,
        run: bool,
    ) -> Result<Node<S>, NodeError> {
        let (store, opened) =
            ReplicaStore::open(store, genesis, me, &key.public(), view_record.last(), run)?;
        let Opened {
            bank,
            tip,
            state_root,
            recovered,
        } = opened;
        let k = genesis.config().checkpoint_interval;
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

    /// For a clean stop: makes everything ingested durable, then saves the
    /// PRE-PREPAREs and PREPAREs this replica signed in its current view
    /// (never written while it runs) with the marker that says so, so the
    /// next start keeps voting in the view. Nothing may be handled after it.
    pub fn save_votes(&mut self) -> Result<(), NodeError> {
        self.flush()?;
        self.store.save_votes(&self.replica.unsaved_votes())?;
        Ok(())
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
        let batches = self.store.committed(lo, hi, FETCH_REPLY_BYTES_MAX)?;
        if !batches.is_empty() {
            self.push_out(Outgoing::ToReplica {
                to: peer,
                message: Message::Batches(batches),
            });
        }
        Ok(())
    }

    /// `seq` just executed: our own PRE-PREPAREs still queued for seqs up
    /// to it go (a re-send queued while a write of its group synced, whose
    /// seq the same group then executed). The core re-sends nothing at or
    /// below its height (peers behind catch up by fetching), and a proposal
    /// there would sit below the stable checkpoint (the simulator's rule
    /// S11; `tests/sim_scenarios.rs` drew a configuration with a 10 ms
    /// re-send interval that met the race). Only what was queued *before*
    /// the execution goes: a proposal the core makes after it at a stale
    /// seq still leaves, for S11 to catch (tooth `propose-at-stale-seq`).
    fn drop_queued_proposals_upto(&mut self, seq: Seq) {
        let me = self.me;
        let stale = |out: &Outgoing| match out {
            Outgoing::ToReplica {
                message: Message::PrePrepare { pre_prepare, .. },
                ..
            }
            | Outgoing::Broadcast(Message::PrePrepare { pre_prepare, .. }) => {
                pre_prepare.signer == me
                    && PrePrepare::decode(&pre_prepare.payload).is_ok_and(|pp| pp.seq <= seq)
            }
            _ => false,
        };
        self.outbox.retain(|o| !stale(o));
        if let Some(u) = self.unsynced.as_mut() {
            u.outbox.retain(|o| !stale(o));
        }
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
                    let batch = self.store.ops_write(&ops);
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
                    self.drop_queued_proposals_upto(seq);
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
        let tx_ids: Vec<Digest> = batch.txs.iter().map(|tx| tx.id()).collect();
        let changes = self.bank.take_changes();
        let wb =
            self.store
                .block_write(seq, &executed, &tx_ids, batch_bytes, certificate, changes)?;
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
    /// See [`Replica::watch_proposals`].
    pub fn watch_proposals(&mut self, on: bool) {
        self.replica.watch_proposals(on);
    }
    /// See [`Replica::observe_link_rtt`].
    pub fn observe_link_rtt(&mut self, peer: ReplicaId, rtt: std::time::Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        self.replica.observe_link_rtt(peer, us);
    }
    /// Makes the core check its invariants after every input (the
    /// simulator does; see `Replica::check_invariants`).
    pub fn check_invariants_always(&mut self) {
        self.replica.check_invariants_always();
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
        self.store.inner()
    }
    /// The replica's store, for typed reads.
    pub fn replica_store(&self) -> &ReplicaStore<S> {
        &self.store
    }
    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, NodeError> {
        Ok(self.store.block(height)?)
    }
    pub fn certificate(
        &self,
        height: u64,
    ) -> Result<Option<Vec<Signed<crate::consensus::messages::Commit>>>, NodeError> {
        Ok(self.store.certificate(height)?)
    }
    pub fn tx(&self, id: &Digest) -> Result<Option<TxLocation>, NodeError> {
        Ok(self.store.tx(id)?)
    }
    /// The committed-block event of a stored height, rebuilt from the store:
    /// for an observer that missed it (a crash between the synced block
    /// write and its acknowledgement).
    pub fn committed_block(&self, height: u64) -> Result<Option<CommittedBlock>, NodeError> {
        Ok(self.store.committed_block(height)?)
    }
    pub fn checkpoint_interval(&self) -> u64 {
        self.checkpoint_interval
    }
}
