//! Group commit: the writes of the inputs a [`Node`] ingests are gathered
//! and made durable together, and what they produced is released by the
//! rule of [`Unsynced`] — nothing leaves before the consensus state it
//! depends on is durable, and committed-block events wait for their block.
//! What is written is built by the replica's store
//! ([`ReplicaStore`](super::store::ReplicaStore)); when it becomes durable,
//! and what waits for it, is decided here.

use super::{CommittedBlock, Node, NodeError, Outgoing};
use crate::storage::{Store, WriteBatch};
use crate::types::Time;
use std::collections::VecDeque;

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
pub(super) struct Unsynced {
    batches: Vec<WriteBatch>,
    /// Whether a consensus write is among `batches` (messages wait).
    holds_messages: bool,
    pub(super) outbox: VecDeque<Outgoing>,
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

impl<S: Store> Node<S> {
    /// Queues something to send: held back while a consensus write is
    /// unsynced (the release rule of `Unsynced`).
    pub(super) fn push_out(&mut self, out: Outgoing) {
        match &mut self.unsynced {
            Some(u) if u.holds_messages => u.outbox.push_back(out),
            _ => self.outbox.push_back(out),
        }
    }

    /// Records a committed block for observers: held back like messages.
    pub(super) fn push_committed(&mut self, block: CommittedBlock) {
        match &mut self.unsynced {
            Some(u) => u.committed.push_back(block),
            None if !self.awaiting_sync.is_empty() => self.awaiting_sync.push_back(block),
            None => self.committed.push_back(block),
        }
    }

    /// Adds `batch` to the unsynced write; a consensus write (`holds`)
    /// holds back the messages produced after it.
    pub(super) fn write_later(&mut self, batch: WriteBatch, holds: bool) {
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
    pub(super) fn block_sync_deadline(&self) -> Option<Time> {
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

    /// Writes ingested but not yet synced (each input's `Persist` and
    /// block counts one).
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.as_ref().map_or(0, |u| u.batches.len())
    }
}
