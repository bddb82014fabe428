//! What the operations endpoint (`crate::ops`) sees of a running replica:
//! counters the loop keeps as things happen, the histograms it observes,
//! and the [`Status`] it publishes, built from plain numbers copied out of
//! the node, the transport and the client service.
//!
//! Everything here runs on the loop's turn and costs a few map updates per
//! message; the publication itself (a [`Status`] of a few hundred bytes
//! into a watch channel) happens at most once per
//! [`ops::PUBLISH_INTERVAL`].

use super::super::service::ClientService;
use super::super::{CommittedBlock, Node};
use crate::consensus::messages::{Message, PrePrepare};
use crate::consensus::ViewChangeReason;
use crate::crypto::{Digest, Payload};
use crate::net::Transport;
use crate::ops::{self, status::Counters, status::Peer, status::Status};
use crate::storage::Store;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// PRE-PREPAREs remembered for the commit-latency histogram (the oldest is
/// forgotten first: a batch that never executes cannot grow the map).
const PROPOSALS_MAX: usize = 4_096;

/// The loop's counters for the operations endpoint.
#[derive(Debug)]
pub(super) struct Observer {
    started: Instant,
    /// Messages received from peers, by kind.
    received: BTreeMap<&'static str, u64>,
    fetches_sent: u64,
    fetches_served: u64,
    committed_transactions: u64,
    committed_blocks: u64,
    /// When the PRE-PREPARE of each batch digest was first seen (sent or
    /// received), in arrival order, at most [`PROPOSALS_MAX`].
    proposed: HashMap<Digest, Instant>,
    proposed_order: VecDeque<Digest>,
    /// When a view change started (while one is in progress).
    view_change_since: Option<(u64, Instant)>,
}

impl Observer {
    pub(super) fn new() -> Observer {
        Observer {
            started: Instant::now(),
            received: BTreeMap::new(),
            fetches_sent: 0,
            fetches_served: 0,
            committed_transactions: 0,
            committed_blocks: 0,
            proposed: HashMap::new(),
            proposed_order: VecDeque::new(),
            view_change_since: None,
        }
    }

    /// A message from a peer (decoded, not yet checked).
    pub(super) fn on_received(&mut self, message: &Message) {
        *self.received.entry(message.kind()).or_default() += 1;
        if let Message::PrePrepare { pre_prepare, .. } = message {
            self.on_pre_prepare(&pre_prepare.payload);
        }
    }

    /// A message this replica sends (after the adversary seam).
    pub(super) fn on_sent(&mut self, message: &Message) {
        match message {
            Message::Fetch { .. } => self.fetches_sent += 1,
            Message::Batches(_) => self.fetches_served += 1,
            Message::PrePrepare { pre_prepare, .. } => self.on_pre_prepare(&pre_prepare.payload),
            _ => {}
        }
    }

    /// Notes when a batch was proposed. The payload is not checked here
    /// (the core checks it): a forged one only adds an entry that is
    /// forgotten in turn.
    fn on_pre_prepare(&mut self, payload: &[u8]) {
        let Ok(pp) = PrePrepare::decode(payload) else {
            return;
        };
        if self.proposed.contains_key(&pp.digest) {
            return;
        }
        if self.proposed_order.len() >= PROPOSALS_MAX {
            if let Some(old) = self.proposed_order.pop_front() {
                self.proposed.remove(&old);
            }
        }
        self.proposed.insert(pp.digest, Instant::now());
        self.proposed_order.push_back(pp.digest);
    }

    /// A block became durable and executed.
    pub(super) fn on_committed(&mut self, block: &CommittedBlock, h: &ops::metrics::Histograms) {
        self.committed_blocks += 1;
        self.committed_transactions += block.txs.len() as u64;
        h.block_transactions.observe(block.txs.len() as f64);
        if let Some(at) = self.proposed.remove(&block.batch_digest) {
            h.commit_latency_seconds.observe(at.elapsed().as_secs_f64());
        }
    }

    /// The status to publish now.
    pub(super) fn status<S: Store>(
        &mut self,
        node: &Node<S>,
        transport: &Transport,
        service: &ClientService,
        loop_counters: LoopCounters,
    ) -> Status {
        let replica = node.replica();
        let core = replica.stats();
        let changing_to = replica.changing_to().map(|v| v.0);
        self.view_change_since = match (changing_to, self.view_change_since) {
            (None, _) => None,
            (Some(to), Some((since_to, at))) if since_to <= to => Some((since_to, at)),
            (Some(to), _) => Some((to, Instant::now())),
        };
        let net = transport.stats();
        let peers: Vec<Peer> = net
            .peers
            .iter()
            .filter(|p| p.id != node.id())
            .map(|p| Peer {
                replica: p.id.0,
                connected: p.connected,
                rtt_us: p
                    .round_trip
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                frames_sent: p.frames_sent,
                frames_received: p.frames_received,
                frames_dropped: p.frames_dropped,
            })
            .collect();
        let tip = node.tip();
        let service_stats = service.stats();
        // Every reason, 0 included, so each series exists from the start.
        let view_changes_by_reason = ViewChangeReason::ALL
            .iter()
            .map(|r| {
                let n = core.view_changes_by_reason.get(r).copied().unwrap_or(0);
                (r.name().to_string(), n)
            })
            .collect();
        Status {
            replica: node.id().0,
            replicas: replica.cluster().n(),
            network: replica.network().0.to_hex(),
            view: replica.view().0,
            changing_to,
            view_change_ms: self
                .view_change_since
                .map(|(_, at)| at.elapsed().as_millis() as u64),
            primary: replica.primary().0,
            height: tip.height,
            block_hash: tip.block_hash.to_hex(),
            last_executed: replica.last_executed().0,
            stable_checkpoint: replica.low_watermark().0,
            low_watermark: replica.low_watermark().0,
            high_watermark: replica.high_watermark().0,
            catching_up_to: replica.catching_up_to().map(|s| s.0),
            pending_requests: replica.pending_requests() as u64,
            client_requests_in_flight: service.waiting() as u64,
            connected_peers: peers.iter().filter(|p| p.connected).count() as u32,
            peers,
            counters: Counters {
                committed_transactions: self.committed_transactions,
                committed_blocks: self.committed_blocks,
                view_changes_started: core.view_changes_started,
                new_views_entered: core.new_views_entered,
                fetches_sent: self.fetches_sent,
                fetches_served: self.fetches_served,
                fetches_throttled: node.fetches_refused(),
                blocks_fetched: core.batches_fetched,
                client_requests_busy: service_stats.busy,
                undecodable_frames: loop_counters.undecodable,
                synced_writes: loop_counters.syncs,
                primaries_suspected_stalling: core.primaries_suspected_stalling,
                requests_forwarded: core.requests_forwarded,
            },
            view_changes_by_reason,
            refused: core
                .ignored
                .iter()
                .map(|(reason, n)| (reason.to_string(), *n))
                .collect(),
            received: self
                .received
                .iter()
                .map(|(kind, n)| (kind.to_string(), *n))
                .collect(),
            signature_checks: crate::crypto::signature_checks()
                .into_iter()
                .map(|(kind, n)| (kind.to_string(), n))
                .collect(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            published_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64,
        }
    }
}

/// Counters of the loop itself that the status reports.
#[derive(Clone, Copy, Debug)]
pub(super) struct LoopCounters {
    pub(super) undecodable: u64,
    pub(super) syncs: u64,
}
